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
async fn a_pipe_a_file_or_a_listening_socket_instead_of_a_socket() {
    let dir = private_dir();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("l")).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let cases: Vec<std::os::fd::BorrowedFd<'_>> =
        vec![pipe_r.as_fd(), file.as_fd(), listener.as_fd()];
    let d = Arc::new(Daemon::start(dir.path(), &[]));
    let mut pair = Pair::new(&d).await;
    let baseline = d.baseline().await;
    for (i, fd) in cases.iter().enumerate() {
        let mut c = Client::register(&d.socket, WireProfile::Draft).await;
        d.wait_counter("registrations", 3 + i as u64).await;
        intro_with(&c, &pair.b.locator(), &[*fd]).await;
        c.expect_closed().await;
        d.wait_counter("bad-fd", i as u64 + 1).await;
        pair.still_works().await;
        drop(c);
        d.wait_fds(baseline).await;
    }
}

/// Goblins builds its control message with `cmsg_len` 24 on x86-64, so
/// the kernel delivers two fds per intro: the socket and the sender's fd 0.
/// The daemon forwards the first, closes the rest, and counts them.
#[tokio::test]
async fn an_intro_with_two_fds_is_forwarded_with_the_first() {
    scenario(&[], "", |d, _| async move {
        let mut target = Client::register(&d.socket, WireProfile::Goblins).await;
        let c = Client::register(&d.socket, WireProfile::Goblins).await;
        d.wait_counter("registered", 4).await;
        let baseline = d.baseline().await;
        let (ours, theirs) = uds_fdpass::socketpair().unwrap();
        let stdin = std::io::stdin();
        intro_with(&c, &target.locator(), &[theirs.as_fd(), stdin.as_fd()]).await;
        drop(theirs);
        let (record, mut sock) = target.expect_intro().await;
        assert_eq!(record.from, c.locator());
        // The forwarded socket is the first fd: it reaches `ours`.
        let mut ours = tokio::net::UnixStream::from_std({
            let s = std::os::unix::net::UnixStream::from(ours);
            s.set_nonblocking(true).unwrap();
            s
        })
        .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut ours, b"hi")
            .await
            .unwrap();
        let mut two = [0u8; 2];
        sock.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
        d.wait_counter("extra-fds-closed", 1).await;
        drop((sock, ours));
        d.wait_fds(baseline).await;
        let status = d.status().await;
        assert!(status.contains(" bad-fd=0 "), "{status}");
        assert!(status.contains(" protocol=0 "), "{status}");
        drop((c, target));
    })
    .await;
}

#[tokio::test]
async fn a_thousand_clients_register_concurrently() {
    raise_fd_limit();
    scenario(
        &[
            "--max-unregistered",
            "1024",
            "--max-unregistered-per-uid",
            "1024",
        ],
        "",
        |d, _| async move {
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
        },
    )
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
    // Two silent connections take both unregistered slots, in all or for
    // this uid; the third is closed.
    for limit in ["max-unregistered", "max-unregistered-per-uid"] {
        scenario(&[&format!("--{limit}"), "2"], limit, |d, _| async move {
            let _a = Client::connect(&d.socket).await;
            let _b = Client::connect(&d.socket).await;
            d.wait_counter("unregistered", 2).await;
            let mut c = Client::connect(&d.socket).await;
            c.expect_closed().await;
        })
        .await;
    }
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
    // Per sender (intros to different unknown peers, charged to the
    // sender), and daemon-wide (passed sockets held): the third intro is
    // closed at once, the two waiting ones when they expire.
    for (limit, reason) in [
        ("--max-intros-per-sender", "sender-quota"),
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

/// A client that reads nothing at all is disconnected once one intro
/// sent to it has waited `--send-timeout`; the sender is not.
#[tokio::test]
async fn a_client_that_never_reads() {
    // Once the deaf client is gone, the rest of the flood is parked for a
    // target that is not registered and refused beyond the sender's quota;
    // the flood is far below this bound, so that the sender can never be
    // disconnected as flooding while the test waits to abort it.
    scenario(
        &["--send-timeout", "1s", "--max-refused-per-sender", "4000"],
        "not-reading",
        |d, _| async move {
            let mut deaf = Client::register(&d.socket, WireProfile::Draft).await;
            let sender = Arc::new(Client::register(&d.socket, WireProfile::Draft).await);
            d.wait_counter("registered", 4).await;
            let to = deaf.locator();
            let s = sender.clone();
            // Enough intros to fill the deaf client's socket buffer; the
            // sender is slowed down, so this task may block: it is dropped.
            let flood = tokio::spawn(async move {
                for _ in 0..2000 {
                    drop(s.intro_to(&to).await);
                }
            });
            d.wait_counter("not-reading", 1).await;
            deaf.expect_closed().await;
            flood.abort();
            let status = d.status().await;
            assert!(status.contains(" flooding=0"), "{status}");
            assert!(
                status.contains("registered: 3"),
                "the sender stays: {status}"
            );
            drop(sender);
        },
    )
    .await;
}

/// A target that is registered but does not take what is queued for it
/// (here: reads nothing, with a long `--send-timeout`) cannot hold those
/// intros, or keep their sender paused, past `--park-timeout`: they are
/// closed (`queue-timeout`), the sender goes on, and the target stays.
#[tokio::test]
async fn queued_intros_expire_after_the_park_timeout() {
    scenario(
        &[
            "--park-timeout",
            "1s",
            "--send-timeout",
            "60s",
            "--max-refused-per-sender",
            "4000",
        ],
        "queue-timeout",
        |d, _| async move {
            let deaf = Client::register(&d.socket, WireProfile::Draft).await;
            let sender = Arc::new(Client::register(&d.socket, WireProfile::Draft).await);
            d.wait_counter("registered", 4).await;
            let to = deaf.locator();
            let s = sender.clone();
            // More than the deaf client's socket buffer takes: the rest is
            // queued in the daemon, and the sender is paused at its budget.
            let flood = tokio::spawn(async move {
                for _ in 0..2000 {
                    drop(s.intro_to(&to).await);
                }
            });
            d.wait_counter("queue-timeout", 32).await;
            flood.abort();
            let status = d.status().await;
            assert!(status.contains(" not-reading=0"), "{status}");
            assert!(status.contains(" flooding=0"), "{status}");
            assert!(
                status.contains("registered: 4"),
                "the target and the sender stay: {status}"
            );
            drop(sender);
            drop(deaf);
        },
    )
    .await;
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
