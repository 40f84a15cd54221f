//! Configuration: the TOML schema, defaults, and validation.
//! PLACEHOLDER: the types below are the contract the rest of the code uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole effective configuration of one pgsplit process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the PostgreSQL protocol listener binds to.
    pub listen: SocketAddr,
    /// Address of the HTTP admin server, if enabled.
    pub admin: Option<SocketAddr>,
    pub pool: PoolSettings,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// At least one cluster; the first one serves databases no other cluster lists.
    pub clusters: Vec<ClusterConfig>,
    /// Users pgsplit authenticates itself. Empty: pass-through authentication.
    pub users: Vec<UserConfig>,
    /// The file this configuration came from, if any.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub mode: PoolMode,
    /// Server connections per (node, database, user).
    pub max_server_connections: usize,
    /// How long a client may wait for a server connection before SQLSTATE 53300.
    pub checkout_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Opening and authenticating a server connection.
    pub connect: Duration,
    /// A client must finish startup and authentication within this.
    pub client_login: Duration,
    /// Graceful shutdown waits this long for sessions to finish.
    pub shutdown: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frontend message accepted after startup, in bytes.
    pub max_message_size: usize,
    /// Client connections beyond this are refused with SQLSTATE 53300.
    pub max_client_connections: usize,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    /// Databases this cluster serves; empty means any.
    pub databases: Vec<String>,
    pub primary: NodeConfig,
    pub replicas: Vec<NodeConfig>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Trust,
    Password,
    Md5,
    ScramSha256,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Plain text, an `md5...` hash or a `SCRAM-SHA-256$...` verifier.
    pub password: Option<String>,
    pub auth: AuthMethod,
    /// Credentials towards the servers; default: the user's own name and plain password.
    pub server_user: Option<String>,
    pub server_password: Option<String>,
}
