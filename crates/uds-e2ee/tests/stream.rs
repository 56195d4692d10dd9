//! The tokio adapter over real socketpairs (`tokio::net::UnixStream::pair`):
//! round trips, large transfers, authenticated shutdown, truncation,
//! garbage, tampering relays, coalescing and partial writes; every test
//! checks that no fd leaked.

mod common;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use common::Vectors;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use uds_e2ee::{
    E2eeError, E2eeStream, FrameKind, FrameReader, Handshake, LocalStatic, Opened, accept, connect,
    is_e2ee_first_byte, run_handshake,
};
use uds_handshake::Identity;
use uds_syrup::Designator;

/// Runs `body` on a fresh runtime and checks that every fd it opened is
/// closed afterwards.
fn run<F: Future<Output = ()>>(body: impl FnOnce() -> F) {
    let _guard = common::lock();
    // Build (and drop) one runtime first: tokio may keep process-wide fds.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let before = common::fd_count();
    let before_list = common::fd_list();
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), body())
                .await
                .expect("test hung")
        });
    }
    assert_eq!(
        common::fd_count(),
        before,
        "fds leaked: before {before_list:?}, after {:?}",
        common::fd_list()
    );
}

struct Peers {
    alice_id: Identity,
    bob_id: Identity,
    alice: Arc<LocalStatic>,
    bob: Arc<LocalStatic>,
}

fn peers() -> Peers {
    let alice_id = Identity::generate();
    let bob_id = Identity::generate();
    Peers {
        alice: Arc::new(LocalStatic::generate(&alice_id)),
        bob: Arc::new(LocalStatic::generate(&bob_id)),
        alice_id,
        bob_id,
    }
}

/// alice dials bob over `a`/`b` (any streams): both ends established.
async fn establish<S>(p: &Peers, a: S, b: S) -> (E2eeStream<S>, E2eeStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let bob = accept(b, p.bob.clone(), p.alice_id.designator());
    let alice = connect(a, p.alice.clone(), p.bob_id.designator());
    let (alice, bob) = tokio::join!(alice, bob);
    (alice.unwrap(), bob.unwrap())
}

fn e2ee_error(e: &io::Error) -> &E2eeError {
    E2eeError::from_io(e).unwrap_or_else(|| panic!("not an e2ee error: {e:?}"))
}

/// Deterministic test data.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn round_trip_and_handshake_info() {
    run(|| async {
        let p = peers();
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, mut bob) = establish(&p, a, b).await;
        assert_eq!(alice.peer(), p.bob_id.designator());
        assert_eq!(bob.peer(), p.alice_id.designator());
        assert_eq!(alice.info().handshake_hash, bob.info().handshake_hash);
        assert_eq!(alice.info().peer_static_key, p.bob.public_key());
        assert!(alice.info().initiator && !bob.info().initiator);
        assert!(format!("{alice:?}").contains(&p.bob_id.designator().to_string()));

        for round in 0..100u32 {
            let msg = pattern(64, round as u8);
            alice.write_all(&msg).await.unwrap();
            alice.flush().await.unwrap();
            let mut got = [0u8; 64];
            bob.read_exact(&mut got).await.unwrap();
            assert_eq!(got.as_slice(), msg);
            bob.write_all(&got).await.unwrap();
            bob.flush().await.unwrap();
            alice.read_exact(&mut got).await.unwrap();
            assert_eq!(got.as_slice(), msg);
        }
        alice.shutdown().await.unwrap();
        bob.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(bob.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(alice.read_to_end(&mut rest).await.unwrap(), 0);
        // End of stream stays end of stream.
        assert_eq!(alice.read(&mut [0u8; 8]).await.unwrap(), 0);
    });
}

/// Writes `data` in pieces of the sizes in `sizes` (cycled), then shuts
/// down; returns the stream.
async fn send_in_pieces<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: E2eeStream<S>,
    data: Vec<u8>,
    sizes: &[usize],
) -> E2eeStream<S> {
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        s.write_all(&data[pos..pos + n]).await.unwrap();
        pos += n;
        i += 1;
    }
    s.shutdown().await.unwrap();
    s
}

