//! CapTP's Ed25519 public-key and sig-val lists.

use std::fmt;

use super::{Designator, WireError, sym};
use crate::value::Value;

/// A CapTP Ed25519 public key (raw 32 bytes), which travels as the list
/// `[public-key [ecc [curve Ed25519] [flags eddsa] [q <32 bytes>]]]`
/// (always 96 bytes encoded).
///
/// This type only carries bytes; verifying signatures is the job of a
/// cryptographic crate (see `uds-handshake`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The designator naming this key.
    pub const fn designator(&self) -> Designator {
        Designator::from_key_bytes(self.0)
    }

    /// The CapTP list form.
    pub fn to_value(&self) -> Value {
        Value::list([
            sym("public-key"),
            Value::list([
                sym("ecc"),
                Value::list([sym("curve"), sym("Ed25519")]),
                Value::list([sym("flags"), sym("eddsa")]),
                Value::list([sym("q"), Value::bytes(self.0.to_vec())]),
            ]),
        ])
    }

    /// The 96-byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Reads the CapTP list form.
    pub fn from_value(v: &Value) -> Result<PublicKey, WireError> {
        let bad = WireError::PublicKey;
        let outer = v.as_list().ok_or(bad("expected a [public-key ...] list"))?;
        let [tag, ecc] = outer else {
            return Err(bad("expected [public-key [ecc ...]]"));
        };
        if !tag.is_symbol("public-key") {
            return Err(bad("the list does not start with the symbol public-key"));
        }
        let ecc = ecc.as_list().ok_or(bad("expected [ecc ...]"))?;
        let [tag, curve, flags, q] = ecc else {
            return Err(bad("expected [ecc [curve Ed25519] [flags eddsa] [q KEY]]"));
        };
        let pair = |v: &Value, name: &str| -> Option<Value> {
            match v.as_list()? {
                [k, x] if k.is_symbol(name) => Some(x.clone()),
                _ => None,
            }
        };
        if !tag.is_symbol("ecc") {
            return Err(bad("expected the symbol ecc"));
        }
        if !pair(curve, "curve").is_some_and(|c| c.is_symbol("Ed25519")) {
            return Err(bad("curve must be Ed25519"));
        }
        if !pair(flags, "flags").is_some_and(|c| c.is_symbol("eddsa")) {
            return Err(bad("flags must be eddsa"));
        }
        let q = pair(q, "q").ok_or(bad("expected [q KEY]"))?;
        let key: [u8; 32] = q
            .as_bytes()
            .and_then(|b| b.as_ref().try_into().ok())
            .ok_or(bad("q must be a 32-byte bytestring"))?;
        Ok(PublicKey(key))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.designator())
    }
}

/// A 64-byte Ed25519 signature (`r || s`, plain RFC 8032), which travels as
/// the CapTP list `[sig-val [eddsa [r <32 bytes>] [s <32 bytes>]]]` (always
/// 100 bytes) or, in Goblins' `uds:signature`, as a raw 64-byte bytestring.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigVal(pub [u8; 64]);

impl SigVal {
    /// The `r` half.
    pub fn r(&self) -> &[u8] {
        &self.0[..32]
    }

    /// The `s` half.
    pub fn s(&self) -> &[u8] {
        &self.0[32..]
    }

    /// The CapTP list form.
    pub fn to_value(&self) -> Value {
        Value::list([
            sym("sig-val"),
            Value::list([
                sym("eddsa"),
                Value::list([sym("r"), Value::bytes(self.r().to_vec())]),
                Value::list([sym("s"), Value::bytes(self.s().to_vec())]),
            ]),
        ])
    }

    /// The 100-byte encoding of the list form.
    pub fn encode(&self) -> Vec<u8> {
        self.to_value().encode()
    }

    /// Reads the CapTP list form.
    pub fn from_value(v: &Value) -> Result<SigVal, WireError> {
        let bad = WireError::Signature;
        let outer = v.as_list().ok_or(bad("expected a [sig-val ...] list"))?;
        let [tag, eddsa] = outer else {
            return Err(bad("expected [sig-val [eddsa ...]]"));
        };
        if !tag.is_symbol("sig-val") {
            return Err(bad("the list does not start with the symbol sig-val"));
        }
        let inner = eddsa.as_list().ok_or(bad("expected [eddsa ...]"))?;
        let [tag, r, s] = inner else {
            return Err(bad("expected [eddsa [r R] [s S]]"));
        };
        if !tag.is_symbol("eddsa") {
            return Err(bad("expected the symbol eddsa"));
        }
        let half = |v: &Value, name: &str| -> Option<[u8; 32]> {
            match v.as_list()? {
                [k, x] if k.is_symbol(name) => x.as_bytes()?.as_ref().try_into().ok(),
                _ => None,
            }
        };
        let r = half(r, "r").ok_or(bad("r must be a 32-byte bytestring"))?;
        let s = half(s, "s").ok_or(bad("s must be a 32-byte bytestring"))?;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        Ok(SigVal(sig))
    }

    /// Reads either shape: the sig-val list, or a raw 64-byte bytestring.
    pub fn from_either(v: &Value) -> Result<SigVal, WireError> {
        match v {
            Value::Bytes(b) => b
                .as_ref()
                .try_into()
                .map(SigVal)
                .map_err(|_| WireError::Signature("a raw signature must be exactly 64 bytes")),
            _ => SigVal::from_value(v),
        }
    }
}

impl fmt::Debug for SigVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigVal(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}
