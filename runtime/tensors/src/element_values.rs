//! One element's little-endian bytes to and from `f64`: the numeric core under
//! [`crate::HostTensor::to_f64_vec`] and [`crate::HostTensor::from_f64`].

use half::{bf16, f16};

use crate::ElementType;

/// Reads one element. Exact for every type except `I64` beyond ±2^53.
///
/// `bytes` is exactly one element long; the tensor's length invariant guarantees it.
pub(crate) fn decode(dtype: ElementType, bytes: &[u8]) -> f64 {
    match dtype {
        ElementType::F32 => f64::from(f32::from_le_bytes(array(bytes))),
        ElementType::F16 => f16::from_le_bytes(array(bytes)).to_f64(),
        ElementType::Bf16 => bf16::from_le_bytes(array(bytes)).to_f64(),
        ElementType::I32 => f64::from(i32::from_le_bytes(array(bytes))),
        ElementType::F64 => f64::from_le_bytes(array(bytes)),
        // Rounds beyond 2^53; documented on `to_f64_vec`.
        ElementType::I64 => i64::from_le_bytes(array(bytes)) as f64,
        ElementType::U16 => f64::from(u16::from_le_bytes(array(bytes))),
        ElementType::Bool => f64::from(bytes[0]),
    }
}

/// Appends one element to `out`, or returns `None` when `value` has no representation in
/// `dtype`: integers and bools take only exact, in-range values, since silently truncating 2.5
/// to 2 would hide a bug in the caller. Floats round to nearest, ties to even.
pub(crate) fn encode(dtype: ElementType, value: f64, out: &mut Vec<u8>) -> Option<()> {
    match dtype {
        ElementType::F32 => out.extend((value as f32).to_le_bytes()),
        ElementType::F16 => {
            out.extend(f16::from_f32(narrow_round_to_odd(value)).to_le_bytes());
        }
        ElementType::Bf16 => {
            out.extend(bf16::from_f32(narrow_round_to_odd(value)).to_le_bytes());
        }
        ElementType::F64 => out.extend(value.to_le_bytes()),
        ElementType::I32 => {
            let in_range = (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&value);
            if !(in_range && value.fract() == 0.0) {
                return None;
            }
            out.extend((value as i32).to_le_bytes());
        }
        ElementType::I64 => {
            // 2^63 itself is an f64 but not an i64, hence the half-open range.
            let two_pow_63 = 9_223_372_036_854_775_808.0;
            if !((-two_pow_63..two_pow_63).contains(&value) && value.fract() == 0.0) {
                return None;
            }
            out.extend((value as i64).to_le_bytes());
        }
        ElementType::U16 => {
            if !((0.0..=f64::from(u16::MAX)).contains(&value) && value.fract() == 0.0) {
                return None;
            }
            out.extend((value as u16).to_le_bytes());
        }
        ElementType::Bool => {
            if value != 0.0 && value != 1.0 {
                return None;
            }
            out.push(u8::from(value == 1.0));
        }
    }
    Some(())
}

/// Narrows to `f32` rounding to odd, so that rounding the result once more to `f16` or `bf16`
/// (to nearest even) gives the correctly rounded value of the original `f64`.
///
/// `half`'s own `from_f64` drops the low 32 mantissa bits before rounding, which loses the
/// sticky bit: `1 + 2^-8 + 2^-40` (just above a bf16 tie) comes out as `1.0` instead of
/// `1 + 2^-7`. Plain `as f32` first would round twice (double rounding). Round-to-odd keeps
/// "was inexact" in the last bit, and `f32` has more than the two extra bits that trick needs
/// over both 16-bit formats (Boldo & Melquiond, "When double rounding is odd", 2005).
fn narrow_round_to_odd(value: f64) -> f32 {
    let nearest = value as f32;
    if !value.is_finite() || f64::from(nearest) == value {
        return nearest;
    }
    // Truncate toward zero: step back one ulp if rounding went away from zero. `nearest` is then
    // nonzero (its magnitude exceeds |value|), so decrementing the magnitude bits is valid, and
    // an infinity steps back to f32::MAX.
    let truncated = if f64::from(nearest).abs() > value.abs() {
        f32::from_bits(nearest.to_bits() - 1)
    } else {
        nearest
    };
    f32::from_bits(truncated.to_bits() | 1)
}

