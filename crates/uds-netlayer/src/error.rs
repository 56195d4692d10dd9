//! Errors of the netlayer, as types a caller can match.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use uds_handshake::HandshakeError;
use uds_handshake::io::{ReadError, WriteError};
use uds_syrup::{Designator, WireError};

/// The longest path or abstract name of a Unix socket, in bytes
/// ([`uds_fdpass::MAX_SOCKET_ADDR`]).
pub use uds_fdpass::MAX_SOCKET_ADDR;

/// Why the netlayer could not be built, connect, or accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlayerError {
    /// The builder was given no introduction server.
    #[error(
        "no introduction server configured: add one with intro_path, intro_abstract, intro_fd \
         or intro_from_env"
    )]
    NoIntroServer,
    /// `OCAPN_UDS_INTRO_FD` (or another inherited fd) is unusable.
    #[error("inherited intro socket: {0}")]
    Inherited(String),
    /// An introduction server's path or abstract name is longer than a
    /// Unix socket address can hold, so it could never be reached.
    #[error(
        "introduction server {server}: it is {len} bytes long; a Unix socket path or abstract \
         name can have at most {MAX_SOCKET_ADDR} bytes"
    )]
    IntroAddressTooLong {
        /// The path, or `@` and the abstract name.
        server: String,
        /// Its length in bytes (without the `@`).
        len: usize,
    },
    /// The locator is not a `unix-domain-socket` locator.
    #[error("cannot connect to {locator}: {source}")]
    BadLocator {
        /// The locator, as given.
        locator: String,
        /// What is wrong with it.
        source: WireError,
    },
    /// No introduction server is registered right now.
    #[error(
        "not registered with any introduction server right now (servers: {}); the netlayer \
         keeps retrying in the background",
        .servers.join(", ")
    )]
    NotRegistered {
        /// The configured servers.
        servers: Vec<String>,
    },
    /// None of our registered servers is in the target's hints.
    #[error(
        "no shared introduction server: {target} can be reached through {}, we are registered \
         with {}",
        list(.theirs),
        list(.ours)
    )]
    NoSharedServer {
        /// The target.
        target: Designator,
        /// Servers in the target's hints.
        theirs: Vec<Designator>,
        /// Servers we are registered with.
        ours: Vec<Designator>,
    },
    /// Every candidate server failed to deliver the connection.
    #[error("could not reach {target}: {}", Attempts(.attempts))]
    Unreachable {
        /// The target.
        target: Designator,
        /// What happened with each server tried, in order.
        attempts: Vec<Attempt>,
    },
    /// The netlayer has been shut down.
    #[error("the netlayer is shut down")]
    Closed,
    /// [`Builder::confine`](crate::Builder::confine) could not confine the
    /// process; what the inner error says was not applied (see
    /// [`SandboxError`](uds_sandbox::SandboxError) for what to do).
    #[error("cannot confine the process: {0}")]
    Sandbox(#[source] uds_sandbox::SandboxError),
}

/// One try to reach a peer through one introduction server.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The server.
    pub server: Designator,
    /// What went wrong.
    pub error: AttemptError,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "via {}: {}", self.server, self.error)
    }
}

struct Attempts<'a>(&'a [Attempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Why one attempt to reach a peer through one server failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// A socket could not be created.
    #[error("cannot create a socket: {0}")]
    Socket(Arc<io::Error>),
    /// The intro could not be sent to the server (the link failed).
    #[error("the server connection failed: {0}")]
    Link(WriteError),
    /// The connection closed before the peer answered: the server did not
    /// deliver it, or the peer refused an encrypted connection.
    #[error(
        "the server closed the connection before the peer answered: the peer is not \
         registered there, or it refused an encrypted connection (plaintext-only and Goblins \
         peers need plaintext: --plaintext / Builder::plaintext)"
    )]
    NotDelivered,
    /// The peer did not answer in time.
    #[error("the peer did not answer within {0:?}")]
    NoAnswer(Duration),
    /// The connection failed during the handshake.
    #[error("during the handshake: {0}")]
    Io(Arc<io::Error>),
    /// The e2ee handshake failed: the peer could not prove its identity
    /// (a lying or tampering introduction server, or the wrong peer).
    #[cfg(feature = "e2ee")]
    #[error("the peer could not prove its identity: {0}")]
    Handshake(uds_e2ee::E2eeError),
}

impl AttemptError {
    /// The error of a failed dialing handshake.
    #[cfg(feature = "e2ee")]
    pub(crate) fn from_handshake(e: io::Error) -> AttemptError {
        match uds_e2ee::E2eeError::from_io(&e) {
            // The server closed our socket without delivering it.
            Some(uds_e2ee::E2eeError::Truncated(uds_e2ee::FrameKind::Message2)) => {
                AttemptError::NotDelivered
            }
            Some(err) => AttemptError::Handshake(err.clone()),
            // Closed with our message 1 unread: never delivered either.
            None if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
            {
                AttemptError::NotDelivered
            }
            None => AttemptError::Io(Arc::new(e)),
        }
    }
}

/// Why a link to an introduction server ended or could not be set up
/// (logged by the netlayer, which retries).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Connecting to the server's socket failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The server's address.
        address: String,
        /// The error.
        source: io::Error,
    },
    /// The inherited socket was already used (and cannot be reopened).
    #[error("the inherited intro socket was already used")]
    InheritedUsed,
    /// The inherited socket is not a connected stream socket.
    #[error("the inherited intro socket is unusable: {0}")]
    InheritedUnusable(String),
    /// The server's credentials could not be read.
    #[error("cannot read the server's credentials: {0}")]
    Credentials(io::Error),
    /// The server runs as a uid we do not trust.
    #[error(
        "refusing to register: the server runs as uid {uid} (pid {pid}), trusted are {trusted:?} \
         (see allow_server_uid)"
    )]
    UntrustedServer {
        /// Its uid.
        uid: u32,
        /// Its pid.
        pid: i32,
        /// The uids we trust.
        trusted: Vec<u32>,
    },
    /// The registration handshake failed.
    #[error("registration refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// Registration did not finish in time.
    #[error("registration did not finish within {0:?}")]
    RegistrationTimeout(Duration),
    /// The server closed the connection during registration.
    #[error("the server closed the connection during registration")]
    ClosedDuringRegistration,
    /// The server sent something out of place.
    #[error("unexpected from the server: {0}")]
    Unexpected(String),
    /// Reading from the server failed or broke the protocol.
    #[error("reading from the server: {0}")]
    Read(#[from] ReadError),
    /// Writing to the server failed.
    #[error("writing to the server: {0}")]
    Write(#[from] WriteError),
}

/// Formats a list of designators for error messages.
pub(crate) fn list(ds: &[Designator]) -> String {
    if ds.is_empty() {
        "none".to_owned()
    } else {
        ds.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
