//! Socket-level operations on any fd: socketpairs, peer credentials, and
//! refusing fds.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, getsockopt, setsockopt, sockopt};

use crate::sys;

/// The longest path, or abstract name, a Unix socket address can hold, in
/// bytes: the kernel's `sun_path` has 108, one of them for the terminating
/// NUL of a path or the leading NUL of an abstract name.
pub const MAX_SOCKET_ADDR: usize = 107;

/// Credentials of a process, as the kernel reports them.
///
/// Exhaustive on purpose: it is the kernel's `struct ucred`, and callers
/// build their own (for example to compare with a policy).
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
/// carries the sending process's credentials
/// ([`Received::credentials`](crate::Received::credentials)).
pub fn set_pass_credentials(fd: impl AsFd, on: bool) -> io::Result<()> {
    setsockopt(&fd.as_fd(), sockopt::PassCred, &on).map_err(io::Error::from)
}

/// The result of [`refuse_fds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassRights {
    /// The kernel now refuses to queue fds to this socket.
    Refused,
    /// The kernel has no `SO_PASSRIGHTS` (before Linux 6.16): fds can still
    /// arrive, so read only with [`FdStream`](crate::FdStream) (which closes or
    /// returns them).
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
