use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;

fn options_of(sql: &str) -> Result<CopyOptions, String> {
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .expect("parses")
        .remove(0);
    let Statement::Copy {
        options,
        legacy_options,
        ..
    } = statement
    else {
        panic!("not a COPY: {sql}");
    };
    CopyOptions::read(&options, &legacy_options)
}

fn text() -> CopyOptions {
    options_of("COPY t FROM STDIN").expect("text")
}

fn csv() -> CopyOptions {
    options_of("COPY t FROM STDIN WITH (FORMAT csv)").expect("csv")
}

/// Every row of `data` fed in pieces of `size` bytes, then finished.
fn rows_in_pieces(options: CopyOptions, data: &[u8], size: usize) -> Vec<(u64, Vec<u8>)> {
    let mut splitter = RowSplitter::new(options);
    let mut rows: Vec<Row> = data
        .chunks(size)
        .flat_map(|chunk| splitter.feed(chunk))
        .collect();
    rows.extend(splitter.finish());
    rows.into_iter()
        .map(|row| (row.line, row.bytes.to_vec()))
        .collect()
}

#[test]
fn options_take_postgres_defaults_and_both_syntaxes() {
    let t = text();
    assert_eq!(
        (t.format, t.delimiter, t.null.as_slice()),
        (CopyFormat::Text, b'\t', &b"\\N"[..])
    );
    let c = csv();
    assert_eq!(
        (
            c.format,
            c.delimiter,
            c.null.as_slice(),
            c.quote,
            c.escape,
            c.header
        ),
        (CopyFormat::Csv, b',', &b""[..], b'"', b'"', false)
    );
    let legacy = options_of("COPY t FROM STDIN WITH CSV HEADER QUOTE '''' ").expect("legacy");
    assert_eq!(
        (legacy.format, legacy.header, legacy.quote, legacy.escape),
        (CopyFormat::Csv, true, b'\'', b'\'')
    );
    let custom =
        options_of("COPY t (a, b) FROM STDIN WITH (FORMAT text, DELIMITER '|', NULL 'nil')")
            .expect("custom");
    assert_eq!(
        (custom.delimiter, custom.null.as_slice()),
        (b'|', &b"nil"[..])
    );
    let binary = options_of("COPY t FROM STDIN WITH (FORMAT binary)").expect("binary");
    assert_eq!(binary.format, CopyFormat::Binary);
    assert!(options_of("COPY t FROM STDIN WITH (FORMAT parquet)").is_err());
}

#[test]
fn text_rows_split_at_unescaped_newlines_whatever_the_chunks() {
    let data = b"1\ta\n2\tb\\\nc\n3\tlast";
    for size in 1..=data.len() {
        let rows = rows_in_pieces(text(), data, size);
        assert_eq!(
            rows,
            vec![
                (1, b"1\ta\n".to_vec()),
                (2, b"2\tb\\\nc\n".to_vec()),
                (3, b"3\tlast".to_vec()),
            ],
            "chunks of {size}"
        );
    }
}

#[test]
fn csv_rows_keep_quoted_newlines_and_skip_the_header() {
    let data = b"id,name\n1,\"two\nlines\"\n2,\"say \"\"hi\"\"\"\r\n3,plain\n";
    for size in 1..=data.len() {
        let mut options = csv();
        options.header = true;
        let mut splitter = RowSplitter::new(options);
        let mut rows: Vec<Row> = data.chunks(size).flat_map(|c| splitter.feed(c)).collect();
        rows.extend(splitter.finish());
        assert_eq!(
            splitter.header().map(|h| h.to_vec()),
            Some(b"id,name\n".to_vec())
        );
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 4], "chunks of {size}");
        assert_eq!(rows[0].bytes.as_ref(), b"1,\"two\nlines\"\n");
        assert_eq!(
            splitter.field(&rows[1].bytes, 1),
            Ok(Some("say \"hi\"".to_string()))
        );
        assert_eq!(
            splitter.field(&rows[2].bytes, 1),
            Ok(Some("plain".to_string()))
        );
    }
}

#[test]
fn csv_with_a_backslash_escape_is_split_right_across_chunks() {
    let mut options = options_of("COPY t FROM STDIN WITH (FORMAT csv, ESCAPE '\\')").expect("csv");
    options.header = false;
    let data = b"1,\"a\\\"\nb\"\n2,x\n";
    for size in 1..=data.len() {
        let rows = rows_in_pieces(options.clone(), data, size);
        assert_eq!(rows.len(), 2, "chunks of {size}: {rows:?}");
        let splitter = RowSplitter::new(options.clone());
        assert_eq!(
            splitter.field(&rows[0].1, 1),
            Ok(Some("a\"\nb".to_string()))
        );
    }
}

#[test]
fn the_end_marker_ends_the_data() {
    let rows = rows_in_pieces(text(), b"1\n\\.\n2\n", 3);
    assert_eq!(rows, vec![(1, b"1\n".to_vec())]);
}

#[test]
fn text_fields_read_escapes_nulls_and_delimiters() {
    let splitter = RowSplitter::new(text());
    let row = b"42\t\\N\ta\\tb\\\\c\\101\\x42\\q\n";
    assert_eq!(splitter.field(row, 0), Ok(Some("42".into())));
    assert_eq!(splitter.field(row, 1), Ok(None));
    assert_eq!(splitter.field(row, 2), Ok(Some("a\tb\\cABq".into())));
    assert_eq!(splitter.field(row, 3), Err(FieldError::Missing));
    // An escaped delimiter is data, not a separator.
    assert_eq!(splitter.field(b"a\\\tb\tc", 1), Ok(Some("c".into())));
    let custom = RowSplitter::new(
        options_of("COPY t FROM STDIN WITH (DELIMITER '|', NULL 'nil')").expect("custom"),
    );
    assert_eq!(custom.field(b"7|nil|x\r\n", 0), Ok(Some("7".into())));
    assert_eq!(custom.field(b"7|nil|x\r\n", 1), Ok(None));
    assert_eq!(custom.field(b"7|nil|x\r\n", 2), Ok(Some("x".into())));
}

#[test]
fn csv_fields_tell_null_from_an_empty_quoted_string() {
    let splitter = RowSplitter::new(csv());
    let row = b"1,,\"\",\"a,b\",x\"y\"z\n";
    assert_eq!(splitter.field(row, 0), Ok(Some("1".into())));
    assert_eq!(splitter.field(row, 1), Ok(None));
    assert_eq!(splitter.field(row, 2), Ok(Some(String::new())));
    assert_eq!(splitter.field(row, 3), Ok(Some("a,b".into())));
    assert_eq!(splitter.field(row, 4), Ok(Some("xyz".into())));
    assert_eq!(splitter.field(row, 5), Err(FieldError::Missing));
    assert_eq!(splitter.field(b"\xff,1", 0), Err(FieldError::Encoding));
}
