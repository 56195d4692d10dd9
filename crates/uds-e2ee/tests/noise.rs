//! The raw Noise XX core against the official test vectors
//! (`../shared/vectors/noise-xx.json`, read when present, never committed)
//! and against the `snow` crate as an oracle: both roles, both directions,
//! every message, the handshake hash and transport frames.

mod common;

use std::path::PathBuf;

use proptest::prelude::*;
use uds_e2ee::noise::HandshakeState;
use uds_e2ee::{E2eeError, FrameKind, Handshake};

fn noise_vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/noise-xx.json")
}

fn unhex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

fn key32(v: &serde_json::Value) -> [u8; 32] {
    unhex(v).try_into().expect("a 32-byte key")
}

#[test]
fn official_noise_vectors() {
    let path = noise_vectors_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is absent", path.display());
        return;
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    let mut ran = 0;
    for (i, v) in vectors.iter().enumerate() {
        if v["protocol_name"] != "Noise_XX_25519_ChaChaPoly_BLAKE2s" {
            continue;
        }
        assert!(
            v.get("init_psks")
                .is_none_or(|p| p.as_array().unwrap().is_empty()),
            "vector {i} uses PSKs"
        );
        let mut init = HandshakeState::new(
            true,
            &unhex(&v["init_prologue"]),
            key32(&v["init_static"]),
            Some(key32(&v["init_ephemeral"])),
        );
        let mut resp = HandshakeState::new(
            false,
            &unhex(&v["resp_prologue"]),
            key32(&v["resp_static"]),
            Some(key32(&v["resp_ephemeral"])),
        );
        let messages = v["messages"].as_array().unwrap();
        assert!(messages.len() >= 3);
        for (m, msg) in messages[..3].iter().enumerate() {
            let payload = unhex(&msg["payload"]);
            let expected = unhex(&msg["ciphertext"]);
            let (w, r) = if m % 2 == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            let mut out = Vec::new();
            w.write_message(&payload, &mut out).unwrap();
            assert_eq!(
                hex::encode(&out),
                hex::encode(&expected),
                "vector {i} message {m}"
            );
            let mut got = Vec::new();
            r.read_message(&out, &mut got).unwrap();
            assert_eq!(got, payload, "vector {i} message {m}");
        }
        assert!(init.is_finished() && resp.is_finished());
        if let Some(h) = v.get("handshake_hash") {
            assert_eq!(init.handshake_hash().as_slice(), unhex(h), "vector {i}");
        }
        assert_eq!(init.handshake_hash(), resp.handshake_hash());
        assert_eq!(init.remote_static(), Some(resp.local_static()));
        assert_eq!(resp.remote_static(), Some(init.local_static()));
        let (mut i_send, mut i_recv) = init.split().unwrap();
        let (mut r_send, mut r_recv) = resp.split().unwrap();
        for (m, msg) in messages.iter().enumerate().skip(3) {
            let payload = unhex(&msg["payload"]);
            let expected = unhex(&msg["ciphertext"]);
            let (send, recv) = if m % 2 == 0 {
                (&mut i_send, &mut r_recv)
            } else {
                (&mut r_send, &mut i_recv)
            };
            let mut buf = payload.clone();
            let tag = send.encrypt_in_place(&[], &mut buf).unwrap();
            let wire = [buf.as_slice(), &tag].concat();
            assert_eq!(
                hex::encode(&wire),
                hex::encode(&expected),
                "vector {i} message {m}"
            );
            recv.decrypt_in_place(&[], &mut buf, &tag).unwrap();
            assert_eq!(buf, payload, "vector {i} message {m}");
        }
        ran += 1;
    }
    assert!(
        ran > 0,
        "no Noise_XX_25519_ChaChaPoly_BLAKE2s vector in the file"
    );
    println!("ran {ran} official vectors");
}

const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Everything one run of a handshake put on the wire, and the hashes.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    messages: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
    hashes: [Vec<u8>; 2],
}

#[derive(Clone)]
struct Keys {
    prologue: Vec<u8>,
    init_static: [u8; 32],
    init_ephemeral: [u8; 32],
    resp_static: [u8; 32],
    resp_ephemeral: [u8; 32],
    payloads: [Vec<u8>; 3],
    transport: Vec<Vec<u8>>,
}

