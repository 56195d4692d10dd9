//! Confinement tests.
//!
//! Confinement cannot be undone and must happen while the process has a
//! single thread, so every scenario runs in a child process: this test binary
//! re-executed with `UDS_SANDBOX_SCENARIO` naming the scenario. The file has
//! its own `main` (`harness = false` in Cargo.toml) because libtest runs
//! tests on threads of their own: the child must confine on its main thread
//! before any other thread exists.
//!
//! Each scenario first checks that what it will later expect to fail works
//! before confining, so that every negative assertion would fail if the
//! confinement were removed. The parent side of a test prepares files and
//! sockets, plays the unconfined party (a server that restarts, a client of
//! the confined process), checks the outcome, and counts its own fds.
//!
//! A scenario skips (printing why) only when `require` reports that the
//! kernel lacks a Landlock feature; the first test learns the kernel's ABI in
//! mode `auto`, and a later scenario that skips for a feature that ABI has
//! fails instead.

use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, Write};
use std::net::{TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use uds_sandbox::{Filesystem, Landlock, Policy, Report, SandboxError, SandboxMode};

const SCENARIO: &str = "UDS_SANDBOX_SCENARIO";
const DIR: &str = "UDS_SANDBOX_TEST_DIR";
const ARG: &str = "UDS_SANDBOX_TEST_ARG";
const KERNEL_ABI: &str = "UDS_SANDBOX_KERNEL_ABI";

/// A bound on how long the parent waits for a child (never a timing
/// assertion, only a bound on a hang).
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The harness.

enum Outcome {
    Pass,
    Skip(String),
}

struct Test {
    name: &'static str,
    run: fn(&Path) -> Outcome,
}

const TESTS: &[Test] = &[
    // First: learns the kernel's Landlock ABI for the others.
    Test {
        name: "auto_confines_as_far_as_the_kernel_allows",
        run: auto_confines_as_far_as_the_kernel_allows,
    },
    Test {
        name: "reading_files_is_denied",
        run: |dir| simple(dir, "reading_files_is_denied", prepare_files),
    },
    Test {
        name: "creating_and_changing_files_is_denied",
        run: creating_and_changing_files_is_denied,
    },
    Test {
        name: "executing_programs_is_denied",
        run: |dir| simple(dir, "executing_programs_is_denied", |_| {}),
    },
    Test {
        name: "removal_is_allowed_only_beneath_granted_directories",
        run: removal_is_allowed_only_beneath_granted_directories,
    },
    Test {
        name: "pathname_connect_survives_a_server_restart",
        run: pathname_connect_survives_a_server_restart,
    },
    Test {
        name: "abstract_scope_blocks_outgoing_connects_only_when_on",
        run: abstract_scope_blocks_outgoing_connects_only_when_on,
    },
    Test {
        name: "abstract_scope_keeps_incoming_connections",
        run: abstract_scope_keeps_incoming_connections,
    },
    Test {
        name: "signal_scope_blocks_signals_to_outside_processes_only_when_on",
        run: signal_scope_blocks_signals_to_outside_processes_only_when_on,
    },
    Test {
        name: "tcp_is_denied",
        run: tcp_is_denied,
    },
    Test {
        name: "no_new_privs_is_set",
        run: |dir| simple(dir, "no_new_privs_is_set", |_| {}),
    },
    Test {
        name: "report_describes_the_default_policy",
        run: report_describes_the_default_policy,
    },
    Test {
        name: "other_threads_are_refused_and_nothing_is_applied",
        run: |dir| {
            simple(
                dir,
                "other_threads_are_refused_and_nothing_is_applied",
                prepare_files,
            )
        },
    },
    Test {
        name: "off_applies_nothing",
        run: |dir| simple(dir, "off_applies_nothing", prepare_files),
    },
    Test {
        name: "missing_directory_is_refused_before_anything_changes",
        run: |dir| {
            simple(
                dir,
                "missing_directory_is_refused_before_anything_changes",
                prepare_files,
            )
        },
    },
    Test {
        name: "a_seccomp_filter_refusing_landlock_is_named",
        run: |dir| {
            simple(
                dir,
                "a_seccomp_filter_refusing_landlock_is_named",
                prepare_files,
            )
        },
    },
    Test {
        name: "a_refused_layer_fails_require_and_is_reported_by_auto",
        run: |dir| {
            simple(
                dir,
                "a_refused_layer_fails_require_and_is_reported_by_auto",
                prepare_files,
            )
        },
    },
];

fn main() {
    if let Ok(name) = std::env::var(SCENARIO) {
        scenario(&name);
        return;
    }
    let mut args = std::env::args().skip(1);
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut exact, mut list) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            // libtest options that take a value.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let matches = |name: &str, pattern: &String| {
        if exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| matches(t.name, f)))
        .filter(|t| !skips.iter().any(|s| t.name.contains(s.as_str())))
        .collect();
    if list {
        for t in &selected {
            println!("{}: test", t.name);
        }
        return;
    }
    // When tokio is built with its signal driver (as in a workspace build),
    // the first runtime opens a process-wide socketpair that stays open:
    // open it now, before counting fds.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap(),
    );
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for t in selected {
        let dir = tempfile::Builder::new()
            .prefix("uds-sandbox-test")
            .tempdir()
            .expect("temporary directory");
        let fds_before = fd_count();
        let outcome = std::panic::catch_unwind(|| {
            let outcome = (t.run)(dir.path());
            // Bounded wait: an fd closed by a thread that is finishing is
            // not a leak; one still open after PATIENCE is.
            let start = Instant::now();
            while fd_count() != fds_before {
                assert!(
                    start.elapsed() < PATIENCE,
                    "the test leaked fds: {} open, {fds_before} before: {}",
                    fd_count(),
                    fd_list()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            outcome
        });
        match outcome {
            Ok(Outcome::Pass) => {
                passed += 1;
                println!("test {} ... ok", t.name);
            }
            Ok(Outcome::Skip(why)) => {
                skipped += 1;
                println!("test {} ... skipped: {why}", t.name);
            }
            Err(_) => {
                println!("test {} ... FAILED", t.name);
                failed.push(t.name);
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {skipped} skipped\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures:\n    {}", failed.join("\n    "));
        std::process::exit(101);
    }
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What this process's fds are, for a leak report.
fn fd_list() -> String {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{}->{}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    fds.sort();
    fds.join(" ")
}

/// The kernel's Landlock ABI as learnt by the first test (`None` before it
/// ran, `Some(0)` without Landlock).
static ABI: OnceLock<u32> = OnceLock::new();

/// A scenario running in a child process.
struct Scenario {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Scenario {
    fn start(name: &str, dir: &Path, arg: &str) -> Scenario {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(SCENARIO, name)
            .env(DIR, dir)
            .env(ARG, arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(abi) = ABI.get() {
            cmd.env(KERNEL_ABI, abi.to_string());
        }
        let mut child = cmd.spawn().expect("start the scenario");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Scenario {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stdout: Some(stdout),
            stderr,
        }
    }

    /// Waits for a line starting with `prefix` and returns the rest; `None`
    /// if the scenario printed `SKIP` instead.
    fn expect(&mut self, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some(rest.to_owned());
                    }
                    if line.starts_with("SKIP ") {
                        return None;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let status = self.child.wait().unwrap();
                    panic!(
                        "the scenario never printed {prefix:?} ({status});\nstdout:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        std::mem::replace(&mut self.stderr, std::thread::spawn(String::new))
                            .join()
                            .unwrap()
                    );
                }
            }
        }
    }

    fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the end; returns `Skip` if the scenario skipped, panics
    /// unless it printed `PASS` and exited 0.
    fn finish(mut self) -> Outcome {
        drop(self.stdin.take());
        let result = self.expect("PASS");
        let status = self.child.wait().unwrap();
        // The readers end with the child's output (closing their fds).
        self.stdout.take().unwrap().join().unwrap();
        for line in self.lines.try_iter() {
            self.seen.push(line);
        }
        let stderr = self.stderr.join().unwrap();
        let stdout = self.seen.join("\n");
        if let Some(reason) = self.seen.iter().find_map(|l| l.strip_prefix("SKIP ")) {
            assert!(status.success(), "{status}\n{stdout}\n{stderr}");
            return Outcome::Skip(reason.to_owned());
        }
        assert!(
            result.is_some() && status.success(),
            "scenario failed ({status});\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        Outcome::Pass
    }
}

/// Runs the scenario `name` after `prepare(dir)`.
fn simple(dir: &Path, name: &str, prepare: fn(&Path)) -> Outcome {
    prepare(dir);
    Scenario::start(name, dir, "").finish()
}

/// A file with known content, a subdirectory with a file.
fn prepare_files(dir: &Path) {
    std::fs::write(dir.join("secret"), "secret data").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub").join("file"), "more").unwrap();
}

/// A server run by the (unconfined) parent: answers each connection with
/// `handle`, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

trait Accept: Send + 'static {
    type Conn: Send;
    fn try_accept(&self) -> std::io::Result<Self::Conn>;
}

impl Accept for UnixListener {
    type Conn = UnixStream;
    fn try_accept(&self) -> std::io::Result<UnixStream> {
        self.accept().map(|(c, _)| c)
    }
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    fn try_accept(&self) -> std::io::Result<TcpStream> {
        self.accept().map(|(c, _)| c)
    }
}

impl Server {
    fn start<L: Accept>(listener: L, handle: impl Fn(L::Conn) + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !stop2.load(Ordering::SeqCst) {
                match listener.try_accept() {
                    Ok(conn) => {
                        served += 1;
                        handle(conn);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            served
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }

    fn unix(listener: UnixListener, reply: &'static [u8]) -> Server {
        listener.set_nonblocking(true).unwrap();
        Server::start(listener, move |mut c: UnixStream| {
            c.set_nonblocking(false).unwrap();
            let _ = c.write_all(reply);
        })
    }

    /// Stops the server (its listener is closed); returns how many
    /// connections it served.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn abstract_addr(name: &str) -> SocketAddr {
    SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------
// The parent side of the tests.

fn auto_confines_as_far_as_the_kernel_allows(dir: &Path) -> Outcome {
    prepare_files(dir);
    let mut s = Scenario::start("auto_default", dir, "");
    let abi = s.expect("ABI ").expect("auto never skips");
    let line = s.expect("STATUS ").unwrap();
    let outcome = s.finish();
    let abi: u32 = if abi == "none" {
        0
    } else {
        abi.parse().unwrap()
    };
    ABI.set(abi).unwrap();
    println!("    this kernel: {line}");
    match outcome {
        Outcome::Pass if abi == 0 => Outcome::Skip(format!("the kernel lacks Landlock: {line}")),
        other => other,
    }
}

fn creating_and_changing_files_is_denied(dir: &Path) -> Outcome {
    prepare_files(dir);
    let outcome = Scenario::start("creating_and_changing_files_is_denied", dir, "").finish();
    if let Outcome::Pass = outcome {
        // Seen from outside: nothing was created, changed or removed.
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["secret", "sub"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("secret")).unwrap(),
            "secret data"
        );
    }
    outcome
}

fn removal_is_allowed_only_beneath_granted_directories(dir: &Path) -> Outcome {
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("sub")).unwrap();
    std::fs::create_dir(dir.join("other")).unwrap();
    // A real socket file, left behind by a listener that is gone.
    drop(UnixListener::bind(run.join("intro.sock")).unwrap());
    std::fs::write(run.join("intro.sock.admin"), "").unwrap();
    std::fs::write(run.join("unrelated"), "").unwrap();
    std::fs::write(run.join("sub").join("nested"), "").unwrap();
    std::fs::write(dir.join("other").join("victim"), "").unwrap();
    let outcome = Scenario::start(
        "removal_is_allowed_only_beneath_granted_directories",
        dir,
        "",
    )
    .finish();
    if let Outcome::Pass = outcome {
        assert!(!run.join("intro.sock").exists());
        assert!(!run.join("intro.sock.admin").exists());
        assert!(!run.join("sub").join("nested").exists());
        assert!(
            run.join("sub").is_dir(),
            "removing directories is not granted"
        );
        assert!(dir.join("other").join("victim").exists());
        assert!(!run.join("created").exists());
    }
    outcome
}

fn pathname_connect_survives_a_server_restart(dir: &Path) -> Outcome {
    let srv = dir.join("srv");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&srv).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let path = srv.join("intro.sock");
    let first = Server::unix(UnixListener::bind(&path).unwrap(), b"gen1");
    let other = Server::unix(
        UnixListener::bind(elsewhere.join("other.sock")).unwrap(),
        b"other",
    );

    let mut s = Scenario::start("pathname_connect_survives_a_server_restart", dir, "");
    if s.expect("RESTART").is_none() {
        return s.finish();
    }
    // The server restarts: its socket file is removed and bound again (a new
    // inode at the same path).
    assert_eq!(
        first.stop(),
        2,
        "one connection before, one after confining"
    );
    std::fs::remove_file(&path).unwrap();
    let second = UnixListener::bind(&path).unwrap();
    second.set_nonblocking(true).unwrap();
    let second = Server::start(second, |mut c: UnixStream| {
        c.set_nonblocking(false).unwrap();
        c.write_all(b"gen2").unwrap();
        // The confined process passes one end of a socketpair, as the
        // netlayer does with an intro; answer through it.
        let passed = receive_fd(c);
        let mut passed = UnixStream::from(passed);
        passed.write_all(b"via-passed").unwrap();
    });
    s.tell("restarted");
    let outcome = s.finish();
    assert_eq!(second.stop(), 1);
    let reached_other = other.stop();
    if let Outcome::Pass = outcome {
        assert!(reached_other <= 1);
    }
    outcome
}

/// Receives one fd on `conn` the way the netlayer and the daemon do.
fn receive_fd(conn: UnixStream) -> std::os::fd::OwnedFd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async move {
        conn.set_nonblocking(true).unwrap();
        let stream = uds_fdpass::FdStream::try_from_std(conn).unwrap();
        let mut buf = bytes::BytesMut::new();
        loop {
            let got = stream.recv(&mut buf).await.unwrap();
            assert!(!got.is_eof(), "no fd arrived");
            if let Some(fd) = got.fds.into_iter().next() {
                return fd;
            }
        }
    })
}

fn abstract_scope_blocks_outgoing_connects_only_when_on(dir: &Path) -> Outcome {
    let name = format!("uds-sandbox-test-{}-out", std::process::id());
    let server = Server::unix(
        UnixListener::bind_addr(&abstract_addr(&name)).unwrap(),
        b"abstract",
    );
    let scoped = Scenario::start("abstract_connect_scoped", dir, &name).finish();
    let unscoped = Scenario::start("abstract_connect_unscoped", dir, &name).finish();
    let served = server.stop();
    match (scoped, unscoped) {
        (Outcome::Pass, Outcome::Pass) => {
            // Before confining (scoped), after confining (unscoped).
            assert_eq!(served, 2);
            Outcome::Pass
        }
        (Outcome::Skip(why), _) | (_, Outcome::Skip(why)) => Outcome::Skip(why),
    }
}

fn abstract_scope_keeps_incoming_connections(dir: &Path) -> Outcome {
    let name = format!("uds-sandbox-test-{}-in", std::process::id());
    // Outside the child's domain: it must not reach this one.
    let outside = Server::unix(
        UnixListener::bind_addr(&abstract_addr(&format!("{name}-outside"))).unwrap(),
        b"outside",
    );
    let mut s = Scenario::start("abstract_listener_scoped", dir, &name);
    if s.expect("LISTENING").is_none() {
        return s.finish();
    }
    let mut c = UnixStream::connect_addr(&abstract_addr(&name)).unwrap();
    c.write_all(b"hello").unwrap();
    let mut answer = [0u8; 7];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"welcome");
    drop(c);
    let outcome = s.finish();
    assert_eq!(
        outside.stop(),
        0,
        "the confined child reached an outside socket"
    );
    outcome
}

fn signal_scope_blocks_signals_to_outside_processes_only_when_on(dir: &Path) -> Outcome {
    match Scenario::start("signal_scoped", dir, "").finish() {
        Outcome::Pass => Scenario::start("signal_unscoped", dir, "").finish(),
        skip => skip,
    }
}

fn tcp_is_denied(dir: &Path) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = Server::start(listener, |mut c: TcpStream| {
        c.set_nonblocking(false).unwrap();
        let _ = c.write_all(b"tcp");
    });
    let outcome = Scenario::start("tcp_is_denied", dir, &port.to_string()).finish();
    let served = server.stop();
    if let Outcome::Pass = outcome {
        assert_eq!(served, 1, "only the connection made before confining");
    }
    outcome
}

