//! A lying introduction server, to see what end-to-end encryption changes.
//!
//! It registers peers like `uds-introd` (Goblins' shapes), then, instead of
//! simply passing each dialer's socket to its target, it lies in the way
//! `--lie` says:
//!
//! | lie | what it does |
//! |---|---|
//! | `honest` | passes the dialer's socket, as an introduction server should |
//! | `relay` | keeps the dialer's socket, gives the target one of its own, and copies the bytes between them, printing what it sees |
//! | `tamper` | the same, flipping one bit (`--flip out:N` or `--flip back:N`: byte N of what the dialer sends, or of what comes back) |
//! | `wrong-from` | passes the real socket but tells the target the dialer is someone else |
//! | `impersonate` | keeps the dialer's socket and answers it itself, pretending to be the target |
//! | `replay` | relays the first connection, recording what the dialer sent, then replays it to the target as a new connection |
//! | `cut` | relays, then cuts both sides after `--cut-after N` bytes from the dialer |
//! | `blackhole` | takes every intro and never delivers it |
//!
//! With plaintext peers each lie works silently: the relay reads
//! everything, the tamperer changes it, the target believes the wrong
//! dialer, the dialer talks to the wrong peer, old messages arrive as new,
//! a cut looks like a clean close. With end-to-end encrypted peers (the
//! netlayer's default) the relay sees only ciphertext and every other lie
//! fails loudly on the side that can detect it.
//!
//! ```text
//! cargo run -p uds-netlayer --example lying_introd -- --socket /tmp/liar.sock --lie relay
//! ```
//!
//! It prints `lying-introd ready socket=<PATH> id=<DESIGNATOR>` when
//! ready, then one line per thing it does or sees. With `--record FILE`
//! every byte it relays is also appended to FILE.
#![allow(dead_code, unreachable_pub)] // also compiled as a module of the lying-server tests

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use uds_fdpass::FdStream;
use uds_handshake::channel::ChannelEvent;
use uds_handshake::io::{IntroReader, IntroWriter, Outgoing, UnitWriter};
use uds_handshake::{Identity, ServerHandshake, ServerStep};
use uds_syrup::{Designator, Limits, Locator, NewConnection, WireProfile};

/// Which lie to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Pass the dialer's socket.
    Honest,
    /// Relay through a socketpair of our own.
    Relay,
    /// Relay and flip one bit.
    Tamper {
        /// Flip in what the dialer sends (`true`) or what comes back.
        out: bool,
        /// The byte offset in that direction.
        offset: u64,
    },
    /// Rewrite `from`.
    WrongFrom,
    /// Answer the dialer ourselves.
    Impersonate,
    /// Relay once, then replay the dialer's bytes.
    Replay,
    /// Relay, then cut after this many bytes from the dialer.
    Cut {
        /// Bytes from the dialer to forward before cutting.
        after: u64,
    },
    /// Never deliver.
    Blackhole,
}

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub socket: PathBuf,
    /// The lie.
    pub lie: Lie,
    /// Append every relayed byte to this file.
    pub record: Option<PathBuf>,
}

