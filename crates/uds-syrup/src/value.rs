//! The Syrup value model.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

use crate::encode;

/// A Syrup integer: any size, kept losslessly.
///
/// Values in the `i128` range are stored inline; larger magnitudes are kept as
/// their canonical decimal digits, so decoding and re-encoding them gives back
/// the exact bytes. Their size is bounded when decoding by
/// [`Limits::max_integer_digits`](crate::Limits::max_integer_digits).
///
/// ```
/// use uds_syrup::Integer;
/// let small = Integer::from(-5);
/// assert_eq!(small.to_i128(), Some(-5));
/// let big: Integer = "1208925819614629174706176".parse().unwrap(); // 2^80
/// assert_eq!(big.to_i128(), Some(1 << 80));
/// let huge: Integer = "-340282366920938463463374607431768211456".parse().unwrap(); // -2^128
/// assert_eq!(huge.to_i128(), None);
/// assert_eq!(huge.to_string(), "-340282366920938463463374607431768211456");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Integer(IntRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum IntRepr {
    Small(i128),
    /// Outside the i128 range: sign and canonical decimal magnitude (no
    /// leading zeros, never zero).
    Big {
        negative: bool,
        digits: Box<str>,
    },
}

impl Integer {
    /// Builds an integer from a sign and the decimal digits of its magnitude.
    ///
    /// Returns `None` if `digits` is empty, contains a non-digit, has a
    /// leading zero (other than `"0"` itself), or is `-0`.
    pub fn from_sign_and_digits(negative: bool, digits: &str) -> Option<Integer> {
        let b = digits.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if b.len() > 1 && b[0] == b'0' {
            return None;
        }
        if digits == "0" {
            return if negative {
                None
            } else {
                Some(Integer(IntRepr::Small(0)))
            };
        }
        // Fits in i128? (u128 parse then range check; at most 39 digits fit.)
        if let Some(mag) = (b.len() <= 39)
            .then(|| digits.parse::<u128>().ok())
            .flatten()
        {
            if !negative && mag <= i128::MAX as u128 {
                return Some(Integer(IntRepr::Small(mag as i128)));
            }
            if negative && mag <= (i128::MAX as u128) + 1 {
                return Some(Integer(IntRepr::Small((mag as i128).wrapping_neg())));
            }
        }
        Some(Integer(IntRepr::Big {
            negative,
            digits: digits.into(),
        }))
    }

    /// The value as an `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        match self.0 {
            IntRepr::Small(v) => Some(v),
            IntRepr::Big { .. } => None,
        }
    }

    /// The value as an `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        self.to_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as a `u64`, if it fits.
    pub fn to_u64(&self) -> Option<u64> {
        self.to_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        match &self.0 {
            IntRepr::Small(v) => *v < 0,
            IntRepr::Big { negative, .. } => *negative,
        }
    }

    /// The number of decimal digits of the magnitude (`0` has one digit).
    pub fn digit_count(&self) -> usize {
        match &self.0 {
            IntRepr::Small(v) => {
                let mut m = v.unsigned_abs();
                let mut n = 1;
                while m >= 10 {
                    m /= 10;
                    n += 1;
                }
                n
            }
            IntRepr::Big { digits, .. } => digits.len(),
        }
    }

    /// Writes the decimal digits of the magnitude into `out` (no sign).
    pub(crate) fn write_magnitude(&self, out: &mut impl bytes::BufMut) {
        match &self.0 {
            IntRepr::Small(v) => encode::push_decimal(out, v.unsigned_abs()),
            IntRepr::Big { digits, .. } => out.put_slice(digits.as_bytes()),
        }
    }
}

macro_rules! integer_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Integer {
            fn from(v: $t) -> Integer {
                Integer(IntRepr::Small(v as i128))
            }
        }
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Integer(Integer::from(v))
            }
        }
    )*};
}
integer_from!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

