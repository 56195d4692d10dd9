//! The strict, incremental decoder.
//!
//! A value is decoded in **one pass** over its bytes when they are all
//! there: each token is lexed once, checked against the rules and the
//! [`Limits`], and built into the [`Value`] on the spot (`pass.rs`). The
//! pass also finds where the value ends, so framing a stream and decoding
//! its messages is the same walk.
//!
//! When the bytes end inside the value, the decoder keeps only its place
//! (the offset of the next token and the open brackets) and drops what it
//! built; on the next call it scans on from there without building, and
//! builds the value in one more pass once its end has arrived. So a value
//! fed one byte at a time still costs linear time in total (each byte is
//! scanned once, built at most twice), and a slow sender costs no more
//! memory than its bytes.
//!
//! Nothing recurses: nesting is tracked on explicit stacks bounded by
//! [`Limits::max_depth`], and no buffer is allocated for a claimed length
//! before the bytes are there.

use bytes::{Bytes, BytesMut};

use crate::value::Value;

mod error;
mod lex;
mod limits;
mod pass;

pub use error::{DecodeError, ErrorKind};
pub use limits::Limits;

use lex::truncated_context;

/// A count of the bytes the decoder looks at (lexing, building, comparing
/// keys), kept only with the `fuzzing` feature, for the tests of the
/// linear-time guarantee; otherwise it is empty and counting costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Work(#[cfg(feature = "fuzzing")] pub(crate) u64);

impl Work {
    /// Counts `n` more bytes.
    #[inline(always)]
    fn add(&mut self, n: usize) {
        #[cfg(feature = "fuzzing")]
        {
            self.0 += n as u64;
        }
        #[cfg(not(feature = "fuzzing"))]
        let _ = n;
    }
}
use pass::{Outcome, Scanner, Source, build};

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
    /// Bytes looked at so far, for tests of the linear-time guarantee.
    work: Work,
    /// Bytes looked at by [`Decoder::decode_exact`] (which takes `&self`).
    #[cfg(feature = "fuzzing")]
    exact_work: ExactWork,
}

/// The work of [`Decoder::decode_exact`], counted through `&self` (atomic,
/// so that the decoder stays `Sync`).
#[cfg(feature = "fuzzing")]
#[derive(Debug, Default)]
struct ExactWork(std::sync::atomic::AtomicU64);

#[cfg(feature = "fuzzing")]
impl Clone for ExactWork {
    fn clone(&self) -> ExactWork {
        ExactWork(self.get().into())
    }
}

#[cfg(feature = "fuzzing")]
impl ExactWork {
    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            scanner: Scanner::default(),
            work: Work::default(),
            #[cfg(feature = "fuzzing")]
            exact_work: ExactWork::default(),
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

