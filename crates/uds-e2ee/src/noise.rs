//! The raw `Noise_XX_25519_ChaChaPoly_BLAKE2s` handshake, without the
//! designator binding: any prologue, any payloads, no framing.
//!
//! This is the Noise Protocol Framework (revision 34) for exactly one
//! protocol name, written from the specification: a `CipherState` with a
//! 64-bit nonce counting from 0, a `SymmetricState` with `MixHash`, `MixKey`
//! and HKDF over HMAC-BLAKE2s, and the `XX` pattern
//!
//! ```text
//!   -> e
//!   <- e, ee, s, es
//!   -> s, se
//! ```
//!
//! [`Handshake`](crate::Handshake) builds the designator-bound channel on
//! top of this module; use this module directly only to interoperate with
//! other Noise implementations (the crate's tests check it against the
//! official test vectors and against the `snow` crate).
//!
//! ```
//! use uds_e2ee::noise::HandshakeState;
//!
//! let mut alice = HandshakeState::new(true, b"prologue", [1; 32], None);
//! let mut bob = HandshakeState::new(false, b"prologue", [2; 32], None);
//! let (mut m1, mut m2, mut m3, mut got) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
//! alice.write_message(b"", &mut m1)?;
//! bob.read_message(&m1, &mut got)?;
//! bob.write_message(b"from bob, ", &mut m2)?;
//! alice.read_message(&m2, &mut got)?;
//! alice.write_message(b"from alice", &mut m3)?;
//! bob.read_message(&m3, &mut got)?;
//! assert_eq!(got, b"from bob, from alice");
//! assert_eq!(alice.handshake_hash(), bob.handshake_hash());
//!
//! let (mut alice_send, _) = alice.split()?;
//! let (_, mut bob_receive) = bob.split()?;
//! let mut data = *b"transport";
//! let tag = alice_send.encrypt_in_place(&[], &mut data)?;
//! bob_receive.decrypt_in_place(&[], &mut data, &tag)?;
//! assert_eq!(&data, b"transport");
//! # Ok::<(), uds_e2ee::E2eeError>(())
//! ```

use std::fmt;

use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use hmac::{Mac, SimpleHmac};
use x25519_dalek::{PublicKey as X25519Public, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::error::{E2eeError, FrameKind};

/// The protocol name, hashed into the initial handshake state.
pub const PROTOCOL_NAME: &[u8] = b"Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Length of an X25519 public key or DH result.
pub const DH_LEN: usize = 32;
/// Length of a BLAKE2s hash (and of the handshake hash).
pub const HASH_LEN: usize = 32;
/// Length of a ChaCha20-Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// The longest Noise message (the spec's limit).
pub const MAX_MESSAGE_LEN: usize = 65535;

type HmacBlake2s = SimpleHmac<Blake2s256>;

fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> Zeroizing<[u8; HASH_LEN]> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <HmacBlake2s as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// `HKDF(chaining_key, input_key_material, 2)` of the spec.
#[allow(clippy::type_complexity)]
fn hkdf2(
    ck: &[u8; HASH_LEN],
    ikm: &[u8],
) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
    let temp = hmac(ck, &[ikm]);
    let out1 = hmac(&temp, &[&[1]]);
    let out2 = hmac(&temp, &[out1.as_slice(), &[2]]);
    (out1, out2)
}

/// One direction's cipher: ChaCha20-Poly1305 with a key and a nonce that
/// counts from 0. The key is zeroized when the state is dropped.
///
/// Nonces never repeat: after 2^64 - 1 uses (the last value is reserved by
/// the spec) every call fails with [`E2eeError::NonceExhausted`].
pub struct CipherState {
    cipher: Option<ChaCha20Poly1305>,
    n: u64,
}

impl CipherState {
    fn empty() -> CipherState {
        CipherState { cipher: None, n: 0 }
    }

    fn new(key: &[u8; 32]) -> CipherState {
        CipherState {
            cipher: Some(ChaCha20Poly1305::new(Key::from_slice(key))),
            n: 0,
        }
    }

    fn has_key(&self) -> bool {
        self.cipher.is_some()
    }

