//! One client session: login, then the relay loop. Client messages are gathered into units (a
//! Query, or extended-protocol messages up to Sync or Flush); each unit that finds no server
//! attached goes through the routing decision and borrows a connection, which goes back to the
//! pool when the unit ends outside a transaction block (transaction pooling).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::{BackendError, ConnectSpec, ServerConn};
use crate::config::PoolMode;
use crate::hint::{Hints, session_command};
use crate::pool::{Checkout, PoolKey};
use crate::protocol::{ErrorFields, Frame, SqlState, StartupParams, tag};
use crate::route::classify::{Access, SessionEffect, TxControl};
use crate::route::{Reason, Route};
use crate::topology::monitor::{format_lsn, parse_lsn};
use crate::topology::{Node, Role, WorkGuard};

use super::Shared;
use super::cancel::{CancelHandle, CancelTarget};
use super::client::ClientConn;
use super::commands::{is_pgsplit_setting, startup_hints};
use super::error::FrontendError;
use super::forward::ResponseFilter;
use super::login::{self, Opening, ServerCredentials};
use super::recovery::{MAX_RETRIES, Replay, Screened};
use super::state::{SessionState, UnitOutcome};
use super::work::{self, Work};

/// A unit gathering more than this many bytes is dispatched without waiting for its Sync, so
/// a client's pipeline never grows pgsplit's memory without bound.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Runs a client connection from its first byte to its end.
pub async fn run(mut client: ClientConn, shared: Arc<Shared>, peer: IpAddr) {
    let login_timeout = shared.live().config.timeouts.client_login;
    let opened =
        tokio::time::timeout(login_timeout, open_session(&mut client, &shared, peer)).await;
    let mut session = match opened {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "session refused");
            e.report(&mut client).await;
            return;
        }
        Err(_) => {
            let e = FrontendError::refuse(
                SqlState::CANNOT_CONNECT_NOW,
                format!("login not completed within {login_timeout:?}"),
            );
            e.report(&mut client).await;
            return;
        }
    };
    let result = session.relay(&mut client).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "session ended");
        e.report(&mut client).await;
    }
    session.finish();
}

/// Startup, authentication and the greeting; None for a cancel request.
async fn open_session(
    client: &mut ClientConn,
    shared: &Arc<Shared>,
    peer: IpAddr,
) -> Result<Option<Session>, FrontendError> {
    let params = match login::read_opening(client, shared).await? {
        Opening::Cancelled => return Ok(None),
        Opening::Session(params) => params,
    };
    let credentials = login::authenticate(client, shared, &params).await?;
    let mut session = Session::new(shared.clone(), &params, credentials, peer);
    session.attach_login(client).await?;
    session.greet(client).await?;
    session.release_if_idle();
    Ok(Some(session))
}

/// The connection a session is using, and why it went there.
pub(super) struct Attached {
    pub(super) checkout: Checkout,
    pub(super) route: Route,
    /// The unit in progress on the node, for least-connections and response times.
    pub(super) work: Option<WorkGuard>,
}

