//! Benchmarks of the e2ee channel, each against a baseline measured in the
//! same run (DESIGN §7):
//!
//! * `e2ee/bulk`: `baseline` is one core sealing and opening 64 KiB buffers
//!   with ChaCha20-Poly1305 (no I/O); `e2ee` moves the same bytes through
//!   the adapter over a socketpair, written in 64 KiB writes. The two ends
//!   run on two threads, as two peer processes would.
//! * `e2ee/roundtrip-64`: a 64-byte ping-pong over a raw socketpair
//!   (`baseline`) and through the adapter (`e2ee`), both ends tasks of one
//!   current-thread runtime.
//! * `e2ee/handshake`: the CPU time of each side of a full handshake
//!   (sans-I/O: key agreement, signature check, message processing).
//!
//! Run with `cargo bench -p uds-e2ee` or `cargo xtask bench`.

use std::hint::black_box;
use std::sync::Arc;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use uds_e2ee::{E2eeStream, Handshake, LocalStatic, accept, connect};
use uds_handshake::Identity;

const BUF: usize = 64 * 1024;
const PER_ITER: usize = 16 * BUF;

struct Peers {
    alice_id: Identity,
    bob_id: Identity,
    alice: Arc<LocalStatic>,
    bob: Arc<LocalStatic>,
}

fn peers() -> Peers {
    let alice_id = Identity::from_secret_bytes([1; 32]);
    let bob_id = Identity::from_secret_bytes([2; 32]);
    Peers {
        alice: Arc::new(LocalStatic::from_secret_bytes(&alice_id, [3; 32])),
        bob: Arc::new(LocalStatic::from_secret_bytes(&bob_id, [4; 32])),
        alice_id,
        bob_id,
    }
}

async fn establish(p: &Peers) -> (E2eeStream<UnixStream>, E2eeStream<UnixStream>) {
    let (a, b) = UnixStream::pair().unwrap();
    let (alice, bob) = tokio::join!(
        connect(a, p.alice.clone(), p.bob_id.designator()),
        accept(b, p.bob.clone(), p.alice_id.designator())
    );
    (alice.unwrap(), bob.unwrap())
}

fn bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("e2ee/bulk");
    g.throughput(Throughput::Bytes(PER_ITER as u64));

    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![0x5au8; BUF];
    let mut counter = 0u64;
    g.bench_function("baseline", |b| {
        b.iter(|| {
            for _ in 0..PER_ITER / BUF {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_le_bytes());
                counter += 1;
                let nonce = Nonce::from(nonce);
                let tag = cipher
                    .encrypt_in_place_detached(&nonce, &[], &mut buf)
                    .unwrap();
                cipher
                    .decrypt_in_place_detached(&nonce, &[], &mut buf, &tag)
                    .unwrap();
            }
            black_box(&buf);
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let p = peers();
    let (mut writer, mut reader) = rt.block_on(establish(&p));
    let (go, mut went) = tokio::sync::mpsc::channel::<()>(1);
    // The writing peer: a task that sends PER_ITER bytes per request.
    rt.spawn(async move {
        let data = vec![0x5au8; BUF];
        while went.recv().await.is_some() {
            for _ in 0..PER_ITER / BUF {
                writer.write_all(&data).await.unwrap();
            }
            writer.flush().await.unwrap();
        }
    });
    let mut rbuf = vec![0u8; BUF];
    g.bench_function("e2ee", |b| {
        b.iter(|| {
            rt.block_on(async {
                go.send(()).await.unwrap();
                let mut left = PER_ITER;
                while left > 0 {
                    let n = reader.read(&mut rbuf).await.unwrap();
                    assert!(n > 0);
                    left -= n;
                }
            })
        })
    });
    g.finish();
}

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("e2ee/roundtrip-64");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut a, mut b) = rt.block_on(async { UnixStream::pair() }).unwrap();
    let (ask, mut asked) = tokio::sync::mpsc::channel::<()>(1);
    let _echo = rt.spawn(async move {
        let mut m = [0u8; 64];
        while asked.recv().await.is_some() {
            b.read_exact(&mut m).await.unwrap();
            b.write_all(&m).await.unwrap();
        }
    });
    let msg = [0x42u8; 64];
    g.bench_function("baseline", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                ask.send(()).await.unwrap();
                a.write_all(&msg).await.unwrap();
                let mut m = [0u8; 64];
                a.read_exact(&mut m).await.unwrap();
                black_box(m);
            })
        })
    });

    let p = peers();
    let (mut alice, mut bob) = rt.block_on(establish(&p));
    let (ask, mut asked) = tokio::sync::mpsc::channel::<()>(1);
    let _echo = rt.spawn(async move {
        let mut m = [0u8; 64];
        while asked.recv().await.is_some() {
            bob.read_exact(&mut m).await.unwrap();
            bob.write_all(&m).await.unwrap();
            bob.flush().await.unwrap();
        }
    });
    g.bench_function("e2ee", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                ask.send(()).await.unwrap();
                alice.write_all(&msg).await.unwrap();
                alice.flush().await.unwrap();
                let mut m = [0u8; 64];
                alice.read_exact(&mut m).await.unwrap();
                black_box(m);
            })
        })
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("e2ee/handshake");
    let p = peers();
    let (ae, be) = ([5u8; 32], [6u8; 32]);
    // The messages both sides exchange with these fixed ephemeral keys.
    let mut a = Handshake::initiator_with_ephemeral(p.alice.clone(), p.bob_id.designator(), ae);
    let mut b = Handshake::responder_with_ephemeral(p.bob.clone(), p.alice_id.designator(), be);
    let m1 = a.pending_output().to_vec();
    a.output_sent(m1.len());
    b.read(&m1).unwrap();
    let m2 = b.pending_output().to_vec();
    b.output_sent(m2.len());
    a.read(&m2).unwrap();
    let m3 = a.pending_output().to_vec();

    g.bench_function("initiator", |bench| {
        bench.iter(|| {
            let mut a =
                Handshake::initiator_with_ephemeral(p.alice.clone(), p.bob_id.designator(), ae);
            let n = a.pending_output().len();
            a.output_sent(n);
            a.read(&m2).unwrap();
            let n = a.pending_output().len();
            a.output_sent(n);
            black_box(a.finish().unwrap());
        })
    });
    g.bench_function("responder", |bench| {
        bench.iter(|| {
            let mut b =
                Handshake::responder_with_ephemeral(p.bob.clone(), p.alice_id.designator(), be);
            b.read(&m1).unwrap();
            let n = b.pending_output().len();
            b.output_sent(n);
            b.read(&m3).unwrap();
            black_box(b.finish().unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bulk, roundtrip, handshake);
criterion_main!(benches);
