//! Property tests on the sans-I/O core: any split of the byte stream gives
//! the same result; any single-bit change of a handshake message or a
//! transport frame is an error (or a truncation), never a panic, and no
//! altered plaintext is ever returned.

mod common;

use common::Vectors;
use proptest::prelude::*;
use uds_e2ee::{E2eeError, FrameKind, FrameReader, Handshake, Opened, Transport};

/// What the receiving side made of a stream.
#[derive(Debug, Default, PartialEq, Eq)]
struct Received {
    handshake_done: bool,
    plaintext: Vec<u8>,
    ended: bool,
    mid_frame: bool,
    error: Option<E2eeError>,
}

/// Feeds `stream`, cut into pieces of the sizes in `cuts` (cycled; 0 counts
/// as 1), into `hs` and then into its transport. Transport bytes go through
/// `push` or `spare`/`filled`, alternating per piece.
fn receive(mut hs: Handshake, stream: &[u8], cuts: &[usize]) -> Received {
    let mut r = Received::default();
    let mut reader = FrameReader::new(FrameKind::Transport);
    let mut transport: Option<Transport> = None;
    let mut pos = 0;
    let mut piece = 0;
    let result = (|| -> Result<(), E2eeError> {
        while pos < stream.len() {
            let size = cuts
                .get(piece % cuts.len().max(1))
                .copied()
                .unwrap_or(usize::MAX);
            let mut chunk = &stream[pos..pos + size.max(1).min(stream.len() - pos)];
            pos += chunk.len();
            piece += 1;
            if transport.is_none() {
                let used = hs.read(chunk)?;
                let out = hs.pending_output().len();
                hs.output_sent(out);
                chunk = &chunk[used..];
                if !hs.is_finished() {
                    assert!(
                        chunk.is_empty(),
                        "the handshake left bytes before finishing"
                    );
                    continue;
                }
                r.handshake_done = true;
                let hs = std::mem::replace(
                    &mut hs,
                    Handshake::initiator(
                        std::sync::Arc::new(uds_e2ee::LocalStatic::generate(
                            &uds_handshake::Identity::from_secret_bytes([0; 32]),
                        )),
                        uds_syrup::Designator::from_key_bytes([0; 32]),
                    ),
                );
                transport = Some(hs.finish()?.0);
            }
            let t = transport.as_mut().expect("set above");
            let mut fed = 0;
            while fed < chunk.len() {
                if piece % 2 == 0 {
                    fed += reader.push(&chunk[fed..])?;
                } else {
                    let spare = reader.spare()?;
                    let n = spare.len().min(chunk.len() - fed);
                    spare[..n].copy_from_slice(&chunk[fed..fed + n]);
                    reader.filled(n);
                    fed += n;
                }
                while let Some(body) = reader.next_frame()? {
                    match t.open_in_place(body)? {
                        Opened::Data(n) => r.plaintext.extend_from_slice(&body[..n]),
                        Opened::End => r.ended = true,
                    }
                }
            }
        }
        Ok(())
    })();
    r.error = result.err();
    r.mid_frame = reader.is_mid_frame() || (transport.is_none() && pos > 0);
    r
}

/// The vectors' session with alice sending `payloads` and her end: bob's
/// input stream (message 1, message 3, frames) and the plaintext.
fn alice_stream(v: &Vectors, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>, Vec<usize>) {
    let (mut alice, _) = v.transports();
    let mut stream = [v.row("message-1"), v.row("message-3")].concat();
    let mut bounds = vec![34, stream.len()];
    for p in payloads.iter().filter(|p| !p.is_empty()) {
        alice.seal_frame(p, &mut stream).unwrap();
        bounds.push(stream.len());
    }
    alice.seal_end(&mut stream).unwrap();
    bounds.push(stream.len());
    (stream, payloads.concat(), bounds)
}

