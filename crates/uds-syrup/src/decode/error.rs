//! [`DecodeError`] and its [`ErrorKind`]s.

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
    pub(super) fn new(kind: ErrorKind, offset: usize) -> DecodeError {
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
    /// Nesting beyond [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("nesting deeper than the limit of {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A value larger than [`Limits::max_message_len`](crate::Limits::max_message_len).
    #[error("value larger than the limit of {limit} bytes")]
    MessageTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A payload larger than [`Limits::max_atom_len`](crate::Limits::max_atom_len).
    #[error("{what} length exceeds the limit of {limit} bytes")]
    AtomTooLong {
        /// "bytestring", "string" or "symbol".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// An integer with more digits than [`Limits::max_integer_digits`](crate::Limits::max_integer_digits).
    #[error("integer with more than {limit} digits")]
    IntegerTooLarge {
        /// The limit.
        limit: usize,
    },
}
