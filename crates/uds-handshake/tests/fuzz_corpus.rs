//! Replays the committed fuzz corpora (`fuzz/corpus/handshake` and
//! `fuzz/corpus/intro_channel`) through the same code paths as the
//! `handshake` and `intro_channel` fuzz targets, on stable Rust, and checks
//! that the seed files reach the paths they were written for.
//! Needs the `fuzzing` feature, which the repository's tests turn on (the
//! corpus is not part of the published crate).
#![cfg(feature = "fuzzing")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use uds_handshake::fuzzing::{ChannelOutcome, Outcome, drive, intro_channel};

fn corpus() -> BTreeMap<String, Vec<u8>> {
    corpus_of("handshake")
}

fn corpus_of(target: &str) -> BTreeMap<String, Vec<u8>> {
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

#[test]
fn replay_intro_channel_corpus() {
    let corpus = corpus_of("intro_channel");
    assert!(corpus.len() >= 20, "corpus has only {} files", corpus.len());
    for (name, data) in &corpus {
        // The driver panics if the channel breaks one of its invariants.
        let result = std::panic::catch_unwind(|| intro_channel(data));
        assert!(
            result.is_ok(),
            "corpus file {name} broke an intro-channel invariant"
        );
    }
}

fn run_channel(corpus: &BTreeMap<String, Vec<u8>>, name: &str) -> ChannelOutcome {
    intro_channel(
        corpus
            .get(name)
            .unwrap_or_else(|| panic!("corpus file {name} is missing")),
    )
}

#[test]
fn intro_channel_seeds_deliver_what_they_carry() {
    let c = corpus_of("intro_channel");
    // (name, messages, introductions, extra fds)
    for (name, messages, intros, extra) in [
        ("empty", 0, 0, 0),
        ("intro", 0, 1, 0),
        ("intro-one-read", 0, 1, 0),
        ("intro-extra-fds", 0, 1, 2),
        ("intro-split-body", 1, 1, 0),
        ("intro-odd-body", 1, 1, 0),
        ("intro-dribbled", 0, 1, 0),
        ("intro-via-buffer", 0, 1, 0),
        ("two-intros", 1, 2, 1),
        ("messages-and-intro", 4, 1, 0),
        ("long-message", 1, 1, 0),
    ] {
        let o = run_channel(&c, name);
        assert_eq!(o.error, None, "{name}");
        assert!(o.finished, "{name}: {o:?}");
        assert_eq!(
            (
                o.messages,
                o.introductions,
                o.extra_fds,
                o.fds_closed_on_error
            ),
            (messages, intros, extra, 0),
            "{name}"
        );
        assert_eq!(o.fds_in, intros + extra, "{name}: every fd accounted for");
    }
    assert_eq!(run_channel(&c, "intro-dribbled").receives, 208);
}

#[test]
fn intro_channel_seeds_hit_each_violation() {
    let c = corpus_of("intro_channel");
    // (name, what the error says, fds the violation closed)
    for (name, error, closed) in [
        (
            "stray-fd",
            "arrived at stream offset 17, not right after",
            1,
        ),
        (
            "fd-inside-record",
            "arrived at stream offset 100, not right after",
            1,
        ),
        (
            "fd-on-body-rest",
            "arrived at stream offset 210, not right after",
            1,
        ),
        (
            "fd-too-late",
            "ending at stream offset 207 was not followed by its fd",
            1,
        ),
        (
            "missing-fd",
            "ending at stream offset 207 was not followed by its fd",
            0,
        ),
        (
            "intro-cut-off",
            "ending at stream offset 207 was not followed by its fd",
            0,
        ),
        ("truncated", "ended inside a message (40 bytes pending)", 0),
        ("huge-length", "string length exceeds the limit", 0),
        ("nesting-bomb", "nesting deeper than the limit", 0),
        ("garbage", "unexpected byte 0xff", 0),
        ("not-a-message-record", "malformed uds:new-connection", 1),
    ] {
        let o = run_channel(&c, name);
        assert!(
            o.error.as_deref().is_some_and(|e| e.contains(error)),
            "{name}: {o:?}"
        );
        assert!(!o.finished, "{name}");
        assert_eq!(o.fds_closed_on_error, closed, "{name}");
    }
    // The body's rest is skipped; an fd with it belongs to nothing.
    assert_eq!(run_channel(&c, "fd-on-body-rest").introductions, 1);
    assert_eq!(run_channel(&c, "truncated").messages, 1);
}

/// Found by the fuzzer in an early version of the driver, which looked for
/// the message after an introduction a few bytes early: the read that
/// brought the fd ended 4 bytes after the record with `+99+`, and the next
/// read starts `9+91+`, so `9+` also appears 2 bytes before its true place.
#[test]
fn the_message_after_an_introduction_starts_after_the_whole_read() {
    let o = run_channel(&corpus_of("intro_channel"), "body-like-the-next-message");
    assert_eq!((o.introductions, o.messages), (1, 4), "{o:?}");
    assert!(
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("unknown type marker 0x44")),
        "{o:?}"
    );
}
