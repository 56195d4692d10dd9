//! The processes of `cargo xtask soak`, and an example of a netlayer peer
//! that dials and accepts many connections at once.
//!
//! One program, five roles (the first argument):
//!
//! ```text
//! soak_peer peer --intro PATH... [--plaintext]
//!     a well-behaved peer registered with every --intro server. Commands on
//!     stdin, events on stdout, one line each:
//!       dial <uri> <id>       ready <uri>
//!       stats                 registered <server> | unregistered <server>
//!       quit                  dial <id> ok <ms> | dial <id> err <message>
//!                             accepted <id> <dialer-designator> <encrypted|plaintext>
//!                             incoming-error <dialer-designator> <message>
//!                             stats <name>=<n>...
//!                             bye (after quit: every dial has reported)
//! soak_peer garbage --intro PATH --seed N   random bytes, then wait to be closed
//! soak_peer stall --intro PATH --seed N     start registering, never finish
//! soak_peer flood --intro PATH --seed N --seconds S
//!     register, then send intros to random designators as fast as the
//!     server takes them
//! soak_peer deaf --intro PATH [--self-intros N]
//!     register, print ready <uri>, never read; optionally send N intros to
//!     itself meanwhile (so that the server's queue toward it fills up)
//! ```
//!
//! A misbehaving role prints one outcome line (`closed <ms>`,
//! `not-closed <ms>`, `flood sent=<n> ms=<ms> <how it ended>`,
//! `self-intros sent=<n> ...`, `cannot-connect <message>`) and exits 0
//! (the deaf one when its stdin closes).
//!
//! On every connection of a peer the dialer sends `soak <id>\n` and the
//! acceptor answers `ok <id>\n`: a dial is `ok` only once that answer has
//! come back through the connection. Connections are end-to-end encrypted
//! unless `--plaintext` is given (a plaintext peer accepts both modes; an
//! encrypted one refuses plaintext connections).
//!
//! Run: `cargo run -p uds-netlayer --example soak_peer -- peer --intro PATH`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use uds_fdpass::FdStream;
use uds_handshake::channel::ChannelEvent;
use uds_handshake::io::{IntroReader, IntroWriter, Outgoing, UnitWriter};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_netlayer::{Connection, UdsNetlayer};
use uds_syrup::{Designator, Limits, Locator, NewConnection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long either side of a connection waits for the other's line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a misbehaving client waits for the server to close it.
const CLOSE_PATIENCE: Duration = Duration::from_secs(30);
/// The longest line accepted on a connection.
const MAX_LINE: usize = 64;

/// The command line, parsed.
struct Args {
    role: String,
    intros: Vec<PathBuf>,
    plaintext: bool,
    seed: u64,
    seconds: f64,
    self_intros: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut it = std::env::args().skip(1);
    let role = it
        .next()
        .ok_or("usage: soak_peer <peer|garbage|stall|flood|deaf> ...")?;
    let mut args = Args {
        role,
        intros: Vec::new(),
        plaintext: false,
        seed: 1,
        seconds: 3.0,
        self_intros: 0,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--intro" => args.intros.push(PathBuf::from(value("--intro")?)),
            "--plaintext" => args.plaintext = true,
            "--seed" => args.seed = value("--seed")?.parse()?,
            "--seconds" => args.seconds = value("--seconds")?.parse()?,
            "--self-intros" => args.self_intros = value("--self-intros")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.intros.is_empty() {
        return Err("--intro PATH is required".into());
    }
    Ok(args)
}

/// A line of text with no line breaks, for one-line events.
fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string().replace(['\n', '\r'], " ")
}

/// A small deterministic generator (SplitMix64) for the misbehaving roles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = parse_args()?;
    match args.role.as_str() {
        "peer" => peer(&args).await,
        "garbage" => garbage(&args).await,
        "stall" => stall(&args).await,
        "flood" => flood(&args).await,
        "deaf" => deaf(&args).await,
        other => Err(format!("unknown role {other:?}").into()),
    }
}

// ---------------------------------------------------------------------------
// The well-behaved peer.

