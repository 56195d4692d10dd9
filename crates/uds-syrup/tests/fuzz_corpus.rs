//! Replays the committed fuzz corpus (`fuzz/corpus/syrup_decode`) through
//! the same code path as the `syrup_decode` fuzz target, on stable Rust.
//! Needs the `fuzzing` feature, which the repository's tests turn on (the
//! corpus is not part of the published crate).
#![cfg(feature = "fuzzing")]

use std::path::PathBuf;

#[test]
fn replay_syrup_decode_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/syrup_decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| uds_syrup::fuzzing::decode_one(&data));
        assert!(result.is_ok(), "corpus file {path:?} broke an invariant");
        n += 1;
    }
    assert!(n >= 40, "corpus has only {n} files");
}
