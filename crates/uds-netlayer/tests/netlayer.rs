//! The netlayer across real processes and against test-double servers.
//! Every test checks that this process leaks no fd.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_handshake::Identity;
use uds_netlayer::{Connection, Direction, Netlayer, NetlayerError, UdsNetlayer};
use uds_syrup::codec::Framing;
use uds_syrup::{Locator, Value, WireProfile};

/// Waits until `net` has failed to reach or register with a server at
/// least once.
async fn link_failed(net: &UdsNetlayer) {
    let start = std::time::Instant::now();
    while net.stats().link_failures == 0 {
        assert!(start.elapsed() < PATIENCE, "no link attempt failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn net(servers: &[&std::path::Path]) -> UdsNetlayer {
    let mut b = UdsNetlayer::builder()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .answer_timeout(Duration::from_secs(5));
    for s in servers {
        b = b.intro_path(*s);
    }
    b.build().unwrap()
}

fn net_with(servers: &[&std::path::Path], profile: WireProfile) -> UdsNetlayer {
    let mut b = UdsNetlayer::builder()
        .wire(profile)
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    for s in servers {
        b = b.intro_path(*s);
    }
    b.build().unwrap()
}

/// Two netlayers using `servers`, each registered with `n` of them.
async fn registered_pair(servers: &[&std::path::Path], n: usize) -> (UdsNetlayer, UdsNetlayer) {
    let (a, b) = (net(servers), net(servers));
    registered_with(&a, n).await;
    registered_with(&b, n).await;
    (a, b)
}

/// `a` connects to `b`; `b` accepts and answers first; bytes flow both
/// ways. Returns both ends.
async fn pair_up(a: &UdsNetlayer, b: &UdsNetlayer) -> (Connection, Connection) {
    let target = b.location();
    let accept = async {
        let mut conn = b.accept().await.unwrap();
        conn.write_all(b"hi!").await.unwrap();
        conn
    };
    // A failed connect must fail the test, not leave `accept` waiting.
    let dial = async {
        a.connect(&target)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    };
    let (mut dialed, mut accepted) = tokio::join!(dial, accept);
    let mut buf = [0u8; 3];
    dialed.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi!");
    dialed.write_all(b"yo").await.unwrap();
    let mut two = [0u8; 2];
    accepted.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"yo");
    (dialed, accepted)
}

#[test]
fn two_netlayers_through_the_real_daemon() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let (a, b) = registered_pair(&[&d.socket], 1).await;
        assert_eq!(a.registered_servers(), vec![d.id]);
        assert!(a.location().has_hint(&d.id), "our locator hints the server");
        let (dialed, accepted) = pair_up(&a, &b).await;
        assert_eq!(dialed.info().direction, Direction::Outgoing);
        assert_eq!(dialed.peer(), &b.location());
        assert_eq!(accepted.info().direction, Direction::Incoming);
        assert_eq!(accepted.peer(), &a.location());
        assert_eq!(accepted.info().via, d.id);
        assert_eq!(
            accepted.info().creator.pid as u32,
            std::process::id(),
            "the dialer made the socket"
        );
        assert!(!accepted.info().relayed);

        // Syrup messages over the connection, both framings.
        for framing in [Framing::Raw, Framing::Bytestring] {
            let (x, y) = pair_up(&a, &b).await;
            let mut x = x.framed(framing);
            let mut y = y.framed(framing);
            let msg = Value::record(Value::symbol("op:abort"), [Value::string("bye")]);
            x.send(msg.clone()).await.unwrap();
            assert_eq!(y.next().await.unwrap().unwrap(), msg);
        }
        // The Netlayer trait gives the same.
        async fn via_trait<N: Netlayer>(n: &N) -> Locator {
            n.location()
        }
        assert_eq!(via_trait(&a).await, a.location());
    });
}

#[test]
fn dial_does_not_wait_for_an_answer() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let (a, b) = registered_pair(&[&d.socket], 1).await;
        // The dialer speaks first: connect would wait, dial does not.
        let mut conn = a.connect(&b.location()).await.unwrap();
        conn.write_all(b"first").await.unwrap();
        let mut incoming = b.accept().await.unwrap();
        let mut buf = [0u8; 5];
        incoming.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"first");
    });
}

