//! Framing of the introduction channel, without I/O: turns the bytes and fds
//! that arrive on an intro socket into messages and introductions.
//!
//! The channel carries back-to-back Syrup messages. A
//! `uds:new-connection` record is followed by a separate `sendmsg` of 4
//! body bytes ([`SCM_RIGHTS_BODY`]) carrying exactly one fd. The kernel
//! delivers the fd with the read that reaches that segment, and ends the
//! read right after it, so the fd belongs to the **end** of the read that
//! brought it. The rule, used by both the server and the netlayer:
//!
//! * the fd of an intro is the one whose read ended 1 to 4 bytes after the
//!   record; those bytes are the body and are discarded (if that read ended
//!   inside the 4-byte body, because the receiver's buffer was nearly full,
//!   the rest of the body is skipped when it arrives);
//! * the first fd of that read is the socket; extra fds are closed (and
//!   counted, so a strict caller can refuse the sender);
//! * an fd anywhere else (with another message, within the record, more than
//!   4 bytes late) or a record whose fd never comes is a protocol violation.
//!
//! For each receive, the caller appends its bytes ([`IntroChannel::push_bytes`]
//! or [`IntroChannel::buffer_mut`]), then hands over the fds that came with it
//! ([`IntroChannel::push_fds`]), then takes events
//! ([`IntroChannel::next_event`]) until there are none; at end of stream it
//! calls [`IntroChannel::finish`]. To send an introduction, see
//! [`introduction_bytes`] (or, with the `io` feature, `io::UnitWriter`).
//!
//! The channel is generic over the fd type `F` (in practice
//! [`std::os::fd::OwnedFd`]), so tests can drive it with plain values;
//! dropping an `F` must close it. Everything the channel still holds is
//! dropped with it.
//!
//! ```
//! use uds_handshake::channel::{ChannelEvent, IntroChannel};
//! use uds_syrup::{Limits, SCM_RIGHTS_BODY};
//!
//! let record = b"<18'uds:new-connection<10'ocapn-peer18'unix-domain-socket52\"25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenaf><10'ocapn-peer18'unix-domain-socket52\"hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumygaf>>";
//! let mut chan = IntroChannel::<&str>::new(Limits::intro_channel());
//! chan.push_bytes(record); // one read: the record
//! assert!(chan.next_event().unwrap().is_none()); // waits for the fd
//! chan.push_bytes(&SCM_RIGHTS_BODY); // the next read: body + fd
//! chan.push_fds(vec!["the socket"]);
//! match chan.next_event().unwrap() {
//!     Some(ChannelEvent::Introduction { fd, extra_fds, .. }) => {
//!         assert_eq!((fd, extra_fds), ("the socket", 0));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use uds_syrup::{DecodeError, Decoder, Limits, NewConnection, SCM_RIGHTS_BODY, Value, WireError};

/// The most body bytes between an intro record and the end of the read
/// that carries its fd.
pub const MAX_BODY: u64 = SCM_RIGHTS_BODY.len() as u64;

/// What the channel produced.
pub enum ChannelEvent<F> {
    /// A message other than an introduction.
    Message {
        /// The decoded message.
        value: Value,
        /// Its exact bytes as received.
        raw: Bytes,
    },
    /// A `uds:new-connection` record with its fd.
    Introduction {
        /// The record.
        record: NewConnection,
        /// Its exact bytes as received (to forward unchanged).
        raw: Bytes,
        /// The passed fd (not yet checked to be a socket).
        fd: F,
        /// How many further fds came with it (already dropped).
        extra_fds: usize,
    },
}

impl<F> fmt::Debug for ChannelEvent<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelEvent::Message { value, .. } => write!(f, "Message({value})"),
            ChannelEvent::Introduction {
                record, extra_fds, ..
            } => write!(
                f,
                "Introduction(from {} to {}, {} extra fds)",
                record.from, record.to, extra_fds
            ),
        }
    }
}

/// A violation of the channel's framing rules. The connection should be
/// closed; the channel has dropped the fds involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Bytes that are not valid Syrup, or beyond a limit.
    #[error(transparent)]
    Syrup(#[from] DecodeError),
    /// A `uds:new-connection` record that is malformed.
    #[error("malformed uds:new-connection: {0}")]
    Wire(#[from] WireError),
    /// fds arrived where no introduction expects them.
    #[error(
        "{count} fd(s) arrived at stream offset {at}, not right after a uds:new-connection record"
    )]
    UnexpectedFd {
        /// The end offset of the read that brought them.
        at: u64,
        /// How many.
        count: usize,
    },
    /// An introduction record whose fd did not follow within 4 bytes.
    #[error("uds:new-connection ending at stream offset {record_end} was not followed by its fd")]
    MissingFd {
        /// Where the record ended.
        record_end: u64,
    },
    /// The stream ended inside a message.
    #[error("the connection ended inside a message ({0} bytes pending)")]
    Truncated(usize),
}

struct Pending {
    record: NewConnection,
    raw: Bytes,
    end: u64,
}