fn snow_side(k: &Keys, initiator: bool) -> snow::HandshakeState {
    let (s, e) = if initiator {
        (&k.init_static, &k.init_ephemeral)
    } else {
        (&k.resp_static, &k.resp_ephemeral)
    };
    let b = snow::Builder::new(PATTERN.parse().unwrap())
        .local_private_key(s)
        .unwrap()
        .prologue(&k.prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(e);
    if initiator {
        b.build_initiator().unwrap()
    } else {
        b.build_responder().unwrap()
    }
}

/// Our side as the initiator (`ours_initiates`) or the responder, snow as
/// the other; transport messages alternate starting with the responder.
fn run_against_snow(k: &Keys, ours_initiates: bool) -> Transcript {
    let mut ours = if ours_initiates {
        HandshakeState::new(true, &k.prologue, k.init_static, Some(k.init_ephemeral))
    } else {
        HandshakeState::new(false, &k.prologue, k.resp_static, Some(k.resp_ephemeral))
    };
    let mut theirs = snow_side(k, !ours_initiates);
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 65535];
    for (m, payload) in k.payloads.iter().enumerate() {
        let initiator_writes = m % 2 == 0;
        let msg = if initiator_writes == ours_initiates {
            let mut out = Vec::new();
            ours.write_message(payload, &mut out).unwrap();
            let n = theirs.read_message(&out, &mut buf).unwrap();
            assert_eq!(&buf[..n], payload.as_slice(), "snow read message {m}");
            out
        } else {
            let n = theirs.write_message(payload, &mut buf).unwrap();
            let out = buf[..n].to_vec();
            let mut got = Vec::new();
            ours.read_message(&out, &mut got).unwrap();
            assert_eq!(&got, payload, "we read message {m}");
            out
        };
        messages.push(msg);
    }
    let hashes = [
        ours.handshake_hash().to_vec(),
        theirs.get_handshake_hash().to_vec(),
    ];
    assert_eq!(hashes[0], hashes[1]);
    let (mut send, mut recv) = ours.split().unwrap();
    let mut theirs = theirs.into_transport_mode().unwrap();
    let mut frames = Vec::new();
    for (m, payload) in k.transport.iter().enumerate() {
        let initiator_writes = m % 2 == 1;
        let frame = if initiator_writes == ours_initiates {
            let mut data = payload.clone();
            let tag = send.encrypt_in_place(&[], &mut data).unwrap();
            data.extend_from_slice(&tag);
            let n = theirs.read_message(&data, &mut buf).unwrap();
            assert_eq!(&buf[..n], payload.as_slice());
            data
        } else {
            let n = theirs.write_message(payload, &mut buf).unwrap();
            let mut data = buf[..n].to_vec();
            let (body, tag) = data.split_at_mut(n - 16);
            let tag: [u8; 16] = tag.try_into().unwrap();
            recv.decrypt_in_place(&[], body, &tag).unwrap();
            assert_eq!(body, payload.as_slice());
            buf[..n].to_vec()
        };
        frames.push(frame);
    }
    // Put the roles in a fixed order: [initiator's hash, responder's hash].
    let hashes = if ours_initiates {
        hashes
    } else {
        [hashes[1].clone(), hashes[0].clone()]
    };
    Transcript {
        messages,
        frames,
        hashes,
    }
}

/// Both directions give the same bytes: every message and frame we write
/// equals what snow writes in our place, and each reads the other.
fn check_both_directions(k: &Keys) {
    let a = run_against_snow(k, true);
    let b = run_against_snow(k, false);
    assert_eq!(a, b);
}

fn fixed_keys() -> Keys {
    Keys {
        prologue: b"ocapn-uds-e2ee test".to_vec(),
        init_static: [1; 32],
        init_ephemeral: [2; 32],
        resp_static: [3; 32],
        resp_ephemeral: [4; 32],
        payloads: [Vec::new(), b"responder".to_vec(), b"initiator".to_vec()],
        transport: vec![b"a".to_vec(), b"bb".to_vec(), vec![7; 65519], Vec::new()],
    }
}

#[test]
fn snow_agrees_in_both_roles() {
    check_both_directions(&fixed_keys());
}

