//! The introduction server against `dbus-daemon`, the broker a Linux user
//! would otherwise use to pass a socket from one process to another,
//! measured in the same run with the same client pattern:
//!
//! * **CPU per passed fd**: 100 senders each pass 500 fds to their own
//!   receiver, at most 32 in flight per sender. Through `dbus-daemon` each
//!   is a `METHOD_CALL` (signature `h`, the fd in `SCM_RIGHTS`, no reply
//!   expected) to the receiver's unique name; through `uds-introd` an intro.
//!   Each daemon's CPU time (its POSIX CPU-time clock) over the calls gives
//!   `uds-introd CPU per intro ÷ dbus-daemon CPU per fd-carrying call`;
//! * **connect + first byte**: one end of a fresh socketpair passed to a
//!   receiver, which writes one byte back on it; the sender waits for that
//!   byte. Through `dbus-daemon`, through `uds-introd` with raw intro
//!   clients, and through the netlayer in plaintext mode (whose acceptor
//!   waits for the dialer's first byte, so there the dialer writes one byte
//!   first: one more write and read than the others). Rounds of each
//!   alternate, so the machine's load changes hit all three alike. The
//!   daemons' CPU time per connect is reported too (one intro at a time,
//!   it includes every wakeup of the daemon, which a burst amortises), and
//!   so is the clients' (this process's) for each path.
//!
//! Both daemons run as separate processes; the clients, written directly on
//! the D-Bus wire protocol (SASL `EXTERNAL`, `NEGOTIATE_UNIX_FD`, `Hello`)
//! and on the intro channel, are tasks of one runtime in this process.
//! Skipped, with the reason printed, when `dbus-daemon` is not installed.
//! Results go to stdout and, under `cargo xtask bench`, to
//! `$OCAPN_BENCH_REPORT_DIR/dbus.json`.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_fdpass::FdStream;
use uds_handshake::channel::ChannelEvent;
use uds_netlayer::UdsNetlayer;
use uds_syrup::{NewConnection, SCM_RIGHTS_BODY};

use common::{Peer, Report, WINDOW};

const PAIRS: usize = 100;
const CALLS_PER_PAIR: usize = 500;
/// Alternating rounds of the CPU measurement (each daemon gets as many).
const CPU_ROUNDS: usize = 2;
/// Alternating rounds of the connect measurement, and connects per round
/// and path.
const CONNECT_ROUNDS: usize = 10;
const CONNECTS_PER_ROUND: usize = 200;

