//! What the daemon's benchmarks share: starting the real daemon, raw
//! intro-channel clients, CPU time and memory of a process, the Ed25519
//! floor, and the JSON metrics file `cargo xtask bench` collects.

// Each benchmark uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;
use uds_fdpass::FdStream;
use uds_handshake::channel::{ChannelEvent, IntroChannel};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Limits, NewConnection, SCM_RIGHTS_BODY};

/// Intros a sender has in flight before it waits for its receiver (like
/// dialers waiting for an answer).
pub(crate) const WINDOW: usize = 32;

/// The real daemon (the build of this benchmark's profile), listening on
/// `socket`, admitting `max_clients` connections of this user, with no
/// admin socket. Returns once it printed its ready line.
pub(crate) fn start_introd(socket: &Path, max_clients: usize) -> Child {
    let n = max_clients.to_string();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_uds-introd"))
        .arg("--socket")
        .arg(socket)
        .args(["--no-admin", "--max-clients", &n])
        .args(["--max-clients-per-uid", &n, "--max-unregistered", &n])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start uds-introd");
    track(&daemon);
    let mut ready = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("uds-introd ready"), "{ready}");
    daemon
}

/// Raises `RLIMIT_NOFILE` (soft and hard) to `want`, or as close to it as
/// `/proc/sys/fs/nr_open` and our privileges allow; child processes inherit
/// it. Returns the soft limit in force afterwards and, if it is below
/// `want`, why.
pub(crate) fn raise_nofile(want: u64) -> (u64, Option<String>) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (1024, Some("getrlimit failed".into()));
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let mut why = (nr_open < want).then(|| format!("/proc/sys/fs/nr_open is {nr_open}"));
    let target = want.min(nr_open);
    if target > hard {
        match setrlimit(Resource::RLIMIT_NOFILE, target, target) {
            Ok(()) => return (target, why),
            Err(e) => {
                why = Some(format!(
                    "raising the hard limit from {hard} to {target} was refused ({e}: \
                     this process lacks CAP_SYS_RESOURCE)"
                ))
            }
        }
    }
    let target = target.min(hard).max(soft);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() {
        return (soft, why);
    }
    (target, why)
}

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Makes any panic (in any thread or task) kill the daemons started with
/// [`track`] and end the process, instead of leaving them and the other
/// tasks running.
pub(crate) fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        for &pid in CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        std::process::exit(101);
    }));
}

/// Records a child process for [`exit_on_panic`].
pub(crate) fn track(child: &Child) {
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child.id());
}

fn nanos(clock: ClockId) -> u64 {
    let t = clock_gettime(clock).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CPU time (user + system, all threads, nanoseconds) process `pid` has
/// used so far, from its POSIX CPU-time clock (exact, unlike the clock
/// ticks of `/proc/<pid>/stat`).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let clock = clock_getcpuclockid(Pid::from_raw(pid as i32)).expect("clock_getcpuclockid");
    nanos(clock)
}

