//! The one error type of `localcluster`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting or driving a local cluster.
///
/// Messages are written for a person reading a failed test: they name the command or node, and
/// errors about a node carry the tail of that node's server log (see [`LocalClusterError::Node`]),
/// because the server log is nearly always where the real cause is.
#[derive(thiserror::Error)]
pub enum LocalClusterError {
    /// No usable PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup, psql) not found; \
         searched: {searched}. Install them (on Debian/Ubuntu: `apt-get install -y postgresql`), \
         or point PGSPLIT_PG_BINDIR at the directory that holds them"
    )]
    BinariesNotFound {
        /// Where we looked, for the message.
        searched: String,
    },

    /// The binaries are older than the features this module relies on.
    #[error("PostgreSQL {found} in {bindir} is too old: localcluster needs version 13 or newer")]
    UnsupportedVersion {
        /// The version string the binaries reported.
        found: String,
        /// Where they are.
        bindir: PathBuf,
    },

    /// A file-system or process-spawning call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The cluster directory already holds something; we never write into foreign data.
    #[error("cluster directory {0} exists and is not empty")]
    DirNotEmpty(PathBuf),

    /// Unix socket paths are limited to 107 bytes; the cluster directory is too deep.
    #[error(
        "the server socket path under {dir} would be {len} bytes, over the 107-byte limit of unix \
         sockets; use a shorter cluster directory"
    )]
    PathTooLong {
        /// The socket directory.
        dir: PathBuf,
        /// The resulting socket path length.
        len: usize,
    },

    /// Running as root, the servers must run as another user, and there is none to use.
    #[error(
        "running as root, but there is no `postgres` OS user to run the servers as \
         (PostgreSQL refuses to run as root); create it with `useradd -r postgres`, \
         or install the postgresql package, which creates it"
    )]
    NoPostgresUser,

    /// The OS user the servers run as cannot reach the cluster directory.
    #[error(
        "the OS user `{user}` cannot reach {dir}: a parent directory is not traversable by it; \
         use a cluster directory under /tmp"
    )]
    DirNotReachable {
        /// The unreachable directory.
        dir: PathBuf,
        /// The user that must reach it.
        user: String,
    },

    /// No free loopback port could be found.
    #[error("no free TCP port found on 127.0.0.1 after {attempts} attempts")]
    NoFreePort {
        /// How many candidates were tried.
        attempts: usize,
    },

    /// A port asked for explicitly (`base_port`) is taken.
    #[error("port {0} on 127.0.0.1 is already in use")]
    PortInUse(u16),

    /// A command ran and reported failure.
    #[error("{what} failed ({status}): {output}")]
    CommandFailed {
        /// The command, for the message (e.g. `pg_ctl start`).
        what: String,
        /// Exit status as text.
        status: String,
        /// Its stderr, or stdout when stderr was empty.
        output: String,
    },

    /// A command or a wait did not finish in time.
    #[error("{what} did not finish within {after:?}{}", fmt_detail(detail))]
    Timeout {
        /// The command or condition waited for.
        what: String,
        /// The bound that expired.
        after: Duration,
        /// What was last seen (output so far, last observed value), possibly empty.
        detail: String,
    },

    /// A command succeeded but printed something we cannot interpret.
    #[error("{what}: unexpected output {output:?}")]
    UnexpectedOutput {
        /// The command.
        what: String,
        /// What it printed.
        output: String,
    },

    /// The server process of a node is not running, so it cannot be signalled.
    #[error("the server is not running (no live postmaster for {datadir})")]
    NotRunning {
        /// The node's data directory.
        datadir: PathBuf,
    },

    /// An error about one node, with the tail of that node's server log.
    #[error("{node}: {error}{}", fmt_log_tail(log_file, log_tail))]
    Node {
        /// The node's name (`primary`, `replica1`, ...).
        node: String,
        /// What went wrong.
        error: Box<LocalClusterError>,
        /// The node's log file.
        log_file: PathBuf,
        /// Its last lines (empty when unreadable).
        log_tail: String,
    },
}

/// `Debug` prints the same text as `Display`: tests report errors through `expect`/`unwrap`,
/// which use `Debug`, and a multi-line log tail is only readable unescaped.
impl fmt::Debug for LocalClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl LocalClusterError {
    /// Wraps an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LocalClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!("; last seen: {detail}")
    }
}

fn fmt_log_tail(log_file: &std::path::Path, tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of {} ---\n{tail}", log_file.display())
    }
}
