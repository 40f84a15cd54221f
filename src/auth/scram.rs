//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL runs it: no channel
//! binding, no authorization identity, and the SCRAM username ignored in favour of the user
//! named in the startup packet.
//!
//! ```text
//! client-first  gs2-header n=<user>,r=<client nonce>[,ext...]
//! server-first  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//! client-final  c=<base64 gs2-header>,r=<nonce>[,ext...],p=<proof>
//! server-final  v=<server signature>
//! ```

use std::mem;

use super::crypto::{
    Key, b64_decode, b64_decode_key, b64_encode, constant_time_eq, hmac_sha256, sha256, xor,
};
use super::passthrough::ScramKeys;
use super::{AuthError, ScramVerifier, malformed};

/// Random bytes in the server's half of the nonce (PostgreSQL's SCRAM_RAW_NONCE_LEN).
const SERVER_NONCE_BYTES: usize = 18;

/// Runs one SCRAM-SHA-256 exchange against a verifier. Each step consumes the client's message
/// and returns the server's reply; any error ends the exchange for good.
pub struct ScramServer {
    verifier: ScramVerifier,
    server_nonce: String,
    state: State,
    /// The ClientKey a successful exchange recovered, for SCRAM pass-through.
    client_key: Option<Key>,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Exchange),
    /// Succeeded, or failed: either way no message is acceptable any more.
    Over,
}

/// What the first round fixed, that the second must match and sign.
struct Exchange {
    gs2_header: Vec<u8>,
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    nonce: Vec<u8>,
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier) -> Self {
        let nonce: [u8; SERVER_NONCE_BYTES] = rand::random();
        ScramServer {
            verifier,
            // Base64 keeps the nonce within SCRAM's printable characters and free of commas.
            server_nonce: b64_encode(&nonce),
            state: State::AwaitingClientFirst,
            client_key: None,
        }
    }

    /// After a successful exchange: what the client proved, to log in to servers with.
    pub fn proven_keys(&self) -> Option<ScramKeys> {
        self.client_key
            .map(|key| ScramKeys::new(key, self.verifier.clone()))
    }

    /// Takes client-first-message, returns server-first-message.
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::AwaitingClientFirst = mem::replace(&mut self.state, State::Over) else {
            return Err(out_of_order("client-first-message"));
        };
        let first = ClientFirst::parse(data)?;
        let nonce = [first.client_nonce, self.server_nonce.as_bytes()].concat();
        let server_first = [
            b"r=",
            nonce.as_slice(),
            b",s=",
            b64_encode(self.verifier.salt()).as_bytes(),
            b",i=",
            self.verifier.iterations().to_string().as_bytes(),
        ]
        .concat();
        self.state = State::AwaitingClientFinal(Exchange {
            gs2_header: first.gs2_header,
            client_first_bare: first.bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        });
        Ok(server_first)
    }

    /// Takes client-final-message, checks the proof, returns server-final-message.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::AwaitingClientFinal(exchange) = mem::replace(&mut self.state, State::Over)
        else {
            return Err(out_of_order("client-final-message"));
        };
        let last = ClientFinal::parse(data)?;
        // The client repeats the gs2 header it began with, so a man in the middle cannot have
        // changed it (RFC 5802 section 6).
        if last.channel_binding != exchange.gs2_header {
            return Err(malformed("SCRAM channel binding check failed"));
        }
        if last.nonce != exchange.nonce {
            return Err(malformed("SCRAM nonce does not match"));
        }
        let auth_message = [
            exchange.client_first_bare.as_slice(),
            b",",
            &exchange.server_first,
            b",",
            last.without_proof,
        ]
        .concat();
        self.client_key = Some(self.check_proof(&auth_message, &last.proof)?);
        let signature = hmac_sha256(self.verifier.server_key(), &auth_message);
        Ok(format!("v={}", b64_encode(&signature)).into_bytes())
    }

    /// The proof is ClientKey XOR HMAC(StoredKey, AuthMessage); recovering ClientKey and hashing
    /// it must give StoredKey, which only someone who knew the password could arrange.
    fn check_proof(&self, auth_message: &[u8], proof: &Key) -> Result<Key, AuthError> {
        let stored_key = self.verifier.stored_key();
        let client_key = xor(proof, &hmac_sha256(stored_key, auth_message));
        if constant_time_eq(&sha256(&client_key), stored_key) {
            Ok(client_key)
        } else {
            Err(AuthError::WrongPassword)
        }
    }
}

