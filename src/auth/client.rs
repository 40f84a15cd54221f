//! The client side: pgsplit authenticating to a PostgreSQL server.

use std::{fmt, mem};

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::md5::md5_expected_response;
use super::passthrough::{KeyScram, ScramKeys};
use super::wire::{parse_sasl_mechanisms, password_message, sasl_initial_response};
use super::{AuthError, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, StoredSecret, code, malformed};
use crate::protocol::tag;

/// A message for the I/O code to send: its tag (always 'p') and body.
type Reply = Option<(u8, Vec<u8>)>;

/// Answers a server's AuthenticationRequest messages with the given credentials. Feed it every
/// 'R' message in order; it returns what to send back, if anything.
pub struct ServerAuth {
    user: String,
    password: Option<String>,
    /// What the client's own SCRAM exchange proved, used when the server asks for SCRAM.
    keys: Option<ScramKeys>,
    /// The role's stored md5 hash (`md5` + hex), which answers an md5 challenge as the
    /// password would (md5 pass-through).
    md5_hash: Option<String>,
    state: State,
}

/// A SCRAM exchange from pgsplit's side: with a password, or passing the client's proof on.
enum Scram {
    Password(Box<ScramSha256>),
    Keys(Box<KeyScram>),
}

impl Scram {
    fn message(&self) -> &[u8] {
        match self {
            Scram::Password(s) => s.message(),
            Scram::Keys(s) => s.message(),
        }
    }

    fn update(&mut self, server_first: &[u8]) -> Result<(), AuthError> {
        match self {
            Scram::Password(s) => s
                .update(server_first)
                .map_err(|e| scram_error("SASLContinue", &e)),
            Scram::Keys(s) => s.update(server_first),
        }
    }

    fn finish(&mut self, server_final: &[u8]) -> Result<(), AuthError> {
        match self {
            Scram::Password(s) => s
                .finish(server_final)
                .map_err(|e| scram_error("SASLFinal", &e)),
            Scram::Keys(s) => s.finish(server_final),
        }
    }
}

enum State {
    /// Nothing asked yet.
    Start,
    /// SASLInitialResponse sent; expecting SASLContinue.
    ScramContinue(Scram),
    /// SASLResponse sent; expecting SASLFinal.
    ScramFinal(Scram),
    /// Our part is done; expecting AuthenticationOk.
    AwaitingOk,
    /// AuthenticationOk received.
    Authenticated,
    /// An error happened; nothing more is accepted.
    Failed,
}

impl ServerAuth {
    /// `password` is the plain password; None when the configuration has none (fine as long as
    /// the server does not ask, e.g. trust authentication).
    pub fn new(user: &str, password: Option<&str>) -> Self {
        ServerAuth {
            user: user.to_owned(),
            password: password.map(str::to_owned),
            keys: None,
            md5_hash: None,
            state: State::Start,
        }
    }

    /// Answers SCRAM with what the client proved instead of a password.
    pub fn with_scram_keys(mut self, keys: Option<ScramKeys>) -> Self {
        self.keys = keys;
        self
    }

    /// Answers md5 with the role's stored md5 hash instead of a password.
    pub fn with_md5_hash(mut self, hash: Option<String>) -> Self {
        self.md5_hash = hash;
        self
    }

    /// Whether the server has sent AuthenticationOk at the right point.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Handles one AuthenticationRequest: `code` is its i32, `payload` what follows it. Returns
    /// the message to send back, or None when the server expects no answer (Ok, SASLFinal).
    pub fn respond(&mut self, code: i32, payload: &[u8]) -> Result<Reply, AuthError> {
        let state = mem::replace(&mut self.state, State::Failed);
        let (next, reply) = self.step(state, code, payload)?;
        self.state = next;
        Ok(reply.map(|body| (tag::PASSWORD, body)))
    }