fn main() {
    let Some(dbus_daemon) = find_program("dbus-daemon") else {
        println!("introd/dbus: skipped: dbus-daemon is not installed (not found in PATH)");
        return;
    };
    common::exit_on_panic();
    common::raise_nofile(16_384);
    let dir = tempfile::tempdir().unwrap();
    let (mut bus, bus_path) = start_bus(&dbus_daemon, dir.path());
    let intro_socket = Arc::new(dir.path().join("intro.sock"));
    let mut introd = common::start_introd(&intro_socket, 4 * PAIRS + 64);
    let (bus_pid, introd_pid) = (bus.id(), introd.id());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = Report::new("introd/dbus");
    rt.block_on(async {
        // CPU per passed fd.
        let mut bus_pairs = Vec::new();
        for _ in 0..PAIRS {
            let rx = Bus::connect(&bus_path).await;
            let tx = Bus::connect(&bus_path).await;
            bus_pairs.push((rx, tx));
        }
        let ids = common::identities(2 * PAIRS);
        let mut peers = common::register_all(&intro_socket, ids, 64)
            .await
            .into_iter();
        let mut intro_pairs = Vec::new();
        while let (Some(rx), Some(tx)) = (peers.next(), peers.next()) {
            intro_pairs.push((rx, tx));
        }
        let (mut bus_ns, mut bus_wall, mut introd_ns, mut introd_wall) =
            (0, Duration::ZERO, 0, Duration::ZERO);
        for _ in 0..CPU_ROUNDS {
            let c0 = common::cpu_ns(bus_pid);
            let (back, wall) = bus_burst(bus_pairs, CALLS_PER_PAIR).await;
            bus_pairs = back;
            bus_ns += common::cpu_ns(bus_pid) - c0;
            bus_wall += wall;

            let c0 = common::cpu_ns(introd_pid);
            let (back, wall) = common::intro_burst(intro_pairs, CALLS_PER_PAIR).await;
            intro_pairs = back;
            introd_ns += common::cpu_ns(introd_pid) - c0;
            introd_wall += wall;
        }
        let n = (CPU_ROUNDS * PAIRS * CALLS_PER_PAIR) as f64;
        let (bus_us, introd_us) = (bus_ns as f64 / 1e3 / n, introd_ns as f64 / 1e3 / n);
        report.metric("dbus-daemon CPU per fd-carrying call", bus_us, "µs");
        report.metric("uds-introd CPU per intro", introd_us, "µs");
        report.metric(
            "uds-introd CPU per intro ÷ dbus-daemon CPU per call",
            introd_us / bus_us,
            "×",
        );
        report.metric(
            "dbus-daemon fd-carrying calls/s",
            n / bus_wall.as_secs_f64(),
            "/s",
        );
        report.metric("uds-introd intros/s", n / introd_wall.as_secs_f64(), "/s");

        // Connect + first byte: one more pair of each kind, whose receiver
        // answers every socket with one byte.
        let (bus_rx, mut bus_tx) = (Bus::connect(&bus_path).await, Bus::connect(&bus_path).await);
        let bus_target = bus_rx.name.clone();
        let bus_answerer = tokio::spawn(bus_answer(bus_rx));
        let (intro_rx, intro_tx) = intro_pairs.pop().unwrap();
        let intro_record = NewConnection {
            from: intro_tx.identity.locator(),
            to: intro_rx.identity.locator(),
        }
        .to_value()
        .encode();
        let intro_answerer = tokio::spawn(intro_answer(intro_rx));
        let build = || {
            UdsNetlayer::builder()
                .intro_path(intro_socket.as_path())
                .plaintext()
                .build()
                .unwrap()
        };
        let (dialer, acceptor) = (build(), build());
        dialer.registered().await;
        acceptor.registered().await;
        let target = acceptor.location();
        let acceptor2 = acceptor.clone();
        let net_answerer = tokio::spawn(async move {
            while let Ok(mut conn) = acceptor2.accept().await {
                if conn.write_all(&[1]).await.is_err() || conn.flush().await.is_err() {
                    return;
                }
            }
        });

        // Time of each path, the CPU time its daemon spent on it, and ours.
        // The loop runs in a task (as an application's would): driving I/O
        // from `block_on` would add a wakeup of the main thread per step.
        let (times, cpu, own, clients) = tokio::spawn(async move {
            let mut times = [Duration::ZERO; 3];
            let mut cpu = [0u64; 3];
            let mut own = [0u64; 3];
            // One untimed round first.
            for round in 0..=CONNECT_ROUNDS {
                let mut t = [(Duration::ZERO, 0u64, 0u64); 3];
                let o0 = common::own_cpu_ns();
                let (c0, start) = (common::cpu_ns(bus_pid), Instant::now());
                for _ in 0..CONNECTS_PER_ROUND {
                    let (ours, theirs) = uds_fdpass::socketpair().unwrap();
                    let msg = bus_tx.fd_call(&bus_target);
                    bus_tx.stream.send(&msg, &[theirs.as_fd()]).await.unwrap();
                    drop(theirs);
                    first_byte(ours).await;
                }
                t[0] = (
                    start.elapsed(),
                    common::cpu_ns(bus_pid) - c0,
                    common::own_cpu_ns() - o0,
                );
                let o0 = common::own_cpu_ns();
                let (c0, start) = (common::cpu_ns(introd_pid), Instant::now());
                for _ in 0..CONNECTS_PER_ROUND {
                    let (ours, theirs) = uds_fdpass::socketpair().unwrap();
                    intro_tx.stream.send(&intro_record, &[]).await.unwrap();
                    intro_tx
                        .stream
                        .send(&SCM_RIGHTS_BODY, &[theirs.as_fd()])
                        .await
                        .unwrap();
                    drop(theirs);
                    first_byte(ours).await;
                }
                t[1] = (
                    start.elapsed(),
                    common::cpu_ns(introd_pid) - c0,
                    common::own_cpu_ns() - o0,
                );
                let o0 = common::own_cpu_ns();
                let (c0, start) = (common::cpu_ns(introd_pid), Instant::now());
                for _ in 0..CONNECTS_PER_ROUND {
                    let mut conn = dialer.connect(&target).await.unwrap();
                    conn.write_all(b"!").await.unwrap();
                    conn.flush().await.unwrap();
                    let mut one = [0u8; 1];
                    conn.read_exact(&mut one).await.unwrap();
                }
                t[2] = (
                    start.elapsed(),
                    common::cpu_ns(introd_pid) - c0,
                    common::own_cpu_ns() - o0,
                );
                if round > 0 {
                    for (i, (elapsed, used, ours)) in t.into_iter().enumerate() {
                        times[i] += elapsed;
                        cpu[i] += used;
                        own[i] += ours;
                    }
                }
            }
            (times, cpu, own, (bus_tx, intro_tx, dialer))
        })
        .await
        .unwrap();
        let per = (CONNECT_ROUNDS * CONNECTS_PER_ROUND) as f64;
        let [bus_t, intro_t, net_t] = times.map(|t| t.as_secs_f64() * 1e6 / per);
        let [bus_c, intro_c, net_c] = cpu.map(|c| c as f64 / 1e3 / per);
        let [bus_o, intro_o, net_o] = own.map(|c| c as f64 / 1e3 / per);
        report.metric("connect + first byte: dbus-daemon", bus_t, "µs");
        report.metric("connect + first byte: uds-introd", intro_t, "µs");
        report.metric("connect + first byte: netlayer (plaintext)", net_t, "µs");
        report.metric("dbus-daemon CPU per connect", bus_c, "µs");
        report.metric("uds-introd CPU per connect (raw clients)", intro_c, "µs");
        report.metric("uds-introd CPU per connect (netlayer)", net_c, "µs");
        report.metric("clients' CPU per connect: D-Bus", bus_o, "µs");
        report.metric("clients' CPU per connect: raw intro", intro_o, "µs");
        report.metric("clients' CPU per connect: netlayer", net_o, "µs");
        report.metric(
            "connect + first byte: uds-introd ÷ dbus-daemon",
            intro_t / bus_t,
            "×",
        );
        report.metric(
            "connect + first byte: netlayer ÷ dbus-daemon",
            net_t / bus_t,
            "×",
        );

        bus_answerer.abort();
        intro_answerer.abort();
        net_answerer.abort();
        drop((clients, acceptor));
        drop((bus_pairs, intro_pairs));
    });
    let _ = bus.kill();
    let _ = bus.wait();
    let _ = introd.kill();
    let _ = introd.wait();
    report.write("dbus.json");
}