fn out_of_order(what: &str) -> AuthError {
    malformed(format!("unexpected SCRAM {what}"))
}

fn split_commas(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b',')
}

/// Splits a `name=value` attribute.
fn attribute(field: &[u8]) -> Result<(u8, &[u8]), AuthError> {
    match field {
        [name, b'=', value @ ..] if name.is_ascii_alphabetic() => Ok((*name, value)),
        _ => Err(malformed("SCRAM attribute expected")),
    }
}

/// The value of attribute `name`, which must be the next field.
fn expect_attribute(field: Option<&[u8]>, name: u8) -> Result<&[u8], AuthError> {
    let missing = || malformed(format!("SCRAM attribute '{}' expected", char::from(name)));
    match attribute(field.ok_or_else(missing)?) {
        Ok((found, value)) if found == name => Ok(value),
        _ => Err(missing()),
    }
}

/// Optional extensions after the mandatory attributes: ignored, as PostgreSQL does, but they
/// must at least be well-formed.
fn skip_extensions<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Result<(), AuthError> {
    fields.map(attribute).try_for_each(|field| field.map(drop))
}

struct ClientFirst<'a> {
    gs2_header: Vec<u8>,
    bare: &'a [u8],
    client_nonce: &'a [u8],
}

impl<'a> ClientFirst<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, AuthError> {
        let mut parts = data.splitn(3, |&b| b == b',');
        let (Some(cbind_flag), Some(authzid), Some(bare)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "SCRAM client-first-message: truncated gs2 header",
            ));
        };
        check_cbind_flag(cbind_flag)?;
        if !authzid.is_empty() {
            return Err(AuthError::Unsupported(
                "client uses an authorization identity, but it is not supported".into(),
            ));
        }

        let mut fields = split_commas(bare);
        let first = fields.next();
        if first.is_some_and(|f| f.starts_with(b"m=")) {
            return Err(AuthError::Unsupported(
                "client requires an unsupported SCRAM extension".into(),
            ));
        }
        // The username: like PostgreSQL, we authenticate the user of the startup packet.
        expect_attribute(first, b'n')?;
        let client_nonce = expect_attribute(fields.next(), b'r')?;
        check_nonce(client_nonce)?;
        skip_extensions(fields)?;

        Ok(ClientFirst {
            gs2_header: [cbind_flag, b",,"].concat(),
            bare,
            client_nonce,
        })
    }
}

/// "n": client does not do channel binding; "y": it does but believes the server does not.
/// Both are fine since we never offer SCRAM-SHA-256-PLUS, so there is no downgrade to detect.
fn check_cbind_flag(flag: &[u8]) -> Result<(), AuthError> {
    match flag {
        b"n" | b"y" => Ok(()),
        [b'p', b'=', ..] => Err(malformed(
            "client selected SCRAM-SHA-256 but requested channel binding; \
             pgsplit does not offer SCRAM-SHA-256-PLUS",
        )),
        _ => Err(malformed(
            "SCRAM client-first-message: invalid channel binding flag",
        )),
    }
}

/// RFC 5802: a nonce is one or more printable ASCII characters other than ','.
fn check_nonce(nonce: &[u8]) -> Result<(), AuthError> {
    if !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        Ok(())
    } else {
        Err(malformed("SCRAM nonce must be printable characters"))
    }
}

struct ClientFinal<'a> {
    channel_binding: Vec<u8>,
    nonce: &'a [u8],
    /// Everything before ",p=", which the AuthMessage includes.
    without_proof: &'a [u8],
    proof: Key,
}

