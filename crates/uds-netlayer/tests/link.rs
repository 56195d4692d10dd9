//! The links to introduction servers under stress: cancelled dials, servers
//! that stop reading, a slow `accept()`, bursts, larger server limits, and
//! servers that cannot be reached without blocking. Every test checks that
//! this process leaks no fd.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use uds_handshake::Identity;
use uds_netlayer::{AttemptError, NetlayerError, UdsNetlayer};
use uds_syrup::Locator;

/// `who`'s locator with `n` hints of about 1,000 bytes (not server
/// designators), which the netlayer sends in the intro's `to`.
fn bloated(who: &Locator, n: usize) -> Locator {
    let mut loc = who.clone();
    for i in 0..n {
        loc.add_hint(format!("{i:0>1000}"));
    }
    loc
}

/// How many times `net`'s server state has changed so far.
fn generation(net: &UdsNetlayer) -> u64 {
    *net.server_changes().borrow()
}

/// Regression: dials cancelled while the server is not reading never leave
/// half an intro on the wire: once the server reads again, every intro it
/// gets is whole and the link is still up.
#[test]
fn cancelled_dials_never_corrupt_the_link() {
    no_leak(|| async {
        let dir = private_dir();
        let server = TestServer::start(dir.path(), "gated", Mode::Gated);
        let net = UdsNetlayer::builder()
            .intro_path(&server.socket)
            .plaintext()
            .build()
            .unwrap();
        registered_with(&net, 1).await;
        let registered_at = generation(&net);
        let target = bloated(&Locator::unix(Identity::generate().designator()), 60);
        let mut cancelled = 0;
        for _ in 0..12 {
            match tokio::time::timeout(Duration::from_millis(30), net.connect(&target)).await {
                Ok(conn) => drop(conn.unwrap()),
                Err(_) => cancelled += 1,
            }
        }
        assert!(cancelled > 0, "the socket buffer never filled");
        server.observed.gate.notify_one();
        // Every dial that reached the writer goes through whole.
        let conn = tokio::time::timeout(PATIENCE, net.connect(&target))
            .await
            .expect("the link is wedged")
            .unwrap();
        drop(conn);
        let errors = server.observed.errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "the server read a broken stream: {errors:?}"
        );
        assert!(server.observed.intros.load(Ordering::SeqCst) >= 13 - cancelled);
        assert_eq!(generation(&net), registered_at, "the link never dropped");
        drop(net);
        drop(server);
    });
}

/// Regression: a server that stops reading fails dials after the send timeout
/// instead of wedging every later one.
#[test]
fn a_server_that_stops_reading_fails_dials_in_bounded_time() {
    no_leak(|| async {
        let dir = private_dir();
        let server = TestServer::start(dir.path(), "stalled", Mode::Stalled);
        let net = UdsNetlayer::builder()
            .intro_path(&server.socket)
            .plaintext()
            .send_timeout(Duration::from_millis(300))
            .backoff(Duration::from_secs(30), Duration::from_secs(30))
            .build()
            .unwrap();
        registered_with(&net, 1).await;
        let target = bloated(&Locator::unix(Identity::generate().designator()), 60);
        let mut failed = None;
        for _ in 0..20 {
            match tokio::time::timeout(PATIENCE, net.connect(&target))
                .await
                .expect("a dial hung on a server that does not read")
            {
                Ok(conn) => drop(conn),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let err = failed.expect("dials kept succeeding on a server that reads nothing");
        match &err {
            NetlayerError::Unreachable { attempts, .. } => {
                assert!(matches!(attempts[0].error, AttemptError::Link(_)), "{err}");
            }
            NetlayerError::NotRegistered { .. } => {}
            other => panic!("{other}"),
        }
        // The link was closed; later dials fail at once, they do not wait.
        let later = tokio::time::timeout(PATIENCE, net.connect(&target))
            .await
            .expect("a later dial hung");
        assert!(later.is_err());
        drop(net);
        drop(server);
    });
}

/// Regression: with `accept()` not keeping up, the netlayer keeps reading
/// intros and closes the surplus itself: the daemon never disconnects it,
/// and what is waiting can still be accepted.
#[test]
fn a_slow_accept_does_not_get_the_netlayer_disconnected() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let a = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .build()
            .unwrap();
        let b = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .incoming_capacity(2)
            .build()
            .unwrap();
        registered_with(&a, 1).await;
        registered_with(&b, 1).await;
        let stable = generation(&b);
        let target = b.location();
        for _ in 0..1500 {
            drop(a.connect(&target).await.unwrap());
        }
        // Everything reached b: two wait for accept, the rest were closed.
        let start = std::time::Instant::now();
        while b.stats().incoming_dropped < 1498 {
            assert!(
                start.elapsed() < PATIENCE,
                "only {} dropped: {:?}\n{}",
                b.stats().incoming_dropped,
                b.stats(),
                d.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            generation(&b),
            stable,
            "b was disconnected: {:?}\n{}",
            b.stats(),
            d.status()
        );
        drop(b.accept().await.unwrap());
        drop(b.accept().await.unwrap());
        // And it still accepts new connections.
        let (_dialed, _accepted) =
            tokio::join!(async { a.connect(&target).await.unwrap() }, async {
                b.accept().await.unwrap()
            });
        assert_eq!(generation(&b), stable);
    });
}

