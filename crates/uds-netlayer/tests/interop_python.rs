//! Interoperability of the e2ee mode with an independent implementation:
//! `tools/interop/e2ee_peer.py`, written in Python from the design notes,
//! the wire facts, the vectors and the Noise specification only. These tests
//! run it against the real `uds-introd` and `uds-peer` binaries in both
//! directions. They skip (and say so) when `python3` with the
//! `cryptography` package is not available.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// The workspace root, where `tools/` lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    workspace_root().join("tools/interop/e2ee_peer.py")
}

/// `python3 tools/interop/e2ee_peer.py ARGS...`
fn python_peer(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn uds_peer(intro: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(PEER_BIN);
    cmd.arg("--intro")
        .arg(intro)
        .args(args)
        .env("RUST_LOG", "warn");
    cmd
}

/// A child process whose stdout and stderr are collected by threads. It is
/// killed and reaped when dropped, so a failing test leaves nothing running.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    /// Starts `cmd`, writing `input` to its stdin (then closing it) if given.
    fn spawn(name: &str, cmd: Command, input: Option<Vec<u8>>) -> Proc {
        Proc::try_spawn(name, cmd, input).unwrap_or_else(|e| panic!("{name}: could not start: {e}"))
    }

    fn try_spawn(name: &str, mut cmd: Command, input: Option<Vec<u8>>) -> std::io::Result<Proc> {
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            // A peer that dies early makes this write fail; that failure
            // shows in its exit status and stderr.
            std::thread::spawn(move || drop(stdin.write_all(&input)));
        }
        let (tx, lines) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            loop {
                let mut line = Vec::new();
                match out.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        }));
        Ok(Proc {
            name: name.to_owned(),
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        })
    }

    /// Kills the process and panics with what it said.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
        panic!(
            "{}: {what}\nstdout: {}\nstderr: {}",
            self.name,
            String::from_utf8_lossy(&self.stdout),
            stderr.unwrap_or_default()
        );
    }

    /// The next line on stdout (without its newline), within PATIENCE.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.stdout.extend_from_slice(&line);
                String::from_utf8_lossy(&line).trim_end().to_owned()
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.fail(&format!("no line on stdout within {PATIENCE:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("stdout closed"),
        }
    }

    /// Waits (at most PATIENCE) for the process to exit and returns its
    /// status, all of its stdout and its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<u8>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not exit within {PATIENCE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => self.stdout.extend_from_slice(&line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => self.fail("stdout stayed open after exit"),
            }
        }
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, std::mem::take(&mut self.stdout), stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `python3` with the `cryptography` package can run here; prints
/// why not.
fn python_ready() -> bool {
    let mut check = Command::new("python3");
    check.args([
        "-c",
        "import cryptography.hazmat.primitives.asymmetric.x25519, hashlib; hashlib.blake2s",
    ]);
    let probe = match Proc::try_spawn("python3", check, None) {
        Ok(p) => p,
        Err(e) => {
            println!("skipped: python3 is not available: {e}");
            return false;
        }
    };
    let (status, _, stderr) = probe.finish();
    if !status.success() {
        println!(
            "skipped: python3 cannot import the `cryptography` package ({})",
            stderr.trim().lines().last().unwrap_or("no message")
        );
    }
    status.success()
}

/// A fresh identity key file made by `uds-introd keygen`; returns its
/// designator.
fn keygen(file: &Path) -> String {
    let mut cmd = Command::new(introd_bin());
    cmd.arg("keygen").arg(file);
    let (status, stdout, stderr) = Proc::spawn("uds-introd keygen", cmd, None).finish();
    assert!(status.success(), "keygen failed: {stderr}");
    let stdout = String::from_utf8(stdout).unwrap();
    stdout
        .trim()
        .rsplit_once("id=")
        .unwrap_or_else(|| panic!("keygen printed no id: {stdout:?}"))
        .1
        .to_owned()
}

fn vectors_dir(krate: &str) -> PathBuf {
    workspace_root()
        .join("crates")
        .join(krate)
        .join("tests/vectors")
}

