//! Passing fds through `FdStream`: counts, attribution to messages, limits,
//! truncation, and leak checks (`/proc/self/fd` before and after).
//!
//! The tests of this file share one lock: fd counts are per process, so a
//! test counting fds must not run beside another one opening fds.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream as StdStream;

use bytes::BytesMut;
use uds_fdpass::{FdStream, MAX_FDS, PassRights, RecvError, SendError, socketpair};

/// Runs `f` and checks that it leaves the process's fd count unchanged.
fn no_leak<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let _guard = common::lock();
    common::warm_up_tokio();
    let before = common::fd_count();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f());
    assert_eq!(common::fd_count(), before, "file descriptors leaked");
}

/// Distinct files, so a received fd can be identified by its inode.
fn files(n: usize) -> (tempfile::TempDir, Vec<File>) {
    let dir = tempfile::tempdir().unwrap();
    let files = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, i.to_string()).unwrap();
            File::open(p).unwrap()
        })
        .collect();
    (dir, files)
}

fn inode(fd: impl AsFd) -> u64 {
    let f = File::from(fd.as_fd().try_clone_to_owned().unwrap());
    f.metadata().unwrap().ino()
}

fn borrowed(files: &[File]) -> Vec<BorrowedFd<'_>> {
    files.iter().map(AsFd::as_fd).collect()
}

#[test]
fn one_two_and_253_fds_in_one_message() {
    no_leak(|| async {
        for n in [1, 2, MAX_FDS] {
            let (a, b) = FdStream::pair().unwrap();
            let (_dir, fs) = files(n);
            a.send(b"m", &borrowed(&fs)).await.unwrap();
            let mut buf = BytesMut::new();
            let got = b.recv(&mut buf).await.unwrap();
            assert_eq!(got.len, 1);
            assert_eq!(got.fds.len(), n, "all {n} fds arrive");
            for (sent, received) in fs.iter().zip(&got.fds) {
                assert_eq!(inode(sent), inode(received), "fds arrive in order");
            }
        }
    });
}

#[test]
fn too_many_fds_and_fds_without_data_are_refused() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let (_dir, fs) = files(MAX_FDS + 1);
        match a.send(b"m", &borrowed(&fs)).await {
            Err(SendError::TooManyFds(254)) => {}
            other => panic!("254 fds must be refused, got {other:?}"),
        }
        let one = &borrowed(&fs)[..1];
        match a.send(b"", one).await {
            Err(e @ SendError::NoData) => assert!(e.to_string().contains("at least one data byte")),
            other => panic!("fds without data must be refused, got {other:?}"),
        }
        // Nothing was sent by either refusal.
        a.send(b"x", &[]).await.unwrap();
        let mut buf = BytesMut::new();
        let got = b.recv(&mut buf).await.unwrap();
        assert_eq!((&buf[..], got.fds.len()), (&b"x"[..], 0));
    });
}

/// Reads until `total` bytes have arrived, recording for every receive the
/// running end offset and the inodes of the fds that came with it.
async fn read_tagged(b: &FdStream, total: usize) -> (BytesMut, Vec<(usize, Vec<u64>)>) {
    let mut buf = BytesMut::new();
    let mut tags = Vec::new();
    while buf.len() < total {
        let got = b.recv(&mut buf).await.unwrap();
        assert!(!got.is_eof());
        if !got.fds.is_empty() {
            tags.push((buf.len(), got.fds.iter().map(inode).collect()));
        }
    }
    (buf, tags)
}

#[test]
fn back_to_back_messages_keep_their_fds() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let (_dir, fs) = files(4);
        let ino: Vec<u64> = fs.iter().map(inode).collect();
        // Three messages with fds and no data between them, then data, then
        // a message with two fds, all written before the reader looks.
        a.send(b"AA", &[fs[0].as_fd()]).await.unwrap();
        a.send(b"B", &[fs[1].as_fd()]).await.unwrap();
        a.send(b"CCC", &[fs[2].as_fd()]).await.unwrap();
        a.send(b"plain bytes", &[]).await.unwrap();
        a.send(b"DD", &[fs[3].as_fd(), fs[0].as_fd()])
            .await
            .unwrap();
        a.send(b"tail", &[]).await.unwrap();
        let total = 2 + 1 + 3 + 11 + 2 + 4;
        let (buf, tags) = read_tagged(&b, total).await;
        assert_eq!(&buf[..], b"AABCCCplain bytesDDtail");
        // Each fd is attributed to the end of the message it was sent with.
        assert_eq!(
            tags,
            vec![
                (2, vec![ino[0]]),
                (3, vec![ino[1]]),
                (6, vec![ino[2]]),
                (19, vec![ino[3], ino[0]]),
            ]
        );
    });
}

