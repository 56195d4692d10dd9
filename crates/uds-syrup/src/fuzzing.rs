//! The code path the `syrup_decode` fuzz target drives, shared with the
//! test that replays the committed corpus. Not part of the stable API.

use crate::{Decoder, IntroMessage, Limits, decode};

/// Decodes `data` one-shot and incrementally (split at a point chosen from
/// the input) and checks the invariants: accepted input re-encodes to the
/// same bytes, and both paths agree. Panics if an invariant is broken.
pub fn decode_one(data: &[u8]) {
    if let Ok(v) = decode(data) {
        assert_eq!(v.encode(), data, "accepted input must be canonical");
        assert_eq!(v.encoded_len(), data.len());
        let _ = IntroMessage::from_value(&v);
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
    }
}