impl From<u128> for Integer {
    fn from(v: u128) -> Integer {
        match i128::try_from(v) {
            Ok(s) => Integer(IntRepr::Small(s)),
            Err(_) => Integer(IntRepr::Big {
                negative: false,
                digits: v.to_string().into(),
            }),
        }
    }
}

impl From<u128> for Value {
    fn from(v: u128) -> Value {
        Value::Integer(Integer::from(v))
    }
}

/// The error returned when parsing an [`Integer`] from text fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a canonical decimal integer: expected an optional '-' and digits without leading zeros"
)]
pub struct ParseIntegerError;

impl std::str::FromStr for Integer {
    type Err = ParseIntegerError;
    fn from_str(s: &str) -> Result<Integer, ParseIntegerError> {
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        Integer::from_sign_and_digits(negative, digits).ok_or(ParseIntegerError)
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            IntRepr::Small(v) => write!(f, "{v}"),
            IntRepr::Big { negative, digits } => {
                if *negative {
                    f.write_str("-")?;
                }
                f.write_str(digits)
            }
        }
    }
}

impl fmt::Debug for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

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
#[derive(Clone)]
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

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => float_bits(*a) == float_bits(*b),
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Symbol(a), Value::Symbol(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Dict(a), Value::Dict(b)) => a == b,
            (Value::Set(a), Value::Set(b)) => a == b,
            (Value::Record(a), Value::Record(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Bool(b) => b.hash(state),
            Value::Integer(i) => i.hash(state),
            Value::Float(f) => float_bits(*f).hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::String(s) | Value::Symbol(s) => s.hash(state),
            Value::List(l) => l.hash(state),
            Value::Dict(d) => d.hash(state),
            Value::Set(s) => s.hash(state),
            Value::Record(r) => r.hash(state),
        }
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

/// A Syrup record: a label (in OCapN always a symbol) and fields.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Record {
    label: Box<Value>,
    fields: Vec<Value>,
}

impl Record {
    /// A record with the given label and fields.
    pub fn new(label: Value, fields: impl IntoIterator<Item = Value>) -> Record {
        Record {
            label: Box::new(label),
            fields: fields.into_iter().collect(),
        }
    }

    /// The label.
    pub fn label(&self) -> &Value {
        &self.label
    }

    /// The label's name, if the label is a symbol.
    pub fn label_symbol(&self) -> Option<&str> {
        self.label.as_symbol()
    }

    /// The fields.
    pub fn fields(&self) -> &[Value] {
        &self.fields
    }

    /// Field `i`, if there is one.
    pub fn field(&self, i: usize) -> Option<&Value> {
        self.fields.get(i)
    }

    /// Splits the record into its label and fields.
    pub fn into_parts(self) -> (Value, Vec<Value>) {
        (*self.label, self.fields)
    }
}

/// A Syrup dictionary, always in canonical key order with unique keys.
///
/// ```
/// use uds_syrup::{Dict, Value};
/// let mut d = Dict::new();
/// d.insert(Value::string("aa"), Value::int(2));
/// d.insert(Value::string("b"), Value::int(1));
/// // Canonical order compares encodings: 1"b sorts before 2"aa.
/// assert_eq!(Value::Dict(d).encode(), b"{1\"b1+2\"aa2+}");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Dict {
    entries: Vec<(Value, Value)>,
}

impl Dict {
    /// An empty dictionary.
    pub fn new() -> Dict {
        Dict::default()
    }

    /// Builds from entries already in strictly increasing canonical key order
    /// (the decoder checks the order before calling this).
    pub(crate) fn from_sorted(entries: Vec<(Value, Value)>) -> Dict {
        Dict { entries }
    }

    fn position(&self, key: &Value) -> Result<usize, usize> {
        let enc = key.encode();
        self.entries
            .binary_search_by(|(k, _)| k.encode().as_slice().cmp(enc.as_slice()))
    }