/// Parses `--socket PATH --lie LIE [--flip out:N|back:N] [--cut-after N]
/// [--record FILE]`.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut socket = None;
    let mut lie = None;
    let mut flip = None;
    let mut cut_after = None;
    let mut record = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--lie" => lie = Some(value()?),
            "--flip" => flip = Some(value()?),
            "--cut-after" => cut_after = Some(value()?.parse::<u64>().map_err(|e| e.to_string())?),
            "--record" => record = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let lie = match lie.as_deref().ok_or("--lie is required")? {
        "honest" => Lie::Honest,
        "relay" => Lie::Relay,
        "tamper" => {
            let f = flip.ok_or("--lie tamper needs --flip out:N or back:N")?;
            let (dir, n) = f.split_once(':').ok_or("--flip is DIR:N")?;
            Lie::Tamper {
                out: match dir {
                    "out" => true,
                    "back" => false,
                    _ => return Err("--flip direction is out or back".into()),
                },
                offset: n.parse().map_err(|_| "--flip offset is a number")?,
            }
        }
        "wrong-from" => Lie::WrongFrom,
        "impersonate" => Lie::Impersonate,
        "replay" => Lie::Replay,
        "cut" => Lie::Cut {
            after: cut_after.ok_or("--lie cut needs --cut-after N")?,
        },
        "blackhole" => Lie::Blackhole,
        other => return Err(format!("unknown lie {other:?}")),
    };
    Ok(Options {
        socket: socket.ok_or("--socket is required")?,
        lie,
        record,
    })
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Printable preview of relayed bytes.
fn preview(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(48) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            s.push('.');
        }
    }
    if bytes.len() > 48 {
        s.push('…');
    }
    s
}

type Peers = Arc<Mutex<HashMap<Designator, IntroWriter>>>;

struct State {
    identity: Arc<Identity>,
    peers: Peers,
    opts: Options,
    /// A stranger to name in `wrong-from`.
    stranger: Designator,
    /// What the dialer sent over the first relayed connection (`replay`).
    recorded: Mutex<Option<(NewConnection, Vec<u8>)>>,
    replayed: std::sync::atomic::AtomicBool,
}