    fn step(
        &self,
        state: State,
        code: i32,
        payload: &[u8],
    ) -> Result<(State, Option<Vec<u8>>), AuthError> {
        match (state, code) {
            // Ok while SCRAM is unfinished would mean the server never proved it knows the
            // password, which is the point of SCRAM's mutual authentication: refuse.
            (State::Start | State::AwaitingOk, code::OK) => Ok((State::Authenticated, None)),
            (State::Start, code::CLEARTEXT_PASSWORD) => {
                let body = password_message(self.password()?.as_bytes())?;
                Ok((State::AwaitingOk, Some(body)))
            }
            (State::Start, code::MD5_PASSWORD) => {
                let body = self.md5_response(payload)?;
                Ok((State::AwaitingOk, Some(body)))
            }
            (State::Start, code::SASL) => {
                let (scram, body) = self.start_scram(payload)?;
                Ok((State::ScramContinue(scram), Some(body)))
            }
            (State::ScramContinue(mut scram), code::SASL_CONTINUE) => {
                scram.update(payload)?;
                let body = scram.message().to_vec();
                Ok((State::ScramFinal(scram), Some(body)))
            }
            (State::ScramFinal(mut scram), code::SASL_FINAL) => {
                scram.finish(payload)?;
                Ok((State::AwaitingOk, None))
            }
            (_, code) if is_unsupported(code) => Err(AuthError::Unsupported(format!(
                "server requested authentication method {} which pgsplit does not support",
                method_name(code)
            ))),
            (_, code) => Err(malformed(format!(
                "unexpected authentication request {} from server",
                method_name(code)
            ))),
        }
    }

    fn password(&self) -> Result<&str, AuthError> {
        self.password.as_deref().ok_or(AuthError::PasswordRequired)
    }

    fn md5_response(&self, payload: &[u8]) -> Result<Vec<u8>, AuthError> {
        let salt = <[u8; 4]>::try_from(payload)
            .map_err(|_| malformed("AuthenticationMD5Password: salt must be 4 bytes"))?;
        let response = match (&self.password, &self.md5_hash) {
            (Some(password), _) => md5_hash(self.user.as_bytes(), password.as_bytes(), salt),
            (None, Some(hash)) => {
                md5_expected_response(&StoredSecret::Md5(hash.clone()), &self.user, salt)
                    .ok_or_else(|| malformed("the stored md5 hash does not start with md5"))?
            }
            (None, None) => return Err(AuthError::PasswordRequired),
        };
        password_message(response.as_bytes())
    }

