//! First contact, as a new user meets the tools: the real binaries with a
//! fresh `HOME` and `XDG_RUNTIME_DIR`, following the README.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;

/// A fresh account: an empty home and a private runtime directory.
struct Account {
    _dir: tempfile::TempDir,
    home: PathBuf,
    runtime: PathBuf,
}

impl Account {
    fn new() -> Account {
        let dir = private_dir();
        let home = dir.path().join("home");
        let runtime = dir.path().join("run");
        for d in [&home, &runtime] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Account {
            _dir: dir,
            home,
            runtime,
        }
    }

    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// The first stdout line of `child` within PATIENCE.
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(PATIENCE).unwrap_or_default()
}

/// Runs to completion, or kills it after PATIENCE and fails.
fn output_within_patience(mut cmd: Command) -> std::process::Output {
    let child = cmd.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("still running after {PATIENCE:?}");
        }
    }
}

/// The README's first example: `uds-introd --key
/// ~/.local/state/ocapn/introd.key` on an account where
/// `~/.local/state/ocapn` does not exist yet.
#[test]
fn the_readme_daemon_command_works_on_a_fresh_account() {
    let account = Account::new();
    let key = account.home.join(".local/state/ocapn/introd.key");
    let mut daemon = KillOnDrop(
        account
            .command(&introd_bin())
            .arg("--key")
            .arg(&key)
            .spawn()
            .unwrap(),
    );
    let line = first_line(&mut daemon);
    let _ = daemon.kill();
    let mut err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    daemon.wait().unwrap();
    let socket = account.runtime.join("ocapn/intro.sock");
    assert!(
        line.starts_with(&format!("uds-introd ready socket={}", socket.display())),
        "{line:?}\n{err}"
    );
    assert!(key.exists());
    for d in [".local", ".local/state", ".local/state/ocapn"] {
        let mode = std::fs::metadata(account.home.join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
}

/// A malformed locator is refused before any I/O: with no server at all and
/// an hour to register, the answer is the URI error, at once.
#[test]
fn a_malformed_locator_fails_at_once() {
    let account = Account::new();
    for uri in ["ocapn://foo", "http://x", "ocapn://abc.unix-domain-socket"] {
        let mut cmd = account.command(Path::new(PEER_BIN));
        cmd.args(["--register-timeout", "3600", "connect", uri]);
        let out = output_within_patience(cmd);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(uri), "{uri}: {err}");
        assert!(
            !err.contains("register"),
            "{uri}: it tried to register: {err}"
        );
    }
}

/// With no server running, `uds-peer` warns once, retries quietly, and
/// says once when it finally registers.
#[test]
fn no_daemon_warns_once_then_says_when_registered() {
    let account = Account::new();
    // Nobody there: one warning in the whole wait, then the error.
    let mut cmd = account.command(Path::new(PEER_BIN));
    cmd.args(["--register-timeout", "3", "listen"]);
    let out = output_within_patience(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("WARN").count(), 1, "{err}");
    assert!(err.contains("could not register"), "{err}");

    // The server appears while the peer waits: it says so once.
    let mut peer = KillOnDrop(
        account
            .command(Path::new(PEER_BIN))
            .args(["--register-timeout", "60", "listen"])
            .spawn()
            .unwrap(),
    );
    let stderr = peer.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(PATIENCE).expect("no warning");
    assert!(first.contains("WARN"), "{first}");
    let mut daemon = KillOnDrop(
        account
            .command(&introd_bin())
            .arg("--key")
            .arg(account.home.join("introd.key"))
            .spawn()
            .unwrap(),
    );
    assert!(first_line(&mut daemon).starts_with("uds-introd ready"));
    let ready = first_line(&mut peer);
    assert!(ready.starts_with("uds-peer ready locator="), "{ready:?}");
    let said = rx.recv_timeout(PATIENCE).expect("nothing said on success");
    assert!(said.contains("registered, after"), "{said}");
    let _ = peer.kill();
    let _ = daemon.kill();
    peer.wait().unwrap();
    daemon.wait().unwrap();
}