#[test]
fn snow_agrees_with_the_designator_bound_handshake() {
    // The bound handshake is the raw one with our prologue and identity
    // records: snow, given the same inputs, produces the vectors' bytes.
    let v = common::Vectors::load();
    let k = Keys {
        prologue: v.row("prologue").to_vec(),
        init_static: common::key(&v.rows, "alice-x25519-static"),
        init_ephemeral: common::key(&v.rows, "alice-x25519-ephemeral"),
        resp_static: common::key(&v.rows, "bob-x25519-static"),
        resp_ephemeral: common::key(&v.rows, "bob-x25519-ephemeral"),
        payloads: [
            Vec::new(),
            v.row("bob-identity-record").to_vec(),
            v.row("alice-identity-record").to_vec(),
        ],
        // Transport starts with the responder in `run_against_snow`.
        transport: vec![b"hi alice".to_vec(), b"hello bob".to_vec()],
    };
    let t = run_against_snow(&k, true);
    for (m, name) in ["message-1", "message-2", "message-3"].iter().enumerate() {
        assert_eq!(t.messages[m], v.row(name)[2..], "{name}");
    }
    assert_eq!(t.hashes[0], v.row("handshake-hash"));
    assert_eq!(t.frames[0], v.row("transport-bob-1")[2..]);
    assert_eq!(t.frames[1], v.row("transport-alice-1")[2..]);
    check_both_directions(&k);

    // And snow's messages drive our bound handshake to completion.
    let mut snow_alice = snow_side(&k, true);
    let mut bob = v.bob_responder();
    let mut buf = vec![0u8; 1024];
    let n = snow_alice.write_message(&[], &mut buf).unwrap();
    bob.read(&[&(n as u16).to_be_bytes()[..], &buf[..n]].concat())
        .unwrap();
    let m2 = bob.pending_output().to_vec();
    bob.output_sent(m2.len());
    let n = snow_alice.read_message(&m2[2..], &mut buf).unwrap();
    assert_eq!(&buf[..n], v.row("bob-identity-record"));
    let n = snow_alice
        .write_message(v.row("alice-identity-record"), &mut buf)
        .unwrap();
    bob.read(&[&(n as u16).to_be_bytes()[..], &buf[..n]].concat())
        .unwrap();
    let (_, info) = bob.finish().unwrap();
    assert_eq!(
        info.handshake_hash.as_slice(),
        snow_alice.get_handshake_hash()
    );
    assert_eq!(info.peer, v.alice_id.designator());
}

#[test]
fn snow_with_a_wrong_identity_payload_is_refused() {
    // A peer with the right prologue and a valid Noise handshake, but whose
    // identity record is someone else's: refused by name.
    let v = common::Vectors::load();
    let mallory_id = uds_handshake::Identity::from_secret_bytes([0x77; 32]);
    let mallory = uds_e2ee::LocalStatic::from_secret_bytes(&mallory_id, [0x78; 32]);
    let k = Keys {
        prologue: v.row("prologue").to_vec(),
        init_static: [0; 32],
        init_ephemeral: [0; 32],
        resp_static: [0x78; 32],
        resp_ephemeral: [0x79; 32],
        payloads: [Vec::new(), Vec::new(), Vec::new()],
        transport: Vec::new(),
    };
    let mut buf = vec![0u8; 1024];

    // Mallory answers alice's dial of bob with her own (valid) record.
    let mut alice = v.alice_initiator();
    let m1 = alice.pending_output().to_vec();
    let mut snow_mallory = snow_side(&k, false);
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let n = snow_mallory
        .write_message(mallory.identity_record(), &mut buf)
        .unwrap();
    let m2 = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    assert_eq!(
        alice.read(&m2),
        Err(E2eeError::WrongIdentity {
            expected: v.bob_id.designator(),
            found: mallory_id.designator(),
        })
    );

    // Mallory replays bob's record with her own static key.
    let mut alice = v.alice_initiator();
    let m1 = alice.pending_output().to_vec();
    let mut snow_mallory = snow_side(&k, false);
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let n = snow_mallory
        .write_message(v.row("bob-identity-record"), &mut buf)
        .unwrap();
    let m2 = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    assert_eq!(
        alice.read(&m2),
        Err(E2eeError::BadSignature(v.bob_id.designator()))
    );

    // A payload that is not an identity record (of the right length).
    let mut alice = v.alice_initiator();
    let m1 = alice.pending_output().to_vec();
    let mut snow_mallory = snow_side(&k, false);
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let n = snow_mallory.write_message(&[b'x'; 218], &mut buf).unwrap();
    let m2 = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    assert!(matches!(
        alice.read(&m2),
        Err(E2eeError::MalformedIdentity(_))
    ));

    // A responder whose identity record names a weak key.
    let mut alice = v.alice_initiator();
    let m1 = alice.pending_output().to_vec();
    let mut snow_mallory = snow_side(&k, false);
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point, small order
    let record = uds_e2ee::IdentityRecord {
        key: uds_syrup::PublicKey(weak),
        signature: uds_syrup::SigVal([0; 64]),
    }
    .encode();
    let n = snow_mallory.write_message(&record, &mut buf).unwrap();
    let m2 = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    let mut alice_expecting_weak =
        Handshake::initiator(v.alice.clone(), uds_syrup::Designator::from_key_bytes(weak));
    // (alice's own ephemeral differs, so use a fresh exchange for this one.)
    let m1 = alice_expecting_weak.pending_output().to_vec();
    let mut snow_mallory = snow_side(
        &Keys {
            prologue: uds_e2ee::prologue(
                &v.alice_id.designator(),
                &uds_syrup::Designator::from_key_bytes(weak),
            )
            .to_vec(),
            ..k.clone()
        },
        false,
    );
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let n = snow_mallory.write_message(&record, &mut buf).unwrap();
    let m2_weak = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    assert_eq!(
        alice_expecting_weak.read(&m2_weak),
        Err(E2eeError::InvalidIdentityKey(
            uds_syrup::Designator::from_key_bytes(weak)
        ))
    );
    // The first alice, expecting bob, refuses the weak key before comparing
    // identities: a wrong identity is reported only once proven.
    assert_eq!(
        alice.read(&m2),
        Err(E2eeError::InvalidIdentityKey(
            uds_syrup::Designator::from_key_bytes(weak)
        ))
    );

    // A record naming a bystander (carol) with a signature she never made:
    // a bad signature, not a claim that carol answered.
    let carol_id = uds_handshake::Identity::from_secret_bytes([0x55; 32]);
    let mut alice = v.alice_initiator();
    let m1 = alice.pending_output().to_vec();
    let mut snow_mallory = snow_side(&k, false);
    snow_mallory.read_message(&m1[2..], &mut buf).unwrap();
    let forged = uds_e2ee::IdentityRecord {
        key: carol_id.public_key(),
        signature: uds_syrup::SigVal([7; 64]),
    }
    .encode();
    let n = snow_mallory.write_message(&forged, &mut buf).unwrap();
    let m2 = [&(n as u16).to_be_bytes()[..], &buf[..n]].concat();
    assert_eq!(
        alice.read(&m2),
        Err(E2eeError::BadSignature(carol_id.designator()))
    );
}

