//! The shape of a statement text: its literals (numbers and quoted strings) replaced by a
//! placeholder (NUL), so that `... WHERE id = 1` and `... WHERE id = 2` share one classification.
//! Applications that inline values (pgbench's simple mode, ORMs without prepared statements)
//! then parse each statement shape once instead of each text.
//!
//! Only the lexical level: quoted identifiers, comments and dollar-quoted bodies stay as they
//! are (a dollar-quoted body is code, such as a DO block, whose meaning its text decides).

/// What replaces every literal: NUL, which no PostgreSQL query text can hold, so a shape never
/// equals a real text.
const PLACEHOLDER: char = '\0';

/// The text with its literals replaced, or None when it has none (its shape is itself) or
/// when it holds something the scan does not follow (an unterminated quote or comment).
///
/// Runs between literals are copied whole. The scan goes byte by byte: every byte it stops
/// at is ASCII, which a UTF-8 continuation byte never is, so every cut is on a char boundary.
pub fn literal_shape(sql: &str) -> Option<String> {
    let mut out = String::new();
    literal_shape_into(sql, &mut out).then_some(out)
}

/// [`literal_shape`] into `out`, which keeps its allocation from one text to the next: true
/// when the text has a shape of its own, which `out` then holds.
pub fn literal_shape_into(sql: &str, out: &mut String) -> bool {
    out.clear();
    out.reserve(sql.len());
    replace_literals(sql, out).unwrap_or(false)
}

/// Appends `sql` with its literals replaced to `out`: whether any was, or None when the scan
/// cannot follow the text.
fn replace_literals(sql: &str, out: &mut String) -> Option<bool> {
    let bytes = sql.as_bytes();
    let mut replaced = false;
    // `sql[..copied]` is in `out` already (with its literals replaced).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let literal_end = match bytes[i] {
            // E'...', B'...', X'...', U&'...' prefixes stay; only the quoted part goes.
            b'\'' => Some(end_of_quoted(bytes, i + 1, b'\'')?),
            b'0'..=b'9' if !continues_word(bytes, i) => Some(end_of_number(bytes, i)),
            b'"' => {
                i = end_of_quoted(bytes, i + 1, b'"')?;
                None
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |n| i + n);
                None
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = end_of_block_comment(bytes, i)?;
                None
            }
            b'$' => {
                i = end_of_dollar(bytes, i)?;
                None
            }
            _ => {
                i = skip_plain(bytes, i + 1);
                None
            }
        };
        if let Some(end) = literal_end {
            out.push_str(&sql[copied..i]);
            out.push(PLACEHOLDER);
            replaced = true;
            copied = end;
            i = end;
        }
    }
    out.push_str(&sql[copied..]);
    Some(replaced)
}

/// The first byte from `i` on that may start something, or the end. Most of a text is words,
/// spaces and operators: eight bytes at a time, they are skipped until a word holds a byte
/// from `"` to `9` (a range that holds every byte [`MAY_START_SOMETHING`] names, and a few
/// more, which the caller then steps over one by one).
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let found = bytes_between(u64::from_le_bytes(word), b'"' - 1, b'9' + 1);
        if found != 0 {
            // Little-endian: the lowest marked byte is the first in the text.
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !MAY_START_SOMETHING[usize::from(bytes[i])] {
        i += 1;
    }
    i
}

/// The high bit of every byte of `word` strictly between `low` and `high` (both below 128;
/// bytes of 128 and up are never marked), all other bits clear: "Determine if a word has a
/// byte between m and n" from Bit Twiddling Hacks, which cannot carry from one byte into
/// the next because it works on the low seven bits of each.
const fn bytes_between(word: u64, low: u8, high: u8) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const LOW_SEVEN: u64 = ONES * 127;
    let seven = word & LOW_SEVEN;
    let below_high = (ONES * (127 + high as u64)).wrapping_sub(seven);
    let above_low = seven + ONES * (127 - low as u64);
    below_high & !word & above_low & (ONES * 128)
}

/// The bytes the scan stops at: quotes, digits, and the starts of comments and dollar quotes.
const MAY_START_SOMETHING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'\'' | b'"' | b'0'..=b'9' | b'-' | b'/' | b'$');
        b += 1;
    }
    table
};

/// Whether the digit at `i` continues an identifier or a parameter (`t1`, `$1`).
fn continues_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && matches!(bytes[i - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'$' | 0x80..)
}

