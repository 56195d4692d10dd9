//! The project's Syrup test vectors (`tests/vectors/syrup-*.tsv`, copied
//! from the shared vector set) and, when present, the Syrup reference
//! repository's `zoo.bin`. The OCapN rows of `wire.tsv` are tested in
//! `wire.rs`.

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use common::{hex, rows};
use uds_syrup::{Decoder, ErrorKind, Limits, Value, decode, decode_bytes};

#[test]
fn valid_vectors_decode_and_reencode_exactly() {
    let rows = rows("syrup-valid.tsv");
    assert!(rows.len() >= 30, "vector file truncated");
    for row in rows {
        let bytes = hex(&row.data);
        let value = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", row.name));
        assert_eq!(value.encode(), bytes, "{}: re-encoding differs", row.name);
        assert_eq!(
            value.encoded_len(),
            bytes.len(),
            "{}: encoded_len",
            row.name
        );
        // The zero-copy path and the incremental path agree.
        let shared = Bytes::from(bytes.clone());
        assert_eq!(decode_bytes(&shared).unwrap(), value, "{}", row.name);
        let mut dec = Decoder::default();
        assert_eq!(
            dec.decode(&shared).unwrap(),
            Some((value.clone(), bytes.len())),
            "{}",
            row.name
        );
        // The value is what the row says it is.
        check_meaning(&row.name, &value);
        assert!(!row.meaning.is_empty());
    }
}

fn check_meaning(name: &str, v: &Value) {
    let expected = match name {
        "int-0" => Value::int(0),
        "int-72" => Value::int(72),
        "int-neg5" => Value::int(-5),
        "int-big" => Value::int(1i128 << 80),
        "int-bigneg" => Value::int(-(1i128 << 70)),
        "bytes-cat" => Value::bytes(&b"cat"[..]),
        "bytes-empty" => Value::bytes(Bytes::new()),
        "str-bear" => Value::string("bear"),
        "str-bjorn" => Value::string("björn"),
        "str-bear-cjk" => Value::string("\u{718a}"),
        "str-empty" => Value::string(""),
        "sym-fetch" => Value::symbol("fetch"),
        "sym-hamta" => Value::symbol("hämta"),
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "list-123" => Value::list([Value::int(1), Value::int(2), Value::int(3)]),
        "list-empty" => Value::list([]),
        "list-nested" => Value::list([
            Value::list([Value::list([])]),
            Value::list([
                Value::bytes(&b"x"[..]),
                Value::string("y"),
                Value::symbol("z"),
            ]),
        ]),
        "set-123" => Value::set([Value::int(3), Value::int(1), Value::int(2)]),
        "set-order" => Value::set([Value::int(10), Value::int(2), Value::int(1)]),
        "double-1" => Value::Float(1.0),
        "double-123.456" => Value::Float(123.456),
        "double-nan" => Value::Float(f64::NAN),
        "dict-jsonish" => Value::dict([
            (Value::string("name"), Value::string("Alice")),
            (Value::string("age"), Value::int(30)),
            (Value::string("isAlive"), Value::Bool(true)),
        ]),
        "dict-order" => Value::dict([
            (Value::string("aa"), Value::int(2)),
            (Value::string("abcdefghij"), Value::int(3)),
            (Value::string("b"), Value::int(1)),
        ]),
        "dict-mixed-keys" => Value::dict([
            (Value::symbol("cat"), Value::int(10)),
            (Value::string("dog"), Value::int(20)),
        ]),
        "dict-empty" => Value::dict([]),
        "record-person" => Value::record(
            Value::symbol("person"),
            [Value::string("Alice"), Value::int(30), Value::Bool(true)],
        ),
        "record-nofields" => Value::record(Value::symbol("op:abort"), []),
        "record-string-label" => Value::record(
            Value::string("foo"),
            [Value::int(1), Value::int(2), Value::int(3)],
        ),
        other => panic!("vector {other} has no expected value in this test: add one"),
    };
    assert_eq!(v, &expected, "{name}");
    // Building the value in memory gives the same canonical bytes.
    assert_eq!(expected.encode(), v.encode(), "{name}");
}

