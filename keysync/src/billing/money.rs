//! Amounts of money, exactly: integers in a currency's minor unit, read from and written
//! as decimal text (`49.00` EUR is 4900 cents), never through a floating-point number,
//! and the one rounding rule of invoices ([`divide_half_up`]).

use super::currency::Currency;

/// The largest amount a price may be, in minor units (ten trillion euros): large enough
/// for any price, small enough that an invoice's sums stay exact in `i128` and its
/// total in `i64` for any month's usage the rollup can hold.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000_000;

/// A price that cannot be used; callers name the flag or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAmount {
    #[error("must not be negative")]
    Negative,
    #[error("expected a decimal amount such as 49.00")]
    NotDecimal,
    #[error("{currency} has {exponent} decimals")]
    TooPrecise {
        currency: &'static str,
        exponent: u8,
    },
    #[error("larger than the largest price")]
    TooLarge,
}

/// The amount `text` (in major units: `49`, `49.5`, `49.00`) in `currency`'s minor units.
/// At most the currency's decimals; no sign, exponent or thousands separator.
pub fn parse_minor(text: &str, currency: Currency) -> Result<i64, InvalidAmount> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(InvalidAmount::Negative);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.ends_with('.')) {
        return Err(InvalidAmount::NotDecimal);
    }
    let exponent = usize::from(currency.exponent());
    // Trailing zeros beyond the minor unit change nothing (`49.000` EUR is 4900).
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > exponent {
        return Err(InvalidAmount::TooPrecise {
            currency: currency.code(),
            exponent: currency.exponent(),
        });
    }
    let scaled = format!("{whole}{fraction:0<exponent$}");
    let minor: i128 = scaled
        .trim_start_matches('0')
        .parse::<i128>()
        .or_else(|_| {
            // All zeros, or too many digits for any price.
            if scaled.bytes().all(|b| b == b'0') {
                Ok(0)
            } else {
                Err(InvalidAmount::TooLarge)
            }
        })?;
    if minor > i128::from(MAX_PRICE_MINOR) {
        return Err(InvalidAmount::TooLarge);
    }
    i64::try_from(minor).map_err(|_| InvalidAmount::TooLarge)
}

/// `minor` units of `currency` as decimal text with all its decimals: `4900` EUR is
/// `49.00`, `4900` JPY is `4900`.
pub fn format_minor(minor: i64, currency: Currency) -> String {
    let exponent = u32::from(currency.exponent());
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let unit = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / unit,
        magnitude % unit,
        width = exponent as usize
    )
}

/// `numerator / denominator` rounded to the nearest integer, a half rounded up (away
/// from zero: amounts here are never negative): the rounding rule of every invoice line.
/// `denominator` must be positive; zero gives zero rather than a panic.
pub fn divide_half_up(numerator: i128, denominator: i128) -> i128 {
    if denominator <= 0 {
        return 0;
    }
    let quotient = numerator.div_euclid(denominator);
    let remainder = numerator.rem_euclid(denominator);
    if remainder.saturating_mul(2) >= denominator {
        quotient.saturating_add(1)
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn amounts_are_read_exactly_in_minor_units() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        for (text, currency, minor) in [
            ("49", eur(), 4900),
            ("49.5", eur(), 4950),
            ("49.00", eur(), 4900),
            ("0.01", eur(), 1),
            ("0", eur(), 0),
            ("0.000", eur(), 0),
            ("000.10", eur(), 10),
            ("1.10", eur(), 110),
            // 0.1 + 0.2 in binary floating point is not 0.3; here it never meets one.
            ("0.3", eur(), 30),
            ("4900", jpy, 4900),
            ("1.234", kwd, 1234),
            ("10000000000000", eur(), MAX_PRICE_MINOR),
        ] {
            assert_eq!(parse_minor(text, currency), Ok(minor), "{text} {currency}");
        }
        for (text, currency, error) in [
            ("-1", eur(), "must not be negative"),
            ("-0.01", eur(), "must not be negative"),
            ("1.234", eur(), "EUR has 2 decimals"),
            ("1.5", jpy, "JPY has 0 decimals"),
            ("1e3", eur(), "expected a decimal amount such as 49.00"),
            ("1,000", eur(), "expected a decimal amount such as 49.00"),
            ("", eur(), "expected a decimal amount such as 49.00"),
            (".5", eur(), "expected a decimal amount such as 49.00"),
            ("5.", eur(), "expected a decimal amount such as 49.00"),
            ("+5", eur(), "expected a decimal amount such as 49.00"),
            ("NaN", eur(), "expected a decimal amount such as 49.00"),
            ("10000000000000.01", eur(), "larger than the largest price"),
            (&"9".repeat(60), eur(), "larger than the largest price"),
        ] {
            assert_eq!(
                parse_minor(text, currency).unwrap_err().to_string(),
                error,
                "{text}"
            );
        }
    }

    #[test]
    fn amounts_are_written_with_every_decimal() {
        assert_eq!(format_minor(4900, eur()), "49.00");
        assert_eq!(format_minor(5, eur()), "0.05");
        assert_eq!(format_minor(0, eur()), "0.00");
        assert_eq!(format_minor(-5, eur()), "-0.05");
        assert_eq!(format_minor(4900, Currency::parse("JPY").unwrap()), "4900");
        assert_eq!(format_minor(1234, Currency::parse("KWD").unwrap()), "1.234");
        assert_eq!(format_minor(i64::MAX, eur()), "92233720368547758.07");
    }

    #[test]
    fn a_half_rounds_up_and_less_rounds_down() {
        assert_eq!(divide_half_up(75_050, 1000), 75, "75.05");
        assert_eq!(divide_half_up(75_499, 1000), 75, "75.499");
        assert_eq!(
            divide_half_up(75_500, 1000),
            76,
            "75.5: half up, not to even"
        );
        assert_eq!(
            divide_half_up(76_500, 1000),
            77,
            "76.5: half up, not to even"
        );
        assert_eq!(divide_half_up(75_501, 1000), 76);
        assert_eq!(divide_half_up(0, 1000), 0);
        assert_eq!(divide_half_up(1, 2), 1);
        assert_eq!(divide_half_up(1, 3), 0);
        assert_eq!(divide_half_up(2, 3), 1);
        assert_eq!(divide_half_up(7, 0), 0);
    }
}
