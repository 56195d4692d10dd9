//! The framing: a 2-byte big-endian length, then that many bytes.

use crate::error::{E2eeError, FrameKind};
use crate::identity::IDENTITY_RECORD_LEN;
use crate::noise::{DH_LEN, TAG_LEN};

/// Length of the big-endian length prefix of every message and frame.
pub const HEADER_LEN: usize = 2;
/// The longest frame body (what follows the length prefix).
pub const MAX_FRAME_LEN: usize = 65535;
/// The most plaintext one transport frame carries (65535 − the 16-byte tag).
pub const MAX_PLAINTEXT: usize = MAX_FRAME_LEN - TAG_LEN;
/// Length of message 1's body: the initiator's ephemeral key.
pub const MESSAGE_1_LEN: usize = DH_LEN;
/// Length of message 2's body: ephemeral key, encrypted static key, and the
/// encrypted identity record.
pub const MESSAGE_2_LEN: usize = DH_LEN + DH_LEN + TAG_LEN + IDENTITY_RECORD_LEN + TAG_LEN;
/// Length of message 3's body: encrypted static key and the encrypted
/// identity record.
pub const MESSAGE_3_LEN: usize = DH_LEN + TAG_LEN + IDENTITY_RECORD_LEN + TAG_LEN;

/// The first byte of every e2ee stream: the high byte of message 1's length.
/// No Syrup value starts with it, so an accepting peer tells e2ee streams
/// from plaintext ones by this byte ([`is_e2ee_first_byte`]).
pub const E2EE_FIRST_BYTE: u8 = (MESSAGE_1_LEN >> 8) as u8;

/// Whether a stream whose first byte is `byte` is an e2ee stream (its first
/// byte is 0x00) rather than a plaintext OCapN stream (which starts with a
/// Syrup value, never with 0x00).
///
/// ```
/// assert!(uds_e2ee::is_e2ee_first_byte(0x00));
/// assert!(!uds_e2ee::is_e2ee_first_byte(b'<'));
/// ```
pub fn is_e2ee_first_byte(byte: u8) -> bool {
    byte == E2EE_FIRST_BYTE
}

impl FrameKind {
    /// The only valid body length of a handshake message (`None` for
    /// transport frames, which are 16 to 65535 bytes).
    pub const fn fixed_len(self) -> Option<usize> {
        match self {
            FrameKind::Message1 => Some(MESSAGE_1_LEN),
            FrameKind::Message2 => Some(MESSAGE_2_LEN),
            FrameKind::Message3 => Some(MESSAGE_3_LEN),
            FrameKind::Transport => None,
        }
    }

    /// Checks a body length announced by a frame's header.
    fn check_len(self, len: usize) -> Result<(), E2eeError> {
        match self.fixed_len() {
            Some(expected) if len != expected => Err(E2eeError::WrongLength {
                kind: self,
                found: len,
                expected,
            }),
            None if len < TAG_LEN => Err(E2eeError::TooShort {
                kind: self,
                found: len,
                min: TAG_LEN,
            }),
            _ => Ok(()),
        }
    }
}

/// The first allocation of a reader's buffer.
const INITIAL_CAPACITY: usize = 4096;
/// How far a read may go past the start of a small frame.
const READ_AHEAD: usize = INITIAL_CAPACITY;
/// The largest buffer: one whole frame and the next frame's header.
const MAX_BUFFER: usize = HEADER_LEN + MAX_FRAME_LEN + HEADER_LEN;

/// Cuts a byte stream into frames (2-byte big-endian length + body), one
/// [`FrameKind`] at a time, checking each length as soon as its two bytes
/// are in.
///
/// It refuses what the protocol refuses: a stream that does not start with
/// 0x00 ([`E2eeError::NotE2ee`], when reading message 1), a handshake
/// message of any length but its fixed one, a transport frame shorter than
/// its tag. It **never allocates for a claimed length**: the buffer starts
/// at 4 KiB and at most doubles when it is full of bytes that did arrive, up
/// to one frame plus the next header (65,539 bytes).
///
/// Bytes come in two ways: [`push`](Self::push) copies from a slice and
/// stops at the end of the current frame (so a caller can hand the rest of
/// its input to someone else), and [`spare`](Self::spare) /
/// [`filled`](Self::filled) let a socket read go straight into the buffer
/// (a read stops after a large frame and the next header, so large frames
/// stay where they arrived and are never moved, while small frames are read
/// several at a time). Complete frames come out of
/// [`next_frame`](Self::next_frame) as mutable slices, for in-place
/// decryption.
///
/// ```
/// use uds_e2ee::{FrameKind, FrameReader};
/// let mut r = FrameReader::new(FrameKind::Transport);
/// let stream = [&[0u8, 17][..], &[7; 17], &[0, 16], &[9; 5]].concat();
/// // Any split of the input works; push stops at each frame's end.
/// let used = r.push(&stream[..3])?;
/// assert_eq!(used, 3);
/// assert_eq!(r.next_frame()?, None);
/// let used = r.push(&stream[3..])?;
/// assert_eq!(used, 16);
/// assert_eq!(r.next_frame()?.map(|f| f.len()), Some(17));
/// assert_eq!(r.push(&stream[19..])?, 7); // the next frame has begun
/// assert!(r.is_mid_frame());
/// # Ok::<(), uds_e2ee::E2eeError>(())
/// ```
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// First byte not yet returned in a frame.
    start: usize,
    /// End of the received bytes.
    end: usize,
    /// Body of the frame last returned by `next_frame`.
    current: (usize, usize),
    kind: FrameKind,
}

