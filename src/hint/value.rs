//! The text forms of the values hints and settings take: consistency levels, routes,
//! durations and WAL positions. Each parser's error is what was expected, for the caller to
//! put into its own sentence.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::{Consistency, RouteHint};

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MILLISECOND: u128 = 1_000_000;

/// Duration units, largest first so that formatting picks the largest exact one.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("s", NANOS_PER_SECOND),
    ("ms", NANOS_PER_MILLISECOND),
    ("us", 1_000),
    ("ns", 1),
];

/// Fraction digits past this many are below a nanosecond for every unit above; ignoring them
/// keeps the arithmetic exact in u128 (10^24 * 86_400 * 10^9 < 2^128).
const MAX_FRACTION_DIGITS: usize = 24;

const DURATION_EXPECTED: &str = "expected a duration such as 500ms, 2.5s or 1m";

impl Consistency {
    /// The levels named by one word (all but `bounded:<duration>`).
    const WORDS: [Consistency; 4] = [
        Consistency::Eventual,
        Consistency::ReadYourWrites,
        Consistency::Monotonic,
        Consistency::Strong,
    ];

    fn word(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::ReadYourWrites => "read_your_writes",
            Consistency::Monotonic => "monotonic",
            Consistency::Strong => "strong",
            Consistency::Bounded(_) => "bounded",
        }
    }
}

/// The form hints and settings accept: "strong", "bounded:200ms".
impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Bounded(lag) => write!(f, "bounded:{}", format_duration(*lag)),
            level => f.write_str(level.word()),
        }
    }
}

impl RouteHint {
    const ALL: [RouteHint; 2] = [RouteHint::Primary, RouteHint::Replica];

    fn word(self) -> &'static str {
        match self {
            RouteHint::Primary => "primary",
            RouteHint::Replica => "replica",
        }
    }
}

impl fmt::Display for RouteHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// `text` without `prefix`, compared ASCII-case-insensitively.
pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// A value in single quotes, as SQL writes strings (`''` is one quote); other text as it is.
pub(crate) fn unquote(text: &str) -> Cow<'_, str> {
    match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(inner) if inner.contains("''") => Cow::Owned(inner.replace("''", "'")),
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(text),
    }
}

/// Input echoed in a message: quoted and escaped (so NULs and newlines stay visible), and
/// shortened, since the input may be a megabyte of garbage.
pub(crate) fn quoted(text: &str) -> String {
    const SHOWN_CHARS: usize = 60;
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

pub(crate) fn parse_consistency(text: &str) -> Result<Consistency, String> {
    let text = text.trim();
    if let Some(lag) = strip_prefix_ignore_case(text, "bounded:") {
        return parse_duration(lag).map(Consistency::Bounded);
    }
    Consistency::WORDS
        .into_iter()
        .find(|level| level.word().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            "expected eventual, read_your_writes, monotonic, strong or bounded:<duration>".into()
        })
}

pub(crate) fn parse_route(text: &str) -> Result<RouteHint, String> {
    let text = text.trim();
    RouteHint::ALL
        .into_iter()
        .find(|route| route.word().eq_ignore_ascii_case(text))
        .ok_or_else(|| "expected primary or replica".into())
}

/// "500ms", "2.5s", "1m", "1 min": a decimal number and a unit (d, h, m or min, s, ms, us,
/// ns). A bare number is milliseconds, as for PostgreSQL's own time settings. Exact to the
/// nanosecond: no floating point on the way.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    unit_nanos(unit.trim())
        .and_then(|per_unit| decimal_times(number, per_unit))
        .and_then(duration_from_nanos)
        .ok_or_else(|| DURATION_EXPECTED.into())
}

fn unit_nanos(unit: &str) -> Option<u128> {
    let unit = match unit {
        "" => "ms",
        min if min.eq_ignore_ascii_case("min") => "m",
        other => other,
    };
    UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, nanos)| nanos)
}

/// The decimal `number` ("2.5", "10", ".5") times `scale`, truncated to an integer.
fn decimal_times(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let whole = digits_value(whole)?.checked_mul(scale)?;
    let fraction_denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let fraction = digits_value(fraction)?.checked_mul(scale)? / fraction_denominator;
    whole.checked_add(fraction)
}

/// The value of a string of ASCII digits; `None` on overflow.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |value, digit| {
        value.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
    })
}

fn duration_from_nanos(nanos: u128) -> Option<Duration> {
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).ok()?;
    let subsec = u32::try_from(nanos % NANOS_PER_SECOND).ok()?;
    Some(Duration::new(seconds, subsec))
}