#[test]
fn connecting_to_an_unregistered_peer_fails_clearly_in_bounded_time() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &["--park-timeout", "300ms"]);
        let a = net(&[&d.socket]);
        registered_with(&a, 1).await;
        let nobody = Locator::unix(Identity::generate().designator()).with_hint(d.id);
        let err = a.connect(&nobody).await.unwrap_err();
        assert!(matches!(err, NetlayerError::Unreachable { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("before the peer answered") && msg.contains(&d.id.to_string()),
            "{msg}"
        );

        // A peer reachable only through a server we do not share.
        let elsewhere = Locator::unix(Identity::generate().designator())
            .with_hint(Identity::generate().designator());
        let err = a.connect(&elsewhere).await.unwrap_err();
        assert!(matches!(err, NetlayerError::NoSharedServer { .. }), "{err}");
        assert!(err.to_string().contains("we are registered with"), "{err}");

        // Not a unix-domain-socket locator.
        let tcp: Locator = "ocapn://abc.tcp-testing-only".parse().unwrap();
        let err = a.connect(&tcp).await.unwrap_err();
        assert!(matches!(err, NetlayerError::BadLocator { .. }), "{err}");

        // No server reachable at all.
        let lonely = net(&[&dir.path().join("nothing-here.sock")]);
        let err = lonely.connect(&nobody).await.unwrap_err();
        assert!(matches!(err, NetlayerError::NotRegistered { .. }), "{err}");
        assert!(err.to_string().contains("nothing-here.sock"), "{err}");
        assert!(matches!(
            UdsNetlayer::builder().build(),
            Err(NetlayerError::NoIntroServer)
        ));
        // A zero backoff is raised to MIN_BACKOFF: a server that is away is
        // not retried in a busy loop (it used to be, about a thousand times a
        // second).
        let eager = UdsNetlayer::builder()
            .intro_path(dir.path().join("nothing-here-either.sock"))
            .backoff(Duration::ZERO, Duration::ZERO)
            .build()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tries = eager.stats().link_failures;
        let most = (500 / uds_netlayer::MIN_BACKOFF.as_millis() + 1) as u64;
        assert!((1..=most).contains(&tries), "{tries} attempts in 500 ms");
        drop(eager);
        // Addresses no socket can have: refused by build, not retried.
        let name = "n".repeat(uds_netlayer::MAX_SOCKET_ADDR + 1);
        let err = UdsNetlayer::builder()
            .intro_abstract(&name)
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(err, NetlayerError::IntroAddressTooLong { len: 108, .. }),
            "{err}"
        );
        let path = dir.path().join("p".repeat(120));
        let err = UdsNetlayer::builder()
            .intro_path(dir.path().join("ok.sock"))
            .intro_path(&path)
            .build()
            .err()
            .unwrap();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // The longest abstract name is accepted.
        drop(
            UdsNetlayer::builder()
                .intro_abstract(&name[1..])
                .build()
                .unwrap(),
        );
    });
}

#[test]
fn the_daemon_restarted_mid_run() {
    no_leak(|| async {
        let dir = private_dir();
        let mut d = Daemon::start(dir.path(), "intro", &[]);
        let (a, b) = registered_pair(&[&d.socket], 1).await;
        let (mut x, mut y) = pair_up(&a, &b).await;
        let id = d.id;
        d.kill();
        // Established connections keep working without the server.
        x.write_all(b"alive").await.unwrap();
        let mut buf = [0u8; 5];
        y.read_exact(&mut buf).await.unwrap();
        // The netlayers notice, then re-register with the restarted server.
        let mut changes = a.server_changes();
        while !a.registered_servers().is_empty() {
            changes.changed().await.unwrap();
        }
        let d2 = Daemon::start(dir.path(), "intro", &[]);
        assert_eq!(d2.id, id, "same key, same id");
        registered_with(&a, 1).await;
        registered_with(&b, 1).await;
        pair_up(&b, &a).await;
    });
}

