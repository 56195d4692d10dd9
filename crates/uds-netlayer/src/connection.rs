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
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer: for an outgoing connection the locator we dialed; for an
    /// incoming one the `from` locator of the intro. Proven when
    /// [`identity_proven`](Self::identity_proven) is true; otherwise only
    /// the introduction server vouches for it.
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
    /// server. Always `false` for outgoing connections. In e2ee mode a
    /// relay can only pass ciphertext along, so this is a warning, not a
    /// breach.
    pub relayed: bool,
    /// Whether the bytes are end-to-end encrypted (Noise XX).
    pub encrypted: bool,
    /// Whether the peer proved it holds the key of [`peer`](Self::peer)'s
    /// designator (true exactly for encrypted connections).
    pub identity_proven: bool,
    /// The Noise handshake hash of an encrypted connection: a value both
    /// ends share and nobody else can choose, for binding a protocol above
    /// to this channel.
    pub handshake_hash: Option<[u8; 32]>,
}

/// The bytes of a connection: a plain socket, or an encrypted channel over
/// one.
#[derive(Debug)]
pub(crate) enum Inner {
    Plain(UnixStream),
    #[cfg(feature = "e2ee")]
    Encrypted(Box<uds_e2ee::E2eeStream<UnixStream>>),
}

/// A connection to a peer: a direct, anonymous Unix stream socket, end-to-end
/// encrypted unless the netlayer is in plaintext mode.
///
/// It is [`AsyncRead`] + [`AsyncWrite`]; [`Connection::framed`] gives a
/// stream/sink of Syrup messages (raw or bytestring framing). Call `flush`
/// after writing (an encrypted connection sends data in frames when flushed
/// or when a frame is full) and `shutdown` when done (an encrypted
/// connection sends its authenticated end of data). Peers must not send fds
/// over it: the netlayer asks the kernel to refuse them where it can, and a
/// plain read closes any that arrive.
#[derive(Debug)]
pub struct Connection {
    inner: Inner,
    info: ConnectionInfo,
}

impl Connection {
    pub(crate) fn new(inner: Inner, info: ConnectionInfo) -> Connection {
        Connection { inner, info }
    }

    /// What is known about the other end.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The peer's locator (see [`ConnectionInfo::peer`]).
    pub fn peer(&self) -> &Locator {
        &self.info.peer
    }

    /// Whether the connection is end-to-end encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.info.encrypted
    }

    /// The socket. Do not read or write it directly: on an encrypted
    /// connection that would break the channel.
    pub fn get_ref(&self) -> &UnixStream {
        match &self.inner {
            Inner::Plain(s) => s,
            #[cfg(feature = "e2ee")]
            Inner::Encrypted(s) => s.get_ref(),
        }
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

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.inner {
            Inner::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "e2ee")]
            Inner::Encrypted($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "e2ee")]
            Inner::Encrypted(s) => s.is_write_vectored(),
        }
    }
}