#[test]
fn large_message_with_fds_is_sent_whole_across_partial_writes() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let (_dir, fs) = files(1);
        // Far more than the socket buffer: the send is split, the fd rides
        // on the first chunk only.
        let data: Vec<u8> = (0..4_000_000u32).map(|i| i as u8).collect();
        let reader = async {
            let mut buf = BytesMut::new();
            let mut fds = Vec::new();
            while buf.len() < data.len() {
                let got = b.recv(&mut buf).await.unwrap();
                if !got.fds.is_empty() {
                    fds.push((buf.len(), got.fds.len()));
                }
            }
            (buf, fds)
        };
        let one = [fs[0].as_fd()];
        let (sent, (buf, fds)) = tokio::join!(a.send(&data, &one), reader);
        sent.unwrap();
        assert!(buf[..] == data[..], "bytes arrive intact");
        assert_eq!(fds.len(), 1, "the fd arrives once");
        assert!(fds[0].0 <= 256 * 1024, "with the first chunk");
    });
}

#[test]
fn truncated_control_data_closes_what_arrived() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let b = b.with_fd_room(2);
        let (_dir, fs) = files(5);
        a.send(b"five", &borrowed(&fs)).await.unwrap();
        let mut buf = BytesMut::new();
        let err = b.recv(&mut buf).await.unwrap_err();
        let RecvError::Truncated { room, closed } = err else {
            panic!("expected a truncation, got {err:?}");
        };
        assert_eq!(room, 2);
        assert!(closed <= 2);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(!err.is_would_block());
        assert!(err.to_string().contains("were closed"), "{err}");
        assert!(
            buf.is_empty(),
            "the bytes of a truncated receive are dropped"
        );
        // As an io::Error it keeps the truncation inside.
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        assert!(matches!(
            io.get_ref().and_then(|e| e.downcast_ref::<RecvError>()),
            Some(RecvError::Truncated { room: 2, .. })
        ));
        // The stream is still usable afterwards.
        a.send(b"next", &[fs[0].as_fd()]).await.unwrap();
        let got = b.recv(&mut buf).await.unwrap();
        assert_eq!(got.fds.len(), 1);
    });
}

/// A receiver with room for `n` fds takes exactly `n`, odd or even, and
/// refuses `n + 1`.
#[test]
fn fd_room_is_exact() {
    no_leak(|| async {
        for room in [0, 1, 2, 3, 7] {
            let (a, b) = FdStream::pair().unwrap();
            let b = b.with_fd_room(room);
            let (_dir, fs) = files(room + 1);
            let mut buf = BytesMut::new();
            if room > 0 {
                a.send(b"fits", &borrowed(&fs[..room])).await.unwrap();
                let got = b.recv(&mut buf).await.unwrap();
                assert_eq!(got.fds.len(), room, "room {room}");
            }
            a.send(b"over", &borrowed(&fs)).await.unwrap();
            match b.recv(&mut buf).await {
                Err(RecvError::Truncated { room: r, closed }) => {
                    assert_eq!(r, room);
                    assert!(closed <= room, "room {room}: closed {closed}");
                }
                other => panic!("room {room}: {other:?}"),
            }
        }
    });
}

#[test]
fn ten_thousand_cycles_leak_nothing() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let mut buf = BytesMut::new();
        for i in 0..10_000u32 {
            let (keep, give) = socketpair().unwrap();
            a.send(&i.to_le_bytes(), &[give.as_fd()]).await.unwrap();
            drop(give);
            buf.clear();
            let mut got = b.recv(&mut buf).await.unwrap();
            while buf.len() < 4 {
                got.fds.extend(b.recv(&mut buf).await.unwrap().fds);
            }
            assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), i);
            let passed = got.fds.pop().expect("one fd");
            assert!(got.fds.is_empty());
            // The passed end is connected to the kept one.
            let mut theirs = StdStream::from(passed);
            let mut mine = StdStream::from(keep);
            mine.write_all(b"!").unwrap();
            let mut one = [0u8];
            theirs.read_exact(&mut one).unwrap();
        }
    });
}

