//! Replays the committed fuzz corpus (`fuzz/corpus/handshake`) through the
//! same code path as the `handshake` fuzz target, on stable Rust.

use std::path::PathBuf;

#[test]
fn replay_handshake_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/handshake");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| uds_handshake::fuzzing::drive(&data));
        assert!(
            result.is_ok(),
            "corpus file {path:?} made the handshake panic"
        );
        n += 1;
    }
    assert!(n >= 10, "corpus has only {n} files");
}
