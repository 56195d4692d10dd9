//! `uds-introd spawn`: a child with a pre-connected intro socket, admitted
//! by pid; the daemon ends with the child.
//!
//! This test runs without libtest's harness: the same binary is the test
//! (no `UDS_INTROD_TEST_SPAWN` in the environment) and the child the daemon
//! starts (with it), so the child's code is not a test of its own.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use common::*;
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::WireProfile;

const MODE: &str = "UDS_INTROD_TEST_SPAWN";

fn main() {
    match std::env::var(MODE) {
        Ok(mode) => child(&mode),
        Err(_) => {
            let tests: [(&str, fn()); 5] = [
                (
                    "spawn_runs_a_child_with_a_private_intro_socket",
                    spawn_runs_a_child_with_a_private_intro_socket,
                ),
                (
                    "a_child_that_writes_at_once_is_admitted",
                    a_child_that_writes_at_once_is_admitted,
                ),
                (
                    "a_confined_daemon_admits_its_child_and_exits_with_its_status",
                    a_confined_daemon_admits_its_child_and_exits_with_its_status,
                ),
                (
                    "a_confined_daemon_stops_its_child_on_sigterm",
                    a_confined_daemon_stops_its_child_on_sigterm,
                ),
                (
                    "a_sigterm_while_the_child_starts_is_a_clean_shutdown",
                    a_sigterm_while_the_child_starts_is_a_clean_shutdown,
                ),
            ];
            let Some(tests) = select_tests(&tests) else {
                return;
            };
            for (name, test) in tests {
                print!("test {name} ... ");
                test();
                println!("ok");
            }
        }
    }
}

/// The spawned child (and, in mode `grandchild`, its own child).
fn child(mode: &str) {
    if mode == "term-parent" {
        // Signal the daemon as early as a child can: it may not have its
        // signal handlers yet.
        let daemon = nix::unistd::getppid();
        nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGTERM).unwrap();
        println!("RESULT child signalled the daemon");
        // A daemon that shuts down cleanly stops us long before this ends.
        std::thread::sleep(std::time::Duration::from_secs(10));
        println!("RESULT child outlived the daemon");
        std::process::exit(9);
    }
    let fd = uds_fdpass::inherit::take_fd_from_env("OCAPN_UDS_INTRO_FD")
        .unwrap()
        .expect("OCAPN_UDS_INTRO_FD");
    if mode == "fast" {
        // Write the registration before anything else, as a fast child
        // would: its first bytes must carry its credentials.
        let identity = Arc::new(Identity::generate());
        let hs = ClientHandshake::new(identity.clone(), ClientConfig::default());
        let mut std = std::os::unix::net::UnixStream::from(fd);
        std::io::Write::write_all(&mut std, &hs.register_message()).unwrap();
        return fast_child_finish(std, identity, hs);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server: uds_syrup::Designator = std::env::var("OCAPN_UDS_INTRO_ID")
            .unwrap()
            .parse()
            .unwrap();
        let mut c = Client {
            stream: uds_fdpass::FdStream::try_from_fd(fd).unwrap(),
            chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
            identity: Arc::new(Identity::generate()),
            server: None,
        };
        if mode == "grandchild" {
            // Not the spawned pid: the daemon must refuse what we send.
            let _ = c.stream.send(b"t", &[]).await;
            c.expect_closed().await;
            println!("RESULT grandchild closed");
            return;
        }
        c.handshake(WireProfile::Draft).await.unwrap();
        assert_eq!(
            c.server,
            Some(server),
            "OCAPN_UDS_INTRO_ID names the server"
        );
        println!("RESULT child registered {}", c.identity.designator());
        if mode == "wait" {
            // Stays registered until it is stopped.
            println!("RESULT child waiting pid={}", std::process::id());
            std::future::pending::<()>().await;
        }
        // Hand the same socket to a grandchild: it must not be admitted.
        let inheritable = uds_fdpass::inherit::inheritable(&c.stream).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .env(MODE, "grandchild")
            .env("OCAPN_UDS_INTRO_FD", inheritable.as_raw_fd().to_string())
            .output()
            .unwrap();
        drop(inheritable);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("RESULT grandchild closed"), "{text}");
        println!("RESULT grandchild refused");
        std::process::exit(7);
    });
}

