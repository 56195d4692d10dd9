//! Checking what an fd really is before trusting it as a connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::stat::{SFlag, fstat};

use crate::sys::getsockopt_int;

/// What an fd was found to be instead of a connected AF_UNIX stream socket
/// (or, for [`check_listening_socket`], a listening one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketCheckError {
    /// A regular file.
    #[error("expected a Unix stream socket, found a regular file")]
    RegularFile,
    /// A directory.
    #[error("expected a Unix stream socket, found a directory")]
    Directory,
    /// A pipe or FIFO.
    #[error("expected a Unix stream socket, found a pipe or FIFO")]
    Pipe,
    /// A character device.
    #[error("expected a Unix stream socket, found a character device")]
    CharacterDevice,
    /// A block device.
    #[error("expected a Unix stream socket, found a block device")]
    BlockDevice,
    /// Something else that is not a socket (an eventfd, a pidfd, ...).
    #[error("expected a Unix stream socket, found a non-socket fd (file mode {0:#o})")]
    NotASocket(u32),
    /// A socket that is listening for connections.
    #[error("expected a connected Unix stream socket, found a listening socket")]
    Listening,
    /// A socket that is not listening (for [`check_listening_socket`]).
    #[error("expected a listening Unix stream socket, found one that is not listening")]
    NotListening,
    /// A datagram socket.
    #[error("expected a Unix stream socket, found a datagram socket")]
    Datagram,
    /// A seqpacket socket.
    #[error("expected a Unix stream socket, found a seqpacket socket")]
    Seqpacket,
    /// A socket of another type (raw, ...).
    #[error("expected a Unix stream socket, found a socket of type {0}")]
    OtherType(i32),
    /// A socket of another address family (IPv4, IPv6, netlink, ...).
    #[error("expected an AF_UNIX socket, found one of address family {0}")]
    OtherFamily(i32),
    /// A stream socket with no peer.
    #[error("expected a connected Unix stream socket, found an unconnected one")]
    Unconnected,
    /// The fd could not be inspected.
    #[error("cannot inspect the fd: {0}")]
    Io(#[from] io::Error),
}

impl SocketCheckError {
    /// What the fd was found to be, as a noun phrase for messages ("a
    /// regular file", "a listening socket", ...).
    ///
    /// ```
    /// use uds_fdpass::{check_stream_socket, SocketCheckError};
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// let err = check_stream_socket(&file).unwrap_err();
    /// assert_eq!(err.found(), "a character device");
    /// ```
    pub fn found(&self) -> String {
        match self {
            SocketCheckError::RegularFile => "a regular file".into(),
            SocketCheckError::Directory => "a directory".into(),
            SocketCheckError::Pipe => "a pipe or FIFO".into(),
            SocketCheckError::CharacterDevice => "a character device".into(),
            SocketCheckError::BlockDevice => "a block device".into(),
            SocketCheckError::NotASocket(mode) => format!("a non-socket fd (file mode {mode:#o})"),
            SocketCheckError::Listening => "a listening socket".into(),
            SocketCheckError::NotListening => "a socket that is not listening".into(),
            SocketCheckError::Datagram => "a datagram socket".into(),
            SocketCheckError::Seqpacket => "a seqpacket socket".into(),
            SocketCheckError::OtherType(t) => format!("a socket of type {t}"),
            SocketCheckError::OtherFamily(f) => format!("a socket of address family {f}"),
            SocketCheckError::Unconnected => "an unconnected socket".into(),
            SocketCheckError::Io(e) => format!("an fd that cannot be inspected ({e})"),
        }
    }
}

fn unix_stream(fd: BorrowedFd<'_>) -> Result<(), SocketCheckError> {
    let st = fstat(fd).map_err(io::Error::from)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFSOCK {
        return Err(match kind {
            SFlag::S_IFREG => SocketCheckError::RegularFile,
            SFlag::S_IFDIR => SocketCheckError::Directory,
            SFlag::S_IFIFO => SocketCheckError::Pipe,
            SFlag::S_IFCHR => SocketCheckError::CharacterDevice,
            SFlag::S_IFBLK => SocketCheckError::BlockDevice,
            _ => SocketCheckError::NotASocket(st.st_mode),
        });
    }
    let family = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if family != libc::AF_UNIX {
        return Err(SocketCheckError::OtherFamily(family));
    }
    match getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)? {
        libc::SOCK_STREAM => Ok(()),
        libc::SOCK_DGRAM => Err(SocketCheckError::Datagram),
        libc::SOCK_SEQPACKET => Err(SocketCheckError::Seqpacket),
        other => Err(SocketCheckError::OtherType(other)),
    }
}

fn listening(fd: BorrowedFd<'_>) -> Result<bool, SocketCheckError> {
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0)
}

/// Checks that `fd` is a **connected** AF_UNIX `SOCK_STREAM` socket, the only
/// kind this protocol passes; the error says what it is instead.
///
/// ```
/// use uds_fdpass::{check_stream_socket, socketpair, SocketCheckError};
/// let (a, _b) = socketpair().unwrap();
/// assert!(check_stream_socket(&a).is_ok());
/// let file = std::fs::File::open("/dev/null").unwrap();
/// assert!(matches!(check_stream_socket(&file), Err(SocketCheckError::CharacterDevice)));
/// ```
pub fn check_stream_socket(fd: impl AsFd) -> Result<(), SocketCheckError> {
    let fd = fd.as_fd();
    // The common case in two system calls: a stream socket whose peer has an
    // AF_UNIX address (so it is an AF_UNIX socket, connected, not
    // listening). Anything else takes the full inspection below, which says
    // what the fd is.
    if getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok() == Some(libc::SOCK_STREAM)
        && nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd())
            .is_ok_and(|a| {
                nix::sys::socket::SockaddrLike::family(&a)
                    == Some(nix::sys::socket::AddressFamily::Unix)
            })
    {
        return Ok(());
    }
    unix_stream(fd)?;
    if listening(fd)? {
        return Err(SocketCheckError::Listening);
    }
    match nix::sys::socket::getpeername::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()) {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::ENOTCONN) => Err(SocketCheckError::Unconnected),
        Err(e) => Err(SocketCheckError::Io(e.into())),
    }
}

/// Checks that `fd` is a **listening** AF_UNIX `SOCK_STREAM` socket (as
/// passed by systemd socket activation).
pub fn check_listening_socket(fd: impl AsFd) -> Result<(), SocketCheckError> {
    let fd = fd.as_fd();
    unix_stream(fd)?;
    if listening(fd)? {
        Ok(())
    } else {
        Err(SocketCheckError::NotListening)
    }
}
