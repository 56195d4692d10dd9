//! [`Limits`]: what one decoded value may cost.

/// Bounds the decoder enforces. Exceeding one is a specific
/// [`ErrorKind`](crate::ErrorKind).
///
/// The defaults suit general use; the introduction protocol uses tighter
/// ones (see [`Limits::intro_channel`]).
///
/// Any setting is safe for the call stack, `usize::MAX` included: neither
/// the decoder nor [`Value`](crate::Value)'s `Clone`, `Eq`, `Hash`,
/// `Display` or encoder recurse, and its `Drop` recurses for at most 64
/// levels before it switches to a heap stack, so nesting only costs heap
/// memory, which
/// [`max_message_len`](Limits::max_message_len) bounds. The limits are there
/// to bound work and memory per message, not to protect the stack.
///
/// The struct is exhaustive on purpose, so that it can be built with a
/// struct literal: should a new limit be added, code that builds one must
/// then choose its value rather than silently get a default.
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
