//! The admin console: the virtual database `pgsplit`, answered by pgsplit itself and never sent
//! to a server (PgBouncer's console). Every answer is an ordinary result set of text columns, so
//! psql shows tables and any driver can read them with a simple query.
//!
//! What it shows comes from [`crate::admin::status::snapshot`], the same figures as the admin
//! API, so the two never disagree. Commands that change things (BAN, UNBAN, RELOAD, PAUSE,
//! RESUME) are logged with the user who gave them.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use crate::admin::status::{Status, snapshot};
use crate::protocol::messages::query_text;
use crate::protocol::{ErrorFields, Frame, SqlState, StartupParams, Writer, tag};
use crate::topology::Role;
use crate::topology::monitor::format_lsn;

use super::Shared;
use super::client::ClientConn;
use super::error::FrontendError;

mod config_table;
use config_table::config_table;

/// The database name that opens the console.
pub(super) const DATABASE: &str = "pgsplit";

/// PostgreSQL's codes for a statement it cannot parse, and for a config file it cannot use.
const SYNTAX_ERROR: SqlState = SqlState("42601");
const CONFIG_FILE_ERROR: SqlState = SqlState("F0000");

/// A BAN without a duration lasts until UNBAN (a century is as good as forever, and still fits
/// the health atomics, which count microseconds in 64 bits).
const UNTIL_UNBAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Every command with what it does: SHOW HELP prints this, and an unknown command lists it.
const COMMANDS: [(&str, &str); 15] = [
    (
        "SHOW NODES",
        "every node: role, address, health, lag, reads and writes",
    ),
    (
        "SHOW LAG",
        "each node's replication lag and replayed WAL position",
    ),
    (
        "SHOW POOLS",
        "idle and busy server connections per node, database and user",
    ),
    ("SHOW CLIENTS", "client connections open now"),
    (
        "SHOW STATS",
        "reads, writes, work in flight and response time per node",
    ),
    ("SHOW ROUTES", "units routed so far, by reason"),
    ("SHOW CONFIG", "the settings in force (never a secret)"),
    (
        "SHOW EVENTS",
        "recent bans, recoveries, promotions and reloads",
    ),
    (
        "SHOW CACHE",
        "the result cache: hits, misses, bytes, evictions, invalidations",
    ),
    ("SHOW HELP", "this list"),
    ("RELOAD", "read the configuration file again"),
    ("PAUSE", "new units of work wait until RESUME"),
    ("RESUME", "end a PAUSE"),
    (
        "BAN <node> [seconds]",
        "take a node out of service (until UNBAN without seconds)",
    ),
    ("UNBAN <node>", "put a banned node back into service"),
];

/// A client admitted to the console.
pub(super) struct Console {
    shared: Arc<Shared>,
    user: String,
}

