//! Shard keys: the declared key type of a sharded table, and key values parsed from text the
//! way PostgreSQL's input functions parse them, so a key routes the way the server stores it.

use std::fmt;

use serde::Deserialize;

use super::ShardError;

/// The type of a shard key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Int2,
    Int4,
    Int8,
    /// Text under a deterministic collation: keys are compared and hashed as bytes.
    Text,
    Uuid,
}

/// A parsed key value. Values of one key type compare the way PostgreSQL compares them
/// (integers numerically, text and uuid byte by byte); values of different types never meet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Text(String),
    Uuid([u8; 16]),
}

impl KeyType {
    /// The name PostgreSQL uses in its error messages.
    pub fn sql_name(self) -> &'static str {
        match self {
            KeyType::Int2 => "smallint",
            KeyType::Int4 => "integer",
            KeyType::Int8 => "bigint",
            KeyType::Text => "text",
            KeyType::Uuid => "uuid",
        }
    }

    /// Parses a key from its text form (an SQL literal's value or a text-format parameter).
    pub fn parse(self, text: &str) -> Result<KeyValue, ShardError> {
        match self {
            KeyType::Int2 => self.parse_int(text).map(KeyValue::Int2),
            KeyType::Int4 => self.parse_int(text).map(KeyValue::Int4),
            KeyType::Int8 => self.parse_int(text).map(KeyValue::Int8),
            KeyType::Text => Ok(KeyValue::Text(text.to_owned())),
            KeyType::Uuid => parse_uuid(text)
                .map(KeyValue::Uuid)
                .ok_or_else(|| self.invalid(text)),
        }
    }

    /// PostgreSQL 15's integer input: optional surrounding whitespace, an optional sign, decimal
    /// digits; anything else is a syntax error, and too many digits an out-of-range error.
    fn parse_int<T: TryFrom<i128>>(self, text: &str) -> Result<T, ShardError> {
        let trimmed = text.trim_matches(is_c_space);
        let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(text));
        }
        let out_of_range = || ShardError::KeyOutOfRange {
            type_name: self.sql_name(),
            value: text.to_owned(),
        };
        // 39 digits always fit an i128, and every integer key type is far narrower.
        if digits.trim_start_matches('0').len() > 20 {
            return Err(out_of_range());
        }
        let wide: i128 = trimmed.parse().map_err(|_| self.invalid(text))?;
        T::try_from(wide).map_err(|_| out_of_range())
    }

    fn invalid(self, text: &str) -> ShardError {
        ShardError::InvalidKey {
            type_name: self.sql_name(),
            value: text.to_owned(),
        }
    }
}

/// The C library's `isspace` in the C locale, which PostgreSQL's integer input skips.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// PostgreSQL's uuid input: 32 hex digits, optionally in braces, with an optional hyphen after
/// any group of four digits (but not after the last).
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let mut bytes = [0u8; 16];
    let mut rest = inner.as_bytes();
    for (i, byte) in bytes.iter_mut().enumerate() {
        let (pair, after) = rest.split_at_checked(2)?;
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
        rest = after;
        if i % 2 == 1 && i < 15 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
    }
    rest.is_empty().then_some(bytes)
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

impl KeyValue {
    pub fn key_type(&self) -> KeyType {
        match self {
            KeyValue::Int2(_) => KeyType::Int2,
            KeyValue::Int4(_) => KeyType::Int4,
            KeyValue::Int8(_) => KeyType::Int8,
            KeyValue::Text(_) => KeyType::Text,
            KeyValue::Uuid(_) => KeyType::Uuid,
        }
    }

    /// The value's text as PostgreSQL prints it (`KeyType::parse` reads it back unchanged).
    pub fn to_text(&self) -> String {
        match self {
            KeyValue::Int2(v) => v.to_string(),
            KeyValue::Int4(v) => v.to_string(),
            KeyValue::Int8(v) => v.to_string(),
            KeyValue::Text(v) => v.clone(),
            KeyValue::Uuid(b) => {
                let hex: Vec<String> = b.iter().map(|byte| format!("{byte:02x}")).collect();
                let hex = hex.concat();
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
        }
    }
}

/// The value as an SQL literal, for error messages and logs: text quoted, the rest bare.
impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Text(v) => write!(f, "'{}'", v.replace('\'', "''")),
            other => f.write_str(&other.to_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_postgres() {
        assert_eq!(KeyType::Int4.parse(" +42 \n").unwrap(), KeyValue::Int4(42));
        assert_eq!(
            KeyType::Int2.parse("-32768").unwrap(),
            KeyValue::Int2(-32768)
        );
        assert_eq!(
            KeyType::Int8.parse("-9223372036854775808").unwrap(),
            KeyValue::Int8(i64::MIN)
        );
        assert_eq!(
            KeyType::Int8
                .parse("0000000000000000000000000000000000000007")
                .unwrap(),
            KeyValue::Int8(7)
        );
    }

    #[test]
    fn bad_integers_get_postgres_errors() {
        for bad in ["", " ", "-", "1.5", "4 2", "0x10", "1e3", "abc", "++1"] {
            let err = KeyType::Int4.parse(bad).unwrap_err();
            assert_eq!(err.sqlstate().0, "22P02", "{bad:?}: {err}");
        }
        let err = KeyType::Int2.parse("32768").unwrap_err();
        assert_eq!(
            err.to_string(),
            "value \"32768\" is out of range for type smallint"
        );
        assert_eq!(err.sqlstate().0, "22003");
        let huge = "9".repeat(60);
        assert_eq!(
            KeyType::Int8.parse(&huge).unwrap_err().sqlstate().0,
            "22003"
        );
    }

    #[test]
    fn uuids_parse_in_every_form_postgres_accepts() {
        let canonical = KeyType::Uuid
            .parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            .unwrap();
        for form in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(KeyType::Uuid.parse(form).unwrap(), canonical, "{form}");
        }
        assert_eq!(
            canonical.to_string(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        for bad in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc9é9c0b-4ef8-bb6d-6bb9bd380a11",
            "+0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert!(KeyType::Uuid.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_is_taken_as_is() {
        assert_eq!(
            KeyType::Text.parse(" ünï ").unwrap(),
            KeyValue::Text(" ünï ".into())
        );
        assert_eq!(KeyValue::Text("it's".into()).to_string(), "'it''s'");
    }
}
