//! The two message bodies a fan-out merge reads and writes: RowDescription ('T') and DataRow
//! ('D'). Shard answers come from servers, so every length is checked before it is used.

use bytes::{BufMut, Bytes, BytesMut};

use super::Refusal;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// A column value: the text bytes, or None for NULL.
pub type Value = Option<Bytes>;

/// Reads a RowDescription body.
pub fn parse_row_description(body: &[u8]) -> Result<Vec<Field>, Refusal> {
    let mut reader = Reader(body);
    let count = reader.i16()?;
    let mut fields = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        fields.push(Field {
            name: reader.cstr()?,
            table_oid: reader.u32()?,
            column: reader.i16()?,
            type_oid: reader.u32()?,
            type_len: reader.i16()?,
            type_modifier: reader.i32()?,
            format: reader.i16()?,
        });
    }
    Ok(fields)
}

pub fn encode_row_description(fields: &[Field]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(fields.len() as i16);
    for field in fields {
        body.put_slice(field.name.as_bytes());
        body.put_u8(0);
        body.put_u32(field.table_oid);
        body.put_i16(field.column);
        body.put_u32(field.type_oid);
        body.put_i16(field.type_len);
        body.put_i32(field.type_modifier);
        body.put_i16(field.format);
    }
    body.freeze()
}

/// Reads a DataRow body of `columns` values (slices of `body`, not copies).
pub fn parse_data_row(body: &Bytes, columns: usize) -> Result<Vec<Value>, Refusal> {
    let mut reader = Reader(body);
    if usize::try_from(reader.i16()?).ok() != Some(columns) {
        return Err(Refusal::malformed(
            "a DataRow has another column count than its RowDescription",
        ));
    }
    let mut values = Vec::with_capacity(columns);
    for _ in 0..columns {
        let len = reader.i32()?;
        let value = match usize::try_from(len) {
            Err(_) if len == -1 => None,
            Err(_) => return Err(Refusal::malformed("a DataRow value has a negative length")),
            Ok(len) => {
                let start = body.len() - reader.0.len();
                reader.take(len)?;
                Some(body.slice(start..start + len))
            }
        };
        values.push(value);
    }
    Ok(values)
}

pub fn encode_data_row(values: &[Value]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(values.len() as i16);
    for value in values {
        match value {
            Some(bytes) => {
                body.put_i32(bytes.len() as i32);
                body.put_slice(bytes);
            }
            None => body.put_i32(-1),
        }
    }
    body.freeze()
}

/// A text-format column named `name` of type `type_oid`, for tests.
#[cfg(test)]
pub fn test_field(name: &str, type_oid: u32, format: i16) -> Field {
    Field {
        name: name.into(),
        table_oid: 0,
        column: 0,
        type_oid,
        type_len: -1,
        type_modifier: -1,
        format,
    }
}

/// A cursor over a message body that refuses to read past its end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Refusal> {
        if self.0.len() < n {
            return Err(Refusal::malformed("a shard's message ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Refusal> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, Refusal> {
        self.array().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, Refusal> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, Refusal> {
        self.array().map(u32::from_be_bytes)
    }

    fn cstr(&mut self) -> Result<String, Refusal> {
        let end = self.0.iter().position(|&b| b == 0);
        let end = end.ok_or_else(|| Refusal::malformed("a column name is not terminated"))?;
        let name = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_description_round_trips() {
        let fields = vec![Field {
            name: "total".into(),
            table_oid: 0,
            column: 0,
            type_oid: 1700,
            type_len: -1,
            type_modifier: -1,
            format: 0,
        }];
        let body = encode_row_description(&fields);
        assert_eq!(parse_row_description(&body).unwrap(), fields);
        assert!(parse_row_description(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn data_row_round_trips_and_checks_lengths() {
        let values = vec![Some(Bytes::from_static(b"42")), None, Some(Bytes::new())];
        let body = encode_data_row(&values);
        assert_eq!(parse_data_row(&body, 3).unwrap(), values);
        assert!(parse_data_row(&body, 2).is_err());
        assert!(parse_data_row(&body.slice(..body.len() - 1), 3).is_err());
        let lying = encode_data_row(&[Some(Bytes::from_static(b"x"))]);
        let mut lying = lying.to_vec();
        lying[5] = 9; // claims 9 bytes, has 1
        assert!(parse_data_row(&Bytes::from(lying), 1).is_err());
    }
}