/// The framer of one introduction channel; see the [module docs](self).
pub struct IntroChannel<F> {
    decoder: Decoder,
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// fds, tagged with the end offset of the read that brought them.
    fds: VecDeque<(u64, Vec<F>)>,
    pending: Option<Pending>,
    /// The rest of a [`SCM_RIGHTS_BODY`] whose fd came with a read that
    /// ended inside it; skipped as it arrives.
    body_rest: &'static [u8],
}

impl<F> fmt::Debug for IntroChannel<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntroChannel")
            .field("offset", &self.received())
            .field("buffered", &self.buf.len())
            .field("fd_batches", &self.fds.len())
            .field("awaiting_fd", &self.pending.is_some())
            .field("body_bytes_to_skip", &self.body_rest.len())
            .finish()
    }
}

impl<F> IntroChannel<F> {
    /// A channel enforcing `limits` on each message
    /// ([`Limits::intro_channel`] for the protocol's defaults).
    pub fn new(limits: Limits) -> IntroChannel<F> {
        IntroChannel {
            decoder: Decoder::new(limits),
            buf: BytesMut::new(),
            base: 0,
            fds: VecDeque::new(),
            pending: None,
            body_rest: &[],
        }
    }

    /// Total bytes pushed so far (the stream offset).
    pub fn received(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Appends the bytes of one receive.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The internal buffer, for receiving into it directly; append only.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Records the fds that came with the receive whose bytes were just
    /// pushed: they belong to the current end of the stream.
    pub fn push_fds(&mut self, fds: Vec<F>) {
        if !fds.is_empty() {
            let at = self.received();
            self.fds.push_back((at, fds));
        }
    }

    /// Whether nothing is buffered or pending: the channel holds no partial
    /// message, no fd, no body bytes still to skip, and no memory a caller
    /// would want to keep. An idle channel may be dropped and replaced by a
    /// new one without changing what the stream means.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
            && self.fds.is_empty()
            && self.pending.is_none()
            && self.body_rest.is_empty()
    }

    /// The next message or introduction, `Ok(None)` if more input is
    /// needed. Call it after both [`push_bytes`](Self::push_bytes) (or
    /// appending to [`buffer_mut`](Self::buffer_mut)) and
    /// [`push_fds`](Self::push_fds) for a receive, never between them, and
    /// until it returns `Ok(None)`.
    ///
    /// After an error the stream cannot be resynchronised: close the
    /// connection (the fds the channel held are already closed).
    pub fn next_event(&mut self) -> Result<Option<ChannelEvent<F>>, ChannelError> {
        let result = self.step();
        if result.is_err() {
            // Close everything on a violation.
            self.fds.clear();
            self.pending = None;
            self.body_rest = &[];
        }
        result
    }

    /// The introduction whose record ended at stream offset `end` (held in
    /// `pending`), once its fd is here.
    fn introduction(&mut self, end: u64) -> Result<Option<ChannelEvent<F>>, ChannelError> {
        match self.fds.front() {
            Some(&(at, _)) if at <= end => Err(self.unexpected()),
            Some(&(at, _)) if at <= end + MAX_BODY => {
                let (_, mut fds) = self
                    .fds
                    .pop_front()
                    .ok_or(ChannelError::MissingFd { record_end: end })?;
                let body = (at - end) as usize;
                let seen_is_body = self.buf[..body] == SCM_RIGHTS_BODY[..body];
                self.buf.advance(body);
                self.base += body as u64;
                // A read that ended inside a 4-byte body (a receiver with
                // little buffer room left) leaves the rest for the next
                // read; skip it when it comes. No Syrup message starts
                // with the rest of this body (`0` then NUL, or NUL), so
                // this never eats a message.
                if seen_is_body {
                    self.body_rest = &SCM_RIGHTS_BODY[body..];
                }
                let p = self
                    .pending
                    .take()
                    .ok_or(ChannelError::MissingFd { record_end: end })?;
                let extra_fds = fds.len().saturating_sub(1);
                fds.truncate(1);
                match fds.pop() {
                    Some(fd) => Ok(Some(ChannelEvent::Introduction {
                        record: p.record,
                        raw: p.raw,
                        fd,
                        extra_fds,
                    })),
                    None => Err(ChannelError::MissingFd { record_end: end }),
                }
            }
            Some(_) => Err(ChannelError::MissingFd { record_end: end }),
            None if self.received() >= end + MAX_BODY => {
                Err(ChannelError::MissingFd { record_end: end })
            }
            None => Ok(None),
        }
    }