/// Finishes the fast child's registration; exits 0 if the daemon admitted
/// it, 3 if it was closed.
fn fast_child_finish(
    std: std::os::unix::net::UnixStream,
    identity: Arc<Identity>,
    mut hs: ClientHandshake,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        std.set_nonblocking(true).unwrap();
        let mut c = Client {
            stream: uds_fdpass::FdStream::try_from_std(std).unwrap(),
            chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
            identity,
            server: None,
        };
        let response = match c.next().await {
            Some(uds_handshake::channel::ChannelEvent::Message { value, .. }) => value,
            _ => {
                println!("RESULT fast child closed");
                std::process::exit(3);
            }
        };
        let done = hs.receive(&response).unwrap();
        c.send(&done.signature_message).await;
        println!("RESULT fast child registered");
    });
}

fn spawn_runs_a_child_with_a_private_intro_socket() {
    let dir = private_dir();
    let admin = dir.path().join("admin");
    let out = run_to_exit({
        let mut cmd = Command::new(&*BIN);
        cmd.arg("spawn")
            .arg("--admin")
            .arg(&admin)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(MODE, "child")
            .env("RUST_LOG", "info");
        cmd
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("RESULT child registered"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("RESULT grandchild refused"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("wrong-pid"),
        "the refusal is logged: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the daemon exits with the child's status"
    );
}

/// The output of a finished `spawn`; `None`, printing why, when the daemon
/// refused `--sandbox=require` because the kernel lacks Landlock.
fn unless_landlock_is_missing(out: std::process::Output) -> Option<std::process::Output> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && let Some(why) = stderr.lines().find(|l| l.contains("needs Landlock ABI"))
    {
        println!("skipped: the kernel cannot enforce --sandbox=require: {why}");
        return None;
    }
    Some(out)
}

/// The child is started before the daemon confines itself (it is not
/// confined), admitted by pid on its socket, and the daemon, confined
/// without signal scoping, exits with its status.
fn a_confined_daemon_admits_its_child_and_exits_with_its_status() {
    let dir = private_dir();
    let out = run_to_exit({
        let mut cmd = Command::new(&*BIN);
        cmd.args(["spawn", "--sandbox=require", "--admin"])
            .arg(dir.path().join("admin"))
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(MODE, "child")
            .env("RUST_LOG", "info");
        cmd
    });
    let Some(out) = unless_landlock_is_missing(out) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sandbox: mode=require landlock-abi=")
            && stderr.contains(" filesystem=denied ")
            && stderr.contains(" scope=abstract-unix no-new-privs=yes"),
        "confined, signals not scoped (to stop the child): {stderr}"
    );
    assert!(
        stdout.contains("RESULT child registered"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("RESULT grandchild refused"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("wrong-pid"), "{stderr}");
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(
        !dir.path().join("admin").exists(),
        "the admin socket is removed"
    );
}

/// SIGTERM to a confined `spawn` daemon stops its child (SIGKILL: it
/// signals a process outside its domain, so signal scoping is off) and the
/// daemon exits cleanly.
fn a_confined_daemon_stops_its_child_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let dir = private_dir();
    let mut daemon = KillOnDrop(
        Command::new(&*BIN)
            .args(["spawn", "--sandbox=require", "--admin"])
            .arg(dir.path().join("admin"))
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(MODE, "wait")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = daemon.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The child's lines, then end of file once the daemon and the child
    // (which shares the daemon's stdout) are both gone.
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = daemon.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.ok());
        }
        let _ = tx.send(None);
    });
    let mut child_pid = None;
    while child_pid.is_none() {
        match lines.recv_timeout(PATIENCE) {
            Ok(Some(line)) => {
                child_pid = line
                    .strip_prefix("RESULT child waiting pid=")
                    .map(|p| p.parse::<u32>().unwrap());
            }
            Ok(None) => {
                let status = daemon.wait().unwrap();
                reader.join().unwrap();
                let out = std::process::Output {
                    status,
                    stdout: Vec::new(),
                    stderr: log.join().unwrap().into_bytes(),
                };
                if unless_landlock_is_missing(out).is_none() {
                    return;
                }
                panic!("the child never registered ({status})");
            }
            Err(_) => {
                let _ = daemon.kill();
                panic!("the child never registered");
            }
        }
    }
    let child_pid = child_pid.unwrap();
    // Should an assertion below fail, the daemon's child goes too (only
    // then: once the test has seen it exit, its pid may be reused).
    struct KillPid(u32);
    impl Drop for KillPid {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                return;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _child = KillPid(child_pid);
    // The daemon is confined on every thread; the child, started before,
    // is not (unless this test itself runs with no_new_privs).
    let nnp = |pid: u32| -> Vec<String> {
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
    };
    let ours = nnp(std::process::id())[0].clone();
    let daemon_threads = nnp(daemon.id());
    assert!(
        daemon_threads.iter().all(|v| v == "1"),
        "{daemon_threads:?}"
    );
    assert_eq!(nnp(child_pid)[0], ours, "the child is not confined");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}\n{log}");
    // End of file: the child is gone too.
    loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => panic!("the child {child_pid} still runs after the daemon exited\n{log}"),
        }
    }
    reader.join().unwrap();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(!log.contains("could not stop the child"), "{log}");
    assert!(!dir.path().join("admin").exists(), "{log}");
    drop(dir);
    assert_eq!(
        std::fs::read_dir("/proc/self/fd").unwrap().count(),
        fds_before,
        "the test leaked fds"
    );
}

