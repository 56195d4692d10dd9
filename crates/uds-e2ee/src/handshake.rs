//! The handshake bound to designator keys, as a sans-I/O state machine.

use std::fmt;
use std::sync::Arc;

use uds_syrup::Designator;

use crate::error::{E2eeError, FrameKind};
use crate::frame::{FrameReader, HEADER_LEN, header};
use crate::identity::{IdentityRecord, LocalStatic};
use crate::noise::{HASH_LEN, HandshakeState};
use crate::transport::Transport;

/// The protocol label that starts the prologue.
pub const PROLOGUE_LABEL: &[u8] = b"ocapn-uds-e2ee/1";

/// Length of the prologue: the label, a 0x00 byte and two 32-byte keys.
pub const PROLOGUE_LEN: usize = PROLOGUE_LABEL.len() + 1 + 32 + 32;

/// The prologue both sides mix into the handshake: ASCII `ocapn-uds-e2ee/1`,
/// one 0x00 byte, the initiator's (dialer's) designator key, the
/// responder's designator key. If the introduction server told the two
/// sides different stories about who dialed whom, the prologues differ and
/// message 2 fails to decrypt.
///
/// ```
/// use uds_syrup::Designator;
/// let a = Designator::from_key_bytes([1; 32]);
/// let b = Designator::from_key_bytes([2; 32]);
/// let p = uds_e2ee::prologue(&a, &b);
/// assert_eq!(&p[..17], b"ocapn-uds-e2ee/1\0");
/// assert_eq!(&p[17..49], &[1; 32]);
/// assert_eq!(&p[49..], &[2; 32]);
/// ```
pub fn prologue(initiator: &Designator, responder: &Designator) -> [u8; PROLOGUE_LEN] {
    let mut p = [0u8; PROLOGUE_LEN];
    let n = PROLOGUE_LABEL.len();
    p[..n].copy_from_slice(PROLOGUE_LABEL);
    p[n + 1..n + 33].copy_from_slice(initiator.key_bytes());
    p[n + 33..].copy_from_slice(responder.key_bytes());
    p
}

/// What a completed handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeInfo {
    /// The Noise handshake hash after message 3: the same on both ends,
    /// unique to this connection; a channel binding for the layer above.
    pub handshake_hash: [u8; HASH_LEN],
    /// The peer's designator, proven by its signature over the static key
    /// this handshake used (always the one that was required).
    pub peer: Designator,
    /// The peer's X25519 static key for this netlayer instance.
    pub peer_static_key: [u8; 32],
    /// Whether this side was the initiator (the dialer).
    pub initiator: bool,
}

/// Where a handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for this message from the peer.
    Awaiting(FrameKind),
    /// Every message was read and written.
    Done,
}

/// The e2ee handshake of one connection, for either role, driven by bytes
/// in and bytes out; no I/O, no clock (apply timeouts around it).
///
/// The dialer is the initiator ([`Handshake::initiator`]), the accepting
/// side the responder ([`Handshake::responder`]). Drive it with a loop:
///
/// 1. send [`pending_output`](Self::pending_output), then report it with
///    [`output_sent`](Self::output_sent);
/// 2. if [`is_finished`](Self::is_finished), call
///    [`finish`](Self::finish);
/// 3. otherwise read up to [`wanted`](Self::wanted) bytes from the peer and
///    hand them to [`read`](Self::read) (it never takes more than the
///    handshake needs, so reading at most `wanted` bytes leaves the
///    transport frames in the socket), and go to 1.
///
/// The initiator requires the responder's proven identity to be the
/// designator it dialed; the responder requires the initiator's to be the
/// `from` designator the introduction server delivered. Any failure ends
/// the handshake: every later call returns the same error.
///
/// ```
/// use std::sync::Arc;
/// use uds_e2ee::{Handshake, LocalStatic};
/// use uds_handshake::Identity;
///
/// let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
/// let alice = Arc::new(LocalStatic::generate(&alice_id));
/// let bob = Arc::new(LocalStatic::generate(&bob_id));
/// let mut dialer = Handshake::initiator(alice, bob_id.designator());
/// let mut acceptor = Handshake::responder(bob, alice_id.designator());
/// // Hand the bytes across until both are done (a socket in real life).
/// while !(dialer.is_finished() && acceptor.is_finished()) {
///     let out = dialer.pending_output().to_vec();
///     dialer.output_sent(out.len());
///     assert_eq!(acceptor.read(&out)?, out.len());
///     let out = acceptor.pending_output().to_vec();
///     acceptor.output_sent(out.len());
///     assert_eq!(dialer.read(&out)?, out.len());
/// }
/// let (mut a, a_info) = dialer.finish()?;
/// let (mut b, b_info) = acceptor.finish()?;
/// assert_eq!(a_info.peer, bob_id.designator());
/// assert_eq!(b_info.peer, alice_id.designator());
/// assert_eq!(a_info.handshake_hash, b_info.handshake_hash);
///
/// let mut frame = Vec::new();
/// a.seal_frame(b"hello", &mut frame)?;
/// let mut body = frame[2..].to_vec();
/// assert_eq!(b.open_in_place(&mut body)?, uds_e2ee::Opened::Data(5));
/// assert_eq!(&body[..5], b"hello");
/// # Ok::<(), uds_e2ee::E2eeError>(())
/// ```
pub struct Handshake {
    noise: HandshakeState,
    local: Arc<LocalStatic>,
    expected_peer: Designator,
    reader: FrameReader,
    step: Step,
    output: Vec<u8>,
    output_sent: usize,
    peer_proven: Option<Designator>,
    failed: Option<E2eeError>,
}

