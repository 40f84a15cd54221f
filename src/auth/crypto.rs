//! The few primitives SCRAM and md5 need, kept in one place so the protocol code reads like
//! the RFC and nothing else in the module touches hmac/sha2/base64 directly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{AuthError, malformed};

/// A SHA-256 sized value: StoredKey, ServerKey, a proof or a signature.
pub(super) type Key = [u8; 32];

pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> Key {
    // HMAC takes keys of any length (long ones are hashed, short ones padded); the Result only
    // exists because the KeyInit trait is shared with ciphers that do have fixed key sizes.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

pub(super) fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

pub(super) fn xor(a: &Key, b: &Key) -> Key {
    let mut out = *a;
    out.iter_mut().zip(b).for_each(|(o, b)| *o ^= b);
    out
}

/// Compares without an early exit, so the time taken does not tell an attacker how many leading
/// bytes of a guess were right. Lengths are not secret (keys and md5 strings have fixed sizes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into a short-circuiting loop.
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

pub(super) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes base64 found in field `what` of some message.
pub(super) fn b64_decode(what: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
    STANDARD
        .decode(data)
        .map_err(|_| malformed(format!("invalid base64 in {what}")))
}

/// Decodes base64 that must hold exactly one [`Key`].
pub(super) fn b64_decode_key(what: &str, data: &[u8]) -> Result<Key, AuthError> {
    Key::try_from(b64_decode(what, data)?.as_slice())
        .map_err(|_| malformed(format!("{what} must be 32 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn key_decoding_checks_length_and_alphabet() {
        assert_eq!(
            b64_decode_key("k", b64_encode(&[7; 32]).as_bytes()),
            Ok([7; 32])
        );
        assert!(b64_decode_key("k", b64_encode(&[7; 31]).as_bytes()).is_err());
        assert!(b64_decode_key("k", b"!!!!").is_err());
    }
}