    #[inline]
    fn step(&mut self) -> Result<Option<ChannelEvent<F>>, ChannelError> {
        if let Some(p) = &self.pending {
            let end = p.end;
            return self.introduction(end);
        }
        if !self.body_rest.is_empty() {
            let n = self.buf.len().min(self.body_rest.len());
            if self.buf[..n] != self.body_rest[..n] {
                // A shorter body: what follows is the next message.
                self.body_rest = &[];
            } else if n == self.body_rest.len() {
                self.buf.advance(n);
                self.base += n as u64;
                self.body_rest = &[];
            } else if self.fds.is_empty() {
                return Ok(None);
            } else {
                return Err(self.unexpected());
            }
        }
        // One pass over the message: framed, checked and built together
        // (resuming where the last call stopped if it is still incomplete).
        let Some((value, raw)) = self.decoder.decode_split(&mut self.buf)? else {
            // The message at the front is incomplete, so no introduction
            // record ends before the fds that are already here.
            if !self.fds.is_empty() {
                return Err(self.unexpected());
            }
            return Ok(None);
        };
        self.base += raw.len() as u64;
        // An fd whose read ended within this message does not belong to an
        // introduction.
        if self.fds.front().is_some_and(|&(at, _)| at <= self.base) {
            return Err(self.unexpected());
        }
        if value.as_record_labeled(NewConnection::LABEL).is_some() {
            let record = NewConnection::from_value(&value)?;
            let end = self.base;
            self.pending = Some(Pending { record, raw, end });
            return self.introduction(end);
        }
        Ok(Some(ChannelEvent::Message { value, raw }))
    }

    fn unexpected(&mut self) -> ChannelError {
        let (at, count) = self
            .fds
            .front()
            .map_or((self.received(), 0), |(at, fds)| (*at, fds.len()));
        ChannelError::UnexpectedFd { at, count }
    }

    /// Call at end of stream: an error if a message or an introduction was
    /// cut short, or fds arrived that nothing claimed.
    pub fn finish(&mut self) -> Result<(), ChannelError> {
        let result = if let Some(p) = &self.pending {
            Err(ChannelError::MissingFd { record_end: p.end })
        } else if !self.buf.is_empty() {
            // Includes the start of a body whose rest never came.
            Err(ChannelError::Truncated(self.buf.len()))
        } else if !self.fds.is_empty() {
            Err(self.unexpected())
        } else {
            Ok(())
        };
        self.fds.clear();
        self.pending = None;
        self.body_rest = &[];
        result
    }
}

/// The bytes to send for an introduction: the record, then — in one
/// separate `sendmsg` carrying exactly one fd — the 4 body bytes. Send both
/// as one unit, so that nothing else is written between them (the `io`
/// feature's `UnitWriter` does).
pub fn introduction_bytes(record: &NewConnection) -> (Vec<u8>, [u8; 4]) {
    (record.to_value().encode(), SCM_RIGHTS_BODY)
}

#[cfg(test)]
mod tests {
    use uds_syrup::fuzzing::bytes_examined;

    use super::*;

    /// A message of about 60 KB (within the intro channel's 64 KiB).
    fn big_message() -> Vec<u8> {
        let items = (0..4500).map(|i| Value::string(format!("item {i:05}")));
        let v = Value::record(Value::symbol("op:big"), [Value::list(items)]);
        let bytes = v.encode();
        assert!(bytes.len() > 55_000 && bytes.len() < 64 << 10);
        bytes
    }

    /// Counts the work, not the time: the bytes the decoder looked at.
    #[test]
    fn a_message_dribbled_one_byte_per_read_costs_linear_work() {
        let bytes = big_message();
        let mut chan = IntroChannel::<u8>::new(Limits::intro_channel());
        let mut events = 0;
        for &b in &bytes {
            chan.push_bytes(&[b]);
            while let Some(event) = chan.next_event().unwrap() {
                assert!(matches!(event, ChannelEvent::Message { .. }));
                events += 1;
            }
        }
        assert_eq!(events, 1);
        let n = bytes.len() as u64;
        let work = bytes_examined(&chan.decoder);
        // Re-scanning the buffer on every read would be about n²/2 (1.8e9).
        assert!(
            work <= 8 * n,
            "{work} bytes examined for {n} bytes: not linear"
        );
    }

    /// A message that arrives in one read is looked at once: framing,
    /// checking and building it are one pass.
    #[test]
    fn a_message_read_at_once_is_scanned_once() {
        let bytes = big_message();
        let mut chan = IntroChannel::<u8>::new(Limits::intro_channel());
        chan.push_bytes(&bytes);
        let Some(ChannelEvent::Message { raw, .. }) = chan.next_event().unwrap() else {
            panic!("expected the message");
        };
        assert_eq!(raw, bytes);
        let n = bytes.len() as u64;
        let work = bytes_examined(&chan.decoder);
        // What the channel used to do: frame (a scan that skips string
        // payloads), then decode the frame. The count sees both passes.
        let mut dec = uds_syrup::Decoder::new(Limits::intro_channel());
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let frame = dec.split_frame(&mut buf).unwrap().unwrap();
        dec.decode_exact(&frame).unwrap();
        let two_passes = bytes_examined(&dec);
        // One pass: each byte lexed once, string payloads validated once,
        // and less than framing and then decoding.
        assert!(work <= 2 * n, "{work} bytes examined for {n} bytes");
        assert!(
            work < two_passes,
            "{work} bytes examined in one pass, {two_passes} in two, for {n} bytes"
        );
    }
}