    /// A copy with the same key and nonce, for the fuzzing drivers (which
    /// start every run from one established session). Never used to send:
    /// two copies sending would reuse nonces.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn duplicate(&self) -> CipherState {
        CipherState {
            cipher: self.cipher.clone(),
            n: self.n,
        }
    }

    /// The nonce the next call will use (how many messages this state has
    /// encrypted or decrypted).
    pub fn nonce(&self) -> u64 {
        self.n
    }

    /// For tests of nonce exhaustion only: jump the counter.
    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, n: u64) {
        self.n = n;
    }

    fn next_nonce(&self) -> Result<Nonce, E2eeError> {
        if self.n == u64::MAX {
            return Err(E2eeError::NonceExhausted);
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.n.to_le_bytes());
        Ok(nonce.into())
    }

    /// `EncryptWithAd(ad, buf)`: encrypts `buf` in place and returns the
    /// tag that follows it on the wire.
    pub fn encrypt_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], E2eeError> {
        let nonce = self.next_nonce()?;
        let cipher = self
            .cipher
            .as_ref()
            .ok_or(E2eeError::Misuse("encrypting before a key was set"))?;
        let tag = cipher
            .encrypt_in_place_detached(&nonce, ad, buf)
            .map_err(|_| E2eeError::FrameTooLong {
                found: buf.len(),
                max: MAX_MESSAGE_LEN,
            })?;
        self.n += 1;
        Ok(tag.into())
    }

    /// `DecryptWithAd(ad, buf || tag)`: checks `tag` and only then decrypts
    /// `buf` in place. On failure `buf` is left as it was and the error is
    /// [`E2eeError::DecryptFailed`] (of a transport frame).
    pub fn decrypt_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), E2eeError> {
        self.decrypt_as(ad, buf, tag, FrameKind::Transport)
    }

    fn decrypt_as(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        kind: FrameKind,
    ) -> Result<(), E2eeError> {
        let nonce = self.next_nonce()?;
        let cipher = self
            .cipher
            .as_ref()
            .ok_or(E2eeError::Misuse("decrypting before a key was set"))?;
        cipher
            .decrypt_in_place_detached(&nonce, ad, buf, Tag::from_slice(tag))
            .map_err(|_| E2eeError::DecryptFailed(kind))?;
        self.n += 1;
        Ok(())
    }
}

impl fmt::Debug for CipherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CipherState")
            .field("has_key", &self.has_key())
            .field("nonce", &self.n)
            .finish()
    }
}

/// The spec's `SymmetricState`.
struct SymmetricState {
    ck: Zeroizing<[u8; HASH_LEN]>,
    h: [u8; HASH_LEN],
    cs: CipherState,
}

impl SymmetricState {
    fn new(protocol_name: &[u8]) -> SymmetricState {
        let h = if protocol_name.len() <= HASH_LEN {
            let mut h = [0u8; HASH_LEN];
            h[..protocol_name.len()].copy_from_slice(protocol_name);
            h
        } else {
            hash(&[protocol_name])
        };
        SymmetricState {
            ck: Zeroizing::new(h),
            h,
            cs: CipherState::empty(),
        }
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.cs = CipherState::new(&k);
    }

    /// Appends `EncryptAndHash(plaintext)` to `out`.
    fn encrypt_and_hash(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), E2eeError> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        if self.cs.has_key() {
            let tag = self.cs.encrypt_in_place(&self.h, &mut out[start..])?;
            out.extend_from_slice(&tag);
        }
        self.mix_hash(&out[start..]);
        Ok(())
    }

    /// `DecryptAndHash(ciphertext)` into `out`, which must be exactly as
    /// long as the plaintext (`ciphertext` minus the tag once there is a
    /// key).
    fn decrypt_and_hash(
        &mut self,
        ciphertext: &[u8],
        out: &mut [u8],
        kind: FrameKind,
    ) -> Result<(), E2eeError> {
        if self.cs.has_key() {
            let (body, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
            out.copy_from_slice(body);
            let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| E2eeError::DecryptFailed(kind))?;
            self.cs.decrypt_as(&self.h, out, tag, kind)?;
        } else {
            out.copy_from_slice(ciphertext);
        }
        self.mix_hash(ciphertext);
        Ok(())
    }

    fn overhead(&self) -> usize {
        if self.cs.has_key() { TAG_LEN } else { 0 }
    }

    fn split(&self) -> (CipherState, CipherState) {
        let (k1, k2) = hkdf2(&self.ck, &[]);
        (CipherState::new(&k1), CipherState::new(&k2))
    }
}

/// A DH whose result must not be all zeros (a low-order point).
fn dh(secret: &StaticSecret, public: &[u8; DH_LEN]) -> Result<SharedSecret, E2eeError> {
    let shared = secret.diffie_hellman(&X25519Public::from(*public));
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(E2eeError::LowOrderKey)
    }
}

/// A `Noise_XX_25519_ChaChaPoly_BLAKE2s` handshake in progress, for one
/// role.
///
/// Messages alternate, starting with the initiator's:
/// [`write_message`](Self::write_message) when it is this side's turn,
/// [`read_message`](Self::read_message) otherwise; after three messages
/// [`split`](Self::split) gives the transport ciphers. The static and
/// ephemeral secrets and the chaining key are zeroized when the state is
/// dropped. After any error the state refuses further use.
pub struct HandshakeState {
    initiator: bool,
    symmetric: SymmetricState,
    s: StaticSecret,
    s_pub: [u8; DH_LEN],
    e: StaticSecret,
    e_pub: [u8; DH_LEN],
    re: [u8; DH_LEN],
    rs: Option<[u8; DH_LEN]>,
    /// Index of the next message (0, 1, 2; 3 once finished).
    next: usize,
    failed: bool,
}

