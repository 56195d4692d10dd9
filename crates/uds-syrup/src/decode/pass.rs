//! The single pass: lex each token once, check the rules and limits, track
//! the open containers, and (when asked) build the value from the same
//! tokens.
//!
//! The [`Scanner`] is the part that survives between calls: the offset of
//! the next token and the open brackets. It is all an incomplete value
//! costs to keep, whatever its size. The [`Builder`] lives for one call
//! only.
//!
//! Lexical errors and limits are reported as soon as the bytes that break
//! them arrive. Errors only a built value can show (UTF-8, canonical NaN,
//! key order and uniqueness, missing record label or dictionary value) are
//! held back until the value's last byte has been scanned, so that a later
//! lexical error takes precedence, exactly as when the value is scanned
//! first and built afterwards.

use bytes::Bytes;

use super::lex::{Token, closer_of, lex};
use super::{DecodeError, ErrorKind, Limits, Work};
use crate::value::{Dict, Integer, Record, Set, Value};

/// Where built bytestrings come from: slices of shared input, or copies.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    buf: &'a [u8],
    shared: Option<&'a Bytes>,
}

impl<'a> Source<'a> {
    /// Input whose bytestrings are sliced without copying.
    pub(super) fn shared(b: &'a Bytes) -> Source<'a> {
        Source {
            buf: b,
            shared: Some(b),
        }
    }

    /// Input whose bytestrings are copied.
    pub(super) fn borrowed(b: &'a [u8]) -> Source<'a> {
        Source {
            buf: b,
            shared: None,
        }
    }

    /// The bytes.
    pub(super) fn as_slice(&self) -> &'a [u8] {
        self.buf
    }

    /// The first `len` bytes.
    pub(super) fn prefix(self, len: usize) -> Source<'a> {
        Source {
            buf: &self.buf[..len],
            shared: self.shared,
        }
    }

    fn bytes(&self, start: usize, end: usize) -> Bytes {
        match self.shared {
            Some(b) => b.slice(start..end),
            None => Bytes::copy_from_slice(&self.buf[start..end]),
        }
    }
}

/// The resumable state of a pass: what a partly received value costs.
#[derive(Debug, Clone, Default)]
pub(super) struct Scanner {
    /// Offset of the next unscanned token (always at a token boundary).
    pub(super) pos: usize,
    /// Opening brackets of the containers still open.
    pub(super) stack: Vec<u8>,
}

