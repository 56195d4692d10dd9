//! `tests/vectors/e2ee.tsv` (made by an independent implementation),
//! reproduced byte for byte through the public API: identity records,
//! prologue, the three handshake messages, the handshake hash, the
//! transport frames, and the message 2 of a lied-about `from`.

mod common;

use std::sync::Arc;

use common::{Vectors, key};
use uds_e2ee::{
    E2eeError, FrameKind, Handshake, IdentityRecord, LocalStatic, Opened, prologue,
    static_key_statement,
};
use uds_handshake::Identity;

#[test]
fn identities_and_records() {
    let v = Vectors::load();
    assert_eq!(
        v.alice_id.public_key().0.as_slice(),
        v.row("alice-ed25519-public")
    );
    assert_eq!(
        v.bob_id.public_key().0.as_slice(),
        v.row("bob-ed25519-public")
    );
    assert_eq!(
        v.alice.identity_record().as_slice(),
        v.row("alice-identity-record")
    );
    assert_eq!(
        v.bob.identity_record().as_slice(),
        v.row("bob-identity-record")
    );
    // Each record verifies for its own static key only.
    let alice_record = IdentityRecord::decode(v.row("alice-identity-record")).unwrap();
    assert_eq!(
        alice_record.verify(&v.alice.public_key()).unwrap(),
        v.alice_id.designator()
    );
    assert_eq!(
        alice_record.verify(&v.bob.public_key()),
        Err(E2eeError::BadSignature(v.alice_id.designator()))
    );
    assert_eq!(
        static_key_statement(&v.alice.public_key())[..26],
        *b"ocapn-uds-e2ee-static-key:"
    );
}

#[test]
fn prologue_row() {
    let v = Vectors::load();
    assert_eq!(
        prologue(&v.alice_id.designator(), &v.bob_id.designator()).as_slice(),
        v.row("prologue")
    );
}

#[test]
fn the_whole_transcript() {
    let v = Vectors::load();
    let mut alice = v.alice_initiator();
    let mut bob = v.bob_responder();

    assert_eq!(alice.pending_output(), v.row("message-1"));
    assert_eq!(alice.wanted(), 2 + 314);
    alice.output_sent(34);
    assert_eq!(bob.read(v.row("message-1")).unwrap(), 34);

    assert_eq!(bob.pending_output(), v.row("message-2"));
    bob.output_sent(316);
    assert_eq!(alice.read(v.row("message-2")).unwrap(), 316);
    assert_eq!(alice.peer(), Some(v.bob_id.designator()));

    assert_eq!(alice.pending_output(), v.row("message-3"));
    assert!(alice.is_finished());
    alice.output_sent(284);
    assert_eq!(bob.wanted(), 284);
    assert_eq!(bob.read(v.row("message-3")).unwrap(), 284);
    assert!(bob.is_finished());
    assert_eq!(bob.pending_output(), b"");

    let (mut a, a_info) = alice.finish().unwrap();
    let (mut b, b_info) = bob.finish().unwrap();
    assert_eq!(a_info.handshake_hash.as_slice(), v.row("handshake-hash"));
    assert_eq!(b_info.handshake_hash.as_slice(), v.row("handshake-hash"));
    assert_eq!(a_info.peer, v.bob_id.designator());
    assert_eq!(b_info.peer, v.alice_id.designator());
    assert_eq!(a_info.peer_static_key, v.bob.public_key());
    assert_eq!(b_info.peer_static_key, v.alice.public_key());
    assert!(a_info.initiator && !b_info.initiator);

    let mut frame = Vec::new();
    a.seal_frame(b"hello bob", &mut frame).unwrap();
    assert_eq!(frame, v.row("transport-alice-1"));
    frame.clear();
    b.seal_frame(b"hi alice", &mut frame).unwrap();
    assert_eq!(frame, v.row("transport-bob-1"));
    frame.clear();
    a.seal_end(&mut frame).unwrap();
    assert_eq!(frame, v.row("transport-alice-2"));
    assert_eq!(
        a.seal_frame(b"more", &mut frame),
        Err(E2eeError::WriteAfterEnd)
    );

    let mut body = v.row("transport-alice-1")[2..].to_vec();
    assert_eq!(b.open_in_place(&mut body).unwrap(), Opened::Data(9));
    assert_eq!(&body[..9], b"hello bob");
    let mut body = v.row("transport-bob-1")[2..].to_vec();
    assert_eq!(a.open_in_place(&mut body).unwrap(), Opened::Data(8));
    assert_eq!(&body[..8], b"hi alice");
    let mut body = v.row("transport-alice-2")[2..].to_vec();
    assert_eq!(b.open_in_place(&mut body).unwrap(), Opened::End);
    assert!(b.is_end_received());
    // Nothing may follow the end.
    let mut body = v.row("transport-alice-1")[2..].to_vec();
    assert_eq!(b.open_in_place(&mut body), Err(E2eeError::DataAfterEnd));
}