/// bob's message 2 and frames, as alice receives them.
fn bob_stream(v: &Vectors, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let (_, mut bob) = v.transports();
    let mut stream = v.row("message-2").to_vec();
    for p in payloads.iter().filter(|p| !p.is_empty()) {
        bob.seal_frame(p, &mut stream).unwrap();
    }
    bob.seal_end(&mut stream).unwrap();
    (stream, payloads.concat())
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
        // Some frames of the largest size.
        (1usize..3).prop_map(|n| vec![vec![0x5a; uds_e2ee::MAX_PLAINTEXT]; n]),
    ]
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![1]),
        proptest::collection::vec(0usize..400, 1..20),
        proptest::collection::vec(0usize..70000, 1..4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_of_the_responder_input_works(p in payloads(), c in cuts()) {
        let v = Vectors::load();
        let (stream, plaintext, _) = alice_stream(&v, &p);
        let r = receive(v.bob_responder(), &stream, &c);
        prop_assert_eq!(r.error, None);
        prop_assert!(r.handshake_done && r.ended && !r.mid_frame);
        prop_assert_eq!(r.plaintext, plaintext);
    }

    #[test]
    fn any_split_of_the_initiator_input_works(p in payloads(), c in cuts()) {
        let v = Vectors::load();
        let (stream, plaintext) = bob_stream(&v, &p);
        let r = receive(v.alice_initiator(), &stream, &c);
        prop_assert_eq!(r.error, None);
        prop_assert!(r.handshake_done && r.ended && !r.mid_frame);
        prop_assert_eq!(r.plaintext, plaintext);
    }

    #[test]
    fn a_flipped_bit_in_the_responder_input_is_caught(
        p in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..4),
        bit in any::<proptest::sample::Index>(),
        c in cuts(),
    ) {
        let v = Vectors::load();
        let (mut stream, plaintext, bounds) = alice_stream(&v, &p);
        let bit = bit.index(stream.len() * 8);
        stream[bit / 8] ^= 1 << (bit % 8);
        let r = receive(v.bob_responder(), &stream, &c);
        // Caught: an error, or a stream that does not end cleanly.
        prop_assert!(r.error.is_some() || r.mid_frame || !r.ended, "{:?}", r);
        // Never altered: what came out is what alice sent in the frames
        // before the altered one.
        prop_assert!(plaintext.starts_with(&r.plaintext));
        let frame = bounds.iter().position(|&b| b > bit / 8).unwrap();
        let before: usize = p.iter().take(frame.saturating_sub(2)).map(Vec::len).sum();
        prop_assert!(r.plaintext.len() <= before, "{} > {}", r.plaintext.len(), before);
    }

    #[test]
    fn a_flipped_bit_in_the_initiator_input_is_caught(
        p in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..4),
        bit in any::<proptest::sample::Index>(),
        c in cuts(),
    ) {
        let v = Vectors::load();
        let (mut stream, plaintext) = bob_stream(&v, &p);
        let bit = bit.index(stream.len() * 8);
        stream[bit / 8] ^= 1 << (bit % 8);
        let r = receive(v.alice_initiator(), &stream, &c);
        prop_assert!(r.error.is_some() || r.mid_frame || !r.ended, "{:?}", r);
        prop_assert!(plaintext.starts_with(&r.plaintext));
    }

    #[test]
    fn garbage_never_panics_either_role(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        c in cuts(),
    ) {
        let v = Vectors::load();
        let r = receive(v.bob_responder(), &data, &c);
        prop_assert!(!r.handshake_done);
        let r = receive(v.alice_initiator(), &data, &c);
        prop_assert!(!r.handshake_done);
        // The frame reader alone, on any bytes.
        let mut reader = FrameReader::new(FrameKind::Transport);
        let mut fed = 0;
        while fed < data.len() {
            match reader.push(&data[fed..]) {
                Ok(n) => fed += n,
                Err(_) => break,
            }
            match reader.next_frame() {
                Ok(Some(body)) => prop_assert!(body.len() >= 16),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

#[test]
fn every_single_bit_of_the_vectors_transcript_matters() {
    // Exhaustively, for bob's input: every bit of message 1, message 3 and
    // alice's two frames.
    let v = Vectors::load();
    let stream = [
        v.row("message-1"),
        v.row("message-3"),
        v.row("transport-alice-1"),
        v.row("transport-alice-2"),
    ]
    .concat();
    let clean = receive(v.bob_responder(), &stream, &[]);
    assert_eq!(clean.plaintext, b"hello bob");
    assert!(clean.ended && clean.error.is_none());
    for bit in 0..stream.len() * 8 {
        let mut s = stream.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        let r = receive(v.bob_responder(), &s, &[]);
        assert!(
            r.error.is_some() || r.mid_frame || !r.ended,
            "bit {bit}: {r:?}"
        );
        assert!(b"hello bob".starts_with(&r.plaintext), "bit {bit}");
    }
}
