//! The strict, incremental decoder.
//!
//! Decoding runs in two passes over one value:
//!
//! 1. A resumable **scanner** finds where the value ends. It checks the
//!    lexical rules (digits, markers, brackets) and the limits as bytes
//!    arrive, keeps its place between calls (so a value that arrives one byte
//!    at a time costs linear time in total), and never looks past the end of
//!    the value.
//! 2. A **parser** builds the [`Value`] from exactly those bytes and checks
//!    the rest: UTF-8, canonical NaN, canonical order and uniqueness of
//!    dictionary keys and set items, record labels.
//!
//! Neither pass recurses: nesting is tracked on explicit stacks bounded by
//! [`Limits::max_depth`], and no buffer is allocated for a claimed length
//! before the bytes are there.

use bytes::{Bytes, BytesMut};

use crate::value::{Dict, Integer, Record, Set, Value};

/// Bounds the decoder enforces. Exceeding one is a specific [`ErrorKind`].
///
/// The defaults suit general use; the introduction protocol uses tighter
/// ones (see [`Limits::intro_channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists, dictionaries, sets and records (a scalar at
    /// top level has depth 0, `[1+]` has depth 1). Default 64.
    pub max_depth: usize,
    /// Largest encoded value, in bytes. Default 1 MiB.
    pub max_message_len: usize,
    /// Largest single bytestring, string or symbol payload, in bytes.
    /// Default 1 MiB.
    pub max_atom_len: usize,
    /// Most decimal digits in an integer. Default 256 (about 850 bits).
    pub max_integer_digits: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_message_len: 1 << 20,
            max_atom_len: 1 << 20,
            max_integer_digits: 256,
        }
    }
}

impl Limits {
    /// The limits of the introduction channel (DESIGN §5): messages of at
    /// most 64 KiB, nesting depth at most 32, integers of at most 64 digits.
    pub const fn intro_channel() -> Limits {
        Limits {
            max_depth: 32,
            max_message_len: 64 << 10,
            max_atom_len: 64 << 10,
            max_integer_digits: 64,
        }
    }
}

/// Why decoding failed, and where.
///
/// The offset counts from the first byte of the value being decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Syrup at byte {offset}: {kind}")]
pub struct DecodeError {
    kind: ErrorKind,
    offset: usize,
}

impl DecodeError {
    fn new(kind: ErrorKind, offset: usize) -> DecodeError {
        DecodeError { kind, offset }
    }