async fn peer(args: &Args) -> Result<(), BoxError> {
    let mut builder = UdsNetlayer::builder();
    for path in &args.intros {
        builder = builder.intro_path(path);
    }
    if args.plaintext {
        builder = builder.plaintext();
    }
    let net = builder.build()?;

    // Ready once registered with every server (so that our locator hints
    // all of them), or with at least one after a while.
    let mut changes = net.server_changes();
    let all = args.intros.len();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while net.registered_servers().len() < all {
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    net.registered().await;
    println!("ready {}", net.location());

    let watcher = net.clone();
    tokio::spawn(async move {
        let mut known = std::collections::BTreeSet::new();
        loop {
            let now: std::collections::BTreeSet<_> =
                watcher.registered_servers().into_iter().collect();
            for s in now.difference(&known) {
                println!("registered {s}");
            }
            for s in known.difference(&now) {
                println!("unregistered {s}");
            }
            known = now;
            if changes.changed().await.is_err() {
                return;
            }
        }
    });

    let acceptor = net.clone();
    tokio::spawn(async move {
        while let Ok(conn) = acceptor.accept().await {
            tokio::spawn(answer(conn));
        }
    });

    let mut dials = tokio::task::JoinSet::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Some(line) = line? else { break };
                let words: Vec<&str> = line.split_whitespace().collect();
                match words[..] {
                    ["dial", uri, id] => {
                        let (net, uri, id) = (net.clone(), uri.to_owned(), id.to_owned());
                        dials.spawn(async move {
                            let started = Instant::now();
                            match dial(&net, &uri, &id).await {
                                Ok(()) => println!("dial {id} ok {}", started.elapsed().as_millis()),
                                Err(e) => println!("dial {id} err {}", one_line(e)),
                            }
                        });
                    }
                    ["stats"] => {
                        let s = net.stats();
                        println!(
                            "stats incoming-dropped={} incoming-refused={} handshakes-failed={} handshakes-dropped={} registrations-cut-short={}",
                            s.incoming_dropped, s.incoming_refused, s.handshakes_failed, s.handshakes_dropped, s.registrations_cut_short
                        );
                    }
                    ["quit"] => break,
                    _ => println!("error unknown command {line:?}"),
                }
            }
            Some(_) = dials.join_next(), if !dials.is_empty() => {}
        }
    }
    // Every dial reports before we go.
    while dials.join_next().await.is_some() {}
    println!("bye");
    Ok(())
}

/// Dials `uri`, sends `soak <id>` and waits for `ok <id>`.
async fn dial(net: &UdsNetlayer, uri: &str, id: &str) -> Result<(), String> {
    let loc: Locator = uri.parse().map_err(|e| format!("bad locator: {e}"))?;
    let mut conn = net
        .connect(&loc)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_all(format!("soak {id}\n").as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let reply = tokio::time::timeout(LINE_TIMEOUT, read_line(&mut conn))
        .await
        .map_err(|_| format!("no reply within {LINE_TIMEOUT:?}"))?
        .map_err(|e| format!("reading the reply: {e}"))?;
    match reply {
        Some(r) if r == format!("ok {id}") => Ok(()),
        Some(r) => Err(format!("wrong reply {r:?}")),
        None => Err("the connection closed before the reply".into()),
    }
}

/// Answers one incoming connection.
async fn answer(mut conn: Connection) {
    let from = conn.peer().designator().to_owned();
    let mode = if conn.is_encrypted() {
        "encrypted"
    } else {
        "plaintext"
    };
    let request = match tokio::time::timeout(LINE_TIMEOUT, read_line(&mut conn)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            println!("incoming-error {from} closed before its request");
            return;
        }
        Ok(Err(e)) => {
            println!("incoming-error {from} {}", one_line(e));
            return;
        }
        Err(_) => {
            println!("incoming-error {from} no request within {LINE_TIMEOUT:?}");
            return;
        }
    };
    let Some(id) = request.strip_prefix("soak ") else {
        println!("incoming-error {from} bad request {request:?}");
        return;
    };
    println!("accepted {id} {from} {mode}");
    let _ = conn.write_all(format!("ok {id}\n").as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// One `\n`-terminated line of at most [`MAX_LINE`] bytes; `None` at end
/// of stream before any byte.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if s.read(&mut byte).await? == 0 {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the line was cut",
                ))
            };
        }
        if byte[0] == b'\n' {
            return String::from_utf8(line)
                .map(Some)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"));
        }
        line.push(byte[0]);
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Misbehaving clients.