/// Binds, prints the ready line, and serves until the process ends.
pub async fn serve(opts: Options) -> std::io::Result<()> {
    let listener = UnixListener::bind(&opts.socket)?;
    let identity = Arc::new(Identity::generate());
    say(format!(
        "lying-introd ready socket={} id={}",
        opts.socket.display(),
        identity.designator()
    ));
    let state = Arc::new(State {
        identity,
        peers: Arc::default(),
        stranger: Identity::generate().designator(),
        opts,
        recorded: Mutex::new(None),
        replayed: Default::default(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(client(FdStream::from(stream), state.clone()));
    }
}

async fn client(stream: FdStream, state: Arc<State>) {
    let stream = Arc::new(stream);
    let mut reader = IntroReader::new(Limits::intro_channel());
    let mut hs = ServerHandshake::new(state.identity.clone(), WireProfile::Goblins);
    let me = loop {
        let Ok(Some(ChannelEvent::Message { value, .. })) = reader.next(&stream).await else {
            return;
        };
        match hs.receive(&value) {
            Ok(ServerStep::Send(bytes)) => {
                let mut w = UnitWriter::new(Outgoing::Message(Bytes::from(bytes)));
                if w.write(&stream).await.is_err() {
                    return;
                }
            }
            Ok(ServerStep::Registered(r)) => break r.designator,
            Err(_) => return,
        }
    };
    let (writer, _task) = IntroWriter::spawn(stream.clone(), 64, Duration::from_secs(10));
    state.peers.lock().unwrap().insert(me, writer);
    say(format!("registered {me}"));
    while let Ok(Some(event)) = reader.next(&stream).await {
        let ChannelEvent::Introduction { record, fd, .. } = event else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move { introduce(record, fd, state).await });
    }
}

/// The target's writer, waiting a while for it to register.
async fn target_of(record: &NewConnection, state: &State) -> Option<IntroWriter> {
    let to = record.to.designator_key().ok()?;
    for _ in 0..400 {
        if let Some(w) = state.peers.lock().unwrap().get(&to).cloned() {
            return Some(w);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

fn intro(record: &NewConnection, fd: OwnedFd) -> Outgoing {
    Outgoing::Intro {
        record: Bytes::from(record.to_value().encode()),
        fd,
    }
}

async fn introduce(record: NewConnection, dialer: OwnedFd, state: Arc<State>) {
    let from = record.from.designator().to_owned();
    let to = record.to.designator().to_owned();
    match state.opts.lie {
        Lie::Blackhole => {
            say(format!("holding the intro from {from} to {to} forever"));
            std::future::pending::<()>().await;
        }
        Lie::Impersonate => {
            say(format!("answering {from} myself, pretending to be {to}"));
            impersonate(record, dialer, &state).await;
        }
        Lie::Honest | Lie::WrongFrom => {
            let Some(target) = target_of(&record, &state).await else {
                return;
            };
            let record = if state.opts.lie == Lie::WrongFrom {
                say(format!(
                    "telling {to} that {} dialed it (it was {from})",
                    state.stranger
                ));
                NewConnection {
                    from: Locator::unix(state.stranger),
                    to: record.to,
                }
            } else {
                say(format!("passing {from}'s socket to {to}"));
                record
            };
            let _ = target.send(intro(&record, dialer)).await;
        }
        Lie::Relay | Lie::Tamper { .. } | Lie::Cut { .. } | Lie::Replay => {
            let Some(target) = target_of(&record, &state).await else {
                return;
            };
            let Ok((mine, theirs)) = uds_fdpass::socketpair() else {
                return;
            };
            say(format!(
                "relaying {from} -> {to} through a socket of my own"
            ));
            if target.send(intro(&record, theirs)).await.is_err() {
                return;
            }
            let sent = relay(dialer, mine, &state).await;
            if state.opts.lie == Lie::Replay {
                let first = state.recorded.lock().unwrap().is_none();
                if first {
                    *state.recorded.lock().unwrap() = Some((record, sent));
                    replay(&state, target).await;
                }
            }
        }
    }
}

/// Copies bytes both ways between the dialer's socket and ours, lying as
/// asked; returns what the dialer sent.
async fn relay(dialer: OwnedFd, mine: OwnedFd, state: &State) -> Vec<u8> {
    let (Ok(a), Ok(b)) = (to_tokio(dialer), to_tokio(mine)) else {
        return Vec::new();
    };
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let lie = state.opts.lie;
    let cut = tokio_util::sync::CancellationToken::new();
    let out = pump(ar, bw, true, lie, state, cut.clone());
    let back = pump(br, aw, false, lie, state, cut.clone());
    let (sent, _) = tokio::join!(out, back);
    sent
}

async fn pump(
    mut from: tokio::io::ReadHalf<UnixStream>,
    mut to: tokio::io::WriteHalf<UnixStream>,
    out: bool,
    lie: Lie,
    state: &State,
    cut: tokio_util::sync::CancellationToken,
) -> Vec<u8> {
    let arrow = if out {
        "dialer -> target"
    } else {
        "target -> dialer"
    };
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let mut offset = 0u64;
    loop {
        let n = tokio::select! {
            _ = cut.cancelled() => break,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let mut chunk = buf[..n].to_vec();
        if let Lie::Tamper { out: o, offset: at } = lie
            && o == out
            && (offset..offset + n as u64).contains(&at)
        {
            chunk[(at - offset) as usize] ^= 0x01;
            say(format!("flipped one bit of byte {at} ({arrow})"));
        }
        let mut stop = false;
        if let Lie::Cut { after } = lie
            && out
            && offset + n as u64 >= after
        {
            chunk.truncate((after - offset) as usize);
            stop = true;
        }
        offset += n as u64;
        if let Some(path) = &state.opts.record
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = f.write_all(&chunk);
        }
        say(format!(
            "{arrow}: {} bytes: {}",
            chunk.len(),
            preview(&chunk)
        ));
        seen.extend_from_slice(&chunk);
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        if stop {
            say("cutting the connection".into());
            cut.cancel();
            return seen;
        }
    }
    if !cut.is_cancelled() {
        let _ = to.shutdown().await;
    }
    seen
}

/// Replays what the dialer sent on the first connection, as a new
/// connection to the same target.
async fn replay(state: &State, target: IntroWriter) {
    if state
        .replayed
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    let Some((record, bytes)) = state.recorded.lock().unwrap().clone() else {
        return;
    };
    let Ok((mine, theirs)) = uds_fdpass::socketpair() else {
        return;
    };
    say(format!(
        "replaying {} recorded bytes from {} to {}",
        bytes.len(),
        record.from.designator(),
        record.to.designator()
    ));
    if target.send(intro(&record, theirs)).await.is_err() {
        return;
    }
    let Ok(mut s) = to_tokio(mine) else { return };
    let _ = s.write_all(&bytes).await;
    // Whatever the target answers is read and dropped.
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    say(format!(
        "the target answered the replay with {} bytes",
        sink.len()
    ));
}

/// Speaks to the dialer as if we were its target.
async fn impersonate(record: NewConnection, dialer: OwnedFd, state: &State) {
    let Ok(stream) = to_tokio(dialer) else { return };
    let Ok(from) = record.from.designator_key() else {
        return;
    };
    let Some(first) = peek(&stream).await else {
        return;
    };
    if uds_e2ee::is_e2ee_first_byte(first) {
        // The best a liar can do: the dialer's own prologue (naming the
        // target), but its own key and identity record, since it cannot
        // sign as the target.
        match pretend(stream, from, record.to.designator_key(), state).await {
            Ok(()) => say("the dialer accepted my identity".into()),
            Err(e) => say(format!("the dialer refused me: {e}")),
        }
    } else {
        let mut s = stream;
        let _ = s
            .write_all(format!("<10'greetings\"I am {}>", record.to.designator()).as_bytes())
            .await;
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            say(format!("read from the dialer: {}", preview(&buf[..n])));
        }
    }
}

/// Answers the dialer's e2ee handshake as the target would, with our own
/// static key and identity record.
async fn pretend(
    mut stream: UnixStream,
    from: Designator,
    target: Result<Designator, uds_syrup::WireError>,
    state: &State,
) -> std::io::Result<()> {
    let target = target.map_err(std::io::Error::other)?;
    // Fresh random bytes for our static key (the designator of a new
    // identity is 32 random bytes).
    let secret = *Identity::generate().designator().key_bytes();
    let local = uds_e2ee::LocalStatic::from_secret_bytes(&state.identity, secret);
    let prologue = uds_e2ee::prologue(&from, &target);
    let mut hs = uds_e2ee::noise::HandshakeState::new(false, &prologue, secret, None);
    let mut payload = Vec::new();
    let msg1 = read_message(&mut stream).await?;
    hs.read_message(&msg1, &mut payload)
        .map_err(std::io::Error::other)?;
    let mut msg2 = Vec::new();
    hs.write_message(local.identity_record(), &mut msg2)
        .map_err(std::io::Error::other)?;
    stream.write_all(&(msg2.len() as u16).to_be_bytes()).await?;
    stream.write_all(&msg2).await?;
    let msg3 = read_message(&mut stream).await?;
    hs.read_message(&msg3, &mut payload)
        .map_err(std::io::Error::other)
}

/// One length-prefixed handshake message.
async fn read_message(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

/// The first byte the dialer sent (left unread).
async fn peek(stream: &UnixStream) -> Option<u8> {
    use std::os::fd::AsRawFd;
    loop {
        stream.readable().await.ok()?;
        let mut byte = [0u8; 1];
        let r = stream.try_io(tokio::io::Interest::READABLE, || {
            nix::sys::socket::recv(
                stream.as_raw_fd(),
                &mut byte,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)
        });
        match r {
            Ok(0) => return None,
            Ok(_) => return Some(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

fn to_tokio(fd: OwnedFd) -> std::io::Result<UnixStream> {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(true)?;
    UnixStream::from_std(s)
}

/// Runs the server with these arguments (without the program name).
pub fn run(args: &[String]) -> std::process::ExitCode {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("lying-introd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lying-introd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lying-introd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&args)
}