pub struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) database: String,
    pub(super) options: String,
    pub(super) credentials: ServerCredentials,
    pub(super) client_ip: IpAddr,
    pub(super) cancel: CancelHandle,
    pub(super) state: SessionState,
    pub(super) server: Option<Attached>,
    /// Queries, Syncs and function calls sent whose ReadyForQuery has not come back yet.
    pub(super) pending: usize,
    /// Extended-protocol messages waiting for their Sync or Flush.
    pub(super) batch: Vec<Frame>,
    pub(super) batch_bytes: usize,
    /// Bytes for the server, written once per batch of client messages.
    pub(super) to_server: BytesMut,
    /// Drops the answers to messages pgsplit itself injected (re-preparing statements).
    pub(super) responses: ResponseFilter,
    /// What the unit in progress did, applied to the session state when it ends.
    pub(super) unit: Work,
    pub(super) unit_failed: bool,
    /// After a unit failed before reaching a server, its messages up to Sync are dropped, as
    /// PostgreSQL does after an error.
    pub(super) discard_until_sync: bool,
    /// pgsplit checked the client's password, or a server accepted the client's credentials.
    pub(super) identity_confirmed: bool,
    /// Where the last balanced read went: statement preparation follows it there.
    pub(super) last_read_node: Option<Arc<Node>>,
    /// The WAL position at or after the session's last committed write (0: none yet). A
    /// replica serves the session's reads only once it has replayed this far.
    pub(super) causal_lsn: u64,
    /// A unit since the last transaction end wrote: its commit needs a new causal token.
    pub(super) wrote: bool,
    /// The session's `pgsplit.*` settings (from SET or the startup packet).
    pub(super) hints: Hints,
    /// `SET LOCAL pgsplit.*`: until the transaction block ends.
    pub(super) local_hints: Hints,
    /// Monotonic reads: the WAL position the session's reads have already seen.
    pub(super) read_floor: u64,
    /// The ReadyForQuery that ends a committed write, held back until the causal token is
    /// known, so the client has the token (ParameterStatus) when its commit returns.
    pub(super) held_ready: Option<Frame>,
    /// The unit in flight, while it may still run again elsewhere.
    pub(super) replay: Option<Replay>,
    /// The next routing decision is a retry that must go to the primary.
    pub(super) force_primary: bool,
    /// How many times the unit being dispatched was already tried.
    pub(super) retries: usize,
    /// The replica the balancer chose for a unit that only prepared statements: the unit that
    /// runs them goes there too, so one query takes one balancer turn.
    pub(super) prepared_on: Option<Arc<Node>>,
}

