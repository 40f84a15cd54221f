//! Transactions across shards (`[sharding] two_phase_commit = true`), on the session's side.
//!
//! A transaction block that meets a second shard keeps one connection per shard it touched
//! (its participants): the attached connection runs the units of the shard in use, the others
//! wait aside with their transaction open. ROLLBACK (or an error that aborts the transaction)
//! rolls every participant back; the client going away closes them, which rolls them back.
//!
//! COMMIT: the shard the transaction began on is the coordinator (it takes the client's
//! COMMIT; when the COMMIT comes with statements of another shard, that shard does). pgsplit
//! reads the coordinator's transaction id (`txid_current()`), prepares every other one as
//! `pgsplit:<coordinator>:<xid>:<i>` (see `crate::shard::twophase`), then lets the client's
//! COMMIT through to the coordinator: that plain commit is the decision. Once it is answered,
//! the prepared ones are committed (or rolled back, if the coordinator did not commit) before
//! the client sees its ReadyForQuery. A failed PREPARE rolls everything back and the client
//! gets its error; a failure after the coordinator committed is left to recovery.
//!
//! A transaction that touched one shard commits as before, with no extra round trip.

use std::sync::OnceLock;

use crate::backend::{BackendError, ServerConn};
use crate::protocol::{SqlState, error_code, error_field};
use crate::route::classify::TxControl;
use crate::route::{Reason, Route};
use crate::shard::twophase::{Decision, Gid};
use crate::topology::Role;

use super::super::cancel::CancelTarget;
use super::super::client::ClientConn;
use super::super::error::FrontendError;
use super::super::session::{Attached, Session};
use super::super::state::UnitOutcome;
use super::cluster_of_node;

/// One shard's connection in a transaction across shards, its transaction open.
pub(in crate::frontend) struct Participant {
    pub(in crate::frontend) cluster: String,
    pub(in crate::frontend) attached: Attached,
}

/// A session's transaction across shards, when it has one.
#[derive(Default)]
pub(in crate::frontend) struct MultiShard {
    /// Participants other than the attached connection.
    parked: Vec<Participant>,
    /// The shard the transaction began on: the coordinator of its commit.
    first: String,
    /// The transaction's BEGIN as the client wrote it, run on every shard it reaches.
    begin: Option<String>,
    /// Participants prepared while the client's COMMIT runs on the coordinator, and the
    /// coordinator's transaction id.
    prepared: Vec<(Participant, Gid)>,
    coordinator: String,
    coordinator_xid: i64,
    /// The coordinator's COMMIT unit has ended: the prepared ones can be resolved.
    coordinator_done: bool,
    /// The attached connection's transaction failed: the parked ones roll back now.
    aborted: bool,
}

impl MultiShard {
    /// A transaction across shards is in progress (other shards' connections wait aside).
    pub(in crate::frontend) fn spans_shards(&self) -> bool {
        !self.parked.is_empty() || !self.prepared.is_empty()
    }

    /// The BEGIN pgsplit held for the transaction, to run again on the shards it reaches.
    pub(in crate::frontend) fn remember_begin(&mut self, begin: &str) {
        self.begin = Some(begin.to_string());
    }

    /// A unit ended on the attached connection (from `end_units`).
    pub(in crate::frontend) fn unit_ended(&mut self, outcome: UnitOutcome) {
        self.coordinator_done |= !self.prepared.is_empty();
        self.aborted |= outcome.status == b'E' && !self.parked.is_empty();
        if outcome.status == b'I' && self.prepared.is_empty() {
            self.begin = None;
        }
    }
}

/// Test hook: `PGSPLIT_FAULT=after_prepare` (participants prepared, coordinator not committed)
/// or `PGSPLIT_FAULT=after_coordinator_commit` (committed, participants still prepared) makes
/// the process abort there, as a crash would; read once. `tests/two_phase.rs` uses it to prove
/// that recovery leaves every shard all-or-nothing.
fn crash_point(point: &str) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    if FAULT
        .get_or_init(|| std::env::var("PGSPLIT_FAULT").ok())
        .as_deref()
        == Some(point)
    {
        tracing::error!(point, "PGSPLIT_FAULT: aborting the process");
        std::process::abort();
    }
}

