//! Round trip of passing one fd and getting a byte back, through
//! `FdStream` and through the same loop written directly on nix, in the same
//! run with the same structure: both ends are tasks of one current-thread
//! tokio runtime (readiness from tokio's `async_io` in both cases; no thread
//! wakeups in the measurement). The receiving end takes the fd, closes it and
//! answers one byte. The ratio is what the crate adds.
//!
//! Run with `cargo bench -p uds-fdpass` or `cargo xtask bench`.

use std::hint::black_box;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use tokio::io::Interest;
use tokio::net::UnixStream;
use uds_fdpass::FdStream;

fn tokio_stream(fd: OwnedFd) -> UnixStream {
    let std = StdStream::from(fd);
    std.set_nonblocking(true).unwrap();
    UnixStream::from_std(std).unwrap()
}

/// nix: send one byte with `fd`.
async fn nix_send(s: &UnixStream, fd: &impl AsFd) {
    let fds = [fd.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    s.async_io(Interest::WRITABLE, || {
        sendmsg::<()>(
            s.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(std::io::Error::from)
    })
    .await
    .unwrap();
}

/// nix: receive one byte and close every fd that came with it.
async fn nix_recv(s: &UnixStream) -> usize {
    s.async_io(Interest::READABLE, || {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 253]);
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    let _ = nix::unistd::close(fd);
                }
            }
        }
        Ok(msg.bytes)
    })
    .await
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let passed = std::fs::File::open("/dev/null").unwrap();
    let mut g = c.benchmark_group("fdpass/roundtrip");

    // Baseline: the same loop on nix.
    let (ours, theirs) = uds_fdpass::socketpair().unwrap();
    let (ours, theirs) = rt.block_on(async { (tokio_stream(ours), tokio_stream(theirs)) });
    rt.spawn(async move {
        while nix_recv(&theirs).await > 0 {
            theirs
                .async_io(Interest::WRITABLE, || {
                    nix::sys::socket::send(theirs.as_raw_fd(), b"k", MsgFlags::MSG_NOSIGNAL)
                        .map_err(std::io::Error::from)
                })
                .await
                .unwrap();
        }
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            rt.block_on(async {
                nix_send(&ours, &passed).await;
                black_box(nix_recv(&ours).await)
            })
        })
    });
    drop(ours);

    // The crate, on both ends.
    let (ours, theirs) = rt.block_on(async { FdStream::pair() }).unwrap();
    rt.spawn(async move {
        let mut buf = BytesMut::with_capacity(64);
        loop {
            buf.clear();
            match theirs.recv(&mut buf).await {
                Ok(got) if !got.is_eof() => drop(got.fds),
                _ => return,
            }
            if theirs.send(b"k", &[]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(64);
    g.bench_function("uds-fdpass", |b| {
        b.iter(|| {
            rt.block_on(async {
                ours.send(b"x", &[passed.as_fd()]).await.unwrap();
                buf.clear();
                black_box(ours.recv(&mut buf).await.unwrap().len)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