/// Connects to the first --intro server, or prints why not.
async fn connect_raw(args: &Args) -> Option<UnixStream> {
    match UnixStream::connect(&args.intros[0]).await {
        Ok(s) => Some(s),
        Err(e) => {
            println!("cannot-connect {}", one_line(e));
            None
        }
    }
}

/// Writes `bytes` (a server that closes first is not an error here), then
/// reads and discards until the server closes the connection, or
/// [`CLOSE_PATIENCE`] has passed; prints `closed <ms>` or `not-closed <ms>`.
async fn send_and_wait_closed(s: &mut UnixStream, bytes: &[u8], started: Instant) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(CLOSE_PATIENCE, async {
        let _ = s.write_all(bytes).await;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let ms = started.elapsed().as_millis();
    match closed {
        Ok(()) => println!("closed {ms}"),
        Err(_) => println!("not-closed {ms}"),
    }
}

/// Random bytes (sometimes after a plausible start), then waits to be
/// closed.
async fn garbage(args: &Args) -> Result<(), BoxError> {
    let mut rng = Rng(args.seed);
    let Some(mut s) = connect_raw(args).await else {
        return Ok(());
    };
    let started = Instant::now();
    let prefix: &[u8] = match rng.below(3) {
        // A record that opens and never closes.
        0 => b"<12'uds:register",
        // A huge claimed length.
        1 => b"99999999999:",
        _ => b"",
    };
    let len = 1 + rng.below(8192) as usize;
    let mut bytes = prefix.to_vec();
    bytes.extend((0..len).map(|_| rng.next() as u8));
    send_and_wait_closed(&mut s, &bytes, started).await;
    Ok(())
}

/// Starts registering and stops half-way: either half a `uds:register`, or
/// a whole one whose challenge is never answered.
async fn stall(args: &Args) -> Result<(), BoxError> {
    let mut rng = Rng(args.seed);
    let Some(mut s) = connect_raw(args).await else {
        return Ok(());
    };
    let started = Instant::now();
    let hs = ClientHandshake::new(Arc::new(Identity::generate()), ClientConfig::default());
    let msg = hs.register_message();
    let cut = if rng.below(2) == 0 {
        msg.len()
    } else {
        1 + rng.below(msg.len() as u64 - 1) as usize
    };
    send_and_wait_closed(&mut s, &msg[..cut], started).await;
    Ok(())
}

/// A registered raw client: the connection, our locator and the server.
struct RawClient {
    stream: Arc<FdStream>,
    reader: IntroReader,
    locator: Locator,
}

/// Registers with the first --intro server, speaking the protocol by hand.
async fn register_raw(args: &Args) -> Result<Option<RawClient>, BoxError> {
    let Some(s) = connect_raw(args).await else {
        return Ok(None);
    };
    let stream = FdStream::from(s);
    let identity = Arc::new(Identity::generate());
    let mut hs = ClientHandshake::new(identity.clone(), ClientConfig::default());
    let mut reader = IntroReader::new(Limits::intro_channel());
    let registered = tokio::time::timeout(Duration::from_secs(10), async {
        UnitWriter::new(Outgoing::Message(Bytes::from(hs.register_message())))
            .write(&stream)
            .await?;
        let response = match reader.next(&stream).await? {
            Some(ChannelEvent::Message { value, .. }) => value,
            _ => return Err::<_, BoxError>("the server did not answer uds:register".into()),
        };
        let done = hs.receive(&response)?;
        UnitWriter::new(Outgoing::Message(Bytes::from(done.signature_message)))
            .write(&stream)
            .await?;
        Ok(done.server)
    })
    .await;
    let server = match registered {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            println!("cannot-connect registration failed: {}", one_line(e));
            return Ok(None);
        }
        Err(_) => {
            println!("cannot-connect registration did not finish within 10s");
            return Ok(None);
        }
    };
    Ok(Some(RawClient {
        stream: Arc::new(stream),
        reader,
        locator: identity.locator().with_hint(server),
    }))
}

