//! Identities, the registration handshake and the framing of the
//! introduction channel of the OCapN Unix-domain-socket netlayer, as sans-I/O
//! state machines.
//!
//! Both the introduction server and the netlayer run the registration
//! handshake of the draft specification:
//!
//! 1. client → server `<uds:register LOCATOR CHALLENGE>`;
//! 2. server → client `<uds:server-response PUBKEY SERVER-CHALLENGE RESPONSE>`,
//!    where RESPONSE is the server's signature on the client's challenge;
//! 3. client → server `<uds:signature SERVER-CHALLENGE SIGNATURE>`.
//!
//! This crate has one implementation of each rule, and its core has no
//! sockets, no clock and no async: [`ClientHandshake`] and
//! [`ServerHandshake`] take decoded messages and return the bytes to send,
//! and [`channel`] turns the bytes and fds read from an intro socket into
//! messages and introductions. The optional `io` feature adds the async
//! shell that `uds-introd` and `uds-netlayer` share (a cancel-safe reader,
//! a unit writer, a writer task); it only moves bytes.
//!
//! The rules:
//!
//! * keys must be valid, canonical, non-weak Ed25519 points
//!   ([`verifying_key`]); signatures are checked with `verify_strict`;
//! * challenges are 16 to 1024 bytes, and **a challenge that is a complete
//!   Syrup value is never signed** ([`check_challenge`]): CapTP signs Syrup
//!   records, so this keeps the intro protocol from being a signing oracle;
//!   nor is one that starts with [`E2EE_STATIC_KEY_CONTEXT`], which only
//!   the statement binding an identity to its end-to-end encryption key
//!   starts with;
//! * both wire shapes (the draft's and Goblins') are accepted from peers; a
//!   server emits the shape of its [`WireProfile`](uds_syrup::WireProfile),
//!   and a client answers in the shape the server used unless told
//!   otherwise ([`ClientConfig::profile`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use uds_handshake::{ClientConfig, ClientHandshake, Identity, ServerHandshake, ServerStep};
//! use uds_syrup::{decode, WireProfile};
//!
//! let server_id = Arc::new(Identity::generate());
//! let peer_id = Arc::new(Identity::generate());
//! let config = ClientConfig { profile: Some(WireProfile::Goblins), pinned_server: Some(server_id.designator()) };
//! let mut client = ClientHandshake::new(peer_id.clone(), config);
//! let mut server = ServerHandshake::new(server_id, WireProfile::Draft);
//!
//! // The bytes would travel over a socket; here they are handed across.
//! let register = client.register_message();
//! let ServerStep::Send(response) = server.receive(&decode(&register)?)? else { unreachable!() };
//! let registered = client.receive(&decode(&response)?)?;
//! let ServerStep::Registered(peer) = server.receive(&decode(&registered.signature_message)?)? else {
//!     unreachable!()
//! };
//! assert_eq!(peer.designator, peer_id.designator());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod channel;
mod client;
mod error;
mod identity;
#[cfg(feature = "io")]
pub mod io;
mod keys;
mod server;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use client::{ClientConfig, ClientHandshake, ClientRegistered};
pub use error::{HandshakeError, IdentityError};
pub use identity::Identity;
pub use keys::{
    CHALLENGE_LEN, E2EE_STATIC_KEY_CONTEXT, E2EE_STATIC_KEY_STATEMENT_LEN, MAX_CHALLENGE,
    MIN_CHALLENGE, check_challenge, e2ee_static_key_statement, verify, verifying_key,
};
pub use server::{Registered, ServerHandshake, ServerStep};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
