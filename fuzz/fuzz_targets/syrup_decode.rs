//! Fuzzes the strict decoder: one-shot, incremental (split at a point chosen
//! from the input), and re-encoding of whatever is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uds_syrup::{Decoder, IntroMessage, Limits, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        // Accepted input is canonical: it re-encodes to the same bytes.
        assert_eq!(v.encode(), data);
        let _ = IntroMessage::from_value(&v);
    }
    // Incremental decoding agrees with one-shot decoding at any split.
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let mut dec = Decoder::new(Limits::intro_channel());
    let first = dec.decode_slice(&data[..split]);
    let whole = dec.decode_slice(data);
    if let (Ok(Some((a, n))), Ok(Some((b, m)))) = (first, &whole) {
        assert_eq!((&a, n), (b, *m));
    }
});
