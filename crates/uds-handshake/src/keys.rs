//! The key and challenge rules, each in one place.

use ed25519_dalek::{Signature, VerifyingKey};
use uds_syrup::{Decoder, Limits, PublicKey, SigVal};

use crate::HandshakeError;

/// Shortest challenge accepted.
pub const MIN_CHALLENGE: usize = 16;
/// Longest challenge accepted.
pub const MAX_CHALLENGE: usize = 1024;
/// Length of the challenges this crate emits.
pub const CHALLENGE_LEN: usize = 64;
/// What an identity signs, followed by its 32-byte X25519 public key, to
/// bind that key to itself in the end-to-end encrypted mode (crate
/// `uds-e2ee`). [`check_challenge`] refuses challenges that start with it,
/// so an introduction server cannot obtain such a signature as the answer
/// to a registration challenge.
pub const E2EE_STATIC_KEY_CONTEXT: &[u8] = b"ocapn-uds-e2ee-static-key:";

/// The length of [`e2ee_static_key_statement`]: the context and a 32-byte
/// key.
pub const E2EE_STATIC_KEY_STATEMENT_LEN: usize = E2EE_STATIC_KEY_CONTEXT.len() + 32;

/// The statement an identity signs for an X25519 static key,
/// [`E2EE_STATIC_KEY_CONTEXT`] followed by the key: the one definition used
/// to sign it ([`Identity::sign_e2ee_static_key`](crate::Identity::sign_e2ee_static_key))
/// and to verify it (crate `uds-e2ee`).
///
/// ```
/// let m = uds_handshake::e2ee_static_key_statement(&[0xab; 32]);
/// assert!(m.starts_with(uds_handshake::E2EE_STATIC_KEY_CONTEXT));
/// assert_eq!(&m[26..], &[0xab; 32]);
/// ```
pub fn e2ee_static_key_statement(x25519_public: &[u8; 32]) -> [u8; E2EE_STATIC_KEY_STATEMENT_LEN] {
    let mut m = [0u8; E2EE_STATIC_KEY_STATEMENT_LEN];
    m[..E2EE_STATIC_KEY_CONTEXT.len()].copy_from_slice(E2EE_STATIC_KEY_CONTEXT);
    m[E2EE_STATIC_KEY_CONTEXT.len()..].copy_from_slice(x25519_public);
    m
}

/// The Ed25519 key `key` names, refusing encodings that are not points,
/// non-canonical encodings and weak (small-order) keys.
pub fn verifying_key(key: &PublicKey) -> Result<VerifyingKey, HandshakeError> {
    let d = key.designator();
    if !y_is_canonical(&key.0) {
        return Err(HandshakeError::NonCanonicalKey(d));
    }
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| HandshakeError::InvalidKey(d))?;
    // The other non-canonical encodings (x = 0 with the sign bit set) are
    // the two small-order points y = ±1, refused here as weak.
    if vk.is_weak() {
        return Err(HandshakeError::WeakKey(d));
    }
    Ok(vk)
}

/// Whether the y coordinate of an encoded point (the low 255 bits, little
/// endian) is below p = 2^255 - 19, i.e. written in its canonical form.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= p only if bits 8..255 are all ones and the low byte is >= 0xed.
    let top_all_ones = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    !(top_all_ones && bytes[0] >= 0xed)
}

/// Whether `sig` is a valid signature of `msg` by `key` (`verify_strict`:
/// no malleable or small-order signatures).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &SigVal) -> bool {
    key.verify_strict(msg, &Signature::from_bytes(&sig.0))
        .is_ok()
}

/// The rule for every challenge this crate will sign: 16 to 1024 bytes,
/// **not** a complete Syrup value, and not starting with
/// [`E2EE_STATIC_KEY_CONTEXT`]. Every payload CapTP signs is a Syrup record,
/// so refusing Syrup keeps the intro protocol's raw-bytes signature from
/// being a signing oracle for CapTP; refusing the e2ee context keeps it from
/// vouching for an X25519 key chosen by the introduction server (which could
/// then impersonate the peer in the end-to-end encrypted mode).
///
/// "A complete Syrup value" is judged as leniently as any reader might:
///
/// * by the lexical structure only (digits, markers, brackets and lengths),
///   so a value with unsorted or duplicate dictionary keys, invalid UTF-8 or
///   an odd label is refused too, in case some CapTP reader accepts it;
/// * with limits no input of this size can reach (depth, atom and integer
///   sizes all equal to the input's length), so nothing slips past because
///   of our own limits.
pub fn check_challenge(challenge: &[u8]) -> Result<(), HandshakeError> {
    let len = challenge.len();
    if len < MIN_CHALLENGE {
        return Err(HandshakeError::ChallengeTooShort(len));
    }
    if len > MAX_CHALLENGE {
        return Err(HandshakeError::ChallengeTooLong(len));
    }
    let limits = Limits {
        max_depth: len,
        max_message_len: len,
        max_atom_len: len,
        max_integer_digits: len,
    };
    if matches!(Decoder::new(limits).frame_len(challenge), Ok(Some(n)) if n == len) {
        return Err(HandshakeError::ChallengeIsSyrup);
    }
    if challenge.starts_with(E2EE_STATIC_KEY_CONTEXT) {
        return Err(HandshakeError::ChallengeIsE2eeStaticKey);
    }
    Ok(())
}

/// 64 fresh random bytes that pass [`check_challenge`].
pub(crate) fn fresh_challenge() -> [u8; CHALLENGE_LEN] {
    use rand_core::RngCore;
    loop {
        let mut c = [0u8; CHALLENGE_LEN];
        rand_core::OsRng.fill_bytes(&mut c);
        if check_challenge(&c).is_ok() {
            return c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_y_matches_recompression() {
        // Every encoding with the high bytes all ones: compare with what
        // decompressing and recompressing gives.
        for low in 0..=255u8 {
            for sign in [0u8, 0x80] {
                let mut k = [0xffu8; 32];
                k[0] = low;
                k[31] = 0x7f | sign;
                let fast = y_is_canonical(&k);
                if let Ok(vk) = VerifyingKey::from_bytes(&k) {
                    let slow = vk.to_edwards().compress().to_bytes() == k || vk.is_weak();
                    assert_eq!(fast || vk.is_weak(), slow, "{low:#x} {sign:#x}");
                } else {
                    assert_eq!(fast, low < 0xed);
                }
            }
        }
    }
}