/// Waits for the byte the receiver writes on the socket it was given.
async fn first_byte(ours: OwnedFd) {
    let std = StdStream::from(ours);
    std.set_nonblocking(true).unwrap();
    let mut s = tokio::net::UnixStream::from_std(std).unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
}

/// Writes one byte on a socket received from a daemon, and closes it.
fn answer(fd: OwnedFd) {
    StdStream::from(fd).write_all(&[1]).unwrap();
}

/// Answers every socket that arrives through `dbus-daemon`.
async fn bus_answer(mut rx: Bus) {
    while let Some(mut m) = rx.next_message().await {
        if let Some(fd) = m.take_fd_arg() {
            answer(fd);
        }
    }
}

/// Answers every socket that arrives through `uds-introd`.
async fn intro_answer(mut rx: Peer) {
    loop {
        if let ChannelEvent::Introduction { fd, .. } = common::next_event(&mut rx).await {
            answer(fd);
        }
    }
}

/// Each pair's sender passes `per_pair` fds to its receiver through the
/// bus with at most [`WINDOW`] in flight (the pattern of
/// [`common::intro_burst`]). Returns the pairs and the elapsed time.
async fn bus_burst(pairs: Vec<(Bus, Bus)>, per_pair: usize) -> (Vec<(Bus, Bus)>, Duration) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut rx, mut tx)) in pairs.into_iter().enumerate() {
        tasks.spawn(async move {
            let (keep, give) = uds_fdpass::socketpair().unwrap();
            let target = rx.name.clone();
            let window = tokio::sync::Semaphore::new(WINDOW);
            let sender = async {
                for _ in 0..per_pair {
                    window.acquire().await.unwrap().forget();
                    let msg = tx.fd_call(&target);
                    tx.stream.send(&msg, &[give.as_fd()]).await.unwrap();
                }
            };
            let receiver = async {
                let mut got = 0;
                while got < per_pair {
                    let mut m = rx.next_message().await.expect("the bus closed");
                    if m.take_fd_arg().is_some() {
                        got += 1;
                        window.add_permits(1);
                    }
                }
            };
            tokio::join!(sender, receiver);
            drop((keep, give));
            (i, (rx, tx))
        });
    }
    let mut back = Vec::new();
    while let Some(r) = tasks.join_next().await {
        back.push(r.unwrap());
    }
    let elapsed = start.elapsed();
    back.sort_by_key(|(i, _)| *i);
    (back.into_iter().map(|(_, p)| p).collect(), elapsed)
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A private bus: `dbus-daemon` with a configuration of our own (a socket
/// in `dir`, `EXTERNAL` authentication, everything allowed, the session
/// bus's generous limits), in the foreground. Returns once it listens.
fn start_bus(program: &Path, dir: &Path) -> (Child, PathBuf) {
    let socket = dir.join("bus.sock");
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"#,
            socket.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(program)
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--print-address"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dbus-daemon");
    common::track(&child);
    let mut address = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    assert!(
        address.starts_with("unix:path="),
        "dbus-daemon: {address:?}"
    );
    (child, socket)
}

