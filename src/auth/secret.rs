//! How a configured user's password is held: as given, as PostgreSQL's md5 hash, or as a
//! SCRAM-SHA-256 verifier, in the same text formats `pg_authid.rolpassword` uses.

use std::fmt;

use super::crypto::{Key, b64_decode, b64_decode_key};
use super::{AuthError, SCRAM_SHA_256, malformed};

/// A user's password as configured. Debug output never shows the secret itself.
#[derive(Clone)]
pub enum StoredSecret {
    /// The password itself.
    Plain(String),
    /// `"md5" + hex(md5(password + username))`, lowercase hex.
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramVerifier),
}

/// What `md5` hashes start with.
const MD5_PREFIX: &str = "md5";
/// Hex digits in an md5 digest.
const MD5_HEX_LEN: usize = 32;

impl StoredSecret {
    /// Recognises the formats PostgreSQL stores: `md5` + 32 hex digits, and
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`; anything else is a plain
    /// password. A string that claims to be a SCRAM verifier but does not parse is an error
    /// rather than a plain password, since nobody means that as a password.
    pub fn parse(password: &str) -> Result<StoredSecret, AuthError> {
        if password.starts_with(SCRAM_PREFIX) {
            return ScramVerifier::parse(password).map(StoredSecret::Scram);
        }
        if is_md5_hash(password) {
            // Clients send lowercase hex; PostgreSQL's own hashes are lowercase already.
            return Ok(StoredSecret::Md5(password.to_ascii_lowercase()));
        }
        Ok(StoredSecret::Plain(password.to_owned()))
    }

    /// The verifier to run SCRAM against, if this secret can serve one: an md5 hash cannot.
    /// For a plain password this derives one (4096 PBKDF2 rounds), so callers that do this per
    /// connection may want to convert once at configuration time instead.
    pub fn scram_verifier(&self) -> Option<ScramVerifier> {
        match self {
            StoredSecret::Plain(password) => Some(ScramVerifier::from_password(password)),
            StoredSecret::Md5(_) => None,
            StoredSecret::Scram(verifier) => Some(verifier.clone()),
        }
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredSecret::Plain(_) => f.write_str("Plain(<redacted>)"),
            StoredSecret::Md5(_) => f.write_str("Md5(<redacted>)"),
            StoredSecret::Scram(verifier) => f.debug_tuple("Scram").field(verifier).finish(),
        }
    }
}

fn is_md5_hash(password: &str) -> bool {
    password
        .strip_prefix(MD5_PREFIX)
        .is_some_and(|hex| hex.len() == MD5_HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What SCRAM verifiers start with: the mechanism name and a `$`.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// A SCRAM-SHA-256 verifier (RFC 5802 section 3): what the server keeps instead of the password.
/// StoredKey lets it check a client's proof; ServerKey lets it prove itself to the client.
#[derive(Clone)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Key,
    server_key: Key,
}

impl ScramVerifier {
    /// Derives a verifier with a random salt, the way PostgreSQL and libpq do (SASLprep, 4096
    /// iterations, 16 bytes of salt), by using postgres_protocol's own implementation.
    pub fn from_password(password: &str) -> ScramVerifier {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        ScramVerifier::parse(&text).expect("postgres_protocol writes PostgreSQL's verifier format")
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
    /// Errors never quote the text, since it is a secret.
    pub fn parse(text: &str) -> Result<ScramVerifier, AuthError> {
        let invalid = || malformed(format!("invalid {SCRAM_SHA_256} secret"));
        let rest = text.strip_prefix(SCRAM_PREFIX).ok_or_else(invalid)?;
        let (params, keys) = rest.split_once('$').ok_or_else(invalid)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(invalid)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or_else(invalid)?;

        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(invalid)?;
        let salt = b64_decode("SCRAM secret salt", salt.as_bytes())?;
        if salt.is_empty() {
            return Err(invalid());
        }
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: b64_decode_key("SCRAM secret StoredKey", stored_key.as_bytes())?,
            server_key: b64_decode_key("SCRAM secret ServerKey", server_key.as_bytes())?,
        })
    }

    /// PBKDF2 iteration count the client must use.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The salt the client must use (sent to it in the clear).
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub(super) fn stored_key(&self) -> &Key {
        &self.stored_key
    }

    pub(super) fn server_key(&self) -> &Key {
        &self.server_key
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::crypto::b64_encode;

    /// A verifier in PostgreSQL's exact text format, as `ALTER ROLE ... PASSWORD` would store.
    fn pg_verifier(password: &str) -> String {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }

    #[test]
    fn parses_plain() {
        for text in [
            "secret",
            "",
            "md5",
            "md5abc",
            "SCRAM-SHA-256",
            "scram-sha-256$x",
        ] {
            assert!(
                matches!(StoredSecret::parse(text), Ok(StoredSecret::Plain(p)) if p == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn parses_md5_and_lowercases_it() {
        let hash = postgres_protocol::password::md5(b"secret", "postgres");
        assert!(matches!(StoredSecret::parse(&hash), Ok(StoredSecret::Md5(h)) if h == hash));
        let upper = format!("md5{}", hash[3..].to_ascii_uppercase());
        assert!(matches!(StoredSecret::parse(&upper), Ok(StoredSecret::Md5(h)) if h == hash));
    }

    #[test]
    fn md5_needs_exactly_32_hex_digits() {
        let hash = postgres_protocol::password::md5(b"secret", "postgres");
        for text in [
            format!("{hash}0"),
            hash[..34].to_owned(),
            format!("{}g", &hash[..34]),
        ] {
            assert!(matches!(
                StoredSecret::parse(&text),
                Ok(StoredSecret::Plain(_))
            ));
        }
    }

    #[test]
    fn parses_postgres_scram_verifier() {
        let text = pg_verifier("secret");
        let Ok(StoredSecret::Scram(verifier)) = StoredSecret::parse(&text) else {
            panic!("not parsed as SCRAM");
        };
        assert_eq!(verifier.iterations(), 4096);
        assert_eq!(verifier.salt().len(), 16);
        let expected = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            b64_encode(verifier.salt()),
            b64_encode(verifier.stored_key()),
            b64_encode(verifier.server_key())
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn rejects_broken_scram_verifiers() {
        let key = b64_encode(&[1; 32]);
        let short = b64_encode(&[1; 31]);
        let broken = [
            "SCRAM-SHA-256$".to_owned(),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}"),
            format!("SCRAM-SHA-256$4096c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            format!("SCRAM-SHA-256$4096:!!!${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$"),
        ];
        for text in broken {
            assert!(
                matches!(StoredSecret::parse(&text), Err(AuthError::Malformed(_))),
                "{text}"
            );
        }
        let good = format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}");
        assert!(matches!(
            StoredSecret::parse(&good),
            Ok(StoredSecret::Scram(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let md5 = postgres_protocol::password::md5(b"secret", "postgres");
        let scram = pg_verifier("secret");
        for text in ["hunter2", md5.as_str(), scram.as_str()] {
            let secret = StoredSecret::parse(text).expect("parses");
            let shown = format!("{secret:?}");
            assert!(!shown.contains(text), "{shown}");
            assert!(
                !shown.contains(&text[text.len() - 20.min(text.len())..]),
                "{shown}"
            );
        }
        let StoredSecret::Scram(v) = StoredSecret::parse(&scram).expect("parses") else {
            panic!("not SCRAM");
        };
        let shown = format!("{v:?}");
        for part in [
            b64_encode(v.salt()),
            b64_encode(v.stored_key()),
            b64_encode(v.server_key()),
        ] {
            assert!(!shown.contains(&part), "{shown}");
        }
    }

    #[test]
    fn scram_verifier_from_each_secret() {
        let plain = StoredSecret::parse("secret").expect("parses");
        assert_eq!(plain.scram_verifier().map(|v| v.iterations()), Some(4096));
        let md5 = StoredSecret::parse(&postgres_protocol::password::md5(b"s", "u"));
        assert!(md5.expect("parses").scram_verifier().is_none());
        let scram = StoredSecret::parse(&pg_verifier("secret")).expect("parses");
        assert!(scram.scram_verifier().is_some());
    }
}
