//! The transport phase: sealing and opening frames.

use std::fmt;

use crate::error::{E2eeError, FrameKind};
use crate::frame::{HEADER_LEN, MAX_FRAME_LEN, MAX_PLAINTEXT, header};
use crate::noise::{CipherState, TAG_LEN};

/// What a transport frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Application data: the first `n` bytes of the frame body are now the
    /// plaintext (never 0).
    Data(usize),
    /// The peer's authenticated end of data (an empty frame): it sends
    /// nothing more.
    End,
}

/// The two ciphers of an established channel, as a sans-I/O state machine
/// over frames.
///
/// Sending: [`seal_in_place`](Self::seal_in_place) (or the copying
/// [`seal_frame`](Self::seal_frame)) for data, never empty;
/// [`seal_end`](Self::seal_end) once, for the authenticated end of data.
/// Receiving: [`open_in_place`](Self::open_in_place) on each frame body a
/// [`FrameReader`](crate::FrameReader) returns.
///
/// Any failure of the peer's making (a frame that does not decrypt, data
/// after the end, an exhausted nonce) poisons the state: every later call
/// returns the same error, so altered bytes are never returned and nothing
/// more is sent. Keys are zeroized when the state is dropped.
pub struct Transport {
    send: CipherState,
    recv: CipherState,
    end_sent: bool,
    end_received: bool,
    failed: Option<E2eeError>,
}

impl Transport {
    pub(crate) fn new(send: CipherState, recv: CipherState) -> Transport {
        Transport {
            send,
            recv,
            end_sent: false,
            end_received: false,
            failed: None,
        }
    }

