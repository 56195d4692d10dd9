//! End-to-end encryption for the OCapN Unix-domain-socket netlayer:
//! `Noise_XX_25519_ChaChaPoly_BLAKE2s` bound to the peers' designator keys,
//! as sans-I/O state machines, with a tokio stream adapter.
//!
//! An introduction server hands two peers the two ends of a socket. In
//! plaintext mode it could have kept the socket and relayed (reading and
//! rewriting everything), or told each side a different story about who is
//! on the other end. In this mode each side proves its designator (its
//! Ed25519 identity key) over a Noise handshake, so such a server makes the
//! connection **fail loudly** (with [`E2eeError::WrongIdentity`],
//! [`E2eeError::DecryptFailed`] or [`E2eeError::BadSignature`]) instead of
//! silently reading or rewriting traffic, and a connection it cuts is
//! reported as [`E2eeError::Truncated`], never as the peer's clean close.
//!
//! # The protocol
//!
//! * The dialer is the Noise **initiator**, the accepting peer the
//!   **responder**. The pattern is XX: `-> e`, `<- e, ee, s, es`,
//!   `-> s, se`, per the Noise specification (revision 34), with X25519,
//!   ChaCha20-Poly1305 and BLAKE2s ([`noise`]).
//! * **Prologue** ([`prologue`]): ASCII `ocapn-uds-e2ee/1`, one 0x00 byte,
//!   the initiator's 32-byte designator key, the responder's 32-byte
//!   designator key. Both sides use what the introduction server told them
//!   (`to` for the dialer, `from` for the acceptor); if the stories differ,
//!   message 2 does not decrypt.
//! * **Static keys**: each netlayer instance makes a fresh X25519 static key
//!   and signs `"ocapn-uds-e2ee-static-key:" || x25519_public` once with its
//!   Ed25519 identity ([`LocalStatic`]).
//! * **Payloads**: message 1 carries nothing; messages 2 and 3 carry the
//!   Syrup record `<uds:e2ee-identity PUBLIC-KEY SIG-VAL>`
//!   ([`IdentityRecord`]: CapTP public-key and sig-val lists) signing the
//!   sender's static key as the handshake delivered it.
//! * **Checks**: the initiator requires the responder's identity key to be
//!   the designator it dialed; the responder requires the initiator's to be
//!   the `from` designator. A mismatch, a bad signature, a failed
//!   decryption or an all-zero DH result (a low-order point) ends the
//!   handshake with a typed [`E2eeError`].
//!
//! # Wire format
//!
//! Every handshake message and every transport frame is a 2-byte big-endian
//! length followed by that many bytes (at most 65535):
//!
//! ```text
//! message 1   00 20 | e (32)                                            34 bytes
//! message 2   01 3a | e (32) | enc(s) (48) | enc(identity record) (234) 316 bytes
//! message 3   01 1a | enc(s) (48) | enc(identity record) (234)          284 bytes
//! transport   LL LL | ChaCha20-Poly1305(plaintext) | tag (16)           18..=65537 bytes
//! ```
//!
//! * A transport frame carries 1 to 65,519 bytes of plaintext. Each
//!   direction has its own key and a nonce counting from 0; the channel
//!   ends with [`E2eeError::NonceExhausted`] before a nonce would repeat.
//! * **End of data is authenticated**: shutting down the write side sends
//!   one empty transport frame (18 bytes: `00 10` and a tag), then shuts
//!   down the socket's write half. Data writes never produce empty frames.
//!   A reader that reaches the socket's end without that frame reports
//!   [`E2eeError::Truncated`].
//! * An e2ee stream starts with the byte 0x00 (the high byte of message 1's
//!   length), which no Syrup value starts with: an accepting peer tells e2ee
//!   from plaintext streams by the first byte ([`is_e2ee_first_byte`]).
//!
//! # Using it
//!
//! * [`connect`] / [`accept`] (feature `tokio`, on by default) run the
//!   handshake over any `AsyncRead + AsyncWrite + Unpin` stream and return an
//!   [`E2eeStream`], itself `AsyncRead + AsyncWrite`, with the proven peer
//!   and the handshake hash (a channel binding) in [`HandshakeInfo`].
//! * Without tokio: [`Handshake`] (bytes in, bytes out), then [`Transport`]
//!   and [`FrameReader`] for the frames.
//!
//! ```
//! use std::sync::Arc;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use uds_e2ee::LocalStatic;
//! use uds_handshake::Identity;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
//! // Once per netlayer instance, shared by all its connections.
//! let alice = Arc::new(LocalStatic::generate(&alice_id));
//! let bob = Arc::new(LocalStatic::generate(&bob_id));
//!
//! let (a, b) = tokio::net::UnixStream::pair()?;
//! let bob_side = tokio::spawn(async move {
//!     // The introduction server said the connection comes from alice.
//!     let mut s = uds_e2ee::accept(b, bob, alice_id.designator()).await?;
//!     let mut got = Vec::new();
//!     s.read_to_end(&mut got).await?; // ends at alice's authenticated end
//!     s.write_all(&got).await?;
//!     s.shutdown().await?;
//!     Ok::<_, std::io::Error>(s.info().handshake_hash)
//! });
//! // alice dialed bob.
//! let mut s = uds_e2ee::connect(a, alice, bob_id.designator()).await?;
//! assert_eq!(s.peer(), bob_id.designator());
//! s.write_all(b"hello bob").await?;
//! s.shutdown().await?;
//! let mut echo = Vec::new();
//! s.read_to_end(&mut echo).await?;
//! assert_eq!(echo, b"hello bob");
//! assert_eq!(bob_side.await.unwrap()?, s.info().handshake_hash);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! Secrets (the X25519 static and ephemeral keys, the chaining key, the
//! cipher keys) are zeroized when dropped and never appear in `Debug`
//! output. Not covered: the BLAKE2s states inside the `hmac` crate while
//! HKDF runs (the `hmac` and `blake2` crates do not zeroize them), and
//! copies the compiler leaves on the stack.

mod error;
mod frame;
mod handshake;
mod identity;
pub mod noise;
#[cfg(feature = "tokio")]
mod stream;
mod transport;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use error::{E2eeError, FrameKind};
pub use frame::{
    E2EE_FIRST_BYTE, FrameReader, HEADER_LEN, MAX_FRAME_LEN, MAX_PLAINTEXT, MESSAGE_1_LEN,
    MESSAGE_2_LEN, MESSAGE_3_LEN, is_e2ee_first_byte,
};
pub use handshake::{Handshake, HandshakeInfo, PROLOGUE_LABEL, PROLOGUE_LEN, prologue};
pub use identity::{IDENTITY_RECORD_LEN, IdentityRecord, LocalStatic, static_key_statement};
#[cfg(feature = "tokio")]
pub use stream::{E2eeStream, accept, connect, run_handshake};
pub use transport::{Opened, Transport};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "tokio"))]
pub struct ReadmeDoctests;
