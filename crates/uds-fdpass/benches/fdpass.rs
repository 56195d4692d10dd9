//! Round trip of passing one fd and getting a byte back, through
//! `FdStream` and through the same loop written directly on nix, in the same
//! run with the same structure: a current-thread tokio runtime drives the
//! sending side (readiness from tokio's `async_io` in both cases) and a blocking echo
//! thread on the other end receives the fd, closes it and answers one byte.
//! The ratio is what the crate adds.
//!
//! Run with `cargo bench -p uds-fdpass` or `cargo xtask bench`.

use std::hint::black_box;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use tokio::io::Interest;
use uds_fdpass::FdStream;

/// The other end: receive a byte and an fd, close the fd, answer a byte.
fn echo(sock: OwnedFd) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut byte = [0u8; 1];
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
            let msg = match recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) if m.bytes > 0 => m,
                _ => return,
            };
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for fd in fds {
                        let _ = nix::unistd::close(fd);
                    }
                }
            }
            if nix::unistd::write(&sock, b"k").is_err() {
                return;
            }
        }
    })
}

fn pair() -> (OwnedFd, OwnedFd) {
    uds_fdpass::socketpair().unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let passed = std::fs::File::open("/dev/null").unwrap();
    let mut g = c.benchmark_group("fdpass/roundtrip");

    // Baseline: nix sendmsg/recvmsg, readiness from tokio (`async_io`).
    {
        let (ours, theirs) = pair();
        let t = echo(theirs);
        let std = StdStream::from(ours);
        std.set_nonblocking(true).unwrap();
        let afd = rt
            .block_on(async { tokio::net::UnixStream::from_std(std) })
            .unwrap();
        g.bench_function("baseline", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let fds = [passed.as_raw_fd()];
                    let cmsg = [ControlMessage::ScmRights(&fds)];
                    afd.async_io(Interest::WRITABLE, || {
                        sendmsg::<()>(
                            afd.as_raw_fd(),
                            &[IoSlice::new(b"x")],
                            &cmsg,
                            MsgFlags::MSG_NOSIGNAL,
                            None,
                        )
                        .map_err(std::io::Error::from)
                    })
                    .await
                    .unwrap();
                    let mut byte = [0u8; 1];
                    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 253]);
                    let n = afd
                        .async_io(Interest::READABLE, || {
                            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
                            recvmsg::<()>(
                                afd.as_raw_fd(),
                                &mut iov,
                                Some(&mut space),
                                MsgFlags::MSG_CMSG_CLOEXEC,
                            )
                            .map(|m| m.bytes)
                            .map_err(std::io::Error::from)
                        })
                        .await
                        .unwrap();
                    black_box(n)
                })
            })
        });
        drop(afd);
        t.join().unwrap();
    }

    // The crate.
    {
        let (ours, theirs) = pair();
        let t = echo(theirs);
        let stream = rt.block_on(async { FdStream::try_from_fd(ours) }).unwrap();
        let mut buf = BytesMut::with_capacity(64);
        g.bench_function("uds-fdpass", |b| {
            b.iter(|| {
                rt.block_on(async {
                    stream.send(b"x", &[passed.as_fd()]).await.unwrap();
                    buf.clear();
                    let got = stream.recv(&mut buf).await.unwrap();
                    black_box(got.len)
                })
            })
        });
        drop(stream);
        t.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
