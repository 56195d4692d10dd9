//! The OCapN structures used by the Unix-domain-socket netlayer (cargo
//! feature `ocapn`, on by default), one wire rule per file:
//!
//! * [`designator`](Designator): the base32 name of a 32-byte Ed25519 key;
//! * [`captp`](PublicKey): CapTP public-key and sig-val lists;
//! * [`locator`](Locator): peer locators and their `ocapn://` URIs;
//! * [`records`](IntroMessage): the four `uds:*` records of the
//!   introduction protocol, the [`WireProfile`] that picks the shape to emit,
//!   and [`SCM_RIGHTS_BODY`].
//!
//! Decoding accepts both the draft's shapes and Goblins' (they differ in two
//! places); encoding follows a [`WireProfile`].

use bytes::Bytes;

use crate::decode::DecodeError;
use crate::value::{Kind, Value};

mod captp;
mod designator;
mod locator;
mod records;

pub use captp::{PublicKey, SigVal};
pub use designator::{Designator, DesignatorError};
pub use locator::Locator;
pub use records::{
    IntroMessage, NewConnection, Register, SCM_RIGHTS_BODY, ServerResponse, UdsSignature,
    WireProfile,
};

/// The transport symbol of this netlayer.
pub const TRANSPORT: &str = "unix-domain-socket";

/// Why a value is not the expected OCapN structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not valid Syrup.
    #[error(transparent)]
    Syrup(#[from] DecodeError),
    /// A value of the wrong type.
    #[error("{what}: expected {expected}, found a {found}")]
    WrongType {
        /// What was being read.
        what: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: Kind,
    },
    /// A record with another label.
    #[error("expected a <{expected}> record, found the label {found}")]
    WrongLabel {
        /// The expected label.
        expected: &'static str,
        /// The label found.
        found: String,
    },
    /// A record with the wrong number of fields.
    #[error("<{record}> must have {expected} fields, found {found}")]
    FieldCount {
        /// The record's label.
        record: &'static str,
        /// How many it must have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// A record label that is not one of the introduction messages.
    #[error("unknown introduction message <{0}>")]
    UnknownMessage(String),
    /// A designator that is not 52 base32 characters of a 32-byte key.
    #[error(transparent)]
    Designator(#[from] DesignatorError),
    /// A locator of another netlayer.
    #[error("locator transport is {0:?}, expected \"unix-domain-socket\"")]
    WrongTransport(String),
    /// Malformed hints.
    #[error("locator hints: {0}")]
    Hints(&'static str),
    /// Not the CapTP Ed25519 public-key list.
    #[error("public key: {0}")]
    PublicKey(&'static str),
    /// Not a CapTP Ed25519 sig-val list or a 64-byte signature.
    #[error("signature: {0}")]
    Signature(&'static str),
    /// An `ocapn://` URI that cannot be parsed.
    #[error("invalid ocapn URI: {0}")]
    Uri(String),
    /// A profile name other than `draft` or `goblins`.
    #[error("unknown wire profile {0:?}: use \"draft\" or \"goblins\"")]
    UnknownProfile(String),
}

/// The fields of `v`, which must be a record labelled `label` with `N`
/// fields.
fn expect_record<'a, const N: usize>(
    v: &'a Value,
    label: &'static str,
) -> Result<&'a [Value; N], WireError> {
    let r = v.as_record().ok_or(WireError::WrongType {
        what: label,
        expected: "record",
        found: v.kind(),
    })?;
    if !r.label().is_symbol(label) {
        return Err(WireError::WrongLabel {
            expected: label,
            found: r.label().to_string(),
        });
    }
    r.fields().try_into().map_err(|_| WireError::FieldCount {
        record: label,
        expected: N,
        found: r.fields().len(),
    })
}

/// `v`, which must be a bytestring.
fn expect_bytes(v: &Value, what: &'static str) -> Result<Bytes, WireError> {
    v.as_bytes().cloned().ok_or(WireError::WrongType {
        what,
        expected: "bytestring",
        found: v.kind(),
    })
}

/// A symbol.
fn sym(s: &str) -> Value {
    Value::symbol(s)
}
