//! Server-side checks of md5 and cleartext password messages.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::password;

use super::crypto::constant_time_eq;
use super::{ScramServer, ScramVerifier, StoredSecret};

/// What a client that knows the password answers to AuthenticationMD5Password with `salt`:
/// `"md5" + hex(md5(hex(md5(password + user)) + salt))`. None for a SCRAM secret, from which
/// the md5 hash cannot be derived.
pub fn md5_expected_response(secret: &StoredSecret, user: &str, salt: [u8; 4]) -> Option<String> {
    let user_hash = match secret {
        StoredSecret::Plain(plain) => password::md5(plain.as_bytes(), user),
        StoredSecret::Md5(hash) => hash.clone(),
        StoredSecret::Scram(_) => return None,
    };
    // Both forms now hold "md5" + hex(md5(password + user)); the client salts the hex part.
    let mut salted = user_hash.strip_prefix("md5")?.as_bytes().to_vec();
    salted.extend_from_slice(&salt);
    // password::md5(data, "") is "md5" + hex(md5(data)): the wire format, with no md5 crate here.
    Some(password::md5(&salted, ""))
}

/// Whether `client_response` (the PasswordMessage's string, without its NUL) answers the md5
/// challenge with `salt` correctly. False for a SCRAM secret, as PostgreSQL does.
pub fn md5_verify(
    secret: &StoredSecret,
    user: &str,
    salt: [u8; 4],
    client_response: &[u8],
) -> bool {
    md5_expected_response(secret, user, salt)
        .is_some_and(|expected| constant_time_eq(expected.as_bytes(), client_response))
}

/// Whether a password sent in cleartext (AuthenticationCleartextPassword) matches the secret,
/// whatever form the secret is stored in. An empty password never matches, as in PostgreSQL.
pub fn verify_cleartext(secret: &StoredSecret, user: &str, cleartext: &[u8]) -> bool {
    if cleartext.is_empty() {
        return false;
    }
    match secret {
        StoredSecret::Plain(plain) => constant_time_eq(plain.as_bytes(), cleartext),
        StoredSecret::Md5(hash) => {
            constant_time_eq(password::md5(cleartext, user).as_bytes(), hash.as_bytes())
        }
        StoredSecret::Scram(verifier) => scram_accepts(verifier, cleartext),
    }
}

/// Checks a password against a SCRAM verifier by running a whole exchange in memory, with
/// postgres_protocol as the client. That applies SASLprep and PBKDF2 exactly as a real client
/// would, so the answer matches what SCRAM authentication with the same password would give.
fn scram_accepts(verifier: &ScramVerifier, cleartext: &[u8]) -> bool {
    let mut client = ScramSha256::new(cleartext, ChannelBinding::unsupported());
    let mut server = ScramServer::new(verifier.clone());
    let Ok(server_first) = server.client_first(client.message()) else {
        return false;
    };
    // postgres_protocol's client refuses more than 100,000 iterations; such a secret fails here.
    if client.update(&server_first).is_err() {
        return false;
    }
    server.client_final(client.message()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    const SALT: [u8; 4] = [0x2a, 0x3d, 0x8f, 0xe0];

    fn secrets(password: &str, user: &str) -> [StoredSecret; 2] {
        [
            StoredSecret::parse(password).expect("plain"),
            StoredSecret::parse(&password::md5(password.as_bytes(), user)).expect("md5"),
        ]
    }

    #[test]
    fn known_vector() {
        // md5_hash is libpq's computation, done by postgres_protocol.
        let expected = md5_hash(b"postgres", b"secret", SALT);
        let stored = StoredSecret::parse("md553f48b7c4b76a86ce72276c5755f217d").expect("md5");
        assert!(matches!(stored, StoredSecret::Md5(_)));
        // That hash is md5("secretpostgres"), as `password::md5` confirms.
        assert_eq!(
            password::md5(b"secret", "postgres"),
            "md553f48b7c4b76a86ce72276c5755f217d"
        );
        assert_eq!(
            md5_expected_response(&stored, "postgres", SALT),
            Some(expected)
        );
    }

    #[test]
    fn md5_accepts_right_password_for_plain_and_md5_secrets() {
        let response = md5_hash(b"postgres", b"secret", SALT);
        for secret in secrets("secret", "postgres") {
            assert_eq!(
                md5_expected_response(&secret, "postgres", SALT).as_ref(),
                Some(&response)
            );
            assert!(
                md5_verify(&secret, "postgres", SALT, response.as_bytes()),
                "{secret:?}"
            );
        }
    }

    #[test]
    fn md5_rejects_wrong_password_salt_or_user() {
        for secret in secrets("secret", "postgres") {
            let wrong = [
                md5_hash(b"postgres", b"Secret", SALT),
                md5_hash(b"postgres", b"secret", [0; 4]),
                md5_hash(b"other", b"secret", SALT),
                String::new(),
                "md5".to_owned(),
            ];
            for response in wrong {
                assert!(!md5_verify(&secret, "postgres", SALT, response.as_bytes()));
            }
        }
    }

    #[test]
    fn md5_impossible_with_scram_secret() {
        let secret = StoredSecret::Scram(ScramVerifier::from_password("secret"));
        assert_eq!(md5_expected_response(&secret, "postgres", SALT), None);
        let response = md5_hash(b"postgres", b"secret", SALT);
        assert!(!md5_verify(&secret, "postgres", SALT, response.as_bytes()));
    }

    #[test]
    fn cleartext_against_every_secret_form() {
        let [plain, md5] = secrets("secret", "postgres");
        let scram = StoredSecret::Scram(ScramVerifier::from_password("secret"));
        for secret in [plain, md5, scram] {
            assert!(
                verify_cleartext(&secret, "postgres", b"secret"),
                "{secret:?}"
            );
            assert!(
                !verify_cleartext(&secret, "postgres", b"secret2"),
                "{secret:?}"
            );
            assert!(!verify_cleartext(&secret, "postgres", b""), "{secret:?}");
        }
    }

    #[test]
    fn cleartext_md5_secret_is_bound_to_user() {
        let [_, md5] = secrets("secret", "postgres");
        assert!(!verify_cleartext(&md5, "alice", b"secret"));
    }
}
