//! What kind of secret a `password` value is. The rules are PostgreSQL's own (see
//! `get_password_type` in `src/backend/libpq/crypt.c`), so a value copied from `pg_authid` means
//! here what it means there.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The form a configured password is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    /// The password itself.
    Plain,
    /// `md5` followed by 32 lowercase hex digits: md5(password || user name).
    Md5,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    ScramSha256,
}

const MD5_PREFIX: &str = "md5";
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
/// SHA-256 output: the size of StoredKey and ServerKey.
const SCRAM_KEY_LEN: usize = 32;

impl PasswordKind {
    /// Classifies a stored password. Like PostgreSQL, anything that is not a well-formed hash is
    /// a plain password.
    pub fn of(secret: &str) -> Self {
        if is_md5_hash(secret) {
            Self::Md5
        } else if is_scram_verifier(secret) {
            Self::ScramSha256
        } else {
            Self::Plain
        }
    }

    /// Words for reports and error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Plain => "a plain password",
            Self::Md5 => "an md5 hash",
            Self::ScramSha256 => "a SCRAM-SHA-256 verifier",
        }
    }
}

/// True for a value that starts like a SCRAM verifier but is not one. PostgreSQL would take it as
/// a plain password; here that is almost certainly a copy-and-paste accident, so validation
/// rejects it instead of letting clients fail to log in with a mysterious password.
pub(crate) fn is_malformed_scram(secret: &str) -> bool {
    secret.starts_with(SCRAM_PREFIX) && !is_scram_verifier(secret)
}

/// The shape validation errors print.
pub(crate) const SCRAM_SHAPE: &str =
    "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>";

fn is_md5_hash(secret: &str) -> bool {
    secret.strip_prefix(MD5_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

fn is_scram_verifier(secret: &str) -> bool {
    let Some(rest) = secret.strip_prefix(SCRAM_PREFIX) else {
        return false;
    };
    let Some((params, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = params.split_once(':') else {
        return false;
    };
    let Some((stored_key, server_key)) = keys.split_once(':') else {
        return false;
    };
    iterations.parse::<u32>().is_ok_and(|n| n > 0)
        && BASE64.decode(salt).is_ok_and(|salt| !salt.is_empty())
        && is_scram_key(stored_key)
        && is_scram_key(server_key)
}

fn is_scram_key(key: &str) -> bool {
    BASE64
        .decode(key)
        .is_ok_and(|bytes| bytes.len() == SCRAM_KEY_LEN)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A verifier for the password "secret" with salt "pgsplit-example!" and 4096 iterations,
    /// computed as PostgreSQL does (RFC 5802 with SHA-256).
    pub(crate) const VERIFIER: &str = "SCRAM-SHA-256$4096:cGdzcGxpdC1leGFtcGxlIQ==$\
        CaG8K8qaABah8PPF3rSs2NTm2+0xeI6RxghRnosqUJo=:\
        qhAH/2xktlZbPg4st4cZG87Sw7sUf/Cfw6JgjSvYGpA=";

    #[test]
    fn classifies_like_postgres() {
        assert_eq!(PasswordKind::of("secret"), PasswordKind::Plain);
        assert_eq!(
            PasswordKind::of("md56a422f785c9e20873908ce25d1736ae2"),
            PasswordKind::Md5
        );
        // Upper-case hex, or the wrong length, is a plain password to PostgreSQL too.
        assert_eq!(
            PasswordKind::of("md56A422F785C9E20873908CE25D1736AE2"),
            PasswordKind::Plain
        );
        assert_eq!(PasswordKind::of("md5isgreat"), PasswordKind::Plain);
        assert_eq!(PasswordKind::of(VERIFIER), PasswordKind::ScramSha256);
    }

    #[test]
    fn spots_broken_verifiers() {
        assert!(!is_malformed_scram(VERIFIER));
        assert!(!is_malformed_scram("secret"));
        assert!(is_malformed_scram(
            "SCRAM-SHA-256$4096:c2FsdA==$short:short"
        ));
        assert!(is_malformed_scram(&VERIFIER.replace("4096", "0")));
        assert!(is_malformed_scram(
            &VERIFIER.replace('$', "#").replacen('#', "$", 1)
        ));
    }
}