fn end_of_number(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' | b'.' | b'_' => i += 1,
            b'e' | b'E' if matches!(bytes.get(i + 1), Some(b'0'..=b'9' | b'+' | b'-')) => i += 2,
            _ => break,
        }
    }
    i
}

/// Past the closing `quote` (a doubled quote is part of the text); None if unterminated.
fn end_of_quoted(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        // E'...' strings may escape a quote with a backslash; skipping the escaped byte is
        // harmless in standard strings too (a backslash before the closing quote is then the
        // only case it misreads, and that gives None at worst, never a wrong shape).
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    None
}

/// Past the (nested) block comment that starts at `i`; None if unterminated.
pub(super) fn end_of_block_comment(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Past `$n` (a parameter) or a whole `$tag$...$tag$` body; None if the body is unterminated.
fn end_of_dollar(bytes: &[u8], i: usize) -> Option<usize> {
    let tag_end = bytes[i + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
        .map_or(bytes.len(), |n| i + 1 + n);
    let is_parameter = bytes[i + 1..tag_end].iter().all(u8::is_ascii_digit);
    if is_parameter || bytes.get(tag_end) != Some(&b'$') {
        return Some(tag_end.max(i + 1));
    }
    let tag = &bytes[i..=tag_end];
    let body = tag_end + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map(|n| body + n + tag.len())
}

#[cfg(test)]
mod tests {
    /// The shape with `?` for the placeholder, for readable expectations.
    fn literal_shape(sql: &str) -> Option<String> {
        super::literal_shape(sql).map(|s| s.replace('\0', "?"))
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 4211;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = ?;")
        );
        assert_eq!(
            literal_shape("UPDATE t1 SET v = -1.5e3, s = 'it''s' WHERE id IN (1, 2)").as_deref(),
            Some("UPDATE t1 SET v = -?, s = ? WHERE id IN (?, ?)")
        );
        assert_eq!(
            literal_shape("SELECT E'a\\'b', x2 FROM \"T 1\" -- 5\n WHERE a = 3").as_deref(),
            Some("SELECT E?, x2 FROM \"T 1\" -- 5\n WHERE a = ?")
        );
    }

    #[test]
    fn word_scan_finds_the_first_byte_that_may_start_something() {
        // Every byte value at every position of a 19-byte text of plain letters: the scan
        // must stop at it (or before, at a byte of the wider range), never past it.
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut text = *b"abcdefghijklmnopqrs";
                text[at] = b;
                let stop = super::skip_plain(&text, 0);
                let exact = super::MAY_START_SOMETHING[usize::from(b)];
                let in_range = (b'"'..=b'9').contains(&b);
                match (exact, in_range) {
                    (true, _) => assert_eq!(stop, at, "byte {b} at {at}"),
                    (false, true) => assert!(stop == at || stop == text.len(), "byte {b}"),
                    (false, false) => assert_eq!(stop, text.len(), "byte {b} at {at}"),
                }
            }
        }
        // Mixed texts (a fixed pseudo-random sequence): the scan stops at the first byte of
        // the wider range, or at the end when the last few bytes hold none that is exact.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let text: Vec<u8> = (0..40)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let stop = super::skip_plain(&text, 0);
            let first_wide = text.iter().position(|b| (b'"'..=b'9').contains(b));
            let first_exact = text
                .iter()
                .position(|&b| super::MAY_START_SOMETHING[usize::from(b)]);
            assert!(
                Some(stop) == first_wide || stop == first_exact.unwrap_or(text.len()),
                "{text:?}"
            );
        }
        assert_eq!(super::skip_plain(b"", 0), 0);
        assert_eq!(super::skip_plain(b"abc", 3), 3);
    }

    #[test]
    fn texts_without_literals_or_with_code_keep_their_shape() {
        assert_eq!(literal_shape("SELECT a FROM t WHERE b = $1"), None);
        assert_eq!(literal_shape("BEGIN"), None);
        assert_eq!(
            literal_shape("DO $body$ BEGIN PERFORM 1; END $body$").as_deref(),
            None,
            "a dollar-quoted body is code and stays"
        );
        assert_eq!(
            literal_shape("/* pgsplit: max_lag=5s */ SELECT 1").as_deref(),
            Some("/* pgsplit: max_lag=5s */ SELECT ?")
        );
        assert_eq!(literal_shape("SELECT 'unterminated"), None);
        assert_eq!(literal_shape("SELECT 1 /* open"), None);
        assert_eq!(
            literal_shape("SELECT 'é', 'ü' || é2"),
            Some("SELECT ?, ? || é2".into())
        );
    }
}