/// One console statement, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Show(Listing),
    Reload,
    Pause,
    Resume,
    Ban { node: &'a str, duration: Duration },
    Unban { node: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Nodes,
    Lag,
    Pools,
    Clients,
    Stats,
    Routes,
    Config,
    Events,
    Cache,
    Help,
}

/// A result set: column names and rows of text.
struct Table {
    columns: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

/// What one statement answers: a result set, a bare command tag, or an error.
enum Answer {
    Rows(Table),
    Done(&'static str),
    Error(ErrorFields),
}

impl Console {
    /// None when the client asked for a real database. A client that asked for the console must
    /// be one of `console.users`, else it is refused; the caller has already authenticated it
    /// (or is about to have a server do so).
    pub(super) fn admit(
        shared: &Arc<Shared>,
        params: &StartupParams,
    ) -> Result<Option<Console>, FrontendError> {
        if params.database() != Some(DATABASE) {
            return Ok(None);
        }
        let user = params.user().unwrap_or_default();
        if !shared.live().config.console.users.iter().any(|u| u == user) {
            return Err(FrontendError::refuse(
                SqlState::INVALID_AUTHORIZATION,
                format!("user {user} may not use the pgsplit console"),
            ));
        }
        Ok(Some(Console {
            shared: shared.clone(),
            user: user.to_string(),
        }))
    }

    /// Where a pass-through login is checked by a server: the monitor's database, which exists
    /// on every node, because `pgsplit` itself must never reach a server as a database.
    pub(super) fn login_database(&self) -> String {
        self.shared.live().config.monitor.database.clone()
    }

    /// Greets the client and answers it until it leaves or pgsplit shuts down.
    pub(super) async fn serve(self, client: &mut ClientConn) {
        if let Err(e) = self.relay(client).await {
            tracing::debug!(error = %e, "console session ended");
            e.report(client).await;
        }
    }

    async fn relay(&self, client: &mut ClientConn) -> Result<(), FrontendError> {
        greet(&mut client.writer());
        let mut shutdown = self.shared.shutdown_signal();
        // After an extended-protocol message was refused, the rest up to Sync is dropped, as
        // PostgreSQL does after an error.
        let mut discard_until_sync = false;
        loop {
            client
                .flush()
                .await
                .map_err(|_| FrontendError::ClientGone)?;
            let frame = tokio::select! {
                frame = client.read_frame() => frame?,
                _ = super::stopping(&mut shutdown) => {
                    return Err(FrontendError::refuse(
                        SqlState::ADMIN_SHUTDOWN,
                        "terminating connection because pgsplit is shutting down",
                    ));
                }
            };
            let Some(frame) = frame else {
                return Ok(());
            };
            let mut w = client.writer();
            match frame.tag {
                tag::TERMINATE => return Ok(()),
                tag::QUERY => {
                    self.answer_query(&mut w, &frame);
                    w.ready_for_query(b'I');
                }
                tag::SYNC => {
                    discard_until_sync = false;
                    w.ready_for_query(b'I');
                }
                // Nothing is ever pending here, so there is nothing to flush early.
                tag::FLUSH => {}
                _ if discard_until_sync => {}
                _ => {
                    w.error_response(&ErrorFields::error(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        "the pgsplit console speaks the simple query protocol only",
                    ));
                    // A function call is a whole unit of its own, with no Sync to wait for.
                    if frame.tag == tag::FUNCTION_CALL {
                        w.ready_for_query(b'I');
                    } else {
                        discard_until_sync = true;
                    }
                }
            }
        }
    }

    /// Answers each statement of a simple query in turn, stopping at the first error as
    /// PostgreSQL does.
    fn answer_query(&self, w: &mut Writer<'_>, frame: &Frame) {
        let text = query_text(frame.body()).unwrap_or_default();
        let statements: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if statements.is_empty() {
            // EmptyQueryResponse, as a server answers an empty query string.
            w.0.extend_from_slice(&[b'I', 0, 0, 0, 4]);
            return;
        }
        for statement in statements {
            let answer = match parse(statement) {
                Ok(command) => self.run(w, command),
                Err(message) => Answer::Error(ErrorFields::error(SYNTAX_ERROR, message)),
            };
            if !write_answer(w, answer) {
                return;
            }
        }
    }

    fn run(&self, w: &mut Writer<'_>, command: Command<'_>) -> Answer {
        match command {
            Command::Show(listing) => Answer::Rows(self.listing(listing)),
            Command::Reload => self.reload(w),
            Command::Pause => self.set_paused(true),
            Command::Resume => self.set_paused(false),
            Command::Ban { node, duration } => self.ban(w, node, duration),
            Command::Unban { node } => self.unban(node),
        }
    }

    fn listing(&self, listing: Listing) -> Table {
        let shared = &self.shared;
        match listing {
            Listing::Nodes => nodes_table(&snapshot(shared)),
            Listing::Lag => lag_table(shared, &snapshot(shared)),
            Listing::Pools => pools_table(&snapshot(shared)),
            Listing::Clients => clients_table(shared, &snapshot(shared)),
            Listing::Stats => stats_table(&snapshot(shared)),
            Listing::Routes => routes_table(&snapshot(shared)),
            Listing::Config => config_table(&shared.live().config),
            Listing::Events => events_table(&snapshot(shared)),
            Listing::Cache => cache_table(&snapshot(shared)),
            Listing::Help => help_table(),
        }
    }

    fn reload(&self, w: &mut Writer<'_>) -> Answer {
        tracing::info!(user = %self.user, "reload asked from the console");
        match crate::reload::reload(&self.shared) {
            Ok(summary) => {
                w.notice_response(&notice(format!("configuration reloaded: {summary}")));
                Answer::Done("RELOAD")
            }
            Err(refusal) => Answer::Error(ErrorFields::error(CONFIG_FILE_ERROR, refusal)),
        }
    }

    fn set_paused(&self, paused: bool) -> Answer {
        let (kind, tag) = if paused {
            ("pause", "PAUSE")
        } else {
            ("resume", "RESUME")
        };
        if self.shared.paused.swap(paused, Ordering::SeqCst) != paused {
            tracing::info!(user = %self.user, "{kind} from the console");
            crate::events::record(kind, None, format!("by {} from the console", self.user));
        }
        Answer::Done(tag)
    }

    fn ban(&self, w: &mut Writer<'_>, name: &str, duration: Duration) -> Answer {
        let Some(node) = self.node(name) else {
            return unknown_node(name);
        };
        if node.role() == Role::Primary {
            // Worth saying out loud: writes now fail, and a promote command may run.
            w.notice_response(&ErrorFields::warning(format!(
                "{name} is a primary: writes to its cluster fail while it is banned, and with \
                 failover.promote_command set a replica is promoted after failover.after"
            )));
        }
        let reason = format!("banned by {} from the console", self.user);
        node.stats.health.ban(&node.name, &reason, duration);
        Answer::Done("BAN")
    }

    fn unban(&self, name: &str) -> Answer {
        let Some(node) = self.node(name) else {
            return unknown_node(name);
        };
        node.stats.health.unban(&node.name);
        tracing::info!(user = %self.user, node = name, "unban from the console");
        Answer::Done("UNBAN")
    }

    fn node(&self, name: &str) -> Option<Arc<crate::topology::Node>> {
        let topology = self.shared.topology.load();
        topology
            .clusters
            .iter()
            .flat_map(|c| {
                std::iter::once(&c.primary)
                    .chain(&c.replicas)
                    .chain(&c.fenced)
            })
            .find(|n| n.name == name)
            .cloned()
    }
}

/// AuthenticationOk, the parameters clients look for, ReadyForQuery. No BackendKeyData: there
/// is never anything to cancel.
fn greet(w: &mut Writer<'_>) {
    w.authentication(0, &[]);
    let version = concat!(env!("CARGO_PKG_VERSION"), " (pgsplit console)");
    for (name, value) in [
        ("server_version", version),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        w.parameter_status(name, value);
    }
    w.ready_for_query(b'I');
}

/// Writes one statement's answer; false after an error, which ends the query string.
fn write_answer(w: &mut Writer<'_>, answer: Answer) -> bool {
    match answer {
        Answer::Rows(table) => {
            w.row_description(table.columns);
            for row in &table.rows {
                let values: Vec<&str> = row.iter().map(String::as_str).collect();
                w.data_row(&values);
            }
            w.command_complete("SHOW");
            true
        }
        Answer::Done(tag) => {
            w.command_complete(tag);
            true
        }
        Answer::Error(fields) => {
            w.error_response(&fields);
            false
        }
    }
}

/// Reads one statement: keywords in any case, node names as written (quotes allowed).
fn parse(statement: &str) -> Result<Command<'_>, String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let keyword = |i: usize| words.get(i).map(|w| w.to_ascii_uppercase());
    let command = match (keyword(0).as_deref(), words.len()) {
        (Some("SHOW"), 2) => keyword(1)
            .as_deref()
            .and_then(listing_named)
            .map(Command::Show),
        (Some("RELOAD"), 1) => Some(Command::Reload),
        (Some("PAUSE"), 1) => Some(Command::Pause),
        (Some("RESUME"), 1) => Some(Command::Resume),
        (Some("BAN"), 2 | 3) => {
            let duration = match words.get(2) {
                Some(seconds) => ban_seconds(seconds)?,
                None => UNTIL_UNBAN,
            };
            Some(Command::Ban {
                node: unquote(words[1]),
                duration,
            })
        }
        (Some("UNBAN"), 2) => Some(Command::Unban {
            node: unquote(words[1]),
        }),
        _ => None,
    };
    command.ok_or_else(|| {
        let known: Vec<&str> = COMMANDS.iter().map(|(syntax, _)| *syntax).collect();
        format!(
            "unknown pgsplit console command \"{statement}\"; the console knows {}",
            known.join(", ")
        )
    })
}

fn listing_named(word: &str) -> Option<Listing> {
    Some(match word {
        "NODES" => Listing::Nodes,
        "LAG" => Listing::Lag,
        "POOLS" => Listing::Pools,
        "CLIENTS" => Listing::Clients,
        "STATS" => Listing::Stats,
        "ROUTES" => Listing::Routes,
        "CONFIG" => Listing::Config,
        "EVENTS" => Listing::Events,
        "CACHE" => Listing::Cache,
        "HELP" => Listing::Help,
        _ => return None,
    })
}

fn ban_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) if seconds > 0 && Duration::from_secs(seconds) <= UNTIL_UNBAN => {
            Ok(Duration::from_secs(seconds))
        }
        _ => Err(format!(
            "invalid ban time \"{text}\": give a whole number of seconds from 1 to {}, or none \
             to ban until UNBAN",
            UNTIL_UNBAN.as_secs()
        )),
    }
}

