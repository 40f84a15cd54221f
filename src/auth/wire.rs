//! Layouts of the authentication message bodies (after tag and length), both directions.
//!
//! The frontend's PasswordMessage ('p') carries three different bodies depending on what the
//! server asked for: a password string, a SASLInitialResponse, or a bare SASLResponse.

use super::{AuthError, malformed};
use crate::protocol::read_cstr;

/// The length field value that means "no initial response".
const NO_DATA: i32 = -1;

/// Splits SASLInitialResponse into the chosen mechanism and the initial response data, which
/// is empty when the client sent none (length -1).
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
    let (mechanism, rest) =
        read_cstr(body).ok_or_else(|| malformed("SASLInitialResponse: bad mechanism name"))?;
    let (len, data) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("SASLInitialResponse: missing length"))?;
    let expected = match i32::from_be_bytes(*len) {
        NO_DATA => 0,
        len => usize::try_from(len)
            .map_err(|_| malformed(format!("SASLInitialResponse: invalid length {len}")))?,
    };
    if data.len() != expected {
        return Err(malformed(format!(
            "SASLInitialResponse: length says {expected} bytes but {} follow",
            data.len()
        )));
    }
    Ok((mechanism.to_owned(), data.to_vec()))
}

/// The password (or md5 response) in a PasswordMessage: a string with its NUL and nothing after.
/// Bytes, not text: PostgreSQL passwords need not be UTF-8.
pub fn parse_password_message(body: &[u8]) -> Result<&[u8], AuthError> {
    match body.split_last() {
        Some((0, password)) if !password.contains(&0) => Ok(password),
        _ => Err(malformed(
            "password message must be one NUL-terminated string",
        )),
    }
}

/// PasswordMessage body for a cleartext password or an md5 response.
pub(super) fn password_message(password: &[u8]) -> Result<Vec<u8>, AuthError> {
    if password.contains(&0) {
        // It could not be sent intact; truncating it would send a different password.
        return Err(AuthError::Unsupported(
            "a password containing a NUL byte cannot be sent".into(),
        ));
    }
    Ok([password, b"\0"].concat())
}

/// SASLInitialResponse body: mechanism name, then the data prefixed by its i32 length.
pub(super) fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
    let len = i32::try_from(data.len()).map_err(|_| malformed("SASL initial response too long"))?;
    Ok([mechanism.as_bytes(), b"\0", &len.to_be_bytes(), data].concat())
}

/// The mechanism names in an AuthenticationSASL payload: strings ended by an empty one.
pub(super) fn parse_sasl_mechanisms(payload: &[u8]) -> Result<Vec<&str>, AuthError> {
    let mut mechanisms = Vec::new();
    let mut rest = payload;
    loop {
        let (name, tail) =
            read_cstr(rest).ok_or_else(|| malformed("AuthenticationSASL: bad mechanism list"))?;
        if name.is_empty() {
            return if tail.is_empty() {
                Ok(mechanisms)
            } else {
                Err(malformed(
                    "AuthenticationSASL: data after the mechanism list",
                ))
            };
        }
        mechanisms.push(name);
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_round_trips() {
        let body = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc").expect("builds");
        assert_eq!(&body[..14], b"SCRAM-SHA-256\0");
        assert_eq!(&body[14..18], &11i32.to_be_bytes());
        let parsed = parse_sasl_initial_response(&body).expect("parses");
        assert_eq!(
            parsed,
            ("SCRAM-SHA-256".to_owned(), b"n,,n=,r=abc".to_vec())
        );
    }

    #[test]
    fn sasl_initial_response_without_data() {
        let body = [&b"SCRAM-SHA-256\0"[..], &(-1i32).to_be_bytes()].concat();
        let parsed = parse_sasl_initial_response(&body).expect("parses");
        assert_eq!(parsed, ("SCRAM-SHA-256".to_owned(), Vec::new()));
    }

    #[test]
    fn sasl_initial_response_rejects_bad_framing() {
        let good = sasl_initial_response("SCRAM-SHA-256", b"abc").expect("builds");
        let mut cases = vec![
            b"SCRAM-SHA-256".to_vec(),
            b"\xff\0\0\0\0\0".to_vec(),
            [&b"M\0"[..], &(-2i32).to_be_bytes()].concat(),
            [&b"M\0"[..], &(-1i32).to_be_bytes(), b"x"].concat(),
            [good.as_slice(), b"x"].concat(),
        ];
        cases.extend((0..good.len()).map(|n| good[..n].to_vec()));
        for body in cases {
            assert!(parse_sasl_initial_response(&body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn password_message_framing() {
        assert_eq!(password_message(b"secret").expect("builds"), b"secret\0");
        assert!(password_message(b"sec\0ret").is_err());
        assert_eq!(parse_password_message(b"secret\0"), Ok(&b"secret"[..]));
        assert_eq!(parse_password_message(b"\xff\0"), Ok(&b"\xff"[..]));
        for bad in [&b""[..], b"secret", b"sec\0ret\0", b"secret\0\0"] {
            assert!(parse_password_message(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mechanism_list() {
        let list = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        assert_eq!(
            parse_sasl_mechanisms(list),
            Ok(vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        );
        assert_eq!(parse_sasl_mechanisms(b"\0"), Ok(vec![]));
        for bad in [&b""[..], b"SCRAM-SHA-256\0", b"SCRAM-SHA-256", b"\0x"] {
            assert!(parse_sasl_mechanisms(bad).is_err(), "{bad:?}");
        }
    }
}