impl<'a> ClientFinal<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, AuthError> {
        // The proof is the last attribute; base64 has no commas, so the last comma precedes it.
        let mut halves = data.rsplitn(2, |&b| b == b',');
        let (Some(proof_field), Some(without_proof)) = (halves.next(), halves.next()) else {
            return Err(malformed("SCRAM client-final-message: truncated"));
        };
        let proof = b64_decode_key("SCRAM proof", expect_attribute(Some(proof_field), b'p')?)?;

        let mut fields = split_commas(without_proof);
        let channel_binding = b64_decode(
            "SCRAM channel binding",
            expect_attribute(fields.next(), b'c')?,
        )?;
        let nonce = expect_attribute(fields.next(), b'r')?;
        skip_extensions(fields)?;

        Ok(ClientFinal {
            channel_binding,
            nonce,
            without_proof,
            proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn server_for(password: &str) -> ScramServer {
        ScramServer::new(ScramVerifier::from_password(password))
    }

    /// Runs postgres_protocol's client against our server up to client-final; returns both
    /// sides and the client-final-message.
    fn exchange(
        server_password: &str,
        client_password: &str,
        binding: ChannelBinding,
    ) -> (ScramServer, ScramSha256, Vec<u8>) {
        let mut server = server_for(server_password);
        let mut client = ScramSha256::new(client_password.as_bytes(), binding);
        let server_first = server.client_first(client.message()).expect("client-first");
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let client_final = client.message().to_vec();
        (server, client, client_final)
    }

    #[test]
    fn round_trip_with_right_password() {
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let (mut server, mut client, client_final) = exchange("secret", "secret", binding);
            let server_final = server.client_final(&client_final).expect("proof accepted");
            client
                .finish(&server_final)
                .expect("client verifies the server");
        }
    }

    #[test]
    fn round_trip_with_postgres_format_verifier() {
        let text = postgres_protocol::password::scram_sha_256(b"p\xc3\xa4ss word");
        let verifier = ScramVerifier::parse(&text).expect("parses");
        let mut server = ScramServer::new(verifier);
        let mut client = ScramSha256::new("päss word".as_bytes(), ChannelBinding::unsupported());
        let server_first = server.client_first(client.message()).expect("client-first");
        client.update(&server_first).expect("server-first");
        let server_final = server.client_final(client.message()).expect("client-final");
        client.finish(&server_final).expect("server-final");
    }

    #[test]
    fn wrong_password() {
        let (mut server, _, client_final) =
            exchange("secret", "Secret", ChannelBinding::unsupported());
        assert_eq!(
            server.client_final(&client_final),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn server_first_carries_nonce_salt_and_iterations() {
        let verifier = ScramVerifier::from_password("secret");
        let salt = b64_encode(verifier.salt());
        let mut server = ScramServer::new(verifier);
        let reply = server.client_first(b"n,,n=,r=abc").expect("client-first");
        let reply = String::from_utf8(reply).expect("ascii");
        let nonce = reply
            .strip_prefix("r=abc")
            .expect("starts with client nonce");
        let (server_nonce, rest) = nonce.split_once(',').expect("more fields");
        assert_eq!(server_nonce.len(), 24);
        assert_eq!(rest, format!("s={salt},i=4096"));
    }

    #[test]
    fn username_and_extensions_are_ignored() {
        let mut server = server_for("secret");
        assert!(server.client_first(b"n,,n=someone,r=abc,x=ext").is_ok());
    }

    #[test]
    fn rejects_bad_client_first() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=",
            b"n,,n=,",
            b"n,,n=,r=",
            b"n,,r=abc",
            b"n,,n=,x=abc",
            b"n,,n=,r=a\x01c",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,=x",
            b"x,,n=,r=abc",
            b"nn,,n=,r=abc",
            b",,n=,r=abc",
            b"p=tls-server-end-point,,n=,r=abc",
            b"n,a=alice,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"\xff\xfe",
        ];
        for data in cases {
            let mut server = server_for("secret");
            let err = server.client_first(data).expect_err(&format!("{data:?}"));
            assert_ne!(err, AuthError::WrongPassword);
        }
    }

    #[test]
    fn channel_binding_request_has_a_clear_error() {
        let mut server = server_for("secret");
        let err = server.client_first(b"p=tls-server-end-point,,n=,r=abc");
        let Err(AuthError::Malformed(message)) = err else {
            panic!("{err:?}");
        };
        assert!(message.contains("SCRAM-SHA-256-PLUS"), "{message}");
    }

    #[test]
    fn authzid_and_extensions_are_unsupported() {
        for data in [&b"n,a=alice,n=,r=abc"[..], b"n,,m=ext,n=,r=abc"] {
            let mut server = server_for("secret");
            assert!(matches!(
                server.client_first(data),
                Err(AuthError::Unsupported(_))
            ));
        }
    }

    /// Replaces `from` by `to` in a client-final message.
    fn edit(message: &[u8], from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(message.to_vec())
            .expect("ascii")
            .replacen(from, to, 1)
            .into_bytes()
    }

    #[test]
    fn rejects_bad_client_final() {
        let (_, _, good) = exchange("secret", "secret", ChannelBinding::unsupported());
        let text = String::from_utf8(good.clone()).expect("ascii");
        let (_, proof) = text.rsplit_once(",p=").expect("proof");
        let (without_proof, _) = text.rsplit_once(",p=").expect("proof");
        let (_, nonce_and_rest) = without_proof.split_once(",r=").expect("nonce");
        let cases = [
            edit(&good, "c=biws", "c=eSws"), // header differs from client-first
            edit(&good, "c=biws", "c=!!!!"), // bad base64
            edit(&good, "c=biws", "x=biws"), // missing c
            edit(&good, ",r=", ",x="),       // missing r
            edit(&good, nonce_and_rest, "wrongnonce"), // wrong nonce
            edit(&good, ",r=", ",r=x"),      // nonce with a prefix
            edit(&good, proof, "!!!!"),      // bad base64 proof
            edit(&good, proof, "AAAA"),      // short proof
            edit(&good, ",p=", ",q="),       // missing p
            [good.as_slice(), b",x=1"].concat(), // garbage after the proof
            [good.as_slice(), b","].concat(),
            without_proof.as_bytes().to_vec(), // no proof at all
            b"p=".to_vec(),
            b"".to_vec(),
        ];
        for data in cases {
            let (mut server, _, _) = exchange("secret", "secret", ChannelBinding::unsupported());
            let err = server.client_final(&data);
            assert!(
                matches!(err, Err(AuthError::Malformed(_))),
                "{:?}: {err:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let verifier = ScramVerifier::from_password("secret");
        let client = ScramSha256::new(b"secret", ChannelBinding::unsupported());
        let client_first = client.message().to_vec();
        for len in 0..client_first.len() {
            let _ = ScramServer::new(verifier.clone()).client_first(&client_first[..len]);
        }
        let (_, _, client_final) = exchange("secret", "secret", ChannelBinding::unsupported());
        for len in 0..client_final.len() {
            let mut server = ScramServer::new(verifier.clone());
            server.client_first(&client_first).expect("client-first");
            assert!(server.client_final(&client_final[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn messages_out_of_order() {
        let mut server = server_for("secret");
        assert!(server.client_final(b"c=biws,r=abc,p=AAAA").is_err());
        // A failed step ends the exchange: no second try on the same server.
        assert!(server.client_first(b"n,,n=,r=abc").is_err());

        let (mut server, _, client_final) =
            exchange("secret", "secret", ChannelBinding::unsupported());
        assert!(server.client_first(b"n,,n=,r=abc").is_err());
        assert!(server.client_final(&client_final).is_err());

        let (mut server, _, client_final) =
            exchange("secret", "secret", ChannelBinding::unsupported());
        assert!(server.client_final(&client_final).is_ok());
        assert!(server.client_final(&client_final).is_err());
    }

    #[test]
    fn server_nonces_differ() {
        assert_ne!(server_for("x").server_nonce, server_for("x").server_nonce);
    }
}