fn unquote(name: &str) -> &str {
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
}

fn unknown_node(name: &str) -> Answer {
    Answer::Error(ErrorFields::error(
        SqlState::UNDEFINED_OBJECT,
        format!("no node is called \"{name}\"; SHOW NODES lists them"),
    ))
}

fn notice(message: String) -> ErrorFields {
    let mut fields = ErrorFields::warning(message);
    fields.severity = "NOTICE";
    fields.code = SqlState("00000");
    fields
}

/// A figure that may be unknown: empty text when it is.
fn opt<T: Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn seconds(value: Option<f64>) -> String {
    opt(value.map(|s| format!("{s:.3}")))
}

fn nodes_table(status: &Status) -> Table {
    let rows = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.cluster.clone(),
                n.role.to_string(),
                n.addr.clone(),
                n.healthy.to_string(),
                opt(n.ban_reason.as_ref()),
                opt(n.lag_bytes),
                seconds(n.lag_seconds),
                n.reads_total.to_string(),
                n.writes_total.to_string(),
                n.in_flight.to_string(),
            ]
        })
        .collect();
    Table {
        columns: &[
            "name",
            "cluster",
            "role",
            "addr",
            "healthy",
            "ban_reason",
            "lag_bytes",
            "lag_seconds",
            "reads",
            "writes",
            "in_flight",
        ],
        rows,
    }
}