/// The official Noise vectors for the pattern: another project's data,
/// read from `../shared/vectors` beside the workspace when present (never
/// part of the repository).
fn official_noise_vectors() -> Option<PathBuf> {
    let path = workspace_root().join("../shared/vectors/noise-xx.json");
    path.exists().then_some(path)
}

/// Runs the Python vector check on `e2ee` (with the repository's wire.tsv,
/// and the official Noise vectors when present).
fn run_vectors(e2ee: &Path) -> (ExitStatus, String, String) {
    let wire = vectors_dir("uds-syrup").join("wire.tsv");
    let mut cmd = python_peer(&["vectors"]);
    cmd.arg(e2ee).arg("--wire").arg(wire);
    match official_noise_vectors() {
        Some(noise) => {
            cmd.arg("--noise").arg(noise);
        }
        None => println!("skipped: noise-xx.json not found beside the workspace"),
    }
    let (status, stdout, stderr) = Proc::spawn("e2ee_peer.py vectors", cmd, None).finish();
    (
        status,
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

#[test]
fn python_reproduces_the_e2ee_vectors() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let e2ee = vectors_dir("uds-e2ee").join("e2ee.tsv");
        let (status, stdout, stderr) = run_vectors(&e2ee);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("all vectors match"), "{stdout}");
        for row in [
            "message-1",
            "message-2",
            "message-3",
            "handshake-hash",
            "transport-alice-2",
            "message-2-from-lied-about",
        ] {
            assert!(stdout.contains(&format!("ok {row}")), "{row}: {stdout}");
        }
        if official_noise_vectors().is_some() {
            assert!(stdout.contains("ok noise vector 0"), "{stdout}");
        }

        // The check is real: one changed byte in message 2 is reported.
        let text = std::fs::read_to_string(&e2ee).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("message-2\t"))
            .expect("message-2 row");
        let hex = line.split('\t').nth(1).unwrap();
        let last = hex.len() - 1;
        let flipped = if &hex[last..] == "0" { "1" } else { "0" };
        let bad_line = line.replacen(hex, &format!("{}{flipped}", &hex[..last]), 1);
        let dir = private_dir();
        let bad = dir.path().join("e2ee.tsv");
        std::fs::write(&bad, text.replacen(line, &bad_line, 1)).unwrap();
        let (status, stdout, _) = run_vectors(&bad);
        assert!(!status.success(), "a wrong vector passed: {stdout}");
        assert!(stdout.contains("MISMATCH message-2"), "{stdout}");
    });
}

/// Input larger than one transport frame (65519 bytes), so both sides
/// split and reassemble.
fn big_text() -> Vec<u8> {
    (0..8000)
        .flat_map(|i| format!("line {i} from the Rust dialer\n").into_bytes())
        .collect()
}

/// A seed for the Python side to prove instead of its registered identity.
const OTHER_SEED: &str = "4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60";