    /// An error of `kind` at `offset`, for framing layers built on this
    /// decoder.
    pub fn from_parts(kind: ErrorKind, offset: usize) -> DecodeError {
        DecodeError { kind, offset }
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The byte offset of the problem, from the start of the value.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether the error is a limit being exceeded (rather than malformed
    /// input).
    pub fn is_limit(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::TooDeep { .. }
                | ErrorKind::MessageTooLarge { .. }
                | ErrorKind::AtomTooLong { .. }
                | ErrorKind::IntegerTooLarge { .. }
        )
    }
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No bytes at all.
    #[error("no value: the input is empty")]
    EmptyInput,
    /// The input ended inside a value.
    #[error("the input ends inside a {0}")]
    Truncated(&'static str),
    /// Bytes remain after the one value that was expected.
    #[error("{0} unexpected bytes after the value")]
    TrailingBytes(usize),
    /// An integer such as `01+`.
    #[error("integer has a leading zero")]
    LeadingZero,
    /// `0-`.
    #[error("negative zero (0-) is not a valid integer")]
    NegativeZero,
    /// A length prefix such as `03:`.
    #[error("length prefix has a leading zero")]
    LengthLeadingZero,
    /// A byte that cannot start a value.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// Whitespace, which canonical Syrup never contains.
    #[error("whitespace (0x{0:02x}) is not allowed between values in canonical Syrup")]
    Whitespace(u8),
    /// A bencode or canonical-s-expression delimiter.
    #[error("legacy bencode/csexp delimiter '{0}' is not Syrup")]
    LegacyDelimiter(char),
    /// Digits followed by something other than `+ - : " '`.
    #[error("digits followed by unknown type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// A closing bracket with nothing open.
    #[error("closing '{0}' with nothing open")]
    UnexpectedClose(char),
    /// A closing bracket of the wrong kind.
    #[error("closing '{found}' does not match the open '{open}'")]
    MismatchedClose {
        /// The opening bracket.
        open: char,
        /// The closing bracket found.
        found: char,
    },
    /// `F`: single floats are not part of OCapN.
    #[error("single-precision floats ('F') are not part of OCapN Syrup")]
    Float32,
    /// A NaN other than `7ff8000000000000`.
    #[error("NaN must be encoded as 7ff8000000000000")]
    NonCanonicalNan,
    /// A string or symbol that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// Dictionary keys out of canonical order.
    #[error("dictionary keys are not in canonical order")]
    UnsortedDictKey,
    /// The same dictionary key twice.
    #[error("duplicate dictionary key")]
    DuplicateDictKey,
    /// A dictionary with a key but no value before `}`.
    #[error("dictionary key has no value")]
    MissingDictValue,
    /// Set items out of canonical order.
    #[error("set items are not in canonical order")]
    UnsortedSetItem,
    /// The same set item twice.
    #[error("duplicate set item")]
    DuplicateSetItem,
    /// `<>`.
    #[error("record has no label")]
    MissingRecordLabel,
    /// Nesting beyond [`Limits::max_depth`].
    #[error("nesting deeper than the limit of {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A value larger than [`Limits::max_message_len`].
    #[error("value larger than the limit of {limit} bytes")]
    MessageTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A payload larger than [`Limits::max_atom_len`].
    #[error("{what} length exceeds the limit of {limit} bytes")]
    AtomTooLong {
        /// "bytestring", "string" or "symbol".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// An integer with more digits than [`Limits::max_integer_digits`].
    #[error("integer with more than {limit} digits")]
    IntegerTooLarge {
        /// The limit.
        limit: usize,
    },
}

fn atom_name(marker: u8) -> &'static str {
    match marker {
        b':' => "bytestring",
        b'"' => "string",
        _ => "symbol",
    }
}

fn container_name(open: u8) -> &'static str {
    match open {
        b'[' => "list",
        b'{' => "dictionary",
        b'#' => "set",
        _ => "record",
    }
}

fn closer_of(open: u8) -> u8 {
    match open {
        b'[' => b']',
        b'{' => b'}',
        b'#' => b'$',
        _ => b'>',
    }
}

fn opener_of(close: u8) -> u8 {
    match close {
        b']' => b'[',
        b'}' => b'{',
        b'$' => b'#',
        _ => b'<',
    }
}

/// One lexical token.
enum Token {
    /// A complete scalar spanning `start..end`.
    Atom,
    /// An opening bracket.
    Open(u8),
    /// A closing bracket.
    Close(u8),
}

/// Reads the token at `pos`. `Ok(None)` means the buffer ends inside it.
/// On success returns the token, its end, and (for truncation reports) a
/// description of what it is.
fn lex(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<(Token, usize)>, DecodeError> {
    let b = buf[pos];
    let err = |k| Err(DecodeError::new(k, pos));
    match b {
        b't' | b'f' => Ok(Some((Token::Atom, pos + 1))),
        b'D' => {
            let end = pos + 9;
            if end > limits.max_message_len {
                return err(ErrorKind::MessageTooLarge {
                    limit: limits.max_message_len,
                });
            }
            Ok((buf.len() >= end).then_some((Token::Atom, end)))
        }
        b'F' => err(ErrorKind::Float32),
        b'0'..=b'9' => {
            // A digit run can be an integer (up to max_integer_digits) or a
            // length (at most 20 digits fit in u64): stop reading early.
            let max_run = limits.max_integer_digits.max(20);
            let mut i = pos;
            while i < buf.len() && buf[i].is_ascii_digit() {
                i += 1;
                if i - pos > max_run {
                    return err(ErrorKind::IntegerTooLarge {
                        limit: limits.max_integer_digits,
                    });
                }
            }
            if i == buf.len() {
                return Ok(None);
            }
            let digits = &buf[pos..i];
            match buf[i] {
                marker @ (b'+' | b'-') => {
                    if digits.len() > 1 && digits[0] == b'0' {
                        return err(ErrorKind::LeadingZero);
                    }
                    if digits == b"0" && marker == b'-' {
                        return err(ErrorKind::NegativeZero);
                    }
                    if digits.len() > limits.max_integer_digits {
                        return err(ErrorKind::IntegerTooLarge {
                            limit: limits.max_integer_digits,
                        });
                    }
                    Ok(Some((Token::Atom, i + 1)))
                }
                marker @ (b':' | b'"' | b'\'') => {
                    if digits.len() > 1 && digits[0] == b'0' {
                        return err(ErrorKind::LengthLeadingZero);
                    }
                    let too_long = ErrorKind::AtomTooLong {
                        what: atom_name(marker),
                        limit: limits.max_atom_len,
                    };
                    let mut len: usize = 0;
                    for &d in digits {
                        len = match len
                            .checked_mul(10)
                            .and_then(|l| l.checked_add(usize::from(d - b'0')))
                        {
                            Some(l) => l,
                            None => return err(too_long),
                        };
                    }
                    if len > limits.max_atom_len {
                        return err(too_long);
                    }
                    let end = i + 1 + len;
                    if end > limits.max_message_len {
                        return err(ErrorKind::MessageTooLarge {
                            limit: limits.max_message_len,
                        });
                    }
                    Ok((buf.len() >= end).then_some((Token::Atom, end)))
                }
                other => Err(DecodeError::new(ErrorKind::UnknownMarker(other), i)),
            }
        }
        b'[' | b'{' | b'<' | b'#' => Ok(Some((Token::Open(b), pos + 1))),
        b']' | b'}' | b'>' | b'$' => Ok(Some((Token::Close(b), pos + 1))),
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => err(ErrorKind::Whitespace(b)),
        b'l' | b'd' | b'i' | b'e' | b'(' | b')' => err(ErrorKind::LegacyDelimiter(b as char)),
        other => err(ErrorKind::UnexpectedByte(other)),
    }
}

/// What the lexer was reading when the buffer ran out (for truncation
/// errors).
fn truncated_context(buf: &[u8], pos: usize, stack: &[u8]) -> &'static str {
    if pos < buf.len() {
        let b = buf[pos];
        if b == b'D' {
            return "double";
        }
        if b.is_ascii_digit() {
            let mut i = pos;
            while i < buf.len() && buf[i].is_ascii_digit() {
                i += 1;
            }
            return match buf.get(i) {
                Some(&m @ (b':' | b'"' | b'\'')) => atom_name(m),
                _ => "number",
            };
        }
    }
    stack.last().map_or("value", |&o| container_name(o))
}

/// The resumable scanner: the decoder's memory between calls.
#[derive(Debug, Clone, Default)]
struct Scanner {
    /// Offset of the next unscanned token (always at a token boundary).
    pos: usize,
    /// Opening brackets of the containers still open.
    stack: Vec<u8>,
}

impl Scanner {
    fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
    }

