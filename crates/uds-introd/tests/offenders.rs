//! Misbehaving clients: each is closed (and only it) while a registered
//! pair keeps exchanging intros, and the daemon's fd count returns to its
//! baseline.

mod common;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Locator, NewConnection, SCM_RIGHTS_BODY, WireProfile};

/// Runs `offend` against a daemon started with `args`, then checks that the
/// offender was closed with `reason`, that the pair still works, and that
/// the daemon's fds return to their baseline.
async fn scenario<F, Fut>(args: &[&str], reason: &str, offend: F)
where
    F: FnOnce(Arc<Daemon>, Locator) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = private_dir();
    let d = Arc::new(Daemon::start(dir.path(), args));
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    offend(d.clone(), pair.b.locator()).await;
    if !reason.is_empty() {
        d.wait_counter(reason, 1).await;
    }
    pair.still_works().await;
    d.wait_fds(baseline).await;
    assert_eq!(
        d.counter("registered").await,
        2,
        "the pair is still registered"
    );
}

#[tokio::test]
async fn spoofed_from() {
    scenario(&[], "spoofed-from", |d, victim| async move {
        let mut liar = Client::register(&d.socket, WireProfile::Draft).await;
        d.wait_counter("registered", 3).await;
        // Claims to be the victim when dialing the victim.
        let mut ours = liar.intro_as(&victim, &victim).await;
        liar.expect_closed().await;
        let mut b = [0u8; 1];
        assert_eq!(
            ours.read(&mut b).await.unwrap(),
            0,
            "the intro's socket is closed"
        );
    })
    .await;
}