    /// Bytes the decoder has looked at since it was created (lexing,
    /// building, comparing keys).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn examined(&self) -> u64 {
        self.work.0 + self.exact_work.get()
    }

    /// The length of the complete value at the front of `buf`, or `None` if
    /// `buf` ends inside it. Checks the lexical rules and the limits, not the
    /// ones that need the value built (UTF-8, order), which decoding the
    /// frame checks. Use it to frame without decoding; to frame and decode,
    /// [`Decoder::decode_split`] does both in one pass.
    #[inline]
    pub fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        if buf.len() < self.scanner.pos {
            // The caller gave a shorter buffer than before: start again.
            self.scanner.reset();
        }
        let found = self.scanner.scan(buf, &self.limits, &mut self.work);
        if !matches!(found, Ok(None)) {
            self.scanner.reset();
        }
        found
    }

    /// The value at the front of `src` and its length, or `None`.
    #[inline]
    fn next(&mut self, src: Source<'_>) -> Result<Option<(Value, usize)>, DecodeError> {
        if self.scanner.is_fresh() {
            return self.start(src);
        }
        // The value was cut short before: scan on without building (the
        // cheap path a slow sender takes on every read), and build it in one
        // more pass once its end is here.
        match self.frame_len(src.as_slice())? {
            None => Ok(None),
            Some(len) => self.finish(src.prefix(len)).map(|v| Some((v, len))),
        }
    }

    /// Scans and builds a value from its first byte, in one pass.
    #[inline(never)]
    fn start(&mut self, src: Source<'_>) -> Result<Option<(Value, usize)>, DecodeError> {
        match build(&mut self.scanner, src, &self.limits, &mut self.work) {
            Ok(Outcome::Incomplete) => Ok(None),
            Ok(Outcome::Complete { len, value }) => {
                self.scanner.reset();
                Ok(Some((value?, len)))
            }
            Err(e) => {
                self.scanner.reset();
                Err(e)
            }
        }
    }

    /// Builds a value whose end a resumed scan has just found.
    #[inline(never)]
    fn finish(&mut self, src: Source<'_>) -> Result<Value, DecodeError> {
        build_complete(src, &self.limits, &mut self.work)
    }

    /// Decodes the value at the front of `buf`: `Ok(None)` if more bytes are
    /// needed, else the value and the number of bytes it used. Bytestrings in
    /// the value share `buf`'s memory.
    pub fn decode(&mut self, buf: &Bytes) -> Result<Option<(Value, usize)>, DecodeError> {
        self.next(Source::shared(buf))
    }

    /// Like [`Decoder::decode`] for a borrowed slice (bytestrings are copied).
    pub fn decode_slice(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        self.next(Source::borrowed(buf))
    }

    /// Splits the bytes of the complete value at the front of `buf` off it,
    /// without decoding them; `Ok(None)` leaves `buf` untouched. When the
    /// value is wanted too, [`Decoder::decode_split`] gives both in one pass.
    pub fn split_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        Ok(self.frame_len(buf)?.map(|len| buf.split_to(len).freeze()))
    }

    /// Decodes the value at the front of `buf` and splits its bytes off:
    /// the value and its exact bytes (to forward or verify unchanged), found
    /// and built in one pass. `Ok(None)` (more bytes needed) leaves `buf`
    /// untouched. Bytestrings in the value are copies. On error the offending
    /// bytes are left in `buf`; the stream cannot be resynchronised.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use uds_syrup::{Decoder, Limits, Value};
    ///
    /// let mut dec = Decoder::new(Limits::intro_channel());
    /// let mut buf = BytesMut::from(&b"<8'op:abort3\"bye>t"[..]);
    /// let (value, raw) = dec.decode_split(&mut buf).unwrap().unwrap();
    /// assert_eq!(&raw[..], b"<8'op:abort3\"bye>");
    /// assert_eq!(value.encode(), raw);
    /// assert_eq!(&buf[..], b"t");
    /// ```
    pub fn decode_split(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Value, Bytes)>, DecodeError> {
        let Some((value, len)) = self.next(Source::borrowed(buf))? else {
            return Ok(None);
        };
        Ok(Some((value, buf.split_to(len).freeze())))
    }

    /// Decodes and removes the value at the front of `buf`; `Ok(None)` (more
    /// bytes needed) leaves `buf` untouched. On error the offending bytes are
    /// left in `buf`; the stream cannot be resynchronised and should be
    /// dropped.
    pub fn decode_from(&mut self, buf: &mut BytesMut) -> Result<Option<Value>, DecodeError> {
        let Some((value, len)) = self.next(Source::borrowed(buf))? else {
            return Ok(None);
        };
        let _ = buf.split_to(len);
        Ok(Some(value))
    }

    /// Decodes `input`, which must hold exactly one value. Bytestrings share
    /// `input`'s memory. Uses this decoder's limits, not its state.
    pub fn decode_exact(&self, input: &Bytes) -> Result<Value, DecodeError> {
        let mut work = Work::default();
        let decoded = exact(Source::shared(input), &self.limits, &mut work);
        #[cfg(feature = "fuzzing")]
        self.exact_work.add(work.0);
        decoded
    }
}

/// Builds the value that a scan found to end exactly at the end of `src`.
fn build_complete(src: Source<'_>, limits: &Limits, work: &mut Work) -> Result<Value, DecodeError> {
    let mut scanner = Scanner::default();
    match build(&mut scanner, src, limits, work)? {
        Outcome::Complete { value, .. } => value,
        // Cannot happen: the same bytes scanned as one complete value.
        Outcome::Incomplete => {
            let buf = src.as_slice();
            Err(DecodeError::new(
                ErrorKind::Truncated(truncated_context(buf, scanner.pos, &scanner.stack)),
                buf.len(),
            ))
        }
    }
}

