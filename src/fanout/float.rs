//! `real` and `double precision` as text: parsing what PostgreSQL prints, and printing a merged
//! value the way PostgreSQL's `float4out` / `float8out` do with the default
//! `extra_float_digits` (1): the shortest text that reads back exactly, in fixed notation for
//! decimal exponents from -4 up to 14 (float8) or 5 (float4), else `1.5e+20` style.

use std::cmp::Ordering;

/// Parses PostgreSQL's float text (`NaN`, `Infinity`, `-Infinity` included) straight into the
/// column's own width, so a `real` is never rounded twice.
pub fn parse<F: std::str::FromStr>(text: &str) -> Option<F> {
    let spelled = match text {
        "Infinity" => "inf",
        "-Infinity" => "-inf",
        "NaN" => "NaN",
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.e".contains(&b)) =>
        {
            text
        }
        _ => return None,
    };
    spelled.parse().ok()
}

/// PostgreSQL's float order: NaN equals NaN and sorts above everything; -0 equals 0.
pub fn compare(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// float8out.
pub fn format_f64(value: f64) -> String {
    match special(value) {
        Some(text) => text,
        None => pg_layout(&format!("{value:e}"), 15),
    }
}

/// float4out.
pub fn format_f32(value: f32) -> String {
    match special(f64::from(value)) {
        Some(text) => text,
        None => pg_layout(&format!("{value:e}"), 6),
    }
}

fn special(value: f64) -> Option<String> {
    if value.is_nan() {
        Some("NaN".into())
    } else if value.is_infinite() {
        Some(if value > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else if value == 0.0 {
        Some(if value.is_sign_negative() { "-0" } else { "0" }.into())
    } else {
        None
    }
}

/// Lays out Rust's shortest round-trip digits (`-1.2345e3`) as PostgreSQL does.
fn pg_layout(scientific: &str, fixed_below: i32) -> String {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..fixed_below).contains(&exponent) {
        fixed(&digits, exponent)
    } else {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{point}{rest}e{exp_sign}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

/// Digits d1d2d3... with the first at 10^exponent, in fixed notation.
fn fixed(digits: &str, exponent: i32) -> String {
    if exponent < 0 {
        return format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize));
    }
    let whole_len = exponent as usize + 1;
    if digits.len() <= whole_len {
        format!("{digits}{}", "0".repeat(whole_len - digits.len()))
    } else {
        format!("{}.{}", &digits[..whole_len], &digits[whole_len..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected texts are PostgreSQL 15's output for the same values.
    #[test]
    fn prints_float8_like_postgres() {
        let cases = [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (123456789012345.6, "123456789012345.6"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (-0.0, "-0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, text) in cases {
            assert_eq!(format_f64(value), text);
        }
    }

    #[test]
    fn prints_float4_like_postgres() {
        assert_eq!(format_f32(100000.0), "100000");
        assert_eq!(format_f32(1000000.0), "1e+06");
        assert_eq!(format_f32(1.1), "1.1");
        assert_eq!(format_f32(0.1 + 0.2), "0.3");
    }

    #[test]
    fn parses_and_orders_like_postgres() {
        assert_eq!(parse("1e+15"), Some(1e15));
        assert_eq!(parse::<f32>("1.1"), Some(1.1f32));
        assert_eq!(parse("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse::<f64>("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse::<f64>("inf"), None);
        assert_eq!(parse::<f64>("nan"), None);
        assert_eq!(compare(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(compare(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(compare(-0.0, 0.0), Ordering::Equal);
        assert_eq!(compare(-1.0, 0.5), Ordering::Less);
    }
}
