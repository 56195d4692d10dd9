//! Lying introduction servers against the netlayer, in encrypted mode (the
//! default) and in plaintext mode: each lie fails loudly in encrypted mode
//! on the side that can detect it; the plaintext runs show what the same
//! lie achieves without encryption.
//!
//! The liar is `examples/lying_introd.rs`, run as a separate process (a
//! server in this process could not be told from an honest one by the
//! credentials of the sockets it passes). This test runs without libtest's
//! harness: the same binary is the test and, with `UDS_TEST_LYING_INTROD`
//! set, the lying server.

#![allow(unreachable_pub)]

mod common;
#[path = "../examples/lying_introd.rs"]
mod lying;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_e2ee::{E2eeError, FrameKind};
use uds_netlayer::{AttemptError, NetlayerError, UdsNetlayer};
use uds_syrup::Designator;

const MODE: &str = "UDS_TEST_LYING_INTROD";
const SECRET: &[u8] = b"the secret plan";

fn main() -> std::process::ExitCode {
    if let Ok(args) = std::env::var(MODE) {
        let args: Vec<String> = args.split('\u{1f}').map(str::to_owned).collect();
        return lying::run(&args);
    }
    let tests: &[(&str, fn())] = &[
        ("a_relay_sees_only_ciphertext", a_relay_sees_only_ciphertext),
        (
            "an_honest_server_is_not_flagged_as_a_relay",
            an_honest_server_is_not_flagged_as_a_relay,
        ),
        (
            "a_flipped_bit_is_never_delivered",
            a_flipped_bit_is_never_delivered,
        ),
        ("a_lie_about_from_is_caught", a_lie_about_from_is_caught),
        (
            "an_impersonating_server_is_caught",
            an_impersonating_server_is_caught,
        ),
        (
            "a_replayed_handshake_is_refused",
            a_replayed_handshake_is_refused,
        ),
        (
            "a_cut_is_reported_as_truncation",
            a_cut_is_reported_as_truncation,
        ),
        (
            "a_lying_server_beside_an_honest_one_is_routed_around",
            a_lying_server_beside_an_honest_one_is_routed_around,
        ),
        (
            "uds_peer_reports_a_peer_that_cannot_prove_its_identity",
            uds_peer_reports_a_peer_that_cannot_prove_its_identity,
        ),
    ];
    let Some(tests) = select_tests(tests) else {
        return std::process::ExitCode::SUCCESS;
    };
    for (name, test) in tests {
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
    }
    std::process::ExitCode::SUCCESS
}

/// A running lying server, killed when dropped.
struct Liar {
    child: Child,
    socket: PathBuf,
    id: Designator,
    log: Arc<Mutex<String>>,
}

