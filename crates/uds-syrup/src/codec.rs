//! Message framing for byte streams: a [`tokio_util::codec`] decoder and
//! encoder for Syrup messages (feature `codec`).
//!
//! Two framings are offered:
//!
//! * [`Framing::Raw`]: values back to back, no extra framing (what the
//!   introduction channel and plaintext peer connections carry);
//! * [`Framing::Bytestring`]: each message wrapped as a Syrup bytestring,
//!   `<len>:<message>` (the OCapN default-framing consensus), so a reader can
//!   skip a message without parsing it.
//!
//! ```
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder as _, Encoder as _};
//! use uds_syrup::codec::{Framing, SyrupCodec};
//! use uds_syrup::Value;
//!
//! let mut codec = SyrupCodec::new(Framing::Bytestring);
//! let msg = Value::record(Value::symbol("op:abort"), [Value::string("bye")]);
//! let mut wire = BytesMut::new();
//! codec.encode(&msg, &mut wire).unwrap();
//! assert_eq!(&wire[..], b"17:<8'op:abort3\"bye>");
//! assert_eq!(codec.decode(&mut wire).unwrap(), Some(msg));
//! ```

use std::io;

use bytes::{BufMut, BytesMut};

use crate::decode::{DecodeError, Decoder, ErrorKind, Limits};
use crate::value::Value;

/// How messages are delimited on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framing {
    /// Syrup values back to back.
    #[default]
    Raw,
    /// Each message wrapped as a bytestring: `<len>:<message>`.
    Bytestring,
}

/// Why a stream could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A message is not valid Syrup, exceeds a limit, or the stream ended
    /// inside one.
    #[error(transparent)]
    Syrup(#[from] DecodeError),
    /// The bytestring frame around a message is malformed.
    #[error("bad bytestring frame: {0}")]
    Frame(&'static str),
}

/// A tokio-util codec for Syrup messages.
///
/// Decoding is strict and bounded by [`Limits`] (the largest message, and in
/// bytestring framing the largest frame, is `max_message_len`); a decoding
/// error leaves the stream unusable, so drop the connection.
#[derive(Debug, Clone, Default)]
pub struct SyrupCodec {
    framing: Framing,
    decoder: Decoder,
}

impl SyrupCodec {
    /// A codec with the default [`Limits`].
    pub fn new(framing: Framing) -> SyrupCodec {
        SyrupCodec::with_limits(framing, Limits::default())
    }

    /// A codec with the given limits.
    pub fn with_limits(framing: Framing, limits: Limits) -> SyrupCodec {
        SyrupCodec {
            framing,
            decoder: Decoder::new(limits),
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The length of the bytestring frame payload at the front of `src` and
    /// the header length, or `None` if the header is incomplete.
    fn frame_header(&self, src: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
        let max = self.decoder.limits().max_message_len;
        let mut len: usize = 0;
        for (i, &b) in src.iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    if i == 1 && src[0] == b'0' {
                        return Err(CodecError::Frame("length has a leading zero"));
                    }
                    len = len * 10 + usize::from(b - b'0');
                    if len > max {
                        return Err(DecodeError::from_parts(
                            ErrorKind::MessageTooLarge { limit: max },
                            0,
                        )
                        .into());
                    }
                }
                b':' if i > 0 => return Ok(Some((len, i + 1))),
                _ => return Err(CodecError::Frame("expected a bytestring <len>:<message>")),
            }
        }
        Ok(None)
    }
}

impl tokio_util::codec::Decoder for SyrupCodec {
    type Item = Value;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Value>, CodecError> {
        match self.framing {
            // One pass: framed, checked and built together.
            Framing::Raw => Ok(self.decoder.decode_from(src)?),
            Framing::Bytestring => {
                let Some((len, header)) = self.frame_header(src)? else {
                    return Ok(None);
                };
                if src.len() < header + len {
                    src.reserve(header + len - src.len());
                    return Ok(None);
                }
                let _ = src.split_to(header);
                let payload = src.split_to(len).freeze();
                Ok(Some(self.decoder.decode_exact(&payload)?))
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Value>, CodecError> {
        match self.decode(src)? {
            Some(v) => Ok(Some(v)),
            None if src.is_empty() => Ok(None),
            None => Err(DecodeError::from_parts(ErrorKind::Truncated("message"), src.len()).into()),
        }
    }
}

impl tokio_util::codec::Encoder<&Value> for SyrupCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Value, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = item.encoded_len();
        match self.framing {
            Framing::Raw => dst.reserve(len),
            Framing::Bytestring => {
                dst.reserve(len + 21);
                crate::encode::push_decimal(dst, len as u128);
                dst.put_u8(b':');
            }
        }
        item.encode_into(dst);
        Ok(())
    }
}

impl tokio_util::codec::Encoder<Value> for SyrupCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Value, dst: &mut BytesMut) -> Result<(), CodecError> {
        tokio_util::codec::Encoder::<&Value>::encode(self, &item, dst)
    }
}
