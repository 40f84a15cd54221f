//! The rows of a `COPY ... FROM STDIN` data stream, for splitting them over shards: the format
//! options of the statement, a splitter that cuts the client's CopyData chunks into whole rows
//! (a row may span chunks, a CSV row may span lines), and the reading of one field of a row (the
//! sharding key) the way PostgreSQL's COPY reads it. Pure byte handling, no I/O.

use bytes::{Bytes, BytesMut};
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

/// How the rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated (by default), backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated (by default), double quotes, an empty unquoted field for NULL.
    Csv,
    /// PostgreSQL's binary format: not split by pgsplit.
    Binary,
}

/// The format options of a COPY statement, with PostgreSQL's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: Vec<u8>,
    pub quote: u8,
    pub escape: u8,
    pub header: bool,
}

impl CopyOptions {
    /// Reads the options of `COPY ... WITH (...)` and of the older `WITH CSV HEADER` form. The
    /// error is a sentence for the client (an option pgsplit cannot honour when splitting rows).
    pub fn read(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self, String> {
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut quote, mut escape, mut header) =
            (None, None, None, None, false);
        for option in options {
            match option {
                CopyOption::Format(name) => format = format_named(&name.value)?,
                CopyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "DELIMITER")?),
                CopyOption::Null(text) => null = Some(text.as_bytes().to_vec()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(c) => quote = Some(single_byte(*c, "QUOTE")?),
                CopyOption::Escape(c) => escape = Some(single_byte(*c, "ESCAPE")?),
                _ => {}
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "DELIMITER")?),
                CopyLegacyOption::Null(text) => null = Some(text.as_bytes().to_vec()),
                CopyLegacyOption::Csv(csv) => {
                    format = CopyFormat::Csv;
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => {
                                quote = Some(single_byte(*c, "QUOTE")?)
                            }
                            CopyLegacyCsvOption::Escape(c) => {
                                escape = Some(single_byte(*c, "ESCAPE")?)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let csv = format == CopyFormat::Csv;
        let quote = quote.unwrap_or(b'"');
        Ok(CopyOptions {
            format,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { Vec::new() } else { b"\\N".to_vec() }),
            quote,
            escape: escape.unwrap_or(quote),
            header,
        })
    }
}

fn format_named(name: &str) -> Result<CopyFormat, String> {
    match name.to_ascii_lowercase().as_str() {
        "text" => Ok(CopyFormat::Text),
        "csv" => Ok(CopyFormat::Csv),
        "binary" => Ok(CopyFormat::Binary),
        other => Err(format!("COPY format \"{other}\" not recognized")),
    }
}

/// PostgreSQL requires these options to be one single-byte character.
fn single_byte(c: char, option: &str) -> Result<u8, String> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| format!("COPY {option} must be a single one-byte character"))
}

/// One whole row of the data, with its terminator, and its line number as PostgreSQL counts
/// them in its errors (from 1, the header included; a CSV row with quoted newlines is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub bytes: Bytes,
}

/// Where the scan of the row being gathered stands, so that each byte is looked at once however
/// the rows are cut into chunks.
#[derive(Debug, Default)]
struct Scan {
    position: usize,
    /// Text: the previous byte was an unescaped backslash. CSV: inside quotes.
    open: bool,
}

/// Cuts a COPY data stream into rows.
#[derive(Debug)]
pub struct RowSplitter {
    options: CopyOptions,
    pending: BytesMut,
    scan: Scan,
    line: u64,
    header: Option<Bytes>,
    /// The end-of-data marker `\.` was seen: what follows is ignored, as PostgreSQL does.
    ended: bool,
}

impl RowSplitter {
    pub fn new(options: CopyOptions) -> Self {
        RowSplitter {
            options,
            pending: BytesMut::new(),
            scan: Scan::default(),
            line: 0,
            header: None,
            ended: false,
        }
    }

    /// The bytes of the row still being gathered.
    pub fn partial_len(&self) -> usize {
        self.pending.len()
    }

    /// The header line, once it has arrived (CSV with HEADER), terminator included.
    pub fn header(&self) -> Option<&Bytes> {
        self.header.as_ref()
    }