    /// Inserts a key/value pair, returning the previous value for that key.
    pub fn insert(&mut self, key: Value, value: Value) -> Option<Value> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        // Small dictionaries are the norm: a linear scan avoids encoding.
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value for the symbol key `name`.
    pub fn get_symbol(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.is_symbol(name))
            .map(|(_, v)| v)
    }

    /// The value for the string key `name`.
    pub fn get_str(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Value) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in canonical key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Value, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys in canonical order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.entries.iter().map(|(k, _)| k)
    }
}

impl FromIterator<(Value, Value)> for Dict {
    fn from_iter<I: IntoIterator<Item = (Value, Value)>>(iter: I) -> Dict {
        let mut tagged: Vec<(Vec<u8>, Value, Value)> =
            iter.into_iter().map(|(k, v)| (k.encode(), k, v)).collect();
        // Stable sort keeps insertion order among equal keys; keep the last.
        tagged.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<(Value, Value)> = Vec::with_capacity(tagged.len());
        let mut last: Option<Vec<u8>> = None;
        for (enc, k, v) in tagged {
            if last.as_deref() == Some(enc.as_slice()) {
                if let Some(slot) = entries.last_mut() {
                    slot.1 = v;
                }
            } else {
                entries.push((k, v));
                last = Some(enc);
            }
        }
        Dict { entries }
    }
}

impl IntoIterator for Dict {
    type Item = (Value, Value);
    type IntoIter = std::vec::IntoIter<(Value, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A Syrup set, always in canonical order with unique items.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Set {
    items: Vec<Value>,
}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// Builds from items already in strictly increasing canonical order.
    pub(crate) fn from_sorted(items: Vec<Value>) -> Set {
        Set { items }
    }

    /// Adds an item; returns `false` if it was already present.
    pub fn insert(&mut self, item: Value) -> bool {
        let enc = item.encode();
        match self
            .items
            .binary_search_by(|k| k.encode().as_slice().cmp(enc.as_slice()))
        {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, item);
                true
            }
        }
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, item: &Value) -> bool {
        self.items.iter().any(|i| i == item)
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items in canonical order.
    pub fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.items.iter()
    }
}

impl FromIterator<Value> for Set {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Set {
        let mut tagged: Vec<(Vec<u8>, Value)> = iter.into_iter().map(|v| (v.encode(), v)).collect();
        tagged.sort_by(|a, b| a.0.cmp(&b.0));
        tagged.dedup_by(|a, b| a.0 == b.0);
        Set {
            items: tagged.into_iter().map(|(_, v)| v).collect(),
        }
    }
}

impl IntoIterator for Set {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a> IntoIterator for &'a Set {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

// ---- Debug / Display: a readable, Syrup-like notation ----

/// Values print in a readable notation: `<uds:register <ocapn-peer ...> b"...">`.
/// Symbols are bare (or `'...'` when they contain spaces), strings are quoted,
/// bytestrings are `b"..."` with escapes, dictionaries `{k: v, ...}`, sets `#{...}`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(true) => f.write_str("#t"),
            Value::Bool(false) => f.write_str("#f"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bytes(b) => {
                f.write_str("b\"")?;
                for &c in b.iter() {
                    if c.is_ascii_graphic() && c != b'"' && c != b'\\' || c == b' ' {
                        write!(f, "{}", c as char)?;
                    } else {
                        write!(f, "\\x{c:02x}")?;
                    }
                }
                f.write_str("\"")
            }
            Value::String(s) => write!(f, "{s:?}"),
            Value::Symbol(s) => {
                if !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && c != '\'') {
                    f.write_str(s)
                } else {
                    write!(f, "'{}'", s.escape_debug())
                }
            }
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Dict(d) => fmt::Display::fmt(d, f),
            Value::Set(s) => {
                f.write_str("#{")?;
                for (i, v) in s.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
            Value::Record(r) => fmt::Display::fmt(r, f),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}", self.label)?;
        for v in &self.fields {
            write!(f, " {v}")?;
        }
        f.write_str(">")
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
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Value::Set(self.clone()), f)
    }
}
