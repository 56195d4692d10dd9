//! The OCapN Unix-domain-socket netlayer.
//!
//! Peers on one machine reach each other through **introduction servers**
//! (`uds-introd`): each peer registers its identity (an Ed25519 key) with one
//! or more servers; to connect, a peer creates a `socketpair()`, keeps one
//! end and asks a server both peers share to pass the other end to the
//! target. From then on the two peers talk over a direct, anonymous socket;
//! no process needs filesystem access to the others, and killing the server
//! leaves established connections working.
//!
//! [`UdsNetlayer`] does all of that:
//!
//! * connects to servers given as a path, an abstract name, or an inherited
//!   connected fd (`OCAPN_UDS_INTRO_FD`), checks each server's uid
//!   (`SO_PEERCRED`: ours or root by default), pins its key when asked,
//!   registers with the handshake of `uds-handshake`, and re-registers with
//!   capped exponential backoff when a server goes away or restarts;
//! * [`UdsNetlayer::location`] is our locator, hinting the servers we are
//!   registered with now;
//! * [`UdsNetlayer::connect`] dials a locator through a shared server
//!   (falling back to the next one on failure), [`UdsNetlayer::accept`]
//!   returns incoming connections after checking them (addressed to us, a
//!   connected stream socket) and records who vouched for the peer, which
//!   process created the socket, and whether that was the server itself
//!   ([`ConnectionInfo::relayed`]);
//! * connections are end-to-end encrypted by default (feature `e2ee`, on
//!   by default): Noise XX keyed to both peers' designators, so a lying
//!   server can drop connections but not read, change or impersonate them;
//!   `connect` refuses to fall back to plaintext and `accept` refuses
//!   plaintext dialers. [`Builder::plaintext`] speaks to the draft's and
//!   Goblins' peers (dials plaintext, accepts both).
//!
//! A [`Connection`] is `AsyncRead + AsyncWrite`; [`Connection::framed`]
//! gives Syrup messages with raw or bytestring framing. The [`Netlayer`]
//! trait is what a CapTP implementation programs against.
//!
//! The crate also builds the `uds-peer` command-line tool.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::{SinkExt, StreamExt};
//! use uds_netlayer::{Netlayer, UdsNetlayer};
//! use uds_syrup::{codec::Framing, Value};
//!
//! let net = UdsNetlayer::builder().intro_path("/run/user/1000/ocapn/intro.sock").build()?;
//! net.registered().await;
//! println!("reach me at {}", net.location());
//!
//! // Serve: greet every peer that connects. `accept` returns once the
//! // dialer has spoken (its handshake, or in plaintext mode its first
//! // byte), so the acceptor may write at once.
//! loop {
//!     let conn = net.accept().await?;
//!     let mut messages = conn.framed(Framing::Raw);
//!     messages.send(Value::record(Value::symbol("hello"), [])).await?;
//!     while let Some(msg) = messages.next().await {
//!         println!("got {}", msg?);
//!     }
//! }
//! # }
//! ```

/// Logs an event that can repeat without bound: at warning level the 1st,
/// 2nd, 4th, 8th... time (`$n` counts the occurrences, this one included,
/// and should be among the fields) and at debug level otherwise, so that a
/// flood cannot flood the log.
macro_rules! warn_sparingly {
    ($n:expr, $($arg:tt)+) => {
        if $n.is_power_of_two() {
            tracing::warn!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}

mod builder;
mod connection;
mod error;
mod link;
mod netlayer;

pub use builder::{Builder, INTRO_FD_ENV, INTRO_ID_ENV, IntroServer, MIN_BACKOFF, Security};
pub use connection::{Connection, ConnectionInfo, Direction};
pub use error::{Attempt, AttemptError, LinkError, MAX_SOCKET_ADDR, NetlayerError};
pub use netlayer::{NetlayerStats, ServerState, UdsNetlayer};
/// The confinement crate used by [`Builder::confine`]: its
/// [`Policy`](sandbox::Policy), [`SandboxMode`](sandbox::SandboxMode) and
/// [`Report`](sandbox::Report).
pub use uds_sandbox as sandbox;

/// What a CapTP implementation needs from a netlayer.
///
/// * `location` is the locator to hand out (in sturdyrefs and in
///   `op:start-session`);
/// * `connect` returns a byte stream to the peer named by a locator. With
///   end-to-end encryption (the default) it returns once the peer has
///   proven its designator; in plaintext mode once an introduction server
///   took the socket. The dialer speaks first: an accepting netlayer tells
///   plaintext from encrypted by the dialer's first byte;
/// * `accept` returns the next connection another peer opened to us. With
///   encryption its designator is proven by the handshake; in plaintext
///   mode it is only claimed by the introduction server, and CapTP's own
///   session handshake (signed locations) is what proves it.
///
/// Connections are plain byte streams: CapTP frames its own messages (for
/// example with `uds_syrup::codec`).
#[async_trait::async_trait]
pub trait Netlayer: Send + Sync {
    /// A connection to a peer.
    type Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// Why connecting or accepting failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Our locator.
    fn location(&self) -> uds_syrup::Locator;

    /// Connects to `peer`.
    async fn connect(&self, peer: &uds_syrup::Locator) -> Result<Self::Connection, Self::Error>;

    /// The next incoming connection.
    async fn accept(&self) -> Result<Self::Connection, Self::Error>;
}

#[async_trait::async_trait]
impl Netlayer for UdsNetlayer {
    type Connection = Connection;
    type Error = NetlayerError;

    fn location(&self) -> uds_syrup::Locator {
        UdsNetlayer::location(self)
    }

    async fn connect(&self, peer: &uds_syrup::Locator) -> Result<Connection, NetlayerError> {
        UdsNetlayer::connect(self, peer).await
    }

    async fn accept(&self) -> Result<Connection, NetlayerError> {
        UdsNetlayer::accept(self).await
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
