//! A strict, canonical [Syrup] codec and (feature `ocapn`, on by default)
//! the OCapN wire types of the Unix-domain-socket netlayer.
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
//!   size are bounded by [`Limits`]; the decoder does not recurse and no
//!   claimed length is allocated before its bytes arrive. It never panics on any input.
//! * **Incremental, in one pass.** On a buffer that ends mid-value the
//!   decoder answers "need more bytes" and resumes where it stopped (linear
//!   time however the bytes are split); it never consumes bytes past the
//!   value it returns. A value that is all there is framed, checked and built
//!   in a single pass over its bytes ([`Decoder::decode_split`] gives the
//!   value and its exact bytes together).
//! * **Zero-copy.** Decoding from [`bytes::Bytes`] slices bytestrings out of
//!   the input.
//! * **No unbounded recursion.** Decoding, encoding, and [`Value`]'s
//!   `Clone`, `Eq`, `Hash` and `Display` use explicit stacks, and `Drop`
//!   recurses for at most 64 levels before it does the same, so no nesting
//!   depth (decoded with a generous [`Limits::max_depth`], or built in
//!   memory) can overflow the call stack.
//!
//! Integers of any size are kept losslessly ([`Integer`]): `i128` inline,
//! larger ones as their decimal digits, bounded by
//! [`Limits::max_integer_digits`].
//!
//! # Cargo features
//!
//! * `ocapn` (default): the [`ocapn`] module, with the structures of the
//!   netlayer: [`Designator`], [`Locator`] (with `ocapn://` URIs), CapTP
//!   [`PublicKey`] and [`SigVal`], and the four `uds:*` records
//!   ([`IntroMessage`]), decoded in both the draft's and Goblins' shapes and
//!   encoded per [`WireProfile`]. A Syrup-only user turns it off with
//!   `default-features = false` (and drops the base32 dependency with it).
//! * `codec`: [`SyrupCodec`], a tokio-util decoder and encoder that
//!   frames messages on byte streams.
//! * `fuzzing`: hooks for the fuzz targets and the tests that replay their
//!   corpora. Not a stable API; not for other uses.
//!
//! # Example
//!
//! ```
//! use uds_syrup::{decode, Value};
//!
//! // Values: build, encode, decode.
//! let v = Value::record(Value::symbol("op:abort"), [Value::string("bye")]);
//! let bytes = v.encode();
//! assert_eq!(bytes, b"<8'op:abort3\"bye>");
//! assert_eq!(decode(&bytes).unwrap(), v);
//!
//! # #[cfg(feature = "ocapn")] {
//! use uds_syrup::{Designator, Locator};
//!
//! // A peer locator, from and to its URI and its Syrup form.
//! let uri = "ocapn://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena.unix-domain-socket\
//!            ?hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga=1";
//! let loc: Locator = uri.parse().unwrap();
//! let server: Designator = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga".parse().unwrap();
//! assert!(loc.has_hint(&server));
//! assert_eq!(Locator::decode(&loc.encode()).unwrap().to_string(), uri);
//! # }
//! ```
//!
//! [Syrup]: https://github.com/ocapn/syrup
#![cfg_attr(feature = "codec", doc = "[`SyrupCodec`]: codec::SyrupCodec")]
#![cfg_attr(
    not(feature = "codec"),
    doc = "[`SyrupCodec`]: https://docs.rs/uds-syrup/latest/uds_syrup/codec/struct.SyrupCodec.html"
)]

mod decode;
mod encode;
#[cfg(feature = "ocapn")]
pub mod ocapn;
mod value;

#[cfg(feature = "codec")]
pub mod codec;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use decode::{
    DecodeError, Decoder, ErrorKind, Limits, decode, decode_bytes, is_complete_value,
};
#[cfg(feature = "ocapn")]
pub use ocapn::{
    Designator, DesignatorError, IntroMessage, Locator, NewConnection, PublicKey, Register,
    SCM_RIGHTS_BODY, ServerResponse, SigVal, TRANSPORT, UdsSignature, WireError, WireProfile,
};
pub use value::{Dict, Integer, Kind, ParseIntegerError, Record, Set, Value, canonical_cmp};

pub use bytes::Bytes;

/// The README's example, compiled and run as a doctest.
#[cfg(all(doctest, feature = "ocapn"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