/// Starts `e2ee_peer.py listen` and returns it with its locator.
fn python_listen(daemon: &Daemon, extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["listen", "--intro", daemon.socket.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut listener = Proc::spawn("e2ee_peer.py listen", python_peer(&args), None);
    let line = listener.line();
    let Some(uri) = line.strip_prefix("e2ee-peer ready locator=") else {
        listener.fail(&format!("unexpected first line {line:?}"));
    };
    assert!(
        uri.starts_with("ocapn://")
            && uri.ends_with(&format!(".unix-domain-socket?{}=1", daemon.id)),
        "{uri}"
    );
    let uri = uri.to_owned();
    (listener, uri)
}

/// Starts `uds-peer listen --echo` (encrypted, the default) with the key
/// in `key` and returns it with its locator.
fn rust_echo(daemon: &Daemon, key: &Path) -> (Proc, String) {
    let mut echo = Proc::spawn(
        "uds-peer listen --echo",
        uds_peer(
            &daemon.socket,
            &["--key", key.to_str().unwrap(), "listen", "--echo"],
        ),
        None,
    );
    let line = echo.line();
    let Some(uri) = line.strip_prefix("uds-peer ready locator=") else {
        echo.fail(&format!("unexpected first line {line:?}"));
    };
    let uri = uri.to_owned();
    (echo, uri)
}

/// Runs `uds-peer connect URI` (encrypted, the default) with `input`.
fn rust_connect(
    daemon: &Daemon,
    key: &Path,
    uri: &str,
    input: &[u8],
) -> (ExitStatus, Vec<u8>, String) {
    Proc::spawn(
        "uds-peer connect",
        uds_peer(
            &daemon.socket,
            &["--key", key.to_str().unwrap(), "connect", uri],
        ),
        Some(input.to_vec()),
    )
    .finish()
}

/// Runs `e2ee_peer.py connect URI ARGS...`; returns its status, stdout
/// and stderr.
fn python_connect(daemon: &Daemon, uri: &str, extra: &[&str]) -> (ExitStatus, String, String) {
    let mut args = vec!["connect", "--intro", daemon.socket.to_str().unwrap(), uri];
    args.extend_from_slice(extra);
    let (status, stdout, stderr) =
        Proc::spawn("e2ee_peer.py connect", python_peer(&args), None).finish();
    (
        status,
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

/// Fails unless the echo server is still running.
fn still_serving(echo: &mut Proc) {
    if let Some(status) = echo.child.try_wait().unwrap() {
        echo.fail(&format!("exited early: {status}"));
    }
}

#[test]
fn rust_dials_a_python_listener() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &[]);
        let key = dir.path().join("dialer.key");
        let dialer_id = keygen(&key);
        let (listener, uri) = python_listen(&daemon, &[]);

        let input = big_text();
        assert!(input.len() > 65519 * 2);
        let (status, echoed, stderr) = rust_connect(&daemon, &key, &uri, &input);
        assert!(status.success(), "uds-peer connect failed: {stderr}");
        assert!(
            echoed == input,
            "echoed {} of {} bytes; stderr: {stderr}",
            echoed.len(),
            input.len()
        );

        let (status, stdout, stderr) = listener.finish();
        let stdout = String::from_utf8_lossy(&stdout);
        assert!(status.success(), "e2ee_peer.py listen failed: {stderr}");
        assert!(
            stdout.contains(&format!("e2ee-peer verified {dialer_id}\n")),
            "the Python side proved someone else: {stdout}"
        );
    });
}

#[test]
fn python_dials_a_rust_listener() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &[]);
        let key = dir.path().join("listener.key");
        let listener_id = keygen(&key);
        let (mut echo, uri) = rust_echo(&daemon, &key);
        assert!(uri.starts_with(&format!("ocapn://{listener_id}.")), "{uri}");

        // A short message, then one that spans several frames.
        for (message, repeat) in [("hello from python", 1), ("twenty bytes, again ", 10_000)] {
            let (status, stdout, stderr) = python_connect(
                &daemon,
                &uri,
                &["--message", message, "--repeat", &repeat.to_string()],
            );
            assert!(status.success(), "e2ee_peer.py connect failed: {stderr}");
            assert!(
                stdout.contains(&format!("e2ee-peer verified {listener_id}\n")),
                "{stdout}"
            );
            let expected = format!("e2ee-peer got {}\n", message.repeat(repeat));
            assert!(
                stdout.ends_with(&expected),
                "expected {} echoed bytes, got: {}",
                message.len() * repeat,
                &stdout[..stdout.len().min(400)]
            );
        }
        still_serving(&mut echo);
    });
}

#[test]
fn python_registers_with_either_shape_of_server() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        for wire in ["goblins", "draft"] {
            let daemon = Daemon::start(dir.path(), wire, &["--wire", wire]);
            let key = dir.path().join(format!("echo-{wire}.key"));
            let (mut echo, uri) = rust_echo(&daemon, &key);
            // Answering in the server's shape, and in each forced shape
            // (the daemon accepts both).
            for answer in ["auto", "draft", "goblins"] {
                let message = format!("server {wire}, answer {answer}");
                let (status, stdout, stderr) =
                    python_connect(&daemon, &uri, &["--wire", answer, "--message", &message]);
                assert!(status.success(), "{wire}/{answer}: {stderr}");
                assert!(
                    stdout.ends_with(&format!("e2ee-peer got {message}\n")),
                    "{wire}/{answer}: {stdout}"
                );
            }
            still_serving(&mut echo);
        }
    });
}