impl Session {
    fn new(
        shared: Arc<Shared>,
        params: &StartupParams,
        credentials: ServerCredentials,
        client_ip: IpAddr,
    ) -> Session {
        let settings = params
            .session_settings()
            .filter(|(name, _)| *name != "options" && !is_pgsplit_setting(name))
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let (options, from_options) =
            super::options::split_options(params.get("options").unwrap_or_default());
        let from_params = params
            .session_settings()
            .filter(|(name, _)| is_pgsplit_setting(name))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()));
        let hints = startup_hints(from_params.chain(from_options));
        let cancel = shared.cancels.register();
        let identity_confirmed = !shared.live().users.is_empty();
        Session {
            database: params.database().unwrap_or_default().to_string(),
            options,
            credentials,
            client_ip,
            cancel,
            state: SessionState::new(settings),
            server: None,
            pending: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            to_server: BytesMut::with_capacity(8 * 1024),
            responses: ResponseFilter::default(),
            unit: Work::default(),
            unit_failed: false,
            discard_until_sync: false,
            identity_confirmed,
            last_read_node: None,
            causal_lsn: 0,
            wrote: false,
            hints,
            local_hints: Hints::default(),
            read_floor: 0,
            held_ready: None,
            replay: None,
            force_primary: false,
            retries: 0,
            prepared_on: None,
            shared,
        }
    }

    pub(super) fn session_mode(&self) -> bool {
        self.shared.live().config.pool.mode == PoolMode::Session
    }

    /// The first connection, which checks a pass-through login and gives the greeting its
    /// parameters. Any server can do that: the primary first, else a replica, so that clients
    /// can still log in (and read) while the primary is down. In session mode, the primary.
    async fn attach_login(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let topology = self.shared.topology.load_full();
        let cluster = topology.cluster_for_database(&self.database);
        let reason = if self.session_mode() {
            Reason::SessionMode
        } else {
            Reason::Login
        };
        let mut nodes: Vec<&Arc<Node>> = std::iter::once(&cluster.primary)
            .chain(&cluster.replicas)
            .collect();
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

    /// AuthenticationOk, the server's ParameterStatus, our own BackendKeyData, ReadyForQuery.
    async fn greet(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let mut w = client.writer();
        w.authentication(0, &[]);
        if let Some(attached) = &self.server {
            let mut params: Vec<_> = attached.checkout.conn.params.iter().collect();
            params.sort();
            for (name, value) in params {
                w.parameter_status(name, value);
            }
        }
        w.backend_key_data(self.cancel.key);
        w.ready_for_query(b'I');
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    /// Borrows a connection to the route's node and brings it to the session's state. In
    /// pass-through mode, a server that wants a password makes us ask the client for it once.
    async fn attach(&mut self, client: &mut ClientConn, route: Route) -> Result<(), FrontendError> {
        let checkout = match self.checkout(&route).await {
            Err(FrontendError::Backend(e)) if e.needs_password() && !self.identity_confirmed => {
                self.credentials.password = Some(login::ask_cleartext_password(client).await?);
                self.checkout(&route).await?
            }
            other => other?,
        };
        self.identity_confirmed = true;
        self.cancel.set_target(Some(CancelTarget {
            addr: checkout.conn.addr.clone(),
            key: checkout.conn.key,
        }));
        self.shared.route_counters.record(route.reason);
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

    async fn checkout(&self, route: &Route) -> Result<Checkout, FrontendError> {
        let node = &route.node;
        let key = PoolKey {
            node: node.name.clone(),
            database: self.database.clone(),
            user: self.credentials.user.clone(),
            options: self.options.clone(),
        };
        let mut startup = vec![
            ("user".to_string(), self.credentials.user.clone()),
            ("database".to_string(), self.database.clone()),
        ];
        if !self.options.is_empty() {
            startup.push(("options".to_string(), self.options.clone()));
        }
        let spec = ConnectSpec {
            node: node.name.clone(),
            addr: node.addr.clone(),
            startup,
            password: self.credentials.password.clone(),
            timeout: self.shared.live().config.timeouts.connect,
        };
        // In pass-through mode nobody but the server can check a password: a login gets a
        // connection of its own rather than one another client authenticated.
        let fresh = !self.identity_confirmed;
        let mut checkout = self.shared.pools.checkout(&key, &spec, fresh).await?;
        sync_settings(&mut checkout.conn, &self.state).await?;
        Ok(checkout)
    }

    /// Gives the connection back to the pool when nothing ties the session to it: transaction
    /// pooling, outside a transaction block, nothing in flight, nothing pinned.
    pub(super) fn release_if_idle(&mut self) {
        let Some(attached) = &self.server else {
            return;
        };
        let conn = &attached.checkout.conn;
        let idle = self.pending == 0
            && conn.tx_status == b'I'
            && self.batch.is_empty()
            && self.responses.is_settled();
        if idle
            && !self.session_mode()
            && self.state.pin().is_none()
            && let Some(attached) = self.server.take()
        {
            self.cancel.set_target(None);
            self.shared.pools.checkin(attached.checkout);
        }
    }

    /// Relays until the client leaves (Ok) or something breaks (Err, reported to the client).
    async fn relay(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let mut shutdown = self.shared.shutdown_signal();
        // While work is in flight, its node's health is looked at this often: a node banned
        // meanwhile (hung) gives up its work rather than hold the client.
        let mut health_tick = tokio::time::interval(std::time::Duration::from_millis(100));
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.take_client_messages(client).await? {
                return Ok(());
            }
            self.forward_server_messages(client).await?;
            let watch_health = self.pending > 0 && self.server.is_some();
            // A shutdown waits for the transaction in progress, not only the statement.
            let between_transactions = self.pending == 0 && self.transaction_status() == b'I';
            let server = self.server.as_mut().map(|a| &mut a.checkout.conn);
            tokio::select! {
                more = client.fill() => {
                    if !more? {
                        return Ok(());
                    }
                }
                filled = fill_server(server) => {
                    if let Err(e) = filled {
                        self.server_failed(client, e).await?;
                    }
                }
                _ = health_tick.tick(), if watch_health => {
                    if let Some(attached) = &self.server
                        && !attached.route.node.is_available()
                    {
                        let node = &attached.route.node;
                        let error = BackendError::Lost {
                            node: node.name.clone(),
                            addr: node.addr.clone(),
                            reason: node.stats.health.ban_reason().unwrap_or_else(|| "its health checks fail".to_string()),
                        };
                        self.server_failed(client, error).await?;
                    }
                }
                _ = super::stopping(&mut shutdown), if between_transactions => {
                    return Err(FrontendError::refuse(SqlState::ADMIN_SHUTDOWN, "terminating connection because pgsplit is shutting down"));
                }
            }
        }
    }

    /// Takes every whole client message in the buffer: gathers units and dispatches them.
    /// Ok(false) on Terminate.
    async fn take_client_messages(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<bool, FrontendError> {
        while let Some(frame) = client.next_buffered_frame()? {
            match frame.tag {
                tag::TERMINATE => return Ok(false),
                tag::PASSWORD => {
                    return Err(FrontendError::refuse(
                        SqlState::PROTOCOL_VIOLATION,
                        "unexpected password message after authentication",
                    ));
                }
                tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => self.forward_copy(frame),
                tag::QUERY | tag::FUNCTION_CALL => {
                    self.dispatch_batch(client).await?;
                    self.dispatch(client, vec![frame]).await?;
                }
                _ if self.discard_until_sync => {
                    if frame.tag == tag::SYNC {
                        self.discard_until_sync = false;
                        client.writer().ready_for_query(self.transaction_status());
                    }
                }
                tag::SYNC | tag::FLUSH => {
                    self.push_batch(frame);
                    self.dispatch_batch(client).await?;
                }
                _ => {
                    self.push_batch(frame);
                    if self.batch_bytes > MAX_BATCH_BYTES {
                        self.dispatch_batch(client).await?;
                    }
                }
            }
        }
        self.flush_to_server().await?;
        client
            .flush()
            .await
            .map_err(|_| FrontendError::ClientGone)?;
        Ok(true)
    }

    fn push_batch(&mut self, frame: Frame) {
        self.batch_bytes += frame.bytes.len();
        self.batch.push(frame);
    }

    async fn dispatch_batch(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let frames = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.dispatch(client, frames).await
    }

    /// Sends one unit to a server: routes it if no server is attached, readies the connection
    /// for what it runs, and forwards it. A unit that cannot reach a server gets an error, and
    /// the session carries on.
    pub(super) async fn dispatch(
        &mut self,
        client: &mut ClientConn,
        frames: Vec<Frame>,
    ) -> Result<(), FrontendError> {
        if let [frame] = frames.as_slice()
            && frame.tag == tag::QUERY
            && let Some(command) =
                crate::protocol::messages::query_text(frame.body()).and_then(session_command)
        {
            // Answers pgsplit gives itself come after the answers to what is already in flight.
            self.settle(client).await?;
            self.answer_session_command(client, command);
            return Ok(());
        }
        let work = work::describe(&frames, &self.state, &self.shared.live().classifier);
        if let Some(inner) = &work.explain_route {
            self.settle(client).await?;
            self.explain_route(client, inner);
            return Ok(());
        }
        for warning in &work.warnings {
            client
                .writer()
                .notice_response(&ErrorFields::warning(warning.to_string()));
        }
        if let Err(e) = self.attach_for(client, &work).await {
            return self.fail_unit(client, e, &frames);
        }
        self.prepared_on = match &self.server {
            Some(attached)
                if !work.executes && matches!(attached.route.reason, Reason::Balanced(_)) =>
            {
                Some(attached.route.node.clone())
            }
            _ if work.executes => None,
            _ => self.prepared_on.take(),
        };
        self.replay = self.may_retry(&work).then(|| Replay {
            frames: frames.clone(),
            attempts: self.retries,
            ..Default::default()
        });
        self.note_read_position(&work);
        if let Err(e) = self.prepare_sql_statements(&work).await {
            return self.fail_unit(client, e, &frames);
        }
        self.state.add_pins(&work.effects);
        if let Some(attached) = self.server.as_mut() {
            let node = &attached.route.node;
            match work.access() {
                Access::Write => {
                    node.stats.count_write();
                    self.wrote |= work.executes;
                }
                Access::Read => node.stats.count_read(),
            }
            attached.work.get_or_insert_with(|| node.start_work());
        }
        self.unit.tx.extend(work.tx);
        self.unit.effects.extend(work.effects);
        for frame in frames {
            self.forward(frame);
        }
        Ok(())
    }

    /// Routes the unit and borrows a connection for it (unless it stays on the attached one).
    /// A replica that cannot be reached is banned and the unit routed again, so the client
    /// never learns of it; a primary known to be down fails the unit at once.
    async fn attach_for(
        &mut self,
        client: &mut ClientConn,
        work: &Work,
    ) -> Result<(), FrontendError> {
        let mut tries = 0;
        loop {
            let Some(route) = self.route_for(client, work).await? else {
                return Ok(());
            };
            self.check_primary_up(route.reason, &route.node)?;
            let node = route.node.clone();
            match self.attach(client, route).await {
                Err(FrontendError::Backend(e))
                    if e.is_unreachable()
                        && node.role() == Role::Replica
                        && tries < MAX_RETRIES =>
                {
                    tracing::info!(node = %node.name, error = %e, "replica unreachable; routing the unit again");
                    node.stats.health.ban(
                        &node.name,
                        &e.to_string(),
                        self.shared.live().config.health.ban_time,
                    );
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// A read on a replica, outside any transaction or pin, with nothing else in flight: if its
    /// server fails before answering, it can run again elsewhere.
    fn may_retry(&self, work: &Work) -> bool {
        let Some(attached) = &self.server else {
            return false;
        };
        work.access() == Access::Read
            && work.executes
            && self.pending == 0
            && attached.checkout.conn.tx_status == b'I'
            && !opens_transaction(&work.tx)
            && self.state.pin().is_none()
            && attached.route.node.role() == Role::Replica
    }

    /// Where a unit goes: None to stay on the attached connection, which it must inside a
    /// transaction block or when pinned. A unit arriving behind unanswered ones that belongs
    /// elsewhere waits for them (their answers reach the client meanwhile) and the connection's
    /// release, so pipelining never sends a write to a replica.
    async fn route_for(
        &mut self,
        client: &mut ClientConn,
        work: &Work,
    ) -> Result<Option<Route>, FrontendError> {
        let Some(attached) = &self.server else {
            return Ok(Some(self.decide_with_fallback(work).await?));
        };
        if self.stays_on_attached(attached) {
            return Ok(None);
        }
        let route = self.decide_with_fallback(work).await?;
        if Arc::ptr_eq(&route.node, &attached.route.node) {
            return Ok(None);
        }
        self.settle(client).await?;
        Ok(if self.server.is_some() {
            None
        } else {
            Some(route)
        })
    }

    /// The attached connection holds the session: a transaction block, a pin, session mode, or
    /// a unit cut at Flush that has not reached its Sync.
    fn stays_on_attached(&self, attached: &Attached) -> bool {
        let in_transaction =
            attached.checkout.conn.tx_status != b'I' || opens_transaction(&self.unit.tx);
        in_transaction || self.pending == 0 || self.session_mode() || self.state.pin().is_some()
    }

    /// Sends what is queued and relays answers until nothing is in flight.
    pub(super) async fn settle(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        self.flush_to_server().await?;
        while self.pending > 0 {
            let Some(attached) = self.server.as_mut() else {
                break;
            };
            attached.checkout.conn.fill().await?;
            self.forward_server_messages(client).await?;
        }
        Ok(())
    }

    /// SQL-level prepared statements that this unit EXECUTEs (or re-PREPAREs) made ready on the
    /// connection, before the unit is sent. Only possible between units: pipelined behind
    /// unanswered work, an EXECUTE of a statement prepared elsewhere gets the server's error.
    async fn prepare_sql_statements(&mut self, work: &Work) -> Result<(), FrontendError> {
        let Some(attached) = self.server.as_mut() else {
            return Ok(());
        };
        if self.pending > 0 {
            return Ok(());
        }
        let conn = &mut attached.checkout.conn;
        let mut sql = String::new();
        for effect in &work.effects {
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

    /// Answers a unit that never reached a server with an ErrorResponse, as PostgreSQL would
    /// answer a failed statement, keeping the session alive.
    fn fail_unit(
        &mut self,
        client: &mut ClientConn,
        e: FrontendError,
        frames: &[Frame],
    ) -> Result<(), FrontendError> {
        tracing::warn!(error = %e, "unit failed before reaching a server");
        match &e {
            FrontendError::Backend(crate::backend::BackendError::Server(raw)) => {
                client
                    .out
                    .extend_from_slice(&crate::protocol::with_severity(raw, "ERROR"));
            }
            FrontendError::Backend(other) => {
                client.writer().error_response(&other.to_client_error())
            }
            FrontendError::Refused(fields) => {
                let mut fields = fields.clone();
                fields.severity = "ERROR";
                client.writer().error_response(&fields);
            }
            _ => return Err(e),
        }
        let last = frames.last().map(|f| f.tag);
        if matches!(last, Some(tag::SYNC | tag::QUERY | tag::FUNCTION_CALL)) {
            client.writer().ready_for_query(self.transaction_status());
        } else {
            self.discard_until_sync = true;
        }
        self.release_if_idle();
        Ok(())
    }

    pub(super) fn transaction_status(&self) -> u8 {
        self.server
            .as_ref()
            .map_or(b'I', |a| a.checkout.conn.tx_status)
    }

    /// COPY data goes straight to the server running the COPY.
    fn forward_copy(&mut self, frame: Frame) {
        if self.server.is_some() {
            self.to_server.extend_from_slice(&frame.bytes);
        }
    }

    /// Appends one client message for the server, re-preparing on this connection any named
    /// statement the session prepared elsewhere.
    fn forward(&mut self, frame: Frame) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        if matches!(frame.tag, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL) {
            self.pending += 1;
        }
        self.responses.forward(
            &frame,
            &mut attached.checkout.conn,
            &mut self.state,
            &mut self.to_server,
        );
    }

    async fn flush_to_server(&mut self) -> Result<(), FrontendError> {
        if self.to_server.is_empty() {
            return Ok(());
        }
        let Some(attached) = self.server.as_mut() else {
            self.to_server.clear();
            return Ok(());
        };
        attached.checkout.conn.write_all(&self.to_server).await?;
        self.to_server.clear();
        Ok(())
    }

    /// Passes every whole server message in the buffer to the client (but the answers to
    /// pgsplit's own messages), keeping the records current and ending units at ReadyForQuery.
    async fn forward_server_messages(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let mut retry = false;
        while let Some(attached) = self.server.as_mut() {
            let Some(frame) = attached.checkout.conn.next_buffered_frame()? else {
                break;
            };
            attached.checkout.conn.observe(&frame);
            if !self.responses.pass_to_client(&frame) {
                continue;
            }
            if let Some(replay) = &self.replay {
                if frame.tag == tag::READY_FOR_QUERY && replay.on_primary {
                    self.pending = self.pending.saturating_sub(1);
                    if self.pending == 0 {
                        retry = true;
                        break;
                    }
                    continue;
                }
                if frame.tag == tag::READY_FOR_QUERY {
                    self.commit_to_answer(client);
                } else {
                    match self.screen(&frame) {
                        Screened::Keep => continue,
                        Screened::Pass => self.commit_to_answer(client),
                    }
                }
            }
            match frame.tag {
                tag::ERROR_RESPONSE => self.unit_failed = true,
                tag::READY_FOR_QUERY => {
                    self.pending = self.pending.saturating_sub(1);
                    let commits_a_write =
                        self.pending == 0 && self.wrote && frame.body().first() == Some(&b'I');
                    if commits_a_write {
                        self.held_ready = Some(frame);
                    } else {
                        client.out.extend_from_slice(&frame.bytes);
                    }
                    if self.pending == 0 {
                        self.end_unit();
                    }
                    continue;
                }
                _ => {}
            }
            client.out.extend_from_slice(&frame.bytes);
        }
        if retry {
            return Box::pin(self.retry_unit(client)).await;
        }
        if self.held_ready.is_some() {
            self.take_causal_token(client).await?;
        }
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    /// A unit is over: its effects enter the session's state (and the connection's record),
    /// and the connection may go back to the pool.
    fn end_unit(&mut self) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        if let Some(work) = attached.work.take() {
            let elapsed = work.elapsed();
            work.finish(elapsed);
        }
        let conn = &mut attached.checkout.conn;
        let unit = std::mem::take(&mut self.unit);
        let outcome = UnitOutcome {
            status: conn.tx_status,
            failed: std::mem::take(&mut self.unit_failed),
        };
        let applied = self.state.finish_unit(unit.effects, &unit.tx, outcome);
        if outcome.status == b'I' {
            self.local_hints = Hints::default();
        }
        if applied
            .iter()
            .any(|e| matches!(e, SessionEffect::ResetAll | SessionEffect::DiscardAll))
        {
            // RESET ALL and DISCARD ALL reset pgsplit's settings too, as they would a server's.
            self.hints = Hints::default();
        }
        super::state::record_on_connection(conn, &applied);
        // The connection is released once the causal token of a committed write is known.
        if !(self.wrote && outcome.status == b'I') {
            self.release_if_idle();
        }
    }

    /// After a write committed, learns a WAL position at or after its commit record, on the
    /// connection that committed it (one small round trip per write, none per read), and tells
    /// the client as ParameterStatus `pgsplit.causal_token` before its commit's ReadyForQuery.
    async fn take_causal_token(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let held = self.held_ready.take();
        if let Some(attached) = self.server.as_mut() {
            self.wrote = false;
            let conn = &mut attached.checkout.conn;
            let position = conn
                .run_internal("SELECT pg_current_wal_insert_lsn()::text")
                .await?;
            if let Some(lsn) = position.as_deref().and_then(parse_lsn)
                && lsn > self.causal_lsn
            {
                self.causal_lsn = lsn;
                client
                    .writer()
                    .parameter_status("pgsplit.causal_token", &format_lsn(lsn));
            }
        }
        if let Some(ready) = held {
            client.out.extend_from_slice(&ready.bytes);
        }
        self.release_if_idle();
        Ok(())
    }

    /// Returns a connection still attached at the end to the pool, reset, in the background
    /// so the client's task ends at once.
    fn finish(mut self) {
        self.cancel.set_target(None);
        let Some(attached) = self.server.take() else {
            return;
        };
        let checkout = attached.checkout;
        if self.pending > 0 || checkout.conn.tx_status != b'I' {
            return; // mid-statement or mid-transaction: dropping closes it
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut checkout = checkout;
            if checkout.conn.run_internal("DISCARD ALL").await.is_ok() {
                checkout.conn.forget_session_state();
                shared.pools.checkin(checkout);
            }
        });
    }
}

/// The unit so far has opened a transaction block that it has not closed.
pub(super) fn opens_transaction(tx: &[TxControl]) -> bool {
    tx.iter().fold(false, |open, t| match t {
        TxControl::Begin { .. } => true,
        TxControl::Commit | TxControl::Rollback => false,
        _ => open,
    })
}

async fn fill_server(server: Option<&mut ServerConn>) -> Result<(), BackendError> {
    match server {
        Some(conn) => conn.fill().await,
        None => std::future::pending().await,
    }
}

/// Brings a connection's settings to the session's: SET what differs, RESET what the
/// connection has and the session does not. One round trip, and none when they match.
async fn sync_settings(conn: &mut ServerConn, state: &SessionState) -> Result<(), FrontendError> {
    let mut sql = String::new();
    for (name, want) in state.desired_settings() {
        if conn.settings.get(name).map(String::as_str) != Some(want) {
            sql.push_str(want);
            sql.push(';');
        }
    }
    let stale: Vec<String> = conn
        .settings
        .keys()
        .filter(|name| !state.desired_settings().any(|(n, _)| n == name.as_str()))
        .cloned()
        .collect();
    for name in &stale {
        sql.push_str(&format!("RESET {};", super::state::quote_ident(name)));
    }
    if sql.is_empty() {
        return Ok(());
    }
    if let Err(e) = conn.run_internal(&sql).await {
        // Its settings are now unknown: start over from nothing rather than guess.
        conn.settings.clear();
        return Err(e.into());
    }
    for name in stale {
        conn.settings.remove(&name);
    }
    for (name, want) in state.desired_settings() {
        conn.settings.insert(name.to_string(), want.to_string());
    }
    Ok(())
}