#[test]
fn error_paths_leak_nothing() {
    no_leak(|| async {
        // Peer gone: the send fails with EPIPE (no SIGPIPE), fds stay ours.
        let (a, b) = FdStream::pair().unwrap();
        drop(b);
        let (_dir, fs) = files(3);
        match a.send(b"x", &borrowed(&fs)).await {
            Err(SendError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
            other => panic!("expected EPIPE, got {other:?}"),
        }
        // EOF is a receive of nothing.
        let (a, b) = FdStream::pair().unwrap();
        drop(a);
        let mut buf = BytesMut::new();
        assert!(b.recv(&mut buf).await.unwrap().is_eof());
        // Fds queued to a socket that is dropped unread are closed by the
        // kernel with it.
        let (a, b) = FdStream::pair().unwrap();
        a.send(b"unread", &borrowed(&fs)).await.unwrap();
        drop(b);
        drop(a);
    });
}

#[test]
fn credentials_travel_with_each_message_when_asked() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let creds = b.peer_credentials().unwrap();
        assert_eq!(creds.pid as u32, std::process::id());
        assert_eq!(creds.uid, nix::unistd::geteuid().as_raw());
        let mut buf = BytesMut::new();
        a.send(b"1", &[]).await.unwrap();
        assert_eq!(b.recv(&mut buf).await.unwrap().credentials, None);
        b.set_pass_credentials(true).unwrap();
        a.send(b"2", &[]).await.unwrap();
        let got = b.recv(&mut buf).await.unwrap();
        assert_eq!(got.credentials, Some(creds));
        // A pidfd of ourselves, on kernels that have SO_PEERPIDFD.
        match b.peer_pidfd().unwrap() {
            Some(pidfd) => drop(pidfd),
            None => println!("SO_PEERPIDFD not supported by this kernel"),
        }
    });
}

#[test]
fn a_socket_can_refuse_fds() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        match b.refuse_fds().unwrap() {
            PassRights::Refused => {
                let (_dir, fs) = files(1);
                let err = a.send(b"x", &borrowed(&fs)).await.unwrap_err();
                assert!(matches!(err, SendError::Io(_)), "{err:?}");
                // Plain bytes still flow.
                a.send(b"y", &[]).await.unwrap();
                let mut buf = BytesMut::new();
                let got = b.recv(&mut buf).await.unwrap();
                assert_eq!((&buf[..], got.fds.len()), (&b"y"[..], 0));
            }
            PassRights::Unsupported => println!("SO_PASSRIGHTS not supported by this kernel"),
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn try_recv_says_would_block_and_receives_what_is_there() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let mut buf = BytesMut::new();
        let err = b.try_recv(&mut buf).unwrap_err();
        assert!(err.is_would_block(), "{err:?}");
        assert!(matches!(err, RecvError::Io(_)));
        a.send(b"now", &[]).await.unwrap();
        b.readable().await.unwrap();
        let got = b.try_recv(&mut buf).unwrap();
        assert_eq!((got.len, &buf[..]), (3, &b"now"[..]));
        // Through poll_recv, as a hand-written future would.
        a.send(b" and then", &[]).await.unwrap();
        let got = std::future::poll_fn(|cx| b.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(got.len, 9);
        assert_eq!(&buf[..], b"now and then");
    });
}

/// A receive cancelled after it started waiting, and after the bytes and
/// the fd arrived (the socket is readable, its waker woken) but before the
/// poll that would complete it, loses nothing: the next receive gets them.
#[test]
fn a_cancelled_receive_loses_nothing() {
    no_leak(|| async {
        let (a, b) = FdStream::pair().unwrap();
        let mut first = BytesMut::new();
        {
            let mut pending = std::pin::pin!(b.recv(&mut first));
            let polled = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(pending.as_mut().poll(cx).is_pending())
            })
            .await;
            assert!(polled, "nothing was sent yet");
            let (_dir, fs) = files(1);
            a.send(b"late", &borrowed(&fs)).await.unwrap();
            b.readable().await.unwrap();
            // Dropped here, never polled again.
        }
        assert!(first.is_empty());
        let mut buf = BytesMut::new();
        let got = b.recv(&mut buf).await.unwrap();
        assert_eq!((&buf[..], got.fds.len()), (&b"late"[..], 1));
    });
}

#[test]
fn wrapping_checks_the_fd() {
    no_leak(|| async {
        let (a, _b) = socketpair().unwrap();
        assert!(FdStream::try_from_fd(a).is_ok());
        let file: OwnedFd = File::open("/dev/null").unwrap().into();
        let err = FdStream::try_from_fd(file).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let (x, _y) = StdStream::pair().unwrap();
        let s = FdStream::try_from_std(x).unwrap();
        assert!(s.as_fd().as_raw_fd() > 2);
    });
}
