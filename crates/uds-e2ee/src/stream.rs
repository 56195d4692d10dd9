//! The tokio adapter: an encrypted `AsyncRead + AsyncWrite` over any
//! stream, and the async handshake functions.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use uds_syrup::Designator;

use crate::error::{E2eeError, FrameKind};
use crate::frame::{FrameReader, HEADER_LEN, MAX_PLAINTEXT};
use crate::handshake::{Handshake, HandshakeInfo};
use crate::identity::LocalStatic;
use crate::noise::TAG_LEN;
use crate::transport::{Opened, Transport};

/// Runs the initiator's (dialer's) handshake over `io`, requiring the peer
/// to prove it is `responder` (the `to` designator dialed), and returns the
/// encrypted stream. Message 3 has been written and flushed when it
/// returns.
///
/// Errors are [`io::Error`]s; those of the protocol carry an [`E2eeError`]
/// ([`E2eeError::from_io`]): a wrong peer, a bad signature, a message that
/// fails to decrypt, [`E2eeError::Truncated`] when the stream ends early.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops `io` (closing the
/// connection) in the middle of the handshake. Put a timeout around it.
pub async fn connect<S>(
    io: S,
    local: Arc<LocalStatic>,
    responder: Designator,
) -> io::Result<E2eeStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    run_handshake(io, Handshake::initiator(local, responder)).await
}

/// Runs the responder's (accepting side's) handshake over `io`, requiring
/// the peer to prove it is `initiator` (the `from` designator the
/// introduction server delivered), and returns the encrypted stream once
/// message 3 verified.
///
/// To read the first byte yourself (to tell e2ee from plaintext streams
/// with [`is_e2ee_first_byte`](crate::is_e2ee_first_byte)), build the
/// [`Handshake::responder`], hand it that byte with
/// [`Handshake::read`], and call [`run_handshake`].
///
/// Errors and cancel safety as for [`connect`]; a stream that does not
/// start with 0x00 fails with [`E2eeError::NotE2ee`].
pub async fn accept<S>(
    io: S,
    local: Arc<LocalStatic>,
    initiator: Designator,
) -> io::Result<E2eeStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    run_handshake(io, Handshake::responder(local, initiator)).await
}

/// Drives `handshake` (in any state, for example after bytes were already
/// fed to it) over `io` to completion and returns the encrypted stream.
/// Never reads past the handshake's last message. Errors and cancel safety
/// as for [`connect`].
pub async fn run_handshake<S>(mut io: S, mut handshake: Handshake) -> io::Result<E2eeStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The largest message (message 2 with its length) is 316 bytes.
    let mut buf = [0u8; 512];
    loop {
        while !handshake.pending_output().is_empty() {
            let n = io.write(handshake.pending_output()).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            handshake.output_sent(n);
        }
        if handshake.is_finished() {
            break;
        }
        let want = handshake.wanted().min(buf.len());
        if want == 0 {
            // Failed: `read` returns the error.
            handshake.read(&[])?;
            return Err(E2eeError::Misuse("a handshake waiting for nothing").into());
        }
        let n = io.read(&mut buf[..want]).await?;
        if n == 0 {
            let kind = handshake.awaiting().unwrap_or(FrameKind::Message1);
            return Err(E2eeError::Truncated(kind).into());
        }
        handshake.read(&buf[..n])?;
    }
    io.flush().await?;
    let (transport, info) = handshake.finish()?;
    Ok(E2eeStream::new(io, transport, info))
}

/// Where the write side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Open,
    /// The end frame is sealed (in `sending`).
    Ending,
    /// The end frame is written and the underlying stream shut down.
    Closed,
}

