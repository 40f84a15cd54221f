//! Driving the nodes of a running cluster: stop, start, kill, pause, promote, replication lag,
//! and SQL through psql. Every call is bounded in time.

use std::thread;
use std::time::{Duration, Instant};

use super::command::{pg_command, run};
use super::conf::sql_literal;
use super::{
    LocalCluster, LocalClusterError, PgNode, SUPERUSER, procfs, remove_stale_server_files,
};

/// Default bound for one psql call.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// What pg_ctl itself waits for (`-t`); our own bound adds a margin on top.
const PG_CTL_WAIT_SECS: u64 = 60;
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(PG_CTL_WAIT_SECS + 10);
/// Bound for processes to die after SIGKILL, or to stop after SIGSTOP.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for a promoted node to leave recovery, and for a reloaded setting to show.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

impl LocalCluster {
    /// Runs `sql` on `node` in database `db` as the superuser and returns what psql printed
    /// (unaligned, tuples only, `|` between columns, one row per line, no trailing newline).
    /// Several statements in one string run as one implicit transaction.
    pub fn psql(&self, node: &PgNode, db: &str, sql: &str) -> Result<String, LocalClusterError> {
        self.psql_with_timeout(node, db, sql, PSQL_TIMEOUT)
    }

    /// [`LocalCluster::psql`] with an explicit bound (e.g. short, against a paused node).
    pub fn psql_with_timeout(
        &self,
        node: &PgNode,
        db: &str,
        sql: &str,
        timeout: Duration,
    ) -> Result<String, LocalClusterError> {
        // psql runs as us, not as the server user: it connects over TCP, which is trusted.
        let mut cmd = pg_command(&self.bins.tool("psql"), None);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .env(
                "PGCONNECT_TIMEOUT",
                timeout.as_secs().clamp(2, 30).to_string(),
            );
        let out = run(cmd, timeout, &format!("psql {sql:?}")).map_err(|e| node.error(e))?;
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }

    /// Starts a stopped or killed node and waits until it accepts connections.
    pub fn start_node(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        remove_stale_server_files(node);
        self.pg_ctl(node, "start", &["-l", &node.log_file.to_string_lossy()])
    }

    /// Stops a node cleanly (`pg_ctl stop -m fast`): sessions are disconnected, and a replica's
    /// walsender on the primary goes away.
    pub fn stop(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        self.pg_ctl(node, "stop", &["-m", "fast"])
    }

    /// Restarts a node (`pg_ctl restart -m fast`), waiting until it accepts connections.
    pub fn restart(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        remove_stale_server_files(node);
        self.pg_ctl(
            node,
            "restart",
            &["-m", "fast", "-l", &node.log_file.to_string_lossy()],
        )
    }

    /// Crashes a node: SIGKILL to the postmaster and every process under it at once, as if
    /// the machine died (clients see their connections reset). Returns once all are gone;
    /// [`LocalCluster::start_node`] brings it back through crash recovery.
    pub fn kill(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        let pid = live_postmaster(node)?;
        // Children are found through their parent, so look before the postmaster dies (they are
        // reparented after), and once more after, for one forked in between.
        let mut all = procfs::descendants(pid);
        procfs::signal(pid, libc::SIGKILL);
        for late in procfs::descendants(pid) {
            if !all.contains(&late) {
                all.push(late);
            }
        }
        for &p in &all {
            procfs::signal(p, libc::SIGKILL);
        }
        all.push(pid);
        let left = procfs::wait_gone(&all, Instant::now() + SIGNAL_TIMEOUT);
        if !left.is_empty() {
            return Err(node.error(LocalClusterError::Timeout {
                what: "SIGKILL of the server processes".to_string(),
                after: SIGNAL_TIMEOUT,
                detail: format!("still alive: {left:?}"),
            }));
        }
        remove_stale_server_files(node);
        Ok(())
    }

