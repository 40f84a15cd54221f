//! Configuration: the TOML schema, defaults, validation, command-line overrides and the report
//! `pgsplit check` prints.
//!
//! `config/pgsplit.toml` documents every key. The decisions worth knowing:
//! - Loading is all or nothing: the text is parsed, deserialized strictly (unknown keys are
//!   errors) and validated before a [`Config`] exists. Every [`ConfigError`] names the file, the
//!   1-based line and the key path.
//! - The first cluster is the default: it serves every database that no other cluster lists, so
//!   it alone may leave `databases` empty. A database listed by two clusters is an error.
//! - Nodes without a name are called "primary", "replica1", "replica2", ... (replicas numbered by
//!   position, from 1). With several clusters these are prefixed with the cluster's name
//!   ("main.primary", "shard2.replica1") so that node names stay unique across the file.
//! - `auth = "trust"` needs no password; one given anyway is still used towards the servers.
//! - A node's `weight` belongs to the node (it applies whenever the node serves balanced reads
//!   as a replica); `primary_read_weight` belongs to the cluster's primary role, whichever node
//!   holds it. Only `load_balancing = "weighted"` reads weights; weight 0 takes a node out of
//!   weighted balancing.
//!
//! The module reads the file and nothing else: no DNS, no connections.

pub mod address;
mod error;
mod locate;
mod overrides;
mod schema;
mod secret;
mod security;
mod topology_report;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;

pub use error::ConfigError;
pub use overrides::Overrides;
pub use secret::PasswordKind;
pub use security::{AccessRule, AuthQuerySettings, ClientTlsMode, ServerTlsMode, TlsSettings};

use locate::Document;
use schema::RawConfig;
use validate::validate;

/// The whole effective configuration of one pgsplit process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the PostgreSQL protocol listener binds to.
    pub listen: SocketAddr,
    /// Address of the HTTP admin server, if enabled.
    pub admin: Option<SocketAddr>,
    /// If set, the admin server's endpoints (but /healthz and /readyz) need
    /// `Authorization: Bearer <token>` (or `?token=` for the dashboard page).
    pub admin_token: Option<Token>,
    /// Threads that run sessions; 0: one per CPU core. Read at start only.
    pub worker_threads: usize,
    pub pool: PoolSettings,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub routing: RoutingSettings,
    pub monitor: MonitorSettings,
    pub health: HealthSettings,
    pub failover: FailoverSettings,
    pub console: ConsoleSettings,
    pub log: LogSettings,
    pub cache: CacheSettings,
    /// Tables sharded by key over clusters (each shard a cluster), if any.
    pub sharding: Option<crate::shard::config::ShardingConfig>,
    /// At least one cluster; the first one serves databases no other cluster lists.
    pub clusters: Vec<ClusterConfig>,
    /// Users pgsplit authenticates itself. Empty: pass-through authentication.
    pub users: Vec<UserConfig>,
    pub tls: TlsSettings,
    /// Which users may reach which databases from where; none: everyone may.
    pub access: Vec<AccessRule>,
    /// Secrets of users not in `users`, read from the primary.
    pub auth_query: Option<AuthQuerySettings>,
    /// The file this configuration came from, if any.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Session,
    #[default]
    Transaction,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    pub mode: PoolMode,
    /// Server connections per (node, database, user).
    pub max_server_connections: usize,
    /// How long a client may wait for a server connection before SQLSTATE 53300.
    #[serde(deserialize_with = "schema::duration")]
    pub checkout_timeout: Duration,
    /// A server connection idle in its pool this long is closed; zero keeps it.
    #[serde(deserialize_with = "schema::duration")]
    pub server_idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Opening and authenticating a server connection.
    #[serde(deserialize_with = "schema::duration")]
    pub connect: Duration,
    /// A client must finish startup and authentication within this.
    #[serde(deserialize_with = "schema::duration")]
    pub client_login: Duration,
    /// Graceful shutdown waits this long for sessions to finish.
    #[serde(deserialize_with = "schema::duration")]
    pub shutdown: Duration,
    /// A client silent this long outside a transaction is disconnected; 0: never.
    #[serde(deserialize_with = "schema::duration")]
    pub client_idle: Duration,
    /// A client silent this long inside a transaction is disconnected (25P03, as PostgreSQL's
    /// idle_in_transaction_session_timeout); 0: never.
    #[serde(deserialize_with = "schema::duration")]
    pub idle_in_transaction: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frontend message accepted after startup, in bytes.
    pub max_message_size: usize,
    /// Client connections beyond this are refused with SQLSTATE 53300.
    pub max_client_connections: usize,
    /// Sessions one user may have at once (53300 beyond); 0: no limit but the total.
    pub max_connections_per_user: usize,
}

