//! The code paths the `e2ee_frames` and `e2ee_responder` fuzz targets
//! drive, shared with the tests that replay the committed corpora. Not part
//! of the stable API: it may change or go away in any release.
//!
//! Both use the session of the crate's test vectors (`tests/vectors/
//! e2ee.tsv`): alice (initiator) and bob (responder) with fixed identities,
//! static and ephemeral keys, so that a seed made of the vectors' messages
//! and frames reaches the deepest paths, and mutations of it explore the
//! checks around them.

use std::sync::{Arc, OnceLock};

use uds_handshake::Identity;
use uds_syrup::Designator;

use crate::error::{E2eeError, FrameKind};
use crate::frame::FrameReader;
use crate::handshake::Handshake;
use crate::identity::LocalStatic;
use crate::transport::{Opened, Transport};

/// alice's Ed25519 seed in the vectors.
pub const ALICE_SEED: [u8; 32] = seq(0x01);
/// bob's Ed25519 seed in the vectors.
pub const BOB_SEED: [u8; 32] = seq(0x21);
/// alice's X25519 static private key in the vectors.
pub const ALICE_STATIC: [u8; 32] =
    unhex("ce2963fa7abfabe90f3fea9fe059293a45c01551968150f68c52f00a4f878a4f");
/// alice's X25519 ephemeral private key in the vectors.
pub const ALICE_EPHEMERAL: [u8; 32] =
    unhex("cabbe53678a389d53555a8ecc3894ab4dc020ac123802ef632ab514f9051ec0e");
/// bob's X25519 static private key in the vectors.
pub const BOB_STATIC: [u8; 32] =
    unhex("8937a91cb8e0f9ba1227cf3c3c971f4437603dcb91195861b770d5f42faa6a44");
/// bob's X25519 ephemeral private key in the vectors.
pub const BOB_EPHEMERAL: [u8; 32] =
    unhex("11746162032332686390e166d97f14c1a09940b564c7081d3e88e949b3ea24e7");

/// 32 consecutive byte values from `first`.
const fn seq(first: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = first + i as u8;
        i += 1;
    }
    out
}

/// 64 hex digits to 32 bytes, at compile time.
const fn unhex(s: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(s[2 * i]) << 4 | digit(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// The vectors' two sides.
struct Session {
    alice: Arc<LocalStatic>,
    bob: Arc<LocalStatic>,
    /// bob's transport after the vectors' handshake.
    bob_transport: Transport,
}

fn session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let alice_id = Identity::from_secret_bytes(ALICE_SEED);
        let bob_id = Identity::from_secret_bytes(BOB_SEED);
        let alice = Arc::new(LocalStatic::from_secret_bytes(&alice_id, ALICE_STATIC));
        let bob = Arc::new(LocalStatic::from_secret_bytes(&bob_id, BOB_STATIC));
        let mut a = Handshake::initiator_with_ephemeral(
            alice.clone(),
            bob_id.designator(),
            ALICE_EPHEMERAL,
        );
        let mut b =
            Handshake::responder_with_ephemeral(bob.clone(), alice_id.designator(), BOB_EPHEMERAL);
        while !(a.is_finished() && b.is_finished()) {
            let out = a.pending_output().to_vec();
            a.output_sent(out.len());
            b.read(&out).expect("the vectors' handshake completes");
            let out = b.pending_output().to_vec();
            b.output_sent(out.len());
            a.read(&out).expect("the vectors' handshake completes");
        }
        let (bob_transport, _) = b.finish().expect("the vectors' handshake completes");
        Session {
            alice,
            bob,
            bob_transport,
        }
    })
}

/// alice's designator in the vectors.
pub fn alice() -> Designator {
    session().alice.designator()
}

/// bob's designator in the vectors.
pub fn bob() -> Designator {
    session().bob.designator()
}

