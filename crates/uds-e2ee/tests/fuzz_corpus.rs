//! Replays the committed fuzz corpora (`fuzz/corpus/e2ee_frames` and
//! `fuzz/corpus/e2ee_responder`) through the same code paths as the fuzz
//! targets, on stable Rust, and checks that the seed files reach the paths
//! they were written for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use uds_e2ee::fuzzing::{Outcome, frames, responder};
use uds_e2ee::{E2eeError, FrameKind};

fn corpus(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

fn run(corpus: &BTreeMap<String, Vec<u8>>, driver: fn(&[u8]) -> Outcome, name: &str) -> Outcome {
    driver(
        corpus
            .get(name)
            .unwrap_or_else(|| panic!("corpus file {name} is missing")),
    )
}

#[test]
fn replay_every_seed_without_panicking() {
    for (target, driver) in [
        ("e2ee_frames", frames as fn(&[u8]) -> Outcome),
        ("e2ee_responder", responder),
    ] {
        let corpus = corpus(target);
        assert!(
            corpus.len() >= 10,
            "{target} has only {} files",
            corpus.len()
        );
        for (name, data) in &corpus {
            let result = std::panic::catch_unwind(|| driver(data));
            assert!(result.is_ok(), "{target}/{name} panicked");
        }
    }
}

#[test]
fn frame_seeds_reach_their_paths() {
    let c = corpus("e2ee_frames");
    for name in ["frames", "frames-step1", "frames-step2", "frames-step7"] {
        let o = run(&c, frames, name);
        assert_eq!(o.error, None, "{name}");
        assert_eq!(o.plaintext, b"hello bob", "{name}");
        assert!(o.ended && !o.mid_frame, "{name}: {o:?}");
    }
    let o = run(&c, frames, "no-end");
    assert!(o.error.is_none() && !o.ended && !o.mid_frame && o.frames == 1);
    let o = run(&c, frames, "cut-mid-frame");
    assert!(o.error.is_none() && o.mid_frame && o.frames == 0);
    assert_eq!(
        run(&c, frames, "bad-tag").error,
        Some(E2eeError::DecryptFailed(FrameKind::Transport))
    );
    assert_eq!(
        run(&c, frames, "short-frame").error,
        Some(E2eeError::TooShort {
            kind: FrameKind::Transport,
            found: 15,
            min: 16
        })
    );
    let o = run(&c, frames, "huge-length");
    assert!(o.error.is_none() && o.mid_frame);
    let o = run(&c, frames, "data-after-end");
    assert!(o.ended);
    assert_eq!(o.error, Some(E2eeError::DataAfterEnd));
    assert_eq!(run(&c, frames, "empty"), Outcome::default());
}

#[test]
fn responder_seeds_reach_their_paths() {
    let c = corpus("e2ee_responder");
    for name in ["full", "full-step1", "full-step13", "full-step200"] {
        let o = run(&c, responder, name);
        assert_eq!(o.error, None, "{name}");
        assert!(o.handshake_done && o.ended, "{name}: {o:?}");
        assert_eq!(o.handshake_output, 316, "{name}");
        assert_eq!(o.plaintext, b"hello bob", "{name}");
    }
    let o = run(&c, responder, "handshake-only");
    assert!(o.handshake_done && !o.ended && o.error.is_none());
    assert_eq!(
        run(&c, responder, "plaintext-peer").error,
        Some(E2eeError::NotE2ee { first_byte: b'<' })
    );
    assert_eq!(
        run(&c, responder, "message1-wrong-length").error,
        Some(E2eeError::WrongLength {
            kind: FrameKind::Message1,
            found: 33,
            expected: 32
        })
    );
    assert_eq!(
        run(&c, responder, "message1-low-order").error,
        Some(E2eeError::LowOrderKey)
    );
    let o = run(&c, responder, "message3-bitflip");
    assert_eq!(o.error, Some(E2eeError::DecryptFailed(FrameKind::Message3)));
    assert_eq!(o.handshake_output, 316);
    let o = run(&c, responder, "message3-truncated");
    assert!(o.error.is_none() && o.mid_frame && !o.handshake_done);
    assert!(matches!(
        run(&c, responder, "message2-as-message3").error,
        Some(E2eeError::WrongLength {
            kind: FrameKind::Message3,
            ..
        })
    ));
}
