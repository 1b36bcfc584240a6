//! Exact money: integer micro-dollars.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{MONEY_DOLLARS_MAX, MONEY_MICROS_MAX};

/// An exact amount of money in micro-dollars (1 dollar = 1,000,000 micros).
///
/// 128 bits wide, so that every sum, quotient and difference an answer reports is exact for any
/// log the store can hold (docs/SEMANTICS.md, "Money"); an amount a caller gives is bounded
/// far tighter, by ±9 × 10^12 dollars. Serializes as the integer number of micros. Displays as
/// dollars with thousands separators and at least two decimals: `$17,967.598`, `-$2.50`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i128);

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);

    /// An amount given in micro-dollars.
    pub const fn from_micros(micros: i128) -> Money {
        Money(micros)
    }

    /// Converts dollars to the nearest micro-dollar, halves away from zero, by the shortest
    /// decimal form of `dollars` (so `0.29` is 290,000 micros and `0.0000005` is 1 micro).
    ///
    /// NaN, infinities and amounts beyond ±9 × 10^12 dollars are errors.
    ///
    /// ```
    /// use commlog::Money;
    /// assert_eq!(Money::from_dollars(0.29)?.micros(), 290_000);
    /// assert_eq!(Money::from_dollars(-0.0000005)?.micros(), -1);
    /// # Ok::<(), commlog::Error>(())
    /// ```
    pub fn from_dollars(dollars: f64) -> Result<Money> {
        Money::from_dollars_for("dollars", dollars)
    }

    /// A message's cost: [`Money::from_dollars`] that also refuses a negative amount, the
    /// check every `track_message_sent` makes (error field `cost`).
    pub fn cost_from_dollars(dollars: f64) -> Result<Money> {
        if dollars < 0.0 {
            return Err(Error::invalid("cost", dollars, "must not be negative"));
        }
        Money::from_dollars_for("cost", dollars)
    }

    /// [`Money::from_dollars`] whose error names the caller's field.
    pub fn from_dollars_for(field: &'static str, dollars: f64) -> Result<Money> {
        if !dollars.is_finite() {
            return Err(Error::invalid(field, dollars, "must be a finite number"));
        }
        if dollars.abs() > MONEY_DOLLARS_MAX {
            return Err(Error::invalid(
                field,
                dollars,
                "must be within ±9e12 dollars",
            ));
        }
        let scaled = dollars * 1e6;
        let fraction = (scaled - scaled.trunc()).abs();
        // Far from a half, the product rounds like the decimal; near one, the decimal decides.
        let micros = if scaled.abs() < (1u64 << 43) as f64 && (fraction - 0.5).abs() > 0.01 {
            scaled.round() as i128
        } else {
            round_decimal_to_micros(dollars)
        };
        assert!(micros.abs() <= i128::from(MONEY_MICROS_MAX));
        Ok(Money(micros))
    }

    /// The amount in micro-dollars.
    pub const fn micros(self) -> i128 {
        self.0
    }

    /// The amount of an event (a cost, an outcome, a budget) as the log and the per-message
    /// records keep it: every such amount is within ±[`MONEY_MICROS_MAX`], so it fits.
    pub(crate) fn event_micros(self) -> i64 {
        let micros = i64::try_from(self.0).expect("an event's amount is within MONEY_MICROS_MAX");
        assert!(micros.abs() <= MONEY_MICROS_MAX);
        micros
    }

    /// The amount in dollars, for display (not exact beyond 2^53 micros).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The dollars that [`Money::from_dollars`] turns back into exactly this amount, where an
    /// `f64` carries it: every amount of at most 15 significant digits (so every amount within
    /// ±$1,000,000,000, whatever its micros), and a larger one where the nearest `f64` happens
    /// to. `None` otherwise, and beyond ±9 × 10^12 dollars. An amount given exactly (micros, a
    /// decimal) goes through the dollars' calls with this, or is refused: never rounded.
    ///
    /// ```
    /// use commlog::Money;
    /// assert_eq!(Money::from_micros(1_000_000_000_000_001).exact_dollars(), Some(1e9 + 1e-6));
    /// assert_eq!(Money::from_micros(12_345_678_901_234_567).exact_dollars(), None);
    /// ```
    pub fn exact_dollars(self) -> Option<f64> {
        let dollars = self.dollars();
        (Money::from_dollars(dollars).ok()? == self).then_some(dollars)
    }
}