#[test]
fn large_transfers_both_ways_at_once() {
    run(|| async {
        let p = peers();
        let (a, b) = UnixStream::pair().unwrap();
        let (alice, bob) = establish(&p, a, b).await;
        let (mut alice_r, alice_w) = tokio::io::split(alice);
        let (mut bob_r, bob_w) = tokio::io::split(bob);
        let to_bob = pattern(3 << 20, 1);
        let to_alice = pattern((2 << 20) + 12345, 2);
        let w1 = tokio::spawn({
            let data = to_bob.clone();
            async move {
                let mut w = alice_w;
                for chunk in data.chunks(65536) {
                    w.write_all(chunk).await.unwrap();
                }
                w.shutdown().await.unwrap();
            }
        });
        let w2 = tokio::spawn({
            let data = to_alice.clone();
            async move {
                let mut w = bob_w;
                // Sizes around the frame size, and odd ones.
                let sizes = [1, 65519, 65520, 7, 200_000, 65518, 3000];
                let mut pos = 0;
                let mut i = 0;
                while pos < data.len() {
                    let n = sizes[i % sizes.len()].min(data.len() - pos);
                    w.write_all(&data[pos..pos + n]).await.unwrap();
                    pos += n;
                    i += 1;
                }
                w.shutdown().await.unwrap();
            }
        });
        let r1 = tokio::spawn(async move {
            let mut got = Vec::new();
            bob_r.read_to_end(&mut got).await.unwrap();
            got
        });
        let r2 = tokio::spawn(async move {
            let mut got = Vec::new();
            // Small reads: plaintext is handed out across several calls.
            let mut buf = [0u8; 1000];
            loop {
                let n = alice_r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        w1.await.unwrap();
        w2.await.unwrap();
        assert!(r1.await.unwrap() == to_bob, "alice -> bob corrupted");
        assert!(r2.await.unwrap() == to_alice, "bob -> alice corrupted");
    });
}

/// Copies `from` to `to` until end of stream, keeping what passed. `alter`
/// sees each chunk with its offset in the stream, may change it, and
/// returns how many of its bytes to forward: fewer than all cuts the
/// connection after them. Then `to` is shut down.
async fn relay<R, W>(
    mut from: R,
    mut to: W,
    mut alter: impl FnMut(usize, &mut [u8]) -> usize,
) -> Vec<u8>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let forward = alter(seen.len(), &mut buf[..n]).min(n);
        seen.extend_from_slice(&buf[..forward]);
        if to.write_all(&buf[..forward]).await.is_err() || forward < n {
            break;
        }
    }
    let _ = to.shutdown().await;
    seen
}

/// alice ↔ relay ↔ bob: the relay alters alice's bytes with `alter`
/// (return false to cut the connection after those bytes); bob's bytes
/// pass unchanged.
async fn through_relay(
    p: &Peers,
    alter: impl FnMut(usize, &mut [u8]) -> usize + Send + 'static,
) -> (
    io::Result<E2eeStream<UnixStream>>,
    io::Result<E2eeStream<UnixStream>>,
    tokio::task::JoinHandle<Vec<u8>>,
) {
    let (a, ra) = UnixStream::pair().unwrap();
    let (rb, b) = UnixStream::pair().unwrap();
    let (ra_r, ra_w) = ra.into_split();
    let (rb_r, rb_w) = rb.into_split();
    let forward = tokio::spawn(relay(ra_r, rb_w, alter));
    tokio::spawn(relay(rb_r, ra_w, |_, b| b.len()));
    let bob = accept(b, p.bob.clone(), p.alice_id.designator());
    let alice = connect(a, p.alice.clone(), p.bob_id.designator());
    let (alice, bob) = tokio::join!(alice, bob);
    (alice, bob, forward)
}

#[test]
fn the_end_of_data_is_an_authenticated_frame_then_a_shutdown() {
    run(|| async {
        let p = peers();
        let (alice, bob, seen) = through_relay(&p, |_, b| b.len()).await;
        let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
        alice.write_all(b"all of it").await.unwrap();
        alice.shutdown().await.unwrap();
        // Shutting down twice is harmless; writing after it is refused.
        alice.shutdown().await.unwrap();
        let e = alice.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(e2ee_error(&e), &E2eeError::WriteAfterEnd);
        let mut got = Vec::new();
        bob.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"all of it");
        // alice's bytes: message 1, message 3, one data frame, and the
        // 18-byte end frame; then the relay saw her end of stream.
        drop(bob);
        let seen = seen.await.unwrap();
        assert_eq!(seen.len(), 34 + 284 + (2 + 9 + 16) + 18);
        assert_eq!(&seen[seen.len() - 18..seen.len() - 16], &[0, 16]);
        // The rest can still flow the other way.
        drop(alice);
    });
}

