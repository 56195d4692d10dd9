//! [`FdStream`]: a tokio Unix stream socket whose every read is a `recvmsg`
//! that keeps the fds that arrive.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::check::{SocketCheckError, check_stream_socket};
use crate::socket::{Credentials, PassRights};
use crate::sys::{self, MAX_FDS};

/// How much free space a receive makes sure the buffer has.
const READ_CHUNK: usize = 8 << 10;

/// What one receive brought: `len` bytes appended to the buffer, and the fds
/// that arrived with them.
///
/// On a stream socket the kernel ends a read right after the segment that
/// carried fds, so **the fds belong to the end of this read**: they were
/// sent with the last of these `len` bytes. A caller that counts the bytes
/// it has received can tag the fds with that running offset.
///
/// Only this crate builds it; more fields may come.
#[derive(Debug)]
#[non_exhaustive]
pub struct Received {
    /// Bytes appended to the buffer. 0 with no fds means end of stream.
    pub len: usize,
    /// The fds that arrived (close-on-exec); dropping them closes them.
    pub fds: Vec<OwnedFd>,
    /// The sender's credentials, when `SO_PASSCRED` is on
    /// ([`FdStream::set_pass_credentials`]).
    pub credentials: Option<Credentials>,
}

impl Received {
    /// Whether the peer has closed its end (nothing more will arrive).
    pub fn is_eof(&self) -> bool {
        self.len == 0 && self.fds.is_empty()
    }
}

/// Why a receive failed.
///
/// [`RecvError::Truncated`] is matched directly, without downcasting an
/// `io::Error`; [`RecvError::is_would_block`] and [`RecvError::kind`] answer
/// the usual I/O questions, and `?` converts it into an [`io::Error`] where
/// one is wanted (a truncation becomes `InvalidData` carrying this error).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::os::fd::AsFd;
/// use bytes::BytesMut;
/// use uds_fdpass::{FdStream, RecvError};
///
/// let (a, b) = FdStream::pair()?;
/// let b = b.with_fd_room(1); // this receiver takes at most one fd
/// let (x, y) = (std::fs::File::open("/dev/null")?, std::fs::File::open("/dev/null")?);
/// a.send(b"two", &[x.as_fd(), y.as_fd()]).await.unwrap();
/// match b.recv(&mut BytesMut::new()).await {
///     Err(RecvError::Truncated { room: 1, closed }) => assert!(closed <= 1),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The kernel truncated the control data (`MSG_CTRUNC`): the sender
    /// passed more fds than this receiver has room for, or this process has
    /// no free fd slots (`RLIMIT_NOFILE`). The fds that arrived have been
    /// closed and the bytes of that receive dropped, so the stream is out of
    /// step: treat it as a protocol violation by the sender, or raise the fd
    /// limit.
    #[error(
        "the kernel truncated the passed file descriptors: either the sender passed more than \
         this receiver has room for ({room}), or this process has no free fd slots \
         (RLIMIT_NOFILE); the {closed} that arrived were closed"
    )]
    Truncated {
        /// Room the receiver had, in fds.
        room: usize,
        /// How many fds arrived and were closed.
        closed: usize,
    },
    /// The socket failed (peer reset, ...), or, from
    /// [`FdStream::try_recv`], nothing was there (`WouldBlock`).
    #[error("receive failed: {0}")]
    Io(#[from] io::Error),
}

impl RecvError {
    /// Whether this is `WouldBlock`: nothing to receive yet.
    pub fn is_would_block(&self) -> bool {
        self.kind() == io::ErrorKind::WouldBlock
    }

    /// The I/O error kind: the socket error's, or `InvalidData` for a
    /// truncation.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            RecvError::Truncated { .. } => io::ErrorKind::InvalidData,
            RecvError::Io(e) => e.kind(),
        }
    }
}

/// A socket error stays itself; a truncation becomes an `InvalidData` error
/// whose inner error is the [`RecvError`].
impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> io::Error {
        match e {
            RecvError::Io(e) => e,
            t @ RecvError::Truncated { .. } => io::Error::new(io::ErrorKind::InvalidData, t),
        }
    }
}