fn report_describes_the_default_policy(dir: &Path) -> Outcome {
    std::fs::create_dir(dir.join("run")).unwrap();
    std::fs::create_dir(dir.join("srv")).unwrap();
    let mut s = Scenario::start("report_describes_the_default_policy", dir, "");
    if let Some(line) = s.expect("STATUS ") {
        println!("    {line}");
    }
    s.finish()
}

// ---------------------------------------------------------------------------
// The child side.

fn scenario(name: &str) {
    let dir = PathBuf::from(std::env::var_os(DIR).unwrap_or_default());
    let arg = std::env::var(ARG).unwrap_or_default();
    match name {
        "auto_default" => auto_default(&dir),
        "reading_files_is_denied" => reading_files_is_denied(&dir),
        "creating_and_changing_files_is_denied" => creating_and_changing(&dir),
        "executing_programs_is_denied" => executing_programs_is_denied(),
        "removal_is_allowed_only_beneath_granted_directories" => removal(&dir),
        "pathname_connect_survives_a_server_restart" => pathname_connect(&dir),
        "abstract_connect_scoped" => abstract_connect(&arg, true),
        "abstract_connect_unscoped" => abstract_connect(&arg, false),
        "abstract_listener_scoped" => abstract_listener(&arg),
        "signal_scoped" => signal(true),
        "signal_unscoped" => signal(false),
        "sleeper" => sleeper(),
        "tcp_is_denied" => tcp(arg.parse().unwrap()),
        "no_new_privs_is_set" => no_new_privs(),
        "report_describes_the_default_policy" => report_default(&dir),
        "other_threads_are_refused_and_nothing_is_applied" => other_threads(&dir),
        "off_applies_nothing" => off(&dir),
        "missing_directory_is_refused_before_anything_changes" => missing_directory(&dir),
        "a_refused_layer_fails_require_and_is_reported_by_auto" => refused_layer(&dir),
        "a_seccomp_filter_refusing_landlock_is_named" => seccomp_filtered(&dir),
        other => panic!("unknown scenario {other:?}"),
    }
    println!("PASS");
}

