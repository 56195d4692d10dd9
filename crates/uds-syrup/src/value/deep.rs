//! `Drop`, `Clone`, `PartialEq` and `Hash` for [`Value`] without recursion
//! on the call stack.
//!
//! The derived versions would recurse once per nesting level, so a value a
//! million levels deep (decoded with a generous `max_depth`, or built in
//! memory) would overflow the stack when dropped, cloned, compared or hashed.
//! These walk the tree with explicit stacks on the heap instead. The common
//! case stays cheap: scalars and containers of scalars never allocate a
//! stack, and dropping recurses normally for the first
//! [`DROP_RECURSION_BUDGET`] levels before switching to a heap stack.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::mem;

use super::{Dict, Record, Set, Value, float_bits};

/// Nesting levels dropped by ordinary (recursive) drop glue before the
/// rest of a value is taken apart iteratively. Each level costs a few
/// hundred bytes of stack at most.
const DROP_RECURSION_BUDGET: u32 = 64;

thread_local! {
    /// How many `Value::drop` calls are active on this thread's stack.
    static DROP_DEPTH: Cell<u32> = const { Cell::new(0) };
}

impl Value {
    /// Whether this is a container with at least one child.
    #[inline]
    fn has_children(&self) -> bool {
        match self {
            Value::List(items) => !items.is_empty(),
            Value::Set(s) => !s.items.is_empty(),
            Value::Dict(d) => !d.entries.is_empty(),
            Value::Record(_) => true,
            _ => false,
        }
    }

    /// The number of direct children: list and set items, dictionary keys
    /// and values, record label and fields.
    fn child_count(&self) -> usize {
        match self {
            Value::List(items) => items.len(),
            Value::Set(s) => s.items.len(),
            Value::Dict(d) => 2 * d.entries.len(),
            Value::Record(r) => 1 + r.fields.len(),
            _ => 0,
        }
    }

    /// Child `i` in encoding order (`i < child_count()`).
    fn child(&self, i: usize) -> &Value {
        match self {
            Value::List(items) => &items[i],
            Value::Set(s) => &s.items[i],
            Value::Dict(d) => {
                let (k, v) = &d.entries[i / 2];
                if i.is_multiple_of(2) { k } else { v }
            }
            Value::Record(r) => {
                if i == 0 {
                    &r.label
                } else {
                    &r.fields[i - 1]
                }
            }
            _ => unreachable!("a scalar has no children"),
        }
    }

    /// Whether any direct child has children of its own (so that handling
    /// the children goes more than one level down).
    fn has_grandchildren(&self) -> bool {
        (0..self.child_count()).any(|i| self.child(i).has_children())
    }

    /// Moves the children out onto `out`, leaving this container empty.
    fn take_children(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::List(items) => out.append(items),
            Value::Set(s) => out.append(&mut s.items),
            Value::Dict(d) => {
                for (k, v) in mem::take(&mut d.entries) {
                    out.push(k);
                    out.push(v);
                }
            }
            Value::Record(r) => {
                out.append(&mut r.fields);
                out.push(mem::replace(&mut *r.label, Value::Bool(false)));
            }
            _ => {}
        }
    }

    /// The same container type holding `children` (as `take_children` or
    /// `child` lists them).
    fn rebuild(&self, mut children: Vec<Value>) -> Value {
        match self {
            Value::List(_) => Value::List(children),
            Value::Set(_) => Value::Set(Set::from_sorted(children)),
            Value::Dict(_) => {
                let mut entries = Vec::with_capacity(children.len() / 2);
                let mut it = children.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Value::Dict(Dict::from_sorted(entries))
            }
            Value::Record(_) => {
                let fields = children.split_off(1);
                let label = children.pop().unwrap_or(Value::Bool(false));
                Value::Record(Record {
                    label: Box::new(label),
                    fields,
                })
            }
            scalar => scalar.clone(),
        }
    }

    /// Clones a scalar or a container of scalars (one level of recursion).
    fn clone_shallow(&self) -> Value {
        match self {
            Value::Bool(b) => Value::Bool(*b),
            Value::Integer(i) => Value::Integer(i.clone()),
            Value::Float(f) => Value::Float(*f),
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::String(s) => Value::String(s.clone()),
            Value::Symbol(s) => Value::Symbol(s.clone()),
            Value::List(items) => Value::List(items.iter().map(Value::clone_shallow).collect()),
            Value::Set(s) => Value::Set(Set::from_sorted(
                s.items.iter().map(Value::clone_shallow).collect(),
            )),
            Value::Dict(d) => Value::Dict(Dict::from_sorted(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.clone_shallow(), v.clone_shallow()))
                    .collect(),
            )),
            Value::Record(r) => Value::Record(Record {
                label: Box::new(r.label.clone_shallow()),
                fields: r.fields.iter().map(Value::clone_shallow).collect(),
            }),
        }
    }

    /// Equal type and scalar contents, and for containers the same number
    /// of children.
    fn same_head(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => float_bits(*a) == float_bits(*b),
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Symbol(a), Value::Symbol(b)) => a == b,
            (Value::List(_), Value::List(_))
            | (Value::Dict(_), Value::Dict(_))
            | (Value::Set(_), Value::Set(_))
            | (Value::Record(_), Value::Record(_)) => self.child_count() == other.child_count(),
            _ => false,
        }
    }

    /// Hashes the type and scalar contents, or for containers the number of
    /// children (so that different shapes hash differently).
    fn hash_head<H: Hasher>(&self, state: &mut H) {
        mem::discriminant(self).hash(state);
        match self {
            Value::Bool(b) => b.hash(state),
            Value::Integer(i) => i.hash(state),
            Value::Float(f) => float_bits(*f).hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::String(s) | Value::Symbol(s) => s.hash(state),
            _ => self.child_count().hash(state),
        }
    }
}

