//! `Display` and `Debug`: a readable, Syrup-like notation, written with an
//! explicit stack so that no nesting depth can overflow the call stack.

use std::fmt;

use super::{Dict, Record, Set, Value};

/// What is left to print: a value, or a fixed piece of punctuation.
enum Piece<'a> {
    Value(&'a Value),
    Text(&'static str),
}

/// Prints the pieces on `stack`, last first, expanding containers in place.
fn print(f: &mut fmt::Formatter<'_>, mut stack: Vec<Piece<'_>>) -> fmt::Result {
    while let Some(piece) = stack.pop() {
        let v = match piece {
            Piece::Text(t) => {
                f.write_str(t)?;
                continue;
            }
            Piece::Value(v) => v,
        };
        match v {
            Value::Bool(true) => f.write_str("#t")?,
            Value::Bool(false) => f.write_str("#f")?,
            Value::Integer(i) => write!(f, "{i}")?,
            Value::Float(x) => write!(f, "{x:?}")?,
            Value::Bytes(b) => {
                f.write_str("b\"")?;
                for &c in b.iter() {
                    if c.is_ascii_graphic() && c != b'"' && c != b'\\' || c == b' ' {
                        write!(f, "{}", c as char)?;
                    } else {
                        write!(f, "\\x{c:02x}")?;
                    }
                }
                f.write_str("\"")?;
            }
            Value::String(s) => write!(f, "{s:?}")?,
            Value::Symbol(s) => {
                if !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && c != '\'') {
                    f.write_str(s)?;
                } else {
                    write!(f, "'{}'", s.escape_debug())?;
                }
            }
            Value::List(items) => {
                f.write_str("[")?;
                push_items(&mut stack, items, " ", "]");
            }
            Value::Set(set) => {
                f.write_str("#{")?;
                push_items(&mut stack, &set.items, " ", "}");
            }
            Value::Dict(d) => {
                f.write_str("{")?;
                push_dict(&mut stack, d);
            }
            Value::Record(r) => {
                f.write_str("<")?;
                push_record(&mut stack, r);
            }
        }
    }
    Ok(())
}

/// Queues `items` separated by `sep`, then `close` (pushed in reverse, so
/// they pop in order).
fn push_items<'a>(
    stack: &mut Vec<Piece<'a>>,
    items: &'a [Value],
    sep: &'static str,
    close: &'static str,
) {
    stack.push(Piece::Text(close));
    for (i, v) in items.iter().enumerate().rev() {
        stack.push(Piece::Value(v));
        if i > 0 {
            stack.push(Piece::Text(sep));
        }
    }
}

/// Queues `k: v, ...}`.
fn push_dict<'a>(stack: &mut Vec<Piece<'a>>, d: &'a Dict) {
    stack.push(Piece::Text("}"));
    for (i, (k, v)) in d.entries.iter().enumerate().rev() {
        stack.push(Piece::Value(v));
        stack.push(Piece::Text(": "));
        stack.push(Piece::Value(k));
        if i > 0 {
            stack.push(Piece::Text(", "));
        }
    }
}

/// Queues `label field ...>`.
fn push_record<'a>(stack: &mut Vec<Piece<'a>>, r: &'a Record) {
    stack.push(Piece::Text(">"));
    for v in r.fields.iter().rev() {
        stack.push(Piece::Value(v));
        stack.push(Piece::Text(" "));
    }
    stack.push(Piece::Value(&r.label));
}

/// Values print in a readable notation: `<uds:register <ocapn-peer ...> b"...">`.
/// Symbols are bare (or `'...'` when they contain spaces), strings are quoted,
/// bytestrings are `b"..."` with escapes, dictionaries `{k: v, ...}`, sets `#{...}`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print(f, vec![Piece::Value(self)])
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<")?;
        let mut stack = Vec::new();
        push_record(&mut stack, self);
        print(f, stack)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut stack = Vec::new();
        push_dict(&mut stack, self);
        print(f, stack)
    }
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("#{")?;
        let mut stack = Vec::new();
        push_items(&mut stack, &self.items, " ", "}");
        print(f, stack)
    }
}

impl fmt::Debug for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::record(
            Value::symbol("r"),
            [
                Value::list([Value::Bool(true), Value::Bool(false), Value::int(-5)]),
                Value::dict([(
                    Value::string("k"),
                    Value::set([Value::int(2), Value::int(1)]),
                )]),
                Value::bytes(&b"a\"\0 "[..]),
                Value::symbol("has space"),
                Value::symbol(""),
                Value::Float(1.5),
                Value::string("q\"x"),
            ],
        )
    }

    const SHOWN: &str = r#"<r [#t #f -5] {"k": #{1 2}} b"a\x22\x00 " 'has space' '' 1.5 "q\"x">"#;

    #[test]
    fn every_kind_prints_in_the_readable_notation() {
        let v = sample();
        assert_eq!(v.to_string(), SHOWN);
        assert_eq!(format!("{v:?}"), SHOWN);
        let Value::Record(r) = &v else { unreachable!() };
        assert_eq!(r.to_string(), SHOWN);
        assert_eq!(format!("{r:?}"), SHOWN);
        let Value::Dict(d) = &r.fields()[1] else {
            unreachable!()
        };
        assert_eq!(d.to_string(), r#"{"k": #{1 2}}"#);
        let Value::Set(s) = d.get(&Value::string("k")).unwrap() else {
            unreachable!()
        };
        assert_eq!(format!("{s:?}"), "#{1 2}");
        assert_eq!(s.to_string(), "#{1 2}");
    }
}
