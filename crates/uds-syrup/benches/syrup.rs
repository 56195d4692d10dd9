//! Decoding and encoding speed of a `uds:new-connection` message and of the
//! reference repository's `zoo.bin` (read from `../shared/vectors` when
//! present; skipped otherwise).
//!
//! Run with `cargo bench -p uds-syrup` or, for the report in
//! `docs/benchmarks.md`, `cargo xtask bench`.

use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uds_syrup::{Decoder, IntroMessage, Limits, Value, WireProfile, decode_bytes};

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/wire.tsv");
    let text = std::fs::read_to_string(path).expect("wire.tsv");
    let line = text
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .expect("vector row");
    hex::decode(line.split('\t').nth(1).unwrap()).unwrap()
}

fn bench_message(c: &mut Criterion, group: &str, bytes: Vec<u8>, typed: bool) {
    let shared = Bytes::from(bytes.clone());
    let value = decode_bytes(&shared).unwrap();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| decode_bytes(black_box(&shared)).unwrap())
    });
    g.bench_function("decode-incremental", |b| {
        let mut dec = Decoder::new(Limits::default());
        b.iter(|| dec.decode(black_box(&shared)).unwrap().unwrap())
    });
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            black_box(&value).encode_into(&mut out);
            black_box(out.len())
        })
    });
    if typed {
        g.bench_function("decode-typed", |b| {
            b.iter(|| IntroMessage::from_value(&decode_bytes(black_box(&shared)).unwrap()).unwrap())
        });
        let msg = IntroMessage::from_value(&value).unwrap();
        g.bench_function("encode-typed", |b| {
            b.iter(|| black_box(&msg).encode(WireProfile::Draft))
        });
    }
    g.finish();
    let _: &Value = &value;
}

fn benches(c: &mut Criterion) {
    bench_message(
        c,
        "syrup/new-connection",
        vector("uds-new-connection"),
        true,
    );
    let zoo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/zoo.bin");
    match std::fs::read(&zoo) {
        Ok(bytes) => bench_message(c, "syrup/zoo", bytes, false),
        Err(_) => eprintln!("syrup/zoo skipped: ../shared/vectors/zoo.bin not found"),
    }
}

criterion_group!(syrup, benches);
criterion_main!(syrup);
