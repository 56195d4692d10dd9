//! Errors of the netlayer.

use uds_syrup::{Designator, WireError};

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
        "not registered with any introduction server right now (servers: {servers}); the \
         netlayer keeps retrying in the background"
    )]
    NotRegistered {
        /// The configured servers.
        servers: String,
    },
    /// None of our registered servers is in the target's hints.
    #[error(
        "no shared introduction server: {target} can be reached through {theirs}, we are \
         registered with {ours}"
    )]
    NoSharedServer {
        /// The target.
        target: Designator,
        /// Servers in the target's hints.
        theirs: String,
        /// Servers we are registered with.
        ours: String,
    },
    /// Every candidate server failed to deliver the connection.
    #[error("could not reach {target}: {attempts}")]
    Unreachable {
        /// The target.
        target: Designator,
        /// What happened with each server tried.
        attempts: String,
    },
    /// The netlayer has been shut down.
    #[error("the netlayer is shut down")]
    Closed,
}

/// Formats a list of designators for error messages.
pub(crate) fn list(ds: impl IntoIterator<Item = Designator>) -> String {
    let v: Vec<String> = ds.into_iter().map(|d| d.to_string()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}
