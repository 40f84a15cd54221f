//! Result columns in binary format for clients that ask for them over the extended protocol.
//!
//! Shards answer a fan-out in text (the merge compares and combines text values); a client
//! that binds binary result formats gets the merged text values encoded as PostgreSQL's own
//! `*send` functions would encode them, for the common types. Any other type is refused, naming
//! the column: text is never sent where binary was asked.

use bytes::Bytes;

use super::numeric::Numeric;
use super::values::{self, oid};
use super::wire::{self, Field, Value};
use super::{Merged, Refusal};

/// Days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;
/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The merged answer with the client's result formats applied: its RowDescription (formats
/// set as asked) and DataRows (binary values where asked). `formats` is the Bind's list: empty
/// (all text), one (for every column) or one per column.
pub fn apply_formats(merged: &Merged, formats: &[i16]) -> Result<(Bytes, Vec<Bytes>), Refusal> {
    let mut fields = wire::parse_row_description(&merged.row_description)?;
    let format_of = |column: usize| match formats {
        [] => Ok(0),
        [one] => Ok(*one),
        many => many.get(column).copied().ok_or_else(|| {
            Refusal::malformed("the Bind gives another number of result formats than columns")
        }),
    };
    for (column, field) in fields.iter_mut().enumerate() {
        field.format = format_of(column)?;
        if field.format == 1 && !encodable(field) {
            return Err(not_encodable(field));
        }
    }
    if fields.iter().all(|f| f.format == 0) {
        return Ok((merged.row_description.clone(), merged.rows.clone()));
    }
    let mut rows = Vec::with_capacity(merged.rows.len());
    for row in &merged.rows {
        let values = wire::parse_data_row(row, fields.len())?;
        let encoded: Result<Vec<Value>, Refusal> = values
            .into_iter()
            .zip(&fields)
            .map(|(value, field)| encode_value(value, field))
            .collect();
        rows.push(wire::encode_data_row(&encoded?));
    }
    Ok((wire::encode_row_description(&fields), rows))
}

/// Whether a column's type has a binary encoding here (checked before any row is read, so
/// an empty answer is refused the same way as a full one).
fn encodable(field: &Field) -> bool {
    matches!(
        field.type_oid,
        oid::BOOL
            | oid::INT2
            | oid::INT4
            | oid::INT8
            | oid::OID
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::NUMERIC
            | oid::TEXT
            | oid::VARCHAR
            | oid::BPCHAR
            | oid::NAME
            | oid::DATE
            | oid::UUID
            | oid::TIMESTAMP
            | oid::TIMESTAMPTZ
    )
}

fn encode_value(value: Value, field: &Field) -> Result<Value, Refusal> {
    match (value, field.format) {
        (None, _) => Ok(None),
        (Some(text), 0) => Ok(Some(text)),
        (Some(text), _) => binary_value(field.type_oid, &text)
            .map(Some)
            .ok_or_else(|| unreadable(field, &text)),
    }
}

fn not_encodable(field: &Field) -> Refusal {
    Refusal::unsupported(format!(
        "column \"{}\" (type oid {}) cannot be sent in binary format by a read of every shard; \
         ask for it in text format (known: integers, oid, real, double precision, numeric, \
         boolean, text, varchar, char, name, uuid, date, timestamp, timestamptz)",
        field.name, field.type_oid
    ))
}

fn unreadable(field: &Field, text: &[u8]) -> Refusal {
    Refusal::unsupported(format!(
        "the value \"{}\" of column \"{}\" cannot be sent in binary format by a read of every \
         shard; ask for it in text format",
        String::from_utf8_lossy(text),
        field.name
    ))
}

/// A text value of type `type_oid` in PostgreSQL's binary format; None for a type without an
/// encoding here, or a text this encoder cannot read.
pub fn binary_value(type_oid: u32, text: &[u8]) -> Option<Bytes> {
    let text_str = std::str::from_utf8(text).ok()?;
    let bytes: Vec<u8> = match type_oid {
        oid::BOOL => match text_str {
            "t" => vec![1],
            "f" => vec![0],
            _ => return None,
        },
        oid::INT2 => text_str.parse::<i16>().ok()?.to_be_bytes().to_vec(),
        oid::INT4 => text_str.parse::<i32>().ok()?.to_be_bytes().to_vec(),
        oid::INT8 => text_str.parse::<i64>().ok()?.to_be_bytes().to_vec(),
        oid::OID => text_str.parse::<u32>().ok()?.to_be_bytes().to_vec(),
        oid::FLOAT4 => text_str.parse::<f32>().ok()?.to_be_bytes().to_vec(),
        oid::FLOAT8 => text_str.parse::<f64>().ok()?.to_be_bytes().to_vec(),
        oid::NUMERIC => Numeric::parse(text_str)?.to_binary()?,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => text.to_vec(),
        oid::DATE => date(text_str)?.to_be_bytes().to_vec(),
        oid::UUID => uuid(text_str)?,
        oid::TIMESTAMP => timestamp(text_str)?.to_be_bytes().to_vec(),
        oid::TIMESTAMPTZ => timestamp(text_str)?.to_be_bytes().to_vec(),
        _ => return None,
    };
    Some(Bytes::from(bytes))
}