/// The error each invalid row must produce.
fn expected_error(name: &str) -> fn(&ErrorKind) -> bool {
    match name {
        "leading-zero" => |k| *k == ErrorKind::LeadingZero,
        "negative-zero" => |k| *k == ErrorKind::NegativeZero,
        "len-leading-zero" => |k| *k == ErrorKind::LengthLeadingZero,
        "dict-unsorted" => |k| *k == ErrorKind::UnsortedDictKey,
        "dict-duplicate" => |k| *k == ErrorKind::DuplicateDictKey,
        "set-unsorted" => |k| *k == ErrorKind::UnsortedSetItem,
        "set-duplicate" => |k| *k == ErrorKind::DuplicateSetItem,
        "truncated-list" => |k| *k == ErrorKind::Truncated("list"),
        "truncated-bytes" => |k| *k == ErrorKind::Truncated("bytestring"),
        "truncated-double" => |k| *k == ErrorKind::Truncated("double"),
        "truncated-number" => |k| *k == ErrorKind::Truncated("number"),
        "bad-utf8-string" => |k| *k == ErrorKind::InvalidUtf8("string"),
        "bad-utf8-symbol" => |k| *k == ErrorKind::InvalidUtf8("symbol"),
        "surrogate-string" => |k| *k == ErrorKind::InvalidUtf8("string"),
        "noncanonical-nan" => |k| *k == ErrorKind::NonCanonicalNan,
        "float32" => |k| *k == ErrorKind::Float32,
        "whitespace" => |k| *k == ErrorKind::Whitespace(b' '),
        "bencode-list" => |k| *k == ErrorKind::LegacyDelimiter('l'),
        "unclosed-record" => |k| *k == ErrorKind::Truncated("record"),
        "stray-close" => |k| *k == ErrorKind::UnexpectedClose(']'),
        "bad-marker" => |k| *k == ErrorKind::UnknownMarker(b'x'),
        "huge-length" => |k| matches!(k, ErrorKind::AtomTooLong { .. }),
        "empty-input" => |k| *k == ErrorKind::EmptyInput,
        "trailing" => |k| *k == ErrorKind::TrailingBytes(2),
        "deep-nesting" => |k| matches!(k, ErrorKind::TooDeep { limit: 64 }),
        _ => |_| false,
    }
}

fn expected_offset(name: &str, input: &[u8]) -> usize {
    match name {
        "dict-unsorted" => 7,
        "dict-duplicate" => 6,
        "set-unsorted" => 3,
        "set-duplicate" => 3,
        "bad-utf8-string" | "bad-utf8-symbol" | "surrogate-string" => 2,
        "whitespace" => 3,
        "bad-marker" => 2,
        "trailing" => 2,
        "deep-nesting" => 64,
        n if n.starts_with("truncated") || n == "unclosed-record" => input.len(),
        _ => 0,
    }
}

fn generate(spec: &str) -> Vec<u8> {
    // "GEN:[*100000 ]*100000"
    let spec = spec.strip_prefix("GEN:").unwrap();
    let mut out = Vec::new();
    for part in spec.split(' ') {
        let (unit, count) = part.split_once('*').unwrap();
        out.extend(unit.as_bytes().repeat(count.parse().unwrap()));
    }
    out
}

#[test]
fn invalid_vectors_are_rejected_with_named_error_and_offset() {
    let rows = rows("syrup-invalid.tsv");
    assert!(rows.len() >= 25, "vector file truncated");
    for row in rows {
        let input = if row.data.starts_with("GEN:") {
            generate(&row.data)
        } else {
            hex(&row.data)
        };
        let err = decode(&input).expect_err(&row.name);
        assert!(
            expected_error(&row.name)(err.kind()),
            "{}: wrong error {err}",
            row.name
        );
        assert_eq!(
            err.offset(),
            expected_offset(&row.name, &input),
            "{}: {err}",
            row.name
        );
        // The message names the problem and the offset.
        let msg = err.to_string();
        assert!(msg.contains(&format!("byte {}", err.offset())), "{msg}");
    }
}

#[test]
fn huge_length_is_refused_without_waiting_for_bytes() {
    // Incrementally, a claimed length beyond the limit fails at once instead
    // of asking for more bytes.
    let mut dec = Decoder::default();
    let err = dec
        .decode_slice(b"99999999999999999999999:")
        .expect_err("must refuse");
    assert!(err.is_limit());
    let err = Decoder::new(Limits::intro_channel())
        .decode_slice(b"70000:")
        .expect_err("must refuse");
    assert!(matches!(
        err.kind(),
        ErrorKind::AtomTooLong { limit: 65536, .. }
    ));
}

#[test]
fn zoo_bin_round_trips_when_present() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/zoo.bin");
    let Ok(bytes) = std::fs::read(&path) else {
        println!("skipped: zoo.bin not found beside the project (../shared/vectors/zoo.bin)");
        return;
    };
    assert_eq!(bytes.len(), 290);
    let v = decode(&bytes).unwrap();
    assert_eq!(v.encode(), bytes);
    let r = v.as_record().unwrap();
    assert_eq!(r.label(), &Value::bytes(&b"zoo"[..]));
    assert_eq!(r.field(0), Some(&Value::string("The Grand Menagerie")));
    let animals = r.field(1).unwrap().as_list().unwrap();
    assert_eq!(animals.len(), 3);
    let casper = animals[2].as_dict().unwrap();
    assert_eq!(casper.get_symbol("name"), Some(&Value::string("Casper")));
    assert_eq!(casper.get_symbol("age"), Some(&Value::int(-12)));
    assert_eq!(casper.get_symbol("weight"), Some(&Value::Float(-34.5)));
    assert_eq!(casper.get_symbol("eats"), Some(&Value::set([])));
    let tabatha = animals[0].as_dict().unwrap();
    assert_eq!(
        tabatha.get_symbol("eats"),
        Some(&Value::set(
            ["fish", "kibble", "mice"].map(|s| Value::bytes(s.as_bytes().to_vec()))
        ))
    );
    assert_eq!(tabatha.get_symbol("weight"), Some(&Value::Float(8.2)));
    assert_eq!(tabatha.get_symbol("alive?"), Some(&Value::Bool(true)));
}

// ------------------------------------------------------------ wire.tsv
