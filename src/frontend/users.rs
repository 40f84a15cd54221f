//! Configured users, prepared once at start so that a login does no key derivation.

use std::collections::HashMap;

use crate::auth::{ScramVerifier, StoredSecret};
use crate::config::{AuthMethod, UserConfig};

use super::login::ServerCredentials;

/// How a user proves who they are, ready to check.
pub enum UserSecret {
    Trust,
    Cleartext(String),
    Md5(StoredSecret),
    Scram(ScramVerifier),
}

pub struct ClientUser {
    pub name: String,
    pub secret: UserSecret,
    server: ServerCredentials,
}

impl ClientUser {
    pub fn server_credentials(&self) -> ServerCredentials {
        self.server.clone()
    }
}

/// Builds the login table; config validation has already checked that each method has the
/// kind of password it needs, so a mismatch here is reported, not assumed away.
pub fn prepare_users(users: &[UserConfig]) -> Result<HashMap<String, ClientUser>, String> {
    users
        .iter()
        .map(|u| Ok((u.name.clone(), prepare(u)?)))
        .collect()
}

fn prepare(u: &UserConfig) -> Result<ClientUser, String> {
    let stored = u
        .password
        .as_deref()
        .map(StoredSecret::parse)
        .transpose()
        .map_err(|e| format!("user \"{}\": {e}", u.name))?;
    let plain = match &stored {
        Some(StoredSecret::Plain(p)) => Some(p.clone()),
        _ => None,
    };
    let mismatch = || {
        format!(
            "user \"{}\": auth method {:?} cannot use the configured password",
            u.name, u.auth
        )
    };
    let secret = match (u.auth, stored) {
        (AuthMethod::Trust, _) => UserSecret::Trust,
        (AuthMethod::Password, Some(StoredSecret::Plain(p))) => UserSecret::Cleartext(p),
        (AuthMethod::Md5, Some(s @ (StoredSecret::Plain(_) | StoredSecret::Md5(_)))) => {
            UserSecret::Md5(s)
        }
        (AuthMethod::ScramSha256, Some(StoredSecret::Plain(p))) => {
            UserSecret::Scram(ScramVerifier::from_password(&p))
        }
        (AuthMethod::ScramSha256, Some(StoredSecret::Scram(v))) => UserSecret::Scram(v),
        _ => return Err(mismatch()),
    };
    Ok(ClientUser {
        name: u.name.clone(),
        secret,
        server: ServerCredentials {
            user: u.server_user.clone().unwrap_or_else(|| u.name.clone()),
            password: u.server_password.clone().or(plain),
            scram_keys: None,
            md5_hash: None,
        },
    })
}
