//! Text to statements. The text is tokenized once and cut at its top-level semicolons (the
//! tokenizer has already read strings, dollar quotes and comments, so a `;` inside them is not
//! a cut). Each piece is then read as a whole statement, after four PostgreSQL forms that
//! sqlparser 0.63 lacks are taken care of by their full grammar, never by a first keyword alone:
//! - `PREPARE TRANSACTION 'id'`, `COMMIT PREPARED 'id'`, `ROLLBACK PREPARED 'id'` (two-phase
//!   commit) become [`Unit::TwoPhase`];
//! - `MOVE ...` has FETCH's grammar, so it is read as FETCH, and FETCH's optional direction and
//!   FROM are filled in (sqlparser requires them);
//! - `TABLE name ...` is by definition `SELECT * FROM name ...`, so it is read as that;
//! - `FROM ONLY t` is read as `FROM t` (see [`drop_only`]).

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

/// One statement of the text.
#[derive(Debug)]
pub(super) enum Unit {
    Statement(Box<Statement>),
    /// PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED.
    TwoPhase,
}

#[derive(Debug)]
pub(super) struct Failure {
    pub message: String,
    /// How many statements the text seemed to hold (1 when it could not even be tokenized).
    pub statements: usize,
}

static DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

pub(super) fn parse(sql: &str) -> Result<Vec<Unit>, Failure> {
    let tokens = Tokenizer::new(&DIALECT, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| Failure {
            message: e.to_string(),
            statements: 1,
        })?;
    let pieces = split(tokens);
    let count = pieces.len();
    let mut units = Vec::with_capacity(count);
    for piece in pieces {
        parse_piece(piece, &mut units).map_err(|e| Failure {
            message: parser_message(e),
            statements: count,
        })?;
    }
    Ok(units)
}

/// The tokens between top-level semicolons, without pieces that hold only blanks.
fn split(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            push_piece(&mut pieces, std::mem::take(&mut piece));
        } else {
            piece.push(token);
        }
    }
    push_piece(&mut pieces, piece);
    pieces
}

fn push_piece(pieces: &mut Vec<Vec<TokenWithSpan>>, piece: Vec<TokenWithSpan>) {
    if piece.iter().any(|t| !is_blank(&t.token)) {
        pieces.push(piece);
    }
}

fn parse_piece(mut piece: Vec<TokenWithSpan>, units: &mut Vec<Unit>) -> Result<(), ParserError> {
    if is_two_phase(&piece) {
        units.push(Unit::TwoPhase);
        return Ok(());
    }
    rewrite_start(&mut piece);
    drop_only(&mut piece);
    let statements = Parser::new(&DIALECT)
        .with_tokens_with_locations(piece)
        .parse_statements()?;
    units.extend(statements.into_iter().map(|s| Unit::Statement(Box::new(s))));
    Ok(())
}

/// `PREPARE TRANSACTION 'id'`, `COMMIT PREPARED 'id'` or `ROLLBACK PREPARED 'id'`, exactly.
fn is_two_phase(piece: &[TokenWithSpan]) -> bool {
    let mut words = piece.iter().map(|t| &t.token).filter(|t| !is_blank(t));
    let (Some(first), Some(second), Some(id), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    let pair = (is_word(first, "prepare") && is_word(second, "transaction"))
        || ((is_word(first, "commit") || is_word(first, "rollback"))
            && is_word(second, "prepared"));
    pair && is_string_literal(id)
}

/// MOVE -> FETCH, `FETCH c` -> `FETCH NEXT FROM c`, `TABLE name` -> `SELECT * FROM name`, at
/// the start of a statement.
fn rewrite_start(piece: &mut Vec<TokenWithSpan>) {
    let Some(start) = next_significant(piece, 0) else {
        return;
    };
    let span = piece[start].span;
    if is_word(&piece[start].token, "move") {
        piece[start] = with_span(Token::make_keyword("FETCH"), span);
    }
    if is_word(&piece[start].token, "fetch") {
        complete_fetch(piece, start);
    } else if is_word(&piece[start].token, "table") {
        let select = [
            Token::make_keyword("SELECT"),
            Token::Mul,
            Token::make_keyword("FROM"),
        ];
        piece.splice(start..=start, select.map(|t| with_span(t, span)));
    }
}

/// PostgreSQL's FETCH may leave out its direction and its FROM (`FETCH c`, `FETCH 5 c`,
/// `FETCH FROM c`); sqlparser wants both, so they are added: FROM before the cursor name (the
/// last word), then NEXT, the default direction, when FROM directly follows FETCH.
fn complete_fetch(piece: &mut Vec<TokenWithSpan>, fetch: usize) {
    let significant: Vec<usize> = (fetch + 1..piece.len())
        .filter(|&i| !is_blank(&piece[i].token))
        .collect();
    let Some(&cursor) = significant.last() else {
        return;
    };
    let before_cursor = significant.iter().rev().nth(1).map_or(fetch, |&i| i);
    let span = piece[cursor].span;
    if !is_from_or_in(&piece[before_cursor].token) {
        piece.insert(cursor, with_span(Token::make_keyword("FROM"), span));
    }
    if let Some(first) = next_significant(piece, fetch + 1)
        && is_from_or_in(&piece[first].token)
    {
        piece.insert(first, with_span(Token::make_keyword("NEXT"), span));
    }
}

/// `FROM ONLY t` (t without its inheritance children) reads or writes t all the same, but
/// sqlparser misreads it as a table named ONLY. ONLY is reserved in PostgreSQL, so right after
/// FROM, JOIN, UPDATE or a comma it can only be this modifier, and is dropped there.
fn drop_only(piece: &mut Vec<TokenWithSpan>) {
    let mut after_from = false;
    piece.retain(|t| {
        if is_blank(&t.token) {
            return true;
        }
        let drop = after_from && is_word(&t.token, "only");
        after_from = ["from", "join", "update"]
            .iter()
            .any(|w| is_word(&t.token, w))
            || t.token == Token::Comma;
        !drop
    });
}

fn next_significant(piece: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..piece.len()).find(|&i| !is_blank(&piece[i].token))
}

fn is_from_or_in(token: &Token) -> bool {
    is_word(token, "from") || is_word(token, "in")
}

fn with_span(token: Token, span: Span) -> TokenWithSpan {
    TokenWithSpan { token, span }
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// An unquoted word, compared without regard to case.
fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_string_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::UnicodeStringLiteral(_)
    )
}

/// The parser's message without its generic "sql parser error: " prefix.
fn parser_message(error: ParserError) -> String {
    match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "nesting too deep".to_owned(),
    }
}