/// Regression: a daemon started with a larger `--max-message` forwards an intro
/// whose `to` carries 100 KB of hints; the target's link (with the default
/// limits) must not drop. The daemon forwards bounded records.
#[test]
fn a_larger_daemon_limit_does_not_drop_netlayer_links() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &["--max-message", "1048576"]);
        let a = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .build()
            .unwrap();
        let b = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .build()
            .unwrap();
        registered_with(&a, 1).await;
        registered_with(&b, 1).await;
        let stable = generation(&b);
        let target = bloated(&b.location(), 100);
        let (_dialed, accepted) =
            tokio::join!(async { a.connect(&target).await.unwrap() }, async {
                b.accept().await.unwrap()
            });
        assert_eq!(accepted.peer(), &a.location());
        assert_eq!(generation(&b), stable, "b's link stayed up");
        // The limits are configurable for servers that send more.
        let big = uds_syrup::Limits {
            max_message_len: 1 << 20,
            max_atom_len: 1 << 20,
            ..uds_syrup::Limits::intro_channel()
        };
        let c = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .intro_limits(big)
            .build()
            .unwrap();
        registered_with(&c, 1).await;
    });
}

/// Regression: reaching an abstract-name server never blocks the runtime, even
/// when its backlog is full (the netlayer retries in the background).
#[test]
fn an_abstract_server_with_a_full_backlog_does_not_block_the_runtime() {
    no_leak(|| async {
        tokio::task::spawn_blocking(abstract_backlog_scenario)
            .await
            .unwrap()
    });
}

fn abstract_backlog_scenario() {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let name = format!("ocapn-uds-test-backlog-{}", std::process::id());
    let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
    let l = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(l.as_raw_fd(), &addr).unwrap();
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    let mut held = Vec::new();
    loop {
        let c = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let r = connect(c.as_raw_fd(), &addr);
        held.push(c);
        if r.is_err() {
            break;
        }
        assert!(held.len() < 64, "the backlog never filled");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let net = UdsNetlayer::builder()
                .intro_abstract(name)
                .backoff(Duration::from_millis(10), Duration::from_millis(50))
                .build()
                .unwrap();
            // If connecting blocked this (only) thread, this loop could not
            // run: the failed attempt (a full backlog) is counted and
            // retried in the background instead.
            while net.stats().link_failures < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tx.send(net.registered_servers().len());
        });
    });
    let registered = rx
        .recv_timeout(PATIENCE)
        .expect("the runtime was blocked by a connect");
    assert_eq!(registered, 0);
    worker.join().unwrap();
    drop(held);
}

