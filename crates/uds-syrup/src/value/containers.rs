//! The containers: [`Record`], [`Dict`] and [`Set`], the last two always
//! in canonical order.

use super::Value;

/// A Syrup record: a label (in OCapN always a symbol) and fields.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub(super) label: Box<Value>,
    pub(super) fields: Vec<Value>,
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
    pub(super) entries: Vec<(Value, Value)>,
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
    pub(super) items: Vec<Value>,
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
        let items: Vec<Value> = iter.into_iter().collect();
        if items.len() < 2 {
            // Nothing to order: skip encoding the item.
            return Set { items };
        }
        let mut tagged: Vec<(Vec<u8>, Value)> =
            items.into_iter().map(|v| (v.encode(), v)).collect();
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
