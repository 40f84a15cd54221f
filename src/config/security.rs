//! The security sections of the file: `[tls]` (towards clients and towards servers),
//! `[[access]]` rules and `[auth_query]`, with their checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::access::{AccessAction, Cidr};

use super::error::{KeyPath, Problem};
use super::{Redacted, schema};

/// TLS towards clients, and towards servers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Whether clients may, or must, encrypt.
    pub mode: ClientTlsMode,
    /// PEM certificate chain presented to clients (read again at every reload).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
    /// Whether pgsplit encrypts its own connections to the servers, and how it checks them.
    pub server_tls: ServerTlsMode,
    /// PEM certificates of the authorities that sign the servers' certificates
    /// (`server_tls = "verify-full"`).
    pub ca_file: Option<PathBuf>,
}

/// TLS towards clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// SSLRequest is declined; clients talk in plain text.
    #[default]
    Disable,
    /// SSLRequest is accepted; plain text too.
    Allow,
    /// Only encrypted clients may log in; plain text is refused with 28000.
    Require,
}

/// TLS towards servers, named as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    #[default]
    Disable,
    /// Encrypt when the server agrees, without checking its certificate.
    Prefer,
    /// Always encrypt, without checking the certificate.
    Require,
    /// Always encrypt; the certificate must chain to `ca_file` and name the host.
    VerifyFull,
}

/// One `[[access]]` rule; the first rule matching a login decides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// User names; empty: any user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Database names; empty: any database.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Client address ranges (CIDR, or one address); empty: any address.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    pub action: AccessAction,
}

/// Passwords of users not listed in `[[users]]`, read from the primary (as PgBouncer's
/// `auth_user` and `auth_query`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthQuerySettings {
    /// The role pgsplit runs the query as.
    pub user: String,
    pub password: Option<String>,
    #[serde(default = "default_auth_database")]
    pub database: String,
    /// Takes the user name as $1; returns the name and the stored password (SCRAM verifier
    /// or md5 hash), or no row.
    #[serde(default = "default_auth_query")]
    pub query: String,
    /// How long an answer (a secret, or "no such user") is reused.
    #[serde(default = "default_auth_cache", deserialize_with = "schema::duration")]
    pub cache_ttl: Duration,
}

fn default_auth_database() -> String {
    "postgres".to_string()
}

fn default_auth_query() -> String {
    "SELECT usename, passwd FROM pg_shadow WHERE usename = $1".to_string()
}

fn default_auth_cache() -> Duration {
    Duration::from_secs(10)
}

impl fmt::Debug for AuthQuerySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthQuerySettings")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("database", &self.database)
            .field("query", &self.query)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

impl ClientTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Require => "require",
        }
    }
}

impl ServerTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Certificate and key go together, a mode that uses them needs them, and verify-full needs
/// the authorities to verify with. (The files themselves are read when the config is applied,
/// so a reload with a broken file is refused with the file's name.)
pub(crate) fn check_tls(tls: &TlsSettings) -> Result<(), Problem> {
    let path = KeyPath::top("tls");
    if tls.mode != ClientTlsMode::Disable {
        for (key, file) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
            if file.is_none() {
                return Err(Problem::new(
                    path.key(key),
                    format!("mode = \"{}\" needs {key}", tls.mode.as_str()),
                ));
            }
        }
    }
    if tls.server_tls == ServerTlsMode::VerifyFull && tls.ca_file.is_none() {
        return Err(Problem::new(
            path.key("ca_file"),
            "server_tls = \"verify-full\" needs ca_file, the PEM certificates of the authorities \
             that sign the servers' certificates",
        ));
    }
    Ok(())
}

/// Empty names never match a login, so they are typos.
pub(crate) fn check_access(rules: &[AccessRule]) -> Result<(), Problem> {
    let path = KeyPath::top("access");
    for (i, rule) in rules.iter().enumerate() {
        for (key, names) in [("users", &rule.users), ("databases", &rule.databases)] {
            if let Some(j) = names.iter().position(String::is_empty) {
                return Err(Problem::new(
                    path.index(i).key(key).index(j),
                    "an empty name matches no login; leave the list out to match any",
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn check_auth_query(settings: Option<&AuthQuerySettings>) -> Result<(), Problem> {
    let Some(settings) = settings else {
        return Ok(());
    };
    let path = KeyPath::top("auth_query");
    if settings.user.is_empty() {
        return Err(Problem::new(
            path.key("user"),
            "a user name cannot be empty",
        ));
    }
    if !settings.query.contains("$1") {
        return Err(Problem::new(
            path.key("query"),
            "the query must take the user name as $1",
        ));
    }
    Ok(())
}