impl Handshake {
    /// The dialer's side: connecting to `responder` (the `to` designator).
    /// Message 1 is ready in [`pending_output`](Self::pending_output).
    pub fn initiator(local: Arc<LocalStatic>, responder: Designator) -> Handshake {
        Handshake::start(local, responder, true, None)
    }

    /// The accepting side, for a connection the introduction server said
    /// comes from `initiator` (the `from` designator).
    pub fn responder(local: Arc<LocalStatic>, initiator: Designator) -> Handshake {
        Handshake::start(local, initiator, false, None)
    }

    /// [`Handshake::initiator`] with a fixed ephemeral X25519 private key.
    /// **For tests and test vectors only**: reusing an ephemeral key across
    /// connections destroys their security.
    pub fn initiator_with_ephemeral(
        local: Arc<LocalStatic>,
        responder: Designator,
        ephemeral_secret: [u8; 32],
    ) -> Handshake {
        Handshake::start(local, responder, true, Some(ephemeral_secret))
    }

    /// [`Handshake::responder`] with a fixed ephemeral X25519 private key.
    /// **For tests and test vectors only**: reusing an ephemeral key across
    /// connections destroys their security.
    pub fn responder_with_ephemeral(
        local: Arc<LocalStatic>,
        initiator: Designator,
        ephemeral_secret: [u8; 32],
    ) -> Handshake {
        Handshake::start(local, initiator, false, Some(ephemeral_secret))
    }

    fn start(
        local: Arc<LocalStatic>,
        peer: Designator,
        initiator: bool,
        ephemeral: Option<[u8; 32]>,
    ) -> Handshake {
        let ours = local.designator();
        let prologue = if initiator {
            prologue(&ours, &peer)
        } else {
            prologue(&peer, &ours)
        };
        let noise =
            HandshakeState::with_secret(initiator, &prologue, local.secret().clone(), ephemeral);
        let first = if initiator {
            FrameKind::Message2
        } else {
            FrameKind::Message1
        };
        let mut hs = Handshake {
            noise,
            local,
            expected_peer: peer,
            reader: FrameReader::new(first),
            step: Step::Awaiting(first),
            output: Vec::new(),
            output_sent: 0,
            peer_proven: None,
            failed: None,
        };
        if initiator {
            // Message 1: the ephemeral key, empty payload. Cannot fail: the
            // state is fresh and the message is 32 bytes.
            if let Err(e) = hs.write(&[]) {
                hs.failed = Some(e);
            }
        }
        hs
    }

    /// Whether this is the initiator (dialer).
    pub fn is_initiator(&self) -> bool {
        self.noise.is_initiator()
    }

    /// The designator the peer must prove.
    pub fn expected_peer(&self) -> Designator {
        self.expected_peer
    }

    /// Bytes to send to the peer now (framed handshake messages); empty
    /// when there is nothing to send.
    pub fn pending_output(&self) -> &[u8] {
        &self.output[self.output_sent..]
    }