    /// Takes a chunk of data; returns the rows it completed. A partial row waits for more.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Row> {
        if self.ended {
            return Vec::new();
        }
        self.pending.extend_from_slice(data);
        let mut rows = Vec::new();
        while let Some(end) = self.row_end() {
            let bytes = self.pending.split_to(end).freeze();
            self.scan = Scan::default();
            if let Some(row) = self.take_row(bytes) {
                rows.push(row);
            }
            if self.ended {
                self.pending.clear();
                break;
            }
        }
        rows
    }

    /// The data ended (CopyDone): the last row, if it had no line terminator.
    pub fn finish(&mut self) -> Option<Row> {
        if self.ended || self.pending.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.pending).freeze();
        self.take_row(bytes)
    }

    /// Numbers a whole row; keeps the header and notes the end marker rather than return them.
    fn take_row(&mut self, bytes: Bytes) -> Option<Row> {
        self.line += 1;
        if self.options.header && self.line == 1 {
            self.header = Some(bytes);
            return None;
        }
        if trim_line_end(&bytes) == b"\\." {
            self.ended = true;
            return None;
        }
        Some(Row {
            line: self.line,
            bytes,
        })
    }

    /// The length of the first whole row in `pending`, newline included; None while partial.
    fn row_end(&mut self) -> Option<usize> {
        let data = &self.pending[..];
        let csv = self.options.format == CopyFormat::Csv;
        let (quote, escape) = (self.options.quote, self.options.escape);
        let mut i = self.scan.position;
        while i < data.len() {
            let byte = data[i];
            if !csv {
                if self.scan.open {
                    self.scan.open = false;
                } else if byte == b'\\' {
                    self.scan.open = true;
                } else if byte == b'\n' {
                    return Some(i + 1);
                }
            } else if self.scan.open {
                if byte == escape && escape != quote {
                    // An escape only counts before a quote or another escape.
                    let Some(&next) = data.get(i + 1) else {
                        break; // wait for the next byte to know
                    };
                    if next == quote || next == escape {
                        i += 1;
                    }
                } else if byte == quote {
                    self.scan.open = false;
                }
            } else if byte == quote {
                self.scan.open = true;
            } else if byte == b'\n' {
                return Some(i + 1);
            }
            i += 1;
        }
        self.scan.position = i;
        None
    }

    /// The value of field `index` (from 0) of `row`; `Ok(None)` for NULL.
    pub fn field(&self, row: &[u8], index: usize) -> Result<Option<String>, FieldError> {
        let row = trim_line_end(row);
        let value = match self.options.format {
            CopyFormat::Csv => csv_field(row, index, &self.options)?,
            _ => text_field(row, index, &self.options)?,
        };
        value
            .map(|bytes| String::from_utf8(bytes).map_err(|_| FieldError::Encoding))
            .transpose()
    }
}

/// Why a row's field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The row has fewer fields.
    Missing,
    /// The field is not valid UTF-8.
    Encoding,
}

/// A row without its `\n` or `\r\n`.
fn trim_line_end(row: &[u8]) -> &[u8] {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    row.strip_suffix(b"\r").unwrap_or(row)
}

/// Text format: fields split at unescaped delimiters; the NULL string is compared before
/// escapes are read, as PostgreSQL does.
fn text_field(
    row: &[u8],
    index: usize,
    options: &CopyOptions,
) -> Result<Option<Vec<u8>>, FieldError> {
    let mut start = 0;
    let mut field = 0;
    let mut escaped = false;
    for (i, &byte) in row.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if byte == b'\\' {
            escaped = true;
        } else if byte == options.delimiter {
            if field == index {
                return Ok(text_value(&row[start..i], options));
            }
            field += 1;
            start = i + 1;
        }
    }
    if field == index {
        return Ok(text_value(&row[start..], options));
    }
    Err(FieldError::Missing)
}

fn text_value(raw: &[u8], options: &CopyOptions) -> Option<Vec<u8>> {
    (raw != options.null.as_slice()).then(|| unescape_text(raw))
}

/// PostgreSQL's text-format escapes: `\b \f \n \r \t \v`, octal `\123`, hex `\x41`, and a
/// backslash before any other character stands for that character.
fn unescape_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        i += 1;
        if byte != b'\\' || i == raw.len() {
            out.push(byte);
            continue;
        }
        let next = raw[i];
        i += 1;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let digits = digits_at(raw, i - 1, 3, 8);
                out.push(number(&raw[i - 1..i - 1 + digits], 8));
                i += digits - 1;
            }
            b'x' if digits_at(raw, i, 2, 16) > 0 => {
                let digits = digits_at(raw, i, 2, 16);
                out.push(number(&raw[i..i + digits], 16));
                i += digits;
            }
            other => out.push(other),
        }
    }
    out
}

/// How many digits of `radix` (at most `max`) start at `from`.
fn digits_at(raw: &[u8], from: usize, max: usize, radix: u32) -> usize {
    raw.get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|b| char::from(**b).is_digit(radix))
        .count()
}

/// The byte that ASCII digits of `radix` spell (wrapping, as PostgreSQL's `\777` does).
fn number(digits: &[u8], radix: u32) -> u8 {
    digits.iter().fold(0u8, |n, d| {
        let digit = char::from(*d).to_digit(radix).unwrap_or(0) as u8;
        n.wrapping_mul(radix as u8).wrapping_add(digit)
    })
}

/// CSV: fields split at delimiters outside quotes; quotes may open anywhere in a field; an
/// unquoted field equal to the NULL string is NULL, a quoted one never is.
fn csv_field(
    row: &[u8],
    index: usize,
    options: &CopyOptions,
) -> Result<Option<Vec<u8>>, FieldError> {
    let mut field = 0;
    let mut value = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    while i < row.len() {
        let byte = row[i];
        i += 1;
        if in_quotes {
            let escapes = byte == options.escape
                && row
                    .get(i)
                    .is_some_and(|next| *next == options.quote || *next == options.escape);
            if escapes {
                value.push(row[i]);
                i += 1;
            } else if byte == options.quote {
                in_quotes = false;
            } else {
                value.push(byte);
            }
        } else if byte == options.quote {
            in_quotes = true;
            quoted = true;
        } else if byte == options.delimiter {
            if field == index {
                return Ok(csv_value(value, quoted, options));
            }
            field += 1;
            value.clear();
            quoted = false;
        } else {
            value.push(byte);
        }
    }
    if field == index {
        return Ok(csv_value(value, quoted, options));
    }
    Err(FieldError::Missing)
}

fn csv_value(value: Vec<u8>, quoted: bool, options: &CopyOptions) -> Option<Vec<u8>> {
    (quoted || value != options.null).then_some(value)
}

#[cfg(test)]
#[path = "copy_rows_tests.rs"]
mod tests;