    /// Picks SCRAM-SHA-256 from the offered mechanisms and builds SASLInitialResponse.
    fn start_scram(&self, payload: &[u8]) -> Result<(Scram, Vec<u8>), AuthError> {
        let mechanisms = parse_sasl_mechanisms(payload)?;
        if !mechanisms.contains(&SCRAM_SHA_256) {
            return Err(AuthError::Unsupported(no_usable_mechanism(&mechanisms)));
        }
        // "n,,": we do no channel binding. (Saying "y" while the server offers -PLUS would make
        // it suspect a downgrade attack and refuse.)
        let scram = match &self.keys {
            Some(keys) => Scram::Keys(Box::new(KeyScram::new(keys.clone()))),
            None => Scram::Password(Box::new(ScramSha256::new(
                self.password()?.as_bytes(),
                ChannelBinding::unsupported(),
            ))),
        };
        let body = sasl_initial_response(SCRAM_SHA_256, scram.message())?;
        Ok((scram, body))
    }
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAuth")
            .field("user", &self.user)
            .field("has_password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

fn no_usable_mechanism(offered: &[&str]) -> String {
    if offered.contains(&SCRAM_SHA_256_PLUS) {
        "server requires SCRAM-SHA-256-PLUS (channel binding), which pgsplit does not support"
            .into()
    } else {
        format!(
            "none of the SASL mechanisms the server offers is supported: {}",
            offered.join(", ")
        )
    }
}

fn scram_error(message: &str, error: &std::io::Error) -> AuthError {
    malformed(format!("SCRAM exchange failed at {message}: {error}"))
}

fn is_unsupported(code: i32) -> bool {
    matches!(
        code,
        code::KERBEROS_V5 | code::SCM_CREDENTIAL | code::GSS | code::GSS_CONTINUE | code::SSPI
    )
}

fn method_name(code: i32) -> String {
    let name = match code {
        code::OK => "Ok",
        code::KERBEROS_V5 => "KerberosV5",
        code::CLEARTEXT_PASSWORD => "CleartextPassword",
        code::MD5_PASSWORD => "MD5Password",
        code::SCM_CREDENTIAL => "SCMCredential",
        code::GSS => "GSS",
        code::GSS_CONTINUE => "GSSContinue",
        code::SSPI => "SSPI",
        code::SASL => "SASL",
        code::SASL_CONTINUE => "SASLContinue",
        code::SASL_FINAL => "SASLFinal",
        other => return format!("code {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{
        ScramServer, ScramVerifier, StoredSecret, md5_verify, parse_password_message,
        parse_sasl_initial_response, verify_cleartext,
    };

    const MECHANISMS: &[u8] = b"SCRAM-SHA-256\0\0";

    fn auth(password: Option<&str>) -> ServerAuth {
        ServerAuth::new("alice", password)
    }

    /// The body of a reply, after checking its tag.
    fn body(reply: Result<Reply, AuthError>) -> Vec<u8> {
        let Ok(Some((tag, body))) = reply else {
            panic!("expected a message, got {reply:?}");
        };
        assert_eq!(tag, b'p');
        body
    }

    /// Drives `client` against our ScramServer holding `server_password`, up to the server's
    /// verdict on the proof; returns it, or the final result of the client if accepted.
    fn scram_against(client: &mut ServerAuth, server_password: &str) -> Result<(), AuthError> {
        let mut server = ScramServer::new(ScramVerifier::from_password(server_password));
        let initial = body(client.respond(code::SASL, MECHANISMS));
        let (mechanism, client_first) = parse_sasl_initial_response(&initial)?;
        assert_eq!(mechanism, SCRAM_SHA_256);
        assert!(client_first.starts_with(b"n,,"));
        let server_first = server.client_first(&client_first)?;
        let client_final = body(client.respond(code::SASL_CONTINUE, &server_first));
        let server_final = server.client_final(&client_final)?;
        assert_eq!(client.respond(code::SASL_FINAL, &server_final), Ok(None));
        assert!(!client.is_authenticated());
        assert_eq!(client.respond(code::OK, b""), Ok(None));
        assert!(client.is_authenticated());
        Ok(())
    }

    #[test]
    fn scram_end_to_end() {
        assert_eq!(scram_against(&mut auth(Some("secret")), "secret"), Ok(()));
    }

    #[test]
    fn scram_wrong_password() {
        let result = scram_against(&mut auth(Some("wrong")), "secret");
        assert_eq!(result, Err(AuthError::WrongPassword));
    }

    #[test]
    fn scram_prefers_plain_over_plus() {
        let mut client = auth(Some("secret"));
        let initial = body(client.respond(code::SASL, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"));
        let (mechanism, _) = parse_sasl_initial_response(&initial).expect("parses");
        assert_eq!(mechanism, SCRAM_SHA_256);
    }

    #[test]
    fn scram_refuses_server_that_skips_its_proof() {
        let mut client = auth(Some("secret"));
        body(client.respond(code::SASL, MECHANISMS));
        assert!(client.respond(code::OK, b"").is_err());
    }

    #[test]
    fn scram_refuses_forged_server_signature() {
        let mut client = auth(Some("secret"));
        let mut server = ScramServer::new(ScramVerifier::from_password("secret"));
        let initial = body(client.respond(code::SASL, MECHANISMS));
        let (_, client_first) = parse_sasl_initial_response(&initial).expect("parses");
        let server_first = server.client_first(&client_first).expect("client-first");
        body(client.respond(code::SASL_CONTINUE, &server_first));
        let forged = b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(matches!(
            client.respond(code::SASL_FINAL, forged),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn scram_rejects_garbage_server_first() {
        for server_first in [&b""[..], b"r=", b"r=x,s=c2FsdA==,i=4096", b"\xff"] {
            let mut client = auth(Some("secret"));
            body(client.respond(code::SASL, MECHANISMS));
            assert!(client.respond(code::SASL_CONTINUE, server_first).is_err());
        }
    }

    #[test]
    fn sasl_without_scram() {
        let mut client = auth(Some("secret"));
        let err = client.respond(code::SASL, b"SCRAM-SHA-256-PLUS\0\0");
        assert!(matches!(err, Err(AuthError::Unsupported(m)) if m.contains("PLUS")));
        let err = auth(Some("secret")).respond(code::SASL, b"OTHER\0\0");
        assert!(matches!(err, Err(AuthError::Unsupported(m)) if m.contains("OTHER")));
        let err = auth(Some("secret")).respond(code::SASL, b"SCRAM-SHA-256\0");
        assert!(matches!(err, Err(AuthError::Malformed(_))));
    }

    #[test]
    fn cleartext() {
        let mut client = auth(Some("secret"));
        let sent = body(client.respond(code::CLEARTEXT_PASSWORD, b""));
        assert_eq!(sent, b"secret\0");
        let password = parse_password_message(&sent).expect("parses");
        let secret = StoredSecret::parse("secret").expect("parses");
        assert!(verify_cleartext(&secret, "alice", password));
        assert_eq!(client.respond(code::OK, b""), Ok(None));
        assert!(client.is_authenticated());
    }

    #[test]
    fn md5() {
        let salt = [1, 2, 3, 4];
        let mut client = auth(Some("secret"));
        let sent = body(client.respond(code::MD5_PASSWORD, &salt));
        let expected = md5_hash(b"alice", b"secret", salt);
        assert_eq!(sent, [expected.as_bytes(), b"\0"].concat());
        let response = parse_password_message(&sent).expect("parses");
        let secret = StoredSecret::parse(&postgres_protocol::password::md5(b"secret", "alice"));
        assert!(md5_verify(
            &secret.expect("parses"),
            "alice",
            salt,
            response
        ));
    }

    #[test]
    fn md5_answered_from_the_stored_hash_equals_the_password_answer() {
        let salt = [9, 8, 7, 6];
        let hash = postgres_protocol::password::md5(b"secret", "alice");
        let mut client = auth(None).with_md5_hash(Some(hash));
        let sent = body(client.respond(code::MD5_PASSWORD, &salt));
        assert_eq!(
            sent,
            [md5_hash(b"alice", b"secret", salt).as_bytes(), b"\0"].concat()
        );
        let cleartext = auth(None)
            .with_md5_hash(Some("md5abc".into()))
            .respond(code::CLEARTEXT_PASSWORD, b"");
        assert_eq!(
            cleartext,
            Err(AuthError::PasswordRequired),
            "a hash is no password"
        );
    }

    #[test]
    fn md5_needs_a_four_byte_salt() {
        for salt in [&b""[..], b"123", b"12345"] {
            let result = auth(Some("secret")).respond(code::MD5_PASSWORD, salt);
            assert!(matches!(result, Err(AuthError::Malformed(_))));
        }
    }

    #[test]
    fn password_required() {
        for (code, payload) in [
            (code::CLEARTEXT_PASSWORD, &b""[..]),
            (code::MD5_PASSWORD, b"salt"),
            (code::SASL, MECHANISMS),
        ] {
            assert_eq!(
                auth(None).respond(code, payload),
                Err(AuthError::PasswordRequired)
            );
        }
    }

    #[test]
    fn trust_needs_no_password() {
        let mut client = auth(None);
        assert_eq!(client.respond(code::OK, b""), Ok(None));
        assert!(client.is_authenticated());
    }

    #[test]
    fn unsupported_methods() {
        for code in [
            code::KERBEROS_V5,
            code::SCM_CREDENTIAL,
            code::GSS,
            code::SSPI,
        ] {
            let err = auth(Some("secret")).respond(code, b"");
            assert!(matches!(err, Err(AuthError::Unsupported(_))), "{code}");
        }
    }

    #[test]
    fn out_of_order_requests() {
        let cases: &[&[(i32, &[u8])]] = &[
            &[(code::SASL_CONTINUE, b"r=x")],
            &[(code::SASL_FINAL, b"v=x")],
            &[(42, b"")],
            &[
                (code::CLEARTEXT_PASSWORD, b""),
                (code::CLEARTEXT_PASSWORD, b""),
            ],
            &[(code::SASL, MECHANISMS), (code::MD5_PASSWORD, b"salt")],
            &[(code::SASL, MECHANISMS), (code::SASL, MECHANISMS)],
            &[(code::OK, b""), (code::OK, b"")],
        ];
        for steps in cases {
            let mut client = auth(Some("secret"));
            let results: Vec<_> = steps.iter().map(|(c, p)| client.respond(*c, p)).collect();
            assert!(
                results.last().is_some_and(Result::is_err),
                "{steps:?}: {results:?}"
            );
        }
    }

    #[test]
    fn debug_hides_password() {
        let shown = format!("{:?}", auth(Some("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