impl Scanner {
    pub(super) fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
    }

    /// Whether no part of a value has been scanned.
    pub(super) fn is_fresh(&self) -> bool {
        self.pos == 0 && self.stack.is_empty()
    }

    /// Lexes the token at `pos` and checks it against the limits and the
    /// open brackets; on success moves past it and returns it with its
    /// span. `Ok(None)` if `buf` ends inside it (nothing moves).
    #[inline(always)]
    fn next_token(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        work: &mut Work,
    ) -> Result<Option<(Token, usize, usize)>, DecodeError> {
        let start = self.pos;
        if start >= buf.len() {
            return Ok(None);
        }
        let Some((token, end)) = lex(buf, start, limits, work)? else {
            return Ok(None);
        };
        if end > limits.max_message_len {
            return Err(DecodeError::new(
                ErrorKind::MessageTooLarge {
                    limit: limits.max_message_len,
                },
                start,
            ));
        }
        match token {
            Token::Open(b) => {
                if self.stack.len() >= limits.max_depth {
                    return Err(DecodeError::new(
                        ErrorKind::TooDeep {
                            limit: limits.max_depth,
                        },
                        start,
                    ));
                }
                self.stack.push(b);
            }
            Token::Close(c) => match self.stack.pop() {
                None => {
                    return Err(DecodeError::new(
                        ErrorKind::UnexpectedClose(c as char),
                        start,
                    ));
                }
                Some(open) if closer_of(open) != c => {
                    return Err(DecodeError::new(
                        ErrorKind::MismatchedClose {
                            open: open as char,
                            found: c as char,
                        },
                        start,
                    ));
                }
                Some(_) => {}
            },
            _ => {}
        }
        self.pos = end;
        Ok(Some((token, start, end)))
    }

    /// Scans on from `pos` without building: the length of the value once
    /// its last byte is scanned, `None` while `buf` ends inside it. On error
    /// the scanner stays where the error was found; the caller resets it.
    pub(super) fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        work: &mut Work,
    ) -> Result<Option<usize>, DecodeError> {
        while let Some((_, _, end)) = self.next_token(buf, limits, work)? {
            if self.stack.is_empty() {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }
}

/// How a building pass ended (errors found by scanning aside).
pub(super) enum Outcome {
    /// The buffer ends inside the value; the scanner has kept its place.
    Incomplete,
    /// The value ends at `len`: the value, or the error found building it.
    Complete {
        len: usize,
        value: Result<Value, DecodeError>,
    },
}

/// Scans a value from its start (`scanner` fresh) and builds it from the
/// same tokens. An error that only building shows is held until the rest of
/// the value has been scanned (a lexical error or a limit there wins). On a
/// scanning error the scanner stays where it was found; the caller resets
/// it.
pub(super) fn build(
    scanner: &mut Scanner,
    src: Source<'_>,
    limits: &Limits,
    work: &mut Work,
) -> Result<Outcome, DecodeError> {
    debug_assert!(scanner.is_fresh());
    let buf = src.as_slice();
    let mut builder = Builder::new(src);
    while let Some((token, start, end)) = scanner.next_token(buf, limits, work)? {
        match builder.token(token, start, end, work) {
            Ok(Some(value)) => {
                return Ok(Outcome::Complete {
                    len: end,
                    value: Ok(value),
                });
            }
            Ok(None) => {}
            Err(held) => {
                // Stop building, and scan the rest of the value first.
                drop(builder);
                if scanner.stack.is_empty() {
                    return Ok(Outcome::Complete {
                        len: end,
                        value: Err(held),
                    });
                }
                return Ok(match scanner.scan(buf, limits, work)? {
                    Some(len) => Outcome::Complete {
                        len,
                        value: Err(held),
                    },
                    None => Outcome::Incomplete,
                });
            }
        }
    }
    Ok(Outcome::Incomplete)
}

/// A container being built.
enum Frame {
    List(Vec<Value>),
    Set {
        items: Vec<Value>,
        /// The span of the previous item, for the order check.
        last: Option<(usize, usize)>,
    },
    Dict {
        entries: Vec<(Value, Value)>,
        /// A key waiting for its value.
        pending: Option<Value>,
        /// The span of the previous key, for the order check.
        last_key: Option<(usize, usize)>,
    },
    Record {
        label: Option<Value>,
        fields: Vec<Value>,
    },
}

/// Builds a value from the tokens of one pass. The scanner has already
/// checked the brackets match and the limits hold.
struct Builder<'a> {
    src: Source<'a>,
    /// Open containers and the offsets of their opening brackets.
    frames: Vec<(Frame, usize)>,
}

