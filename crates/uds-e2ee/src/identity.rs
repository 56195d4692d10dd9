//! Binding a netlayer's X25519 static key to its Ed25519 identity.

use std::fmt;

use uds_handshake::{Identity, verify, verifying_key};
use uds_syrup::{Designator, PublicKey, SigVal, Value, WireError};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

use crate::error::E2eeError;

/// Length of an encoded identity record: `<17'uds:e2ee-identity` (21
/// bytes), the 96-byte public-key list, the 100-byte sig-val list and `>`.
/// Canonical Syrup gives these records exactly one encoding, so every valid
/// one has this length.
pub const IDENTITY_RECORD_LEN: usize = 218;

/// The statement an identity signs for an X25519 static key:
/// `"ocapn-uds-e2ee-static-key:" || x25519_public` (58 bytes).
///
/// ```
/// let m = uds_e2ee::static_key_statement(&[0xab; 32]);
/// assert!(m.starts_with(b"ocapn-uds-e2ee-static-key:"));
/// assert_eq!(&m[26..], &[0xab; 32]);
/// ```
pub fn static_key_statement(
    x25519_public: &[u8; 32],
) -> [u8; uds_handshake::E2EE_STATIC_KEY_STATEMENT_LEN] {
    // Defined once, in uds-handshake, which signs it.
    uds_handshake::e2ee_static_key_statement(x25519_public)
}

/// `<uds:e2ee-identity PUBLIC-KEY SIG-VAL>`: the payload of handshake
/// messages 2 and 3, in which the sender's Ed25519 identity signs
/// [`static_key_statement`] for the X25519 static key the handshake
/// delivered.
///
/// ```
/// use uds_e2ee::{IdentityRecord, IDENTITY_RECORD_LEN};
/// use uds_handshake::Identity;
/// let id = Identity::from_secret_bytes([1; 32]);
/// let x25519_public = [9u8; 32];
/// let record = IdentityRecord {
///     key: id.public_key(),
///     signature: id.sign_e2ee_static_key(&x25519_public),
/// };
/// let bytes = record.encode();
/// assert_eq!(bytes.len(), IDENTITY_RECORD_LEN);
/// let back = IdentityRecord::decode(&bytes)?;
/// assert_eq!(back.verify(&x25519_public)?, id.designator());
/// assert!(back.verify(&[8; 32]).is_err());
/// # Ok::<(), uds_e2ee::E2eeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The sender's identity (designator) key.
    pub key: PublicKey,
    /// Its signature on [`static_key_statement`] of the sender's X25519
    /// static key.
    pub signature: SigVal,
}

impl IdentityRecord {
    /// The record label.
    pub const LABEL: &'static str = "uds:e2ee-identity";

    /// The Syrup record.
    pub fn to_value(&self) -> Value {
        Value::record(
            Value::symbol(Self::LABEL),
            [self.key.to_value(), self.signature.to_value()],
        )
    }

    /// The canonical encoding ([`IDENTITY_RECORD_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Reads a record that must be exactly one canonical Syrup value.
    /// Errors: [`E2eeError::MalformedIdentity`].
    pub fn decode(bytes: &[u8]) -> Result<IdentityRecord, E2eeError> {
        let malformed = E2eeError::MalformedIdentity;
        // Canonical Syrup and fixed-size fields: whatever passes these
        // checks is exactly IDENTITY_RECORD_LEN bytes long.
        let v = uds_syrup::decode(bytes).map_err(|e| malformed(e.into()))?;
        let r = v.as_record().ok_or(malformed(WireError::WrongType {
            what: Self::LABEL,
            expected: "record",
            found: v.kind(),
        }))?;
        if !r.label().is_symbol(Self::LABEL) {
            return Err(malformed(WireError::WrongLabel {
                expected: Self::LABEL,
                found: r.label().to_string(),
            }));
        }
        let [key, signature] = r.fields() else {
            return Err(malformed(WireError::FieldCount {
                record: Self::LABEL,
                expected: 2,
                found: r.fields().len(),
            }));
        };
        Ok(IdentityRecord {
            key: PublicKey::from_value(key).map_err(malformed)?,
            signature: SigVal::from_value(signature).map_err(malformed)?,
        })
    }

    /// Checks that the record's signature is valid for `x25519_public` and
    /// returns the designator it proves. Errors:
    /// [`E2eeError::InvalidIdentityKey`] (not a valid, canonical, non-weak
    /// Ed25519 key), [`E2eeError::BadSignature`] (`verify_strict` fails).
    pub fn verify(&self, x25519_public: &[u8; 32]) -> Result<Designator, E2eeError> {
        let designator = self.key.designator();
        let key =
            verifying_key(&self.key).map_err(|_| E2eeError::InvalidIdentityKey(designator))?;
        if verify(&key, &static_key_statement(x25519_public), &self.signature) {
            Ok(designator)
        } else {
            Err(E2eeError::BadSignature(designator))
        }
    }
}

/// A netlayer's end-to-end encryption key: a fresh X25519 static key
/// (zeroized when dropped) and the identity record in which the netlayer's
/// Ed25519 identity vouches for it, encoded once.
///
/// Make one per netlayer instance with [`LocalStatic::generate`] and share
/// it (in an [`Arc`](std::sync::Arc)) across all its handshakes: signing
/// happens here, once, not per connection.
///
/// ```
/// use std::sync::Arc;
/// use uds_e2ee::LocalStatic;
/// use uds_handshake::Identity;
/// let identity = Identity::generate();
/// let local = Arc::new(LocalStatic::generate(&identity));
/// assert_eq!(local.designator(), identity.designator());
/// // Debug output names the identity, never the key material.
/// assert_eq!(format!("{local:?}"), format!("LocalStatic({})", identity.designator()));
/// ```
pub struct LocalStatic {
    secret: StaticSecret,
    public: [u8; 32],
    designator: Designator,
    record: [u8; IDENTITY_RECORD_LEN],
}

impl LocalStatic {
    /// A fresh random X25519 static key, vouched for by `identity`.
    pub fn generate(identity: &Identity) -> LocalStatic {
        LocalStatic::with_secret(identity, StaticSecret::random_from_rng(rand_core::OsRng))
    }

    /// The static key with this X25519 private key. **For tests and fixed
    /// vectors**; use [`LocalStatic::generate`] otherwise.
    pub fn from_secret_bytes(identity: &Identity, x25519_secret: [u8; 32]) -> LocalStatic {
        LocalStatic::with_secret(identity, StaticSecret::from(x25519_secret))
    }

    fn with_secret(identity: &Identity, secret: StaticSecret) -> LocalStatic {
        let public = X25519Public::from(&secret).to_bytes();
        let encoded = IdentityRecord {
            key: identity.public_key(),
            signature: identity.sign_e2ee_static_key(&public),
        }
        .encode();
        let mut record = [0u8; IDENTITY_RECORD_LEN];
        // Canonical encoding of fixed-size fields: always this length.
        record.copy_from_slice(&encoded);
        LocalStatic {
            secret,
            public,
            designator: identity.designator(),
            record,
        }
    }

    /// The designator (identity key) that vouches for this key.
    pub fn designator(&self) -> Designator {
        self.designator
    }

    /// The X25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The encoded `<uds:e2ee-identity ...>` record sent in the handshake.
    pub fn identity_record(&self) -> &[u8; IDENTITY_RECORD_LEN] {
        &self.record
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

impl fmt::Debug for LocalStatic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStatic({})", self.designator)
    }
}