impl Liar {
    fn start(dir: &Path, name: &str, lie: &[&str]) -> Liar {
        let socket = dir.join(format!("{name}.sock"));
        let mut args = vec!["--socket".to_owned(), socket.display().to_string()];
        args.extend(lie.iter().map(|s| s.to_string()));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(MODE, args.join("\u{1f}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("lying-introd ready") {
                    let _ = tx.send(line.clone());
                }
                let mut log = l.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let ready = rx.recv_timeout(PATIENCE).expect("the liar never got ready");
        let id = ready.rsplit_once(" id=").unwrap().1.trim().parse().unwrap();
        Liar {
            child,
            socket,
            id,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn wait_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            assert!(
                start.elapsed() < PATIENCE,
                "the liar never said {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn net(servers: &[&Path], plaintext: bool) -> UdsNetlayer {
    let mut b = UdsNetlayer::builder()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .answer_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5));
    for s in servers {
        b = b.intro_path(*s);
    }
    if plaintext {
        b = b.plaintext();
    }
    b.build().unwrap()
}

async fn pair(servers: &[&Path], plaintext: bool) -> (UdsNetlayer, UdsNetlayer) {
    let (a, b) = (net(servers, plaintext), net(servers, plaintext));
    registered_with(&a, servers.len()).await;
    registered_with(&b, servers.len()).await;
    (a, b)
}

/// Dials `b` from `a`: in encrypted mode `connect` returns once the
/// handshake proved the peer; in plaintext mode once the server took the
/// socket.
async fn open(
    a: &UdsNetlayer,
    b: &UdsNetlayer,
    _plaintext: bool,
) -> Result<uds_netlayer::Connection, NetlayerError> {
    a.connect(&b.location()).await
}

/// The first attempt's handshake error of a failed connect.
fn handshake_error(err: &NetlayerError) -> E2eeError {
    match err {
        NetlayerError::Unreachable { attempts, .. } => match &attempts[0].error {
            AttemptError::Handshake(e) => e.clone(),
            other => panic!("not a handshake failure: {other}"),
        },
        other => panic!("not an unreachable peer: {other}"),
    }
}

/// Waits until `net` has counted `n` failed incoming handshakes.
async fn handshakes_failed(net: &UdsNetlayer, n: u64) {
    let start = Instant::now();
    while net.stats().handshakes_failed < n {
        assert!(
            start.elapsed() < PATIENCE,
            "{} failed handshakes, waited for {n}",
            net.stats().handshakes_failed
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn a_relay_sees_only_ciphertext() {
    for plaintext in [false, true] {
        no_leak(|| async move {
            let dir = private_dir();
            let record = dir.path().join("relayed.bin");
            let record_arg = record.display().to_string();
            let liar = Liar::start(
                dir.path(),
                "relay",
                &["--lie", "relay", "--record", &record_arg],
            );
            let (a, b) = pair(&[&liar.socket], plaintext).await;
            let mut dialed = open(&a, &b, plaintext).await.unwrap();
            dialed.write_all(SECRET).await.unwrap();
            dialed.flush().await.unwrap();
            let mut accepted = b.accept().await.unwrap();
            let mut got = vec![0u8; SECRET.len()];
            accepted.read_exact(&mut got).await.unwrap();
            assert_eq!(got, SECRET, "the connection works through the relay");
            // The relay is visible: the socket was made by the liar.
            assert!(accepted.info().relayed);
            assert_eq!(accepted.info().encrypted, !plaintext);
            assert_eq!(accepted.info().identity_proven, !plaintext);
            accepted.shutdown().await.unwrap();
            dialed.shutdown().await.unwrap();
            let mut rest = Vec::new();
            dialed.read_to_end(&mut rest).await.unwrap();
            liar.wait_log("dialer -> target").await;
            let seen = std::fs::read(&record).unwrap();
            let found = seen.windows(SECRET.len()).any(|w| w == SECRET);
            if plaintext {
                assert!(found, "in plaintext mode the relay reads everything");
            } else {
                assert!(!found, "in e2ee mode the relay sees only ciphertext");
                assert!(seen.len() > 600, "it did relay the handshake");
            }
        });
    }
}

/// Regression: an honest server, in a process of its own, passes the
/// dialer's socket; the connection must not be flagged as relayed.
fn an_honest_server_is_not_flagged_as_a_relay() {
    for plaintext in [false, true] {
        no_leak(|| async move {
            let dir = private_dir();
            let liar = Liar::start(dir.path(), "honest", &["--lie", "honest"]);
            let (a, b) = pair(&[&liar.socket], plaintext).await;
            let mut dialed = open(&a, &b, plaintext).await.unwrap();
            dialed.write_all(b"hi").await.unwrap();
            dialed.flush().await.unwrap();
            let accepted = b.accept().await.unwrap();
            assert!(!accepted.info().relayed, "{:?}", accepted.info());
            assert_eq!(accepted.info().creator.pid, std::process::id() as i32);
        });
    }
}

fn a_flipped_bit_is_never_delivered() {
    // Message 1 is 34 bytes, message 2 316, message 3 284; the first
    // transport frame follows message 3.
    for (flip, what) in [
        ("out:10", "message 1"),
        ("back:100", "message 2"),
        ("out:100", "message 3"),
        ("out:322", "the first transport frame"),
    ] {
        no_leak(|| async move {
            let dir = private_dir();
            let liar = Liar::start(dir.path(), "tamper", &["--lie", "tamper", "--flip", flip]);
            let (a, b) = pair(&[&liar.socket], false).await;
            match open(&a, &b, false).await {
                Err(e) => {
                    let err = handshake_error(&e);
                    assert!(matches!(err, E2eeError::DecryptFailed(_)), "{what}: {err}");
                }
                Ok(mut dialed) => {
                    // The dialer finishes with message 3; the acceptor
                    // decides.
                    dialed.write_all(SECRET).await.unwrap();
                    dialed.flush().await.unwrap();
                    if what == "message 3" {
                        handshakes_failed(&b, 1).await;
                        let mut buf = [0u8; 16];
                        let r = dialed.read(&mut buf).await;
                        assert!(
                            r.is_err(),
                            "{what}: the acceptor closed without a clean end"
                        );
                        return;
                    }
                    let mut accepted = b.accept().await.unwrap();
                    let mut buf = vec![0u8; 64];
                    let err = accepted.read(&mut buf).await.unwrap_err();
                    assert_eq!(
                        E2eeError::from_io(&err),
                        Some(&E2eeError::DecryptFailed(FrameKind::Transport)),
                        "{what}"
                    );
                    assert!(accepted.read(&mut buf).await.is_err(), "it stays failed");
                }
            }
            liar.wait_log("flipped one bit").await;
        });
    }
    // Plaintext: the flipped bit arrives, silently.
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(
            dir.path(),
            "tamper",
            &["--lie", "tamper", "--flip", "out:0"],
        );
        let (a, b) = pair(&[&liar.socket], true).await;
        let mut dialed = open(&a, &b, true).await.unwrap();
        dialed.write_all(SECRET).await.unwrap();
        let mut accepted = b.accept().await.unwrap();
        let mut got = vec![0u8; SECRET.len()];
        accepted.read_exact(&mut got).await.unwrap();
        assert_ne!(got, SECRET);
        assert_eq!(&got[1..], &SECRET[1..], "one bit changed, nothing noticed");
    });
}

fn a_lie_about_from_is_caught() {
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(dir.path(), "wrong-from", &["--lie", "wrong-from"]);
        let (a, b) = pair(&[&liar.socket], false).await;
        let err = open(&a, &b, false).await.unwrap_err();
        // The two ends disagree on who dialed: message 2 does not decrypt.
        assert_eq!(
            handshake_error(&err),
            E2eeError::DecryptFailed(FrameKind::Message2)
        );
        handshakes_failed(&b, 1).await;
    });
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(dir.path(), "wrong-from", &["--lie", "wrong-from"]);
        let (a, b) = pair(&[&liar.socket], true).await;
        let mut dialed = open(&a, &b, true).await.unwrap();
        dialed.write_all(b"it's me").await.unwrap();
        let accepted = b.accept().await.unwrap();
        assert_ne!(
            accepted.peer(),
            &a.location(),
            "in plaintext mode the target believes the lie"
        );
    });
}