/// Rounds the shortest decimal representation of `dollars` (|dollars| ≤ 9e12) to micros,
/// halves away from zero.
fn round_decimal_to_micros(dollars: f64) -> i128 {
    // Rust prints f64 in its shortest round-trip form, never with an exponent.
    let text = format!("{}", dollars.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let whole: i128 = whole
        .parse()
        .expect("f64 display has a decimal integer part");
    let mut micros = whole * 1_000_000;
    let digits = fraction.as_bytes();
    for position in 0..6 {
        let digit = digits.get(position).map_or(0, |d| i128::from(d - b'0'));
        micros += digit * 10i128.pow(5 - position as u32);
    }
    if digits.get(6).is_some_and(|d| *d >= b'5') {
        micros += 1;
    }
    if dollars < 0.0 { -micros } else { micros }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let whole = (magnitude / 1_000_000).to_string();
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let mut fraction = format!("{:06}", magnitude % 1_000_000);
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        write!(f, "{sign}${grouped}.{fraction}")
    }
}

impl std::iter::Sum for Money {
    /// Exact sum; panics only past ±2^127 micro-dollars, which no sum of fewer than 2^64
    /// amounts a caller can give reaches.
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(
            iter.map(|m| m.0)
                .fold(0i128, |a, b| a.checked_add(b).expect("money sum overflow")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_dollars_carry_every_amount_of_15_digits_and_refuse_what_they_would_round() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let micros =
                i128::from(next() % 1_000_000_000_000_001) * if next() % 2 == 0 { 1 } else { -1 };
            let dollars = Money(micros).exact_dollars();
            assert_eq!(
                dollars.map(|d| Money::from_dollars(d).unwrap()),
                Some(Money(micros))
            );
        }
        for micros in [
            1_000_000_000_000_000,
            -1_000_000_000_000_000,
            9_000_000_000_000_000_000,
        ] {
            assert_eq!(
                Money(micros).exact_dollars(),
                Some(micros as f64 / 1e6),
                "{micros}"
            );
        }
        for micros in [
            12_345_678_901_234_567,
            9_007_199_254_740_993,
            -8_999_999_999_999_999_999,
            9_000_000_000_000_000_001,
            i128::MAX,
        ] {
            assert_eq!(Money(micros).exact_dollars(), None, "{micros}");
        }
    }

    #[test]
    fn from_dollars_rounds_halves_away_from_zero_by_the_decimal() {
        assert_eq!(Money::from_dollars(0.29).unwrap().micros(), 290_000);
        assert_eq!(Money::from_dollars(0.0000005).unwrap().micros(), 1);
        assert_eq!(Money::from_dollars(-0.0000005).unwrap().micros(), -1);
        assert_eq!(Money::from_dollars(0.0000004999).unwrap().micros(), 0);
        assert_eq!(Money::from_dollars(1.0000005).unwrap().micros(), 1_000_001);
        assert_eq!(Money::from_dollars(0.001).unwrap().micros(), 1_000);
        assert_eq!(
            Money::from_dollars(9e12).unwrap().micros(),
            9_000_000_000_000_000_000
        );
        assert_eq!(
            Money::from_dollars(-9e12).unwrap().micros(),
            -9_000_000_000_000_000_000
        );
    }

    #[test]
    fn from_dollars_refuses_non_finite_and_huge_amounts() {
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9.000_000_001e12,
            -1e13,
        ] {
            assert!(
                matches!(Money::from_dollars(bad), Err(Error::InvalidInput { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_groups_thousands_and_trims_zeros() {
        assert_eq!(
            Money::from_micros(17_967_598_000).to_string(),
            "$17,967.598"
        );
        assert_eq!(Money::from_micros(92_613_680_000).to_string(), "$92,613.68");
        assert_eq!(Money::from_micros(-2_500_000).to_string(), "-$2.50");
        assert_eq!(Money::from_micros(1).to_string(), "$0.000001");
        assert_eq!(Money::ZERO.to_string(), "$0.00");
    }

    #[test]
    fn display_handles_sums_beyond_64_bits() {
        assert_eq!(
            Money::from_micros(27_000_000_000_000_000_000).to_string(),
            "$27,000,000,000,000.00"
        );
        assert_eq!(
            Money::from_micros(i128::MIN).to_string(),
            "-$170,141,183,460,469,231,731,687,303,715,884.105728"
        );
    }
}