    /// A copy of the state, for the fuzzing drivers only (see
    /// `CipherState::duplicate`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn duplicate(&self) -> Transport {
        Transport {
            send: self.send.duplicate(),
            recv: self.recv.duplicate(),
            end_sent: self.end_sent,
            end_received: self.end_received,
            failed: self.failed.clone(),
        }
    }

    fn fail(&mut self, e: E2eeError) -> E2eeError {
        self.failed = Some(e.clone());
        e
    }

    fn check(&self) -> Result<(), E2eeError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn check_send(&self) -> Result<(), E2eeError> {
        self.check()?;
        if self.end_sent {
            return Err(E2eeError::WriteAfterEnd);
        }
        Ok(())
    }

    /// Seals one data frame in place. `frame` is laid out as it goes on the
    /// wire: 2 bytes of room for the length, the plaintext (1 to
    /// [`MAX_PLAINTEXT`] bytes), 16 bytes of room for the tag. Writes the
    /// length and the tag and encrypts the plaintext where it is.
    ///
    /// Errors: [`E2eeError::FrameTooLong`] for more than 65519 bytes of
    /// plaintext, [`E2eeError::Misuse`] for none (the empty frame is the end
    /// of data, sent only by [`seal_end`](Self::seal_end)),
    /// [`E2eeError::WriteAfterEnd`], [`E2eeError::NonceExhausted`].
    pub fn seal_in_place(&mut self, frame: &mut [u8]) -> Result<(), E2eeError> {
        self.check_send()?;
        let overhead = HEADER_LEN + TAG_LEN;
        if frame.len() <= overhead {
            return Err(E2eeError::Misuse(
                "a data frame needs 2 bytes of header room, at least one byte of plaintext and \
                 16 bytes of tag room",
            ));
        }
        let plaintext_len = frame.len() - overhead;
        if plaintext_len > MAX_PLAINTEXT {
            return Err(E2eeError::FrameTooLong {
                found: plaintext_len,
                max: MAX_PLAINTEXT,
            });
        }
        let (head, rest) = frame.split_at_mut(HEADER_LEN);
        let (plaintext, tag_room) = rest.split_at_mut(plaintext_len);
        head.copy_from_slice(&header(plaintext_len + TAG_LEN)?);
        let tag = self
            .send
            .encrypt_in_place(&[], plaintext)
            .map_err(|e| self.fail(e))?;
        tag_room.copy_from_slice(&tag);
        Ok(())
    }

    /// Appends a sealed data frame carrying `plaintext` (1 to
    /// [`MAX_PLAINTEXT`] bytes) to `out`. Errors as
    /// [`seal_in_place`](Self::seal_in_place); on error `out` is unchanged.
    pub fn seal_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), E2eeError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(E2eeError::FrameTooLong {
                found: plaintext.len(),
                max: MAX_PLAINTEXT,
            });
        }
        let start = out.len();
        out.reserve(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&[0; HEADER_LEN]);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0; TAG_LEN]);
        let result = self.seal_in_place(&mut out[start..]);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Appends the end-of-data frame (an empty, authenticated frame) to
    /// `out`. After it, sealing fails with [`E2eeError::WriteAfterEnd`].
    pub fn seal_end(&mut self, out: &mut Vec<u8>) -> Result<(), E2eeError> {
        self.check_send()?;
        let tag = self
            .send
            .encrypt_in_place(&[], &mut [])
            .map_err(|e| self.fail(e))?;
        out.extend_from_slice(&header(TAG_LEN)?);
        out.extend_from_slice(&tag);
        self.end_sent = true;
        Ok(())
    }

    /// Authenticates and decrypts one frame body (what follows the 2-byte
    /// length) in place. On success with [`Opened::Data`]`(n)` the plaintext
    /// is `body[..n]`; on failure nothing in `body` may be used.
    ///
    /// Errors (all poison the state): [`E2eeError::DecryptFailed`],
    /// [`E2eeError::TooShort`] (shorter than the tag),
    /// [`E2eeError::DataAfterEnd`], [`E2eeError::NonceExhausted`].
    pub fn open_in_place(&mut self, body: &mut [u8]) -> Result<Opened, E2eeError> {
        self.check()?;
        if self.end_received {
            return Err(self.fail(E2eeError::DataAfterEnd));
        }
        if body.len() < TAG_LEN {
            return Err(self.fail(E2eeError::TooShort {
                kind: FrameKind::Transport,
                found: body.len(),
                min: TAG_LEN,
            }));
        }
        if body.len() > MAX_FRAME_LEN {
            return Err(self.fail(E2eeError::FrameTooLong {
                found: body.len(),
                max: MAX_FRAME_LEN,
            }));
        }
        let (ciphertext, tag) = body.split_at_mut(body.len() - TAG_LEN);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        self.recv
            .decrypt_in_place(&[], ciphertext, &t)
            .map_err(|e| self.fail(e))?;
        if ciphertext.is_empty() {
            self.end_received = true;
            Ok(Opened::End)
        } else {
            Ok(Opened::Data(ciphertext.len()))
        }
    }

    /// Whether the end-of-data frame was sealed.
    pub fn is_end_sent(&self) -> bool {
        self.end_sent
    }

    /// Whether the peer's end-of-data frame arrived.
    pub fn is_end_received(&self) -> bool {
        self.end_received
    }

    /// The error that poisoned this state, if any.
    pub fn error(&self) -> Option<&E2eeError> {
        self.failed.as_ref()
    }

    /// How many frames were sealed (the next sending nonce).
    pub fn sent_frames(&self) -> u64 {
        self.send.nonce()
    }

    /// How many frames were opened (the next receiving nonce).
    pub fn received_frames(&self) -> u64 {
        self.recv.nonce()
    }

    /// For tests: move both nonces forward.
    #[cfg(test)]
    pub(crate) fn set_nonces(&mut self, send: u64, recv: u64) {
        self.send.set_nonce(send);
        self.recv.set_nonce(recv);
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("sent_frames", &self.send.nonce())
            .field("received_frames", &self.recv.nonce())
            .field("end_sent", &self.end_sent)
            .field("end_received", &self.end_received)
            .field("failed", &self.failed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uds_handshake::Identity;

    use super::*;
    use crate::{Handshake, LocalStatic};

    fn pair() -> (Transport, Transport) {
        let (a_id, b_id) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
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
        (a.finish().unwrap().0, b.finish().unwrap().0)
    }

    #[test]
    fn the_channel_ends_before_a_nonce_is_reused() {
        let (mut a, mut b) = pair();
        a.set_nonces(u64::MAX - 1, 0);
        b.set_nonces(0, u64::MAX - 1);
        let mut frame = Vec::new();
        a.seal_frame(b"last", &mut frame).unwrap();
        assert_eq!(a.sent_frames(), u64::MAX);
        let mut body = frame[2..].to_vec();
        assert_eq!(b.open_in_place(&mut body), Ok(Opened::Data(4)));
        // Nonce 2^64 - 1 is never used: sending and receiving both stop,
        // and the state stays poisoned.
        let mut more = Vec::new();
        assert_eq!(
            a.seal_frame(b"x", &mut more),
            Err(E2eeError::NonceExhausted)
        );
        assert!(more.is_empty());
        assert_eq!(a.seal_end(&mut more), Err(E2eeError::NonceExhausted));
        assert_eq!(a.error(), Some(&E2eeError::NonceExhausted));
        let mut body = frame[2..].to_vec();
        assert_eq!(b.open_in_place(&mut body), Err(E2eeError::NonceExhausted));
        assert_eq!(
            b.seal_frame(b"x", &mut more),
            Err(E2eeError::NonceExhausted)
        );
    }

    #[test]
    fn frames_are_bounded_and_never_empty() {
        let (mut a, mut b) = pair();
        let mut out = Vec::new();
        assert_eq!(
            a.seal_frame(&vec![0; MAX_PLAINTEXT + 1], &mut out),
            Err(E2eeError::FrameTooLong {
                found: MAX_PLAINTEXT + 1,
                max: MAX_PLAINTEXT
            })
        );
        assert!(matches!(
            a.seal_frame(b"", &mut out),
            Err(E2eeError::Misuse(_))
        ));
        assert!(out.is_empty());
        // Misuse does not poison.
        a.seal_frame(&vec![9; MAX_PLAINTEXT], &mut out).unwrap();
        assert_eq!(out.len(), 2 + MAX_FRAME_LEN);
        assert_eq!(&out[..2], &[0xff, 0xff]);
        let mut body = out[2..].to_vec();
        assert_eq!(b.open_in_place(&mut body), Ok(Opened::Data(MAX_PLAINTEXT)));
        assert_eq!(
            b.open_in_place(&mut [0; 15]),
            Err(E2eeError::TooShort {
                kind: FrameKind::Transport,
                found: 15,
                min: 16
            })
        );
        // Poisoned from then on.
        assert!(b.open_in_place(&mut body).is_err());
    }
}