impl Session {
    /// Two-phase commit is on and the attached connection holds a transaction block that may
    /// take in another shard (not a pinned or session-mode connection).
    pub(in crate::frontend) fn may_join_shard(&self) -> bool {
        let in_transaction = self
            .server
            .as_ref()
            .is_some_and(|a| a.checkout.conn.tx_status != b'I');
        self.two_phase_enabled()
            && in_transaction
            && self.state.pin().is_none()
            && !self.session_mode()
    }

    /// Why a transaction cannot take in another shard here.
    pub(in crate::frontend) fn why_one_shard(&self) -> &'static str {
        if self.two_phase_enabled() {
            "the session is pinned to its connection, or in session mode"
        } else {
            "two-phase commit across shards is not enabled"
        }
    }

    fn two_phase_enabled(&self) -> bool {
        let live = self.shared.live();
        live.sharding.as_ref().is_some_and(|s| s.two_phase_commit)
    }

    fn attached_cluster(&self) -> Option<String> {
        let attached = self.server.as_ref()?;
        cluster_of_node(&self.shared.topology.load(), &attached.route.node.name)
    }

    /// Makes `cluster`'s participant the attached connection, when a transaction across shards
    /// reaches it: the current one waits aside, and a shard met for the first time gets its
    /// primary's connection with the transaction begun.
    pub(in crate::frontend) async fn enter_shard(
        &mut self,
        client: &mut ClientConn,
        cluster: &str,
    ) -> Result<(), FrontendError> {
        if !self.may_join_shard() {
            return Ok(());
        }
        let Some(current) = self.attached_cluster().filter(|c| c != cluster) else {
            return Ok(());
        };
        self.settle(client).await?;
        let status = self.transaction_status();
        if status == b'E' {
            return Err(FrontendError::refuse(
                SqlState("25P02"),
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let Some(attached) = self.server.take().filter(|_| status == b'T') else {
            return Ok(()); // the transaction ended meanwhile: the unit is routed afresh
        };
        if self.multi_shard.parked.is_empty() {
            self.multi_shard.first = current.clone();
        }
        self.multi_shard.parked.push(Participant {
            cluster: current,
            attached,
        });
        let waiting = self
            .multi_shard
            .parked
            .iter()
            .position(|p| p.cluster == cluster);
        if let Some(index) = waiting {
            let participant = self.multi_shard.parked.remove(index);
            self.resume(participant.attached);
            return Ok(());
        }
        if let Err(e) = self.open_participant(client, cluster).await {
            if let Some(opened) = self.server.take() {
                self.shared.pools.checkin(opened.checkout);
            }
            if let Some(previous) = self.multi_shard.parked.pop() {
                self.resume(previous.attached);
            }
            return Err(e);
        }
        tracing::debug!(cluster, "transaction extended to another shard");
        Ok(())
    }

    fn resume(&mut self, attached: Attached) {
        self.cancel
            .set_target(Some(CancelTarget::of(&attached.checkout.conn)));
        self.server = Some(attached);
    }

    /// Attaches `cluster`'s primary and begins the transaction there.
    async fn open_participant(
        &mut self,
        client: &mut ClientConn,
        cluster: &str,
    ) -> Result<(), FrontendError> {
        let route = self.primary_route(cluster)?;
        self.attach(client, route).await?;
        let begin = self
            .multi_shard
            .begin
            .as_deref()
            .unwrap_or("BEGIN")
            .to_string();
        if let Some(attached) = self.server.as_mut() {
            attached.checkout.conn.run_internal(&begin).await?;
        }
        Ok(())
    }

    /// A transaction's route to `cluster`'s primary, if it is up.
    pub(super) fn primary_route(&self, cluster: &str) -> Result<Route, FrontendError> {
        let topology = self.shared.topology.load();
        let Some(found) = topology.clusters.iter().find(|c| c.name == cluster) else {
            return Err(FrontendError::refuse(
                SqlState::UNDEFINED_OBJECT,
                format!("no cluster named \"{cluster}\""),
            ));
        };
        let route = Route {
            node: found.primary.clone(),
            reason: Reason::Transaction,
            detail: None,
        };
        self.check_primary_up(route.reason, &route.node)?;
        Ok(route)
    }

    /// Before a unit that ends a transaction across shards reaches the coordinator: a ROLLBACK
    /// (or a COMMIT of a failed transaction) rolls the others back first; a COMMIT prepares
    /// them. An error means the whole transaction was rolled back.
    pub(in crate::frontend) async fn before_transaction_end(
        &mut self,
        client: &mut ClientConn,
        tx: &[TxControl],
    ) -> Result<(), FrontendError> {
        if self.multi_shard.parked.is_empty() {
            return Ok(());
        }
        if self.transaction_status() == b'I' && !super::super::work::opens_transaction(tx) {
            // The coordinator's transaction is gone (its connection was lost): so are theirs.
            tracing::warn!(
                "a transaction across shards lost its attached connection; rolling back the others"
            );
            self.multi_shard.parked.clear();
            return Ok(());
        }
        if let Some(refusal) = unsupported_across_shards(tx) {
            return Err(refusal);
        }
        let commits = match tx.iter().rev().find_map(|t| match t {
            TxControl::Commit => Some(true),
            TxControl::Rollback => Some(false),
            _ => None,
        }) {
            Some(commits) => commits,
            None => return Ok(()),
        };
        self.settle(client).await?;
        if !commits || self.transaction_status() != b'T' {
            let parked = std::mem::take(&mut self.multi_shard.parked);
            self.roll_back(parked).await;
            return Ok(());
        }
        if self.unit_cluster.is_none() {
            // The unit (a bare COMMIT) may run on any shard: the first one coordinates.
            self.attach_first_shard();
        }
        match self.prepare_parked().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.abandon_transaction().await;
                Err(e)
            }
        }
    }

    /// Makes the transaction's first shard the attached connection (the others wait aside).
    /// The coordinator must be a primary: a read-only start on a replica gives way to any
    /// primary participant.
    fn attach_first_shard(&mut self) {
        let parked = &self.multi_shard.parked;
        let on_primary = |p: &Participant| p.attached.route.node.role() == Role::Primary;
        let attached_on_replica = self
            .server
            .as_ref()
            .is_some_and(|a| a.route.node.role() == Role::Replica);
        let first = parked
            .iter()
            .position(|p| p.cluster == self.multi_shard.first && on_primary(p));
        let Some(index) = first.or_else(|| {
            attached_on_replica
                .then(|| parked.iter().position(on_primary))
                .flatten()
        }) else {
            return;
        };
        let Some(current) = self.attached_cluster() else {
            return;
        };
        let coordinator = self.multi_shard.parked.remove(index);
        if let Some(attached) = self.server.take() {
            self.multi_shard.parked.push(Participant {
                cluster: current,
                attached,
            });
        }
        self.resume(coordinator.attached);
    }

    /// Prepares every parked participant under the attached coordinator's transaction id.
    async fn prepare_parked(&mut self) -> Result<(), FrontendError> {
        let coordinator = self.attached_cluster().unwrap_or_default();
        let Some(attached) = self.server.as_mut() else {
            return Ok(());
        };
        let xid = transaction_id(&mut attached.checkout.conn).await?;
        let parked = std::mem::take(&mut self.multi_shard.parked);
        let prepared = self.prepare_all(&coordinator, xid, parked).await?;
        crash_point("after_prepare");
        self.multi_shard.prepared = prepared;
        self.multi_shard.coordinator = coordinator;
        self.multi_shard.coordinator_xid = xid;
        // The coordinator stays attached until its commit is resolved (see end_units).
        self.wrote = true;
        Ok(())
    }

    /// PREPARE TRANSACTION on each participant (a read-only one on a replica just commits);
    /// on the first failure, those prepared roll back, the rest too, and the error says why.
    async fn prepare_all(
        &self,
        coordinator: &str,
        xid: i64,
        participants: Vec<Participant>,
    ) -> Result<Vec<(Participant, Gid)>, FrontendError> {
        let mut prepared = Vec::with_capacity(participants.len());
        let mut remaining = participants.into_iter();
        for (index, mut participant) in remaining.by_ref().enumerate() {
            let conn = &mut participant.attached.checkout.conn;
            if participant.attached.route.node.role() == Role::Replica {
                // A replica wrote nothing: ending its read-only transaction is all it needs.
                let _ = conn.run_internal("COMMIT").await;
                self.shared.pools.checkin(participant.attached.checkout);
                continue;
            }
            let gid = Gid {
                coordinator: coordinator.to_string(),
                xid,
                index: index + 1,
            };
            match conn
                .run_internal(&format!("PREPARE TRANSACTION {}", gid.literal()))
                .await
            {
                Ok(_) => prepared.push((participant, gid)),
                Err(e) => {
                    let error = prepare_failed(&participant.cluster, e);
                    self.resolve(prepared, Decision::Rollback).await;
                    self.roll_back(remaining.collect()).await;
                    return Err(error);
                }
            }
        }
        Ok(prepared)
    }

    /// ROLLBACK on each participant; what fails is closed (which rolls it back too).
    pub(super) async fn roll_back(&self, participants: Vec<Participant>) {
        for mut participant in participants {
            if participant
                .attached
                .checkout
                .conn
                .run_internal("ROLLBACK")
                .await
                .is_ok()
            {
                self.shared.pools.checkin(participant.attached.checkout);
            }
        }
    }

    /// COMMIT PREPARED (or ROLLBACK PREPARED) on each prepared participant. After the
    /// coordinator's commit nothing can undo the decision: a failure is logged and left to
    /// recovery. A committed participant's WAL position joins the session's causal positions.
    async fn resolve(
        &self,
        prepared: Vec<(Participant, Gid)>,
        decision: Decision,
    ) -> Vec<(String, u64)> {
        let verb = if decision == Decision::Commit {
            "COMMIT PREPARED"
        } else {
            "ROLLBACK PREPARED"
        };
        let mut positions = Vec::new();
        for (mut participant, gid) in prepared {
            let conn = &mut participant.attached.checkout.conn;
            if let Err(e) = conn
                .run_internal(&format!("{verb} {}", gid.literal()))
                .await
            {
                tracing::warn!(%gid, cluster = %participant.cluster, error = %e, "{verb} failed; two-phase recovery will finish it");
                continue;
            }
            if decision == Decision::Commit {
                positions.push((
                    participant.cluster.clone(),
                    conn.commit_position().await.unwrap_or(0),
                ));
            }
            self.shared.pools.checkin(participant.attached.checkout);
        }
        positions
    }

    /// A failed multi-shard COMMIT: the coordinator rolls back too, and the session forgets
    /// what the transaction would have changed.
    async fn abandon_transaction(&mut self) {
        let parked = std::mem::take(&mut self.multi_shard.parked);
        self.roll_back(parked).await;
        if let Some(attached) = self.server.as_mut()
            && attached
                .checkout
                .conn
                .run_internal("ROLLBACK")
                .await
                .is_err()
            && let Some(lost) = self.server.take()
        {
            drop(lost); // closing it rolls it back
        }
        self.forget_transaction();
        self.pending_writes = None;
        self.wrote = false;
        self.multi_shard.begin = None;
    }

    /// Whether [`Self::settle_participants`] has anything to do: nothing in flight, and the
    /// coordinator answered or the transaction failed. Checked before building its future, which
    /// every batch of answers would otherwise pay for.
    pub(in crate::frontend) fn participants_to_settle(&self) -> bool {
        self.pending == 0 && (self.multi_shard.aborted || self.multi_shard.coordinator_done)
    }

    /// After the answers of a unit were passed on, before the client's ReadyForQuery is sent:
    /// finishes the prepared participants once the coordinator's COMMIT was answered, and rolls
    /// the parked ones back once the transaction failed.
    pub(in crate::frontend) async fn settle_participants(&mut self) {
        if !self.participants_to_settle() {
            return;
        }
        if std::mem::take(&mut self.multi_shard.aborted) {
            let parked = std::mem::take(&mut self.multi_shard.parked);
            self.roll_back(parked).await;
        }
        if !std::mem::take(&mut self.multi_shard.coordinator_done) {
            return;
        }
        let prepared = std::mem::take(&mut self.multi_shard.prepared);
        let xid = self.multi_shard.coordinator_xid;
        // Only the coordinator's own connection can say how it ended (it may have been lost).
        let on_coordinator =
            self.attached_cluster().as_ref() == Some(&self.multi_shard.coordinator);
        let decision = match self.server.as_mut() {
            Some(attached) if on_coordinator => {
                coordinator_decision(&mut attached.checkout.conn, xid).await
            }
            _ => Decision::Leave,
        };
        if decision == Decision::Leave {
            tracing::warn!(
                xid,
                "the coordinator's outcome is unknown; two-phase recovery will resolve its participants"
            );
            return;
        }
        if decision == Decision::Commit {
            crash_point("after_coordinator_commit");
        }
        for (cluster, lsn) in self.resolve(prepared, decision).await {
            self.note_commit_position(cluster, lsn);
        }
        if self.transaction_status() == b'I' {
            self.multi_shard.begin = None;
        }
    }

    /// A connection to `cluster`'s primary, from the session's pool, with a transaction of
    /// pgsplit's own begun: a participant for a write pgsplit splits over shards itself.
    pub(in crate::frontend) async fn begin_on_primary(
        &self,
        cluster: &str,
    ) -> Result<Participant, FrontendError> {
        let route = self.primary_route(cluster)?;
        let mut checkout = self.checkout(&route).await?;
        self.shared.route_counters.record(route.reason);
        self.shared.metrics.route(&route.node, route.reason);
        checkout.conn.run_internal("BEGIN").await?;
        Ok(Participant {
            cluster: cluster.to_string(),
            attached: Attached {
                checkout,
                route,
                work: None,
            },
        })
    }

    /// Commits participants that each hold an open transaction, as one: through two-phase
    /// commit when it is on and there are several (the first is the coordinator), else one
    /// after another. Used by writes pgsplit splits over shards itself (a multi-row INSERT,
    /// COPY FROM). The connections go back to the pool. Each shard's position after its commit.
    pub(in crate::frontend) async fn commit_participants(
        &mut self,
        mut participants: Vec<Participant>,
    ) -> Result<Vec<(String, u64)>, FrontendError> {
        if !self.two_phase_enabled() || participants.len() < 2 {
            return self.commit_in_turn(participants).await;
        }
        let mut coordinator = participants.remove(0);
        let conn = &mut coordinator.attached.checkout.conn;
        let xid = match transaction_id(conn).await {
            Ok(xid) => xid,
            Err(e) => {
                self.roll_back(participants).await;
                return Err(e);
            }
        };
        let prepared = match self
            .prepare_all(&coordinator.cluster, xid, participants)
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => {
                self.roll_back(vec![coordinator]).await;
                return Err(e);
            }
        };
        crash_point("after_prepare");
        let mut positions = match self.commit_in_turn(vec![coordinator]).await {
            Ok(positions) => positions,
            Err(e) => {
                self.resolve(prepared, Decision::Rollback).await;
                return Err(e);
            }
        };
        crash_point("after_coordinator_commit");
        positions.extend(self.resolve(prepared, Decision::Commit).await);
        Ok(positions)
    }

    /// COMMIT on each participant in turn; the first failure stops there (naming the shards
    /// that committed, if any did) and the rest roll back. Each shard's position after its
    /// commit.
    async fn commit_in_turn(
        &mut self,
        participants: Vec<Participant>,
    ) -> Result<Vec<(String, u64)>, FrontendError> {
        let mut committed: Vec<(String, u64)> = Vec::new();
        let mut remaining = participants.into_iter();
        while let Some(mut participant) = remaining.next() {
            let conn = &mut participant.attached.checkout.conn;
            if let Err(e) = conn.run_internal("COMMIT").await {
                self.roll_back(remaining.collect()).await;
                return Err(commit_failed(&committed, &participant.cluster, e));
            }
            let lsn = conn.commit_position().await.unwrap_or(0);
            self.shared.pools.checkin(participant.attached.checkout);
            committed.push((participant.cluster, lsn));
        }
        Ok(committed)
    }

    /// The session's causal token includes it from now on (the client hears of it with the
    /// transaction's commit).
    fn note_commit_position(&mut self, cluster: String, lsn: u64) {
        if lsn > self.causal_for(&cluster) {
            self.causal.insert(cluster, lsn);
        }
    }
}