/// An end-to-end encrypted stream over `S` (for example a
/// `tokio::net::UnixStream`), made by [`connect`], [`accept`] or
/// [`run_handshake`].
///
/// * **Reading** returns the peer's plaintext, frame by frame, decrypted in
///   place. It returns end of stream (`Ok(0)`) only after the peer's
///   authenticated end of data; if the underlying stream ends without it,
///   reading fails with [`E2eeError::Truncated`] (`UnexpectedEof`): a cut
///   connection cannot pass for a clean close.
/// * **Writing** copies the data into a frame and encrypts it in place.
///   Small writes made while the socket is busy are coalesced into one
///   frame (up to 65,519 bytes), and the remainder of a write that filled a
///   frame waits for the next write. As with TLS streams, **data is
///   guaranteed to be sent only by `poll_flush`** (`flush().await`) or
///   `poll_shutdown`; the adapter buffers at most two frames.
///   `poll_shutdown` sends the authenticated end-of-data frame, then shuts
///   down the underlying stream's write side.
/// * **Errors**: underlying I/O errors pass through. An error sending a
///   frame in the background of a write (the stream sends what it can
///   while taking data) is returned by the next write, flush or shutdown,
///   so a writer that never flushes still learns of a dead peer on its next
///   write. Protocol errors are
///   `io::Error`s carrying an [`E2eeError`] ([`E2eeError::from_io`]),
///   `InvalidData` for what the peer or someone between did. After a
///   protocol error the stream is poisoned: every later call returns the
///   same error, and no altered byte is ever returned.
///
/// The stream never panics on what it reads.
pub struct E2eeStream<S> {
    io: S,
    transport: Transport,
    info: HandshakeInfo,
    reader: FrameReader,
    /// Plaintext of the current frame not yet returned: `reader.current()`
    /// from `plain_start` to `plain_end`.
    plain_start: usize,
    plain_end: usize,
    /// Sealed frames being written: `sending[sent..]` is still to go.
    sending: Vec<u8>,
    sent: usize,
    /// The frame being filled: 2 bytes of room for the length, then
    /// plaintext (empty when no frame is open).
    open: Vec<u8>,
    write_state: WriteState,
    error: Option<E2eeError>,
}

impl<S> E2eeStream<S> {
    /// The stream over `io` after a handshake driven elsewhere
    /// ([`Handshake::finish`] gives both parts). Bytes `io` delivers must
    /// start right after the handshake's last message.
    pub fn new(io: S, transport: Transport, info: HandshakeInfo) -> E2eeStream<S> {
        E2eeStream {
            io,
            transport,
            info,
            reader: FrameReader::new(FrameKind::Transport),
            plain_start: 0,
            plain_end: 0,
            sending: Vec::new(),
            sent: 0,
            open: Vec::new(),
            write_state: WriteState::Open,
            error: None,
        }
    }

    /// What the handshake established: the peer's proven designator and
    /// the handshake hash.
    pub fn info(&self) -> &HandshakeInfo {
        &self.info
    }

    /// The peer's proven designator.
    pub fn peer(&self) -> Designator {
        self.info.peer
    }