#[test]
fn a_low_order_ephemeral_is_refused() {
    let v = common::Vectors::load();
    let mut bob = v.bob_responder();
    // Message 1 carrying the all-zero point (low order).
    let m1 = [&[0u8, 32][..], &[0; 32]].concat();
    assert_eq!(bob.read(&m1), Err(E2eeError::LowOrderKey));
    // Message 2 failed while being written: nothing of it is left to send.
    assert_eq!(bob.pending_output(), &[] as &[u8]);
    let mut alice = v.alice_initiator();
    // Message 2 whose ephemeral key is a low-order point.
    let mut m2 = v.row("message-2").to_vec();
    m2[2..34].copy_from_slice(&[0; 32]);
    assert_eq!(alice.read(&m2), Err(E2eeError::LowOrderKey));
}

#[test]
fn messages_of_the_wrong_size_are_refused_before_decryption() {
    let v = common::Vectors::load();
    let mut bob = v.bob_responder();
    assert_eq!(
        bob.read(&[0, 33]),
        Err(E2eeError::WrongLength {
            kind: FrameKind::Message1,
            found: 33,
            expected: 32
        })
    );
    let mut bob = v.bob_responder();
    assert_eq!(
        bob.read(b"<10'ocapn-peer"),
        Err(E2eeError::NotE2ee { first_byte: b'<' })
    );
    let mut alice = v.alice_initiator();
    assert_eq!(
        alice.read(&[0xff, 0xff]),
        Err(E2eeError::WrongLength {
            kind: FrameKind::Message2,
            found: 65535,
            expected: 314
        })
    );
    let mut bob = v.bob_responder();
    bob.read(v.row("message-1")).unwrap();
    assert_eq!(
        bob.read(&[1, 0x1b]),
        Err(E2eeError::WrongLength {
            kind: FrameKind::Message3,
            found: 283,
            expected: 282
        })
    );
}

#[test]
fn the_raw_core_refuses_misuse_and_oversize() {
    let mut a = HandshakeState::new(true, b"", [1; 32], None);
    let mut out = Vec::new();
    assert!(matches!(
        a.read_message(&[0; 32], &mut out),
        Err(E2eeError::Misuse(_))
    ));
    assert_eq!(
        a.write_message(&vec![0; 65504], &mut out),
        Err(E2eeError::FrameTooLong {
            found: 65536,
            max: 65535
        })
    );
    a.write_message(&vec![0; 65503], &mut out).unwrap();
    assert_eq!(out.len(), 65535);
    let mut b = HandshakeState::new(false, b"", [2; 32], None);
    assert_eq!(
        b.read_message(&[0; 31], &mut Vec::new()),
        Err(E2eeError::TooShort {
            kind: FrameKind::Message1,
            found: 31,
            min: 32
        })
    );
    assert!(matches!(b.split(), Err(E2eeError::Misuse(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn snow_agrees_on_random_keys_and_payloads(
        keys in any::<[[u8; 32]; 4]>(),
        prologue in proptest::collection::vec(any::<u8>(), 0..100),
        p0 in proptest::collection::vec(any::<u8>(), 0..300),
        p1 in proptest::collection::vec(any::<u8>(), 0..300),
        p2 in proptest::collection::vec(any::<u8>(), 0..300),
        transport in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..2000), 0..6),
    ) {
        let k = Keys {
            prologue,
            init_static: keys[0],
            init_ephemeral: keys[1],
            resp_static: keys[2],
            resp_ephemeral: keys[3],
            payloads: [p0, p1, p2],
            transport,
        };
        check_both_directions(&k);
    }
}
