//! [`Integer`]: Syrup integers of any size.

use std::fmt;

use super::Value;
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
#[non_exhaustive]
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