    /// Scans on from where the last call stopped. Returns the length of the
    /// first complete value, or `None` if `buf` ends inside it.
    fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
        if buf.len() < self.pos {
            // The caller gave a shorter buffer than before: start again.
            self.reset();
        }
        let result = self.scan_inner(buf, limits);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    fn scan_inner(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
        loop {
            if self.pos >= buf.len() {
                return Ok(None);
            }
            let Some((token, end)) = lex(buf, self.pos, limits)? else {
                return Ok(None);
            };
            if end > limits.max_message_len {
                return Err(DecodeError::new(
                    ErrorKind::MessageTooLarge {
                        limit: limits.max_message_len,
                    },
                    self.pos,
                ));
            }
            match token {
                Token::Atom => {}
                Token::Open(b) => {
                    if self.stack.len() >= limits.max_depth {
                        return Err(DecodeError::new(
                            ErrorKind::TooDeep {
                                limit: limits.max_depth,
                            },
                            self.pos,
                        ));
                    }
                    self.stack.push(b);
                }
                Token::Close(c) => match self.stack.pop() {
                    None => {
                        return Err(DecodeError::new(
                            ErrorKind::UnexpectedClose(c as char),
                            self.pos,
                        ));
                    }
                    Some(open) if closer_of(open) != c => {
                        return Err(DecodeError::new(
                            ErrorKind::MismatchedClose {
                                open: open as char,
                                found: c as char,
                            },
                            self.pos,
                        ));
                    }
                    Some(_) => {}
                },
            }
            self.pos = end;
            if self.stack.is_empty() {
                return Ok(Some(end));
            }
        }
    }
}

