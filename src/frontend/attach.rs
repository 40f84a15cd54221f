//! Borrowing a server connection for a session and readying it: the login connection, routing
//! a unit (and routing it again past an unreachable replica), settings and prepared statements
//! brought to the session's state.

use std::sync::Arc;

use crate::backend::{ConnectSpec, ServerConn};
use crate::pool::{Checkout, PoolHandle, PoolKey};
use crate::protocol::{Frame, SqlState, tag};
use crate::route::classify::{Access, SessionEffect};
use crate::route::{Reason, Route};
use crate::topology::{Node, Role};

use super::cancel::CancelTarget;
use super::client::ClientConn;
use super::error::FrontendError;
use super::login;
use super::recovery::MAX_RETRIES;
use super::session::{Attached, Session};
use super::state::SessionState;
use super::work::{Work, opens_transaction};

/// A Sync message, for [`Session::close_cut_unit`].
const SYNC: &[u8] = &[tag::SYNC, 0, 0, 0, 4];

impl Session {
    /// The first connection, which checks a pass-through login and gives the greeting its
    /// parameters. Any server can do that: the primary first, else a replica, so that clients
    /// can still log in (and read) while the primary is down. In session mode, the primary.
    pub(super) async fn attach_login(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let topology = self.shared.topology.load_full();
        let cluster = topology.cluster_for_database(&self.database);
        let reason = if self.session_mode() {
            Reason::SessionMode
        } else {
            Reason::Login
        };
        let mut nodes: Vec<&Arc<Node>> = cluster.serving().collect();
        if self.session_mode() {
            nodes.truncate(1);
        }
        nodes.sort_by_key(|n| !n.is_available());
        let mut last_error = None;
        for node in nodes {
            let route = Route {
                node: node.clone(),
                reason,
                detail: None,
            };
            match self.attach(client, route).await {
                Err(FrontendError::Backend(e)) if e.is_unreachable() => {
                    node.stats.health.ban(
                        &node.name,
                        &e.to_string(),
                        self.shared.live().config.health.ban_time,
                    );
                    last_error = Some(FrontendError::Backend(e));
                }
                other => return other,
            }
        }
        Err(last_error.unwrap_or_else(|| {
            FrontendError::refuse(SqlState::CONNECTION_FAILURE, "no server to log in on")
        }))
    }

    /// Borrows a connection to the route's node and brings it to the session's state. In
    /// pass-through mode, a server that wants a password makes us ask the client for it once.
    pub(super) async fn attach(
        &mut self,
        client: &mut ClientConn,
        route: Route,
    ) -> Result<(), FrontendError> {
        let checkout = match self.checkout(&route).await {
            Err(FrontendError::Backend(e)) if e.needs_password() && !self.identity_confirmed => {
                self.credentials.password = Some(login::ask_cleartext_password(client).await?);
                self.checkout(&route).await?
            }
            other => other?,
        };
        self.identity_confirmed = true;
        self.sequences.borrowed(&route.node, &checkout);
        self.cancel
            .set_target(Some(CancelTarget::of(&checkout.conn)));
        self.shared.route_counters.record(route.reason);
        self.shared.metrics.route(&route.node, route.reason);
        if matches!(
            route.reason,
            Reason::Balanced(_) | Reason::ReadOnlyTransaction(_)
        ) {
            self.last_read_node = Some(route.node.clone());
        }
        self.server = Some(Attached {
            checkout,
            route,
            work: None,
        });
        Ok(())
    }

    pub(super) async fn checkout(&self, route: &Route) -> Result<Checkout, FrontendError> {
        let node = &route.node;
        let handle = self.pool_handle(&node.name);
        // Built only when the pool has no idle connection to lend.
        let spec = || {
            let mut startup = vec![
                ("user".to_string(), self.credentials.user.clone()),
                ("database".to_string(), self.database.clone()),
            ];
            if !self.options.is_empty() {
                startup.push(("options".to_string(), self.options.clone()));
            }
            let live = self.shared.live();
            ConnectSpec {
                node: node.name.clone(),
                addr: node.addr.clone(),
                startup,
                password: self.credentials.password.clone(),
                scram_keys: self.credentials.scram_keys.clone(),
                md5_hash: self.credentials.md5_hash.clone(),
                timeout: live.config.timeouts.connect,
                tls: live.server_tls.clone(),
            }
        };
        // In pass-through mode nobody but the server can check a password: a login gets a
        // connection of its own rather than one another client authenticated.
        let fresh = !self.identity_confirmed;
        let reservation = self.sequences.reservation_on(node);
        let mut checkout = (self.shared.pools)
            .checkout(&handle, spec, fresh, reservation)
            .await?;
        sync_settings(&mut checkout.conn, &self.state).await?;
        Ok(checkout)
    }

