//! Values nested far beyond any stack: decoded with `max_depth` set to
//! `usize::MAX`, or built in memory, a million levels deep. Dropping,
//! cloning, comparing, hashing, displaying and encoding them must not
//! overflow the call stack (each would recurse once per level if written
//! the obvious way; the test threads have 2 MiB of stack).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use uds_syrup::{Decoder, ErrorKind, Limits, Value, decode};

const DEPTH: usize = 1_000_000;

fn unlimited() -> Limits {
    Limits {
        max_depth: usize::MAX,
        max_message_len: usize::MAX,
        max_atom_len: usize::MAX,
        max_integer_digits: usize::MAX,
    }
}

fn hash(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// `[[[...]]]`, `DEPTH` deep.
fn nested_lists() -> Vec<u8> {
    let mut bytes = vec![b'['; DEPTH];
    bytes.extend(std::iter::repeat_n(b']', DEPTH));
    bytes
}

/// Every container kind in turn: a list, a dictionary (key `""`), a set and
/// a record (label `a`), each holding the next, `DEPTH` levels in all.
fn nested_mixed() -> Vec<u8> {
    let opens: [&[u8]; 4] = [b"[", b"{0\"", b"#", b"<1'a"];
    let closes: [&[u8]; 4] = [b"]", b"}", b"$", b">"];
    let mut bytes = Vec::new();
    for i in 0..DEPTH {
        bytes.extend_from_slice(opens[i % 4]);
    }
    bytes.push(b't');
    for i in (0..DEPTH).rev() {
        bytes.extend_from_slice(closes[i % 4]);
    }
    bytes
}

/// Everything a value offers, on a deep one; then dropping it.
fn exercise(v: Value, bytes: &[u8]) {
    assert_eq!(v.encode(), bytes);
    assert_eq!(v.encoded_len(), bytes.len());
    let copy = v.clone();
    assert_eq!(copy, v);
    assert_eq!(hash(&copy), hash(&v));
    let shown = v.to_string();
    assert!(shown.len() >= 2 * DEPTH, "{}", shown.len());
    assert_eq!(format!("{v:?}").len(), shown.len());
    // A difference at the bottom is found.
    let mut other = bytes.to_vec();
    let leaf = other.iter().position(|&b| b == b't');
    if let Some(i) = leaf {
        other[i] = b'f';
        let different = Decoder::new(unlimited())
            .decode_slice(&other)
            .unwrap()
            .unwrap()
            .0;
        assert_ne!(different, v);
    }
    drop(copy);
    drop(v);
}

#[test]
fn a_million_nested_lists_decode_and_drop_with_no_depth_limit() {
    let bytes = nested_lists();
    let (v, used) = Decoder::new(unlimited())
        .decode_slice(&bytes)
        .unwrap()
        .expect("complete");
    assert_eq!(used, bytes.len());
    exercise(v, &bytes);
}

#[test]
fn a_million_nested_containers_of_every_kind_decode_and_drop() {
    let bytes = nested_mixed();
    let (v, _) = Decoder::new(unlimited())
        .decode_slice(&bytes)
        .unwrap()
        .expect("complete");
    exercise(v, &bytes);
}

#[test]
fn default_limits_refuse_the_deep_input_at_the_first_byte_too_deep() {
    let err = decode(&nested_lists()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::TooDeep { limit: 64 }),
        "{err}"
    );
    assert_eq!(err.offset(), 64);
}

#[test]
fn a_million_levels_built_in_memory_drop_clone_compare_and_print() {
    let mut v = Value::Bool(true);
    for i in 0..DEPTH {
        v = match i % 4 {
            0 => Value::List(vec![v]),
            1 => Value::dict([(Value::string(""), v)]),
            2 => Value::set([v]),
            _ => Value::record(Value::symbol("a"), [v]),
        };
    }
    let bytes = v.encode();
    exercise(v, &bytes);
    // Only dropping, the way most deep values end.
    let mut deep = Value::list([]);
    for _ in 0..DEPTH {
        deep = Value::List(vec![deep, Value::int(1)]);
    }
    drop(deep);
}