/// Where parsed bytestrings come from: slices of shared input, or copies.
#[derive(Clone, Copy)]
enum Source<'a> {
    Shared(&'a Bytes),
    Borrowed(&'a [u8]),
}

impl Source<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Source::Shared(b) => b,
            Source::Borrowed(b) => b,
        }
    }

    fn bytes(&self, start: usize, end: usize) -> Bytes {
        match self {
            Source::Shared(b) => b.slice(start..end),
            Source::Borrowed(b) => Bytes::copy_from_slice(&b[start..end]),
        }
    }
}

enum Frame {
    List(Vec<Value>),
    Set {
        items: Vec<Value>,
        last: Option<(usize, usize)>,
    },
    Dict {
        entries: Vec<(Value, Value)>,
        pending: Option<Value>,
        last_key: Option<(usize, usize)>,
    },
    Record {
        label: Option<Value>,
        fields: Vec<Value>,
    },
}

/// Parses exactly one value from `src[..len]`, which the scanner has
/// already found to be one lexically complete value within the limits.
fn parse(src: Source<'_>, len: usize, limits: &Limits) -> Result<Value, DecodeError> {
    let buf = &src.as_slice()[..len];
    let mut stack: Vec<(Frame, usize)> = Vec::new();
    let mut pos = 0;
    loop {
        let start = pos;
        let Some((token, end)) = lex(buf, pos, limits)? else {
            return Err(DecodeError::new(
                ErrorKind::Truncated(truncated_context(buf, pos, &[])),
                buf.len(),
            ));
        };
        pos = end;
        let (value, span) = match token {
            Token::Open(b) => {
                if stack.len() >= limits.max_depth {
                    return Err(DecodeError::new(
                        ErrorKind::TooDeep {
                            limit: limits.max_depth,
                        },
                        start,
                    ));
                }
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
                stack.push((frame, start));
                continue;
            }
            Token::Close(c) => {
                let Some((frame, open_at)) = stack.pop() else {
                    return Err(DecodeError::new(
                        ErrorKind::UnexpectedClose(c as char),
                        start,
                    ));
                };
                let value = match (frame, opener_of(c)) {
                    (Frame::List(items), b'[') => Value::List(items),
                    (Frame::Set { items, .. }, b'#') => Value::Set(Set::from_sorted(items)),
                    (
                        Frame::Dict {
                            entries, pending, ..
                        },
                        b'{',
                    ) => {
                        if pending.is_some() {
                            return Err(DecodeError::new(ErrorKind::MissingDictValue, start));
                        }
                        Value::Dict(Dict::from_sorted(entries))
                    }
                    (Frame::Record { label, fields }, b'<') => match label {
                        Some(label) => Value::Record(Record::new(label, fields)),
                        None => {
                            return Err(DecodeError::new(ErrorKind::MissingRecordLabel, start));
                        }
                    },
                    (_, _) => {
                        return Err(DecodeError::new(
                            ErrorKind::MismatchedClose {
                                open: buf[open_at] as char,
                                found: c as char,
                            },
                            start,
                        ));
                    }
                };
                (value, (open_at, end))
            }
            Token::Atom => (atom(src, buf, start, end)?, (start, end)),
        };
        // Attach the finished value to the innermost open container.
        let Some((frame, _)) = stack.last_mut() else {
            if end != buf.len() {
                return Err(DecodeError::new(
                    ErrorKind::TrailingBytes(buf.len() - end),
                    end,
                ));
            }
            return Ok(value);
        };
        let this = &buf[span.0..span.1];
        match frame {
            Frame::List(items) => items.push(value),
            Frame::Set { items, last } => {
                if let Some((a, b)) = *last {
                    match buf[a..b].cmp(this) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => {
                            return Err(DecodeError::new(ErrorKind::DuplicateSetItem, span.0));
                        }
                        std::cmp::Ordering::Greater => {
                            return Err(DecodeError::new(ErrorKind::UnsortedSetItem, span.0));
                        }
                    }
                }
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
                    if let Some((a, b)) = *last_key {
                        match buf[a..b].cmp(this) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(DecodeError::new(ErrorKind::DuplicateDictKey, span.0));
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(DecodeError::new(ErrorKind::UnsortedDictKey, span.0));
                            }
                        }
                    }
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
    }
}