#[test]
fn in_place_sealing_gives_the_same_frames() {
    let v = Vectors::load();
    let (mut a, _) = v.transports();
    let mut frame = [&[0u8; 2][..], b"hello bob", &[0; 16]].concat();
    a.seal_in_place(&mut frame).unwrap();
    assert_eq!(frame, v.row("transport-alice-1"));
}

#[test]
fn a_lie_about_from_makes_message_2_undecryptable() {
    let v = Vectors::load();
    // bob was told the dialer is the key of seed 0x41..0x60.
    let seed: [u8; 32] = std::array::from_fn(|i| 0x41 + i as u8);
    let claimed = Identity::from_secret_bytes(seed).designator();
    let mut bob = Handshake::responder_with_ephemeral(
        v.bob.clone(),
        claimed,
        key(&v.rows, "bob-x25519-ephemeral"),
    );
    bob.read(v.row("message-1")).unwrap();
    assert_eq!(bob.pending_output(), v.row("message-2-from-lied-about"));

    let mut alice = v.alice_initiator();
    assert_eq!(
        alice.read(v.row("message-2-from-lied-about")),
        Err(E2eeError::DecryptFailed(FrameKind::Message2))
    );
    // The failure is final.
    assert_eq!(
        alice.read(v.row("message-2")),
        Err(E2eeError::DecryptFailed(FrameKind::Message2))
    );
    assert!(!alice.is_finished());
    assert!(alice.finish().is_err());
}

#[test]
fn a_lie_about_to_makes_message_2_undecryptable() {
    let v = Vectors::load();
    // alice dials carol, but the server hands the socket to bob, who is
    // told alice dialed him: the prologues differ.
    let carol = Identity::from_secret_bytes([0x61; 32]).designator();
    let mut alice = Handshake::initiator_with_ephemeral(
        v.alice.clone(),
        carol,
        key(&v.rows, "alice-x25519-ephemeral"),
    );
    let mut bob = v.bob_responder();
    let m1 = alice.pending_output().to_vec();
    assert_eq!(m1, v.row("message-1"));
    bob.read(&m1).unwrap();
    let m2 = bob.pending_output().to_vec();
    assert_eq!(
        alice.read(&m2),
        Err(E2eeError::DecryptFailed(FrameKind::Message2))
    );
}

#[test]
fn the_local_static_is_shared_across_handshakes() {
    let v = Vectors::load();
    let shared: Arc<LocalStatic> = v.bob.clone();
    let mut hashes = Vec::new();
    for _ in 0..3 {
        let mut a = Handshake::initiator(v.alice.clone(), v.bob_id.designator());
        let mut b = Handshake::responder(shared.clone(), v.alice_id.designator());
        common::drive(&mut a, &mut b);
        let (_, ai) = a.finish().unwrap();
        let (_, bi) = b.finish().unwrap();
        assert_eq!(ai.handshake_hash, bi.handshake_hash);
        assert_eq!(ai.peer_static_key, shared.public_key());
        hashes.push(ai.handshake_hash);
    }
    // Fresh ephemerals: every connection has its own channel binding.
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 3);
}
