//! Property tests: round trips, every split point, never a panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use uds_syrup::{Decoder, Integer, Limits, Value, decode};

fn integer() -> impl Strategy<Value = Integer> {
    prop_oneof![
        any::<i64>().prop_map(Integer::from),
        any::<i128>().prop_map(Integer::from),
        // Beyond i128: up to 80 digits.
        (any::<bool>(), "[1-9][0-9]{39,79}")
            .prop_map(|(neg, d)| Integer::from_sign_and_digits(neg, &d).unwrap()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        integer().prop_map(Value::Integer),
        any::<u64>().prop_map(|bits| Value::Float(f64::from_bits(bits))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::from),
        ".{0,12}".prop_map(Value::string),
        "[a-z:!?-]{0,10}".prop_map(Value::symbol),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::dict),
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::set),
            (inner.clone(), prop::collection::vec(inner, 0..4))
                .prop_map(|(label, fields)| Value::record(label, fields)),
        ]
    })
}

fn hash(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_round_trip(v in value()) {
        let bytes = v.encode();
        prop_assert_eq!(bytes.len(), v.encoded_len());
        let back = decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn every_split_point_decodes_incrementally(v in value(), next in leaf()) {
        let first = v.encode();
        let mut stream = first.clone();
        stream.extend(next.encode());
        let mut dec = Decoder::default();
        // Feed growing prefixes to one decoder: "need more" until the value
        // is complete, then exactly that value and no byte of the next one.
        for cut in 0..first.len() {
            prop_assert_eq!(dec.frame_len(&stream[..cut]).unwrap(), None);
        }
        let shared = Bytes::from(stream.clone());
        let (got, used) = dec.decode(&shared).unwrap().unwrap();
        prop_assert_eq!(&got, &v);
        prop_assert_eq!(used, first.len());
        // The same through a BytesMut stream buffer, one byte at a time.
        let mut buf = BytesMut::new();
        let mut values = Vec::new();
        for &b in &stream {
            buf.extend_from_slice(&[b]);
            while let Some(v) = dec.decode_from(&mut buf).unwrap() {
                values.push(v);
            }
        }
        prop_assert_eq!(values, vec![v, next]);
        prop_assert!(buf.is_empty());
    }

    /// The hand-written (non-recursive) Clone, Eq and Hash agree with the
    /// canonical encoding: two values are equal exactly when they encode to
    /// the same bytes, and equal values hash alike.
    #[test]
    fn clone_eq_and_hash_follow_the_encoding(a in value(), b in value()) {
        let copy = a.clone();
        prop_assert_eq!(&copy, &a);
        prop_assert_eq!(hash(&copy), hash(&a));
        prop_assert_eq!(copy.encode(), a.encode());
        prop_assert_eq!(a == b, a.encode() == b.encode());
        if a == b {
            prop_assert_eq!(hash(&a), hash(&b));
        }
        // The same value wrapped differently is a different value.
        let wrapped = Value::list([a.clone()]);
        prop_assert_ne!(&wrapped, &a);
        prop_assert_eq!(wrapped.to_string(), format!("[{a}]"));
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        #[cfg(feature = "fuzzing")]
        uds_syrup::fuzzing::decode_one(&data);
        let mut dec = Decoder::new(Limits::intro_channel());
        let mut buf = BytesMut::new();
        for chunk in data.chunks(7) {
            buf.extend_from_slice(chunk);
            match dec.decode_from(&mut buf) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        v in value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = v.encode();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        // Accepted mutations are still canonical (checked inside).
        #[cfg(feature = "fuzzing")]
        uds_syrup::fuzzing::decode_one(&bytes);
        if let Ok(v) = decode(&bytes) {
            prop_assert_eq!(v.encode(), bytes);
        }
    }
}