/// A SIGTERM that arrives while the child is starting, before the daemon
/// has its signal handlers, still gets a clean shutdown: the daemon stops
/// the child and exits with success instead of dying of the signal and
/// leaving the child running. (Whether the signal lands before the handlers
/// depends on timing, so the test repeats.)
fn a_sigterm_while_the_child_starts_is_a_clean_shutdown() {
    for _ in 0..10 {
        let dir = private_dir();
        let out = run_to_exit({
            let mut cmd = Command::new(&*BIN);
            cmd.args(["spawn", "--admin"])
                .arg(dir.path().join("admin"))
                .arg("--")
                .arg(std::env::current_exe().unwrap())
                .env(MODE, "term-parent")
                .env("RUST_LOG", "info");
            cmd
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("RESULT child signalled the daemon"),
            "{stdout}\n{stderr}"
        );
        assert!(
            out.status.success(),
            "the daemon died of the signal ({}) instead of shutting down:\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stderr.contains("SIGTERM: shutting down"), "{stderr}");
        assert!(
            !stdout.contains("RESULT child outlived the daemon"),
            "the child was left running: {stdout}\n{stderr}"
        );
        assert!(
            !dir.path().join("admin").exists(),
            "the admin socket is removed: {stderr}"
        );
    }
}

/// `SO_PASSCRED` must be on before the child starts: bytes written before
/// it is turned on carry no credentials, and the child would be refused
/// as `wrong-pid`.
fn a_child_that_writes_at_once_is_admitted() {
    for _ in 0..10 {
        let out = run_to_exit({
            let mut cmd = Command::new(&*BIN);
            cmd.args(["spawn", "--no-admin", "--"])
                .arg(std::env::current_exe().unwrap())
                .env(MODE, "fast")
                .env("RUST_LOG", "info");
            cmd
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("RESULT fast child registered"),
            "{stdout}\n{stderr}"
        );
        assert!(!stderr.contains("wrong-pid"), "{stderr}");
        assert!(out.status.success(), "{stdout}\n{stderr}");
    }
}
