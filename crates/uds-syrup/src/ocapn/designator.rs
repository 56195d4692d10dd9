//! [`Designator`]: the name of a peer or introduction server, its 32-byte
//! Ed25519 public key as 52 characters of base32.

use std::fmt;
use std::str::FromStr;

use super::PublicKey;

/// Why a string is not a designator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DesignatorError {
    /// Not 52 characters.
    #[error("designator must be 52 base32 characters (a 32-byte key), found {0} characters")]
    WrongLength(usize),
    /// A character outside the base32 alphabet (padding `=` included).
    #[error(
        "designator has an invalid base32 character at position {0} (only a-z and 2-7, no padding)"
    )]
    InvalidCharacter(usize),
    /// The last character encodes bits beyond the 32-byte key.
    #[error("designator is not canonical: its last character has non-zero trailing bits")]
    NonCanonical,
}

/// The name of a peer or introduction server: its 32-byte Ed25519 public
/// key, written as 52 characters of lowercase unpadded RFC 4648 base32.
///
/// Parsing accepts upper or lower case and rejects wrong lengths, padding
/// and non-canonical trailing bits; formatting is always lower case.
///
/// ```
/// use uds_syrup::Designator;
/// let d: Designator = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena".parse().unwrap();
/// assert_eq!(d.key_bytes()[..2], [0xd7, 0x5a]);
/// assert_eq!(d.to_string(), "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena");
/// assert!("25NJQAMCWEFLPVKL73J4SZAHHIHOC4XT3KTCGJNPAINGR5YHKENA".parse::<Designator>().is_ok());
/// assert!("25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenb".parse::<Designator>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Designator([u8; 32]);

impl Designator {
    /// The designator of a raw 32-byte public key.
    pub const fn from_key_bytes(key: [u8; 32]) -> Designator {
        Designator(key)
    }

    /// The raw 32-byte public key.
    pub const fn key_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The CapTP public key this designator names.
    pub const fn public_key(&self) -> PublicKey {
        PublicKey(self.0)
    }
}

impl FromStr for Designator {
    type Err = DesignatorError;
    fn from_str(s: &str) -> Result<Designator, DesignatorError> {
        if s.len() != 52 {
            return Err(DesignatorError::WrongLength(s.chars().count()));
        }
        // RFC 4648 base32 is upper case; accept either, without allocating.
        let mut upper = [0u8; 52];
        upper.copy_from_slice(s.as_bytes());
        upper.make_ascii_uppercase();
        let mut key = [0u8; 32];
        match data_encoding::BASE32_NOPAD.decode_mut(&upper, &mut key) {
            Ok(32) => Ok(Designator(key)),
            Ok(n) => Err(DesignatorError::WrongLength(n)),
            Err(e) => Err(match e.error.kind {
                data_encoding::DecodeKind::Trailing => DesignatorError::NonCanonical,
                data_encoding::DecodeKind::Length => DesignatorError::WrongLength(s.len()),
                _ => DesignatorError::InvalidCharacter(e.error.position),
            }),
        }
    }
}

impl fmt::Display for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 52];
        data_encoding::BASE32_NOPAD.encode_mut(&self.0, &mut out);
        out.make_ascii_lowercase();
        // base32 output is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Designator({self})")
    }
}
