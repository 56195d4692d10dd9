//! Why a handshake, a key or a key file was refused.

use std::path::PathBuf;

use uds_syrup::{Designator, DesignatorError, WireError};

/// A refusal by one of the handshake state machines or key checks. Each
/// reason is its own variant; none of them carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message is not a well-formed record of the protocol.
    #[error("malformed message: {0}")]
    Malformed(#[from] WireError),
    /// A message that does not belong at this point of the handshake.
    #[error("expected {expected}, got {found}")]
    UnexpectedMessage {
        /// What the state machine waits for.
        expected: &'static str,
        /// What arrived (a record label or a value kind).
        found: String,
    },
    /// Input after the handshake ended (in success or failure).
    #[error("the handshake is already over")]
    Finished,
    /// The server's key is not the one configured.
    #[error(
        "the introduction server is {found}, but {expected} was pinned: refusing to register \
         (check the server, or the pinned key)"
    )]
    PinnedKeyMismatch {
        /// The pinned key.
        expected: Designator,
        /// The key the server presented.
        found: Designator,
    },
    /// Not the encoding of a point on the curve.
    #[error("{0} is not a valid Ed25519 public key")]
    InvalidKey(Designator),
    /// A non-canonical encoding of a point.
    #[error("{0} is a non-canonical encoding of an Ed25519 public key")]
    NonCanonicalKey(Designator),
    /// A small-order point, for which signatures prove nothing.
    #[error("{0} is a weak (small-order) Ed25519 public key")]
    WeakKey(Designator),
    /// The draft-shaped response echoed other bytes than our challenge.
    #[error("the server's response signs a different challenge than the one we sent")]
    WrongEcho,
    /// The server's signature on our challenge does not verify.
    #[error("the server's signature on our challenge is invalid for its key {0}")]
    BadServerSignature(Designator),
    /// `uds:signature` carries a payload other than our challenge.
    #[error("uds:signature signs a different payload than our challenge (a replay?)")]
    WrongPayload,
    /// The peer's signature on our challenge does not verify.
    #[error("the signature is invalid for the key of {0}")]
    BadPeerSignature(Designator),
    /// A challenge shorter than 16 bytes.
    #[error("refusing a {0}-byte challenge: challenges must be 16 to 1024 bytes")]
    ChallengeTooShort(usize),
    /// A challenge longer than 1024 bytes.
    #[error("refusing a {0}-byte challenge: challenges must be 16 to 1024 bytes")]
    ChallengeTooLong(usize),
    /// A challenge that is a complete Syrup value (a signing oracle for
    /// CapTP, whose signed payloads are Syrup records).
    #[error("refusing to sign a challenge that is a complete Syrup value")]
    ChallengeIsSyrup,
    /// A challenge that starts like the statement binding an end-to-end
    /// encryption key to an identity (`ocapn-uds-e2ee-static-key:`): signing
    /// it would let the introduction server impersonate us in e2ee mode.
    #[error(
        "refusing to sign a challenge that starts with \"ocapn-uds-e2ee-static-key:\" \
         (the server may be trying to impersonate us on end-to-end encrypted connections)"
    )]
    ChallengeIsE2eeStaticKey,
    /// A locator of another netlayer.
    #[error("the locator's transport is {0:?}, not unix-domain-socket")]
    WrongTransport(String),
    /// A designator that is not a base32 key.
    #[error("bad designator: {0}")]
    BadDesignator(#[from] DesignatorError),
}

/// Why an identity key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file can be read or written by others.
    #[error(
        "key file {path} has mode {mode:04o}; it must be private to its owner: run `chmod 600 {path}`"
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file.
    #[error("key file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// The file belongs to another user.
    #[error(
        "key file {path} is owned by uid {owner}, not by this process's uid {me}: whoever owns \
         it can read it; use a key file of your own (chown it, or create one with keygen)"
    )]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The file exists (saving never overwrites).
    #[error("key file {0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error(
        "key file {0} is not a PKCS#8 PEM Ed25519 private key (as written by `uds-introd keygen`)"
    )]
    BadKey(PathBuf),
}
