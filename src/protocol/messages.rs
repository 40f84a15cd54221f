//! Decoders for the parts of frontend messages the session needs: statement text, and the
//! statement and portal names that tie Parse, Bind, Describe, Execute and Close together.
//! Each returns None for a malformed body; the server then reports the error itself.

use super::read_cstr;

/// Query ('Q'): the SQL text.
pub fn query_text(body: &[u8]) -> Option<&str> {
    read_cstr(body).map(|(text, _)| text)
}

/// Parse ('P'): the statement name and its SQL text.
pub fn parse_message(body: &[u8]) -> Option<(&str, &str)> {
    let (name, rest) = read_cstr(body)?;
    let (query, _) = read_cstr(rest)?;
    Some((name, query))
}

/// Bind ('B'): the portal name and the statement name.
pub fn bind_names(body: &[u8]) -> Option<(&str, &str)> {
    let (portal, rest) = read_cstr(body)?;
    let (statement, _) = read_cstr(rest)?;
    Some((portal, statement))
}

/// Bind ('B'): everything after the names (parameter formats and values, result formats).
pub fn bind_arguments(body: &[u8]) -> Option<&[u8]> {
    let (_, rest) = read_cstr(body)?;
    read_cstr(rest).map(|(_, arguments)| arguments)
}

/// Execute ('E'): the portal name and the row limit (0: all rows).
pub fn execute_message(body: &[u8]) -> Option<(&str, i32)> {
    let (portal, rest) = read_cstr(body)?;
    let limit = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    Some((portal, limit))
}

/// Describe ('D') and Close ('C'): the kind (b'S' statement or b'P' portal) and the name.
pub fn target(body: &[u8]) -> Option<(u8, &str)> {
    let (&kind, rest) = body.split_first()?;
    let (name, _) = read_cstr(rest)?;
    Some((kind, name))
}

/// Execute ('E'): the portal name.
pub fn execute_portal(body: &[u8]) -> Option<&str> {
    read_cstr(body).map(|(portal, _)| portal)
}

/// The part of a Parse body that defines the statement (everything after its name), so that
/// two Parse messages can be compared regardless of the name they use.
pub fn parse_definition(body: &[u8]) -> &[u8] {
    match body.iter().position(|&b| b == 0) {
        Some(end) => &body[end + 1..],
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_names_and_text() {
        assert_eq!(query_text(b"select 1\0"), Some("select 1"));
        assert_eq!(
            parse_message(b"s1\0select $1\0\0\0"),
            Some(("s1", "select $1"))
        );
        assert_eq!(bind_names(b"p\0s1\0\0\0"), Some(("p", "s1")));
        assert_eq!(target(b"Ss1\0"), Some((b'S', "s1")));
        assert_eq!(execute_portal(b"\0\0\0\0\0"), Some(""));
        assert_eq!(parse_definition(b"s1\0select 1\0\0\0"), b"select 1\0\0\0");
        assert_eq!(bind_arguments(b"p\0s1\0\0\x01"), Some(&b"\0\x01"[..]));
        assert_eq!(execute_message(b"p\0\0\0\0\x05"), Some(("p", 5)));
    }

    #[test]
    fn malformed_bodies_give_none() {
        assert_eq!(parse_message(b"s1"), None);
        assert_eq!(bind_names(b"p\0s1"), None);
        assert_eq!(target(b""), None);
        assert_eq!(execute_message(b"p\0\0\0"), None);
    }
}