/// The replayed position is the one figure the status snapshot leaves out, so it is read from
/// the node itself.
fn lag_table(shared: &Shared, status: &Status) -> Table {
    let topology = shared.topology.load();
    let replay_lsn = |name: &str| {
        let node = topology.node(name)?;
        let lsn = node.stats.replay_lsn.load(Ordering::Relaxed);
        (lsn > 0).then(|| format_lsn(lsn))
    };
    let rows = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                seconds(n.lag_seconds),
                opt(n.lag_bytes),
                opt(replay_lsn(&n.name)),
            ]
        })
        .collect();
    Table {
        columns: &["node", "lag_seconds", "lag_bytes", "replay_lsn"],
        rows,
    }
}

fn pools_table(status: &Status) -> Table {
    let rows = status
        .pools
        .iter()
        .map(|p| {
            vec![
                p.node.clone(),
                p.database.clone(),
                p.user.clone(),
                p.idle.to_string(),
                p.in_use.to_string(),
            ]
        })
        .collect();
    Table {
        columns: &["node", "database", "user", "idle", "in_use"],
        rows,
    }
}

/// Sessions are not listed one by one (nothing keeps such a list): the count, the limit and
/// whether PAUSE is in force.
fn clients_table(shared: &Shared, status: &Status) -> Table {
    let limit = shared.live().config.limits.max_client_connections;
    Table {
        columns: &["connected", "max_client_connections", "paused"],
        rows: vec![vec![
            status.clients.to_string(),
            limit.to_string(),
            shared.is_paused().to_string(),
        ]],
    }
}

