//! The canonical encoder.
//!
//! Dictionaries and sets are kept in canonical order by construction, so
//! encoding is a single walk. The walk uses an explicit stack: a deeply nested
//! value built in memory cannot overflow the call stack while being encoded.

use bytes::BufMut;

use crate::value::{Value, float_bits};

/// The only NaN canonical Syrup allows.
pub(crate) const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

/// Appends the decimal digits of `n`.
pub(crate) fn push_decimal(out: &mut impl BufMut, mut n: u128) {
    let mut buf = [0u8; 39];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn push_atom(out: &mut impl BufMut, marker: u8, payload: &[u8]) {
    push_decimal(out, payload.len() as u128);
    out.put_u8(marker);
    out.put_slice(payload);
}

enum Step<'a> {
    Value(&'a Value),
    Byte(u8),
}

pub(crate) fn encode_into(value: &Value, out: &mut impl BufMut) {
    let mut stack: Vec<Step<'_>> = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        let v = match step {
            Step::Byte(b) => {
                out.put_u8(b);
                continue;
            }
            Step::Value(v) => v,
        };
        match v {
            Value::Bool(true) => out.put_u8(b't'),
            Value::Bool(false) => out.put_u8(b'f'),
            Value::Integer(i) => {
                i.write_magnitude(out);
                out.put_u8(if i.is_negative() { b'-' } else { b'+' });
            }
            Value::Float(f) => {
                out.put_u8(b'D');
                out.put_slice(&float_bits(*f).to_be_bytes());
            }
            Value::Bytes(b) => push_atom(out, b':', b),
            Value::String(s) => push_atom(out, b'"', s.as_bytes()),
            Value::Symbol(s) => push_atom(out, b'\'', s.as_bytes()),
            Value::List(items) => {
                out.put_u8(b'[');
                stack.push(Step::Byte(b']'));
                stack.extend(items.iter().rev().map(Step::Value));
            }
            Value::Set(set) => {
                out.put_u8(b'#');
                stack.push(Step::Byte(b'$'));
                stack.extend(set.iter().rev().map(Step::Value));
            }
            Value::Dict(dict) => {
                out.put_u8(b'{');
                stack.push(Step::Byte(b'}'));
                let entries: Vec<_> = dict.iter().collect();
                for (k, v) in entries.into_iter().rev() {
                    stack.push(Step::Value(v));
                    stack.push(Step::Value(k));
                }
            }
            Value::Record(r) => {
                out.put_u8(b'<');
                stack.push(Step::Byte(b'>'));
                stack.extend(r.fields().iter().rev().map(Step::Value));
                stack.push(Step::Value(r.label()));
            }
        }
    }
}

pub(crate) fn encoded_len(value: &Value) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Value> = vec![value];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Bool(_) => 1,
            Value::Integer(i) => i.digit_count() + 1,
            Value::Float(_) => 9,
            Value::Bytes(b) => decimal_len(b.len()) + 1 + b.len(),
            Value::String(s) | Value::Symbol(s) => decimal_len(s.len()) + 1 + s.len(),
            Value::List(items) => {
                stack.extend(items.iter());
                2
            }
            Value::Set(set) => {
                stack.extend(set.iter());
                2
            }
            Value::Dict(dict) => {
                for (k, v) in dict.iter() {
                    stack.push(k);
                    stack.push(v);
                }
                2
            }
            Value::Record(r) => {
                stack.push(r.label());
                stack.extend(r.fields().iter());
                2
            }
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        for n in [0u128, 9, 10, 99, 100, u128::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0usize, 9, 10, 12345, usize::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }
}