/// A bearer token: compared, never shown (`Debug` prints `<redacted>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How pgsplit watches the replicas' replay positions (for read-your-writes), over
/// connections of its own.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// The role the monitor logs in as on every node.
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    /// How often each replica's replay position is read.
    #[serde(deserialize_with = "schema::duration")]
    pub interval: Duration,
    /// While reads find a replica behind their sessions' writes, its position is read again
    /// as often as this, rather than every `interval` (zero: only every `interval`).
    #[serde(deserialize_with = "schema::duration")]
    pub catch_up_interval: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            user: "postgres".to_string(),
            password: None,
            database: "postgres".to_string(),
            interval: Duration::from_millis(100),
            catch_up_interval: Duration::from_millis(5),
        }
    }
}

impl fmt::Debug for MonitorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorSettings")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("database", &self.database)
            .field("interval", &self.interval)
            .field("catch_up_interval", &self.catch_up_interval)
            .finish()
    }
}

/// Health checks (the monitor's polls) and bans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// A check (connect and query) not answered within this fails, and bans the node at once: a
    /// hung node leaves the rotation within this time.
    #[serde(deserialize_with = "schema::duration")]
    pub timeout: Duration,
    /// Consecutive failed checks (refused or broken connections) that ban a node.
    pub ban_after: u32,
    /// How long a ban lasts before the node may serve again (if its checks pass).
    #[serde(deserialize_with = "schema::duration")]
    pub ban_time: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            ban_after: 2,
            ban_time: Duration::from_secs(5),
        }
    }
}

/// pgsplit promoting a replica itself when the primary stays down.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSettings {
    /// A shell command that promotes one replica, run with `sh -c` and the environment
    /// `PGSPLIT_CLUSTER`, `PGSPLIT_NODE`, `PGSPLIT_HOST`, `PGSPLIT_PORT` naming it. None: pgsplit
    /// never promotes (an operator or Patroni does, and pgsplit follows).
    pub promote_command: Option<String>,
    /// How long the primary must be down (banned) before the command runs.
    #[serde(deserialize_with = "schema::duration")]
    pub after: Duration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            promote_command: None,
            after: Duration::from_secs(10),
        }
    }
}

/// What pgsplit logs beyond its events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Statements (units of work) taking longer than this are logged with their text, node and
    /// time; "0s" logs none.
    #[serde(deserialize_with = "schema::duration")]
    pub slow_query: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            slow_query: Duration::ZERO,
        }
    }
}

/// The admin console: the virtual database `pgsplit`, answered by pgsplit itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Users who may open the console, once authenticated as for any other database.
    pub users: Vec<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            users: vec!["postgres".to_string()],
        }
    }
}

/// The result cache (off unless `max_bytes` is above 0).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Memory for cached results; 0 turns the cache off.
    pub max_bytes: u64,
    /// The TTL of a table rule without one, and of a `cache` hint without `ttl=`.
    #[serde(deserialize_with = "schema::duration")]
    pub default_ttl: Duration,
    /// Tables whose reads are cached without a hint.
    pub tables: Vec<CacheTable>,
    /// Which writes drop cached results: those committed through pgsplit, or every write the
    /// primary's WAL shows.
    pub invalidation: Invalidation,
    /// How often the WAL is read for changes, with `invalidation = "wal"`.
    #[serde(deserialize_with = "schema::duration")]
    pub wal_poll_interval: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_bytes: 0,
            default_ttl: Duration::from_secs(30),
            tables: Vec::new(),
            invalidation: Invalidation::Commit,
            wal_poll_interval: Duration::from_millis(100),
        }
    }
}

/// What invalidates cached results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invalidation {
    /// Writes committed through pgsplit (any instance); other writes wait for the TTL.
    #[default]
    Commit,
    /// Also every change the primary's WAL shows, through a logical replication slot.
    Wal,
}

/// One table whose reads may be cached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheTable {
    pub name: String,
    #[serde(default, deserialize_with = "schema::optional_duration")]
    pub ttl: Option<Duration>,
}