/// Transaction control that a transaction across shards cannot honour: a savepoint lives on
/// one shard only (rolling back to it would keep the other shards' later writes), and a
/// client's own PREPARE TRANSACTION would cover one shard.
fn unsupported_across_shards(tx: &[TxControl]) -> Option<FrontendError> {
    let what = tx.iter().find_map(|t| match t {
        TxControl::RollbackToSavepoint => Some("ROLLBACK TO SAVEPOINT"),
        TxControl::TwoPhase => Some("PREPARE TRANSACTION"),
        _ => None,
    })?;
    Some(FrontendError::refuse(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "{what} is not supported in a transaction across shards: roll back the whole transaction instead"
        ),
    ))
}

/// The coordinator's epoch-qualified transaction id (assigning one if it wrote nothing).
async fn transaction_id(conn: &mut ServerConn) -> Result<i64, FrontendError> {
    let text = conn.run_internal("SELECT txid_current()").await?;
    text.and_then(|t| t.parse().ok()).ok_or_else(|| {
        FrontendError::refuse(
            SqlState::INTERNAL_ERROR,
            "txid_current() gave no transaction id",
        )
    })
}

/// How the coordinator's transaction ended, asked on its own connection.
async fn coordinator_decision(conn: &mut ServerConn, xid: i64) -> Decision {
    match conn
        .run_internal(&format!("SELECT txid_status({xid})"))
        .await
    {
        // Still in progress means its COMMIT never ran (an error before it): it cannot commit.
        Ok(status) => match Decision::from_status(status.as_deref()) {
            Decision::Leave => Decision::Rollback,
            decided => decided,
        },
        Err(_) => Decision::Leave,
    }
}