/// A policy with only the filesystem part: no scopes, network allowed.
fn filesystem_only() -> Policy {
    Policy::new()
        .scope_abstract_unix(false)
        .scope_signals(false)
        .deny_network(false)
}

/// `require`; exits after printing `SKIP` if the kernel lacks a feature the
/// policy needs — unless the first test found that the kernel has it.
fn require(policy: &Policy) -> Report {
    match policy.confine(SandboxMode::Require) {
        Ok(report) => {
            println!("confined: {report}");
            report
        }
        Err(SandboxError::Unsupported { what, min_abi }) => {
            let kernel: u32 = std::env::var(KERNEL_ABI)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(
                kernel < min_abi,
                "require refused {what} (ABI {min_abi}) on a kernel with ABI {kernel}"
            );
            println!("SKIP the kernel lacks {what} (Landlock ABI {min_abi}; it has {kernel})");
            std::process::exit(0);
        }
        Err(e) => panic!("confine: {e}"),
    }
}

#[track_caller]
fn denied<T: std::fmt::Debug>(what: &str, result: std::io::Result<T>, errno: Errno) {
    match result {
        Err(e) if e.raw_os_error() == Some(errno as i32) => {
            println!("refused as expected ({errno}): {what}");
        }
        other => panic!("{what}: expected {errno}, got {other:?}"),
    }
}