/// Builds the scalar spanning `start..end` (already lexed and within limits).
fn atom(src: Source<'_>, buf: &[u8], start: usize, end: usize) -> Result<Value, DecodeError> {
    match buf[start] {
        b't' => Ok(Value::Bool(true)),
        b'f' => Ok(Value::Bool(false)),
        b'D' => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[start + 1..end]);
            let bits = u64::from_be_bytes(raw);
            let f = f64::from_bits(bits);
            if f.is_nan() && bits != crate::encode::CANONICAL_NAN {
                return Err(DecodeError::new(ErrorKind::NonCanonicalNan, start));
            }
            Ok(Value::Float(f))
        }
        _ => {
            let mut i = start;
            while buf[i].is_ascii_digit() {
                i += 1;
            }
            // The lexer has checked the digits are ASCII and canonical.
            let digits = std::str::from_utf8(&buf[start..i]).unwrap_or_default();
            match buf[i] {
                b'+' | b'-' => Integer::from_sign_and_digits(buf[i] == b'-', digits)
                    .map(Value::Integer)
                    .ok_or(DecodeError::new(ErrorKind::LeadingZero, start)),
                b':' => Ok(Value::Bytes(src.bytes(i + 1, end))),
                marker => {
                    let what = if marker == b'"' { "string" } else { "symbol" };
                    let text = std::str::from_utf8(&buf[i + 1..end]).map_err(|e| {
                        DecodeError::new(ErrorKind::InvalidUtf8(what), i + 1 + e.valid_up_to())
                    })?;
                    Ok(if marker == b'"' {
                        Value::String(text.to_owned())
                    } else {
                        Value::Symbol(text.to_owned())
                    })
                }
            }
        }
    }
}

