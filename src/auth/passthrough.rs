//! SCRAM pass-through: a client that proved itself to pgsplit with SCRAM against a verifier read
//! from the server (auth_query) gave away its ClientKey (proof XOR ClientSignature), which is
//! all a SCRAM client needs, with the same salt and iterations, to log in to that server as
//! itself. pgsplit never learns the password.

use std::fmt;

use super::crypto::{Key, b64_decode, b64_encode, constant_time_eq, hmac_sha256, xor};
use super::{AuthError, ScramVerifier, malformed};

/// What a client's SCRAM exchange proved: its ClientKey, and the verifier it was checked with.
#[derive(Clone)]
pub struct ScramKeys {
    pub(super) client_key: Key,
    pub(super) verifier: ScramVerifier,
}

impl ScramKeys {
    pub(super) fn new(client_key: Key, verifier: ScramVerifier) -> Self {
        ScramKeys {
            client_key,
            verifier,
        }
    }
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// The client side of one SCRAM-SHA-256 exchange, run with keys instead of a password. Same
/// steps as postgres_protocol's `ScramSha256`: `message`, `update` with server-first, `message`
/// again, `finish` with server-final.
pub(super) struct KeyScram {
    keys: ScramKeys,
    client_first_bare: String,
    message: Vec<u8>,
    /// AuthMessage, once server-first is known: what both signatures sign.
    auth_message: Option<Vec<u8>>,
}

impl KeyScram {
    pub fn new(keys: ScramKeys) -> Self {
        let nonce: [u8; 18] = rand::random();
        let client_first_bare = format!("n=,r={}", b64_encode(&nonce));
        KeyScram {
            keys,
            message: format!("n,,{client_first_bare}").into_bytes(),
            client_first_bare,
            auth_message: None,
        }
    }

    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Takes server-first; the salt and iterations must be the verifier's, or the ClientKey
    /// does not apply.
    pub fn update(&mut self, server_first: &[u8]) -> Result<(), AuthError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| malformed("server-first-message is not UTF-8"))?;
        let mut fields = text.split(',');
        let nonce = field(fields.next(), "r=")?;
        let salt = b64_decode("server salt", field(fields.next(), "s=")?.as_bytes())?;
        let iterations = field(fields.next(), "i=")?;
        let our_nonce = &self.client_first_bare["n=,r=".len()..];
        if !nonce.starts_with(our_nonce) || nonce.len() == our_nonce.len() {
            return Err(malformed("server nonce does not extend ours"));
        }
        if salt != self.keys.verifier.salt()
            || iterations.parse::<u32>().ok() != Some(self.keys.verifier.iterations())
        {
            return Err(AuthError::Unsupported(
                "the server's SCRAM salt differs from the verifier auth_query returned; \
                 pgsplit cannot log in as this user"
                    .into(),
            ));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(self.keys.verifier.stored_key(), auth_message.as_bytes());
        let proof = xor(&self.keys.client_key, &signature);
        self.message = format!("{without_proof},p={}", b64_encode(&proof)).into_bytes();
        self.auth_message = Some(auth_message.into_bytes());
        Ok(())
    }

    /// Takes server-final and checks the server's signature.
    pub fn finish(&mut self, server_final: &[u8]) -> Result<(), AuthError> {
        let auth_message = self
            .auth_message
            .as_deref()
            .ok_or_else(|| malformed("SASLFinal before SASLContinue"))?;
        let text = std::str::from_utf8(server_final)
            .map_err(|_| malformed("server-final-message is not UTF-8"))?;
        let given = b64_decode("server signature", field(Some(text), "v=")?.as_bytes())?;
        let expected = hmac_sha256(self.keys.verifier.server_key(), auth_message);
        if constant_time_eq(&given, &expected) {
            Ok(())
        } else {
            Err(malformed("the server's SCRAM signature is wrong"))
        }
    }
}

fn field<'a>(field: Option<&'a str>, prefix: &str) -> Result<&'a str, AuthError> {
    field
        .and_then(|f| f.strip_prefix(prefix))
        .ok_or_else(|| malformed(format!("SCRAM message lacks {prefix}")))
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;
    use crate::auth::ScramServer;

    /// A client logs in to pgsplit with its password; the keys it proved.
    fn proven_keys(verifier: &ScramVerifier, password: &str) -> ScramKeys {
        let mut server = ScramServer::new(verifier.clone());
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first(client.message()).expect("client-first");
        client.update(&first).expect("server-first");
        let last = server
            .client_final(client.message())
            .expect("right password");
        client.finish(&last).expect("server-final");
        server.proven_keys().expect("keys after success")
    }

    /// pgsplit logs in to a server holding `verifier` with `keys`.
    fn pass_on(keys: ScramKeys, verifier: &ScramVerifier) -> Result<(), AuthError> {
        let mut server = ScramServer::new(verifier.clone());
        let mut client = KeyScram::new(keys);
        let first = server.client_first(client.message())?;
        client.update(&first)?;
        let last = server.client_final(client.message())?;
        client.finish(&last)
    }

    #[test]
    fn the_clients_proof_logs_pgsplit_in_to_the_server() {
        let verifier = ScramVerifier::from_password("s3cret");
        let keys = proven_keys(&verifier, "s3cret");
        pass_on(keys, &verifier).expect("pass-through login");
    }

    #[test]
    fn keys_do_not_fit_a_verifier_with_another_salt() {
        let verifier = ScramVerifier::from_password("s3cret");
        let keys = proven_keys(&verifier, "s3cret");
        let other = ScramVerifier::from_password("s3cret");
        assert!(matches!(
            pass_on(keys, &other),
            Err(AuthError::Unsupported(_))
        ));
    }

    #[test]
    fn a_forged_server_signature_is_refused() {
        let verifier = ScramVerifier::from_password("s3cret");
        let mut client = KeyScram::new(proven_keys(&verifier, "s3cret"));
        let mut server = ScramServer::new(verifier);
        let first = server.client_first(client.message()).expect("first");
        client.update(&first).expect("update");
        server.client_final(client.message()).expect("final");
        assert!(
            client
                .finish(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
                .is_err()
        );
        assert!(client.finish(b"garbage").is_err());
    }

    #[test]
    fn debug_hides_the_keys() {
        let verifier = ScramVerifier::from_password("s3cret");
        let keys = proven_keys(&verifier, "s3cret");
        assert_eq!(format!("{keys:?}"), "ScramKeys(<redacted>)");
    }
}
