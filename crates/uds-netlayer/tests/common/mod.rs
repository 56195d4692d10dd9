//! Test harness: the real `uds-introd`, and in-process test doubles of
//! introduction servers that speak other implementations' shapes or lie.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::UnixListener;
use uds_fdpass::FdStream;
use uds_handshake::channel::{ChannelEvent, IntroChannel};
use uds_handshake::{Identity, ServerHandshake, ServerStep};
use uds_syrup::{
    Designator, Dict, Limits, Locator, NewConnection, SCM_RIGHTS_BODY, Value, WireProfile,
};

pub const PATIENCE: Duration = Duration::from_secs(20);

/// The `uds-introd` binary of this workspace, built (or brought up to
/// date) once per test process: `cargo test -p uds-netlayer` alone would
/// otherwise run a stale one.
pub fn introd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_owned();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "uds-introd",
                "--bin",
                "uds-introd",
            ])
            .status()
            .expect("cargo build uds-introd");
        assert!(status.success(), "building uds-introd failed");
        dir.join("uds-introd")
    })
    .clone()
}

/// For tests that run without libtest's harness (their binary is also a
/// helper process): the tests libtest's command line selects (name filters,
/// `--exact`, `--skip`), or `None` after printing them for `--list`.
pub fn select_tests<T: Copy>(tests: &[(&'static str, T)]) -> Option<Vec<(&'static str, T)>> {
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let (mut exact, mut list) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let selected = |name: &str| {
        (filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            }))
            && !skips.iter().any(|s| name.contains(s.as_str()))
    };
    let chosen: Vec<(&'static str, T)> =
        tests.iter().filter(|(n, _)| selected(n)).copied().collect();
    if list {
        for (name, _) in &chosen {
            println!("{name}: test");
        }
        return None;
    }
    Some(chosen)
}

/// The `uds-peer` binary (this package's).
pub const PEER_BIN: &str = env!("CARGO_BIN_EXE_uds-peer");

pub fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netlayer-test")
        .tempdir()
        .unwrap()
}

/// A running `uds-introd`, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub id: Designator,
}

impl Daemon {
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> Daemon {
        let socket = dir.join(format!("{name}.sock"));
        let mut cmd = Command::new(introd_bin());
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(dir.join(format!("{name}.key")))
            .args(extra);
        Daemon::spawn(cmd, socket)
    }

