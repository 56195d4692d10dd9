//! The daemon's confinement (`--sandbox`), checked from outside on the real
//! binary: what `status` and the log say, the `NoNewPrivs` flag of every
//! thread, readiness through a notification socket that only a socket
//! connected before confining can reach, removal of the socket files at
//! shutdown from two granted directories, and that a confined daemon serves
//! as before. (`crates/uds-sandbox/tests/confine.rs` proves each denial;
//! the other test files run the daemon confined by default.)
//!
//! A `require` test skips, printing why, only when the daemon refuses to
//! start because the kernel lacks Landlock ("needs Landlock ABI").

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn own_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs a test body, one test at a time, on a runtime of its own, and
/// checks that this process has as many fds afterwards as before (the
/// threads reading a daemon's output close their pipes once it has exited).
fn serial<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // tokio's signal driver opens a process-wide socketpair with the first
    // runtime and keeps it: open it before counting.
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| drop(runtime()));
    let before = own_fd_count();
    let rt = runtime();
    rt.block_on(body());
    drop(rt);
    let start = Instant::now();
    while own_fd_count() != before {
        assert!(
            start.elapsed() < PATIENCE,
            "the test leaked fds: {} open, {before} before",
            own_fd_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `NoNewPrivs:` value of every thread of `pid`, by thread id.
fn no_new_privs_of_threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix("NoNewPrivs:"))
            .expect("a NoNewPrivs line")
            .trim()
            .to_owned();
        out.push((task.file_name().to_string_lossy().into_owned(), value));
    }
    out
}

/// Whether this test process itself has `no_new_privs` (a child inherits
/// it, whatever its own mode).
fn own_no_new_privs() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().any(|l| l == "NoNewPrivs:\t1")
}

/// The `sandbox:` line of a status reply, checking it comes right after
/// `id:`.
fn sandbox_line(status: &str) -> String {
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("id: "), "{status}");
    assert!(
        lines[1].starts_with("sandbox: "),
        "the second line of status says what confinement is in force:\n{status}"
    );
    lines[1].to_owned()
}

/// `uds-introd --socket DIR/run/intro.sock --key DIR/server.key` with
/// `extra`: the sockets in a directory of their own, away from the key.
fn daemon_command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(&*BIN);
    cmd.arg("--socket")
        .arg(dir.join("run/intro.sock"))
        .arg("--key")
        .arg(dir.join("server.key"))
        .args(extra);
    cmd
}

/// Starts the daemon; `None`, printing why, when it refuses to start
/// because the kernel lacks a Landlock feature that `require` needs.
fn start_or_skip(cmd: Command, dir: &Path) -> Option<Daemon> {
    match Daemon::try_spawn(cmd, dir, dir.join("run/intro.sock")) {
        Ok(d) => Some(d),
        Err(log) if log.contains("needs Landlock ABI") => {
            let why = log
                .lines()
                .find(|l| l.contains("needs Landlock ABI"))
                .unwrap_or_default()
                .to_owned();
            println!("skipped: the kernel cannot enforce --sandbox=require: {why}");
            None
        }
        Err(log) => panic!("the daemon did not start:\n{log}"),
    }
}

/// SIGTERM: a clean exit that removes both socket files.
fn terminate_and_check_removal(mut d: Daemon) {
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(!d.socket.exists(), "the socket file is left:\n{}", d.log());
    assert!(!d.admin.exists(), "the admin socket is left:\n{}", d.log());
    assert!(
        !d.log().contains("could not remove"),
        "removal failed:\n{}",
        d.log()
    );
}

#[test]
fn require_is_in_status_and_log_and_on_every_thread() {
    serial(|| async {
        let dir = private_dir();
        let Some(d) = start_or_skip(
            daemon_command(dir.path(), &["--sandbox=require"]),
            dir.path(),
        ) else {
            return;
        };
        let line = sandbox_line(&d.status().await);
        let run = dir.path().join("run");
        for item in [
            "sandbox: mode=require landlock-abi=".to_owned(),
            " filesystem=denied ".to_owned(),
            format!(" remove-in={} ", run.display()),
            " scope=abstract-unix,signal ".to_owned(),
            " no-new-privs=yes".to_owned(),
        ] {
            assert!(line.contains(&item), "{item:?} is not in {line:?}");
        }
        // The log has the same line.
        d.wait_log(&line).await;

        let threads = no_new_privs_of_threads(d.pid());
        assert!(
            threads.len() > 1,
            "the runtime's threads exist by now: {threads:?}"
        );
        for (tid, value) in &threads {
            assert_eq!(value, "1", "thread {tid} of the daemon: {threads:?}");
        }

        // Confined, it serves as before.
        let mut pair = Pair::new(&d).await;
        pair.still_works().await;
        drop(pair);
        terminate_and_check_removal(d);
    })
}