impl HandshakeState {
    /// A handshake for the initiator (`initiator = true`) or the responder,
    /// with `prologue` mixed in first and the X25519 private key
    /// `static_secret` as the static key.
    ///
    /// `ephemeral` fixes the ephemeral private key **for tests and test
    /// vectors only**: a reused ephemeral key destroys the handshake's
    /// security. Pass `None` to draw a fresh one from the operating system.
    pub fn new(
        initiator: bool,
        prologue: &[u8],
        static_secret: [u8; 32],
        ephemeral: Option<[u8; 32]>,
    ) -> HandshakeState {
        HandshakeState::with_secret(
            initiator,
            prologue,
            StaticSecret::from(static_secret),
            ephemeral,
        )
    }

    /// [`HandshakeState::new`] with the static key already a
    /// [`StaticSecret`] (shared by the designator-bound handshakes).
    pub(crate) fn with_secret(
        initiator: bool,
        prologue: &[u8],
        s: StaticSecret,
        ephemeral: Option<[u8; 32]>,
    ) -> HandshakeState {
        let mut symmetric = SymmetricState::new(PROTOCOL_NAME);
        symmetric.mix_hash(prologue);
        // XX has no pre-messages.
        let e = match ephemeral {
            Some(bytes) => StaticSecret::from(bytes),
            None => StaticSecret::random_from_rng(rand_core::OsRng),
        };
        HandshakeState {
            initiator,
            symmetric,
            s_pub: X25519Public::from(&s).to_bytes(),
            s,
            e_pub: X25519Public::from(&e).to_bytes(),
            e,
            re: [0; DH_LEN],
            rs: None,
            next: 0,
            failed: false,
        }
    }

    /// Whether this is the initiator's state.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether the next message is this side's to write.
    pub fn is_my_turn(&self) -> bool {
        self.next < 3 && self.next.is_multiple_of(2) == self.initiator
    }

    /// Whether all three messages were written or read.
    pub fn is_finished(&self) -> bool {
        self.next == 3
    }