    /// Reports that the first `n` bytes of
    /// [`pending_output`](Self::pending_output) were sent.
    pub fn output_sent(&mut self, n: usize) {
        self.output_sent = (self.output_sent + n).min(self.output.len());
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
        }
    }

    /// How many bytes the handshake still needs from the peer for the
    /// message it waits for (0 when it waits for none). Reading at most
    /// this many never reads past the handshake.
    pub fn wanted(&self) -> usize {
        match (self.step, &self.failed) {
            (Step::Awaiting(_), None) => self.reader.needed(),
            _ => 0,
        }
    }

    /// The message the handshake waits for, if any (for example to report
    /// [`E2eeError::Truncated`] when the stream ends).
    pub fn awaiting(&self) -> Option<FrameKind> {
        match self.step {
            Step::Awaiting(kind) => Some(kind),
            Step::Done => None,
        }
    }

    /// Whether the handshake completed: the peer's identity is proven and
    /// every message of ours is in the output (send it before
    /// [`finish`](Self::finish)).
    pub fn is_finished(&self) -> bool {
        self.step == Step::Done && self.failed.is_none()
    }

    /// The designator the peer proved, once it did.
    pub fn peer(&self) -> Option<Designator> {
        self.peer_proven
    }

    /// Takes bytes received from the peer; returns how many were used. It
    /// stops at the end of the handshake's last message, so the bytes after
    /// it (transport frames) are left to the caller. Processing a complete
    /// message may queue output (message 2 or 3).
    ///
    /// Errors: [`E2eeError::NotE2ee`] (the stream does not start with
    /// 0x00), [`E2eeError::WrongLength`], [`E2eeError::DecryptFailed`] (also
    /// what a lying introduction server causes), [`E2eeError::LowOrderKey`],
    /// [`E2eeError::MalformedIdentity`], [`E2eeError::InvalidIdentityKey`],
    /// [`E2eeError::BadSignature`], [`E2eeError::WrongIdentity`].
    pub fn read(&mut self, input: &[u8]) -> Result<usize, E2eeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut used = 0;
        while let Step::Awaiting(kind) = self.step {
            let n = self.reader.push(&input[used..]).map_err(|e| self.fail(e))?;
            used += n;
            // The reader holds at most one small message here: copy it out
            // of the reader, which processing it reconfigures.
            let message = match self.reader.next_frame() {
                Ok(Some(body)) => body.to_vec(),
                Ok(None) => break,
                Err(e) => return Err(self.fail(e)),
            };
            self.process(kind, &message).map_err(|e| self.fail(e))?;
        }
        Ok(used)
    }

    fn fail(&mut self, e: E2eeError) -> E2eeError {
        self.failed = Some(e.clone());
        e
    }

    fn process(&mut self, kind: FrameKind, message: &[u8]) -> Result<(), E2eeError> {
        let mut payload = Vec::new();
        self.noise.read_message(message, &mut payload)?;
        match kind {
            FrameKind::Message1 => {
                // The payload is empty: message 1 is exactly 32 bytes.
                let record = *self.local.identity_record();
                self.write(&record)?;
                self.await_message(FrameKind::Message3);
            }
            FrameKind::Message2 => {
                self.check_identity(&payload)?;
                let record = *self.local.identity_record();
                self.write(&record)?;
                self.step = Step::Done;
            }
            _ => {
                self.check_identity(&payload)?;
                self.step = Step::Done;
            }
        }
        Ok(())
    }

    fn await_message(&mut self, kind: FrameKind) {
        self.step = Step::Awaiting(kind);
        self.reader.set_kind(kind);
    }

    /// The peer's identity record: the required designator, signing the
    /// static key this handshake delivered. The signature is checked first,
    /// so that [`E2eeError::WrongIdentity`] names only an identity the peer
    /// proved (a forged record naming a bystander is a bad signature).
    fn check_identity(&mut self, payload: &[u8]) -> Result<(), E2eeError> {
        let record = IdentityRecord::decode(payload)?;
        let rs = self
            .noise
            .remote_static()
            .ok_or(E2eeError::Misuse("no remote static key after its message"))?;
        let found = record.verify(&rs)?;
        if found != self.expected_peer {
            return Err(E2eeError::WrongIdentity {
                expected: self.expected_peer,
                found,
            });
        }
        self.peer_proven = Some(found);
        Ok(())
    }

    fn write(&mut self, payload: &[u8]) -> Result<(), E2eeError> {
        let start = self.output.len();
        self.output.extend_from_slice(&[0; HEADER_LEN]);
        if let Err(e) = self.noise.write_message(payload, &mut self.output) {
            // Nothing of a message that failed stays queued to send.
            self.output.truncate(start);
            return Err(e);
        }
        let h = header(self.output.len() - start - HEADER_LEN)?;
        self.output[start..start + HEADER_LEN].copy_from_slice(&h);
        Ok(())
    }

    /// The transport state and what the handshake established. Call it
    /// once [`is_finished`](Self::is_finished) and the output was sent;
    /// before that it fails with [`E2eeError::Misuse`] (or the error that
    /// ended the handshake).
    pub fn finish(self) -> Result<(Transport, HandshakeInfo), E2eeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.step != Step::Done {
            return Err(E2eeError::Misuse(
                "finishing a handshake that is not complete",
            ));
        }
        if !self.pending_output().is_empty() {
            return Err(E2eeError::Misuse(
                "finishing a handshake whose last message was not sent",
            ));
        }
        let peer = self
            .peer_proven
            .ok_or(E2eeError::Misuse("no proven peer after the handshake"))?;
        let info = HandshakeInfo {
            handshake_hash: self.noise.handshake_hash(),
            peer,
            peer_static_key: self.noise.remote_static().ok_or(E2eeError::Misuse(
                "no remote static key after the handshake",
            ))?,
            initiator: self.noise.is_initiator(),
        };
        let (send, recv) = self.noise.split()?;
        Ok((Transport::new(send, recv), info))
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.noise.is_initiator())
            .field("local", &self.local)
            .field("expected_peer", &self.expected_peer)
            .field("step", &self.step)
            .field("pending_output", &self.pending_output().len())
            .field("failed", &self.failed)
            .finish()
    }
}