impl Drop for Value {
    #[inline]
    fn drop(&mut self) {
        // Scalars and empty containers: nothing below to take care of.
        if self.has_children() {
            self.drop_children();
        }
    }
}

impl Value {
    /// Drops the children of a container, recursing normally for the first
    /// levels and iteratively below them.
    #[inline(never)]
    fn drop_children(&mut self) {
        let depth = DROP_DEPTH.with(Cell::get);
        if depth < DROP_RECURSION_BUDGET {
            // Drop the children here, one level deeper, and let their own
            // `drop` decide how to go on.
            DROP_DEPTH.with(|d| d.set(depth + 1));
            match self {
                Value::List(items) => drop(mem::take(items)),
                Value::Set(s) => drop(mem::take(&mut s.items)),
                Value::Dict(d) => drop(mem::take(&mut d.entries)),
                Value::Record(r) => {
                    drop(mem::take(&mut r.fields));
                    drop(mem::replace(&mut *r.label, Value::Bool(false)));
                }
                _ => {}
            }
            DROP_DEPTH.with(|d| d.set(depth));
        } else {
            // Deep enough: take the rest apart with a heap stack. Each value
            // popped has its children moved onto the stack before it is
            // dropped, so its own `drop` finds nothing to do.
            let mut pending = Vec::new();
            self.take_children(&mut pending);
            while let Some(mut v) = pending.pop() {
                v.take_children(&mut pending);
            }
        }
    }
}

impl Clone for Value {
    fn clone(&self) -> Value {
        if !self.has_grandchildren() {
            return self.clone_shallow();
        }
        // A frame per container being copied: its source, the next child to
        // copy, and the copies made so far.
        struct Frame<'a> {
            src: &'a Value,
            next: usize,
            done: Vec<Value>,
        }
        fn frame(src: &Value) -> Frame<'_> {
            Frame {
                src,
                next: 0,
                done: Vec::with_capacity(src.child_count()),
            }
        }
        let mut stack = vec![frame(self)];
        loop {
            let top = stack
                .last_mut()
                .expect("the stack holds the root until it is built");
            if top.next < top.src.child_count() {
                let child = top.src.child(top.next);
                top.next += 1;
                if child.has_grandchildren() {
                    stack.push(frame(child));
                } else {
                    top.done.push(child.clone_shallow());
                }
                continue;
            }
            let Frame { src, done, .. } = stack.pop().expect("checked above");
            let built = src.rebuild(done);
            match stack.last_mut() {
                Some(parent) => parent.done.push(built),
                None => return built,
            }
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        let mut pairs: Vec<(&Value, &Value)> = Vec::new();
        let (mut a, mut b) = (self, other);
        loop {
            if !a.same_head(b) {
                return false;
            }
            for i in (0..a.child_count()).rev() {
                pairs.push((a.child(i), b.child(i)));
            }
            match pairs.pop() {
                Some((x, y)) => (a, b) = (x, y),
                None => return true,
            }
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut pending: Vec<&Value> = Vec::new();
        let mut v = self;
        loop {
            v.hash_head(state);
            for i in (0..v.child_count()).rev() {
                pending.push(v.child(i));
            }
            match pending.pop() {
                Some(next) => v = next,
                None => return,
            }
        }
    }
}