/// Regression: `uds-peer connect` through a server that takes the intro but
/// never delivers it (and never closes it) gives up after its timeout, with
/// a non-zero status, instead of waiting forever.
#[test]
fn uds_peer_connect_gives_up_on_a_server_that_never_delivers() {
    no_leak(|| async {
        let dir = private_dir();
        let server = TestServer::start(dir.path(), "blackhole", Mode::Blackhole);
        let target = Locator::unix(Identity::generate().designator()).with_hint(server.id);
        let socket = server.socket.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(PEER_BIN)
                .arg("--intro")
                .arg(&socket)
                .args(["--timeout", "1", "--plaintext", "connect"])
                .arg(target.to_string())
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("did not answer"), "{err}");
        drop(server);
    });
}

/// Regression: a `uds-peer listen --echo` hit by bursts of 3,000 dials stays
/// registered and keeps answering.
#[test]
fn an_echo_peer_survives_bursts() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let mut listener = KillOnDrop(
            std::process::Command::new(PEER_BIN)
                .arg("--intro")
                .arg(&d.socket)
                .args(["--plaintext", "listen", "--echo"])
                .env("RUST_LOG", "uds_netlayer=info")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = listener.stdout.take().unwrap();
        let stderr = listener.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut { stderr }, &mut text).unwrap();
            text
        });
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let uri = line.trim().strip_prefix("uds-peer ready locator=").unwrap();
        let target: Locator = uri.parse().unwrap();
        let a = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .plaintext()
            .build()
            .unwrap();
        registered_with(&a, 1).await;
        for _ in 0..3 {
            let mut conns = Vec::new();
            for _ in 0..3000 {
                conns.push(a.connect(&target).await.unwrap());
            }
            drop(conns);
        }
        // Still there: an echo round trip.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = a.connect(&target).await.unwrap();
        conn.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        tokio::time::timeout(PATIENCE, conn.read_exact(&mut buf))
            .await
            .expect("no echo")
            .unwrap();
        assert_eq!(&buf, b"still here");
        listener.kill().unwrap();
        listener.wait().unwrap();
        let log = log.join().unwrap();
        assert!(!log.contains("went away"), "{log}");
        assert_eq!(log.matches(" registered").count(), 1, "{log}");
        assert!(
            log.lines().count() < 100,
            "the log is not flooded: {} lines",
            log.lines().count()
        );
    });
}

/// The netlayer counts what it closes; nothing is lost silently.
#[test]
fn stats_start_at_zero() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let a = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .build()
            .unwrap();
        registered_with(&a, 1).await;
        assert_eq!(a.stats(), uds_netlayer::NetlayerStats::default());
        drop(Arc::new(a));
    });
}

/// Two netlayers with one identity (one key started twice): the server
/// keeps the newer of two registrations of a designator, so they replace
/// each other. They used to take turns at the minimum backoff (ten times a
/// second and more) for as long as both ran, without a word; now each keeps
/// backing off, counts it, and warns.
#[test]
fn two_processes_with_one_identity_do_not_take_turns_at_full_speed() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let id = Arc::new(Identity::generate());
        let build = || {
            UdsNetlayer::builder()
                .identity(id.clone())
                .intro_path(&d.socket)
                .build()
                .unwrap()
        };
        let a = build();
        registered_with(&a, 1).await;
        let b = build();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let status = d.status();
        let replaced: u64 = status
            .split_whitespace()
            .find_map(|w| w.strip_prefix("replaced="))
            .unwrap_or("0")
            .parse()
            .unwrap();
        let cut_short = a.stats().registrations_cut_short + b.stats().registrations_cut_short;
        // At the minimum backoff (100 ms) that is 60 and more in 6 s; with
        // the backoff growing to its maximum (5 s), about ten.
        assert!(replaced >= 2, "they did not meet: {status}");
        assert!(replaced < 30, "{replaced} replacements in 6 s: {status}");
        assert!(cut_short >= 1, "{:?} {:?}", a.stats(), b.stats());
    });
}