#[test]
fn two_servers_with_one_failing() {
    no_leak(|| async {
        let dir = private_dir();
        // The first server takes intros but cannot deliver them: the
        // netlayer falls back to the second.
        let broken = TestServer::start(dir.path(), "broken", Mode::DropIntros);
        let mut good = Daemon::start(dir.path(), "good", &[]);
        let (a, b) = registered_pair(&[&broken.socket, &good.socket], 2).await;
        let (x, _) = pair_up(&a, &b).await;
        assert_eq!(x.info().via, good.id, "delivered through the second server");

        // The daemon killed: only the first server is left, and it cannot
        // deliver; the error names what happened.
        good.kill();
        let mut changes = a.server_changes();
        while a.registered_servers().len() > 1 {
            changes.changed().await.unwrap();
        }
        let err = a.connect(&b.location()).await.unwrap_err();
        assert!(err.to_string().contains(&broken.id.to_string()), "{err}");
    });
}

#[test]
fn a_real_daemon_killed_among_two() {
    no_leak(|| async {
        let dir = private_dir();
        let mut first = Daemon::start(dir.path(), "first", &[]);
        let second = Daemon::start(dir.path(), "second", &[]);
        let (a, b) = registered_pair(&[&first.socket, &second.socket], 2).await;
        let target = b.location();
        first.kill();
        // Whether or not the netlayer has noticed yet, the connection goes
        // through the survivor.
        let accept = async {
            let mut c = b.accept().await.unwrap();
            c.write_all(b"!").await.unwrap();
            c
        };
        let dial = async {
            a.connect(&target)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"))
        };
        let (dialed, _accepted) = tokio::join!(dial, accept);
        assert_eq!(dialed.info().via, second.id);
    });
}

#[test]
fn a_goblins_shaped_intro_server() {
    no_leak(|| async {
        let dir = private_dir();
        let s = TestServer::start(dir.path(), "goblins", Mode::Goblins);
        // With the default settings the netlayer answers in Goblins' shape.
        let (a, b) = registered_pair(&[&s.socket], 1).await;
        let (_, accepted) = pair_up(&a, &b).await;
        assert_eq!(
            accepted.peer(),
            &a.location(),
            "hint values \"t\"/t are accepted"
        );
        assert_eq!(s.observed.wrong_shape.load(Ordering::SeqCst), 0);
        // Forced to the draft's shape, a netlayer cannot register with
        // Goblins (it refuses the sig-val list): it stays unregistered.
        let c = net_with(&[&s.socket], WireProfile::Draft);
        let start = std::time::Instant::now();
        while s.observed.wrong_shape.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < PATIENCE, "the draft shape was never sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(c.registered_servers().is_empty());
    });
}

#[test]
fn a_draft_shaped_intro_server() {
    no_leak(|| async {
        let dir = private_dir();
        let s = TestServer::start(dir.path(), "draft", Mode::Draft);
        // With the default settings the netlayer answers in the draft's shape.
        let (a, b) = registered_pair(&[&s.socket], 1).await;
        pair_up(&a, &b).await;
        assert_eq!(s.observed.wrong_shape.load(Ordering::SeqCst), 0);
    });
}

/// After a rogue intro, a legitimate one from `c` must be the next accepted.
async fn next_accepted_is_from(b: &UdsNetlayer, c: &UdsNetlayer) {
    let (_, accepted) = pair_up(c, b).await;
    assert_eq!(
        accepted.peer(),
        &c.location(),
        "the rogue intro was not accepted"
    );
}

