//! The OCapN rows of the project's test vectors (`tests/vectors/wire.tsv`):
//! designators, CapTP lists, locators, the four `uds:*` records in both
//! shapes (feature `ocapn`).
#![cfg(feature = "ocapn")]

mod common;

use common::{hex, wire};
use proptest::prelude::*;
use uds_syrup::{Designator, IntroMessage, Locator, PublicKey, SigVal, Value, WireProfile, decode};

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

/// The key of a `unix-domain-socket` locator is kept from when it was
/// built or decoded; other transports have none. Hints that are not
/// designators are kept as keys but are not servers.
#[test]
fn locators_keep_their_parsed_key_and_hints() {
    let w = wire();
    let key1: Designator = w["key1-designator"].parse().unwrap();
    let key2: Designator = w["key2-designator"].parse().unwrap();
    let upper = Locator::new("unix-domain-socket", &w["key1-designator"].to_uppercase()).unwrap();
    assert_eq!(
        upper.designator(),
        w["key1-designator"],
        "stored in lower case"
    );
    assert_eq!(upper.designator_key().unwrap(), key1);
    assert_eq!(upper, Locator::unix(key1));
    let mut hinted = Locator::unix(key1);
    hinted.add_hint("not a designator");
    hinted.add_hint(w["key2-designator"].to_uppercase());
    assert_eq!(hinted.hints().count(), 2);
    assert_eq!(hinted.hint_servers().collect::<Vec<_>>(), vec![key2]);
    assert!(hinted.has_hint(&key2));
    assert!(!hinted.has_hint(&key1));
    assert_eq!(hinted.without_hints().designator_key().unwrap(), key1);
    // Equality and hashing ignore hints.
    assert_eq!(hinted, Locator::unix(key1));
    let other = Locator::new("tcp-testing-only", "127.0.0.1:1").unwrap();
    assert!(matches!(
        other.designator_key(),
        Err(uds_syrup::WireError::WrongTransport(t)) if t == "tcp-testing-only"
    ));
    assert_eq!(other.hint_servers().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn locator_uri_and_syrup_round_trip(key in any::<[u8; 32]>(), hints in prop::collection::vec(any::<[u8; 32]>(), 0..4)) {
        let d = Designator::from_key_bytes(key);
        prop_assert_eq!(d.to_string().parse::<Designator>().unwrap(), d);
        prop_assert_eq!(d.to_string().to_uppercase().parse::<Designator>().unwrap(), d);
        let loc = Locator::unix(d).with_hints(hints.iter().copied().map(Designator::from_key_bytes));
        let via_uri: Locator = loc.to_string().parse().unwrap();
        prop_assert_eq!(&via_uri, &loc);
        prop_assert_eq!(via_uri.hints().collect::<Vec<_>>(), loc.hints().collect::<Vec<_>>());
        let via_syrup = Locator::decode(&loc.encode()).unwrap();
        prop_assert_eq!(via_syrup.encode(), loc.encode());
        // The kept key and hints are the parsed ones.
        let mut servers: Vec<Designator> = hints.iter().copied().map(Designator::from_key_bytes).collect();
        servers.sort_by_key(|d| d.to_string());
        servers.dedup();
        for l in [&loc, &via_uri, &via_syrup] {
            prop_assert_eq!(l.designator_key().unwrap(), d);
            prop_assert_eq!(l.hint_servers().collect::<Vec<_>>(), servers.clone());
            for s in &servers {
                prop_assert!(l.has_hint(s));
            }
        }
    }
}