    /// Freezes a node: SIGSTOP to the postmaster and all its processes. Connections stay open
    /// but nothing answers, like a hung machine. Undo with [`LocalCluster::resume`].
    pub fn pause(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        let pid = live_postmaster(node)?;
        // The postmaster first, so it forks nothing new while we stop its children.
        procfs::signal(pid, libc::SIGSTOP);
        let mut all = vec![pid];
        // Twice: a child forked just before the postmaster stopped shows up only later.
        for _ in 0..2 {
            for child in procfs::descendants(pid) {
                if !all.contains(&child) {
                    procfs::signal(child, libc::SIGSTOP);
                    all.push(child);
                }
            }
        }
        // Signals are asynchronous: return only once every process really is stopped.
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        while let Some(&running) = all
            .iter()
            .find(|&&p| procfs::is_alive(p) && !procfs::is_stopped(p))
        {
            if Instant::now() >= deadline {
                return Err(node.error(LocalClusterError::Timeout {
                    what: "SIGSTOP of the server processes".to_string(),
                    after: SIGNAL_TIMEOUT,
                    detail: format!("process {running} still running"),
                }));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Unfreezes a node paused with [`LocalCluster::pause`] (SIGCONT to all its processes).
    pub fn resume(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        let pid = live_postmaster(node)?;
        for child in procfs::descendants(pid) {
            procfs::signal(child, libc::SIGCONT);
        }
        procfs::signal(pid, libc::SIGCONT);
        Ok(())
    }

    /// Promotes a replica (`pg_ctl promote`) and returns once it has left recovery and takes
    /// writes. The other replicas keep following the old primary.
    pub fn promote(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        self.pg_ctl(node, "promote", &[])?;
        self.wait_for(
            node,
            "promotion (pg_is_in_recovery() = false)",
            PROMOTE_TIMEOUT,
            || {
                let out = self.psql(node, "postgres", "SELECT pg_is_in_recovery()")?;
                Ok((out == "f").then_some(()).ok_or(out))
            },
        )
    }

    /// Makes a replica apply each commit only `delay` after it happened on the primary
    /// (`recovery_min_apply_delay`): real, steady replication lag. `Duration::ZERO` removes it.
    pub fn set_apply_delay(&self, node: &PgNode, delay: Duration) -> Result<(), LocalClusterError> {
        let ms = delay.as_millis();
        // ALTER SYSTEM refuses to run inside a transaction, so it gets its own call.
        self.psql(
            node,
            "postgres",
            &format!("ALTER SYSTEM SET recovery_min_apply_delay = '{ms}ms'"),
        )?;
        self.psql(node, "postgres", "SELECT pg_reload_conf()")?;
        // The reload is asynchronous; a new session sees the value once the postmaster has it.
        let want = ms.to_string();
        let sql = "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'";
        self.wait_for(
            node,
            "recovery_min_apply_delay reload",
            RELOAD_TIMEOUT,
            || {
                let out = self.psql(node, "postgres", sql)?;
                Ok((out == want).then_some(()).ok_or(out))
            },
        )
    }

    /// Stops WAL replay on a replica (`pg_wal_replay_pause()`); it keeps receiving WAL, and
    /// its data stays frozen at the current point until [`LocalCluster::resume_replay`].
    pub fn pause_replay(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        self.psql(node, "postgres", "SELECT pg_wal_replay_pause()")
            .map(drop)
    }

    /// Resumes WAL replay paused by [`LocalCluster::pause_replay`].
    pub fn resume_replay(&self, node: &PgNode) -> Result<(), LocalClusterError> {
        self.psql(node, "postgres", "SELECT pg_wal_replay_resume()")
            .map(drop)
    }

    /// The last WAL position a replica has replayed (`pg_last_wal_replay_lsn()`), e.g.
    /// `0/3000148`.
    pub fn replay_lsn(&self, node: &PgNode) -> Result<String, LocalClusterError> {
        let what = "pg_last_wal_replay_lsn()";
        let lsn = self.psql(node, "postgres", &format!("SELECT {what}"))?;
        if lsn.is_empty() {
            return Err(node.error(LocalClusterError::UnexpectedOutput {
                what: format!("{what} (is {} a replica?)", node.name),
                output: lsn,
            }));
        }
        Ok(lsn)
    }

    /// The primary's current WAL write position (`pg_current_wal_lsn()`): everything
    /// committed before this call lies before it, and replicas can receive up to it.
    pub fn current_lsn(&self) -> Result<String, LocalClusterError> {
        self.current_lsn_on(self.primary())
    }

    /// [`LocalCluster::current_lsn`] on a given node (e.g. a promoted replica).
    pub fn current_lsn_on(&self, node: &PgNode) -> Result<String, LocalClusterError> {
        self.psql(node, "postgres", "SELECT pg_current_wal_lsn()")
    }

    /// Waits until `node` has replayed WAL up to `lsn`.
    pub fn wait_replayed(
        &self,
        node: &PgNode,
        lsn: &str,
        timeout: Duration,
    ) -> Result<(), LocalClusterError> {
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= {}::pg_lsn, false), pg_last_wal_replay_lsn()",
            sql_literal(lsn)
        );
        self.wait_for(node, &format!("replay up to {lsn}"), timeout, || {
            let out = self.psql(node, "postgres", &sql)?;
            match out.split_once('|') {
                Some(("t", _)) => Ok(Ok(())),
                Some((_, at)) => Ok(Err(format!("replayed up to {at}"))),
                None => Ok(Err(out)),
            }
        })
    }

    /// Waits until a replica streams from the primary: its walreceiver says `streaming`, and
    /// the primary's `pg_stat_replication` lists it (by name) as `streaming`.
    pub fn wait_streaming(
        &self,
        node: &PgNode,
        timeout: Duration,
    ) -> Result<(), LocalClusterError> {
        let on_replica = "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')";
        let on_primary = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = {} AND state = 'streaming'",
            sql_literal(&node.name)
        );
        self.wait_for(node, "streaming replication", timeout, || {
            let status = self.psql(node, "postgres", on_replica)?;
            if status != "streaming" {
                return Ok(Err(format!("walreceiver status {status:?}")));
            }
            let count = self.psql(self.primary(), "postgres", &on_primary)?;
            Ok((count != "0")
                .then_some(())
                .ok_or_else(|| "not streaming in the primary's pg_stat_replication".to_string()))
        })
    }