#[test]
fn a_rogue_server_addressing_someone_else_or_passing_a_non_socket() {
    no_leak(|| async {
        let dir = private_dir();
        let honest = Daemon::start(dir.path(), "honest", &[]);
        for mode in [Mode::WrongTo, Mode::NonSocket] {
            let rogue = TestServer::start(dir.path(), &format!("{mode:?}"), mode);
            let a = net(&[&rogue.socket]);
            let b = net(&[&rogue.socket, &honest.socket]);
            let c = net(&[&honest.socket]);
            let bystander = net(&[&rogue.socket]);
            registered_with(&a, 1).await;
            registered_with(&b, 2).await;
            registered_with(&c, 1).await;
            registered_with(&bystander, 1).await;
            // a dials b through the rogue server, which mangles the intro.
            let err = a.connect(&b.location()).await.unwrap_err();
            assert!(
                matches!(err, NetlayerError::Unreachable { .. }),
                "{mode:?}: {err}"
            );
            next_accepted_is_from(&b, &c).await;
        }
    });
}

#[test]
fn a_relaying_server_is_flagged() {
    no_leak(|| async {
        let dir = private_dir();
        let s = TestServer::start(dir.path(), "relay", Mode::Relay);
        let (a, b) = registered_pair(&[&s.socket], 1).await;
        let (_, accepted) = pair_up(&a, &b).await;
        assert!(
            accepted.info().relayed,
            "the socket was made by the server's process"
        );
    });
}

#[test]
fn a_pinned_server_key_is_required() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let wrong = Identity::generate().designator();
        let pinned = UdsNetlayer::builder()
            .intro(uds_netlayer::IntroServer::path(&d.socket).pinned(wrong))
            .backoff(Duration::from_millis(20), Duration::from_millis(50))
            .build()
            .unwrap();
        let right = UdsNetlayer::builder()
            .intro(uds_netlayer::IntroServer::path(&d.socket).pinned(d.id))
            .build()
            .unwrap();
        registered_with(&right, 1).await;
        link_failed(&pinned).await;
        assert!(
            pinned.registered_servers().is_empty(),
            "a server with another key is refused"
        );
        let err = pinned.connect(&right.location()).await.unwrap_err();
        assert!(matches!(err, NetlayerError::NotRegistered { .. }));
    });
}

#[test]
fn an_identity_can_be_given() {
    no_leak(|| async {
        let dir = private_dir();
        let d = Daemon::start(dir.path(), "intro", &[]);
        let id = Arc::new(Identity::generate());
        let n = UdsNetlayer::builder()
            .identity(id.clone())
            .intro_path(&d.socket)
            .build()
            .unwrap();
        n.registered().await;
        assert_eq!(n.location().designator_key().unwrap(), id.designator());
        assert_eq!(n.servers()[0].registered_as, Some(d.id));
    });
}

#[test]
fn an_intro_server_running_as_another_user_is_refused_unless_allowed() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: running a server as another user needs root");
        return;
    }
    no_leak(|| async {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        // A directory the other user owns, for its socket and key.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(
            &theirs,
            Some(nobody),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
        // The daemon where the other user can execute it wherever the
        // checkout lives: a hard link where the temporary directory is on
        // the same filesystem (no space needed), a copy otherwise.
        let bin = dir.path().join("uds-introd");
        // A link shares the file's mode: it must be executable by others.
        let linked = std::fs::hard_link(introd_bin(), &bin).is_ok()
            && std::fs::metadata(&bin).unwrap().permissions().mode() & 0o005 == 0o005;
        if !linked {
            let _ = std::fs::remove_file(&bin);
            std::fs::copy(introd_bin(), &bin).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut cmd = std::process::Command::new(&bin);
        std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
        std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
        // Let us (root) in: root is not admitted unless listed.
        cmd.arg("--socket")
            .arg(theirs.join("intro.sock"))
            .args(["--allow-uid", "0"]);
        let d = Daemon::spawn(cmd, theirs.join("intro.sock"));
        let refused = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .backoff(Duration::from_millis(20), Duration::from_millis(50))
            .build()
            .unwrap();
        let allowed = UdsNetlayer::builder()
            .intro_path(&d.socket)
            .allow_server_uid(65534)
            .build()
            .unwrap();
        registered_with(&allowed, 1).await;
        link_failed(&refused).await;
        assert!(
            refused.registered_servers().is_empty(),
            "a server of another uid is not trusted"
        );
    });
}