#[test]
fn a_cut_connection_is_a_truncation_not_an_end() {
    run(|| async {
        let p = peers();
        // The peer's socket write half shut down without the end frame.
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, mut bob) = establish(&p, a, b).await;
        alice.write_all(b"partial").await.unwrap();
        alice.flush().await.unwrap();
        alice.get_mut().shutdown().await.unwrap();
        let mut got = Vec::new();
        let e = bob.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(got, b"partial");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Transport));
        // Poisoned: the same error again, for reads and writes.
        let e = bob.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Transport));
        let e = bob.write_all(b"x").await.unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Transport));
        drop(alice);

        // The peer's process gone (its socket closed) without the end frame.
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, mut bob) = establish(&p, a, b).await;
        alice.write_all(b"gone").await.unwrap();
        alice.flush().await.unwrap();
        drop(alice);
        let mut got = Vec::new();
        let e = bob.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Transport));
        assert_eq!(got, b"gone");

        // A relay that cuts in the middle of a frame.
        let cut: usize = 34 + 284 + 10;
        let (alice, bob, _) =
            through_relay(&p, move |at, bytes| cut.saturating_sub(at).min(bytes.len())).await;
        let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
        alice.write_all(&[7; 100]).await.unwrap();
        alice.flush().await.unwrap();
        let mut got = Vec::new();
        let e = bob.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Transport));
        assert!(got.is_empty());
    });
}

#[test]
fn a_relay_that_flips_a_bit_is_caught_and_alters_nothing() {
    run(|| async {
        let p = peers();
        // Flip one bit in alice's first data frame (after her 318 bytes of
        // handshake), in the header, the ciphertext or the tag.
        for offset in [0usize, 1, 2, 10, 2 + 100 + 15] {
            let target = 34 + 284 + offset;
            let (alice, bob, _) = through_relay(&p, move |at, bytes| {
                if (at..at + bytes.len()).contains(&target) {
                    bytes[target - at] ^= 0x10;
                }
                bytes.len()
            })
            .await;
            let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
            alice.write_all(&[0x42; 100]).await.unwrap();
            alice.shutdown().await.unwrap();
            let mut got = Vec::new();
            let e = bob.read_to_end(&mut got).await.unwrap_err();
            assert!(got.is_empty(), "offset {offset}: altered bytes returned");
            let kind = e2ee_error(&e);
            assert!(
                matches!(
                    kind,
                    E2eeError::DecryptFailed(FrameKind::Transport)
                        | E2eeError::TooShort { .. }
                        | E2eeError::Truncated(FrameKind::Transport)
                ),
                "offset {offset}: {kind:?}"
            );
        }
        // A flipped bit in message 3: bob refuses the handshake.
        let (alice, bob, _) = through_relay(&p, |at, bytes| {
            let target = 34 + 100;
            if (at..at + bytes.len()).contains(&target) {
                bytes[target - at] ^= 1;
            }
            bytes.len()
        })
        .await;
        assert!(alice.is_ok(), "alice finishes before bob checks message 3");
        let e = bob.unwrap_err();
        assert_eq!(
            e2ee_error(&e),
            &E2eeError::DecryptFailed(FrameKind::Message3)
        );
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    });
}