impl<'a> Builder<'a> {
    fn new(src: Source<'a>) -> Builder<'a> {
        Builder {
            src,
            frames: Vec::new(),
        }
    }

    /// Takes the token spanning `start..end`; returns the value once the
    /// outermost one is complete.
    fn token(
        &mut self,
        token: Token,
        start: usize,
        end: usize,
        work: &mut Work,
    ) -> Result<Option<Value>, DecodeError> {
        let (value, span) = match token {
            Token::Open(b) => {
                let frame = match b {
                    b'[' => Frame::List(Vec::new()),
                    b'#' => Frame::Set {
                        items: Vec::new(),
                        last: None,
                    },
                    b'{' => Frame::Dict {
                        entries: Vec::new(),
                        pending: None,
                        last_key: None,
                    },
                    _ => Frame::Record {
                        label: None,
                        fields: Vec::new(),
                    },
                };
                self.frames.push((frame, start));
                return Ok(None);
            }
            Token::Close(_) => {
                let Some((frame, open_at)) = self.frames.pop() else {
                    // The scanner refuses a close with nothing open.
                    return Err(DecodeError::new(ErrorKind::UnexpectedClose('?'), start));
                };
                let value = match frame {
                    Frame::List(items) => Value::List(items),
                    Frame::Set { items, .. } => Value::Set(Set::from_sorted(items)),
                    Frame::Dict {
                        entries, pending, ..
                    } => {
                        if pending.is_some() {
                            return Err(DecodeError::new(ErrorKind::MissingDictValue, start));
                        }
                        Value::Dict(Dict::from_sorted(entries))
                    }
                    Frame::Record { label, fields } => match label {
                        Some(label) => Value::Record(Record::new(label, fields)),
                        None => {
                            return Err(DecodeError::new(ErrorKind::MissingRecordLabel, start));
                        }
                    },
                };
                (value, (open_at, end))
            }
            atom => {
                work.add(end - start);
                (self.atom(atom, start, end)?, (start, end))
            }
        };
        self.attach(value, span, work)
    }

    /// Builds the scalar spanning `start..end`.
    fn atom(&self, token: Token, start: usize, end: usize) -> Result<Value, DecodeError> {
        let buf = self.src.as_slice();
        match token {
            Token::Bool(b) => Ok(Value::Bool(b)),
            Token::Double => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&buf[start + 1..end]);
                let bits = u64::from_be_bytes(raw);
                let f = f64::from_bits(bits);
                if f.is_nan() && bits != crate::encode::CANONICAL_NAN {
                    return Err(DecodeError::new(ErrorKind::NonCanonicalNan, start));
                }
                Ok(Value::Float(f))
            }
            Token::Integer { marker_at } => {
                // The lexer has checked the digits are ASCII and canonical.
                let digits = std::str::from_utf8(&buf[start..marker_at]).unwrap_or_default();
                Integer::from_sign_and_digits(buf[marker_at] == b'-', digits)
                    .map(Value::Integer)
                    .ok_or(DecodeError::new(ErrorKind::LeadingZero, start))
            }
            Token::Atom {
                marker: b':',
                payload_at,
            } => Ok(Value::Bytes(self.src.bytes(payload_at, end))),
            Token::Atom { marker, payload_at } => {
                let what = if marker == b'"' { "string" } else { "symbol" };
                let text = std::str::from_utf8(&buf[payload_at..end]).map_err(|e| {
                    DecodeError::new(ErrorKind::InvalidUtf8(what), payload_at + e.valid_up_to())
                })?;
                Ok(if marker == b'"' {
                    Value::String(text.to_owned())
                } else {
                    Value::Symbol(text.to_owned())
                })
            }
            Token::Open(_) | Token::Close(_) => {
                unreachable!("brackets are handled by Builder::token")
            }
        }
    }

    /// Adds a finished value to the innermost open container, checking
    /// canonical order; returns it if nothing is open.
    fn attach(
        &mut self,
        value: Value,
        span: (usize, usize),
        work: &mut Work,
    ) -> Result<Option<Value>, DecodeError> {
        let buf = self.src.as_slice();
        let Some((frame, _)) = self.frames.last_mut() else {
            return Ok(Some(value));
        };
        let this = &buf[span.0..span.1];
        // Strictly after the previous one, by encoding.
        let mut check_order = |last: Option<(usize, usize)>, dup, unsorted| {
            let Some((a, b)) = last else { return Ok(()) };
            work.add(this.len().min(b - a));
            match buf[a..b].cmp(this) {
                std::cmp::Ordering::Less => Ok(()),
                std::cmp::Ordering::Equal => Err(DecodeError::new(dup, span.0)),
                std::cmp::Ordering::Greater => Err(DecodeError::new(unsorted, span.0)),
            }
        };
        match frame {
            Frame::List(items) => items.push(value),
            Frame::Set { items, last } => {
                check_order(
                    *last,
                    ErrorKind::DuplicateSetItem,
                    ErrorKind::UnsortedSetItem,
                )?;
                *last = Some(span);
                items.push(value);
            }
            Frame::Dict {
                entries,
                pending,
                last_key,
            } => match pending.take() {
                Some(key) => entries.push((key, value)),
                None => {
                    check_order(
                        *last_key,
                        ErrorKind::DuplicateDictKey,
                        ErrorKind::UnsortedDictKey,
                    )?;
                    *last_key = Some(span);
                    *pending = Some(value);
                }
            },
            Frame::Record { label, fields } => {
                if label.is_none() {
                    *label = Some(value);
                } else {
                    fields.push(value);
                }
            }
        }
        Ok(None)
    }
}
