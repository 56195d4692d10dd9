//! What went wrong, as one enum a caller can match.

use std::fmt;
use std::io;

use uds_syrup::{Designator, WireError};

/// A unit of the wire format: one of the three handshake messages, or a
/// transport frame. Errors say which one they concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Handshake message 1, initiator → responder: the initiator's ephemeral
    /// key (`-> e`), empty payload.
    Message1,
    /// Handshake message 2, responder → initiator (`<- e, ee, s, es`) with
    /// the responder's identity record.
    Message2,
    /// Handshake message 3, initiator → responder (`-> s, se`) with the
    /// initiator's identity record.
    Message3,
    /// A transport frame (application data, or the empty end-of-data frame).
    Transport,
}

impl FrameKind {
    /// The handshake message that comes at `index` (0, 1 or 2).
    pub(crate) const fn message(index: usize) -> FrameKind {
        match index {
            0 => FrameKind::Message1,
            1 => FrameKind::Message2,
            _ => FrameKind::Message3,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Message1 => "handshake message 1",
            FrameKind::Message2 => "handshake message 2",
            FrameKind::Message3 => "handshake message 3",
            FrameKind::Transport => "a transport frame",
        })
    }
}

/// Why an end-to-end encrypted channel failed or refused something.
///
/// Every variant ends the channel: the state machine (or stream) that
/// returned it answers every later call with the same error. None of them
/// carries secret material. In the [`E2eeStream`](crate::E2eeStream)
/// adapter these errors arrive inside an [`io::Error`]; get them back with
/// [`E2eeError::from_io`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E2eeError {
    /// The peer proved an identity, but not the one expected: for the
    /// initiator the `to` designator it dialed, for the responder the
    /// `from` designator the introduction server delivered.
    #[error(
        "the peer proved it is {found}, but {expected} was expected: the introduction server \
         connected us to someone else (or lied about who dialed); close the connection and \
         try another server"
    )]
    WrongIdentity {
        /// The designator we required.
        expected: Designator,
        /// The designator the peer's identity record names.
        found: Designator,
    },
    /// The identity record's signature does not verify for the static key
    /// the handshake delivered: the sender does not hold that identity.
    #[error(
        "the identity record of {0} does not sign the static key of this handshake: the peer \
         does not hold that identity (a relay or a lying introduction server?)"
    )]
    BadSignature(Designator),
    /// The identity record names a key that is not a valid, canonical,
    /// non-weak Ed25519 public key.
    #[error("the identity record names {0}, which is not a usable Ed25519 public key")]
    InvalidIdentityKey(Designator),
    /// The decrypted payload of message 2 or 3 is not
    /// `<uds:e2ee-identity PUBLIC-KEY SIG-VAL>`.
    #[error("the peer's identity record is malformed: {0}")]
    MalformedIdentity(WireError),
    /// Authenticated decryption failed: the bytes were altered, or the two
    /// ends do not share a transcript (a different prologue: the
    /// introduction server told them different `from`/`to` designators).
    #[error(
        "decrypting {0} failed: the bytes were altered on the way, or the two ends disagree on \
         who dialed whom (an introduction server that lied); close the connection"
    )]
    DecryptFailed(FrameKind),
    /// A Diffie-Hellman result was all zeros: the peer sent a low-order
    /// X25519 point, which would make the shared secret predictable.
    #[error("the peer's X25519 key is a low-order point (an all-zero shared secret): refused")]
    LowOrderKey,
    /// A handshake message whose length is not the one the protocol fixes.
    #[error("{kind} is {found} bytes long, but must be exactly {expected}")]
    WrongLength {
        /// Which message.
        kind: FrameKind,
        /// The length it claims (or has).
        found: usize,
        /// The only valid length.
        expected: usize,
    },
    /// A frame or message shorter than its fixed parts (a transport frame
    /// shorter than its 16-byte tag, a handshake message shorter than its
    /// keys and tags).
    #[error("{kind} of {found} bytes is too short: it needs at least {min}")]
    TooShort {
        /// Which message.
        kind: FrameKind,
        /// Its length.
        found: usize,
        /// The least it must have.
        min: usize,
    },
    /// Something to send that does not fit in one frame (at most 65535
    /// bytes after the length, so 65519 bytes of transport plaintext).
    #[error("{found} bytes do not fit in one frame: at most {max} (split the data)")]
    FrameTooLong {
        /// The length asked for.
        found: usize,
        /// The most that fits.
        max: usize,
    },
    /// A cipher state used all its nonces (2^64 - 1 messages); the channel
    /// ends rather than reuse one.
    #[error("the channel sent or received 2^64 - 1 frames and ran out of nonces: reconnect")]
    NonceExhausted,
    /// The stream does not start like an e2ee handshake (whose first byte is
    /// 0x00, the high byte of message 1's length).
    #[error(
        "not an e2ee stream: it starts with the byte {first_byte:#04x}, not 0x00 (a plaintext \
         peer?)"
    )]
    NotE2ee {
        /// The first byte received.
        first_byte: u8,
    },
    /// The stream ended too early: during the handshake, or (for
    /// [`FrameKind::Transport`]) without the peer's authenticated end of
    /// data, so what arrived may have been cut short by someone else.
    #[error("{}", truncated_message(*.0))]
    Truncated(FrameKind),
    /// A transport frame after the peer's end-of-data frame.
    #[error("the peer sent data after its authenticated end of data")]
    DataAfterEnd,
    /// A write after the end-of-data frame was sent (after shutdown).
    #[error("writing after the end of data was sent (the stream was shut down)")]
    WriteAfterEnd,
    /// A call that does not fit the state of the state machine (a bug in the
    /// caller, not the peer's doing).
    #[error("the e2ee state machine was used out of order: {0}")]
    Misuse(&'static str),
}

fn truncated_message(kind: FrameKind) -> String {
    match kind {
        FrameKind::Transport => "the stream ended without the peer's authenticated end of data: \
                                 it was cut (by a relay, the introduction server or a crash), \
                                 so what was received may be incomplete"
            .to_owned(),
        kind => format!(
            "the stream ended before {kind} was complete: the handshake did not finish (the peer \
             or the introduction server closed the connection)"
        ),
    }
}

impl E2eeError {
    /// The [`io::ErrorKind`] this error has inside an [`io::Error`]:
    /// `UnexpectedEof` for truncation, `BrokenPipe` for writing after
    /// shutdown, `InvalidInput` for the caller's own mistakes (data too long
    /// for a frame, misuse), `Other` for exhausted nonces, and
    /// `InvalidData` for everything the peer (or someone between) did.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            E2eeError::Truncated(_) => io::ErrorKind::UnexpectedEof,
            E2eeError::WriteAfterEnd => io::ErrorKind::BrokenPipe,
            E2eeError::FrameTooLong { .. } | E2eeError::Misuse(_) => io::ErrorKind::InvalidInput,
            E2eeError::NonceExhausted => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        }
    }

    /// The `E2eeError` inside an [`io::Error`] returned by this crate, if
    /// it carries one (it does not for errors of the underlying stream).
    ///
    /// ```
    /// use uds_e2ee::{E2eeError, FrameKind};
    /// let io: std::io::Error = E2eeError::Truncated(FrameKind::Transport).into();
    /// assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    /// assert_eq!(E2eeError::from_io(&io), Some(&E2eeError::Truncated(FrameKind::Transport)));
    /// ```
    pub fn from_io(error: &io::Error) -> Option<&E2eeError> {
        error.get_ref()?.downcast_ref::<E2eeError>()
    }
}

impl From<E2eeError> for io::Error {
    fn from(e: E2eeError) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}