#[test]
fn garbage_is_refused_with_the_right_error() {
    run(|| async {
        let p = peers();
        // A plaintext peer talking Syrup to an e2ee acceptor.
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"<10'ocapn-peer18'unix-domain-socket")
            .await
            .unwrap();
        let e = accept(b, p.bob.clone(), p.alice_id.designator())
            .await
            .unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::NotE2ee { first_byte: b'<' });
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);

        // A responder answering with noise of the right length.
        let (a, mut b) = UnixStream::pair().unwrap();
        let answer = tokio::spawn(async move {
            let mut m1 = [0u8; 34];
            b.read_exact(&mut m1).await.unwrap();
            let mut m2 = pattern(316, 9);
            m2[..2].copy_from_slice(&[1, 0x3a]);
            b.write_all(&m2).await.unwrap();
            b
        });
        let e = connect(a, p.alice.clone(), p.bob_id.designator())
            .await
            .unwrap_err();
        assert_eq!(
            e2ee_error(&e),
            &E2eeError::DecryptFailed(FrameKind::Message2)
        );
        drop(answer.await.unwrap());

        // A responder that hangs up during the handshake.
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let e = connect(a, p.alice.clone(), p.bob_id.designator())
            .await
            .unwrap_err();
        // Writing message 1 may already fail; otherwise reading finds the end.
        if let Some(err) = E2eeError::from_io(&e) {
            assert_eq!(err, &E2eeError::Truncated(FrameKind::Message2));
        } else {
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        }

        // Garbage after a good handshake.
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, mut bob) = establish(&p, a, b).await;
        alice.get_mut().write_all(&[0, 40]).await.unwrap();
        alice.get_mut().write_all(&[0x55; 40]).await.unwrap();
        let e = bob.read(&mut [0u8; 100]).await.unwrap_err();
        assert_eq!(
            e2ee_error(&e),
            &E2eeError::DecryptFailed(FrameKind::Transport)
        );
        // A frame shorter than its tag.
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, mut bob) = establish(&p, a, b).await;
        alice.get_mut().write_all(&[0, 15]).await.unwrap();
        let e = bob.read(&mut [0u8; 100]).await.unwrap_err();
        assert_eq!(
            e2ee_error(&e),
            &E2eeError::TooShort {
                kind: FrameKind::Transport,
                found: 15,
                min: 16
            }
        );
        drop(alice);
    });
}

#[test]
fn a_lying_introduction_server_is_caught() {
    run(|| async {
        let p = peers();
        let carol = Identity::generate().designator();
        // bob is told carol dialed him: the prologues differ, alice cannot
        // decrypt message 2, bob sees her hang up.
        let (a, b) = UnixStream::pair().unwrap();
        let bob = accept(b, p.bob.clone(), carol);
        let alice = connect(a, p.alice.clone(), p.bob_id.designator());
        let (alice, bob) = tokio::join!(alice, bob);
        let e = alice.unwrap_err();
        assert_eq!(
            e2ee_error(&e),
            &E2eeError::DecryptFailed(FrameKind::Message2)
        );
        let e = bob.unwrap_err();
        assert_eq!(e2ee_error(&e), &E2eeError::Truncated(FrameKind::Message3));
    });
}

#[test]
fn the_acceptor_can_look_at_the_first_byte_first() {
    run(|| async {
        let p = peers();
        let (a, mut b) = UnixStream::pair().unwrap();
        let alice = tokio::spawn({
            let (local, to) = (p.alice.clone(), p.bob_id.designator());
            async move { connect(a, local, to).await.unwrap() }
        });
        let mut first = [0u8; 1];
        b.read_exact(&mut first).await.unwrap();
        assert!(is_e2ee_first_byte(first[0]));
        let mut hs = Handshake::responder(p.bob.clone(), p.alice_id.designator());
        assert_eq!(hs.read(&first).unwrap(), 1);
        let mut bob = run_handshake(b, hs).await.unwrap();
        let mut alice = alice.await.unwrap();
        alice.write_all(b"hi").await.unwrap();
        alice.flush().await.unwrap();
        let mut got = [0u8; 2];
        bob.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    });
}

#[test]
fn a_silent_dialer_is_ended_by_the_callers_timeout() {
    run(|| async {
        let p = peers();
        let (a, b) = UnixStream::pair().unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(50),
            accept(b, p.bob.clone(), p.alice_id.designator()),
        )
        .await;
        assert!(r.is_err(), "the handshake cannot finish without a dialer");
        drop(a);
    });
}

