//! The intro-channel path, record in → event out: the bytes of a
//! `uds:new-connection` record (one read), then its 4 body bytes with the fd
//! (the next read), until the channel yields the introduction; and a
//! `uds:register` message in one read. `bytewise` feeds the record one byte
//! per read, as a slow sender would.
//!
//! The baseline is decoding the same record once with
//! `uds_syrup::decode_bytes` (no framing, no typed record): the ratio is
//! what framing, fd pairing and reading the typed record add.
//!
//! Run with `cargo bench -p uds-handshake` or `cargo xtask bench`.

use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uds_handshake::channel::{ChannelEvent, IntroChannel};
use uds_syrup::{Limits, SCM_RIGHTS_BODY, decode_bytes};

fn vector(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../uds-syrup/tests/vectors/wire.tsv");
    let text = std::fs::read_to_string(path).expect("wire.tsv");
    let line = text
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .expect("vector row");
    hex::decode(line.split('\t').nth(1).expect("hex column")).expect("hex")
}

/// Feeds one introduction through `chan` in reads of `step` bytes (the
/// body and fd in a read of their own) and returns the event.
fn intro(chan: &mut IntroChannel<u32>, record: &[u8], step: usize) -> ChannelEvent<u32> {
    for chunk in record.chunks(step) {
        chan.push_bytes(chunk);
        assert!(chan.next_event().expect("valid record").is_none());
    }
    chan.push_bytes(&SCM_RIGHTS_BODY);
    chan.push_fds(vec![7]);
    chan.next_event().expect("valid intro").expect("an event")
}

fn benches(c: &mut Criterion) {
    let record = vector("uds-new-connection");
    let register = vector("uds-register");
    let shared = Bytes::from(record.clone());

    let mut g = c.benchmark_group("channel/new-connection");
    g.throughput(Throughput::Bytes(record.len() as u64));
    g.bench_function("baseline", |b| {
        b.iter(|| decode_bytes(black_box(&shared)).expect("valid"))
    });
    g.bench_function("intro", |b| {
        let mut chan = IntroChannel::<u32>::new(Limits::intro_channel());
        b.iter(
            || match intro(&mut chan, black_box(&record), record.len()) {
                ChannelEvent::Introduction { fd, .. } => fd,
                other => panic!("{other:?}"),
            },
        )
    });
    g.bench_function("bytewise", |b| {
        let mut chan = IntroChannel::<u32>::new(Limits::intro_channel());
        b.iter(|| match intro(&mut chan, black_box(&record), 1) {
            ChannelEvent::Introduction { fd, .. } => fd,
            other => panic!("{other:?}"),
        })
    });
    g.finish();

    let mut g = c.benchmark_group("channel/register");
    g.throughput(Throughput::Bytes(register.len() as u64));
    g.bench_function("baseline", |b| {
        let shared = Bytes::from(register.clone());
        b.iter(|| decode_bytes(black_box(&shared)).expect("valid"))
    });
    g.bench_function("message", |b| {
        let mut chan = IntroChannel::<u32>::new(Limits::intro_channel());
        b.iter(|| {
            chan.push_bytes(black_box(&register));
            match chan.next_event().expect("valid").expect("an event") {
                ChannelEvent::Message { value, .. } => value,
                other => panic!("{other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group!(channel, benches);
criterion_main!(channel);
