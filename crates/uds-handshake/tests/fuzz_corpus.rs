//! Replays the committed fuzz corpus (`fuzz/corpus/handshake`) through the
//! same code path as the `handshake` fuzz target, on stable Rust, and checks
//! that the seed files reach the paths they were written for.
//! Needs the `fuzzing` feature, which the repository's tests turn on (the
//! corpus is not part of the published crate).
#![cfg(feature = "fuzzing")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use uds_handshake::fuzzing::{Outcome, drive};

fn corpus() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/handshake");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn replay_handshake_corpus() {
    let corpus = corpus();
    assert!(corpus.len() >= 12, "corpus has only {} files", corpus.len());
    for (name, data) in &corpus {
        let result = std::panic::catch_unwind(|| drive(data));
        assert!(
            result.is_ok(),
            "corpus file {name} made the handshake panic"
        );
    }
}

fn run(corpus: &BTreeMap<String, Vec<u8>>, name: &str) -> Outcome {
    drive(
        corpus
            .get(name)
            .unwrap_or_else(|| panic!("corpus file {name} is missing")),
    )
}

#[test]
fn complete_streams_register_both_sides_at_every_read_size() {
    let corpus = corpus();
    for name in [
        "full-draft-step1",
        "full-draft-step7",
        "full-draft-step64",
        "full-draft-step255",
    ] {
        let o = run(&corpus, name);
        assert_eq!(o.channel_error, None, "{name}");
        assert!(o.server_registered && o.client_registered, "{name}: {o:?}");
        assert_eq!((o.messages, o.introductions), (3, 2), "{name}");
    }
    let o = run(&corpus, "full-goblins");
    assert!(o.server_registered && o.client_registered, "{o:?}");
    assert_eq!((o.messages, o.introductions), (3, 1));
}

#[test]
fn intro_seeds_reach_their_paths() {
    let corpus = corpus();
    for name in ["intro", "intro-extra-fds", "intro-split-body"] {
        let o = run(&corpus, name);
        assert_eq!(o.channel_error, None, "{name}");
        assert_eq!(o.introductions, 1, "{name}");
    }
    // The split body's rest is skipped, and the register after it decoded.
    assert_eq!(run(&corpus, "intro-split-body").messages, 1);
    let o = run(&corpus, "intro-stray-fds");
    assert!(
        o.channel_error
            .as_deref()
            .is_some_and(|e| e.contains("not right after a uds:new-connection")),
        "{o:?}"
    );
    let o = run(&corpus, "intro-missing-fd");
    assert!(
        o.channel_error
            .as_deref()
            .is_some_and(|e| e.contains("not followed by its fd")),
        "{o:?}"
    );
}

#[test]
fn broken_seeds_are_refused() {
    let corpus = corpus();
    // The client refuses the tampered response; the server, which never
    // sees it, still registers the (honest) signature.
    let o = run(&corpus, "response-bitflip");
    assert!(!o.client_registered && o.server_registered, "{o:?}");
    assert_eq!(o.messages, 3);
    let o = run(&corpus, "signature-first");
    assert!(!o.server_registered, "{o:?}");
    for name in [
        "garbage",
        "huge-length",
        "nesting-bomb",
        "register-truncated",
    ] {
        let o = run(&corpus, name);
        assert!(o.channel_error.is_some(), "{name}: {o:?}");
        assert_eq!(o.messages, 0, "{name}");
    }
}
