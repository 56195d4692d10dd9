//! The Syrup value model: [`Value`] and its constructors and accessors.
//! Integers, the containers, the readable notation and the non-recursive
//! `Drop`/`Clone`/`Eq`/`Hash` live in the submodules.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;

use crate::encode;

mod containers;
mod deep;
mod display;
mod integer;

pub use containers::{Dict, Record, Set};
pub use integer::{Integer, ParseIntegerError};

/// A Syrup value.
///
/// Every value has exactly one canonical encoding ([`Value::encode`]) and the
/// strict decoder accepts only that encoding, so `decode(encode(v)) == v` and
/// `encode(decode(b)) == b` for every accepted `b`.
///
/// Equality and hashing compare doubles by their bits (there is only one NaN
/// in canonical Syrup, and `0.0` and `-0.0` encode differently), so `Value`
/// is [`Eq`] and [`Hash`].
///
/// No depth of nesting can overflow the call stack: cloning, comparing,
/// hashing, displaying and encoding a value nested a million levels deep
/// (whether decoded or built in memory) use explicit stacks on the heap, and
/// dropping recurses for at most 64 levels before it does the same.
/// Because `Value` implements [`Drop`] for that, its contents cannot be
/// moved out by pattern matching; take them with [`std::mem::take`] on a
/// `&mut` match, or with [`Record::into_parts`], [`Dict::into_iter`] and
/// [`Set::into_iter`].
///
/// The enum is exhaustive on purpose: it is the Syrup data model, which is
/// closed, and encoders and printers over it are expected to match every
/// variant.
///
/// Building the `uds:register` record by hand:
///
/// ```
/// use uds_syrup::Value;
/// let locator = Value::record(
///     Value::symbol("ocapn-peer"),
///     [Value::symbol("unix-domain-socket"), Value::string("25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena"), Value::Bool(false)],
/// );
/// let register = Value::record(Value::symbol("uds:register"), [locator, Value::bytes(vec![7u8; 64])]);
/// assert!(register.encode().starts_with(b"<12'uds:register<10'ocapn-peer"));
/// ```
pub enum Value {
    /// `t` or `f`.
    Bool(bool),
    /// An integer of any size.
    Integer(Integer),
    /// An IEEE-754 double.
    Float(f64),
    /// A bytestring; decoding from [`Bytes`] slices the input without copying.
    Bytes(Bytes),
    /// A UTF-8 string.
    String(String),
    /// A symbol (UTF-8).
    Symbol(String),
    /// A list.
    List(Vec<Value>),
    /// A dictionary, kept in canonical key order.
    Dict(Dict),
    /// A set, kept in canonical order.
    Set(Set),
    /// A record: a label and fields.
    Record(Record),
}

/// The type of a [`Value`], for error messages and dispatch.
///
/// Exhaustive, like [`Value`]: one variant per Syrup type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Value::Bool`]
    Bool,
    /// [`Value::Integer`]
    Integer,
    /// [`Value::Float`]
    Float,
    /// [`Value::Bytes`]
    Bytes,
    /// [`Value::String`]
    String,
    /// [`Value::Symbol`]
    Symbol,
    /// [`Value::List`]
    List,
    /// [`Value::Dict`]
    Dict,
    /// [`Value::Set`]
    Set,
    /// [`Value::Record`]
    Record,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bool => "boolean",
            Kind::Integer => "integer",
            Kind::Float => "double",
            Kind::Bytes => "bytestring",
            Kind::String => "string",
            Kind::Symbol => "symbol",
            Kind::List => "list",
            Kind::Dict => "dictionary",
            Kind::Set => "set",
            Kind::Record => "record",
        })
    }
}

impl Value {
    /// A bytestring.
    pub fn bytes(b: impl Into<Bytes>) -> Value {
        Value::Bytes(b.into())
    }

    /// A string.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A symbol.
    pub fn symbol(s: impl Into<String>) -> Value {
        Value::Symbol(s.into())
    }

