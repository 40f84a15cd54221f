//! The statements pgsplit answers itself rather than sending to a server:
//! `SET [SESSION | LOCAL] pgsplit.<name> {= | TO} <value>`, `RESET pgsplit.<name>` and
//! `SHOW pgsplit.<name>`. A small tokenizer of its own, since only this tiny grammar matters
//! and anything outside it is the server's to answer.

use super::lex::skip_trivia;
use super::setting::{Setting, setting_from_name};
use super::value::{quoted, strip_prefix_ignore_case};

/// A `pgsplit.*` statement for the session to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// `value` is the text given (unquoted; unquoted words lower-cased, as PostgreSQL does;
    /// several comma-separated values joined with ", "), for [`super::parse_setting_value`];
    /// `None` for `DEFAULT`. `local` for `SET LOCAL`: until the end of the transaction.
    Set {
        setting: Setting,
        value: Option<String>,
        local: bool,
    },
    Reset {
        setting: Setting,
    },
    Show {
        setting: Setting,
    },
}

/// Recognises a `SET`, `RESET` or `SHOW` of a `pgsplit.*` setting (any case, leading comments,
/// an optional trailing semicolon). `None` for anything else, which goes to the server: other
/// settings, several statements in one string, and text PostgreSQL would reject as a syntax
/// error (so the client gets the server's own error). `Some(Err(sentence))` for a well-formed
/// statement naming an unknown `pgsplit.` setting, which the session answers with SQLSTATE 42704
/// as PostgreSQL does an unrecognized configuration parameter.
pub fn session_command(sql: &str) -> Option<Result<SessionCommand, String>> {
    // Most statements are not ours: decide on the first token before reading the rest, and
    // on its first letter before reading the token (SET, RESET and SHOW begin with s or r).
    let start = skip_trivia(sql)?;
    if !matches!(start.as_bytes().first()?.to_ascii_lowercase(), b's' | b'r') {
        return None;
    }
    let mut tokens = Lexer { rest: start };
    let verb = match tokens.next()? {
        Ok(Token::Word(word)) => Verb::from_word(word)?,
        _ => return None,
    };
    let tokens = tokens.collect::<Result<Vec<_>, _>>().ok()?;
    let statement = Cursor::new(single_statement(&tokens)?).statement(verb)?;
    // Other extensions' settings (`myext.x`) are the server's, like every other setting.
    let ours = strip_prefix_ignore_case(&statement.name, "pgsplit.").is_some();
    ours.then(|| statement.resolve())
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Set,
    Reset,
    Show,
}

impl Verb {
    fn from_word(word: &str) -> Option<Verb> {
        [
            ("set", Verb::Set),
            ("reset", Verb::Reset),
            ("show", Verb::Show),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, verb)| verb)
    }
}

/// A parsed statement whose setting name is not yet known to be one of ours.
struct Statement {
    verb: Verb,
    name: String,
    value: Option<String>,
    local: bool,
}

impl Statement {
    fn resolve(self) -> Result<SessionCommand, String> {
        let setting = setting_from_name(&self.name).ok_or_else(|| {
            format!(
                "unrecognized configuration parameter {}",
                quoted(&self.name)
            )
        })?;
        Ok(match self.verb {
            Verb::Set => SessionCommand::Set {
                setting,
                value: self.value,
                local: self.local,
            },
            Verb::Reset => SessionCommand::Reset { setting },
            Verb::Show => SessionCommand::Show { setting },
        })
    }
}

/// The tokens before the first `;`, if only more `;` follow it: `SET ...; SELECT 1` is two
/// statements, and those go to the server whole.
fn single_statement<'t, 'a>(tokens: &'t [Token<'a>]) -> Option<&'t [Token<'a>]> {
    let semicolon = Token::Symbol(';');
    let end = tokens
        .iter()
        .position(|token| *token == semicolon)
        .unwrap_or(tokens.len());
    let (statement, rest) = tokens.split_at(end);
    rest.iter()
        .all(|token| *token == semicolon)
        .then_some(statement)
}

/// A parser over one statement's tokens (after its verb). Every method returns `None` for a
/// syntax error.
struct Cursor<'t, 'a> {
    tokens: std::slice::Iter<'t, Token<'a>>,
}