#[track_caller]
fn works<T>(what: &str, result: std::io::Result<T>) -> T {
    match result {
        Ok(v) => {
            println!("works: {what}");
            v
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

fn nix_io<T>(r: nix::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

fn no_new_privs_flag() -> bool {
    nix::sys::prctl::get_no_new_privs().unwrap()
}

fn auto_default(dir: &Path) {
    let secret = dir.join("secret");
    works("read before", std::fs::read(&secret));
    let report = Policy::new().confine(SandboxMode::Auto).unwrap();
    match report.landlock.abi() {
        Some(abi) => println!("ABI {abi}"),
        None => println!("ABI none"),
    }
    println!("STATUS {}", report.status_line());
    assert_eq!(report.mode, SandboxMode::Auto);
    assert!(report.no_new_privs && no_new_privs_flag());
    match report.landlock {
        Landlock::Enforced { abi } => {
            assert!(abi >= 1);
            denied("read after", std::fs::read(&secret), Errno::EACCES);
        }
        Landlock::NotBuiltIn | Landlock::NotEnabled | Landlock::Filtered => {
            assert_eq!(report.filesystem, Filesystem::Unrestricted);
            works("read after (no Landlock)", std::fs::read(&secret));
        }
        ref other => panic!("unexpected {other:?}"),
    }
}

fn reading_files_is_denied(dir: &Path) {
    let secret = dir.join("secret");
    let mut held = works("open before", std::fs::File::open(&secret));
    assert_eq!(
        works("read before", std::fs::read_to_string(&secret)),
        "secret data"
    );
    works("list before", std::fs::read_dir(dir));
    works(
        "read /proc before",
        std::fs::read_to_string("/proc/self/status"),
    );
    works(
        "read through a held directory",
        std::fs::read_to_string(dir.join("sub/file")),
    );

    let report = require(&filesystem_only());
    assert_eq!(report.filesystem, Filesystem::Denied);

    denied(
        "open for reading",
        std::fs::File::open(&secret),
        Errno::EACCES,
    );
    denied("list a directory", std::fs::read_dir(dir), Errno::EACCES);
    denied(
        "read in a subdirectory",
        std::fs::read(dir.join("sub/file")),
        Errno::EACCES,
    );
    denied(
        "read /proc/self/status",
        std::fs::read("/proc/self/status"),
        Errno::EACCES,
    );
    denied("open the root", std::fs::read_dir("/"), Errno::EACCES);
    // A file opened before confining stays usable.
    let mut text = String::new();
    works("read a held fd", held.read_to_string(&mut text));
    assert_eq!(text, "secret data");
}

fn creating_and_changing(dir: &Path) {
    let secret = dir.join("secret");
    // Everything below works before confining.
    works("create", std::fs::File::create(dir.join("probe")));
    works("remove", std::fs::remove_file(dir.join("probe")));
    works("mkdir", std::fs::create_dir(dir.join("probe-dir")));
    works("rmdir", std::fs::remove_dir(dir.join("probe-dir")));
    drop(works(
        "bind a socket",
        UnixListener::bind(dir.join("probe.sock")),
    ));
    works("remove it", std::fs::remove_file(dir.join("probe.sock")));
    works(
        "open for writing",
        std::fs::OpenOptions::new().append(true).open(&secret),
    );
    works("truncate", nix_io(nix::unistd::truncate(&secret, 11)));

    require(&filesystem_only());

    denied(
        "create a file",
        std::fs::File::create(dir.join("new")),
        Errno::EACCES,
    );
    denied(
        "open for writing",
        std::fs::OpenOptions::new().append(true).open(&secret),
        Errno::EACCES,
    );
    denied(
        "make a directory",
        std::fs::create_dir(dir.join("newdir")),
        Errno::EACCES,
    );
    denied(
        "bind a pathname socket",
        UnixListener::bind(dir.join("new.sock")),
        Errno::EACCES,
    );
    denied(
        "make a symlink",
        std::os::unix::fs::symlink(&secret, dir.join("link")),
        Errno::EACCES,
    );
    denied(
        "make a hard link",
        std::fs::hard_link(&secret, dir.join("hard")),
        Errno::EACCES,
    );
    denied(
        "rename",
        std::fs::rename(&secret, dir.join("renamed")),
        Errno::EACCES,
    );
    denied("remove", std::fs::remove_file(&secret), Errno::EACCES);
    denied(
        "remove a directory",
        std::fs::remove_dir_all(dir.join("sub")),
        Errno::EACCES,
    );
    denied(
        "truncate",
        nix_io(nix::unistd::truncate(&secret, 0)),
        Errno::EACCES,
    );
    denied(
        "make a fifo",
        nix_io(nix::unistd::mkfifo(
            &dir.join("fifo"),
            nix::sys::stat::Mode::S_IRWXU,
        )),
        Errno::EACCES,
    );
}

fn executing_programs_is_denied() {
    let exe = std::env::current_exe().unwrap();
    let ran = works("run /bin/true before", Command::new("/bin/true").status());
    assert!(ran.success());
    let ran = works(
        "run this binary before",
        Command::new(&exe)
            .env(SCENARIO, "sleeper")
            .stdin(Stdio::null())
            .status(),
    );
    assert!(ran.success());

    require(&filesystem_only());

    denied(
        "run /bin/true",
        Command::new("/bin/true").status(),
        Errno::EACCES,
    );
    denied(
        "run this binary",
        Command::new(&exe).env(SCENARIO, "sleeper").status(),
        Errno::EACCES,
    );
}

fn removal(dir: &Path) {
    let run = dir.join("run");
    let report = require(
        &filesystem_only()
            .allow_remove(run.join("intro.sock"))
            .allow_remove(run.join("intro.sock.admin")),
    );
    assert_eq!(
        report.removable,
        std::slice::from_ref(&run),
        "one rule per directory"
    );

    works(
        "remove the socket",
        std::fs::remove_file(run.join("intro.sock")),
    );
    works(
        "remove the admin socket",
        std::fs::remove_file(run.join("intro.sock.admin")),
    );
    // The rule covers the whole directory and what is below it.
    works(
        "remove a nested file",
        std::fs::remove_file(run.join("sub/nested")),
    );
    denied(
        "remove a directory",
        std::fs::remove_dir(run.join("sub")),
        Errno::EACCES,
    );
    denied(
        "remove elsewhere",
        std::fs::remove_file(dir.join("other/victim")),
        Errno::EACCES,
    );
    denied(
        "create in the directory",
        std::fs::File::create(run.join("created")),
        Errno::EACCES,
    );
    denied(
        "rename in the directory",
        std::fs::rename(run.join("unrelated"), run.join("created")),
        Errno::EACCES,
    );
    denied(
        "read in the directory",
        std::fs::read(run.join("unrelated")),
        Errno::EACCES,
    );
    works(
        "remove another file in the directory",
        std::fs::remove_file(run.join("unrelated")),
    );
}

fn read_token(mut stream: impl Read) -> String {
    let mut s = String::new();
    stream.read_to_string(&mut s).unwrap();
    s
}

fn pathname_connect(dir: &Path) {
    let path = dir.join("srv/intro.sock");
    let other = dir.join("elsewhere/other.sock");
    let before = works("connect before", UnixStream::connect(&path));
    assert_eq!(read_token(before), "gen1");

    // The policy of a confined peer: everything on, plus its intro server.
    let report = require(&Policy::new().allow_connect(&path));

    denied(
        "list the server's directory",
        std::fs::read_dir(dir.join("srv")),
        Errno::EACCES,
    );
    let after = works("connect after confining", UnixStream::connect(&path));
    assert_eq!(read_token(after), "gen1");
    println!("RESTART");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "restarted");
    let mut again = works(
        "connect to the restarted server",
        UnixStream::connect(&path),
    );
    let mut token = [0u8; 4];
    again.read_exact(&mut token).unwrap();
    assert_eq!(&token, b"gen2");
    // Create a socketpair and pass one end, as an intro does.
    let (mine, theirs) = works("socketpair", UnixStream::pair());
    let fds = [std::os::fd::AsRawFd::as_raw_fd(&theirs)];
    works(
        "pass an fd",
        nix_io(nix::sys::socket::sendmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&again),
            &[std::io::IoSlice::new(&[0x39, 0x30, 0, 0])],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )),
    );
    drop(theirs);
    assert_eq!(read_token(mine), "via-passed");

    if report.unix_connect_restricted {
        // Landlock ABI 9+: only the granted directory.
        denied(
            "connect outside the granted directory",
            UnixStream::connect(&other),
            Errno::EACCES,
        );
    } else {
        // Before ABI 9 Landlock does not mediate pathname connects.
        let s = works(
            "connect outside the granted directory (not mediated)",
            UnixStream::connect(&other),
        );
        assert_eq!(read_token(s), "other");
    }
}

fn abstract_connect(name: &str, scoped: bool) {
    let addr = abstract_addr(name);
    if scoped {
        let s = works("connect before", UnixStream::connect_addr(&addr));
        assert_eq!(read_token(s), "abstract");
        let report = require(&filesystem_only().scope_abstract_unix(true));
        assert!(report.abstract_unix_scoped);
        denied(
            "connect to an abstract socket of an unconfined process",
            UnixStream::connect_addr(&addr),
            Errno::EPERM,
        );
    } else {
        let report = require(&Policy::new().scope_abstract_unix(false));
        assert!(!report.abstract_unix_scoped);
        assert!(report.signals_scoped, "the rest of the policy is on");
        let s = works(
            "connect to an abstract socket with scoping off",
            UnixStream::connect_addr(&addr),
        );
        assert_eq!(read_token(s), "abstract");
    }
}

fn abstract_listener(name: &str) {
    let listener = works(
        "listen on an abstract name",
        UnixListener::bind_addr(&abstract_addr(name)),
    );
    let report = require(&Policy::new());
    assert!(report.abstract_unix_scoped);
    denied(
        "connect to an abstract socket outside the domain",
        UnixStream::connect_addr(&abstract_addr(&format!("{name}-outside"))),
        Errno::EPERM,
    );
    // Inside the domain, binding and connecting work.
    let own_name = format!("{name}-own");
    let own = works(
        "listen on another abstract name after confining",
        UnixListener::bind_addr(&abstract_addr(&own_name)),
    );
    let mut to_self = works(
        "connect to its own abstract socket",
        UnixStream::connect_addr(&abstract_addr(&own_name)),
    );
    let (mut accepted, _) = works("accept it", own.accept());
    to_self.write_all(b"x").unwrap();
    let mut x = [0u8; 1];
    accepted.read_exact(&mut x).unwrap();
    // An unconfined client connects from outside.
    println!("LISTENING");
    let (mut conn, _) = works("accept a client from outside", listener.accept());
    let mut hello = [0u8; 5];
    conn.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    conn.write_all(b"welcome").unwrap();
}

fn sleeper() {
    // Lives until its stdin ends (its parent exits) or it is killed.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn signal(scoped: bool) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut sleeper = Command::new(std::env::current_exe().unwrap())
        .env(SCENARIO, "sleeper")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(sleeper.id() as i32);
    works("signal 0 before", nix_io(kill(pid, None)));
    let me = Pid::this();
    if scoped {
        let report = require(&filesystem_only().scope_signals(true));
        assert!(report.signals_scoped);
        denied(
            "SIGTERM to a process started before confining",
            nix_io(kill(pid, Signal::SIGTERM)),
            Errno::EPERM,
        );
        denied("signal 0 to it", nix_io(kill(pid, None)), Errno::EPERM);
        works("signal 0 to itself", nix_io(kill(me, None)));
        assert!(sleeper.try_wait().unwrap().is_none(), "the target is alive");
        // Closing its stdin ends it.
        drop(sleeper.stdin.take());
        let status: ExitStatus = sleeper.wait().unwrap();
        assert!(status.success());
    } else {
        let report = require(&Policy::new().scope_signals(false));
        assert!(!report.signals_scoped);
        assert!(report.abstract_unix_scoped, "the rest of the policy is on");
        works(
            "SIGTERM with signal scoping off",
            nix_io(kill(pid, Signal::SIGTERM)),
        );
        let status = sleeper.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }
}

fn tcp(port: u16) {
    let s = works(
        "TCP connect before",
        TcpStream::connect(("127.0.0.1", port)),
    );
    assert_eq!(read_token(s), "tcp");
    let report = require(&filesystem_only().deny_network(true));
    assert!(report.tcp_denied);
    denied(
        "TCP connect",
        TcpStream::connect(("127.0.0.1", port)),
        Errno::EACCES,
    );
    denied("TCP bind", TcpListener::bind("127.0.0.1:0"), Errno::EACCES);
    let (mut a, mut b) = works("a Unix socketpair", UnixStream::pair());
    a.write_all(b"u").unwrap();
    let mut u = [0u8; 1];
    b.read_exact(&mut u).unwrap();
}

fn read_no_new_privs(status: &mut std::fs::File) -> String {
    status.rewind().unwrap();
    let mut text = String::new();
    status.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .expect("NoNewPrivs in /proc/self/status")
        .trim()
        .to_owned()
}

fn no_new_privs() {
    let mut status = std::fs::File::open("/proc/self/status").unwrap();
    let before = read_no_new_privs(&mut status);
    if before == "1" {
        println!("note: no_new_privs was inherited; this run cannot show that confine sets it");
    } else {
        assert_eq!(before, "0");
    }
    let report = require(&Policy::new());
    assert!(report.no_new_privs);
    assert_eq!(read_no_new_privs(&mut status), "1");
    assert!(no_new_privs_flag());
}

fn report_default(dir: &Path) {
    let run = dir.join("run");
    let srv = dir.join("srv");
    let report = require(
        &Policy::new()
            .allow_remove(run.join("intro.sock"))
            .allow_connect(srv.join("intro.sock")),
    );
    let abi = report.landlock.abi().expect("enforced");
    println!("STATUS {}", report.status_line());
    denied("list a directory", std::fs::read_dir(dir), Errno::EACCES);
    assert!(abi >= 6, "require with scopes needs ABI 6");
    assert_eq!(report.mode, SandboxMode::Require);
    assert_eq!(report.filesystem, Filesystem::Denied);
    assert_eq!(report.removable, std::slice::from_ref(&run));
    assert!(report.tcp_denied && report.abstract_unix_scoped && report.signals_scoped);
    assert_eq!(report.udp_denied, abi >= 10);
    assert_eq!(report.unix_connect_restricted, abi >= 9);
    let connect = if abi >= 9 {
        format!("beneath({})", srv.display())
    } else {
        "any".to_owned()
    };
    let network = if abi >= 10 { "tcp,udp" } else { "tcp" };
    assert_eq!(
        report.status_line(),
        format!(
            "sandbox: mode=require landlock-abi={abi} filesystem=denied remove-in={} \
             unix-connect={connect} network=denied({network}) scope=abstract-unix,signal \
             no-new-privs=yes",
            run.display()
        )
    );
}

fn other_threads(dir: &Path) {
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || rx.recv());
    let nnp_before = no_new_privs_flag();
    for mode in [SandboxMode::Require, SandboxMode::Auto] {
        match Policy::new().confine(mode) {
            Err(e @ SandboxError::OtherThreads { threads: 2 }) => {
                let text = e.to_string();
                assert!(text.contains("before starting an async runtime"), "{text}");
                println!("refused as expected in {mode}: {text}");
            }
            other => panic!("{mode}: expected OtherThreads, got {other:?}"),
        }
    }
    assert_eq!(no_new_privs_flag(), nnp_before, "nothing was applied");
    works("read after the refusal", std::fs::read(dir.join("secret")));
    tx.send(()).unwrap();
    thread.join().unwrap().unwrap();
}

