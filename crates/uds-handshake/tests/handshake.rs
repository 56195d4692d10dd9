//! The handshake against the shared vectors (RFC 8032 keys, fixed
//! challenges), every profile combination, and every refusal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use uds_handshake::{
    ClientConfig, ClientHandshake, HandshakeError, Identity, ServerHandshake, ServerStep,
};
use uds_syrup::{
    DesignatorError, IntroMessage, Locator, PublicKey, ServerResponse, SigVal, UdsSignature, Value,
    WireError, WireProfile, decode,
};

fn wire() -> HashMap<String, Vec<u8>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../uds-syrup/tests/vectors/wire.tsv");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_owned();
            let data = hex::decode(f.next()?).ok()?;
            Some((name, data))
        })
        .collect()
}

fn seed(w: &HashMap<String, Vec<u8>>, name: &str) -> [u8; 32] {
    w[name].clone().try_into().unwrap()
}

struct Fixture {
    peer: Arc<Identity>,
    server: Arc<Identity>,
    client_challenge: Vec<u8>,
    server_challenge: Vec<u8>,
    w: HashMap<String, Vec<u8>>,
}

fn fixture() -> Fixture {
    let w = wire();
    Fixture {
        peer: Arc::new(Identity::from_secret_bytes(seed(&w, "key1-seed"))),
        server: Arc::new(Identity::from_secret_bytes(seed(&w, "key2-seed"))),
        client_challenge: (0u8..64).collect(),
        server_challenge: (64u8..128).collect(),
        w,
    }
}

impl Fixture {
    fn client(&self, profile: WireProfile) -> ClientHandshake {
        let config = ClientConfig {
            profile: Some(profile),
            pinned_server: None,
        };
        ClientHandshake::with_challenge(self.peer.clone(), config, self.client_challenge.clone())
            .unwrap()
    }

    fn server(&self, profile: WireProfile) -> ServerHandshake {
        ServerHandshake::with_challenge(self.server.clone(), profile, self.server_challenge.clone())
            .unwrap()
    }
}

fn v(bytes: &[u8]) -> Value {
    decode(bytes).unwrap()
}

fn sent(step: ServerStep) -> Vec<u8> {
    match step {
        ServerStep::Send(b) => b,
        other => panic!("expected bytes to send, got {other:?}"),
    }
}

#[test]
fn identities_match_the_vectors() {
    let f = fixture();
    assert_eq!(f.peer.public_key().0.to_vec(), f.w["key1-public"]);
    assert_eq!(f.server.public_key().0.to_vec(), f.w["key2-public"]);
    assert_eq!(f.peer.public_key().encode(), f.w["public-key-key1"]);
}