// The D-Bus wire protocol, as much of it as the benchmark uses: messages in
// little-endian byte order, header fields of types o, s, g and u.

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const NO_REPLY_EXPECTED: u8 = 0x1;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;
const FIELD_UNIX_FDS: u8 = 9;

/// The member the benchmark's receivers take an fd with.
const TAKE: &str = "Take";

enum Field<'a> {
    Path(&'a str),
    Str(&'a str),
    Sig(&'a str),
    U32(u32),
}

fn pad(m: &mut Vec<u8>, to: usize) {
    while !m.len().is_multiple_of(to) {
        m.push(0);
    }
}

/// One message: the fixed header, the header fields, the body.
fn encode(kind: u8, flags: u8, serial: u32, fields: &[(u8, Field<'_>)], body: &[u8]) -> Vec<u8> {
    let mut m = vec![b'l', kind, flags, 1];
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&[0; 4]); // length of the field array, below
    for (code, value) in fields {
        pad(&mut m, 8);
        m.push(*code);
        match value {
            Field::Path(s) | Field::Str(s) => {
                let sig = if matches!(value, Field::Path(_)) {
                    b'o'
                } else {
                    b's'
                };
                m.extend_from_slice(&[1, sig, 0]);
                pad(&mut m, 4);
                m.extend_from_slice(&(s.len() as u32).to_le_bytes());
                m.extend_from_slice(s.as_bytes());
                m.push(0);
            }
            Field::Sig(s) => {
                m.extend_from_slice(&[1, b'g', 0, s.len() as u8]);
                m.extend_from_slice(s.as_bytes());
                m.push(0);
            }
            Field::U32(v) => {
                m.extend_from_slice(&[1, b'u', 0]);
                pad(&mut m, 4);
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let fields_len = (m.len() - 16) as u32;
    m[12..16].copy_from_slice(&fields_len.to_le_bytes());
    pad(&mut m, 8);
    m.extend_from_slice(body);
    m
}

/// A received message (the parts the benchmark looks at).
struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    member: Option<String>,
    error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Message {
    /// The fd argument of a `Take(h)` call, if this is one.
    fn take_fd_arg(&mut self) -> Option<OwnedFd> {
        if self.kind != METHOD_CALL || self.member.as_deref() != Some(TAKE) {
            return None;
        }
        assert_eq!(self.signature, "h", "Take carries one fd");
        let index = u32::from_le_bytes(self.body.get(..4)?.try_into().ok()?) as usize;
        assert!(index < self.fds.len(), "fd index {index} out of range");
        Some(self.fds.swap_remove(index))
    }

    /// The string argument of a reply with signature `s`.
    fn string_arg(&self) -> String {
        assert_eq!(self.signature, "s");
        let len = u32::from_le_bytes(self.body[..4].try_into().unwrap()) as usize;
        String::from_utf8(self.body[4..4 + len].to_vec()).unwrap()
    }
}

/// Reads little-endian D-Bus data with bounds checks.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn align(&mut self, to: usize) {
        self.pos = self.pos.next_multiple_of(to);
    }
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or("a header field runs past the header")?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.align(4);
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    /// A string of type s or o (u32 length), or g (u8 length), and its NUL.
    fn string(&mut self, sig: u8) -> Result<String, String> {
        let len = if sig == b'g' {
            self.u8()? as usize
        } else {
            self.u32()? as usize
        };
        let s = String::from_utf8(self.bytes(len)?.to_vec()).map_err(|e| e.to_string())?;
        if self.u8()? != 0 {
            return Err("a string is not NUL-terminated".into());
        }
        Ok(s)
    }
}

/// Splits one complete message off the front of `buf` (`None`: not all
/// there yet). Fds are attached by the caller.
fn parse(buf: &mut BytesMut) -> Result<Option<(Message, u32)>, String> {
    if buf.len() < 16 {
        return Ok(None);
    }
    if buf[0] != b'l' || buf[3] != 1 {
        return Err(format!(
            "not a little-endian D-Bus 1 message (endianness {:?}, version {})",
            buf[0] as char, buf[3]
        ));
    }
    let word = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
    let (body_len, fields_len) = (word(4), word(12));
    let body_at = (16 + fields_len).next_multiple_of(8);
    if buf.len() < body_at + body_len {
        return Ok(None);
    }
    let mut m = Message {
        kind: buf[1],
        reply_serial: None,
        member: None,
        error_name: None,
        signature: String::new(),
        body: buf[body_at..body_at + body_len].to_vec(),
        fds: Vec::new(),
    };
    let mut unix_fds = 0;
    let mut c = Cursor {
        b: &buf[..16 + fields_len],
        pos: 16,
    };
    while c.pos < 16 + fields_len {
        c.align(8);
        let code = c.u8()?;
        let sig = c.bytes(3)?;
        let (len, sig, nul) = (sig[0], sig[1], sig[2]);
        if len != 1 || nul != 0 {
            return Err(format!("header field {code}: not a single complete type"));
        }
        match sig {
            b's' | b'o' | b'g' => {
                let s = c.string(sig)?;
                match code {
                    FIELD_MEMBER => m.member = Some(s),
                    FIELD_ERROR_NAME => m.error_name = Some(s),
                    FIELD_SIGNATURE => m.signature = s,
                    _ => {}
                }
            }
            b'u' => {
                let v = c.u32()?;
                match code {
                    FIELD_REPLY_SERIAL => m.reply_serial = Some(v),
                    FIELD_UNIX_FDS => unix_fds = v,
                    _ => {}
                }
            }
            other => {
                return Err(format!(
                    "header field {code} of type {:?} is not handled here",
                    other as char
                ));
            }
        }
    }
    buf.advance(body_at + body_len);
    Ok(Some((m, unix_fds)))
}

/// A connection to the bus.
struct Bus {
    stream: FdStream,
    buf: BytesMut,
    /// Fds received and not yet attached to a message, in order.
    fds: VecDeque<OwnedFd>,
    serial: u32,
    /// Our unique name (from `Hello`).
    name: String,
}

impl Bus {
    /// Connects, authenticates (`EXTERNAL`, as our uid), negotiates fd
    /// passing, and says `Hello`.
    async fn connect(path: &Path) -> Bus {
        let stream = FdStream::from(tokio::net::UnixStream::connect(path).await.unwrap());
        let mut bus = Bus {
            stream,
            buf: BytesMut::new(),
            fds: VecDeque::new(),
            serial: 0,
            name: String::new(),
        };
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let auth = format!("\0AUTH EXTERNAL {}\r\n", hex::encode(uid));
        bus.stream.send(auth.as_bytes(), &[]).await.unwrap();
        let ok = bus.line().await;
        assert!(ok.starts_with("OK "), "dbus-daemon refused us: {ok}");
        bus.stream
            .send(b"NEGOTIATE_UNIX_FD\r\n", &[])
            .await
            .unwrap();
        let agree = bus.line().await;
        assert_eq!(agree, "AGREE_UNIX_FD", "dbus-daemon will not pass fds");
        bus.stream.send(b"BEGIN\r\n", &[]).await.unwrap();

        let serial = bus.next_serial();
        let hello = encode(
            METHOD_CALL,
            0,
            serial,
            &[
                (FIELD_PATH, Field::Path("/org/freedesktop/DBus")),
                (FIELD_INTERFACE, Field::Str("org.freedesktop.DBus")),
                (FIELD_MEMBER, Field::Str("Hello")),
                (FIELD_DESTINATION, Field::Str("org.freedesktop.DBus")),
            ],
            &[],
        );
        bus.stream.send(&hello, &[]).await.unwrap();
        loop {
            let m = bus.next_message().await.expect("the bus closed");
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => {
                    bus.name = m.string_arg();
                    return bus;
                }
                ERROR if m.reply_serial == Some(serial) => {
                    panic!("Hello failed: {:?}", m.error_name)
                }
                _ => {}
            }
        }
    }

    fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    /// One line of the authentication conversation, without its CRLF.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(end + 2);
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let got = self.stream.recv(&mut self.buf).await.unwrap();
            assert!(!got.is_eof(), "dbus-daemon closed the connection");
        }
    }

    /// A `Take(h)` call to `destination`, its fd to be sent with it.
    fn fd_call(&mut self, destination: &str) -> Vec<u8> {
        let serial = self.next_serial();
        encode(
            METHOD_CALL,
            NO_REPLY_EXPECTED,
            serial,
            &[
                (FIELD_PATH, Field::Path("/org/ocapn/Bench")),
                (FIELD_INTERFACE, Field::Str("org.ocapn.Bench")),
                (FIELD_MEMBER, Field::Str(TAKE)),
                (FIELD_DESTINATION, Field::Str(destination)),
                (FIELD_SIGNATURE, Field::Sig("h")),
                (FIELD_UNIX_FDS, Field::U32(1)),
            ],
            &0u32.to_le_bytes(),
        )
    }

    /// The next message with its fds, or `None` at end of stream.
    async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let Some((mut m, n)) = parse(&mut self.buf).expect("a valid message") {
                for _ in 0..n {
                    m.fds
                        .push(self.fds.pop_front().expect("the message's fds arrived"));
                }
                return Some(m);
            }
            let got = self.stream.recv(&mut self.buf).await.unwrap();
            if got.is_eof() {
                return None;
            }
            self.fds.extend(got.fds);
        }
    }
}