/// Copies a slice of known length into an array for `from_le_bytes`.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(dtype: ElementType, value: f64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        encode(dtype, value, &mut out).map(|()| out)
    }

    fn round_trip(dtype: ElementType, value: f64) -> f64 {
        let bytes = encoded(dtype, value).unwrap_or_default();
        decode(dtype, &bytes)
    }

    #[test]
    fn bf16_ties_round_to_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (odd last bit): stays at 1.
        assert_eq!(round_trip(ElementType::Bf16, 1.0 + 2f64.powi(-8)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): goes up.
        let tie_up = 1.0 + 3.0 * 2f64.powi(-8);
        assert_eq!(round_trip(ElementType::Bf16, tie_up), 1.0 + 2f64.powi(-6));
    }

    #[test]
    fn bf16_keeps_sticky_bits_below_f32_precision() {
        // Just above a tie, by less than an f32 ulp: must round up. Plain double rounding (or
        // half's truncating from_f64) gives 1.0.
        let above_tie = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        assert_eq!(
            round_trip(ElementType::Bf16, above_tie),
            1.0 + 2f64.powi(-7)
        );
        let below_tie = 1.0 + 2f64.powi(-8) - 2f64.powi(-40);
        assert_eq!(round_trip(ElementType::Bf16, below_tie), 1.0);
    }

    #[test]
    fn f16_ties_round_to_even_and_keep_sticky_bits() {
        let ulp = 2f64.powi(-10);
        assert_eq!(round_trip(ElementType::F16, 1.0 + ulp / 2.0), 1.0);
        assert_eq!(
            round_trip(ElementType::F16, 1.0 + 1.5 * ulp),
            1.0 + 2.0 * ulp
        );
        let above_tie = 1.0 + ulp / 2.0 + 2f64.powi(-40);
        assert_eq!(round_trip(ElementType::F16, above_tie), 1.0 + ulp);
        // Subnormal f16: the smallest one is 2^-24; a value just above half of it rounds up.
        assert_eq!(
            round_trip(ElementType::F16, 2f64.powi(-25) + 2f64.powi(-60)),
            2f64.powi(-24)
        );
        assert_eq!(round_trip(ElementType::F16, 2f64.powi(-25)), 0.0);
    }

    #[test]
    fn narrow_formats_overflow_to_infinity_and_keep_nan() {
        assert_eq!(round_trip(ElementType::F16, 1e6), f64::INFINITY);
        assert_eq!(round_trip(ElementType::Bf16, -1e300), f64::NEG_INFINITY);
        let bf16_max = half::bf16::MAX.to_f64();
        assert_eq!(round_trip(ElementType::Bf16, bf16_max), bf16_max);
        // f32::MAX lies above the midpoint between bf16::MAX and infinity.
        assert_eq!(
            round_trip(ElementType::Bf16, f64::from(f32::MAX)),
            f64::INFINITY
        );
        assert!(round_trip(ElementType::F16, f64::NAN).is_nan());
        assert!(round_trip(ElementType::Bf16, f64::NAN).is_nan());
    }

    #[test]
    fn integers_take_only_exact_in_range_values() {
        assert_eq!(
            round_trip(ElementType::I32, -2_147_483_648.0),
            -2_147_483_648.0
        );
        assert_eq!(encoded(ElementType::I32, 2_147_483_648.0), None);
        assert_eq!(encoded(ElementType::I32, 2.5), None);
        assert_eq!(encoded(ElementType::I32, f64::NAN), None);
        assert_eq!(encoded(ElementType::I64, 9_223_372_036_854_775_808.0), None);
        assert_eq!(
            round_trip(ElementType::I64, -9_223_372_036_854_775_808.0),
            -9_223_372_036_854_775_808.0
        );
        assert_eq!(encoded(ElementType::U16, -1.0), None);
        assert_eq!(round_trip(ElementType::U16, 65535.0), 65535.0);
        assert_eq!(encoded(ElementType::Bool, 0.5), None);
        assert_eq!(encoded(ElementType::Bool, 1.0), Some(vec![1]));
    }
}
