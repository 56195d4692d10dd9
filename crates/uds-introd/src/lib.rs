//! `uds-introd`: the introduction server of the OCapN Unix-domain-socket
//! netlayer, as a library and a daemon.
//!
//! Peers connect to the introduction server over a Unix stream socket and
//! register their designator with the handshake of the draft specification
//! (`uds:register`, `uds:server-response`, `uds:signature`). To reach
//! another peer, a netlayer creates a `socketpair()`, keeps one end, and
//! sends `uds:new-connection` with the other end (SCM_RIGHTS); the server
//! checks that `from` is the sender's registered identity and forwards the
//! same record and socket to the peer registered as `to`. It only
//! introduces: once the socket is passed, the two peers talk directly, and
//! killing the server leaves their connections working.
//!
//! The server behaves like a system daemon: clients are admitted by their
//! kernel-checked credentials before anything is read, every limit is named
//! and configurable ([`Limits`]), bad input closes exactly the offending
//! connection, intros to peers that are not registered wait a bounded time,
//! and nothing is held forever.
//!
//! The protocol logic is not here: the registration handshake and the
//! intro-channel framing are the sans-I/O state machines of
//! `uds-handshake`, and every socket read is an SCM_RIGHTS-aware `recvmsg`
//! from `uds-fdpass`.
//!
//! # Example
//!
//! Bind and read the key first, on the main thread without an async
//! runtime; confine the process (`uds-sandbox`); then start the runtime,
//! whose threads inherit the confinement, and serve:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::path::Path;
//! use std::sync::Arc;
//! use uds_handshake::Identity;
//! use uds_introd::{Config, Listener, Server};
//! use uds_sandbox::SandboxMode;
//!
//! let identity = Arc::new(Identity::load_or_generate("introd.key".as_ref())?.0);
//! let socket = Path::new("/run/user/1000/ocapn/intro.sock");
//! let listener = Listener::bind_path(socket, 0o600)?;
//! let report = uds_sandbox::Policy::new()
//!     .allow_remove(socket) // at shutdown
//!     .confine(SandboxMode::Auto)?;
//! let config = Config {
//!     sandbox: Some(report), // shown by `status`
//!     ..Config::default()
//! };
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let server = Server::new(identity, config);
//!     let listener = listener.activate()?;
//!     tokio::select! {
//!         _ = server.serve(listener.listener()) => {}
//!         _ = tokio::signal::ctrl_c() => server.shutdown(),
//!     }
//!     Ok(()) // dropping `listener` removes the socket file
//! })
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

pub mod admin;
mod config;
mod listen;
pub mod router;
mod server;
mod stats;

pub use config::{Config, LimitError, Limits, Policy};
pub use listen::{
    ActiveListener, ListenAddr, ListenError, Listener, MAX_SOCKET_PATH, check_abstract_name,
    check_socket_path, default_socket_path, ensure_private_dir,
};
pub use server::{PeerStatus, Server, Status};
pub use stats::{Counters, Reason};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