impl<'t, 'a> Cursor<'t, 'a> {
    fn new(tokens: &'t [Token<'a>]) -> Self {
        Cursor {
            tokens: tokens.iter(),
        }
    }

    fn statement(mut self, verb: Verb) -> Option<Statement> {
        let local = matches!(verb, Verb::Set) && self.set_scope_is_local();
        let name = self.name()?;
        let value = match verb {
            Verb::Set => self.set_value()?,
            Verb::Reset | Verb::Show => None,
        };
        self.tokens.as_slice().is_empty().then_some(Statement {
            verb,
            name,
            value,
            local,
        })
    }

    fn peek(&self) -> Option<&'t Token<'a>> {
        self.tokens.as_slice().first()
    }

    /// Consumes the next token if `accept` says so.
    fn eat(&mut self, accept: impl FnOnce(&Token<'a>) -> bool) -> bool {
        let matched = self.peek().is_some_and(accept);
        if matched {
            self.tokens.next();
        }
        matched
    }

    fn eat_word(&mut self, keyword: &str) -> bool {
        self.eat(|token| matches!(token, Token::Word(word) if word.eq_ignore_ascii_case(keyword)))
    }

    fn eat_symbol(&mut self, symbol: char) -> bool {
        self.eat(|token| *token == Token::Symbol(symbol))
    }

    /// `SET LOCAL` (true) or `SET SESSION`/`SET` (false).
    fn set_scope_is_local(&mut self) -> bool {
        if self.eat_word("local") {
            return true;
        }
        self.eat_word("session");
        false
    }

    /// A setting name: identifiers joined by dots (`pgsplit.route`, `"pgsplit"."route"`).
    fn name(&mut self) -> Option<String> {
        let mut name = self.identifier()?;
        while self.eat_symbol('.') {
            name.push('.');
            name.push_str(&self.identifier()?);
        }
        Some(name)
    }

    fn identifier(&mut self) -> Option<String> {
        match self.tokens.next()? {
            Token::Word(word) => Some(word.to_ascii_lowercase()),
            Token::QuotedIdentifier(identifier) => Some(identifier.clone()),
            _ => None,
        }
    }

    /// `= value` or `TO value`: `Some(None)` for `DEFAULT`; a list of values is joined with
    /// ", " as PostgreSQL does (the setting's parser then rejects it).
    fn set_value(&mut self) -> Option<Option<String>> {
        if !(self.eat_symbol('=') || self.eat_word("to")) {
            return None;
        }
        if self.eat_word("default") {
            return Some(None);
        }
        let mut values = vec![self.value()?];
        while self.eat_symbol(',') {
            values.push(self.value()?);
        }
        Some(Some(values.join(", ")))
    }

    /// One value: a word, a string, or a number with an optional sign.
    fn value(&mut self) -> Option<String> {
        match self.tokens.next()? {
            // DEFAULT is a reserved word: alone it was handled above, in a list it is an error.
            Token::Word(word) if word.eq_ignore_ascii_case("default") => None,
            Token::Word(word) => Some(word.to_ascii_lowercase()),
            Token::String(text) => Some(text.clone()),
            Token::Number(number) => Some((*number).to_owned()),
            Token::Symbol(sign @ ('-' | '+')) => match self.tokens.next()? {
                Token::Number(number) => Some(format!("{sign}{number}")),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// An unquoted identifier or keyword.
    Word(&'a str),
    /// A `"quoted identifier"`, unescaped.
    QuotedIdentifier(String),
    /// A `'string'`, unescaped.
    String(String),
    /// Digits, possibly with a fraction and letters after them (`500ms`): one value either way.
    Number(&'a str),
    /// Any other character: `=`, `.`, `,`, `;`, ...
    Symbol(char),
}

/// An unterminated comment, string or quoted identifier: the server's error to report.
#[derive(Debug)]
struct Malformed;

/// Splits SQL text into [`Token`]s, skipping whitespace and comments; stops after an error.
struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Result<Token<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let Some(rest) = skip_trivia(self.rest) else {
            self.rest = "";
            return Some(Err(Malformed));
        };
        let first = rest.chars().next()?;
        let scanned = match first {
            '\'' => quoted_token(rest, '\'').map(|(text, len)| (Token::String(text), len)),
            '"' => quoted_token(rest, '"').map(|(text, len)| (Token::QuotedIdentifier(text), len)),
            c if c.is_ascii_digit() || (c == '.' && starts_with_digit(&rest[1..])) => {
                let len = run_length(rest, |c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                Some((Token::Number(&rest[..len]), len))
            }
            c if is_identifier_start(c) => {
                let len = run_length(rest, is_identifier_char);
                Some((Token::Word(&rest[..len]), len))
            }
            c => Some((Token::Symbol(c), c.len_utf8())),
        };
        let Some((token, len)) = scanned else {
            self.rest = "";
            return Some(Err(Malformed));
        };
        self.rest = &rest[len..];
        Some(Ok(token))
    }
}

/// PostgreSQL's identifier characters: ASCII letters, `_`, and any non-ASCII character; then
/// digits and `$` too.
fn is_identifier_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_identifier_char(c: char) -> bool {
    is_identifier_start(c) || c.is_ascii_digit() || c == '$'
}

fn starts_with_digit(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit())
}

/// The length in bytes of the prefix of `text` whose characters all satisfy `accept`.
fn run_length(text: &str, accept: impl Fn(char) -> bool) -> usize {
    text.find(|c: char| !accept(c)).unwrap_or(text.len())
}

/// A token delimited by `quote` at the start of `text`, where a doubled quote stands for
/// itself: its unescaped content and its length in `text`. `None` if it never ends.
fn quoted_token(text: &str, quote: char) -> Option<(String, usize)> {
    let mut rest = text.strip_prefix(quote)?;
    let mut content = String::new();
    loop {
        let end = rest.find(quote)?;
        content.push_str(&rest[..end]);
        rest = &rest[end + quote.len_utf8()..];
        match rest.strip_prefix(quote) {
            Some(after) => {
                content.push(quote);
                rest = after;
            }
            None => return Some((content, text.len() - rest.len())),
        }
    }
}