    /// Starts a prepared `uds-introd` command and reads its ready line.
    pub fn spawn(mut cmd: Command, socket: PathBuf) -> Daemon {
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("UDS_TEST_DAEMON_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start uds-introd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let id = line
            .trim()
            .rsplit_once(" id=")
            .unwrap_or_else(|| panic!("no ready line: {line:?}"))
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Daemon { child, socket, id }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The daemon's `status` report (counters and refusal reasons), for
    /// failure messages.
    pub fn status(&self) -> String {
        match Command::new(introd_bin())
            .arg("status")
            .arg("--socket")
            .arg(&self.socket)
            .output()
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(uds-introd status: {e})"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs an async test body on its own runtime and checks that this
/// process's fd count is the same before and after (the runtime included).
/// Tests counting fds take a lock so they do not see each other's.
pub fn no_leak<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // The netlayer's warnings (refused intros, server errors) appear in the
    // output of a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("uds_netlayer=debug"))
        .with_test_writer()
        .try_init();
    // tokio's signal driver opens a process-wide socketpair the first time a
    // runtime with it is built, and keeps it: create it before counting.
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| {
        drop(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
    });
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let list = || {
        let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                Some(format!(
                    "{}->{}",
                    e.file_name().to_string_lossy(),
                    std::fs::read_link(e.path()).ok()?.display()
                ))
            })
            .collect();
        v.sort();
        v
    };
    let before = count();
    let before_list = list();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(PATIENCE * 3, body())
            .await
            .expect("test hung")
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    // Child processes and their pipes are gone once reaped; give the
    // kernel a moment to finish closing sockets of killed processes.
    for _ in 0..100 {
        if count() == before {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        count(),
        before,
        "file descriptors leaked: before {before_list:?}, after {:?}",
        list()
    );
}

/// How a test double misbehaves (or which implementation it imitates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Goblins' shapes, strictly: answers with a bare sig-val, requires the
    /// raw 64-byte signature, forwards locators with hint values "t" / t,
    /// and sends a second fd with each intro.
    Goblins,
    /// The draft's shapes, strictly: requires a sig-val list.
    Draft,
    /// Registers peers but closes every intro's socket instead of passing
    /// it (an intro server that cannot deliver).
    DropIntros,
    /// Delivers intros with `to` changed to another peer.
    WrongTo,
    /// Delivers a pipe instead of the socket.
    NonSocket,
    /// Keeps the dialer's socket and delivers a socketpair of its own,
    /// relaying the bytes between the two.
    Relay,
    /// Registers peers, then never reads from them again.
    Stalled,
    /// Registers peers, reads nothing until the gate opens, then checks
    /// every intro it reads (recording framing errors) and keeps it.
    Gated,
    /// Registers peers and takes their intros, but never delivers them and
    /// never closes them.
    Blackhole,
}

/// What a [`Mode::Gated`] server saw.
#[derive(Default)]
pub struct Observed {
    /// Registrations refused because the client used the other shape.
    pub wrong_shape: std::sync::atomic::AtomicUsize,
    pub gate: tokio::sync::Notify,
    pub intros: std::sync::atomic::AtomicUsize,
    pub errors: Mutex<Vec<String>>,
    pub held: Mutex<Vec<OwnedFd>>,
}

/// An in-process test double of an introduction server.
pub struct TestServer {
    pub socket: PathBuf,
    pub id: Designator,
    pub observed: Arc<Observed>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Peers = Arc<Mutex<HashMap<Designator, Arc<FdStream>>>>;

impl TestServer {
    pub fn start(dir: &Path, name: &str, mode: Mode) -> TestServer {
        let socket = dir.join(format!("{name}.sock"));
        let listener = UnixListener::bind(&socket).unwrap();
        let identity = Arc::new(Identity::generate());
        let id = identity.designator();
        let peers: Peers = Arc::default();
        let observed = Arc::new(Observed::default());
        let obs = observed.clone();
        let task = tokio::spawn(async move {
            let mut clients = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                clients.spawn(serve(
                    FdStream::from(stream),
                    identity.clone(),
                    peers.clone(),
                    mode,
                    obs.clone(),
                ));
            }
        });
        TestServer {
            socket,
            id,
            observed,
            task,
        }
    }
}

async fn next(
    stream: &FdStream,
    chan: &mut IntroChannel<OwnedFd>,
) -> Option<ChannelEvent<OwnedFd>> {
    loop {
        match chan.next_event() {
            Ok(Some(e)) => return Some(e),
            Ok(None) => {}
            Err(_) => return None,
        }
        let got = stream.recv(chan.buffer_mut()).await.ok()?;
        if got.is_eof() {
            return None;
        }
        chan.push_fds(got.fds);
    }
}

/// A locator re-written with Goblins' hint values: "t" for the first hint,
/// `t` for the others.
fn goblins_hints(loc: &Locator) -> Value {
    let mut hints = Dict::new();
    for (i, h) in loc.hints().enumerate() {
        let v = if i == 0 {
            Value::string("t")
        } else {
            Value::Bool(true)
        };
        hints.insert(Value::string(h), v);
    }
    let hints = if hints.is_empty() {
        Value::Bool(false)
    } else {
        Value::Dict(hints)
    };
    Value::record(
        Value::symbol("ocapn-peer"),
        [
            Value::symbol(loc.transport()),
            Value::string(loc.designator()),
            hints,
        ],
    )
}

async fn serve(
    stream: FdStream,
    identity: Arc<Identity>,
    peers: Peers,
    mode: Mode,
    observed: Arc<Observed>,
) {
    let stream = Arc::new(stream);
    let mut chan = IntroChannel::new(Limits::intro_channel());
    let profile = if mode == Mode::Goblins {
        WireProfile::Goblins
    } else {
        WireProfile::Draft
    };
    let mut hs = ServerHandshake::new(identity, profile);
    // Registration, with the strictness of the imitated implementation.
    let me = loop {
        let Some(ChannelEvent::Message { value, .. }) = next(&stream, &mut chan).await else {
            return;
        };
        if let Some(sig) = value.as_record_labeled("uds:signature") {
            let raw = sig.field(1).is_some_and(|f| f.as_bytes().is_some());
            if (mode == Mode::Goblins) != raw {
                // The other shape: this implementation refuses it.
                observed
                    .wrong_shape
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        }
        match hs.receive(&value) {
            Ok(ServerStep::Send(bytes)) => {
                if stream.send(&bytes, &[]).await.is_err() {
                    return;
                }
            }
            Ok(ServerStep::Registered(r)) => break r.designator,
            Err(_) => return,
        }
    };
    peers.lock().unwrap().insert(me, stream.clone());
    match mode {
        Mode::Stalled => {
            // Holds the connection open and never reads again.
            std::future::pending::<()>().await;
        }
        Mode::Gated => {
            observed.gate.notified().await;
            loop {
                match chan.next_event() {
                    Ok(Some(ChannelEvent::Introduction { fd, .. })) => {
                        observed
                            .intros
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        observed.held.lock().unwrap().push(fd);
                        continue;
                    }
                    Ok(Some(other)) => {
                        observed.errors.lock().unwrap().push(format!("{other:?}"));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        observed.errors.lock().unwrap().push(e.to_string());
                        return;
                    }
                }
                let Ok(got) = stream.recv(chan.buffer_mut()).await else {
                    return;
                };
                if got.is_eof() {
                    return;
                }
                chan.push_fds(got.fds);
            }
        }
        _ => {}
    }
    while let Some(event) = next(&stream, &mut chan).await {
        let ChannelEvent::Introduction {
            record, raw, fd, ..
        } = event
        else {
            return;
        };
        let Ok(to) = record.to.designator_key() else {
            return;
        };
        if mode == Mode::Blackhole {
            observed.held.lock().unwrap().push(fd);
            continue;
        }
        // Registration has no acknowledgement: the target may count itself
        // registered before this server has read its signature. Wait for it
        // a while, as uds-introd does.
        let mut target = None;
        for _ in 0..400 {
            target = peers.lock().unwrap().get(&to).cloned();
            if target.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let Some(target) = target else {
            continue;
        };
        deliver(mode, &target, &record, raw.to_vec(), fd, &peers).await;
    }
    peers.lock().unwrap().remove(&me);
}

async fn deliver(
    mode: Mode,
    target: &FdStream,
    record: &NewConnection,
    raw: Vec<u8>,
    fd: OwnedFd,
    peers: &Peers,
) {
    let send = |bytes: Vec<u8>, fds: Vec<OwnedFd>| async move {
        let _ = target.send(&bytes, &[]).await;
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let _ = target.send(&SCM_RIGHTS_BODY, &borrowed).await;
    };
    match mode {
        Mode::Goblins => {
            let rec = Value::record(
                Value::symbol("uds:new-connection"),
                [goblins_hints(&record.from), goblins_hints(&record.to)],
            )
            .encode();
            let (extra, _keep) = uds_fdpass::socketpair().unwrap();
            send(rec, vec![fd, extra]).await;
        }
        Mode::Draft => send(raw, vec![fd]).await,
        Mode::DropIntros | Mode::Stalled | Mode::Gated | Mode::Blackhole => drop(fd),
        Mode::WrongTo => {
            let someone_else = peers
                .lock()
                .unwrap()
                .keys()
                .copied()
                .find(|d| {
                    Ok(*d) != record.to.designator_key() && Ok(*d) != record.from.designator_key()
                })
                .unwrap_or_else(|| Identity::generate().designator());
            let lie = NewConnection {
                from: record.from.clone(),
                to: Locator::unix(someone_else),
            };
            send(lie.to_value().encode(), vec![fd]).await;
        }
        Mode::NonSocket => {
            drop(fd);
            let (r, _w) = nix::unistd::pipe().unwrap();
            send(raw, vec![r]).await;
        }
        Mode::Relay => {
            let (ours, theirs) = uds_fdpass::socketpair().unwrap();
            send(raw, vec![theirs]).await;
            tokio::spawn(async move {
                let a = to_tokio(fd);
                let b = to_tokio(ours);
                let (mut ar, mut aw) = tokio::io::split(a);
                let (mut br, mut bw) = tokio::io::split(b);
                let _ = tokio::join!(
                    tokio::io::copy(&mut ar, &mut bw),
                    tokio::io::copy(&mut br, &mut aw)
                );
            });
        }
    }
}

pub fn to_tokio(fd: OwnedFd) -> tokio::net::UnixStream {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).unwrap();
    tokio::net::UnixStream::from_std(std).unwrap()
}

/// Waits until `net` is registered with `n` servers.
pub async fn registered_with(net: &uds_netlayer::UdsNetlayer, n: usize) {
    let mut changes = net.server_changes();
    tokio::time::timeout(PATIENCE, async {
        while net.registered_servers().len() < n {
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not registered with {n} servers: {:?}", net.servers()));
}

/// A child process killed (and reaped) when dropped, so that a test that
/// fails half-way leaves no process behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