/// The default is `auto`; the listening and admin sockets are in two
/// directories, both granted the removal, and both files are removed at
/// shutdown by the confined daemon.
#[test]
fn the_default_confines_and_removes_sockets_in_two_directories() {
    serial(|| async {
        let dir = private_dir();
        let admin_dir = dir.path().join("admin");
        let admin = admin_dir.join("introd.admin");
        let mut cmd = daemon_command(dir.path(), &[]);
        cmd.arg("--admin").arg(&admin);
        let mut d = Daemon::try_spawn(cmd, dir.path(), dir.path().join("run/intro.sock"))
            .unwrap_or_else(|log| panic!("the daemon did not start:\n{log}"));
        d.admin = admin;
        let line = sandbox_line(&d.status().await);
        assert!(
            line.starts_with("sandbox: mode=auto landlock-abi="),
            "{line}"
        );
        // `auto` sets no_new_privs even without Landlock.
        assert!(line.ends_with(" no-new-privs=yes"), "{line}");
        for (tid, value) in no_new_privs_of_threads(d.pid()) {
            assert_eq!(value, "1", "thread {tid} of the daemon");
        }
        if line.contains("landlock-abi=none") {
            println!("note: this kernel has no usable Landlock: {line}");
        } else {
            let expected = format!(
                " remove-in={},{} ",
                dir.path().join("run").display(),
                admin_dir.display()
            );
            assert!(line.contains(&expected), "{expected:?} is not in {line:?}");
        }
        d.wait_log(&line).await;
        let mut pair = Pair::new(&d).await;
        pair.still_works().await;
        drop(pair);
        terminate_and_check_removal(d);
    })
}

#[test]
fn off_applies_nothing_and_says_so() {
    serial(|| async {
        let dir = private_dir();
        let d = Daemon::try_spawn(
            daemon_command(dir.path(), &["--sandbox=off"]),
            dir.path(),
            dir.path().join("run/intro.sock"),
        )
        .unwrap_or_else(|log| panic!("the daemon did not start:\n{log}"));
        let line = sandbox_line(&d.status().await);
        let inherited = own_no_new_privs();
        assert_eq!(
            line,
            format!(
                "sandbox: mode=off landlock-abi=none(off) filesystem=unrestricted unix-connect=any \
             network=unrestricted scope=none no-new-privs={}",
                if inherited { "yes" } else { "no" }
            )
        );
        let expected = if inherited { "1" } else { "0" };
        for (tid, value) in no_new_privs_of_threads(d.pid()) {
            assert_eq!(value, expected, "thread {tid} of the daemon");
        }
        terminate_and_check_removal(d);
    })
}

/// `NOTIFY_SOCKET` naming an abstract socket: a confined daemon could not
/// connect to it any more (abstract scoping), so it is connected before
/// confining and `READY=1` is sent on that connection.
#[test]
fn readiness_reaches_an_abstract_notify_socket() {
    serial(|| async {
        let dir = private_dir();
        let name = format!("uds-introd-test-notify-{}", std::process::id());
        let notify =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut cmd = daemon_command(dir.path(), &["--sandbox=require"]);
        cmd.env("NOTIFY_SOCKET", format!("@{name}"));
        let Some(d) = start_or_skip(cmd, dir.path()) else {
            return;
        };
        let mut buf = [0u8; 256];
        let n = notify
            .recv(&mut buf)
            .expect("READY=1 from the confined daemon");
        assert_eq!(&buf[..n], b"READY=1\n");
        let line = sandbox_line(&d.status().await);
        assert!(line.contains(" scope=abstract-unix,signal "), "{line}");
        assert!(
            !d.log().contains("NOTIFY_SOCKET") && !d.log().contains("could not notify"),
            "{}",
            d.log()
        );
        terminate_and_check_removal(d);
        drop(notify);
    })
}

#[test]
fn the_option_is_documented_and_checked() {
    serial(|| async {
        let out = Command::new(&*BIN).arg("--help").output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("--sandbox <MODE>"), "{help}");
        assert!(help.contains("[default: auto]"), "{help}");
        let dir = private_dir();
        let out = run_to_exit({
            let mut cmd = daemon_command(dir.path(), &["--sandbox", "strict"]);
            cmd.env("RUST_LOG", "off");
            cmd
        });
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unknown sandbox mode \"strict\"")
                && err.contains("use \"off\", \"auto\" or \"require\""),
            "{err}"
        );
        assert!(
            !dir.path().join("run").exists(),
            "nothing was created before the arguments were checked"
        );
    })
}