#[test]
fn small_writes_coalesce_while_the_socket_is_busy_and_partial_writes_are_finished() {
    run(|| async {
        // A 64-byte in-memory pipe: writes are partial and the pipe is
        // mostly full.
        let v = Vectors::load();
        let (alice_t, bob_t) = v.transports();
        let mut hs = v.alice_initiator();
        let mut bob_hs = v.bob_responder();
        common::drive(&mut hs, &mut bob_hs);
        let (_, info) = hs.finish().unwrap();
        let (a, mut b) = tokio::io::duplex(64);
        let mut alice = E2eeStream::new(a, alice_t, info);
        let writes = 2000;
        let writer = tokio::spawn(async move {
            for i in 0..writes {
                alice.write_all(&pattern(7, i as u8)).await.unwrap();
            }
            alice.shutdown().await.unwrap();
            alice
        });
        // Read the raw frames slowly, count them and decrypt them.
        let mut bob_t = bob_t;
        let mut reader = FrameReader::new(FrameKind::Transport);
        let (mut frames, mut plain, mut ended) = (0, Vec::new(), false);
        while !ended {
            tokio::task::yield_now().await;
            let spare = reader.spare().unwrap();
            let n = b.read(spare).await.unwrap();
            assert!(n > 0, "end of stream before the end frame");
            reader.filled(n);
            while let Some(body) = reader.next_frame().unwrap() {
                match bob_t.open_in_place(body).unwrap() {
                    Opened::Data(n) => {
                        frames += 1;
                        plain.extend_from_slice(&body[..n]);
                    }
                    Opened::End => ended = true,
                }
            }
        }
        let expected: Vec<u8> = (0..writes).flat_map(|i| pattern(7, i as u8)).collect();
        assert!(plain == expected, "data corrupted");
        assert!(frames < writes / 2, "{frames} frames for {writes} writes");
        drop(writer.await.unwrap());
    });
}

#[test]
fn many_connections_leave_no_fd_behind() {
    run(|| async {
        let p = peers();
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let (a, b) = UnixStream::pair().unwrap();
            let (alice, bob) = (p.alice.clone(), p.bob.clone());
            let (alice_d, bob_d): (Designator, Designator) =
                (p.alice_id.designator(), p.bob_id.designator());
            tasks.push(tokio::spawn(async move {
                let server = tokio::spawn(async move {
                    let mut s = accept(b, bob, alice_d).await.unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.unwrap();
                    s.write_all(&got).await.unwrap();
                    s.shutdown().await.unwrap();
                });
                let mut s = connect(a, alice, bob_d).await.unwrap();
                let data = pattern(10_000 * usize::from(i) + 1, i);
                let s2 = send_in_pieces_keep(&mut s, &data).await;
                let mut echo = Vec::new();
                s2.read_to_end(&mut echo).await.unwrap();
                assert!(echo == data);
                server.await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

async fn send_in_pieces_keep<'a, S: AsyncRead + AsyncWrite + Unpin>(
    s: &'a mut E2eeStream<S>,
    data: &[u8],
) -> &'a mut E2eeStream<S> {
    for chunk in data.chunks(4000) {
        s.write_all(chunk).await.unwrap();
    }
    s.shutdown().await.unwrap();
    s
}

#[test]
fn writes_after_shutdown_and_flushes_are_handled() {
    run(|| async {
        let p = peers();
        let (a, b) = UnixStream::pair().unwrap();
        let (alice, mut bob) = establish(&p, a, b).await;
        let mut alice = send_in_pieces(alice, pattern(200_000, 3), &[65536, 1, 3]).await;
        let mut got = Vec::new();
        bob.read_to_end(&mut got).await.unwrap();
        assert!(got == pattern(200_000, 3));
        assert_eq!(
            alice.write(b"").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        alice.flush().await.unwrap();
    });
}

/// A writer that never flushes learns of a dead peer on its next write, not
/// only once a 64 KiB frame fills: the error from sending the previous
/// write's frame comes back before more is taken.
#[test]
fn a_dead_peer_fails_the_next_small_write() {
    run(|| async {
        let p = peers();
        let (a, b) = UnixStream::pair().unwrap();
        let (mut alice, bob) = establish(&p, a, b).await;
        drop(bob);
        // Taken: the frame is sealed and its send fails, to be reported on
        // the next call.
        assert_eq!(alice.write(b"first").await.unwrap(), 5);
        let e = alice.write(b"second").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        // It stays failed, and flush and shutdown say so too.
        assert_eq!(
            alice.write(b"third").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(alice.flush().await.is_err());
        assert!(alice.shutdown().await.is_err());
    });
}