fn off(dir: &Path) {
    // Threads do not matter when nothing is applied.
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || rx.recv());
    let nnp_before = no_new_privs_flag();
    let report = Policy::new().confine(SandboxMode::Off).unwrap();
    assert_eq!(report.landlock, Landlock::Off);
    assert_eq!(report.filesystem, Filesystem::Unrestricted);
    assert_eq!(report.no_new_privs, nnp_before);
    assert!(!report.abstract_unix_scoped && !report.signals_scoped && !report.tcp_denied);
    assert!(
        report
            .to_string()
            .starts_with("mode=off landlock-abi=none(off) ")
    );
    assert_eq!(no_new_privs_flag(), nnp_before);
    works("read", std::fs::read(dir.join("secret")));
    works("create", std::fs::File::create(dir.join("created")));
    assert!(Command::new("/bin/true").status().unwrap().success());
    tx.send(()).unwrap();
    thread.join().unwrap().unwrap();
}

fn missing_directory(dir: &Path) {
    let nnp_before = no_new_privs_flag();
    for mode in [SandboxMode::Require, SandboxMode::Auto] {
        match Policy::new()
            .allow_remove(dir.join("missing/intro.sock"))
            .confine(mode)
        {
            Err(SandboxError::Directory { dir: d, source }) => {
                assert_eq!(d, dir.join("missing"));
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            other => panic!("{mode}: expected Directory, got {other:?}"),
        }
        // The "directory" is a file.
        match Policy::new()
            .allow_connect(dir.join("secret/intro.sock"))
            .confine(mode)
        {
            Err(SandboxError::Directory { dir: d, source }) => {
                assert_eq!(d, dir.join("secret"));
                assert_eq!(source.kind(), ErrorKind::NotADirectory);
            }
            other => panic!("{mode}: expected Directory, got {other:?}"),
        }
    }
    assert_eq!(no_new_privs_flag(), nnp_before, "nothing was applied");
    works("read after the refusals", std::fs::read(dir.join("secret")));
}

fn refused_layer(dir: &Path) {
    // Landlock allows at most 16 stacked domains; the next is refused
    // (E2BIG). `require` must fail, `auto` must say so and carry on.
    let mut layers = 0;
    let error = loop {
        match filesystem_only().confine(SandboxMode::Require) {
            Ok(_) => layers += 1,
            Err(SandboxError::Unsupported { .. }) if layers == 0 => {
                require(&filesystem_only()); // prints SKIP and exits
                unreachable!();
            }
            Err(e) => break e,
        }
        assert!(layers <= 16, "more than 16 domains were accepted");
    };
    assert!(layers >= 1, "the first domain is accepted: {error}");
    println!("refused after {layers} domains: {error}");
    assert!(matches!(error, SandboxError::Landlock { .. }), "{error:?}");
    let report = filesystem_only().confine(SandboxMode::Auto).unwrap();
    assert!(matches!(report.landlock, Landlock::Failed(_)), "{report:?}");
    assert!(report.to_string().contains("landlock-abi=none(refused)"));
    assert!(report.no_new_privs);
    // The domains applied earlier are still in force.
    denied(
        "read after the refused layer",
        std::fs::read(dir.join("secret")),
        Errno::EACCES,
    );
}

fn seccomp_filtered(dir: &Path) {
    use nix::libc;
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let secret = dir.join("secret");
    works("read before", std::fs::read(&secret));
    // What a container runtime's or a service manager's filter does to
    // system calls it does not allow: fail them with EPERM.
    let rules = [
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_restrict_self,
    ]
    .into_iter()
    .map(|nr| (nr, Vec::new()))
    .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    seccompiler::apply_filter(&program).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");

    match Policy::new().confine(SandboxMode::Require) {
        Err(e @ SandboxError::Unsupported { .. }) => {
            assert!(e.to_string().contains("seccomp filter"), "{e}");
        }
        other => panic!("require under the filter: {other:?}"),
    }
    let report = Policy::new().confine(SandboxMode::Auto).unwrap();
    println!("under the filter: {report}");
    assert_eq!(report.landlock, Landlock::Filtered, "{report:?}");
    assert!(
        report
            .to_string()
            .contains(" landlock-abi=none(seccomp-filtered) "),
        "{report}"
    );
    assert_eq!(report.filesystem, Filesystem::Unrestricted);
    assert!(report.no_new_privs && no_new_privs_flag());
    // Nothing was confined, and the report does not pretend otherwise.
    works("read after (no Landlock)", std::fs::read(&secret));
}
