//! The project's test vectors (`tests/vectors/*.tsv`, copied from the shared
//! vector set) and, when present, the Syrup reference repository's `zoo.bin`.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use uds_syrup::{
    Decoder, Designator, ErrorKind, IntroMessage, Limits, Locator, PublicKey, SigVal, Value,
    WireProfile, decode, decode_bytes,
};

struct Row {
    name: String,
    data: String,
    meaning: String,
}

fn rows(file: &str) -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            Row {
                name: f.next().unwrap().to_owned(),
                data: f.next().unwrap_or("").to_owned(),
                meaning: f.next().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

fn wire() -> HashMap<String, String> {
    rows("wire.tsv")
        .into_iter()
        .map(|r| (r.name, r.data))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

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

#[test]
fn designators_of_the_rfc8032_keys() {
    let w = wire();
    for (public, designator) in [
        ("key1-public", "key1-designator"),
        ("key2-public", "key2-designator"),
    ] {
        let key: [u8; 32] = hex(&w[public]).try_into().unwrap();
        let d = Designator::from_key_bytes(key);
        assert_eq!(d.to_string(), w[designator]);
        assert_eq!(w[designator].parse::<Designator>().unwrap(), d);
        assert_eq!(
            w[designator].to_uppercase().parse::<Designator>().unwrap(),
            d
        );
    }
}

#[test]
fn public_key_and_sig_val_lists() {
    let w = wire();
    let bytes = hex(&w["public-key-key1"]);
    assert_eq!(bytes.len(), 96);
    let key = PublicKey::from_value(&decode(&bytes).unwrap()).unwrap();
    assert_eq!(key.0.to_vec(), hex(&w["key1-public"]));
    assert_eq!(key.encode(), bytes);
    assert_eq!(key.designator().to_string(), w["key1-designator"]);

    let bytes = hex(&w["sig-val-empty-key1"]);
    assert_eq!(bytes.len(), 100);
    let sig = SigVal::from_value(&decode(&bytes).unwrap()).unwrap();
    assert_eq!(sig.encode(), bytes);
    // RFC 8032 test 1: the signature of the empty message.
    assert_eq!(
        hex::encode(sig.0),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
}

#[test]
fn locators_in_every_hint_shape() {
    let w = wire();
    let key1: Designator = w["key1-designator"].parse().unwrap();
    let key2: Designator = w["key2-designator"].parse().unwrap();
    let ours = Locator::unix(key1).with_hint(key2);
    let emitted = hex(&w["locator-hint-string-1"]);
    assert_eq!(ours.encode(), emitted, "we emit hint value \"1\"");
    for name in [
        "locator-hint-string-1",
        "locator-hint-int-1",
        "locator-hint-string-t",
        "locator-hint-bool-t",
    ] {
        let loc = Locator::decode(&hex(&w[name])).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loc, ours, "{name}");
        assert!(loc.has_hint(&key2), "{name}");
        assert_eq!(loc.encode(), emitted, "{name}: re-emitted with \"1\"");
    }
    let bare = Locator::decode(&hex(&w["locator-no-hints"])).unwrap();
    assert_eq!(bare, ours, "hints do not take part in equality");
    assert_eq!(bare.hints().len(), 0);
    assert_eq!(bare.encode(), hex(&w["locator-no-hints"]));
    assert_eq!(ours.without_hints().encode(), hex(&w["locator-no-hints"]));

    let uri: Locator = w["uri-locator"].parse().unwrap();
    assert_eq!(uri.encode(), emitted);
    assert_eq!(ours.to_string(), w["uri-locator"]);
}

#[test]
fn intro_messages_in_both_shapes() {
    let w = wire();
    let cases = [
        ("uds-register", WireProfile::Draft),
        ("uds-register", WireProfile::Goblins),
        ("uds-server-response-draft", WireProfile::Draft),
        ("uds-server-response-goblins", WireProfile::Goblins),
        ("uds-signature-draft", WireProfile::Draft),
        ("uds-signature-goblins", WireProfile::Goblins),
        ("uds-new-connection", WireProfile::Draft),
        ("uds-new-connection", WireProfile::Goblins),
    ];
    for (name, profile) in cases {
        let bytes = hex(&w[name]);
        let msg = IntroMessage::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.encode(profile), bytes, "{name} in {profile}");
    }
    // The two shapes carry the same content.
    let d = IntroMessage::decode(&hex(&w["uds-server-response-draft"])).unwrap();
    let g = IntroMessage::decode(&hex(&w["uds-server-response-goblins"])).unwrap();
    let (IntroMessage::ServerResponse(d), IntroMessage::ServerResponse(g)) = (d, g) else {
        panic!("not server responses")
    };
    assert_eq!(d.signature, g.signature);
    assert_eq!(d.public_key, g.public_key);
    assert_eq!(
        d.echoed_challenge.as_deref(),
        Some(&(0u8..64).collect::<Vec<_>>()[..])
    );
    assert_eq!(g.echoed_challenge, None);
    let d = IntroMessage::decode(&hex(&w["uds-signature-draft"])).unwrap();
    let g = IntroMessage::decode(&hex(&w["uds-signature-goblins"])).unwrap();
    assert_eq!(d, g);

    let IntroMessage::Register(reg) = IntroMessage::decode(&hex(&w["uds-register"])).unwrap()
    else {
        panic!()
    };
    assert_eq!(reg.locator.designator(), w["key1-designator"]);
    assert_eq!(reg.challenge.len(), 64);

    let IntroMessage::NewConnection(nc) =
        IntroMessage::decode(&hex(&w["uds-new-connection"])).unwrap()
    else {
        panic!()
    };
    assert_eq!(nc.from.designator(), w["key1-designator"]);
    assert_eq!(nc.to.designator(), w["key2-designator"]);
    assert_eq!(hex(&w["scm-rights-body"]), uds_syrup::SCM_RIGHTS_BODY);
}

#[test]
fn captp_rows_round_trip() {
    let w = wire();
    for name in ["my-location", "op-abort"] {
        let bytes = hex(&w[name]);
        assert_eq!(decode(&bytes).unwrap().encode(), bytes, "{name}");
    }
    let loc = decode(&hex(&w["my-location"])).unwrap();
    let inner = loc
        .as_record_labeled("my-location")
        .unwrap()
        .field(0)
        .unwrap();
    assert_eq!(
        Locator::from_value(inner).unwrap().encode(),
        hex(&w["locator-hint-string-1"])
    );
}

#[test]
fn wrong_shapes_are_named() {
    let w = wire();
    // A register whose challenge is a string.
    let mut reg = decode(&hex(&w["uds-register"])).unwrap();
    if let Value::Record(r) = &mut reg {
        let (label, mut fields) = r.clone().into_parts();
        fields[1] = Value::string("not bytes");
        *r = uds_syrup::Record::new(label, fields);
    }
    let err = IntroMessage::from_value(&reg).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected bytestring, found a string"),
        "{err}"
    );
    // An unknown label.
    let err = IntroMessage::decode(b"<8'op:abort3\"bye>").unwrap_err();
    assert!(
        err.to_string().contains("unknown introduction message"),
        "{err}"
    );
    // A locator of another transport.
    let err = Locator::decode(b"<10'ocapn-peer3'tcp9\"127.0.0.1f>")
        .unwrap()
        .designator_key()
        .unwrap_err();
    assert!(err.to_string().contains("\"tcp\""), "{err}");
    // Bad designators.
    for (d, want) in [
        ("abc", "52 base32 characters"),
        (
            "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenb",
            "trailing bits",
        ),
        (
            "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhke==",
            "invalid base32",
        ),
        (
            "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhken1",
            "invalid base32",
        ),
    ] {
        let err = d.parse::<Designator>().unwrap_err();
        assert!(err.to_string().contains(want), "{d}: {err}");
    }
}

#[test]
fn uri_errors() {
    for (uri, want) in [
        ("http://x.unix-domain-socket", "ocapn://"),
        ("ocapn://nodot", "DESIGNATOR.TRANSPORT"),
        (
            "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket/s/abc",
            "sturdyref",
        ),
        ("ocapn://short.unix-domain-socket", "52 base32"),
        (
            "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket?=1",
            "empty hint",
        ),
    ] {
        let err = uri.parse::<Locator>().unwrap_err();
        assert!(err.to_string().contains(want), "{uri}: {err}");
    }
    // Other transports keep their designator as written.
    let onion: Locator = "ocapn://abc.onion".parse().unwrap();
    assert_eq!(onion.transport(), "onion");
    assert_eq!(onion.designator(), "abc");
    // Upper-case designators are accepted and normalised.
    let up: Locator =
        "ocapn://25NJQAMCWEFLPVKL73J4SZAHHIHOC4XT3KTCGJNPAINGR5YHKENA.unix-domain-socket"
            .parse()
            .unwrap();
    assert_eq!(
        up.designator(),
        "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena"
    );
}