#[test]
fn both_sides_produce_the_vector_bytes_in_both_profiles() {
    let f = fixture();
    for (profile, response_name, signature_name) in [
        (
            WireProfile::Draft,
            "uds-server-response-draft",
            "uds-signature-draft",
        ),
        (
            WireProfile::Goblins,
            "uds-server-response-goblins",
            "uds-signature-goblins",
        ),
    ] {
        let mut client = f.client(profile);
        let register = client.register_message();
        assert_eq!(register, f.w["uds-register"], "register");
        let mut server = f.server(profile);
        let response = sent(server.receive(&v(&register)).unwrap());
        assert_eq!(response, f.w[response_name], "{response_name}");
        let done = client.receive(&v(&response)).unwrap();
        assert_eq!(
            done.signature_message, f.w[signature_name],
            "{signature_name}"
        );
        assert_eq!(done.server, f.server.designator());
        assert_eq!(done.server_key, f.server.public_key());
        match server.receive(&v(&done.signature_message)).unwrap() {
            ServerStep::Registered(r) => {
                assert_eq!(r.designator, f.peer.designator());
                assert_eq!(r.key, f.peer.public_key());
                assert_eq!(r.locator, f.peer.locator());
                assert_eq!(r.locator.hints().len(), 0);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// With no profile forced, the client answers in the shape the server
/// used: Goblins' server requires its own shape, a draft-only server the
/// draft's.
#[test]
fn the_client_answers_in_the_servers_shape_by_default() {
    let f = fixture();
    for server_profile in [WireProfile::Draft, WireProfile::Goblins] {
        let mut client = ClientHandshake::new(f.peer.clone(), ClientConfig::default());
        let mut server = ServerHandshake::new(f.server.clone(), server_profile);
        let response = sent(server.receive(&v(&client.register_message())).unwrap());
        let done = client.receive(&v(&response)).unwrap();
        assert_eq!(done.server_profile, server_profile);
        assert_eq!(done.profile, server_profile);
        let sig = v(&done.signature_message);
        let field = sig
            .as_record_labeled("uds:signature")
            .unwrap()
            .field(1)
            .unwrap();
        match server_profile {
            WireProfile::Goblins => assert!(field.as_bytes().is_some(), "raw 64 bytes: {sig}"),
            _ => assert!(field.as_bytes().is_none(), "a sig-val list: {sig}"),
        }
        assert!(matches!(
            server.receive(&sig).unwrap(),
            ServerStep::Registered(_)
        ));
    }
}

#[test]
fn each_side_completes_against_the_other_in_all_four_combinations() {
    let f = fixture();
    for server_profile in [WireProfile::Draft, WireProfile::Goblins] {
        for client_profile in [WireProfile::Draft, WireProfile::Goblins] {
            // Fresh random challenges this time.
            let mut client = ClientHandshake::new(
                f.peer.clone(),
                ClientConfig {
                    profile: Some(client_profile),
                    pinned_server: Some(f.server.designator()),
                },
            );
            let mut server = ServerHandshake::new(f.server.clone(), server_profile);
            assert_eq!(client.challenge().len(), 64);
            assert_ne!(client.challenge(), server.challenge());
            let response = sent(server.receive(&v(&client.register_message())).unwrap());
            let done = client.receive(&v(&response)).unwrap();
            let step = server.receive(&v(&done.signature_message)).unwrap();
            assert!(
                matches!(step, ServerStep::Registered(ref r) if r.designator == f.peer.designator()),
                "server {server_profile} / client {client_profile}: {step:?}"
            );
        }
    }
}

/// A draft-shaped response built by hand.
fn response(key: PublicKey, server_challenge: &[u8], sig: SigVal, echo: Option<&[u8]>) -> Value {
    let r = ServerResponse {
        public_key: key,
        server_challenge: Bytes::copy_from_slice(server_challenge),
        signature: sig,
        echoed_challenge: echo.map(Bytes::copy_from_slice),
    };
    let profile = if echo.is_some() {
        WireProfile::Draft
    } else {
        WireProfile::Goblins
    };
    r.to_value(profile)
}

#[test]
fn client_refusals() {
    let f = fixture();
    let other = Identity::from_secret_bytes([9; 32]);
    let good_sig = f.server.sign_challenge(&f.client_challenge).unwrap();

    // Wrong payload echoed (with a valid signature on our challenge).
    let mut c = f.client(WireProfile::Draft);
    let err = c
        .receive(&response(
            f.server.public_key(),
            &f.server_challenge,
            good_sig,
            Some(&[1; 64]),
        ))
        .unwrap_err();
    assert!(matches!(err, HandshakeError::WrongEcho), "{err}");

    // Signature over different bytes.
    let mut c = f.client(WireProfile::Draft);
    let wrong = f.server.sign_challenge(&[5; 64]).unwrap();
    let err = c
        .receive(&response(
            f.server.public_key(),
            &f.server_challenge,
            wrong,
            None,
        ))
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::BadServerSignature(_)),
        "{err}"
    );

    // Signature by another key than the one presented.
    let mut c = f.client(WireProfile::Draft);
    let by_other = other.sign_challenge(&f.client_challenge).unwrap();
    let err = c
        .receive(&response(
            f.server.public_key(),
            &f.server_challenge,
            by_other,
            None,
        ))
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::BadServerSignature(_)),
        "{err}"
    );

    // A server key that differs from the pinned one (even with a valid
    // signature by that key).
    let mut c = ClientHandshake::with_challenge(
        f.peer.clone(),
        ClientConfig {
            profile: Some(WireProfile::Draft),
            pinned_server: Some(f.server.designator()),
        },
        f.client_challenge.clone(),
    )
    .unwrap();
    let sig = other.sign_challenge(&f.client_challenge).unwrap();
    let err = c
        .receive(&response(
            other.public_key(),
            &f.server_challenge,
            sig,
            None,
        ))
        .unwrap_err();
    match &err {
        HandshakeError::PinnedKeyMismatch { expected, found } => {
            assert_eq!(*expected, f.server.designator());
            assert_eq!(*found, other.designator());
            assert!(err.to_string().contains(&other.designator().to_string()));
        }
        e => panic!("{e}"),
    }

    // Server challenges we refuse to sign: 8 bytes, 2000 bytes, a record.
    for (challenge, check) in [
        (
            vec![0x41; 8],
            (|e| matches!(e, HandshakeError::ChallengeTooShort(8))) as fn(&HandshakeError) -> bool,
        ),
        (vec![0x41; 2000], |e| {
            matches!(e, HandshakeError::ChallengeTooLong(2000))
        }),
        (
            Value::record(
                Value::symbol("op:start-session"),
                [Value::bytes(vec![0u8; 40])],
            )
            .encode(),
            |e| matches!(e, HandshakeError::ChallengeIsSyrup),
        ),
    ] {
        let mut c = f.client(WireProfile::Draft);
        let err = c
            .receive(&response(
                f.server.public_key(),
                &challenge,
                good_sig,
                Some(&f.client_challenge),
            ))
            .unwrap_err();
        assert!(check(&err), "{} bytes: {err}", challenge.len());
    }

    // Any other message, and anything after the end.
    let mut c = f.client(WireProfile::Draft);
    let err = c.receive(&v(&f.w["uds-register"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected uds:server-response, got uds:register"),
        "{err}"
    );
    let err = c
        .receive(&v(&f.w["uds-server-response-draft"]))
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Finished), "{err}");
    let mut c = f.client(WireProfile::Draft);
    let err = c.receive(&Value::int(1)).unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed(_)), "{err}");
}