    /// The handshake hash `h` (after the last message: the channel binding
    /// both sides share).
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.symmetric.h
    }

    /// The peer's static X25519 key, once the message carrying it was read.
    pub fn remote_static(&self) -> Option<[u8; DH_LEN]> {
        self.rs
    }

    /// This side's static X25519 public key.
    pub fn local_static(&self) -> [u8; DH_LEN] {
        self.s_pub
    }

    /// The length of the message this side writes next, carrying a payload
    /// of `payload_len` bytes.
    fn message_len(&self, payload_len: usize) -> usize {
        let keys = match self.next {
            0 => DH_LEN,
            1 => DH_LEN + DH_LEN + TAG_LEN,
            _ => DH_LEN + TAG_LEN,
        };
        let payload_tag = if self.next == 0 { 0 } else { TAG_LEN };
        keys + payload_len + payload_tag
    }

    fn check(&self, writing: bool) -> Result<(), E2eeError> {
        if self.failed {
            return Err(E2eeError::Misuse("the handshake already failed"));
        }
        if self.is_finished() {
            return Err(E2eeError::Misuse("the handshake is already finished"));
        }
        if self.is_my_turn() != writing {
            return Err(E2eeError::Misuse(if writing {
                "writing a message when one should be read"
            } else {
                "reading a message when one should be written"
            }));
        }
        Ok(())
    }

    /// Writes the next message, carrying `payload`, by appending it to
    /// `out` (without any length prefix).
    pub fn write_message(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), E2eeError> {
        self.check(true)?;
        let len = self.message_len(payload.len());
        if len > MAX_MESSAGE_LEN {
            return Err(E2eeError::FrameTooLong {
                found: len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let start = out.len();
        out.reserve(len);
        let result = self.write_tokens(payload, out);
        if result.is_err() {
            out.truncate(start);
            self.failed = true;
        } else {
            self.next += 1;
        }
        result
    }

    fn write_tokens(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), E2eeError> {
        match self.next {
            0 => {
                // -> e
                out.extend_from_slice(&self.e_pub);
                self.symmetric.mix_hash(&self.e_pub);
            }
            1 => {
                // <- e, ee, s, es
                out.extend_from_slice(&self.e_pub);
                self.symmetric.mix_hash(&self.e_pub);
                self.symmetric.mix_key(dh(&self.e, &self.re)?.as_bytes());
                self.symmetric.encrypt_and_hash(&self.s_pub, out)?;
                self.symmetric.mix_key(dh(&self.s, &self.re)?.as_bytes());
            }
            _ => {
                // -> s, se
                self.symmetric.encrypt_and_hash(&self.s_pub, out)?;
                self.symmetric.mix_key(dh(&self.s, &self.re)?.as_bytes());
            }
        }
        self.symmetric.encrypt_and_hash(payload, out)
    }

    /// Reads the peer's next message and appends its decrypted payload to
    /// `payload`.
    pub fn read_message(&mut self, message: &[u8], payload: &mut Vec<u8>) -> Result<(), E2eeError> {
        self.check(false)?;
        let kind = FrameKind::message(self.next);
        let min = self.message_len(0);
        if message.len() < min {
            self.failed = true;
            return Err(E2eeError::TooShort {
                kind,
                found: message.len(),
                min,
            });
        }
        if message.len() > MAX_MESSAGE_LEN {
            self.failed = true;
            return Err(E2eeError::FrameTooLong {
                found: message.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let start = payload.len();
        let result = self.read_tokens(message, payload, kind);
        if result.is_err() {
            payload.truncate(start);
            self.failed = true;
        } else {
            self.next += 1;
        }
        result
    }

    fn read_tokens(
        &mut self,
        message: &[u8],
        payload: &mut Vec<u8>,
        kind: FrameKind,
    ) -> Result<(), E2eeError> {
        let mut rest = message;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        };
        match self.next {
            0 => {
                // -> e
                self.re.copy_from_slice(take(DH_LEN));
                self.symmetric.mix_hash(&self.re);
            }
            1 => {
                // <- e, ee, s, es
                self.re.copy_from_slice(take(DH_LEN));
                self.symmetric.mix_hash(&self.re);
                self.symmetric.mix_key(dh(&self.e, &self.re)?.as_bytes());
                let mut rs = [0u8; DH_LEN];
                self.symmetric
                    .decrypt_and_hash(take(DH_LEN + TAG_LEN), &mut rs, kind)?;
                self.symmetric.mix_key(dh(&self.e, &rs)?.as_bytes());
                self.rs = Some(rs);
            }
            _ => {
                // -> s, se
                let mut rs = [0u8; DH_LEN];
                self.symmetric
                    .decrypt_and_hash(take(DH_LEN + TAG_LEN), &mut rs, kind)?;
                self.symmetric.mix_key(dh(&self.e, &rs)?.as_bytes());
                self.rs = Some(rs);
            }
        }
        let start = payload.len();
        payload.resize(start + rest.len() - self.symmetric.overhead(), 0);
        self.symmetric
            .decrypt_and_hash(rest, &mut payload[start..], kind)
    }

    /// The transport ciphers once the handshake is finished: `(send,
    /// receive)` for this side (the spec's `Split()`, with the first cipher
    /// for initiator-to-responder traffic).
    pub fn split(self) -> Result<(CipherState, CipherState), E2eeError> {
        if self.failed {
            return Err(E2eeError::Misuse("the handshake already failed"));
        }
        if !self.is_finished() {
            return Err(E2eeError::Misuse("splitting before the handshake finished"));
        }
        let (c1, c2) = self.symmetric.split();
        Ok(if self.initiator { (c1, c2) } else { (c2, c1) })
    }
}

impl fmt::Debug for HandshakeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeState")
            .field("initiator", &self.initiator)
            .field("next_message", &self.next)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_name_is_hashed_because_it_is_longer_than_a_hash() {
        assert_eq!(PROTOCOL_NAME.len(), 33);
        let s = SymmetricState::new(PROTOCOL_NAME);
        assert_eq!(s.h, hash(&[PROTOCOL_NAME]));
        assert_eq!(*s.ck, s.h);
    }

    #[test]
    fn nonces_stop_before_the_reserved_value() {
        let mut c = CipherState::new(&[7; 32]);
        let mut d = CipherState::new(&[7; 32]);
        c.set_nonce(u64::MAX - 1);
        d.set_nonce(u64::MAX - 1);
        let mut buf = *b"last";
        let tag = c.encrypt_in_place(&[], &mut buf).unwrap();
        d.decrypt_in_place(&[], &mut buf, &tag).unwrap();
        assert_eq!(&buf, b"last");
        assert_eq!(c.nonce(), u64::MAX);
        assert_eq!(
            c.encrypt_in_place(&[], &mut buf),
            Err(E2eeError::NonceExhausted)
        );
        assert_eq!(
            d.decrypt_in_place(&[], &mut buf, &tag),
            Err(E2eeError::NonceExhausted)
        );
    }

    #[test]
    fn a_zero_public_key_is_a_low_order_point() {
        let s = StaticSecret::from([9; 32]);
        assert!(matches!(dh(&s, &[0; 32]), Err(E2eeError::LowOrderKey)));
        // u = 1 is another low-order point.
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(matches!(dh(&s, &one), Err(E2eeError::LowOrderKey)));
    }
}
