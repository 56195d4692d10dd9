//! The lexer: one token at a time, with the lexical rules (digits, markers,
//! lengths) and the limits that a single token can exceed.

use super::{DecodeError, ErrorKind, Limits, Work};

/// One lexical token, with what building its value needs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Token {
    /// `t` or `f`.
    Bool(bool),
    /// `D` and 8 bytes.
    Double,
    /// Digits up to `marker_at`, then `+` or `-`.
    Integer {
        /// Offset of the sign marker.
        marker_at: usize,
    },
    /// A length-prefixed atom: `:` bytestring, `"` string, `'` symbol.
    Atom {
        /// The marker byte.
        marker: u8,
        /// Offset of the first payload byte.
        payload_at: usize,
    },
    /// An opening bracket.
    Open(u8),
    /// A closing bracket.
    Close(u8),
}

/// What a length-prefixed atom is called in errors.
pub(super) fn atom_name(marker: u8) -> &'static str {
    match marker {
        b':' => "bytestring",
        b'"' => "string",
        _ => "symbol",
    }
}

/// What a container is called in errors.
pub(super) fn container_name(open: u8) -> &'static str {
    match open {
        b'[' => "list",
        b'{' => "dictionary",
        b'#' => "set",
        _ => "record",
    }
}

/// The closing bracket of an opening one.
pub(super) fn closer_of(open: u8) -> u8 {
    match open {
        b'[' => b']',
        b'{' => b'}',
        b'#' => b'$',
        _ => b'>',
    }
}

/// Reads the token at `pos` (`pos < buf.len()`). `Ok(None)` means the
/// buffer ends inside it. On success returns the token and its end.
/// `work` counts the bytes looked at.
#[inline(always)]
pub(super) fn lex(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
    work: &mut Work,
) -> Result<Option<(Token, usize)>, DecodeError> {
    let b = buf[pos];
    work.add(1);
    let err = |k| Err(DecodeError::new(k, pos));
    match b {
        b't' => Ok(Some((Token::Bool(true), pos + 1))),
        b'f' => Ok(Some((Token::Bool(false), pos + 1))),
        b'D' => {
            let end = pos + 9;
            if end > limits.max_message_len {
                return err(ErrorKind::MessageTooLarge {
                    limit: limits.max_message_len,
                });
            }
            Ok((buf.len() >= end).then_some((Token::Double, end)))
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
                    work.add(i - pos);
                    return err(ErrorKind::IntegerTooLarge {
                        limit: limits.max_integer_digits,
                    });
                }
            }
            work.add(i - pos);
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
                    Ok(Some((Token::Integer { marker_at: i }, i + 1)))
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
                    let token = Token::Atom {
                        marker,
                        payload_at: i + 1,
                    };
                    Ok((buf.len() >= end).then_some((token, end)))
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

/// What the lexer was reading when the buffer ran out at `pos`, inside the
/// containers opened by `stack` (for truncation errors).
pub(super) fn truncated_context(buf: &[u8], pos: usize, stack: &[u8]) -> &'static str {
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
