//! Confined peers: `uds-peer --sandbox` with the real daemon (registering,
//! being reached by another peer, accepting, re-registering after the
//! daemon restarts, through a path, an abstract name and `uds-introd
//! spawn`), and `Builder::confine` in a process of its own (files are
//! denied afterwards, the netlayer still works, and its error paths).
//!
//! This file has its own `main` (`harness = false`): a library scenario
//! runs in a child process, this test binary re-executed with
//! `UDS_NETLAYER_SANDBOX_SCENARIO` set, because confinement must happen
//! while the process has a single thread, which libtest's runner does not
//! allow. A test skips, printing why, only when `require` is refused
//! because the kernel lacks Landlock ("needs Landlock ABI").

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, PATIENCE, PEER_BIN, introd_bin, private_dir, select_tests};

const SCENARIO: &str = "UDS_NETLAYER_SANDBOX_SCENARIO";
const SOCKET: &str = "UDS_NETLAYER_SANDBOX_SOCKET";
const DIR: &str = "UDS_NETLAYER_SANDBOX_DIR";

/// How a test ended.
enum Outcome {
    Pass,
    Skip(String),
}

type Test = (&'static str, fn() -> Outcome);

const TESTS: &[Test] = &[
    (
        "a_confined_listener_is_reached_and_survives_a_daemon_restart",
        a_confined_listener_is_reached_and_survives_a_daemon_restart,
    ),
    (
        "a_confined_listener_reaches_an_abstract_server_across_a_restart",
        a_confined_listener_reaches_an_abstract_server_across_a_restart,
    ),
    (
        "a_confined_listener_under_spawn",
        a_confined_listener_under_spawn,
    ),
    (
        "the_option_defaults_to_off_and_is_checked",
        the_option_defaults_to_off_and_is_checked,
    ),
    (
        "builder_confine_denies_files_and_the_netlayer_still_works",
        builder_confine_denies_files_and_the_netlayer_still_works,
    ),
    (
        "builder_confine_refuses_a_second_thread_and_applies_nothing",
        builder_confine_refuses_a_second_thread_and_applies_nothing,
    ),
    (
        "builder_confine_needs_a_path_servers_directory",
        builder_confine_needs_a_path_servers_directory,
    ),
];

fn main() {
    if let Ok(name) = std::env::var(SCENARIO) {
        scenario(&name);
        return;
    }
    let Some(tests) = select_tests(TESTS) else {
        return;
    };
    let (mut passed, mut skipped) = (0, 0);
    for (name, test) in tests {
        print!("test {name} ... ");
        let before = fd_count();
        let outcome = test();
        // Bounded wait: the threads reading a child's output close their
        // pipes once it has exited.
        let start = Instant::now();
        while fd_count() != before {
            assert!(
                start.elapsed() < PATIENCE,
                "{name} leaked fds: {} open, {before} before",
                fd_count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        match outcome {
            Outcome::Pass => {
                passed += 1;
                println!("ok");
            }
            Outcome::Skip(why) => {
                skipped += 1;
                println!("skipped: {why}");
            }
        }
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; {skipped} skipped\n");
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ---------------------------------------------------------------------------
// Processes.

/// A child process whose stdout lines and stderr are collected; killed
/// when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn start(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let _ = tx.send(line.ok());
                }
                let _ = tx.send(None);
            }),
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }),
        ];
        Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rest of the next stdout line starting with `prefix`; `None` if
    /// the output ended first.
    fn line(&mut self, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some(rest.to_owned());
                    }
                }
                Ok(None) => return None,
                Err(_) => panic!(
                    "no line {prefix:?} within {PATIENCE:?}; stdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The line of stderr containing `text`, once it is there.
    fn stderr_line(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.stderr().lines().find(|l| l.contains(text)) {
                return l.to_owned();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "stderr never said {text:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to end by itself, for all of its output.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        drop(self.child.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("still running after {PATIENCE:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        for line in self.lines.try_iter().flatten() {
            self.seen.push(line);
        }
        (status, self.stderr())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The `NoNewPrivs:` value of every thread of `pid`.
fn no_new_privs_of_threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:"))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect()
}

/// Whether this process has `no_new_privs` (children inherit it).
fn own_no_new_privs() -> bool {
    no_new_privs_of_threads(std::process::id())[0] == "1"
}

/// The reason a process refused `--sandbox=require`, if the kernel lacks
/// Landlock.
fn landlock_missing(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.contains("needs Landlock ABI"))
        .map(str::to_owned)
}

/// `uds-peer --intro INTRO --sandbox=require ... listen --echo`, checked to
/// be confined: its report on stderr and `NoNewPrivs` on every thread. Its
/// locator, or `Err(skip)`.
fn confined_listener(intro: &str, extra: &[&str]) -> Result<(Proc, String), Outcome> {
    let mut cmd = Command::new(PEER_BIN);
    cmd.args(["--intro", intro, "--sandbox=require"])
        .args(extra)
        .args(["listen", "--echo"])
        .env("RUST_LOG", "warn");
    let mut peer = Proc::start(cmd);
    let Some(uri) = peer.line("uds-peer ready locator=") else {
        let (status, stderr) = peer.finish();
        if let Some(why) = landlock_missing(&stderr) {
            return Err(Outcome::Skip(why));
        }
        panic!("uds-peer did not start ({status}):\n{stderr}");
    };
    let report = peer.stderr_line("uds-peer: sandbox: ");
    for item in [
        "uds-peer: sandbox: mode=require landlock-abi=",
        " filesystem=denied remove-in=none ",
        " network=denied(tcp",
        " no-new-privs=yes",
    ] {
        assert!(report.contains(item), "{item:?} is not in {report:?}");
    }
    let threads = no_new_privs_of_threads(peer.pid());
    assert!(threads.len() > 1, "the runtime's threads: {threads:?}");
    assert!(threads.iter().all(|v| v == "1"), "{threads:?}");
    Ok((peer, uri))
}

/// `uds-peer --intro INTRO connect URI` (unconfined) with `input`; retried
/// while the listener may still be re-registering. What it printed.
fn echo_through(intro: &str, uri: &str, input: &[u8]) -> Vec<u8> {
    let start = Instant::now();
    loop {
        let mut child = Command::new(PEER_BIN)
            .args(["--intro", intro, "connect", uri])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        // `connect` ends by itself: its waits are bounded (registration,
        // the peer's answer).
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return out.stdout;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "could not reach {uri} via {intro}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Tests with the binaries.

fn a_confined_listener_is_reached_and_survives_a_daemon_restart() -> Outcome {
    let dir = private_dir();
    let mut d = Daemon::start(dir.path(), "intro", &[]);
    let intro = d.socket.to_str().unwrap().to_owned();
    let key = dir.path().join("listener.key");
    let (peer, uri) = match confined_listener(&intro, &["--key", key.to_str().unwrap()]) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    assert!(uri.contains(&d.id.to_string()), "{uri}");
    let report = peer.stderr_line("uds-peer: sandbox: ");
    assert!(report.contains(" scope=abstract-unix,signal "), "{report}");
    assert_eq!(echo_through(&intro, &uri, b"first\n"), b"first\n");

    // The daemon restarts with the same key: the confined peer connects to
    // the new socket file by path and registers again.
    let id = d.id;
    d.kill();
    let d = Daemon::start(dir.path(), "intro", &[]);
    assert_eq!(d.id, id);
    assert_eq!(echo_through(&intro, &uri, b"again\n"), b"again\n");
    assert!(
        !peer.stderr().contains("ermission denied"),
        "{}",
        peer.stderr()
    );
    drop(peer);
    drop(d);
    Outcome::Pass
}

fn a_confined_listener_reaches_an_abstract_server_across_a_restart() -> Outcome {
    let dir = private_dir();
    let name = format!("uds-netlayer-sandbox-test-{}", std::process::id());
    let start = |dir: &Path| {
        let mut cmd = Command::new(introd_bin());
        cmd.args(["--abstract", &name, "--no-admin", "--key"])
            .arg(dir.join("intro.key"));
        Daemon::spawn(cmd, PathBuf::new())
    };
    let mut d = start(dir.path());
    let intro = format!("@{name}");
    let (peer, uri) = match confined_listener(&intro, &[]) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    // Abstract scoping is off: the restarted server is outside the peer's
    // domain.
    let report = peer.stderr_line("uds-peer: sandbox: ");
    assert!(report.contains(" scope=signal "), "{report}");
    assert_eq!(echo_through(&intro, &uri, b"abstract\n"), b"abstract\n");
    let id = d.id;
    d.kill();
    let d = start(dir.path());
    assert_eq!(d.id, id);
    assert_eq!(echo_through(&intro, &uri, b"still\n"), b"still\n");
    drop(peer);
    drop(d);
    Outcome::Pass
}

fn a_confined_listener_under_spawn() -> Outcome {
    let dir = private_dir();
    let sock = dir.path().join("spawned.sock");
    let mut cmd = Command::new(introd_bin());
    cmd.arg("spawn")
        .arg("--socket")
        .arg(&sock)
        .args(["--", PEER_BIN, "--sandbox=require", "listen", "--echo"])
        .env("RUST_LOG", "warn");
    let mut daemon = Proc::start(cmd);
    let Some(uri) = daemon.line("uds-peer ready locator=") else {
        let (status, stderr) = daemon.finish();
        if let Some(why) = landlock_missing(&stderr) {
            return Outcome::Skip(why);
        }
        panic!("no ready line from the spawned peer ({status}):\n{stderr}");
    };
    // The child's stderr is the daemon's.
    let report = daemon.stderr_line("uds-peer: sandbox: ");
    assert!(
        report.contains("mode=require") && report.contains(" filesystem=denied "),
        "{report}"
    );
    let intro = sock.to_str().unwrap();
    assert_eq!(echo_through(intro, &uri, b"lineage\n"), b"lineage\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, stderr) = daemon.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(!sock.exists(), "{stderr}");
    Outcome::Pass
}

fn the_option_defaults_to_off_and_is_checked() -> Outcome {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &[]);
    let mut cmd = Command::new(PEER_BIN);
    cmd.args(["--intro", d.socket.to_str().unwrap(), "listen", "--echo"])
        .env("RUST_LOG", "warn");
    let mut peer = Proc::start(cmd);
    assert!(peer.line("uds-peer ready locator=").is_some());
    assert!(!peer.stderr().contains("sandbox"), "{}", peer.stderr());
    let expected = if own_no_new_privs() { "1" } else { "0" };
    for v in no_new_privs_of_threads(peer.pid()) {
        assert_eq!(v, expected, "without --sandbox nothing is applied");
    }
    drop(peer);
    let out = Command::new(PEER_BIN)
        .args(["--sandbox=strict", "listen"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("use \"off\", \"auto\" or \"require\""),
        "{err}"
    );
    let help = Command::new(PEER_BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--sandbox[=<MODE>]"), "{help}");
    Outcome::Pass
}

// ---------------------------------------------------------------------------
// Library scenarios, each in a child process.

/// Runs scenario `name` in a child process with a daemon's socket and a
/// directory; its stdout lines go to `talk` as they come.
fn run_scenario(name: &str, socket: &Path, dir: &Path, talk: impl FnOnce(&mut Proc)) -> Outcome {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(SCENARIO, name)
        .env(SOCKET, socket)
        .env(DIR, dir)
        .env("RUST_LOG", "uds_netlayer=info,uds_sandbox=info");
    let mut p = Proc::start(cmd);
    talk(&mut p);
    let (status, stderr) = p.finish();
    let stdout = p.seen.join("\n");
    if let Some(why) = p.seen.iter().find_map(|l| l.strip_prefix("SKIP ")) {
        assert!(status.success(), "{status}\n{stdout}\n{stderr}");
        return Outcome::Skip(why.to_owned());
    }
    assert!(
        status.success() && p.seen.iter().any(|l| l == "PASS"),
        "scenario {name} failed ({status});\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Outcome::Pass
}

fn builder_confine_denies_files_and_the_netlayer_still_works() -> Outcome {
    let dir = private_dir();
    std::fs::write(dir.path().join("secret.txt"), "not for a confined peer").unwrap();
    let d = Daemon::start(dir.path(), "intro", &[]);
    let intro = d.socket.to_str().unwrap().to_owned();
    run_scenario("library", &d.socket, dir.path(), |p| {
        if let Some(uri) = p.line("READY ") {
            assert_eq!(echo_through(&intro, &uri, b"library\n"), b"library\n");
        }
    })
}

fn builder_confine_refuses_a_second_thread_and_applies_nothing() -> Outcome {
    let dir = private_dir();
    let d = Daemon::start(dir.path(), "intro", &[]);
    run_scenario("threads", &d.socket, dir.path(), |_| {})
}

fn builder_confine_needs_a_path_servers_directory() -> Outcome {
    let dir = private_dir();
    std::fs::write(dir.path().join("secret.txt"), "still readable").unwrap();
    run_scenario(
        "missing-directory",
        &dir.path().join("missing/intro.sock"),
        dir.path(),
        |_| {},
    )
}

/// The child side.
fn scenario(name: &str) {
    use uds_netlayer::sandbox::{Filesystem, Policy, SandboxError, SandboxMode};
    use uds_netlayer::{NetlayerError, UdsNetlayer};

    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let socket = PathBuf::from(std::env::var_os(SOCKET).unwrap());
    let dir = PathBuf::from(std::env::var_os(DIR).unwrap());
    let secret = dir.join("secret.txt");
    match name {
        "library" => {
            // Works before confining.
            std::fs::read_to_string(&secret).expect("read before confining");
            let mut builder = UdsNetlayer::builder().intro_path(&socket);
            let report = match builder.confine(SandboxMode::Require, Policy::new()) {
                Ok(r) => r,
                Err(NetlayerError::Sandbox(e @ SandboxError::Unsupported { .. })) => {
                    println!("SKIP {e}");
                    return;
                }
                Err(e) => panic!("confine: {e}"),
            };
            println!("confined: {report}");
            assert_eq!(report.filesystem, Filesystem::Denied);
            assert!(report.no_new_privs && report.landlock.abi().is_some());
            // Denied now.
            let e = std::fs::read_to_string(&secret).expect_err("a confined process read a file");
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            let e = std::fs::write(dir.join("new.txt"), "x").expect_err("created a file");
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert!(
                std::fs::read_dir("/proc/self/fd").is_err(),
                "/proc is a file system too"
            );
            // The netlayer, built afterwards on a multi-threaded runtime,
            // registers and accepts.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let net = builder.build().unwrap();
                tokio::time::timeout(PATIENCE, net.registered())
                    .await
                    .expect("registered");
                println!("READY {}", net.location());
                let conn = tokio::time::timeout(PATIENCE, net.accept())
                    .await
                    .expect("a connection")
                    .unwrap();
                assert!(conn.is_encrypted());
                let (mut r, mut w) = tokio::io::split(conn);
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while r.read(&mut byte).await.unwrap() == 1 {
                    line.push(byte[0]);
                    if byte[0] == b'\n' {
                        break;
                    }
                }
                w.write_all(&line).await.unwrap();
                w.shutdown().await.unwrap();
                // Until the dialer has read it and closed.
                while r.read(&mut byte).await.unwrap_or(0) > 0 {}
            });
            println!("PASS");
        }
        "threads" => {
            let before = std::fs::read_to_string("/proc/self/status").unwrap();
            let (tx, rx) = mpsc::channel::<()>();
            let other = std::thread::spawn(move || {
                let _ = rx.recv();
            });
            let mut builder = UdsNetlayer::builder().intro_path(&socket);
            for mode in [SandboxMode::Auto, SandboxMode::Require] {
                match builder.confine(mode, Policy::new()) {
                    Err(NetlayerError::Sandbox(SandboxError::OtherThreads { threads: 2 })) => {}
                    other => panic!("{mode}: expected OtherThreads, got {other:?}"),
                }
            }
            // Nothing applied: the flag is as before, files still open.
            let after = std::fs::read_to_string("/proc/self/status").unwrap();
            let nnp = |s: &str| {
                s.lines()
                    .find(|l| l.starts_with("NoNewPrivs:"))
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(nnp(&before), nnp(&after));
            drop(tx);
            other.join().unwrap();
            println!("PASS");
        }
        "missing-directory" => {
            let mut builder = UdsNetlayer::builder().intro_path(&socket);
            match builder.confine(SandboxMode::Require, Policy::new()) {
                Err(NetlayerError::Sandbox(SandboxError::Directory { dir, .. })) => {
                    assert_eq!(dir, socket.parent().unwrap());
                }
                other => panic!("expected a Directory error, got {other:?}"),
            }
            std::fs::read_to_string(&secret).expect("nothing was applied");
            // `auto` confines without a rule for it, and says why.
            let report = builder
                .confine(SandboxMode::Auto, Policy::new())
                .expect("auto");
            println!("confined: {report}");
            assert!(report.no_new_privs);
            println!("PASS");
        }
        other => panic!("unknown scenario {other}"),
    }
}