/// The shortest exact form [`parse_duration`] reads back: "200ms", "2s", "2500ms", "1m".
pub(crate) fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let (unit, per_unit) = UNITS
        .iter()
        .find(|&&(_, per_unit)| nanos >= per_unit && nanos.is_multiple_of(per_unit))
        .copied()
        // Only zero matches no unit.
        .unwrap_or(("ms", NANOS_PER_MILLISECOND));
    format!("{}{unit}", nanos / per_unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn durations_in_every_unit() {
        let cases = [
            ("500ms", ms(500)),
            ("1s", ms(1_000)),
            ("2.5s", ms(2_500)),
            ("200ms", ms(200)),
            ("1m", ms(60_000)),
            ("1min", ms(60_000)),
            ("1 min", ms(60_000)),
            ("1h", ms(3_600_000)),
            ("1d", ms(86_400_000)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("0.001s", ms(1)),
            (".5s", ms(500)),
            ("1.s", ms(1_000)),
            ("  3S ", ms(3_000)),
            ("1.5MS", Duration::from_micros(1_500)),
            ("120", ms(120)),
            ("0", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        for text in [
            "",
            "fast",
            "s",
            ".",
            ".s",
            "1.2.3s",
            "-1s",
            "1 s s",
            "1x",
            "1e3ms",
            "١s",
            "99999999999999999999999999999999999999999999d",
            "18446744073709551616s",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DURATION_EXPECTED.into()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn long_fractions_truncate_below_a_nanosecond() {
        let text = format!("1.{}s", "9".repeat(10_000));
        assert_eq!(parse_duration(&text), Ok(Duration::new(1, 999_999_999)));
        assert_eq!(parse_duration("0.0000000015s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn formatting_round_trips() {
        for (duration, text) in [
            (ms(200), "200ms"),
            (ms(2_000), "2s"),
            (ms(2_500), "2500ms"),
            (ms(60_000), "1m"),
            (ms(90_000), "90s"),
            (ms(7_200_000), "2h"),
            (Duration::from_micros(3), "3us"),
            (Duration::from_nanos(1_000_001), "1000001ns"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn consistency_text_round_trips() {
        for level in [
            Consistency::Eventual,
            Consistency::ReadYourWrites,
            Consistency::Monotonic,
            Consistency::Strong,
            Consistency::Bounded(ms(200)),
            Consistency::Bounded(Duration::from_micros(2_500)),
        ] {
            assert_eq!(parse_consistency(&level.to_string()), Ok(level));
        }
        assert_eq!(Consistency::Bounded(ms(200)).to_string(), "bounded:200ms");
        assert_eq!(Consistency::ReadYourWrites.to_string(), "read_your_writes");
        assert_eq!(parse_consistency(" STRONG "), Ok(Consistency::Strong));
        assert_eq!(
            parse_consistency("Bounded:1.5s"),
            Ok(Consistency::Bounded(ms(1_500)))
        );
        assert!(parse_consistency("bounded").is_err());
        assert!(parse_consistency("bounded:").is_err());
        assert!(parse_consistency("bounded:soon").is_err());
        assert!(parse_consistency("read-your-writes").is_err());
    }

    #[test]
    fn routes_and_lsns() {
        assert_eq!(parse_route("Primary"), Ok(RouteHint::Primary));
        assert_eq!(parse_route("replica"), Ok(RouteHint::Replica));
        assert!(parse_route("sideways").is_err());
        assert_eq!(RouteHint::Replica.to_string(), "replica");
    }

    #[test]
    fn quoting_and_unquoting() {
        assert_eq!(unquote("'strong'"), "strong");
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("''"), "");
        assert_eq!(unquote("'"), "'");
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(quoted("a\0\"b"), r#""a\0\"b""#);
        let long = quoted(&"é".repeat(1_000));
        assert_eq!(long.chars().count(), 60 + 3);
        assert!(long.ends_with("…\""));
    }

    #[test]
    fn prefixes_ignore_case_and_respect_char_boundaries() {
        assert_eq!(strip_prefix_ignore_case("PGSPLIT:x", "pgsplit:"), Some("x"));
        assert_eq!(strip_prefix_ignore_case("pgspli", "pgsplit:"), None);
        assert_eq!(strip_prefix_ignore_case("pgsplié:", "pgsplit:"), None);
        assert_eq!(strip_prefix_ignore_case("ééééé", "pgsplit:"), None);
    }
}