    /// Whether the node's server is running (possibly paused).
    pub fn is_running(&self, node: &PgNode) -> bool {
        procfs::live_postmaster(&node.datadir).is_some()
    }

    /// Runs `pg_ctl <action> -D <datadir> -w -t 60 <extra>` as the server user.
    fn pg_ctl(&self, node: &PgNode, action: &str, extra: &[&str]) -> Result<(), LocalClusterError> {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg(action)
            .arg("-D")
            .arg(&node.datadir)
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string()])
            .args(extra);
        run(cmd, PG_CTL_TIMEOUT, &format!("pg_ctl {action}"))
            .map(drop)
            .map_err(|e| node.error(e))
    }

    /// Polls `probe` every [`POLL`] until it yields `Ok(Ok(v))` or `timeout` passes.
    /// `Ok(Err(seen))` means "not yet" and errors (a node still starting) are retried too;
    /// the last of either ends up in the timeout error.
    fn wait_for<T>(
        &self,
        node: &PgNode,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<Result<T, String>, LocalClusterError>,
    ) -> Result<T, LocalClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = match probe() {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(seen)) => seen,
                Err(e) => error_summary(&e),
            };
            if Instant::now() >= deadline {
                return Err(node.error(LocalClusterError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                    detail: seen,
                }));
            }
            thread::sleep(POLL);
        }
    }
}

/// The node's live postmaster, or a [`LocalClusterError::NotRunning`] about it.
fn live_postmaster(node: &PgNode) -> Result<i32, LocalClusterError> {
    procfs::live_postmaster(&node.datadir).ok_or_else(|| {
        node.error(LocalClusterError::NotRunning {
            datadir: node.datadir.clone(),
        })
    })
}

/// An error without the node log tail (the timeout error carries a fresh one).
fn error_summary(error: &LocalClusterError) -> String {
    match error {
        LocalClusterError::Node { error, .. } => error.to_string(),
        other => other.to_string(),
    }
}