fn an_impersonating_server_is_caught() {
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(dir.path(), "impersonate", &["--lie", "impersonate"]);
        let (a, b) = pair(&[&liar.socket], false).await;
        let err = open(&a, &b, false).await.unwrap_err();
        match handshake_error(&err) {
            E2eeError::WrongIdentity { expected, found } => {
                assert_eq!(expected, b.identity().designator());
                assert_eq!(found, liar.id, "the liar could only prove its own identity");
            }
            other => panic!("{other}"),
        }
        liar.wait_log("the dialer refused me").await;
    });
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(dir.path(), "impersonate", &["--lie", "impersonate"]);
        let (a, b) = pair(&[&liar.socket], true).await;
        let mut dialed = open(&a, &b, true).await.unwrap();
        dialed.write_all(b"hello bob").await.unwrap();
        let mut buf = vec![0u8; 128];
        let n = dialed.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.contains(&b.identity().designator().to_string()),
            "in plaintext mode the liar answers as the target: {text}"
        );
        liar.wait_log("hello bob").await;
    });
}

fn a_replayed_handshake_is_refused() {
    for plaintext in [false, true] {
        no_leak(|| async move {
            let dir = private_dir();
            let liar = Liar::start(dir.path(), "replay", &["--lie", "replay"]);
            let (a, b) = pair(&[&liar.socket], plaintext).await;
            let mut dialed = open(&a, &b, plaintext).await.unwrap();
            dialed.write_all(SECRET).await.unwrap();
            dialed.shutdown().await.unwrap();
            let mut accepted = b.accept().await.unwrap();
            let mut got = Vec::new();
            accepted.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, SECRET);
            accepted.shutdown().await.unwrap();
            drop((dialed, accepted));
            liar.wait_log("replaying").await;
            if plaintext {
                // The old message arrives again, as a new connection.
                let mut again = b.accept().await.unwrap();
                let mut got = Vec::new();
                again.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, SECRET, "in plaintext mode the replay is accepted");
            } else {
                handshakes_failed(&b, 1).await;
                liar.wait_log("the target answered the replay").await;
                assert!(
                    futures::FutureExt::now_or_never(b.accept()).is_none(),
                    "no connection came of the replay"
                );
            }
        });
    }
}