impl FrameReader {
    /// A reader expecting frames of `kind` (change it with
    /// [`set_kind`](Self::set_kind) between frames). Allocates nothing yet.
    pub fn new(kind: FrameKind) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            current: (0, 0),
            kind,
        }
    }

    /// The kind of frame expected next.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// Expect frames of `kind` from now on (for example the next handshake
    /// message). Bytes already buffered are judged by the new kind.
    pub fn set_kind(&mut self, kind: FrameKind) {
        self.kind = kind;
    }

    /// Whether some bytes of a frame arrived but not the whole frame (at the
    /// end of the stream, that is a truncation).
    pub fn is_mid_frame(&self) -> bool {
        self.end > self.start
    }

    /// How many more bytes the next frame needs before it is complete, as
    /// far as is known: the whole message for handshake messages (whose
    /// length is fixed), the rest of the header or of the body for
    /// transport frames. 0 when a complete frame is buffered.
    pub fn needed(&self) -> usize {
        let have = self.end - self.start;
        let total = match (self.header_len(), self.kind.fixed_len()) {
            (Some(len), _) | (None, Some(len)) => HEADER_LEN + len,
            (None, None) => HEADER_LEN,
        };
        total.saturating_sub(have)
    }

    /// The body length announced by the buffered header, unchecked.
    fn header_len(&self) -> Option<usize> {
        match self.buf.get(self.start..self.end)? {
            [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo]) as usize),
            _ => None,
        }
    }

    /// The body length announced by the buffered header, checked; `None`
    /// if the header is not complete yet.
    fn header(&self) -> Result<Option<usize>, E2eeError> {
        // An e2ee stream starts with 0x00: judge the first byte alone.
        if self.kind == FrameKind::Message1
            && self.end > self.start
            && !is_e2ee_first_byte(self.buf[self.start])
        {
            return Err(E2eeError::NotE2ee {
                first_byte: self.buf[self.start],
            });
        }
        match self.header_len() {
            Some(len) => self.kind.check_len(len).map(|()| Some(len)),
            None => Ok(None),
        }
    }

    /// Forgets the frame last returned, and restarts at the beginning of
    /// the buffer when nothing is left in it.
    fn release(&mut self) {
        self.current = (0, 0);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves the pending bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Copies bytes from `input` up to the end of the current frame (never
    /// beyond it) and returns how many it took. Checks the header as soon as
    /// it is complete. Invalidates the frame last returned by
    /// [`next_frame`](Self::next_frame).
    pub fn push(&mut self, input: &[u8]) -> Result<usize, E2eeError> {
        self.release();
        let mut used = 0;
        loop {
            let have = self.end - self.start;
            let need = match self.header()? {
                None => HEADER_LEN - have,
                Some(len) => (HEADER_LEN + len).saturating_sub(have),
            };
            let n = need.min(input.len() - used);
            if n == 0 {
                return Ok(used);
            }
            if self.end + n > self.buf.len() {
                self.compact();
                if self.end + n > self.buf.len() {
                    // These bytes are in hand: room for them only.
                    self.buf.resize(self.end + n, 0);
                }
            }
            self.buf[self.end..self.end + n].copy_from_slice(&input[used..used + n]);
            self.end += n;
            used += n;
        }
    }

    /// Room to read into, for a socket read straight into the buffer;
    /// report how much was read with [`filled`](Self::filled). While the
    /// length of a frame larger than 4 KiB is known, the room ends after
    /// that frame and the next frame's header (so a large frame is never
    /// moved); otherwise it is whatever the buffer has. Never empty, unless
    /// an error is returned.
    /// Invalidates the frame last returned by
    /// [`next_frame`](Self::next_frame).
    ///
    /// Errors: the buffered header is invalid, or (a caller's mistake) a
    /// complete frame fills the whole buffer and
    /// [`next_frame`](Self::next_frame) was not called.
    pub fn spare(&mut self) -> Result<&mut [u8], E2eeError> {
        self.release();
        let have = self.end - self.start;
        let mut target = match self.header()? {
            // Up to the next frame's header, so a large frame is never
            // moved; small frames may read ahead.
            Some(len) if have < HEADER_LEN + len => {
                self.start + (HEADER_LEN + len + HEADER_LEN).max(READ_AHEAD)
            }
            _ => self.start + MAX_BUFFER,
        };
        if target > self.buf.len() && self.start > 0 {
            target -= self.start;
            self.compact();
        }
        if self.end == self.buf.len() {
            // Full of bytes that did arrive: grow, at most doubling.
            let max = target.min(MAX_BUFFER);
            if self.end >= max {
                return Err(E2eeError::Misuse(
                    "a complete frame is waiting in the reader: call next_frame first",
                ));
            }
            let len = (self.buf.len() * 2).max(INITIAL_CAPACITY).min(max);
            self.buf.resize(len, 0);
        }
        let stop = target.min(self.buf.len());
        Ok(&mut self.buf[self.end..stop])
    }

    /// Records that `n` bytes were written at the start of the slice the
    /// last [`spare`](Self::spare) returned (clamped to that slice's room).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete frame's body (without its length prefix), if one
    /// is buffered. The slice stays readable through
    /// [`current`](Self::current) until the next call to `next_frame`,
    /// [`push`](Self::push) or [`spare`](Self::spare).
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, E2eeError> {
        self.current = (0, 0);
        let Some(len) = self.header()? else {
            return Ok(None);
        };
        if self.end - self.start < HEADER_LEN + len {
            return Ok(None);
        }
        let body = (self.start + HEADER_LEN, self.start + HEADER_LEN + len);
        self.start = body.1;
        self.current = body;
        Ok(Some(&mut self.buf[body.0..body.1]))
    }

    /// The body of the frame last returned by
    /// [`next_frame`](Self::next_frame), as it is now (for example after
    /// in-place decryption); empty if it was invalidated.
    pub fn current(&self) -> &[u8] {
        &self.buf[self.current.0..self.current.1]
    }

    /// The size of the buffer now allocated (for tests of the allocation
    /// rule).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Writes the 2-byte big-endian length of `len` (at most
/// [`MAX_FRAME_LEN`]).
pub(crate) fn header(len: usize) -> Result<[u8; HEADER_LEN], E2eeError> {
    u16::try_from(len)
        .map(u16::to_be_bytes)
        .map_err(|_| E2eeError::FrameTooLong {
            found: len,
            max: MAX_FRAME_LEN,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lengths() {
        assert_eq!(MESSAGE_1_LEN, 32);
        assert_eq!(MESSAGE_2_LEN, 314);
        assert_eq!(MESSAGE_3_LEN, 282);
        assert_eq!(MAX_PLAINTEXT, 65519);
        assert_eq!(E2EE_FIRST_BYTE, 0);
    }

    #[test]
    fn spare_reads_through_the_next_header_and_grows_only_when_full() {
        let mut r = FrameReader::new(FrameKind::Transport);
        assert_eq!(r.capacity(), 0);
        let spare = r.spare().unwrap();
        assert_eq!(spare.len(), INITIAL_CAPACITY);
        spare[..2].copy_from_slice(&[0xff, 0xff]);
        r.filled(2);
        // The header claims 65535 bytes: the buffer does not grow for it.
        assert_eq!(r.spare().unwrap().len(), INITIAL_CAPACITY - 2);
        assert_eq!(r.capacity(), INITIAL_CAPACITY);
        r.filled(INITIAL_CAPACITY - 2);
        assert_eq!(r.spare().unwrap().len(), INITIAL_CAPACITY);
        assert_eq!(r.capacity(), 2 * INITIAL_CAPACITY);
        // Fill up the frame, doubling as bytes arrive.
        while r.needed() > 0 {
            let n = r.spare().unwrap().len().min(r.needed());
            r.filled(n);
        }
        assert_eq!(r.capacity(), MAX_BUFFER);
        // Room is left for exactly the next header.
        let spare = r.spare().unwrap();
        assert_eq!(spare.len(), 2);
        spare.copy_from_slice(&[0, 20]);
        r.filled(2);
        assert_eq!(r.next_frame().unwrap().unwrap().len(), 65535);
        // Only the next header moves to the front; a small frame may read
        // ahead up to READ_AHEAD.
        assert_eq!(r.spare().unwrap().len(), READ_AHEAD - 2);
        assert_eq!(r.capacity(), MAX_BUFFER);
    }

    #[test]
    fn a_buffer_full_of_a_complete_frame_must_be_drained_first() {
        let mut r = FrameReader::new(FrameKind::Transport);
        let frame = [&[0xffu8, 0xff][..], &[1; 65535], &[0, 16]].concat();
        let mut fed = 0;
        while fed < frame.len() {
            let spare = r.spare().unwrap();
            let n = spare.len().min(frame.len() - fed);
            spare[..n].copy_from_slice(&frame[fed..fed + n]);
            r.filled(n);
            fed += n;
        }
        assert!(matches!(r.spare(), Err(E2eeError::Misuse(_))));
        assert_eq!(r.next_frame().unwrap().unwrap().len(), 65535);
        assert!(r.spare().unwrap().len() >= 16);
    }
}