    /// The underlying stream (for example to read socket options).
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The underlying stream, mutably. Reading or writing it directly
    /// corrupts the encrypted stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    fn poisoned(&self) -> io::Result<()> {
        match &self.error {
            Some(e) => Err(e.clone().into()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: E2eeError) -> io::Error {
        self.error = Some(e.clone());
        e.into()
    }

    fn plaintext_len(&self) -> usize {
        self.open.len().saturating_sub(HEADER_LEN)
    }

    fn sending_done(&self) -> bool {
        self.sent == self.sending.len()
    }

    /// Seals the open frame and makes it the one being sent (`sending`
    /// must be done).
    fn seal_open(&mut self) -> io::Result<()> {
        debug_assert!(self.sending_done());
        self.open.extend_from_slice(&[0; TAG_LEN]);
        if let Err(e) = self.transport.seal_in_place(&mut self.open) {
            return Err(self.fail(e));
        }
        std::mem::swap(&mut self.open, &mut self.sending);
        self.open.clear();
        self.sent = 0;
        Ok(())
    }

    /// Appends plaintext to the open frame (opening one if needed).
    fn append(&mut self, data: &[u8]) {
        if self.open.is_empty() {
            self.open.extend_from_slice(&[0; HEADER_LEN]);
        }
        self.open.extend_from_slice(data);
    }
}

impl<S: AsyncWrite + Unpin> E2eeStream<S> {
    /// Writes `sending` until it is all written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.sending_done() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.sending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals and writes everything buffered.
    fn poll_send_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_drain(cx))?;
            if self.plaintext_len() == 0 {
                return Poll::Ready(Ok(()));
            }
            self.seal_open()?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for E2eeStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poisoned()?;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Whole frames already buffered are returned together; the
        // underlying stream is read only when nothing was returned yet.
        let mut copied = false;
        loop {
            if this.plain_start < this.plain_end {
                let n = buf.remaining().min(this.plain_end - this.plain_start);
                let plain = &this.reader.current()[this.plain_start..this.plain_start + n];
                buf.put_slice(plain);
                this.plain_start += n;
                copied = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.transport.is_end_received() {
                return Poll::Ready(Ok(()));
            }
            // An error after some plaintext was returned comes back on the
            // next call (the stream is poisoned by then).
            let frame = match this.reader.next_frame() {
                Ok(frame) => frame,
                Err(e) => {
                    let e = this.fail(e);
                    return Poll::Ready(if copied { Ok(()) } else { Err(e) });
                }
            };
            if let Some(body) = frame {
                match this.transport.open_in_place(body) {
                    Ok(Opened::Data(n)) => (this.plain_start, this.plain_end) = (0, n),
                    Ok(Opened::End) => (this.plain_start, this.plain_end) = (0, 0),
                    Err(e) => {
                        let e = this.fail(e);
                        return Poll::Ready(if copied { Ok(()) } else { Err(e) });
                    }
                }
                continue;
            }
            if copied {
                return Poll::Ready(Ok(()));
            }
            let spare = match this.reader.spare() {
                Ok(spare) => spare,
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            };
            let mut rb = ReadBuf::new(spare);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Err(this.fail(E2eeError::Truncated(FrameKind::Transport))));
            }
            this.reader.filled(n);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for E2eeStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.poisoned()?;
        if this.write_state != WriteState::Open {
            return Poll::Ready(Err(E2eeError::WriteAfterEnd.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A frame still being sent from an earlier call: an error writing it
        // comes back now, before more is taken, so that a writer that never
        // flushes learns of a dead peer on its next write.
        let mut socket_full = false;
        if !this.sending_done() {
            match this.poll_drain(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => socket_full = true,
                Poll::Ready(Ok(())) => {}
            }
        }
        let mut accepted = 0;
        let mut filled_a_frame = false;
        while accepted < buf.len() {
            if this.plaintext_len() == MAX_PLAINTEXT {
                // The open frame is full: it goes out once the previous one
                // is written.
                match this.poll_drain(cx) {
                    Poll::Ready(Ok(())) => socket_full = false,
                    Poll::Ready(Err(e)) if accepted == 0 => return Poll::Ready(Err(e)),
                    Poll::Pending if accepted == 0 => return Poll::Pending,
                    // Report what was taken; the error or the wait comes
                    // back on the next call.
                    _ => return Poll::Ready(Ok(accepted)),
                }
                this.seal_open()?;
                filled_a_frame = true;
            }
            let n = (MAX_PLAINTEXT - this.plaintext_len()).min(buf.len() - accepted);
            this.append(&buf[accepted..accepted + n]);
            accepted += n;
        }
        // Send now what can go now: a full frame, or a small write while the
        // socket is idle. The rest of a write that filled a frame waits to be
        // topped up by the next write (or sent by poll_flush).
        let full = this.plaintext_len() == MAX_PLAINTEXT;
        if this.sending_done() && this.plaintext_len() > 0 && (full || !filled_a_frame) {
            this.seal_open()?;
        }
        // Errors and waiting come back on the next call (checked above).
        // A socket found full above still holds the same frame: trying it
        // again now would only be another write refused.
        if !socket_full {
            let _ = this.poll_drain(cx);
        }
        Poll::Ready(Ok(accepted))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poisoned()?;
        ready!(this.poll_send_all(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poisoned()?;
        if this.write_state == WriteState::Open {
            ready!(this.poll_send_all(cx))?;
            if let Err(e) = this.transport.seal_end(&mut this.sending) {
                return Poll::Ready(Err(this.fail(e)));
            }
            this.write_state = WriteState::Ending;
        }
        if this.write_state == WriteState::Ending {
            ready!(this.poll_drain(cx))?;
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.write_state = WriteState::Closed;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> std::fmt::Debug for E2eeStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eeStream")
            .field("peer", &self.info.peer)
            .field("transport", &self.transport)
            .field("write_state", &self.write_state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use uds_handshake::Identity;

    use super::*;

    #[tokio::test]
    async fn the_stream_ends_before_a_nonce_is_reused() {
        let (a_id, b_id) = (Identity::generate(), Identity::generate());
        let mut a = Handshake::initiator(Arc::new(LocalStatic::generate(&a_id)), b_id.designator());
        let mut b = Handshake::responder(Arc::new(LocalStatic::generate(&b_id)), a_id.designator());
        while !(a.is_finished() && b.is_finished()) {
            let out = a.pending_output().to_vec();
            a.output_sent(out.len());
            b.read(&out).unwrap();
            let out = b.pending_output().to_vec();
            b.output_sent(out.len());
            a.read(&out).unwrap();
        }
        let (mut transport, info) = a.finish().unwrap();
        transport.set_nonces(u64::MAX - 1, 0);
        let (io, _peer) = tokio::io::duplex(1 << 20);
        let mut s = E2eeStream::new(io, transport, info);
        s.write_all(b"the last frame").await.unwrap();
        s.flush().await.unwrap();
        let e = s.write_all(b"one too many").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(E2eeError::from_io(&e), Some(&E2eeError::NonceExhausted));
        // Poisoned: flushing and shutting down fail the same way.
        let e = s.shutdown().await.unwrap_err();
        assert_eq!(E2eeError::from_io(&e), Some(&E2eeError::NonceExhausted));
    }
}
