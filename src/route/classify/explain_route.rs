//! `EXPLAIN ROUTE <statement>`: pgsplit's own command. sqlparser would reject it (and so would
//! PostgreSQL), so it is recognised on the raw text before parsing: the two words, in any case,
//! after any whitespace and comments (a leading `/* pgsplit: ... */` hint is common).

/// The inner statement's text when `sql` is `EXPLAIN ROUTE ...`, trimmed, without a final `;`.
pub fn detect(sql: &str) -> Option<&str> {
    let rest = skip_blanks(sql);
    let rest = skip_blanks(strip_word(rest, "explain")?);
    let inner = strip_word(rest, "route")?;
    Some(inner.trim().trim_end_matches(';').trim_end())
}

/// `text` after the keyword `word` (ASCII, any case), which must end there: `EXPLAIN routes` is
/// not `EXPLAIN ROUTE`.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &text[word.len()..];
    match rest.chars().next() {
        Some(c) if c.is_alphanumeric() || c == '_' || c == '$' => None,
        _ => Some(rest),
    }
}

/// `text` after leading whitespace, `-- line` comments and `/* block */` comments (which nest
/// in PostgreSQL). An unterminated block comment swallows the rest, as it does for the server.
fn skip_blanks(mut text: &str) -> &str {
    loop {
        let trimmed = text.trim_start();
        if let Some(comment) = trimmed.strip_prefix("--") {
            text = comment.find('\n').map_or("", |end| &comment[end + 1..]);
        } else if trimmed.starts_with("/*") {
            text = after_block_comment(trimmed);
        } else {
            return trimmed;
        }
    }
}

/// `text` (which starts with `/*`) after its matching `*/`.
fn after_block_comment(text: &str) -> &str {
    // The comment ends with ASCII `*/`, so the index is a char boundary.
    super::shape::end_of_block_comment(text.as_bytes(), 0).map_or("", |end| &text[end..])
}
