//! Hooks for the `syrup_decode` fuzz target and the tests that replay its
//! corpus (cargo feature `fuzzing`). Not part of the stable API: they may
//! change or go away in any release.

use crate::{Decoder, Limits, decode};

/// Decodes `data` one-shot and incrementally (split at a point chosen from
/// the input) and checks the invariants: accepted input re-encodes to the
/// same bytes, both paths agree, and the decoder's one-pass path (value and
/// bytes together) agrees with framing first. Panics if an invariant is
/// broken.
pub fn decode_one(data: &[u8]) {
    if let Ok(v) = decode(data) {
        assert_eq!(v.encode(), data, "accepted input must be canonical");
        assert_eq!(v.encoded_len(), data.len());
        #[cfg(feature = "ocapn")]
        let _ = crate::IntroMessage::from_value(&v);
    }
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    for limits in [Limits::default(), Limits::intro_channel()] {
        let mut dec = Decoder::new(limits);
        let first = dec.decode_slice(&data[..split]);
        let whole = if matches!(first, Ok(None)) {
            dec.decode_slice(data)
        } else {
            first.clone()
        };
        let mut fresh = Decoder::new(limits);
        assert_eq!(
            whole,
            fresh.decode_slice(data),
            "resumed and fresh decoding differ"
        );
        if let Ok(Some((_, used))) = whole {
            assert!(used <= data.len());
        }
        // Framing alone finds the same end, or the same lexical error.
        let mut framer = Decoder::new(limits);
        match (framer.frame_len(data), &whole) {
            (Ok(Some(len)), Ok(Some((_, used)))) => assert_eq!(len, *used),
            (Ok(Some(_)), Err(_)) => {} // an error only building shows
            (Ok(None), Ok(None)) => {}
            (Err(a), Err(b)) => assert_eq!(&a, b, "framing and decoding disagree"),
            (framed, decoded) => panic!("framing {framed:?} but decoding {decoded:?}"),
        }
    }
}

/// How many bytes `dec` has looked at since it was created (lexing,
/// building values, comparing keys): for tests that a value fed in small
/// pieces costs work linear in its size.
pub fn bytes_examined(dec: &Decoder) -> u64 {
    dec.examined()
}