fn stats_table(status: &Status) -> Table {
    let rows = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.reads_total.to_string(),
                n.writes_total.to_string(),
                n.in_flight.to_string(),
                opt(n.response_ms.map(|ms| format!("{ms:.3}"))),
            ]
        })
        .collect();
    Table {
        columns: &["node", "reads", "writes", "in_flight", "response_ms"],
        rows,
    }
}

fn routes_table(status: &Status) -> Table {
    let rows = status
        .routes
        .iter()
        .map(|r| vec![r.reason.to_string(), r.count.to_string()])
        .collect();
    Table {
        columns: &["reason", "count"],
        rows,
    }
}

fn events_table(status: &Status) -> Table {
    let rows = status
        .events
        .iter()
        .map(|e| {
            let at = UNIX_EPOCH + Duration::from_millis(e.at_ms);
            vec![
                humantime::format_rfc3339_millis(at).to_string(),
                e.kind.to_string(),
                opt(e.node.as_ref()),
                e.detail.clone(),
            ]
        })
        .collect();
    Table {
        columns: &["at", "kind", "node", "detail"],
        rows,
    }
}

/// One row per counter (none while the cache is off), then one per table invalidated.
fn cache_table(status: &Status) -> Table {
    let mut rows = Vec::new();
    if let Some(c) = &status.cache {
        let counters = [
            (
                "channel",
                status
                    .cache_channel
                    .map_or("none".to_string(), |up| up.to_string()),
            ),
            ("bytes", c.bytes.to_string()),
            ("max_bytes", c.max_bytes.to_string()),
            ("entries", c.entries.to_string()),
            ("hits", c.hits.to_string()),
            ("misses", c.misses.to_string()),
            ("stale_misses", c.stale_misses.to_string()),
            ("inserts", c.inserts.to_string()),
            ("evictions", c.evictions.to_string()),
            ("expirations", c.expirations.to_string()),
            ("invalidated_entries", c.invalidated_entries.to_string()),
            ("clears", c.clears.to_string()),
        ];
        rows.extend(counters.into_iter().map(|(k, v)| vec![k.to_string(), v]));
        rows.extend(
            c.invalidations
                .iter()
                .map(|(table, n)| vec![format!("invalidations: {table}"), n.to_string()]),
        );
    }
    Table {
        columns: &["counter", "value"],
        rows,
    }
}

fn help_table() -> Table {
    let rows = COMMANDS
        .iter()
        .map(|(syntax, what)| vec![syntax.to_string(), what.to_string()])
        .collect();
    Table {
        columns: &["command", "description"],
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_in_any_case() {
        assert_eq!(parse("show nodes"), Ok(Command::Show(Listing::Nodes)));
        assert_eq!(parse("Show   Help"), Ok(Command::Show(Listing::Help)));
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(
            parse("BAN \"replica1\" 30"),
            Ok(Command::Ban {
                node: "replica1",
                duration: Duration::from_secs(30)
            })
        );
        assert_eq!(
            parse("ban replica1"),
            Ok(Command::Ban {
                node: "replica1",
                duration: UNTIL_UNBAN
            })
        );
        assert_eq!(parse("unban r"), Ok(Command::Unban { node: "r" }));
    }

    #[test]
    fn unknown_commands_and_bad_arguments_say_what_is_allowed() {
        let message = parse("SHOW TABLES").unwrap_err();
        assert!(message.contains("SHOW NODES") && message.contains("UNBAN <node>"));
        assert!(parse("BAN r 0").unwrap_err().contains("invalid ban time"));
        assert!(
            parse("BAN r soon")
                .unwrap_err()
                .contains("invalid ban time")
        );
        assert!(parse("RELOAD now").is_err());
    }
}