/// Decodes `src`, which must hold exactly one value, in one pass.
fn exact(src: Source<'_>, limits: &Limits, work: &mut Work) -> Result<Value, DecodeError> {
    let buf = src.as_slice();
    if buf.is_empty() {
        return Err(DecodeError::new(ErrorKind::EmptyInput, 0));
    }
    let mut scanner = Scanner::default();
    match build(&mut scanner, src, limits, work)? {
        Outcome::Incomplete => Err(DecodeError::new(
            ErrorKind::Truncated(truncated_context(buf, scanner.pos, &scanner.stack)),
            buf.len(),
        )),
        Outcome::Complete { len, .. } if len < buf.len() => Err(DecodeError::new(
            ErrorKind::TrailingBytes(buf.len() - len),
            len,
        )),
        Outcome::Complete { value, .. } => value,
    }
}

/// Decodes `input`, which must hold exactly one value, with `limits`.
/// Bytestrings are copied.
#[cfg_attr(not(feature = "ocapn"), allow(dead_code))]
pub(crate) fn decode_with(input: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    exact(Source::borrowed(input), limits, &mut Work::default())
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
    exact(
        Source::borrowed(input),
        &Limits::default(),
        &mut Work::default(),
    )
}

/// Decodes `input`, which must hold exactly one value, with the default
/// [`Limits`]; bytestrings in the result share `input`'s memory.
pub fn decode_bytes(input: &Bytes) -> Result<Value, DecodeError> {
    exact(
        Source::shared(input),
        &Limits::default(),
        &mut Work::default(),
    )
}

/// Whether `input` is exactly one complete, valid Syrup value (with the
/// default limits).
pub fn is_complete_value(input: &[u8]) -> bool {
    exact(
        Source::borrowed(input),
        &Limits::default(),
        &mut Work::default(),
    )
    .is_ok()
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

/// The linear-time guarantee, counted (the count needs the `fuzzing`
/// feature, which this crate's tests turn on).
#[cfg(all(test, feature = "fuzzing"))]
mod work_tests {
    use super::*;

    /// A value that arrives whole is lexed once: the bytes examined are
    /// about its length (each byte once, plus payloads and key comparisons),
    /// not a multiple of it.
    #[test]
    fn a_whole_value_is_decoded_in_one_pass() {
        let v = Value::record(
            Value::symbol("uds:new-connection"),
            [Value::string("x".repeat(52)), Value::list([Value::int(1)])],
        );
        let bytes = Bytes::from(v.encode());
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&bytes).unwrap(), Some((v, bytes.len())));
        // One lexing pass (about one count per byte) plus the payloads once.
        assert!(dec.work.0 <= 2 * bytes.len() as u64 + 16, "{}", dec.work.0);
    }

    /// Fed one byte per call, a large value costs a bounded number of
    /// examined bytes per byte, not one pass per call.
    #[test]
    fn a_dribbled_value_costs_linear_work() {
        let mut items = Vec::new();
        for i in 0..3000 {
            items.push(Value::string(format!("item {i}")));
            items.push(Value::bytes(vec![7u8; 5]));
        }
        let v = Value::List(items);
        let bytes = v.encode();
        assert!(bytes.len() > 50_000);
        let limits = Limits::intro_channel();
        for decode_split in [false, true] {
            let mut dec = Decoder::new(limits);
            let mut buf = BytesMut::new();
            let mut got = None;
            for &b in &bytes {
                buf.extend_from_slice(&[b]);
                let r = if decode_split {
                    dec.decode_split(&mut buf).unwrap().map(|(v, _)| v)
                } else {
                    dec.decode_from(&mut buf).unwrap()
                };
                if let Some(v) = r {
                    got = Some(v);
                }
            }
            assert_eq!(got.as_ref(), Some(&v));
            let n = bytes.len() as u64;
            assert!(
                dec.work.0 <= 8 * n,
                "{} bytes examined for {n} bytes dribbled: not linear",
                dec.work.0
            );
        }
    }
}