/// What one run did, so tests can check that the corpus reaches the paths
/// it is meant to reach.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether bob's handshake completed (responder driver only).
    pub handshake_done: bool,
    /// Bytes of handshake output bob produced (message 2: 316).
    pub handshake_output: usize,
    /// Transport frames that decrypted as data.
    pub frames: usize,
    /// Their plaintext, in order.
    pub plaintext: Vec<u8>,
    /// Whether alice's authenticated end of data arrived.
    pub ended: bool,
    /// Whether the input stopped in the middle of a frame or message.
    pub mid_frame: bool,
    /// The error that ended the run, if any.
    pub error: Option<E2eeError>,
}

/// Read sizes: byte 0 of the input; 0 means everything at once.
fn chunk_size(data: &[u8]) -> usize {
    match data.first() {
        Some(0) | None => usize::MAX,
        Some(&n) => n as usize,
    }
}

/// Feeds transport bytes into `reader` and opens complete frames. Odd read
/// sizes go through `push`, even ones straight into `spare`.
fn feed_transport(
    reader: &mut FrameReader,
    transport: &mut Transport,
    input: &[u8],
    via_push: bool,
    outcome: &mut Outcome,
) -> Result<(), E2eeError> {
    let mut fed = 0;
    while fed < input.len() {
        if via_push {
            fed += reader.push(&input[fed..])?;
        } else {
            let spare = reader.spare()?;
            let n = spare.len().min(input.len() - fed);
            spare[..n].copy_from_slice(&input[fed..fed + n]);
            reader.filled(n);
            fed += n;
        }
        while let Some(body) = reader.next_frame()? {
            match transport.open_in_place(body)? {
                Opened::Data(n) => {
                    outcome.frames += 1;
                    outcome.plaintext.extend_from_slice(&body[..n]);
                }
                Opened::End => outcome.ended = true,
            }
        }
    }
    Ok(())
}

/// Runs `data` as the transport frames alice sends bob after the vectors'
/// handshake, through a [`FrameReader`] into bob's [`Transport`]. Byte 0
/// is the size of each read (0: all at once), the rest is the stream.
/// Never panics.
pub fn frames(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    let step = chunk_size(data);
    let stream = data.get(1..).unwrap_or_default();
    let mut transport = session().bob_transport.duplicate();
    let mut reader = FrameReader::new(FrameKind::Transport);
    let via_push = step % 2 == 1;
    for chunk in stream.chunks(step.min(stream.len().max(1))) {
        if let Err(e) = feed_transport(&mut reader, &mut transport, chunk, via_push, &mut outcome) {
            outcome.error = Some(e);
            return outcome;
        }
    }
    outcome.mid_frame = reader.is_mid_frame();
    outcome
}

/// Runs `data` as what alice sends bob: message 1, message 3, then
/// transport frames, into bob's responder handshake (fixed ephemeral key,
/// expecting alice) and then his transport, like [`frames`]. Byte 0 is the
/// size of each read (0: all at once). Never panics.
pub fn responder(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    let step = chunk_size(data);
    let stream = data.get(1..).unwrap_or_default();
    let s = session();
    let mut hs = Handshake::responder_with_ephemeral(s.bob.clone(), alice(), BOB_EPHEMERAL);
    let mut rest = stream;
    while !hs.is_finished() && !rest.is_empty() {
        let n = step.min(rest.len());
        let result = hs.read(&rest[..n]);
        let out = hs.pending_output().len();
        outcome.handshake_output += out;
        hs.output_sent(out);
        let used = match result {
            Ok(used) => used,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        };
        rest = &rest[used..];
    }
    if !hs.is_finished() {
        outcome.mid_frame = true;
        return outcome;
    }
    outcome.handshake_done = true;
    let mut transport = match hs.finish() {
        Ok((transport, _)) => transport,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    let mut reader = FrameReader::new(FrameKind::Transport);
    for chunk in rest.chunks(step.min(rest.len().max(1))) {
        if let Err(e) = feed_transport(
            &mut reader,
            &mut transport,
            chunk,
            step % 2 == 1,
            &mut outcome,
        ) {
            outcome.error = Some(e);
            return outcome;
        }
    }
    outcome.mid_frame = reader.is_mid_frame();
    outcome
}