/// Registers, then sends intros to random designators (a few repeated
/// ones, mostly new ones) for `--seconds`, reading what the server sends.
async fn flood(args: &Args) -> Result<(), BoxError> {
    let mut rng = Rng(args.seed);
    let Some(RawClient {
        stream,
        mut reader,
        locator,
    }) = register_raw(args).await?
    else {
        return Ok(());
    };
    let started = Instant::now();
    let (writer, writer_task) = IntroWriter::spawn(stream.clone(), 64, Duration::from_secs(10));
    let few: Vec<Designator> = (0..4).map(|_| Identity::generate().designator()).collect();
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut sent = 0u64;
    let sending = async {
        loop {
            let to = if rng.below(4) == 0 {
                few[rng.below(few.len() as u64) as usize]
            } else {
                Identity::generate().designator()
            };
            let record = NewConnection {
                from: locator.clone(),
                to: Locator::unix(to),
            };
            let theirs = match uds_fdpass::socketpair() {
                Ok((_ours, theirs)) => theirs,
                Err(e) => return format!("socketpair: {e}"),
            };
            let unit = Outgoing::Intro {
                record: Bytes::from(record.to_value().encode()),
                fd: theirs,
            };
            if let Err(e) = writer.send(unit).await {
                return one_line(e);
            }
            sent += 1;
        }
    };
    let reading = async {
        loop {
            match reader.next(&stream).await {
                Ok(Some(_)) => {}
                Ok(None) => return "end of stream".to_owned(),
                Err(e) => return one_line(e),
            }
        }
    };
    let outcome = tokio::select! {
        _ = tokio::time::sleep_until(until) => "done connected".to_owned(),
        e = sending => format!("write-failed disconnected {e}"),
        e = reading => format!("closed-by-server disconnected {e}"),
    };
    drop(writer);
    writer_task.abort();
    println!(
        "flood sent={sent} ms={} {outcome}",
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Registers, prints `ready <uri>`, and never reads from the server again
/// (until stdin closes). With `--self-intros N` it also sends N intros to
/// itself, so that what the server sends it piles up until the server
/// gives up on it; then prints `self-intros sent=<n> <done|write-failed
/// <message>>`.
async fn deaf(args: &Args) -> Result<(), BoxError> {
    let Some(client) = register_raw(args).await? else {
        return Ok(());
    };
    println!("ready {}", client.locator);
    let _writer = if args.self_intros > 0 {
        let (writer, task) = IntroWriter::spawn(client.stream.clone(), 16, Duration::from_secs(10));
        let me = client.locator.clone();
        let n = args.self_intros;
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut outcome = "done".to_owned();
            while sent < n {
                let theirs = match uds_fdpass::socketpair() {
                    Ok((_ours, theirs)) => theirs,
                    Err(e) => {
                        outcome = format!("socketpair: {e}");
                        break;
                    }
                };
                let record = NewConnection {
                    from: me.clone(),
                    to: me.clone(),
                };
                let unit = Outgoing::Intro {
                    record: Bytes::from(record.to_value().encode()),
                    fd: theirs,
                };
                if let Err(e) = writer.send(unit).await {
                    outcome = format!("write-failed {}", one_line(e));
                    break;
                }
                sent += 1;
            }
            println!("self-intros sent={sent} {outcome}");
            // Keep the writer (and the connection) until the process ends.
            std::future::pending::<()>().await;
        });
        Some(task)
    } else {
        None
    };
    let mut sink = BytesMut::new();
    let mut stdin = tokio::io::stdin();
    while stdin.read_buf(&mut sink).await? > 0 {
        sink.clear();
    }
    drop(client);
    Ok(())
}