fn a_cut_is_reported_as_truncation() {
    // e2ee: message 1 (34) and 3 (284), then "hello" in one frame (2 + 5 +
    // 16 bytes): cut right after it.
    for (plaintext, after) in [(false, "341"), (true, "5")] {
        no_leak(|| async move {
            let dir = private_dir();
            let liar = Liar::start(dir.path(), "cut", &["--lie", "cut", "--cut-after", after]);
            let (a, b) = pair(&[&liar.socket], plaintext).await;
            let mut dialed = open(&a, &b, plaintext).await.unwrap();
            dialed.write_all(b"hello").await.unwrap();
            dialed.flush().await.unwrap();
            let mut accepted = b.accept().await.unwrap();
            let mut got = [0u8; 5];
            accepted.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello");
            liar.wait_log("cutting the connection").await;
            let mut rest = Vec::new();
            let r = accepted.read_to_end(&mut rest).await;
            if plaintext {
                assert_eq!(r.unwrap(), 0, "in plaintext mode a cut looks like a close");
            } else {
                let err = r.unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
                assert_eq!(
                    E2eeError::from_io(&err),
                    Some(&E2eeError::Truncated(FrameKind::Transport))
                );
            }
        });
    }
}

fn a_lying_server_beside_an_honest_one_is_routed_around() {
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(
            dir.path(),
            "tamper",
            &["--lie", "tamper", "--flip", "back:100"],
        );
        let honest = Daemon::start(dir.path(), "honest", &[]);
        // The liar is listed first, so it is tried first.
        let (a, b) = pair(&[&liar.socket, &honest.socket], false).await;
        let mut dialed = open(&a, &b, false).await.unwrap();
        assert_eq!(dialed.info().via, honest.id, "the honest server delivered");
        liar.wait_log("flipped one bit").await;
        dialed.write_all(SECRET).await.unwrap();
        dialed.flush().await.unwrap();
        let mut accepted = b.accept().await.unwrap();
        let mut got = vec![0u8; SECRET.len()];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(got, SECRET);
        assert_eq!(accepted.info().via, honest.id);
    });
}

fn uds_peer_reports_a_peer_that_cannot_prove_its_identity() {
    no_leak(|| async {
        let dir = private_dir();
        let liar = Liar::start(dir.path(), "impersonate", &["--lie", "impersonate"]);
        let b = net(&[&liar.socket], false);
        registered_with(&b, 1).await;
        let uri = b.location().to_string();
        let socket = liar.socket.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(PEER_BIN)
                .arg("--intro")
                .arg(&socket)
                .args(["connect", &uri])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("could not prove its identity"), "{err}");
    });
}