    /// An integer.
    pub fn int(i: impl Into<Integer>) -> Value {
        Value::Integer(i.into())
    }

    /// A list.
    pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
        Value::List(items.into_iter().collect())
    }

    /// A record with the given label (usually a [`Value::symbol`]) and fields.
    pub fn record(label: Value, fields: impl IntoIterator<Item = Value>) -> Value {
        Value::Record(Record::new(label, fields))
    }

    /// A dictionary from key/value pairs; later duplicates replace earlier ones.
    pub fn dict(entries: impl IntoIterator<Item = (Value, Value)>) -> Value {
        Value::Dict(entries.into_iter().collect())
    }

    /// A set; duplicates are merged.
    pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
        Value::Set(items.into_iter().collect())
    }

    /// This value's type.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Bool(_) => Kind::Bool,
            Value::Integer(_) => Kind::Integer,
            Value::Float(_) => Kind::Float,
            Value::Bytes(_) => Kind::Bytes,
            Value::String(_) => Kind::String,
            Value::Symbol(_) => Kind::Symbol,
            Value::List(_) => Kind::List,
            Value::Dict(_) => Kind::Dict,
            Value::Set(_) => Kind::Set,
            Value::Record(_) => Kind::Record,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_integer(&self) -> Option<&Integer> {
        match self {
            Value::Integer(i) => Some(i),
            _ => None,
        }
    }

    /// The integer as `i128`, if this is an integer that fits.
    pub fn as_i128(&self) -> Option<i128> {
        self.as_integer().and_then(Integer::to_i128)
    }

    /// The integer as `u64`, if this is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(Integer::to_u64)
    }

    /// The double, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The bytestring, if this is one.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is a string (not a symbol).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The symbol's name, if this is a symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match self {
            Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is the symbol `name`.
    pub fn is_symbol(&self, name: &str) -> bool {
        self.as_symbol() == Some(name)
    }

    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The set, if this is one.
    pub fn as_set(&self) -> Option<&Set> {
        match self {
            Value::Set(s) => Some(s),
            _ => None,
        }
    }

    /// The record, if this is one.
    pub fn as_record(&self) -> Option<&Record> {
        match self {
            Value::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The record, if this is a record whose label is the symbol `label`.
    pub fn as_record_labeled(&self, label: &str) -> Option<&Record> {
        self.as_record().filter(|r| r.label().is_symbol(label))
    }

    /// The canonical encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding of this value to `out` (a `Vec<u8>`,
    /// a `BytesMut`, or any other [`BufMut`](bytes::BufMut)).
    pub fn encode_into(&self, out: &mut impl bytes::BufMut) {
        encode::encode_into(self, out)
    }

    /// The length in bytes of [`Value::encode`]'s result, computed without
    /// encoding.
    pub fn encoded_len(&self) -> usize {
        encode::encoded_len(self)
    }
}

/// The bits a double is compared and encoded by: every NaN is the canonical NaN.
pub(crate) fn float_bits(f: f64) -> u64 {
    if f.is_nan() {
        encode::CANONICAL_NAN
    } else {
        f.to_bits()
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Integer> for Value {
    fn from(i: Integer) -> Value {
        Value::Integer(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::Bytes(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(Bytes::from(b))
    }
}

/// A `&str` becomes a Syrup **string**; use [`Value::symbol`] for symbols.
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

/// A `String` becomes a Syrup **string**; use [`Value::symbol`] for symbols.
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Value {
        Value::List(l)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Value {
        Value::Dict(d)
    }
}

impl From<Set> for Value {
    fn from(s: Set) -> Value {
        Value::Set(s)
    }
}

impl From<Record> for Value {
    fn from(r: Record) -> Value {
        Value::Record(r)
    }
}

/// Compares two values by their canonical encodings (the order of dictionary
/// keys and set items).
pub fn canonical_cmp(a: &Value, b: &Value) -> Ordering {
    a.encode().cmp(&b.encode())
}