    /// The session's pool on `node` (its database, user and options), looked up in the
    /// process's map once per node and then kept.
    fn pool_handle(&self, node: &str) -> PoolHandle {
        let mut handles = self.pool_handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = handles.iter().find(|h| h.node() == node) {
            return handle.clone();
        }
        let handle = self.shared.pools.handle(&PoolKey {
            node: node.to_string(),
            database: self.database.clone(),
            user: self.credentials.user.clone(),
            options: self.options.clone(),
        });
        handles.push(handle.clone());
        handle
    }

    /// Routes the unit and borrows a connection for it (unless it stays on the attached one).
    /// A replica that cannot be reached is banned and the unit routed again, so the client
    /// never learns of it; a primary known to be down fails the unit at once.
    pub(super) async fn attach_for(
        &mut self,
        client: &mut ClientConn,
        work: &Work,
    ) -> Result<(), FrontendError> {
        if self.server.is_none() {
            self.wait_while_paused().await;
        }
        let mut tries = 0;
        let forced = self.force_primary;
        let result = loop {
            let route = match self.route_for(client, work).await {
                Ok(Some(route)) => route,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if let Err(e) = self.check_primary_up(route.reason, &route.node) {
                break Err(e);
            }
            let node = route.node.clone();
            match self.attach(client, route).await {
                Err(FrontendError::Backend(e))
                    if node.role() == Role::Replica && tries < MAX_RETRIES =>
                {
                    if e.is_unreachable() {
                        tracing::info!(node = %node.name, error = %e, "replica unreachable; routing the unit again");
                        let ban_time = self.shared.live().config.health.ban_time;
                        node.stats.health.ban(&node.name, &e.to_string(), ban_time);
                    } else {
                        // The replica answered but refused the connection (a database it has
                        // not replayed yet, too many connections, starting up): the primary
                        // can serve this unit.
                        tracing::info!(node = %node.name, error = %e, "replica refused the connection; using the primary");
                        self.force_primary = true;
                    }
                    tries += 1;
                }
                other => break other,
            }
        };
        self.force_primary = forced;
        result
    }

    /// The console's PAUSE holds new units (not those of a transaction or a pinned session,
    /// which keep their connection) until RESUME, or until shutdown begins.
    async fn wait_while_paused(&self) {
        while self.shared.is_paused() && !self.shared.is_shutting_down() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A read on a replica, outside any transaction or pin (also behind units still in flight:
    /// none of them opens a transaction): if its server fails or refuses it before answering,
    /// it can run again elsewhere.
    pub(super) fn may_retry(&self, work: &Work) -> bool {
        let Some(attached) = &self.server else {
            return false;
        };
        work.access() == Access::Read
            && work.executes
            && attached.checkout.conn.tx_status == b'I'
            && !self.in_flight.opens_transaction()
            && !opens_transaction(&work.tx)
            && self.state.pin().is_none()
            && attached.route.node.role() == Role::Replica
    }

    /// Where a unit goes: None to stay on the attached connection, which it must inside a
    /// transaction block, when pinned, or behind a unit cut at Flush that bound a portal (it
    /// lives on that connection until the Sync). A unit arriving behind unanswered ones that
    /// belongs elsewhere waits for them (their answers reach the client meanwhile) and the
    /// connection's release, and is routed again then: pipelining never sends a write to a
    /// replica, nor a read to one that lacks what the writes before it committed; behind a cut
    /// unit that only parsed or described, pgsplit ends it with a Sync of its own (see
    /// [`Self::close_cut_unit`]).
    pub(super) async fn route_for(
        &mut self,
        client: &mut ClientConn,
        work: &Work,
    ) -> Result<Option<Route>, FrontendError> {
        let Some(attached) = &self.server else {
            return Ok(Some(self.decide_with_fallback(work).await?));
        };
        let cut_with_portal = self.pending == 0 && self.bound_since_sync;
        if self.holds_session(attached) || cut_with_portal {
            return Ok(None);
        }
        let route = self.decide_with_fallback(work).await?;
        if Arc::ptr_eq(&route.node, &attached.route.node) {
            return Ok(None);
        }
        self.settle(client).await?;
        if self.server.is_some() && !self.bound_since_sync {
            self.close_cut_unit(client).await?;
        }
        // A failed cut unit: this unit is dropped (by the caller), so it needs no connection.
        if self.server.is_some() || self.discard_until_sync {
            return Ok(None);
        }
        // Decided again: what was in flight may have committed a write this read must see.
        Ok(Some(self.decide_with_fallback(work).await?))
    }

    /// The attached connection holds the session: a transaction block, a pin or session mode.
    pub(super) fn holds_session(&self, attached: &Attached) -> bool {
        let in_transaction =
            attached.checkout.conn.tx_status != b'I' || self.in_flight.opens_transaction();
        in_transaction || self.session_mode() || self.state.pin().is_some()
    }

    /// Ends a unit the client cut at Flush that bound no portal (it parsed or described
    /// statements, which the session re-prepares wherever it goes) with a Sync of pgsplit's
    /// own: the answers before its ReadyForQuery go to the client as they come (a client may
    /// send on without waiting for them), the ReadyForQuery stays here; the client's own Sync
    /// comes later and is answered like any other. asyncpg describes a COPY's target on a
    /// replica, say, then sends the COPY: it must reach the primary. (Had the cut unit failed,
    /// the server would skip the client's next messages up to its Sync: so does pgsplit, see
    /// [`Session::discard_until_sync`].)
    async fn close_cut_unit(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let Some(attached) = self.server.as_mut() else {
            return Ok(());
        };
        attached.checkout.conn.write_all(SYNC).await?;
        while let Some(attached) = self.server.as_mut() {
            let conn = &mut attached.checkout.conn;
            let frame = conn.read_frame().await?;
            conn.observe(&frame);
            if frame.tag == tag::READY_FOR_QUERY {
                break;
            }
            if frame.tag == tag::ERROR_RESPONSE {
                self.note_server_error(&frame);
            }
            if self.responses.pass_to_client(&frame) {
                client.out.extend_from_slice(&frame.bytes);
            }
        }
        self.discard_until_sync = self.in_flight.failed;
        self.unit_answered();
        Ok(())
    }

    /// Drops client messages while `discard_until_sync` holds; a Sync among them ends the
    /// discarding and gets its ReadyForQuery, as from a server that skipped them after an error.
    pub(super) fn discard_unit(&mut self, client: &mut ClientConn, frames: &[Frame]) {
        if frames.iter().any(|f| f.tag == tag::SYNC) {
            self.discard_until_sync = false;
            client.writer().ready_for_query(self.transaction_status());
        }
    }

    /// SQL-level prepared statements that this unit EXECUTEs (or re-PREPAREs) made ready on the
    /// connection, before the unit is sent. Only possible between units: pipelined behind
    /// unanswered work, an EXECUTE of a statement prepared elsewhere gets the server's error.
    pub(super) async fn prepare_sql_statements(
        &mut self,
        work: &Work,
    ) -> Result<(), FrontendError> {
        let Some(attached) = self.server.as_mut() else {
            return Ok(());
        };
        if self.pending > 0 {
            return Ok(());
        }
        let conn = &mut attached.checkout.conn;
        let mut sql = String::new();
        for effect in work.effects.iter() {
            match effect {
                SessionEffect::Execute { name } => {
                    if let Some(prepare) = self.state.sql_prepared.get(name)
                        && conn.sql_prepared.get(name) != Some(prepare)
                    {
                        if conn.sql_prepared.contains_key(name) {
                            sql.push_str(&format!(
                                "DEALLOCATE {};",
                                super::state::quote_ident(name)
                            ));
                        }
                        sql.push_str(prepare);
                        sql.push(';');
                        conn.sql_prepared.insert(name.clone(), prepare.clone());
                    }
                }
                SessionEffect::Prepare { name, .. } if conn.sql_prepared.remove(name).is_some() => {
                    sql.push_str(&format!("DEALLOCATE {};", super::state::quote_ident(name)));
                }
                _ => {}
            }
        }
        if !sql.is_empty() {
            conn.run_internal(&sql).await?;
        }
        Ok(())
    }
}

/// Brings a connection's settings to the session's: SET what differs, RESET what the
/// connection has and the session does not. One round trip, and none when they match.
async fn sync_settings(conn: &mut ServerConn, state: &SessionState) -> Result<(), FrontendError> {
    let desired = state.desired_settings();
    if conn.settings.same_as(desired) {
        return Ok(());
    }
    let mut sql = String::new();
    for (name, want) in desired.iter() {
        if conn.settings.get(name) != Some(want) {
            sql.push_str(want);
            sql.push(';');
        }
    }
    for (name, _) in conn.settings.iter() {
        if desired.get(name).is_none() {
            sql.push_str(&format!("RESET {};", super::state::quote_ident(name)));
        }
    }
    if !sql.is_empty()
        && let Err(e) = conn.run_internal(&sql).await
    {
        // Its settings are now unknown: start over from nothing rather than guess.
        conn.settings.clear();
        return Err(e.into());
    }
    conn.settings = desired.clone();
    Ok(())
}