/// How statements are classified, beyond what the SQL text itself says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// User functions a read may call and still go to a replica: `name` or `schema.name`, in
    /// lower case (PostgreSQL folds unquoted names so; the file may use any case).
    pub read_only_functions: Vec<String>,
    /// Memory for cached classifications of statement texts, in bytes; 0 caches nothing.
    pub classify_cache_bytes: u64,
}

/// How a cluster spreads balanced reads over its candidates (the eligible replicas, and the
/// primary when `primary_read_weight` is above 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each candidate in turn.
    RoundRobin,
    /// In proportion to the candidates' weights, interleaved (smooth weighted round robin).
    Weighted,
    /// The candidate with the fewest statements in flight.
    LeastConnections,
    /// Uniformly at random.
    Random,
    /// The candidate answering fastest lately.
    LeastResponseTime,
    /// Always the same candidate for the same client address.
    ClientHash,
    /// A session keeps reading from its replica while that replica qualifies (fresh enough,
    /// healthy); a session's first read, or one whose replica stopped qualifying, takes the
    /// candidate with the fewest statements in flight. Spreads sessions rather than
    /// statements, which keeps each server's caches warm (pgpool-II's way). The default: the
    /// benchmarks measured it ahead of round robin in every workload.
    #[default]
    Sticky,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    /// Databases this cluster serves; empty means any.
    pub databases: Vec<String>,
    pub load_balancing: LoadBalancing,
    /// The primary's weight among read candidates; 0: it takes no balanced reads.
    pub primary_read_weight: u32,
    pub primary: NodeConfig,
    pub replicas: Vec<NodeConfig>,
    pub consistency: ConsistencyConfig,
}

/// How fresh a read must be, for a cluster (sessions and statements may ask otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyConfig {
    /// The default mode of sessions on this cluster.
    pub mode: ConsistencyMode,
    /// A replica further behind than this gets no reads.
    pub max_lag: Duration,
    /// And, if set, one further behind than this many bytes of WAL.
    pub max_lag_bytes: Option<u64>,
    /// What a read does when no replica qualifies.
    pub lag_fallback: LagFallback,
    /// How long `lag_fallback = "wait"` waits for a replica to qualify before the primary.
    pub lag_wait: Duration,
    /// How long a read-your-writes read waits for a replica to replay the session's write
    /// before it goes to the primary; 0 goes to the primary at once.
    pub ryw_wait: Duration,
    /// When a committed write's WAL position (the session's causal token) is learned.
    pub causal_token: CausalTokenTiming,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        Self {
            mode: ConsistencyMode::default(),
            max_lag: Duration::from_secs(1),
            max_lag_bytes: None,
            lag_fallback: LagFallback::default(),
            lag_wait: Duration::from_secs(1),
            ryw_wait: Duration::ZERO,
            causal_token: CausalTokenTiming::default(),
        }
    }
}

/// When a committed write's WAL position, which the session's reads must see, is learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CausalTokenTiming {
    /// Asked behind each commit on its connection (one more statement per commit), and told
    /// the client before the commit's ReadyForQuery.
    #[default]
    AtCommit,
    /// When a read needs it: from the monitor's first look at the primary begun after the
    /// commit, which is at or past it. No statement per commit; the client hears the token
    /// (ParameterStatus) once it is known.
    OnRead,
}

/// The consistency modes a session can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyMode {
    /// Any replica within `max_lag`.
    Eventual,
    /// Also never older than the session's own last write.
    #[default]
    ReadYourWrites,
    /// Also never older than what the session already read.
    Monotonic,
    /// The primary only.
    Strong,
}

impl ConsistencyMode {
    /// The name used in the file (and by `SET pgsplit.consistency`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eventual => "eventual",
            Self::ReadYourWrites => "read_your_writes",
            Self::Monotonic => "monotonic",
            Self::Strong => "strong",
        }
    }
}