/// An incremental Syrup decoder for streams of back-to-back values.
///
/// It remembers how far it has scanned the value at the front of the buffer,
/// so feeding a value one byte at a time costs linear time in total. Between
/// calls the caller may only **append** to the buffer until a value is
/// returned or an error occurs (after either, the decoder starts afresh at
/// the next value). It never consumes bytes past the value it returns.
///
/// ```
/// use bytes::BytesMut;
/// use uds_syrup::{Decoder, Limits, Value};
///
/// let mut dec = Decoder::new(Limits::default());
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(b"[1+2");
/// assert_eq!(dec.decode_from(&mut buf).unwrap(), None); // needs more bytes
/// buf.extend_from_slice(b"+]3:cat");
/// let v = dec.decode_from(&mut buf).unwrap().unwrap();
/// assert_eq!(v, Value::list([Value::int(1), Value::int(2)]));
/// assert_eq!(&buf[..], b"3:cat"); // the next value is left in place
/// ```
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    limits: Limits,
    scanner: Scanner,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            scanner: Scanner::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets any partly scanned value (use when the buffer is replaced).
    pub fn reset(&mut self) {
        self.scanner.reset();
    }

    /// The length of the complete value at the front of `buf`, or `None` if
    /// `buf` ends inside it. Checks the lexical rules and the limits, not the
    /// semantic ones (UTF-8, order), which decoding the frame checks.
    pub fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        self.scanner.scan(buf, &self.limits)
    }

    /// Decodes the value at the front of `buf`: `Ok(None)` if more bytes are
    /// needed, else the value and the number of bytes it used. Bytestrings in
    /// the value share `buf`'s memory.
    pub fn decode(&mut self, buf: &Bytes) -> Result<Option<(Value, usize)>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        Ok(Some((parse(Source::Shared(buf), len, &self.limits)?, len)))
    }

    /// Like [`Decoder::decode`] for a borrowed slice (bytestrings are copied).
    pub fn decode_slice(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        Ok(Some((
            parse(Source::Borrowed(buf), len, &self.limits)?,
            len,
        )))
    }

    /// Splits the bytes of the complete value at the front of `buf` off it,
    /// without decoding them; `Ok(None)` leaves `buf` untouched. Pair with
    /// [`Decoder::decode_exact`] when the raw bytes are needed too (to forward
    /// or verify them unchanged).
    pub fn split_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        Ok(self.frame_len(buf)?.map(|len| buf.split_to(len).freeze()))
    }

    /// Decodes and removes the value at the front of `buf`; `Ok(None)` (more
    /// bytes needed) leaves `buf` untouched. On error the offending bytes are
    /// left in `buf`; the stream cannot be resynchronised and should be
    /// dropped.
    pub fn decode_from(&mut self, buf: &mut BytesMut) -> Result<Option<Value>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        let value = parse(Source::Borrowed(&buf[..len]), len, &self.limits)?;
        let _ = buf.split_to(len);
        Ok(Some(value))
    }

    /// Decodes `input`, which must hold exactly one value. Bytestrings share
    /// `input`'s memory.
    pub fn decode_exact(&mut self, input: &Bytes) -> Result<Value, DecodeError> {
        exact(Source::Shared(input), &self.limits)
    }
}

fn exact(src: Source<'_>, limits: &Limits) -> Result<Value, DecodeError> {
    let buf = src.as_slice();
    if buf.is_empty() {
        return Err(DecodeError::new(ErrorKind::EmptyInput, 0));
    }
    let mut scanner = Scanner::default();
    match scanner.scan(buf, limits)? {
        None => Err(DecodeError::new(
            ErrorKind::Truncated(truncated_context(buf, scanner.pos, &scanner.stack)),
            buf.len(),
        )),
        Some(len) if len < buf.len() => Err(DecodeError::new(
            ErrorKind::TrailingBytes(buf.len() - len),
            len,
        )),
        Some(len) => parse(src, len, limits),
    }
}

/// Decodes `input`, which must hold exactly one value, with the default
/// [`Limits`]. Bytestrings are copied; see [`decode_bytes`] to share memory.
///
/// ```
/// use uds_syrup::{decode, ErrorKind, Value};
/// assert_eq!(decode(b"5'fetch").unwrap(), Value::symbol("fetch"));
/// let err = decode(b"01+").unwrap_err();
/// assert_eq!(err.kind(), &ErrorKind::LeadingZero);
/// assert_eq!(err.offset(), 0);
/// ```
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    exact(Source::Borrowed(input), &Limits::default())
}

/// Decodes `input`, which must hold exactly one value, with the default
/// [`Limits`]; bytestrings in the result share `input`'s memory.
pub fn decode_bytes(input: &Bytes) -> Result<Value, DecodeError> {
    exact(Source::Shared(input), &Limits::default())
}

/// Whether `input` is exactly one complete, valid Syrup value (with the
/// default limits).
pub fn is_complete_value(input: &[u8]) -> bool {
    exact(Source::Borrowed(input), &Limits::default()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_resumes_token_by_token() {
        let input = b"<3'foo[1+2\"ab]{1\"a3:xyz}D\x3f\xf0\0\0\0\0\0\0>";
        let mut dec = Decoder::default();
        for cut in 0..input.len() {
            assert_eq!(dec.frame_len(&input[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(dec.frame_len(input).unwrap(), Some(input.len()));
    }

    #[test]
    fn shorter_buffer_restarts() {
        let mut dec = Decoder::default();
        assert_eq!(dec.frame_len(b"[1+2+").unwrap(), None);
        assert_eq!(dec.frame_len(b"t").unwrap(), Some(1));
    }
}
