//! Bind parameters read as shard keys, in text or binary format.

use crate::protocol::messages;
use crate::shard::KeyType;

/// A Bind's parameter values and their formats.
pub(in crate::frontend) struct BindParams<'a> {
    formats: Vec<i16>,
    values: Vec<Option<&'a [u8]>>,
}

impl<'a> BindParams<'a> {
    pub(super) fn read(body: &'a [u8]) -> Option<BindParams<'a>> {
        let mut rest = messages::bind_arguments(body)?;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
            rest = tail;
            Some(head)
        };
        let count = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
        let formats_len = usize::try_from(count(take(2)?)).ok()?;
        let mut formats = Vec::with_capacity(formats_len);
        for _ in 0..formats_len {
            formats.push(count(take(2)?));
        }
        let values_len = usize::try_from(count(take(2)?)).ok()?;
        let mut values = Vec::with_capacity(values_len);
        for _ in 0..values_len {
            let len = take(4)?;
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            values.push(match usize::try_from(len) {
                Ok(n) => Some(take(n)?),
                Err(_) => None, // -1: NULL
            });
        }
        Some(BindParams { formats, values })
    }

    /// Parameter `n` (1-based) as the text of a key of `key_type`, whatever its format.
    pub(super) fn key_text(&self, n: usize, key_type: KeyType) -> Option<String> {
        let value = (*self.values.get(n.checked_sub(1)?)?)?;
        let binary = match self.formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => *many.get(n - 1)? == 1,
        };
        if !binary {
            return std::str::from_utf8(value).ok().map(str::to_string);
        }
        binary_key_text(value, key_type)
    }
}

/// A binary-format parameter as key text: integers by their width, uuids as 16 bytes.
fn binary_key_text(value: &[u8], key_type: KeyType) -> Option<String> {
    match (key_type, value.len()) {
        (KeyType::Text, _) => std::str::from_utf8(value).ok().map(str::to_string),
        (KeyType::Uuid, 16) => {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            Some(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        (_, 2) => Some(i16::from_be_bytes(value.try_into().ok()?).to_string()),
        (_, 4) => Some(i32::from_be_bytes(value.try_into().ok()?).to_string()),
        (_, 8) => Some(i64::from_be_bytes(value.try_into().ok()?).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bind_parameters_in_any_format() {
        // portal "", statement "s", formats [1], values [int4 42, NULL], result formats []
        let mut body = b"\0s\0".to_vec();
        body.extend_from_slice(&[
            0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ]);
        let params = BindParams::read(&body).expect("a valid Bind");
        assert_eq!(params.key_text(1, KeyType::Int8).as_deref(), Some("42"));
        assert_eq!(params.key_text(2, KeyType::Int8), None);
        assert_eq!(params.key_text(3, KeyType::Int8), None);
        let text = BindParams {
            formats: vec![],
            values: vec![Some(b"-7")],
        };
        assert_eq!(text.key_text(1, KeyType::Int4).as_deref(), Some("-7"));
        let uuid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            binary_key_text(&uuid, KeyType::Uuid).as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
        assert!(BindParams::read(b"\0s\0\0\x01").is_none(), "truncated");
    }
}
