//! Column values compared by their type, from the text PostgreSQL sends: what ORDER BY,
//! DISTINCT, GROUP BY, min and max need. Types without a known text order are refused.
//!
//! Text types compare by bytes, which is PostgreSQL's order under the "C" collation only: the
//! shards' databases must use `LC_COLLATE = 'C'` (or the columns `COLLATE "C"`) for ordered
//! merges of text to match. Dates and times must be in `DateStyle = ISO`; BC dates are refused.

use std::cmp::Ordering;

use super::Refusal;
use super::float;
use super::numeric::Numeric;

/// Type OIDs from PostgreSQL's pg_type.dat.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
}

/// A value decoded for comparison. Values of one column always share a variant.
#[derive(Debug, Clone)]
pub enum Key {
    Int(i64),
    Numeric(Numeric),
    Float(f64),
    Bool(bool),
    /// Text in "C" order, uuids; bpchar without its trailing blanks.
    Bytes(Vec<u8>),
    /// Microseconds (dates: days), infinities at the ends.
    Time(i128),
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        use Key::*;
        match (self, other) {
            (Int(a), Int(b)) => a.cmp(b),
            (Numeric(a), Numeric(b)) => a.cmp(b),
            (Float(a), Float(b)) => float::compare(*a, *b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Time(a), Time(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Key {
    fn rank(&self) -> u8 {
        match self {
            Key::Int(_) => 0,
            Key::Numeric(_) => 1,
            Key::Float(_) => 2,
            Key::Bool(_) => 3,
            Key::Bytes(_) => 4,
            Key::Time(_) => 5,
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// Decodes one non-NULL text value of a column of type `type_oid`.
pub fn decode(type_oid: u32, text: &[u8]) -> Result<Key, Refusal> {
    use oid::*;
    let unreadable = || Refusal::unreadable(type_oid, text);
    let as_str = || std::str::from_utf8(text).map_err(|_| unreadable());
    let key = match type_oid {
        INT2 | INT4 | INT8 | OID => as_str()?.parse().ok().map(Key::Int),
        NUMERIC => Numeric::parse(as_str()?).map(Key::Numeric),
        FLOAT4 | FLOAT8 => float::parse(as_str()?).map(Key::Float),
        BOOL => match text {
            b"t" => Some(Key::Bool(true)),
            b"f" => Some(Key::Bool(false)),
            _ => None,
        },
        TEXT | VARCHAR | NAME | UUID => Some(Key::Bytes(text.to_vec())),
        BPCHAR => Some(Key::Bytes(trim_trailing_blanks(text).to_vec())),
        DATE => iso_date(as_str()?).map(|days| Key::Time(i128::from(days))),
        TIMESTAMP | TIMESTAMPTZ => iso_timestamp(as_str()?).map(Key::Time),
        _ => return Err(Refusal::uncomparable(type_oid)),
    };
    key.ok_or_else(unreadable)
}

/// char(n) compares without trailing blanks.
fn trim_trailing_blanks(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &text[..end]
}

/// "YYYY-MM-DD" as days since 1970-01-01; infinities at the ends; None for other styles and BC.
pub(super) fn iso_date(text: &str) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let mut parts = text.splitn(3, '-');
    let year: i64 = digits(parts.next()?)?;
    let month: i64 = digits(parts.next()?)?;
    let day: i64 = digits(parts.next()?)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// "YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]]" as microseconds since 1970 (UTC when an
/// offset is present).
pub(super) fn iso_timestamp(text: &str) -> Option<i128> {
    match text {
        "infinity" => return Some(i128::MAX),
        "-infinity" => return Some(i128::MIN),
        _ => {}
    }
    let (date, time) = text.split_once(' ')?;
    let days = i128::from(iso_date(date)?);
    let offset_at = time.find(['+', '-']).unwrap_or(time.len());
    let (clock, offset) = time.split_at(offset_at);
    let micros = days * 86_400_000_000 + clock_micros(clock)?;
    if offset.is_empty() {
        return Some(micros);
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    Some(micros - sign * offset_micros(&offset[1..])?)
}

/// "HH:MM:SS[.f...]" as microseconds.
fn clock_micros(clock: &str) -> Option<i128> {
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction_micros: i128 = format!("{fraction:0<6}").parse().ok()?;
    Some(hms_seconds(whole, 3)? * 1_000_000 + fraction_micros)
}

/// "HH[:MM[:SS]]" as microseconds.
fn offset_micros(offset: &str) -> Option<i128> {
    Some(hms_seconds(offset, 1)? * 1_000_000)
}

/// "HH:MM:SS" (at least `min_parts` of them) as seconds.
fn hms_seconds(text: &str, min_parts: usize) -> Option<i128> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < min_parts || parts.len() > 3 {
        return None;
    }
    let mut seconds = 0i128;
    for (i, unit) in [3600, 60, 1].iter().enumerate() {
        let value: i128 = parts.get(i).map_or(Some(0), |p| digits(p))?;
        seconds += value * unit;
    }
    Some(seconds)
}

fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(type_oid: u32, text: &str) -> Key {
        decode(type_oid, text.as_bytes()).unwrap()
    }

    #[test]
    fn numbers_compare_by_value_not_text() {
        assert!(key(oid::INT4, "9") < key(oid::INT4, "10"));
        assert!(key(oid::INT8, "-10") < key(oid::INT8, "-9"));
        assert!(key(oid::NUMERIC, "9.5") < key(oid::NUMERIC, "10"));
        assert!(key(oid::NUMERIC, "1.0") == key(oid::NUMERIC, "1.00"));
        assert!(key(oid::FLOAT8, "Infinity") < key(oid::FLOAT8, "NaN"));
        assert!(key(oid::FLOAT8, "-0") == key(oid::FLOAT8, "0"));
        assert!(key(oid::BOOL, "f") < key(oid::BOOL, "t"));
    }

    #[test]
    fn text_compares_by_bytes_and_bpchar_without_trailing_blanks() {
        assert!(key(oid::TEXT, "B") < key(oid::TEXT, "a"));
        assert!(key(oid::BPCHAR, "a\t  ") > key(oid::BPCHAR, "a    "));
        assert!(key(oid::BPCHAR, "ab ") == key(oid::BPCHAR, "ab"));
    }

    #[test]
    fn times_compare_as_instants() {
        assert!(key(oid::DATE, "999-12-31") < key(oid::DATE, "1000-01-01"));
        assert!(key(oid::DATE, "10000-01-01") > key(oid::DATE, "9999-12-31"));
        assert!(key(oid::DATE, "-infinity") < key(oid::DATE, "0001-01-01"));
        assert!(
            key(oid::TIMESTAMP, "2024-01-01 00:00:00.5")
                > key(oid::TIMESTAMP, "2024-01-01 00:00:00")
        );
        // The same wall-clock hour twice around a DST change: the offset decides.
        assert!(
            key(oid::TIMESTAMPTZ, "2024-11-03 01:30:00-04")
                < key(oid::TIMESTAMPTZ, "2024-11-03 01:15:00-05")
        );
        assert!(
            key(oid::TIMESTAMPTZ, "2024-01-01 05:30:00+05:30")
                == key(oid::TIMESTAMPTZ, "2024-01-01 00:00:00+00")
        );
    }

    #[test]
    fn unknown_types_and_other_date_styles_are_refused() {
        assert!(decode(1186, b"1 day").is_err()); // interval
        assert!(decode(oid::DATE, b"01/02/2024").is_err());
        assert!(decode(oid::DATE, b"2024-01-02 BC").is_err());
        assert!(decode(oid::INT4, b"x").is_err());
    }
}