/// An ISO date as days since 2000-01-01; infinities as PostgreSQL stores them.
fn date(text: &str) -> Option<i32> {
    match values::iso_date(text)? {
        i64::MAX => Some(i32::MAX),
        i64::MIN => Some(i32::MIN),
        days => i32::try_from(days - POSTGRES_EPOCH_DAYS).ok(),
    }
}

/// An ISO timestamp (with an offset for timestamptz) as microseconds since 2000-01-01 UTC.
fn timestamp(text: &str) -> Option<i64> {
    match values::iso_timestamp(text)? {
        i128::MAX => Some(i64::MAX),
        i128::MIN => Some(i64::MIN),
        micros => {
            i64::try_from(micros - i128::from(POSTGRES_EPOCH_DAYS) * i128::from(MICROS_PER_DAY))
                .ok()
        }
    }
}

fn uuid(text: &str) -> Option<Vec<u8>> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(type_oid: u32, text: &str) -> Vec<u8> {
        binary_value(type_oid, text.as_bytes())
            .unwrap_or_else(|| panic!("{text} encodes"))
            .to_vec()
    }

    #[test]
    fn encodes_scalars_as_their_send_functions() {
        assert_eq!(binary(oid::INT2, "-2"), (-2i16).to_be_bytes());
        assert_eq!(binary(oid::INT4, "42"), 42i32.to_be_bytes());
        assert_eq!(
            binary(oid::INT8, "-9000000000"),
            (-9_000_000_000i64).to_be_bytes()
        );
        assert_eq!(binary(oid::FLOAT8, "0.1"), 0.1f64.to_be_bytes());
        assert_eq!(
            binary(oid::FLOAT4, "-Infinity"),
            f32::NEG_INFINITY.to_be_bytes()
        );
        assert_eq!(binary(oid::BOOL, "t"), [1]);
        assert_eq!(binary(oid::TEXT, "héllo"), "héllo".as_bytes());
        assert_eq!(
            binary(oid::UUID, "00010203-0405-0607-0809-0a0b0c0d0e0f"),
            (0u8..16).collect::<Vec<_>>()
        );
        assert!(binary_value(oid::INT4, b"4.5").is_none());
        assert!(binary_value(oid::BOOL, b"yes").is_none());
        assert!(
            binary_value(600, b"(1,2)").is_none(),
            "point has no encoding here"
        );
    }

    #[test]
    fn encodes_dates_and_timestamps_from_postgres_epoch() {
        assert_eq!(binary(oid::DATE, "2000-01-01"), 0i32.to_be_bytes());
        assert_eq!(binary(oid::DATE, "1999-12-31"), (-1i32).to_be_bytes());
        assert_eq!(binary(oid::DATE, "2024-02-29"), 8825i32.to_be_bytes());
        assert_eq!(binary(oid::DATE, "infinity"), i32::MAX.to_be_bytes());
        assert_eq!(
            binary(oid::TIMESTAMP, "2000-01-02 00:00:01.5"),
            (86_401_500_000i64).to_be_bytes()
        );
        assert_eq!(
            binary(oid::TIMESTAMPTZ, "2000-01-01 01:00:00+01"),
            0i64.to_be_bytes()
        );
        assert!(binary_value(oid::DATE, b"2000-01-01 BC").is_none());
    }

    /// Expected bytes from PostgreSQL: `SELECT numeric_send('<text>')`.
    #[test]
    fn encodes_numeric_as_numeric_send() {
        let hex = |text: &str| -> String {
            binary(oid::NUMERIC, text)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        assert_eq!(hex("0"), "0000000000000000");
        assert_eq!(hex("0.00"), "0000000000000002");
        assert_eq!(hex("1"), "00010000000000000001");
        assert_eq!(hex("-1.50"), "000200004000000200011388");
        assert_eq!(hex("12345.678"), "0003000100000003000109291a7c");
        assert_eq!(hex("0.001"), "0001ffff00000003000a");
        assert_eq!(hex("10000"), "00010001000000000001");
        assert_eq!(hex("NaN"), "00000000c0000000");
    }

    #[test]
    fn applies_formats_and_refuses_what_it_cannot_encode() {
        let field = |name: &str, type_oid: u32| wire::test_field(name, type_oid, 0);
        let merged = Merged {
            row_description: wire::encode_row_description(&[
                field("n", oid::INT4),
                field("p", 600),
            ]),
            rows: vec![wire::encode_data_row(&[
                Some(Bytes::from_static(b"7")),
                Some(Bytes::from_static(b"(1,2)")),
            ])],
            command_tag: "SELECT 1".into(),
        };
        let (description, rows) = apply_formats(&merged, &[1, 0]).expect("int4 in binary");
        let fields = wire::parse_row_description(&description).expect("description");
        assert_eq!((fields[0].format, fields[1].format), (1, 0));
        let values = wire::parse_data_row(&rows[0], 2).expect("row");
        assert_eq!(values[0].as_deref(), Some(&7i32.to_be_bytes()[..]));
        assert_eq!(values[1].as_deref(), Some(&b"(1,2)"[..]));
        let refused = apply_formats(&merged, &[1]).expect_err("point in binary");
        assert_eq!(
            refused.code,
            crate::protocol::SqlState::FEATURE_NOT_SUPPORTED
        );
        assert!(
            refused.message.contains("column \"p\""),
            "{}",
            refused.message
        );
        assert!(
            apply_formats(&merged, &[1, 1, 1]).is_err(),
            "three formats, two columns"
        );
    }
}