/// A register message with a hand-written designator string.
fn register_with(designator: &str, challenge: &[u8]) -> Value {
    let loc = Value::record(
        Value::symbol("ocapn-peer"),
        [
            Value::symbol("unix-domain-socket"),
            Value::string(designator),
            Value::Bool(false),
        ],
    );
    Value::record(
        Value::symbol("uds:register"),
        [loc, Value::bytes(challenge.to_vec())],
    )
}

#[test]
fn server_refusals() {
    let f = fixture();
    let d = f.peer.designator().to_string();

    // Designators of wrong length, with padding, with bad trailing bits.
    let mut trailing = d.clone();
    trailing.replace_range(51.., "b");
    for (designator, check) in [
        (
            &d[..51],
            (|e| matches!(e, WireError::Designator(DesignatorError::WrongLength(51))))
                as fn(&WireError) -> bool,
        ),
        (&format!("{}====", &d[..48]), |e| {
            matches!(
                e,
                WireError::Designator(DesignatorError::InvalidCharacter(48))
            )
        }),
        (&trailing, |e| {
            matches!(e, WireError::Designator(DesignatorError::NonCanonical))
        }),
    ] {
        let mut s = f.server(WireProfile::Draft);
        match s
            .receive(&register_with(designator, &f.client_challenge))
            .unwrap_err()
        {
            HandshakeError::Malformed(w) => assert!(check(&w), "{designator}: {w}"),
            e => panic!("{designator}: {e}"),
        }
    }

    // Weak and non-canonical keys.
    let identity_point = {
        let mut k = [0u8; 32];
        k[0] = 1;
        k
    };
    let non_canonical = {
        // y = p + 1 (p = 2^255 - 19): another encoding of y = 1.
        let mut k = [0xffu8; 32];
        k[0] = 0xee;
        k[31] = 0x7f;
        k
    };
    let not_a_point = (2u8..=255)
        .map(|b| {
            let mut k = [0u8; 32];
            k[0] = b;
            k
        })
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .expect("some small y is not on the curve");
    for (key, check) in [
        (
            identity_point,
            (|e| matches!(e, HandshakeError::WeakKey(_))) as fn(&HandshakeError) -> bool,
        ),
        (non_canonical, |e| {
            matches!(e, HandshakeError::NonCanonicalKey(_))
        }),
        (not_a_point, |e| matches!(e, HandshakeError::InvalidKey(_))),
    ] {
        let designator = uds_syrup::Designator::from_key_bytes(key).to_string();
        let mut s = f.server(WireProfile::Draft);
        let err = s
            .receive(&register_with(&designator, &f.client_challenge))
            .unwrap_err();
        assert!(check(&err), "{err}");
    }

    // Challenges of 8 bytes, 2000 bytes, and the bytes of a Syrup record.
    let record =
        Value::record(Value::symbol("my-location"), [f.peer.locator().to_value()]).encode();
    for (challenge, check) in [
        (
            vec![0x41; 8],
            (|e| matches!(e, HandshakeError::ChallengeTooShort(8))) as fn(&HandshakeError) -> bool,
        ),
        (vec![0x41; 2000], |e| {
            matches!(e, HandshakeError::ChallengeTooLong(2000))
        }),
        (record, |e| matches!(e, HandshakeError::ChallengeIsSyrup)),
    ] {
        let mut s = f.server(WireProfile::Draft);
        let err = s.receive(&register_with(&d, &challenge)).unwrap_err();
        assert!(check(&err), "{err}");
    }

    // A uds:signature whose payload is not our challenge.
    let mut s = f.server(WireProfile::Draft);
    s.receive(&v(&f.w["uds-register"])).unwrap();
    let wrong = UdsSignature {
        payload: Bytes::from(vec![7u8; 64]),
        signature: f.peer.sign_challenge(&[7u8; 64]).unwrap(),
    };
    let err = s.receive(&wrong.to_value(WireProfile::Draft)).unwrap_err();
    assert!(matches!(err, HandshakeError::WrongPayload), "{err}");

    // Our challenge, signed over different bytes.
    let mut s = f.server(WireProfile::Draft);
    s.receive(&v(&f.w["uds-register"])).unwrap();
    let bad = UdsSignature {
        payload: Bytes::from(f.server_challenge.clone()),
        signature: f.peer.sign_challenge(&[7u8; 64]).unwrap(),
    };
    let err = s.receive(&bad.to_value(WireProfile::Goblins)).unwrap_err();
    assert!(matches!(err, HandshakeError::BadPeerSignature(_)), "{err}");

    // Our challenge, signed by another key than the registering one.
    let mut s = f.server(WireProfile::Draft);
    s.receive(&v(&f.w["uds-register"])).unwrap();
    let other = Identity::from_secret_bytes([9; 32]);
    let bad = UdsSignature {
        payload: Bytes::from(f.server_challenge.clone()),
        signature: other.sign_challenge(&f.server_challenge).unwrap(),
    };
    let err = s.receive(&bad.to_value(WireProfile::Draft)).unwrap_err();
    assert!(
        matches!(err, HandshakeError::BadPeerSignature(d) if d == f.peer.designator()),
        "{err}"
    );

    // Messages out of order, and after the end.
    let mut s = f.server(WireProfile::Draft);
    let err = s.receive(&v(&f.w["uds-signature-draft"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected uds:register, got uds:signature"),
        "{err}"
    );
    let err = s.receive(&v(&f.w["uds-register"])).unwrap_err();
    assert!(matches!(err, HandshakeError::Finished), "{err}");
    let mut s = f.server(WireProfile::Draft);
    s.receive(&v(&f.w["uds-register"])).unwrap();
    let err = s.receive(&v(&f.w["uds-new-connection"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected uds:signature, got uds:new-connection"),
        "{err}"
    );
}

#[test]
fn a_replayed_signature_from_an_earlier_run_is_refused() {
    let f = fixture();
    // An earlier, successful run.
    let mut client = ClientHandshake::new(f.peer.clone(), ClientConfig::default());
    let mut server = ServerHandshake::new(f.server.clone(), WireProfile::Draft);
    let response = sent(server.receive(&v(&client.register_message())).unwrap());
    let recorded = client.receive(&v(&response)).unwrap().signature_message;
    assert!(matches!(
        server.receive(&v(&recorded)).unwrap(),
        ServerStep::Registered(_)
    ));
    // An attacker replays the peer's register and signature to a new run.
    let mut server = ServerHandshake::new(f.server.clone(), WireProfile::Draft);
    server.receive(&v(&client.register_message())).unwrap();
    let err = server.receive(&v(&recorded)).unwrap_err();
    assert!(matches!(err, HandshakeError::WrongPayload), "{err}");
}

#[test]
fn other_transports_are_refused() {
    let f = fixture();
    let loc = Locator::new("tcp-testing-only", "127.0.0.1:1").unwrap();
    let msg = Value::record(
        Value::symbol("uds:register"),
        [loc.to_value(), Value::bytes(f.client_challenge.clone())],
    );
    let err = f.server(WireProfile::Draft).receive(&msg).unwrap_err();
    assert!(
        matches!(err, HandshakeError::WrongTransport(ref t) if t == "tcp-testing-only"),
        "{err}"
    );
    // Sanity: the decoder agrees the vector register is a register.
    assert!(matches!(
        IntroMessage::decode(&f.w["uds-register"]),
        Ok(IntroMessage::Register(_))
    ));
}

/// Every single-byte change of any message in flight makes the handshake
/// fail cleanly or leaves its outcome unchanged.
#[test]
fn every_byte_of_every_message_matters() {
    let f = fixture();
    let honest = |profile: WireProfile| {
        let mut c = f.client(profile);
        let mut s = f.server(profile);
        let register = c.register_message();
        let response = sent(s.receive(&v(&register)).unwrap());
        let signature = c.receive(&v(&response)).unwrap().signature_message;
        [register, response, signature]
    };
    for profile in [WireProfile::Draft, WireProfile::Goblins] {
        let messages = honest(profile);
        for (which, msg) in messages.iter().enumerate() {
            for i in 0..msg.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut m = messages.clone();
                    m[which][i] ^= flip;
                    assert!(
                        run(&f, profile, &m, which).is_err(),
                        "{profile}: message {which} byte {i} ^ {flip:#x} was accepted"
                    );
                }
            }
        }
    }
}

/// Runs a handshake in which message `tampered` is replaced by `m[tampered]`.
fn run(f: &Fixture, profile: WireProfile, m: &[Vec<u8>; 3], tampered: usize) -> Result<(), String> {
    let mut c = f.client(profile);
    let mut s = f.server(profile);
    let register = if tampered == 0 {
        m[0].clone()
    } else {
        c.register_message()
    };
    let response = match s.receive(&decode(&register).map_err(|e| e.to_string())?) {
        Ok(ServerStep::Send(b)) => b,
        Ok(other) => return Err(format!("{other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    let response = if tampered == 1 {
        m[1].clone()
    } else {
        response
    };
    let done = c
        .receive(&decode(&response).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let signature = if tampered == 2 {
        m[2].clone()
    } else {
        done.signature_message
    };
    match s.receive(&decode(&signature).map_err(|e| e.to_string())?) {
        Ok(ServerStep::Registered(r))
            if r.designator == f.peer.designator() && done.server == f.server.designator() =>
        {
            Ok(())
        }
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn honest_again(f: &Fixture, profile: WireProfile) -> [Vec<u8>; 3] {
    let mut c = f.client(profile);
    let mut s = f.server(profile);
    let register = c.register_message();
    let response = sent(s.receive(&v(&register)).unwrap());
    let signature = c.receive(&v(&response)).unwrap().signature_message;
    [register, response, signature]
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random multi-byte mutations (replace, insert, delete) of any
        /// message: refused or same outcome, never a panic.
        #[test]
        fn mutated_handshakes_fail_cleanly(
            which in 0usize..3,
            goblins in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let f = fixture();
            let profile = if goblins { WireProfile::Goblins } else { WireProfile::Draft };
            let honest = honest_again(&f, profile);
            let mut m = honest.clone();
            for (at, byte, op) in edits {
                let msg = &mut m[which];
                if msg.is_empty() { break; }
                let i = at.index(msg.len());
                match op {
                    0 => msg[i] = byte,
                    1 => { msg.remove(i); }
                    _ => msg.insert(i, byte),
                }
            }
            let outcome = run(&f, profile, &m, which);
            if m != honest {
                // A changed message may only be accepted if it decodes to
                // the same meaning (impossible for canonical Syrup, which
                // has one encoding per value).
                if outcome.is_ok() {
                    let same = decode(&m[which]).ok() == decode(&honest[which]).ok();
                    prop_assert!(same, "a changed message was accepted");
                }
            } else {
                prop_assert!(outcome.is_ok());
            }
        }
    }
}
