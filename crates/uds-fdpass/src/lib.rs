//! Async file-descriptor passing (SCM_RIGHTS) on Unix stream sockets, for
//! tokio, that never loses or leaks a descriptor.
//!
//! The kernel's rules for passing fds over stream sockets are unforgiving:
//!
//! * a plain `read()` silently **closes** any fd that arrives;
//! * a control buffer too small for what was sent makes the kernel close
//!   the excess and set `MSG_CTRUNC`, and the fds that did arrive leak unless
//!   the reader closes them;
//! * fds travel with the first byte of the `sendmsg` that carried them, and
//!   a read that reaches that segment **ends right after it**: the fds belong
//!   to the end of the read that brought them;
//! * at most 253 fds per message (`SCM_MAX_FD`), and at least one data byte.
//!
//! [`FdStream`] owns all of that: every receive is a `recvmsg` with
//! `MSG_CMSG_CLOEXEC` and room for 253 fds, returning the bytes and the fds
//! that came with them ([`Received`]); truncation closes what arrived and is
//! an error; sends refuse what the kernel would drop.
//!
//! Around it: [`socketpair`], [`check_stream_socket`] (is this fd really a
//! connected AF_UNIX stream socket? if not, what is it?), peer credentials
//! ([`peer_credentials`], [`peer_pidfd`]), refusing fds on a socket that must
//! never receive them ([`refuse_fds`]), and the [`inherit`] module for fds
//! inherited from a parent process or handed to a child.
//!
//! This is the only crate of the workspace with `unsafe` code; every block
//! has a `// SAFETY:` comment.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! use std::io::{Read, Write};
//! use std::os::fd::AsFd;
//! use bytes::BytesMut;
//! use uds_fdpass::{check_stream_socket, socketpair, FdStream};
//!
//! // A channel between two parties, and a connection to hand over on it.
//! let (tx, rx) = FdStream::pair()?;
//! let (keep, give) = socketpair()?;
//! tx.send(b"take this", &[give.as_fd()]).await.unwrap();
//! drop(give); // the receiver has its own copy now
//!
//! let mut buf = BytesMut::new();
//! let got = rx.recv(&mut buf).await?;
//! assert_eq!(&buf[..], b"take this");
//! let passed = got.fds.into_iter().next().unwrap();
//! check_stream_socket(&passed).unwrap();
//!
//! // The two ends now talk directly.
//! let mut mine = std::os::unix::net::UnixStream::from(keep);
//! let mut theirs = std::os::unix::net::UnixStream::from(passed);
//! mine.write_all(b"hi")?;
//! let mut two = [0u8; 2];
//! theirs.read_exact(&mut two)?;
//! assert_eq!(&two, b"hi");
//! # Ok(()) }
//! ```
#![allow(unsafe_code)] // the only crate that may: it wraps the kernel's fd-passing interface

mod check;
pub mod inherit;
mod stream;
mod sys;

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, getsockopt, setsockopt, sockopt};

pub use check::{SocketCheckError, check_listening_socket, check_stream_socket};
pub use stream::{FdStream, Received, SendError};
pub use sys::{MAX_FDS, TruncatedError};

/// Credentials of a process, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Process id. 0 if the process is in another pid namespace.
    pub pid: i32,
    /// User id (65534 if unmapped in this user namespace).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A connected pair of AF_UNIX stream sockets, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// `SO_PEERCRED`: the process that created the peer end of `fd` (for a
/// `socketpair()` end, the process that called `socketpair()`, even after
/// the end was passed elsewhere; for an accepted connection, the process
/// that called `connect()`).
pub fn peer_credentials(fd: impl AsFd) -> io::Result<Credentials> {
    let c = getsockopt(&fd.as_fd(), sockopt::PeerCredentials).map_err(io::Error::from)?;
    Ok(Credentials {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// `SO_PEERPIDFD`: a pidfd of that same process, which unlike a pid cannot
/// be confused by pid reuse. `Ok(None)` on kernels without it (before Linux
/// 6.5); any other failure is an error (fail closed).
pub fn peer_pidfd(fd: impl AsFd) -> io::Result<Option<OwnedFd>> {
    sys::peer_pidfd(fd.as_fd())
}

/// Turns `SO_PASSCRED` on or off for `fd`: when on, each receive on it
/// carries the sending process's credentials ([`Received::credentials`]).
pub fn set_pass_credentials(fd: impl AsFd, on: bool) -> io::Result<()> {
    setsockopt(&fd.as_fd(), sockopt::PassCred, &on).map_err(io::Error::from)
}

/// The result of [`refuse_fds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassRights {
    /// The kernel now refuses to queue fds to this socket.
    Refused,
    /// The kernel has no `SO_PASSRIGHTS` (before Linux 6.16): fds can still
    /// arrive, so read only with [`FdStream`] (which closes or returns them).
    Unsupported,
}

/// Turns `SO_PASSRIGHTS` off for `fd`, so that the kernel refuses any fd sent
/// to it (the sender's `sendmsg` fails). Where the kernel lacks the option
/// this changes nothing and says so.
pub fn refuse_fds(fd: impl AsFd) -> io::Result<PassRights> {
    match sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, sys::SO_PASSRIGHTS, 0) {
        Ok(()) => Ok(PassRights::Refused),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(PassRights::Unsupported),
        Err(e) => Err(e),
    }
}