/// Ways for the Python side to misbehave in a handshake, each of which a
/// correct peer must refuse: proving an identity other than the one the
/// introduction named, signing an X25519 key other than the one used, and
/// sending a low-order ephemeral key (an all-zero DH result).
const LIES: [&[&str]; 3] = [
    &["--prove-seed", OTHER_SEED],
    &["--sign-other-static"],
    &["--zero-ephemeral"],
];

#[test]
fn a_rust_dialer_refuses_a_lying_python_listener() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &[]);
        let key = dir.path().join("dialer.key");
        keygen(&key);
        for lie in LIES {
            let (listener, uri) = python_listen(&daemon, lie);
            let (status, stdout, stderr) = rust_connect(&daemon, &key, &uri, b"must not arrive\n");
            assert!(!status.success(), "{lie:?}: uds-peer connected to a liar");
            assert!(
                stdout.is_empty(),
                "{lie:?}: {}",
                String::from_utf8_lossy(&stdout)
            );
            assert!(
                stderr.contains("could not prove its identity"),
                "{lie:?}: {stderr}"
            );
            // The dialer closed instead of sending handshake message 3.
            let (status, stdout, stderr) = listener.finish();
            let stdout = String::from_utf8_lossy(&stdout);
            assert!(!status.success(), "{lie:?}: {stdout}");
            assert!(!stdout.contains("verified"), "{lie:?}: {stdout}");
            assert!(
                stderr.contains("before handshake message 3"),
                "{lie:?}: {stderr}"
            );
        }
    });
}

#[test]
fn a_rust_listener_refuses_a_lying_python_dialer() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &[]);
        let key = dir.path().join("listener.key");
        keygen(&key);
        let (mut echo, uri) = rust_echo(&daemon, &key);
        // The first two lies come in message 3, after which the dialer's
        // handshake is complete and it only sees the connection close; the
        // low-order key comes in message 1 and gets no message 2.
        let expected = [
            "refuse our identity",
            "refuse our identity",
            "before handshake message 2",
        ];
        for (lie, expected) in LIES.into_iter().zip(expected) {
            let mut args = lie.to_vec();
            args.extend(["--message", "must not be echoed"]);
            let (status, stdout, stderr) = python_connect(&daemon, &uri, &args);
            assert!(
                !status.success(),
                "{lie:?}: the listener accepted a liar: {stdout}"
            );
            assert!(!stdout.contains("e2ee-peer got"), "{lie:?}: {stdout}");
            assert!(stderr.contains(expected), "{lie:?}: {stderr}");
        }
        // The listener refused those connections and still serves.
        let (status, stdout, stderr) = python_connect(&daemon, &uri, &["--message", "honest"]);
        assert!(status.success(), "{stderr}");
        assert!(stdout.ends_with("e2ee-peer got honest\n"), "{stdout}");
        still_serving(&mut echo);
    });
}

#[test]
fn a_rust_dialer_reports_a_cut_without_the_authenticated_end() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &[]);
        let key = dir.path().join("dialer.key");
        keygen(&key);
        // The Python listener echoes, then closes without its empty end
        // frame: the dialer must not take that for the peer's end.
        let (listener, uri) = python_listen(&daemon, &["--no-end"]);
        let (status, stdout, stderr) = rust_connect(&daemon, &key, &uri, b"cut me off\n");
        assert!(!status.success(), "a cut looked like a clean end");
        assert_eq!(stdout, b"cut me off\n", "{stderr}");
        assert!(stderr.contains("authenticated end"), "{stderr}");
        let (status, _, stderr) = listener.finish();
        assert!(status.success(), "{stderr}");
    });
}

#[test]
fn python_reports_a_peer_that_is_not_there() {
    no_leak(|| async {
        if !python_ready() {
            return;
        }
        let dir = private_dir();
        let daemon = Daemon::start(dir.path(), "intro", &["--park-timeout", "300ms"]);
        // Nobody registered this designator: the server gives up on the
        // intro and closes the socket; the dialer must fail, not hang.
        let nobody = format!(
            "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?{}=1",
            daemon.id
        );
        let (status, stdout, stderr) = python_connect(&daemon, &nobody, &[]);
        assert!(!status.success(), "{stdout}");
        assert!(
            stderr.contains("before the peer answered the handshake"),
            "{stderr}"
        );
    });
}