#[tokio::test]
async fn registration_never_finished() {
    scenario(
        &["--registration-timeout", "300ms"],
        "registration-timeout",
        |d, _| async move {
            let mut silent = Client::connect(&d.socket).await;
            let mut half = Client::connect(&d.socket).await;
            let hs = ClientHandshake::new(half.identity.clone(), ClientConfig::default());
            half.send(&hs.register_message()).await;
            silent.expect_closed().await;
            half.expect_closed().await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_record_dribbled_one_byte_at_a_time_still_works() {
    scenario(&[], "", |d, _| async move {
        let mut target = Client::register(&d.socket, WireProfile::Draft).await;
        let mut c = Client::connect(&d.socket).await;
        let mut hs = ClientHandshake::new(c.identity.clone(), ClientConfig::default());
        for b in hs.register_message() {
            c.send(&[b]).await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let uds_handshake::channel::ChannelEvent::Message { value, .. } = c.next().await.unwrap()
        else {
            panic!("no response")
        };
        let done = hs.receive(&value).unwrap();
        for b in done.signature_message {
            c.send(&[b]).await;
        }
        d.wait_counter("registered", 4).await;
        // An intro dribbled too: record byte by byte, then body + fd.
        let (ours, theirs) = uds_fdpass::socketpair().unwrap();
        let record = NewConnection {
            from: c.locator(),
            to: target.locator(),
        }
        .to_value()
        .encode();
        for b in record {
            c.send(&[b]).await;
        }
        c.stream
            .send(&SCM_RIGHTS_BODY, &[theirs.as_fd()])
            .await
            .unwrap();
        drop(theirs);
        let (got, _sock) = target.expect_intro().await;
        assert_eq!(got.from, c.locator());
        drop(ours);
    })
    .await;
}

#[tokio::test]
async fn garbage_bytes() {
    scenario(&[], "protocol", |d, _| async move {
        let mut c = Client::connect(&d.socket).await;
        c.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").await;
        c.expect_closed().await;
    })
    .await;
}

#[tokio::test]
async fn oversized_message() {
    scenario(&[], "limit", |d, _| async move {
        let mut c = Client::connect(&d.socket).await;
        // A 1 MiB bytestring: refused from its length prefix.
        let mut msg = b"1048576:".to_vec();
        msg.extend(vec![0u8; 1 << 20]);
        let _ = c.stream.send(&msg, &[]).await; // the daemon may close mid-send
        c.expect_closed().await;
    })
    .await;
}

#[tokio::test]
async fn nesting_bomb() {
    scenario(&[], "limit", |d, _| async move {
        let mut c = Client::connect(&d.socket).await;
        c.send(&vec![b'['; 100_000]).await;
        c.expect_closed().await;
    })
    .await;
}

#[tokio::test]
async fn a_record_followed_by_no_fd() {
    scenario(&[], "missing-fd", |d, victim| async move {
        let mut c = Client::register(&d.socket, WireProfile::Draft).await;
        d.wait_counter("registered", 3).await;
        let record = NewConnection {
            from: c.locator(),
            to: victim,
        }
        .to_value()
        .encode();
        c.send(&record).await;
        c.send(&SCM_RIGHTS_BODY).await; // the body, but no fd
        c.send(&record).await;
        c.expect_closed().await;
    })
    .await;
}

/// Sends an intro whose "socket" is `fds`.
async fn intro_with(c: &Client, to: &Locator, fds: &[std::os::fd::BorrowedFd<'_>]) {
    let record = NewConnection {
        from: c.locator(),
        to: to.clone(),
    }
    .to_value()
    .encode();
    c.send(&record).await;
    c.stream.send(&SCM_RIGHTS_BODY, fds).await.unwrap();
}

#[tokio::test]
async fn a_pipe_a_file_a_listening_socket_or_two_fds_instead_of_one_socket() {
    let dir = private_dir();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("l")).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let (s1, s2) = uds_fdpass::socketpair().unwrap();
    let cases: Vec<(&str, Vec<std::os::fd::BorrowedFd<'_>>)> = vec![
        ("bad-fd", vec![pipe_r.as_fd()]),
        ("bad-fd", vec![file.as_fd()]),
        ("bad-fd", vec![listener.as_fd()]),
        ("extra-fd", vec![s1.as_fd(), s2.as_fd()]),
    ];
    let d = Arc::new(Daemon::start(dir.path(), &[]));
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    for (i, (reason, fds)) in cases.iter().enumerate() {
        let mut c = Client::register(&d.socket, WireProfile::Draft).await;
        d.wait_counter("registrations", 3 + i as u64).await;
        intro_with(&c, &pair.b.locator(), fds).await;
        c.expect_closed().await;
        d.wait_counter(reason, if *reason == "bad-fd" { i as u64 + 1 } else { 1 })
            .await;
        pair.still_works().await;
        drop(c);
        d.wait_fds(baseline).await;
    }
}

#[tokio::test]
async fn a_thousand_clients_register_concurrently() {
    raise_fd_limit();
    scenario(&["--max-unregistered", "1024"], "", |d, _| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let socket = d.socket.clone();
            let profile = if i % 2 == 0 {
                WireProfile::Draft
            } else {
                WireProfile::Goblins
            };
            tasks.spawn(async move { Client::register(&socket, profile).await });
        }
        let mut clients = Vec::new();
        while let Some(c) = tasks.join_next().await {
            clients.push(c.unwrap());
        }
        d.wait_counter("registered", 1002).await;
        // They can all be reached.
        let mut first = clients.pop().unwrap();
        let last = clients.pop().unwrap();
        exchange(&last, &mut first).await;
        drop(clients);
        drop((first, last));
        d.wait_counter("registrations", 1002).await;
    })
    .await;
}

#[tokio::test]
async fn a_second_registration_of_the_same_designator() {
    scenario(&[], "replaced", |d, _| async move {
        let id = Arc::new(Identity::generate());
        let mut first = Client::register_as(&d.socket, id.clone(), WireProfile::Draft).await;
        d.wait_counter("registered", 3).await;
        let second = Client::register_as(&d.socket, id, WireProfile::Draft).await;
        first.expect_closed().await;
        drop(second);
    })
    .await;
}

#[tokio::test]
async fn connection_limits() {
    scenario(
        &["--max-unregistered", "2"],
        "max-unregistered",
        |d, _| async move {
            let _a = Client::connect(&d.socket).await;
            let _b = Client::connect(&d.socket).await;
            d.wait_counter("unregistered", 2).await;
            let mut c = Client::connect(&d.socket).await;
            c.expect_closed().await;
        },
    )
    .await;
    scenario(&["--max-clients", "3"], "max-clients", |d, _| async move {
        let _a = Client::connect(&d.socket).await;
        let mut c = Client::connect(&d.socket).await;
        c.expect_closed().await;
    })
    .await;
    scenario(
        &["--max-clients-per-uid", "2"],
        "max-clients-per-uid",
        |d, _| async move {
            let mut c = Client::connect(&d.socket).await;
            c.expect_closed().await;
        },
    )
    .await;
}

#[tokio::test]
async fn parked_intro_limits() {
    // Per target: the third intro waiting for the same unknown peer is
    // closed at once; the two parked ones are closed when they expire.
    scenario(
        &["--max-parked-per-target", "2", "--park-timeout", "1s"],
        "parked-limit",
        |d, _| async move {
            let c = Client::register(&d.socket, WireProfile::Draft).await;
            d.wait_counter("registered", 3).await;
            let nobody = Locator::unix(Identity::generate().designator());
            let mut first = c.intro_to(&nobody).await;
            let _second = c.intro_to(&nobody).await;
            let mut third = c.intro_to(&nobody).await;
            let mut b = [0u8; 1];
            assert_eq!(
                third.read(&mut b).await.unwrap(),
                0,
                "the third intro is closed at once"
            );
            assert_eq!(
                first.read(&mut b).await.unwrap(),
                0,
                "the first one when it expires"
            );
            d.wait_counter("park-timeout", 2).await;
        },
    )
    .await;
    // Per sender (intros to different unknown peers), and daemon-wide
    // (passed sockets held): the third intro is closed at once, the two
    // waiting ones when they expire.
    for (limit, reason) in [
        ("--max-parked-per-sender", "parked-limit"),
        ("--max-held-fds", "held-fds"),
    ] {
        scenario(
            &[limit, "2", "--park-timeout", "1s"],
            reason,
            |d, _| async move {
                let c = Client::register(&d.socket, WireProfile::Draft).await;
                d.wait_counter("registered", 3).await;
                let mut socks = Vec::new();
                for _ in 0..3 {
                    let nobody = Locator::unix(Identity::generate().designator());
                    socks.push(c.intro_to(&nobody).await);
                }
                let mut b = [0u8; 1];
                assert_eq!(socks[2].read(&mut b).await.unwrap(), 0, "{limit}");
                d.wait_counter("park-timeout", 2).await;
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_client_that_never_reads_while_intros_pile_up() {
    // Once its socket buffer is full, intros queue in the daemon; past
    // either queue limit (bytes, or intros) the deaf client is closed.
    for limit in [
        ["--max-queued-bytes", "8192"],
        ["--max-pending-intros", "3"],
    ] {
        scenario(&limit, "queue-full", |d, _| async move {
            let deaf = Client::register(&d.socket, WireProfile::Draft).await;
            let sender = Client::register(&d.socket, WireProfile::Draft).await;
            d.wait_counter("registered", 4).await;
            let mut sent = 0;
            while d.counter("queue-full").await == 0 {
                for _ in 0..50 {
                    drop(sender.intro_to(&deaf.locator()).await);
                }
                sent += 50;
                assert!(
                    sent < 100_000,
                    "{limit:?}: the deaf client was never closed"
                );
            }
            drop((deaf, sender));
        })
        .await;
    }
}

#[tokio::test]
async fn a_client_hanging_up_is_not_a_refusal() {
    // The client leaves with intros unread in its socket, so the daemon's
    // next read or write on it fails with ECONNRESET or EPIPE: that is the
    // client going away, not bad input.
    scenario(&[], "", |d, _| async move {
        let leaver = Client::register(&d.socket, WireProfile::Draft).await;
        let sender = Client::register(&d.socket, WireProfile::Draft).await;
        d.wait_counter("registered", 4).await;
        for _ in 0..20 {
            drop(sender.intro_to(&leaver.locator()).await);
        }
        d.wait_counter("intros-forwarded", 20).await;
        drop(leaver);
        d.wait_counter_down("registered", 3).await;
        drop(sender);
        d.wait_counter_down("registered", 2).await;
        let status = d.status().await;
        assert!(status.contains(" protocol=0 "), "{status}");
    })
    .await;
}

#[tokio::test]
async fn a_client_from_a_disallowed_uid() {
    if !nix::unistd::geteuid().is_root() {
        // Without root we cannot run a client under another uid; the policy
        // itself is tested directly.
        let p = uds_introd::Policy::same_uid(1000);
        assert!(!p.admits(1001, 1001));
        println!("skipped the cross-uid part: not running as root");
        return;
    }
    uid_helper::run_scenarios().await;
}

/// Runs a registering client as another user: this test binary again,
/// started with `Command::uid`.
mod uid_helper {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    const MODE: &str = "UDS_INTROD_TEST_UID_CLIENT";

    #[test]
    fn uid_client_main() {
        let Ok(socket) = std::env::var(MODE) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let std = match std::os::unix::net::UnixStream::connect(&socket) {
                Ok(s) => s,
                Err(e) => {
                    println!("RESULT connect-failed {e}");
                    return;
                }
            };
            let mut c = Client {
                stream: uds_fdpass::FdStream::try_from_std(std).unwrap(),
                chan: uds_handshake::channel::IntroChannel::new(uds_syrup::Limits::intro_channel()),
                identity: Arc::new(Identity::generate()),
                server: None,
            };
            let result = tokio::time::timeout(PATIENCE, c.handshake(WireProfile::Draft)).await;
            match result {
                Ok(Ok(_)) => println!("RESULT registered"),
                Ok(Err(e)) => println!("RESULT refused {e}"),
                Err(_) => println!("RESULT timeout"),
            }
        });
    }

    fn client_as(uid: u32, socket: &std::path::Path) -> String {
        // Run a copy of this binary placed in the test's directory, so the
        // other user can execute it wherever the checkout lives.
        let exe = socket.parent().unwrap().join("uid-client");
        if !exe.exists() {
            std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new(&exe)
            .args([
                "--exact",
                "uid_helper::uid_client_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MODE, socket)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find("RESULT").unwrap_or_else(|| {
            panic!(
                "no result from the uid {uid} client: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        text[at..].lines().next().unwrap_or_default().to_owned()
    }

    pub(super) async fn run_scenarios() {
        let dir = private_dir();
        // Others must be able to reach the socket for the policy to matter.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let d = Daemon::start(dir.path(), &["--allow-uid", "4242"]);
        let mut pair = Pair::new(&d).await;
        let baseline = d.baseline().await;
        let refused = client_as(65534, &d.socket);
        assert!(
            refused.starts_with("RESULT refused") || refused.starts_with("RESULT connect"),
            "{refused}"
        );
        d.wait_counter("policy", 1).await;
        // Refusals are logged with the credentials.
        d.wait_log("uid=65534").await;
        let admitted = client_as(4242, &d.socket);
        assert_eq!(admitted, "RESULT registered");
        pair.still_works().await;
        d.wait_fds(baseline).await;
    }
}
