//! The whitespace and comments that may come before (and between) SQL tokens, scanned the way
//! PostgreSQL's lexer does: `--` runs to the end of the line, `/* ... */` nests.

/// PostgreSQL's whitespace (`space` in its scan.l).
pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}' | '\u{b}')
}

/// A block comment with no matching `*/`: PostgreSQL rejects the whole statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unterminated;

/// The comments at the start of a text, one at a time (their text without the `/*`, `*/` or
/// `--` markers), skipping whitespace. It stops at the first token, so the cost is bounded by
/// the comments themselves, never by the statement after them; [`LeadingComments::rest`] is
/// what follows.
pub(crate) struct LeadingComments<'a> {
    rest: &'a str,
}

impl<'a> LeadingComments<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        LeadingComments { rest: text }
    }

    /// The text after the comments read so far (and the whitespace after them, once the
    /// iterator is exhausted).
    pub(crate) fn rest(&self) -> &'a str {
        self.rest
    }
}

impl<'a> Iterator for LeadingComments<'a> {
    type Item = Result<&'a str, Unterminated>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rest = self.rest.trim_start_matches(is_space);
        if let Some(body) = self.rest.strip_prefix("--") {
            let end = body.find(['\n', '\r']).unwrap_or(body.len());
            let (text, rest) = body.split_at(end);
            self.rest = rest;
            return Some(Ok(text));
        }
        let body = self.rest.strip_prefix("/*")?;
        match block_comment_end(body) {
            Some(end) => {
                let (text, rest) = body.split_at(end);
                self.rest = rest.get(2..).unwrap_or("");
                Some(Ok(text))
            }
            None => {
                // Nothing after an unterminated comment is SQL: end the iteration here.
                self.rest = "";
                Some(Err(Unterminated))
            }
        }
    }
}

/// Where the `*/` closing a block comment starts, given the text just after its `/*`; nested
/// `/* ... */` pairs inside it are skipped, as PostgreSQL does. One pass, whatever the depth.
fn block_comment_end(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(pair) = bytes.get(at..at + 2) {
        match pair {
            b"/*" => {
                depth += 1;
                at += 2;
            }
            b"*/" if depth == 0 => return Some(at),
            b"*/" => {
                depth -= 1;
                at += 2;
            }
            _ => at += 1,
        }
    }
    None
}

/// The text after any leading whitespace and comments; `None` if a comment is unterminated.
pub(crate) fn skip_trivia(text: &str) -> Option<&str> {
    let mut comments = LeadingComments::new(text);
    for comment in comments.by_ref() {
        comment.ok()?;
    }
    Some(comments.rest())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comments(text: &str) -> (Vec<Result<&str, Unterminated>>, &str) {
        let mut iter = LeadingComments::new(text);
        let found = iter.by_ref().collect();
        (found, iter.rest())
    }

    #[test]
    fn reads_block_and_line_comments_up_to_the_first_token() {
        let (found, rest) = comments(" /* a */\n-- b\r\n\t/*c*/SELECT /* d */ 1");
        assert_eq!(found, vec![Ok(" a "), Ok(" b"), Ok("c")]);
        assert_eq!(rest, "SELECT /* d */ 1");
    }

    #[test]
    fn block_comments_nest() {
        let (found, rest) = comments("/* a /* b */ c */ x");
        assert_eq!(found, vec![Ok(" a /* b */ c ")]);
        assert_eq!(rest, "x");
        assert_eq!(comments("/* a /* b */ x").0, vec![Err(Unterminated)]);
    }

    #[test]
    fn a_line_comment_may_end_the_text() {
        assert_eq!(comments("-- only"), (vec![Ok(" only")], ""));
        assert_eq!(comments("--"), (vec![Ok("")], ""));
    }

    #[test]
    fn the_closing_star_slash_is_not_an_opening() {
        // "/*/" opens a comment whose body starts with "/": it does not close it.
        assert_eq!(comments("/*/ x */y"), (vec![Ok("/ x ")], "y"));
        assert_eq!(comments("/**/y"), (vec![Ok("")], "y"));
    }

    #[test]
    fn skip_trivia_reports_unterminated_comments() {
        assert_eq!(skip_trivia("  /* a */ SET"), Some("SET"));
        assert_eq!(skip_trivia("/* a"), None);
        assert_eq!(skip_trivia(""), Some(""));
    }
}