/// A PREPARE TRANSACTION that failed: the server's error as is, but a shard with prepared
/// transactions disabled gets a sentence naming the setting and the shard.
fn prepare_failed(cluster: &str, error: BackendError) -> FrontendError {
    if let BackendError::Server(raw) = &error {
        let body = raw.get(5..).unwrap_or_default();
        let disabled = error_code(body) == Some("55000")
            && error_field(body, b'M')
                .is_some_and(|m| m.contains("prepared transactions are disabled"));
        if disabled {
            return FrontendError::refuse(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "shard \"{cluster}\" cannot take part in a transaction across shards: its max_prepared_transactions is 0 (set it above 0 on every shard's primary and restart it); the transaction was rolled back on every shard"
                ),
            );
        }
    }
    error.into()
}

/// A COMMIT that failed on `failed` after `committed` shards committed.
fn commit_failed(committed: &[(String, u64)], failed: &str, error: BackendError) -> FrontendError {
    if committed.is_empty() {
        return error.into();
    }
    let committed: Vec<&str> = committed.iter().map(|(name, _)| name.as_str()).collect();
    FrontendError::refuse(
        SqlState::INTERNAL_ERROR,
        format!(
            "the write committed on shard(s) {} but its commit failed on shard \"{failed}\" ({}): the shards differ (two-phase commit across shards is off)",
            committed.join(", "),
            error.reason()
        ),
    )
}