/// Why a send was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// fds with no data bytes: on a stream socket the kernel would drop them.
    #[error("cannot send file descriptors without at least one data byte")]
    NoData,
    /// More than 253 fds in one message.
    #[error("cannot send {0} file descriptors in one message: the kernel allows at most 253")]
    TooManyFds(usize),
    /// The socket failed (peer gone, `ETOOMANYREFS`, ...).
    #[error("send failed: {0}")]
    Io(#[from] io::Error),
}

/// A send error as an [`io::Error`]: refusals become `InvalidInput`.
impl From<SendError> for io::Error {
    fn from(e: SendError) -> io::Error {
        match e {
            SendError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

/// A connected Unix stream socket for tokio that passes file descriptors.
///
/// Every receive is one `recvmsg(MSG_CMSG_CLOEXEC)` with room for 253 fds,
/// so no fd is ever silently closed by a plain `read()`, truncated away, or
/// leaked: each one that arrives is returned as an [`OwnedFd`] together with
/// the bytes it came with. If the kernel reports truncated control data
/// (`MSG_CTRUNC`), the fds that did arrive are closed and
/// [`RecvError::Truncated`] returned.
///
/// Sends take `&self`, as do receives, so one task can read while another
/// writes. Two tasks that interleave whole messages on one stream must
/// serialise their sends themselves (a send may be split across several
/// system calls).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use bytes::BytesMut;
/// use std::os::fd::AsFd;
/// use uds_fdpass::FdStream;
///
/// let (a, b) = FdStream::pair()?;
/// let file = std::fs::File::open("/dev/null")?;
/// a.send(b"here", &[file.as_fd()]).await.unwrap();
/// let mut buf = BytesMut::new();
/// let got = b.recv(&mut buf).await?;
/// assert_eq!(&buf[..], b"here");
/// assert_eq!(got.fds.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FdStream {
    io: UnixStream,
    room_fds: usize,
}

impl FdStream {
    /// A connected pair (`socketpair()`, close-on-exec).
    pub fn pair() -> io::Result<(FdStream, FdStream)> {
        let (a, b) = crate::socket::socketpair()?;
        Ok((FdStream::adopt(a)?, FdStream::adopt(b)?))
    }

    /// A connected pair of which only the first end is wrapped; the second
    /// is meant to be passed to another process.
    pub fn pair_with_owned() -> io::Result<(FdStream, OwnedFd)> {
        let (a, b) = crate::socket::socketpair()?;
        Ok((FdStream::adopt(a)?, b))
    }

    fn adopt(fd: OwnedFd) -> io::Result<FdStream> {
        let std = StdStream::from(fd);
        std.set_nonblocking(true)?;
        Ok(FdStream {
            io: UnixStream::from_std(std)?,
            room_fds: MAX_FDS,
        })
    }

    /// Wraps a standard-library stream, after checking it is a connected
    /// AF_UNIX stream socket. Must be called inside a tokio runtime.
    pub fn try_from_std(std: StdStream) -> io::Result<FdStream> {
        check_stream_socket(&std).map_err(io::Error::other)?;
        FdStream::adopt(std.into())
    }

    /// Wraps an fd, after checking it is a connected AF_UNIX stream socket.
    /// Must be called inside a tokio runtime.
    pub fn try_from_fd(fd: OwnedFd) -> Result<FdStream, SocketCheckError> {
        check_stream_socket(&fd)?;
        FdStream::adopt(fd).map_err(SocketCheckError::Io)
    }

    /// Limits the fds one receive accepts (fewer than 253): the control
    /// buffer then holds exactly that many fds and nothing else (no room for
    /// credentials). Any message carrying more fails with a truncation error
    /// after closing what arrived. Meant for tests of that path and for
    /// protocols that pass at most a few fds.
    pub fn with_fd_room(mut self, fds: usize) -> FdStream {
        self.room_fds = fds.min(MAX_FDS);
        self
    }

    /// The tokio stream. Do not read from it directly: a plain read makes
    /// the kernel close any fd that arrives.
    pub fn get_ref(&self) -> &UnixStream {
        &self.io
    }

    /// Unwraps the tokio stream (see [`FdStream::get_ref`]).
    pub fn into_inner(self) -> UnixStream {
        self.io
    }

    /// Waits until the socket is readable (data, fds or end of stream).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits, and reads nothing.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Waits until the socket is writable.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits, and writes nothing.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// Polls for read readiness (data, fds or end of stream), for use in
    /// hand-written futures together with [`FdStream::try_recv`].
    ///
    /// # Wakers
    ///
    /// Like tokio's `poll_read_ready`, only the waker of the most recent
    /// `Pending` call is kept: poll receiving from one task at a time (or
    /// from one future that is polled with the same task), or a task that
    /// polled earlier may never be woken.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_read_ready(cx)
    }

    /// Polls one `sendmsg` of `data` with `fds` attached (`MSG_NOSIGNAL`),
    /// for hand-written futures: `Ready(Ok(n))` once the kernel took `n`
    /// bytes (the fds travel with the first of them), `Pending` until the
    /// socket is writable.
    ///
    /// Each call is all-or-nothing for the fds: they are either attached to
    /// the bytes the kernel took, or not sent at all. Callers that must send
    /// the rest of `data` call again with the remaining bytes and no fds.
    ///
    /// # Wakers
    ///
    /// Like tokio's `poll_write_ready`, only the waker of the most recent
    /// `Pending` call is kept: poll sending from one task at a time, or a
    /// task that polled earlier may never be woken. Receiving and sending
    /// keep separate wakers, so one task may read while another writes.
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<Result<usize, SendError>> {
        if !fds.is_empty() && data.is_empty() {
            return Poll::Ready(Err(SendError::NoData));
        }
        if fds.len() > MAX_FDS {
            return Poll::Ready(Err(SendError::TooManyFds(fds.len())));
        }
        loop {
            match self.io.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                Poll::Ready(Ok(())) => {}
            }
            match self
                .io
                .try_io(Interest::WRITABLE, || sys::send(self.io.as_fd(), data, fds))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(SendError::Io(e))),
                Ok(0) if !data.is_empty() => {
                    return Poll::Ready(Err(SendError::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the socket accepted no bytes",
                    ))));
                }
                Ok(n) => return Poll::Ready(Ok(n)),
            }
        }
    }

    /// One `recvmsg` into the spare capacity of `buf`.
    fn recv_now(&self, buf: &mut BytesMut) -> io::Result<sys::RecvOut> {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        let out = sys::recv(self.io.as_fd(), buf.spare_capacity_mut(), self.room_fds)?;
        if out.truncated.is_none() {
            let new_len = buf.len() + out.len;
            debug_assert!(new_len <= buf.capacity());
            // SAFETY: `sys::recv` wrote `out.len` bytes (at most the length
            // of the spare capacity it was given) at the start of the spare
            // capacity, which begins at the old length: `..new_len` is
            // initialised and within the capacity.
            unsafe { buf.set_len(new_len) };
        }
        Ok(out)
    }

    /// The result of one `recvmsg`, truncation as an error.
    fn received(&self, out: sys::RecvOut) -> Result<Received, RecvError> {
        if let Some(closed) = out.truncated {
            return Err(RecvError::Truncated {
                room: self.room_fds,
                closed,
            });
        }
        Ok(Received {
            len: out.len,
            fds: out.fds,
            credentials: out.credentials,
        })
    }

    /// Receives once without waiting: appends what arrived to `buf`.
    /// [`RecvError::is_would_block`] if nothing is there.
    pub fn try_recv(&self, buf: &mut BytesMut) -> Result<Received, RecvError> {
        let out = self.io.try_io(Interest::READABLE, || self.recv_now(buf))?;
        self.received(out)
    }

    /// Receives once: appends what arrived to `buf` (growing it as needed)
    /// and returns the fds that came with it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is lost if the future is dropped. Bytes and fds
    /// are taken from the socket in one step (one `recvmsg`), in the same
    /// poll that completes the future; a future dropped before that step has
    /// taken nothing, and the next receive gets it all.
    pub async fn recv(&self, buf: &mut BytesMut) -> Result<Received, RecvError> {
        let out = self
            .io
            .async_io(Interest::READABLE, || self.recv_now(buf))
            .await?;
        self.received(out)
    }

    /// Polls for one receive (for use in hand-written futures). Like
    /// [`FdStream::recv`], bytes and fds are taken only in the poll that
    /// returns `Ready`.
    ///
    /// # Wakers
    ///
    /// Like tokio's `poll_read_ready`, only the waker of the most recent
    /// `Pending` call is kept: poll receiving from one task at a time (or
    /// from one future that is polled with the same task), or a task that
    /// polled earlier may never be woken.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<Result<Received, RecvError>> {
        loop {
            match self.io.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {}
            }
            match self.try_recv(buf) {
                Err(e) if e.is_would_block() => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// Sends all of `data`, with `fds` attached to the first chunk (one
    /// `sendmsg` with `MSG_NOSIGNAL`); a partial write continues with the rest
    /// of the bytes (without fds) until all are written.
    ///
    /// Refuses fds without data and more than 253 fds before calling the
    /// kernel. The fds stay open here: the receiver gets its own copies.
    ///
    /// # Cancel safety
    ///
    /// **Not** cancel-safe. A send dropped after its first `sendmsg` may have
    /// written part of `data` **and all of the fds**, and the rest is never
    /// sent: the stream is then out of step (the peer holds a message cut
    /// short). Let a send run to completion, or close the connection if it
    /// is cancelled; to bound it in time, put the whole connection under the
    /// timeout rather than a single send. A send dropped before it first
    /// becomes writable has sent nothing.
    pub async fn send(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SendError> {
        if !fds.is_empty() && data.is_empty() {
            return Err(SendError::NoData);
        }
        if fds.len() > MAX_FDS {
            return Err(SendError::TooManyFds(fds.len()));
        }
        let mut sent = 0;
        let mut fds = fds;
        while sent < data.len() || (data.is_empty() && sent == 0 && !fds.is_empty()) {
            let n = self
                .io
                .async_io(Interest::WRITABLE, || {
                    sys::send(self.io.as_fd(), &data[sent..], fds)
                })
                .await?;
            if n == 0 && !data.is_empty() {
                return Err(SendError::Io(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the socket accepted no bytes",
                )));
            }
            sent += n;
            fds = &[];
        }
        Ok(())
    }

    /// Shuts down the writing half (the peer reads end of stream).
    pub fn shutdown_write(&self) -> io::Result<()> {
        nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.io),
            nix::sys::socket::Shutdown::Write,
        )
        .map_err(io::Error::from)
    }

    /// The credentials of the process that created the peer end
    /// (`SO_PEERCRED`).
    pub fn peer_credentials(&self) -> io::Result<Credentials> {
        crate::socket::peer_credentials(&self.io)
    }

    /// A pidfd of the peer process (`SO_PEERPIDFD`), or `None` where the
    /// kernel does not have it.
    pub fn peer_pidfd(&self) -> io::Result<Option<OwnedFd>> {
        crate::socket::peer_pidfd(&self.io)
    }

    /// Turns `SO_PASSCRED` on or off: when on, every receive reports the
    /// sender's credentials in [`Received::credentials`].
    pub fn set_pass_credentials(&self, on: bool) -> io::Result<()> {
        crate::socket::set_pass_credentials(&self.io, on)
    }

    /// Makes the kernel refuse fds sent to this socket (`SO_PASSRIGHTS` off).
    pub fn refuse_fds(&self) -> io::Result<PassRights> {
        crate::socket::refuse_fds(&self.io)
    }
}

/// Wraps a connected tokio stream (for example one returned by
/// `UnixListener::accept`) without re-registering it.
impl From<UnixStream> for FdStream {
    fn from(io: UnixStream) -> FdStream {
        FdStream {
            io,
            room_fds: MAX_FDS,
        }
    }
}

impl AsFd for FdStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}