/// What a read does when no replica is fresh enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagFallback {
    /// Go to the primary.
    #[default]
    Primary,
    /// Wait up to `lag_wait` for a replica, then the primary.
    Wait,
    /// Fail the read with an error.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Share of balanced reads under `LoadBalancing::Weighted`; 0: never chosen by it.
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum AuthMethod {
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "password")]
    Password,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "scram-sha-256")]
    #[default]
    ScramSha256,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Plain text, an `md5...` hash or a `SCRAM-SHA-256$...` verifier.
    pub password: Option<String>,
    #[serde(default)]
    pub auth: AuthMethod,
    /// Credentials towards the servers; default: the user's own name and plain password.
    pub server_user: Option<String>,
    pub server_password: Option<String>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mode: PoolMode::default(),
            max_server_connections: 100,
            checkout_timeout: Duration::from_secs(5),
            // PgBouncer's default.
            server_idle_timeout: Duration::from_secs(600),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            client_login: Duration::from_secs(60),
            shutdown: Duration::from_secs(30),
            client_idle: Duration::ZERO,
            idle_in_transaction: Duration::ZERO,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 256 * 1024 * 1024,
            max_client_connections: 10_000,
            max_connections_per_user: 0,
        }
    }
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            read_only_functions: Vec::new(),
            classify_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl PoolMode {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LoadBalancing {
    /// Every algorithm, in the order the documentation lists them.
    pub const ALL: [LoadBalancing; 7] = [
        Self::RoundRobin,
        Self::Weighted,
        Self::LeastConnections,
        Self::Random,
        Self::LeastResponseTime,
        Self::ClientHash,
        Self::Sticky,
    ];

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Weighted => "weighted",
            Self::LeastConnections => "least_connections",
            Self::Random => "random",
            Self::LeastResponseTime => "least_response_time",
            Self::ClientHash => "client_hash",
            Self::Sticky => "sticky",
        }
    }
}

impl fmt::Display for LoadBalancing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AuthMethod {
    /// The name used in the file (and in `pg_hba.conf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trust => "trust",
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NodeConfig {
    /// The weight of a node that does not give one.
    pub const DEFAULT_WEIGHT: u32 = 1;

    /// The node's address as `host:port`, with an IPv6 host in brackets.
    pub fn addr(&self) -> String {
        address::join_host_port(&self.host, self.port)
    }
}

impl UserConfig {
    /// The form the password is stored in, if there is one.
    pub fn password_kind(&self) -> Option<PasswordKind> {
        self.password.as_deref().map(PasswordKind::of)
    }
}

/// Secrets are replaced, so a configuration can be logged or printed with `{:?}` safely.
impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("auth", &self.auth)
            .field("server_user", &self.server_user)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| Redacted),
            )
            .finish()
    }
}

pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Config {
    /// Reads and validates a configuration file. Errors name `path` as it was given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text, &path.display().to_string(), Some(path.to_path_buf()))
    }

    /// Parses and validates configuration text; `source` names it in errors (a file name).
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        parse(text, source, None)
    }

    /// The cluster that serves `database`: the one listing it, else the first (default) one.
    ///
    /// # Panics
    /// If there is no cluster, which a loaded or validated configuration never has.
    pub fn cluster_for_database(&self, database: &str) -> &ClusterConfig {
        self.clusters
            .iter()
            .find(|cluster| cluster.databases.iter().any(|db| db == database))
            .unwrap_or_else(|| self.default_cluster())
    }

    /// The first cluster, which serves every database no other cluster lists.
    ///
    /// # Panics
    /// If there is no cluster, which a loaded or validated configuration never has.
    pub fn default_cluster(&self) -> &ClusterConfig {
        &self.clusters[0]
    }

    /// The configured user called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|user| user.name == name)
    }

    /// How pgsplit's own tasks reach `cluster`'s configured primary: as the monitor does (its
    /// user, password and database), named `application` in `pg_stat_activity`.
    pub fn primary_connection(
        &self,
        cluster: &str,
        application: &str,
    ) -> Option<tokio_postgres::Config> {
        let node = &self.clusters.iter().find(|c| c.name == cluster)?.primary;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&node.host)
            .port(node.port)
            .user(&self.monitor.user)
            .dbname(&self.monitor.database)
            .application_name(application)
            .connect_timeout(self.timeouts.connect);
        if let Some(password) = &self.monitor.password {
            pg.password(password);
        }
        Some(pg)
    }
}

/// Syntax, then types and values, then cross-checks: each step reports the first error, placed
/// by the same document.
fn parse(text: &str, origin: &str, path: Option<PathBuf>) -> Result<Config, ConfigError> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let document = Document::new(origin, text, root.get_ref());
    if let Some(error) = syntax_errors.first() {
        return Err(document.toml_error(error, "syntax error: "));
    }
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(root))
        .map_err(|error| document.toml_error(&error, ""))?;
    let config = raw.into_config(path);
    validate(&config).map_err(|problem| document.problem(problem))?;
    Ok(config)
}
