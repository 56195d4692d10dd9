//! A connection between two peers.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;
use uds_fdpass::Credentials;
use uds_syrup::codec::{Framing, SyrupCodec};
use uds_syrup::{Designator, Limits, Locator};

/// Makes a passed or created socket end a tokio stream that refuses fds.
pub(crate) fn into_tokio(fd: OwnedFd) -> io::Result<UnixStream> {
    // Peers have no reason to pass fds over a connection: where the kernel
    // can, refuse them (a plain read would close them anyway).
    let _ = uds_fdpass::refuse_fds(&fd);
    let std = StdStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialed.
    Outgoing,
    /// The peer dialed us.
    Incoming,
}

/// What is known about a connection's other end.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer: for an outgoing connection the locator we dialed; for an
    /// incoming one the `from` locator of the intro, which only the
    /// introduction server vouches for.
    pub peer: Locator,
    /// Who opened it.
    pub direction: Direction,
    /// The introduction server that passed the socket (its designator).
    pub via: Designator,
    /// The process that created the socket (`SO_PEERCRED` of the passed
    /// end): for an outgoing connection, ourselves.
    pub creator: Credentials,
    /// Whether the socket was created by the introduction server's own
    /// process rather than by a dialing peer: a relaying (or eavesdropping)
    /// server. Always `false` for outgoing connections.
    pub relayed: bool,
}

/// A connection to a peer: a direct, anonymous Unix stream socket.
///
/// It is [`AsyncRead`] + [`AsyncWrite`]; [`Connection::framed`] gives a
/// stream/sink of Syrup messages (raw or bytestring framing). Peers must not
/// send fds over it: the netlayer asks the kernel to refuse them where it can,
/// and a plain read closes any that arrive.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    info: ConnectionInfo,
}

impl Connection {
    pub(crate) fn new(stream: UnixStream, info: ConnectionInfo) -> Connection {
        Connection { stream, info }
    }

    /// What is known about the other end.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The peer's locator (see [`ConnectionInfo::peer`]).
    pub fn peer(&self) -> &Locator {
        &self.info.peer
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// Splits into the socket and the information.
    pub fn into_parts(self) -> (UnixStream, ConnectionInfo) {
        (self.stream, self.info)
    }

    /// A stream and sink of Syrup messages over this connection, with the
    /// given framing and the default [`Limits`].
    pub fn framed(self, framing: Framing) -> Framed<Connection, SyrupCodec> {
        self.framed_with(framing, Limits::default())
    }

    /// The same with explicit decoder limits.
    pub fn framed_with(self, framing: Framing, limits: Limits) -> Framed<Connection, SyrupCodec> {
        Framed::new(self, SyrupCodec::with_limits(framing, limits))
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