/// CPU time used so far by this process (all threads).
pub(crate) fn own_cpu_ns() -> u64 {
    nanos(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time used so far by the calling thread.
pub(crate) fn thread_cpu_ns() -> u64 {
    nanos(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// Resident memory of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The floor of one registration's cryptography on the daemon's side: CPU
/// time (µs) of one Ed25519 signature of a 64-byte challenge
/// ([`Identity::sign_challenge`], as the daemon answers a client's
/// challenge) plus one strict verification ([`uds_handshake::verify`], as it
/// checks the client's signature), averaged over `n` of each on this thread.
pub(crate) fn sign_verify_floor_us(n: usize) -> f64 {
    let id = Identity::from_secret_bytes([7; 32]);
    let key = uds_handshake::verifying_key(&id.public_key()).unwrap();
    let mut challenge = [0u8; 64];
    let mut round = |i: usize| {
        // A different challenge each time, as in registrations.
        challenge[..8].copy_from_slice(&(i as u64).to_le_bytes());
        challenge[8..].fill(0xa5);
        let sig = id.sign_challenge(&challenge).expect("a valid challenge");
        assert!(uds_handshake::verify(
            &key,
            std::hint::black_box(&challenge),
            &sig
        ));
    };
    for i in 0..n / 10 {
        round(i);
    }
    let start = thread_cpu_ns();
    for i in 0..n {
        round(i);
    }
    (thread_cpu_ns() - start) as f64 / 1e3 / n as f64
}

/// `n` new identities, made on every core.
pub(crate) fn identities(n: usize) -> Vec<Arc<Identity>> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                s.spawn(move || {
                    (0..count)
                        .map(|_| Arc::new(Identity::generate()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

/// A registered client of the daemon.
pub(crate) struct Peer {
    pub(crate) stream: FdStream,
    pub(crate) chan: IntroChannel<OwnedFd>,
    pub(crate) identity: Arc<Identity>,
}

/// The next event on a peer's intro channel.
pub(crate) async fn next_event(p: &mut Peer) -> ChannelEvent<OwnedFd> {
    loop {
        if let Some(e) = p.chan.next_event().expect("valid input") {
            return e;
        }
        let got = p.stream.recv(p.chan.buffer_mut()).await.expect("recv");
        assert!(!got.is_eof(), "daemon closed a benchmark client");
        p.chan.push_fds(got.fds);
    }
}

/// Connects to the daemon at `socket` and registers `identity` (the full
/// client handshake: it checks the server's signature and signs its
/// challenge).
pub(crate) async fn register(socket: &Path, identity: Arc<Identity>) -> Peer {
    let stream = FdStream::from(
        tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect"),
    );
    let mut hs = ClientHandshake::new(identity.clone(), ClientConfig::default());
    let mut p = Peer {
        stream,
        chan: IntroChannel::new(Limits::intro_channel()),
        identity,
    };
    p.stream.send(&hs.register_message(), &[]).await.unwrap();
    let ChannelEvent::Message { value, .. } = next_event(&mut p).await else {
        panic!("expected a server response")
    };
    let done = hs.receive(&value).expect("handshake");
    p.stream.send(&done.signature_message, &[]).await.unwrap();
    p
}

/// Registers every identity of `ids` with at most `concurrency` handshakes
/// in flight, each a task of the runtime (so clients' work is spread over
/// its threads). Returns the peers in completion order.
pub(crate) async fn register_all(
    socket: &Arc<std::path::PathBuf>,
    ids: Vec<Arc<Identity>>,
    concurrency: usize,
) -> Vec<Peer> {
    let total = ids.len();
    let mut ids = ids.into_iter();
    let mut peers = Vec::with_capacity(total);
    let mut tasks = tokio::task::JoinSet::new();
    while peers.len() < total {
        while tasks.len() < concurrency {
            let Some(id) = ids.next() else { break };
            let s = socket.clone();
            tasks.spawn(async move { register(&s, id).await });
        }
        peers.push(tasks.join_next().await.unwrap().unwrap());
    }
    peers
}

/// Intros sent: each `(receiver, sender)` pair runs `per_pair` intros from
/// sender to receiver, passing the same socket each time (the receiver gets
/// a new fd every time and closes it), with at most [`WINDOW`] in flight.
/// Returns the peers and the elapsed time.
pub(crate) async fn intro_burst(
    pairs: Vec<(Peer, Peer)>,
    per_pair: usize,
) -> (Vec<(Peer, Peer)>, std::time::Duration) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut rx, tx)) in pairs.into_iter().enumerate() {
        tasks.spawn(async move {
            let (keep, give) = uds_fdpass::socketpair().unwrap();
            let record = NewConnection {
                from: tx.identity.locator(),
                to: rx.identity.locator(),
            }
            .to_value()
            .encode();
            let window = tokio::sync::Semaphore::new(WINDOW);
            let sender = async {
                for _ in 0..per_pair {
                    window.acquire().await.unwrap().forget();
                    tx.stream.send(&record, &[]).await.unwrap();
                    tx.stream
                        .send(&SCM_RIGHTS_BODY, &[give.as_fd()])
                        .await
                        .unwrap();
                }
            };
            let receiver = async {
                for _ in 0..per_pair {
                    match next_event(&mut rx).await {
                        ChannelEvent::Introduction { fd, .. } => drop(fd),
                        other => panic!("{other:?}"),
                    }
                    window.add_permits(1);
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

/// Metrics of one benchmark, printed as they come and written as the JSON
/// array `cargo xtask bench` reads (`$OCAPN_BENCH_REPORT_DIR/<file>`).
pub(crate) struct Report {
    group: &'static str,
    rows: Vec<(String, f64, &'static str)>,
}

impl Report {
    pub(crate) fn new(group: &'static str) -> Report {
        Report {
            group,
            rows: Vec::new(),
        }
    }

    /// Records (and prints) one metric.
    pub(crate) fn metric(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.3}")
        };
        println!("{}: {name:<56} {shown} {unit}", self.group);
        self.rows.push((name, value, unit));
    }

    /// Writes the JSON file when run by `cargo xtask bench`.
    pub(crate) fn write(&self, file: &str) {
        let Ok(dir) = std::env::var("OCAPN_BENCH_REPORT_DIR") else {
            return;
        };
        let rows: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, v, _)| v.is_finite())
            .map(|(name, value, unit)| {
                format!(
                    "{{\"group\":{},\"name\":{},\"value\":{value},\"unit\":{}}}",
                    json_string(self.group),
                    json_string(name),
                    json_string(unit)
                )
            })
            .collect();
        let path = Path::new(&dir).join(file);
        std::fs::write(&path, format!("[{}]\n", rows.join(",\n")))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `1k`, `10k`, `100k`, or the number itself.
pub(crate) fn size_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}
