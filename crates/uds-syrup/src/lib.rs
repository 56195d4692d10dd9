//! A strict, canonical [Syrup] codec and the OCapN wire types of the
//! Unix-domain-socket netlayer.
//!
//! Syrup is the binary encoding OCapN puts on the wire. This crate is built
//! for messages that carry signatures and cross trust boundaries:
//!
//! * **One encoding per value.** [`Value::encode`] is canonical (dictionary
//!   keys and set items in the order of their encodings), and the decoder
//!   accepts only canonical input, so `encode(decode(bytes)) == bytes`.
//! * **Strict and bounded.** The [`Decoder`] rejects leading zeros, `0-`,
//!   unsorted or duplicate keys, invalid UTF-8, non-canonical NaN,
//!   whitespace and legacy delimiters with an error naming the problem and
//!   its byte offset. Nesting depth, message size, atom length and integer
//!   size are bounded by [`Limits`]; nothing recurses and no claimed length is
//!   allocated before its bytes arrive. It never panics on any input.
//! * **Incremental.** On a buffer that ends mid-value the decoder answers
//!   "need more bytes" and resumes where it stopped; it never consumes bytes
//!   past the value it returns.
//! * **Zero-copy.** Decoding from [`bytes::Bytes`] slices bytestrings out of
//!   the input.
//!
//! Integers of any size are kept losslessly ([`Integer`]): `i128` inline,
//! larger ones as their decimal digits, bounded by
//! [`Limits::max_integer_digits`].
//!
//! The [`ocapn`] module has the structures of the netlayer: [`Designator`],
//! [`Locator`] (with `ocapn://` URIs), CapTP [`PublicKey`] and [`SigVal`], and
//! the four `uds:*` records ([`IntroMessage`]), decoded in both the draft's
//! and Goblins' shapes and encoded per [`WireProfile`]. With the `codec`
//! feature, [`codec::SyrupCodec`] frames messages on tokio streams.
//!
//! # Example
//!
//! ```
//! use uds_syrup::{decode, Designator, Locator, Value};
//!
//! // Values: build, encode, decode.
//! let v = Value::record(Value::symbol("op:abort"), [Value::string("bye")]);
//! let bytes = v.encode();
//! assert_eq!(bytes, b"<8'op:abort3\"bye>");
//! assert_eq!(decode(&bytes).unwrap(), v);
//!
//! // A peer locator, from and to its URI and its Syrup form.
//! let uri = "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket\
//!            ?hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga=1";
//! let loc: Locator = uri.parse().unwrap();
//! let server: Designator = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga".parse().unwrap();
//! assert!(loc.has_hint(&server));
//! assert_eq!(Locator::decode(&loc.encode()).unwrap().to_string(), uri);
//! ```
//!
//! [Syrup]: https://github.com/ocapn/syrup

mod decode;
mod encode;
pub mod ocapn;
mod value;

#[cfg(feature = "codec")]
pub mod codec;

#[doc(hidden)]
pub mod fuzzing;

pub use decode::{
    DecodeError, Decoder, ErrorKind, Limits, decode, decode_bytes, is_complete_value,
};
pub use ocapn::{
    Designator, DesignatorError, IntroMessage, Locator, NewConnection, PublicKey, Register,
    SCM_RIGHTS_BODY, ServerResponse, SigVal, TRANSPORT, UdsSignature, WireError, WireProfile,
};
pub use value::{Dict, Integer, Kind, ParseIntegerError, Record, Set, Value, canonical_cmp};

pub use bytes::Bytes;
