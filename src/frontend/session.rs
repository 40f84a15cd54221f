//! One client session: login, then the relay loop. Client messages are gathered into units (a
//! Query, or extended-protocol messages up to Sync or Flush); each unit that finds no server
//! attached goes through the routing decision and borrows a connection, which goes back to the
//! pool when the unit ends outside a transaction block (transaction pooling).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::{BackendError, ServerConn};
use crate::hint::{Hints, session_command};
use crate::pool::Checkout;
use crate::protocol::{ErrorFields, Frame, SqlState, StartupParams, tag};
use crate::route::classify::Access;
use crate::route::{Reason, Route};
use crate::topology::{Node, WorkGuard};

use super::Shared;
use super::cancel::CancelHandle;
use super::client::{ClientConn, IdleLimit};
use super::commands::{is_pgsplit_setting, startup_hints};
use super::console::Console;
use super::error::FrontendError;
use super::forward::ResponseFilter;
use super::login::{self, Opening, ServerCredentials};
use super::recovery::{Replay, Step};
use super::state::{SessionState, UnitOutcome, changes_local_settings};
use super::work;

/// A unit gathering more than this many bytes is dispatched without waiting for its Sync, so
/// a client's pipeline never grows pgsplit's memory without bound.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The frames of a typical extended-protocol unit (Parse, Bind, Describe, Execute, Sync, and
/// a Close or two).
const UNIT_FRAMES: usize = 8;

/// Runs a client connection from its first byte to its end.
pub async fn run(mut client: ClientConn, shared: Arc<Shared>, peer: IpAddr) {
    let login_timeout = shared.live().config.timeouts.client_login;
    let opened =
        tokio::time::timeout(login_timeout, open_session(&mut client, &shared, peer)).await;
    let mut session = match opened {
        Ok(Ok(Some(Opened::Session(session)))) => *session,
        Ok(Ok(Some(Opened::Console(console)))) => return console.serve(&mut client).await,
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

/// What a login opened: a session relayed to servers, or the admin console.
enum Opened {
    Session(Box<Session>),
    Console(Console),
}

/// Startup, authentication and the greeting; None for a cancel request.
async fn open_session(
    client: &mut ClientConn,
    shared: &Arc<Shared>,
    peer: IpAddr,
) -> Result<Option<Opened>, FrontendError> {
    let params = match login::read_opening(client, shared).await? {
        Opening::Cancelled => return Ok(None),
        Opening::Session(params) => params,
    };
    let credentials = login::authenticate(client, shared, &params).await?;
    let console = Console::admit(shared, &params)?;
    let mut session = Session::new(shared.clone(), &params, credentials, peer);
    let span = tracing::Span::current();
    span.record("id", session.cancel.key.pid);
    span.record("user", params.user().unwrap_or_default());
    span.record("database", session.database.as_str());
    if let Some(console) = console {
        // Only a server can check a pass-through password: on a real database, never "pgsplit".
        if !session.identity_confirmed {
            session.database = console.login_database();
            session.attach_login(client).await?;
        }
        session.finish();
        return Ok(Some(Opened::Console(console)));
    }
    session.attach_login(client).await?;
    session.greet(client).await?;
    session.release_if_idle();
    Ok(Some(Opened::Session(Box::new(session))))
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
    /// A Bind went out since the last Sync (or Query): a portal may be open on the server.
    pub(super) bound_since_sync: bool,
    /// Extended-protocol messages waiting for their Sync or Flush.
    pub(super) batch: Vec<Frame>,
    pub(super) batch_bytes: usize,
    /// Bytes for the server, written once per batch of client messages.
    pub(super) to_server: BytesMut,
    /// Drops the answers to messages pgsplit itself injected (re-preparing statements).
    pub(super) responses: ResponseFilter,
    /// What the units in flight do, taken into the session state as each is answered.
    pub(super) in_flight: super::in_flight::InFlight,
    /// After a unit failed before reaching a server (or a unit cut at Flush failed when pgsplit
    /// closed it), the client's messages up to its Sync are dropped, simple queries included,
    /// as PostgreSQL does after an error.
    pub(super) discard_until_sync: bool,
    /// pgsplit checked the client's password, or a server accepted the client's credentials.
    pub(super) identity_confirmed: bool,
    /// Where the last balanced read went: statement preparation follows it there.
    pub(super) last_read_node: Option<Arc<Node>>,
    /// The WAL position at or after the session's last committed write, per cluster (a shard
    /// has WAL positions of its own). A replica serves the session's reads only once it has
    /// replayed this far.
    pub(super) causal: std::collections::HashMap<String, u64>,
    /// Committed writes whose positions are not known yet (`causal_token = "on_read"`).
    pub(super) unasked: Vec<super::causal::UnaskedCommit>,
    /// The cluster the unit being dispatched goes to, when sharding picked one.
    pub(super) unit_cluster: Option<String>,
    /// A bare `BEGIN`, answered and held until the transaction's first statement.
    pub(super) held_begin: Option<super::held_begin::HeldBegin>,
    /// The other shards' connections of a transaction across shards (two-phase commit).
    pub(super) multi_shard: super::sharding::MultiShard,
    /// A unit since the last transaction end wrote: its commit needs a new causal token.
    pub(super) wrote: bool,
    /// The session's `pgsplit.*` settings (from SET or the startup packet).
    pub(super) hints: Hints,
    /// `SET LOCAL pgsplit.*`: until the transaction block ends.
    pub(super) local_hints: Hints,
    /// `SET pgsplit.shard_key` / `pgsplit.shard`: where statements without a key of their own go.
    pub(super) shard_choice: Option<crate::hint::ShardHint>,
    /// Monotonic reads: the WAL position the session's reads have already seen.
    pub(super) read_floor: u64,
    /// The ReadyForQuery that ends a committed write, held back until the causal token is
    /// known, so the client has the token (ParameterStatus) when its commit returns.
    pub(super) held_ready: Option<Frame>,
    /// The unit in flight, while it may still run again elsewhere.
    pub(super) replay: Option<Replay>,
    /// The buffer of the last replay's held answers, kept for the next one: a retryable read
    /// then holds its answers without allocating.
    pub(super) spare_held: BytesMut,
    /// The next routing decision is a retry that must go to the primary.
    pub(super) force_primary: bool,
    /// How many times the unit being dispatched was already tried.
    pub(super) retries: usize,
    /// A read whose answer fills the result cache.
    pub(super) fill: Option<super::caching::Fill>,
    /// The session's pools, by node, as found so far.
    pub(super) pool_handles: std::sync::Mutex<Vec<crate::pool::PoolHandle>>,
    /// What the transaction's writes will drop from the cache when it commits.
    pub(super) pending_writes: Option<crate::cache::WriteScope>,
    /// What a commit's writes drop from the cache once its WAL position is known.
    pub(super) committed_writes: Option<crate::cache::WriteScope>,
    /// The unit's first statement text, kept only while slow queries are logged.
    pub(super) unit_text: Option<String>,
    /// The replica the balancer chose for a unit that only prepared statements: the unit that
    /// runs them goes there too, so one query takes one balancer turn.
    pub(super) prepared_on: Option<Arc<Node>>,
    /// The connection that holds what the session's `nextval()` calls left.
    pub(super) sequences: super::sequences::SequenceHome,
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
        let (hints, shard_choice) = startup_hints(from_params.chain(from_options));
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
            bound_since_sync: false,
            batch: Vec::new(),
            batch_bytes: 0,
            to_server: BytesMut::with_capacity(8 * 1024),
            responses: ResponseFilter::default(),
            in_flight: Default::default(),
            discard_until_sync: false,
            identity_confirmed,
            last_read_node: None,
            causal: Default::default(),
            unasked: Vec::new(),
            unit_cluster: None,
            held_begin: None,
            multi_shard: Default::default(),
            wrote: false,
            hints,
            local_hints: Hints::default(),
            shard_choice,
            read_floor: 0,
            held_ready: None,
            replay: None,
            spare_held: BytesMut::new(),
            force_primary: false,
            retries: 0,
            prepared_on: None,
            unit_text: None,
            fill: None,
            pool_handles: Default::default(),
            committed_writes: None,
            pending_writes: None,
            sequences: Default::default(),
            shared,
        }
    }

    pub(super) fn session_mode(&self) -> bool {
        self.shared.live().session_pooling()
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
            let reservation = self.sequences.reservation_for(&attached);
            self.shared
                .pools
                .checkin_for(attached.checkout, reservation);
        }
    }

    /// Relays until the client leaves (Ok) or something breaks (Err, reported to the client).
    async fn relay(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let mut shutdown = self.shared.shutdown_signal();
        // One future for the whole session, not one per turn of the loop: it subscribes to the
        // signal once. It is polled only between transactions, and its end ends the session.
        let stopping = super::stopping(&mut shutdown);
        tokio::pin!(stopping);
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
            // While a server works the client is not idle: no limit, and no snapshot to load.
            let idle = match self.pending {
                0 => IdleLimit::of(
                    &self.shared.live().config.timeouts,
                    self.transaction_status(),
                ),
                _ => IdleLimit::NONE,
            };
            let server = self.server.as_mut().map(|a| &mut *a.checkout.conn);
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
                _ = idle.elapsed(), if idle.applies() => return Err(idle.error()),
                _ = &mut stopping, if between_transactions => {
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
                _ if self.discard_until_sync => self.discard_unit(client, &[frame]),
                tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => self.forward_copy(frame),
                tag::QUERY | tag::FUNCTION_CALL => {
                    self.dispatch_batch(client).await?;
                    self.push_batch(frame);
                    self.dispatch_batch(client).await?;
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
        if self.batch.capacity() == 0 {
            // A unit's Vec leaves with it: room for a Parse/Bind/Describe/Execute/Sync at once.
            self.batch.reserve(UNIT_FRAMES);
        }
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
        self.close_earlier_replay(client).await?;
        if self.pending == 0 && !self.unasked.is_empty() {
            self.learn_unasked_positions(client);
        }
        // A simple query's text is read out of its message once (it is checked for UTF-8).
        let query = match frames.as_slice() {
            [frame] if frame.tag == tag::QUERY => {
                crate::protocol::messages::query_text(frame.body())
            }
            _ => None,
        };
        if let Some(text) = query
            && let Some(command) = session_command(text)
        {
            // Answers pgsplit gives itself come after the answers to what is already in flight.
            self.settle(client).await?;
            self.answer_session_command(client, text, command).await;
            return Ok(());
        }
        if self.answer_own_extended(client, &frames).await? {
            return Ok(());
        }
        // One configuration decides the whole unit (a reload meanwhile applies to the next).
        let live = self.shared.live.load_full();
        // Only the result cache and sharding act on what writes make stale.
        let tracks_writes = live.cache.is_some() || live.sharding.is_some();
        let mut work = match query {
            Some(text) => work::describe_query(text, &self.state, &live.classifier, tracks_writes),
            None => work::describe(&frames, &self.state, &live.classifier, tracks_writes),
        };
        if let Some(inner) = &work.explain_route {
            self.settle(client).await?;
            self.explain_route(client, inner);
            return Ok(());
        }
        if let Err(e) = super::commands::check_pgsplit_settings(&work.effects) {
            return self.fail_unit(client, e, &frames).await;
        }
        if !work.warnings.is_empty() {
            // The notices belong with this unit's answers, after those of units in flight.
            self.settle(client).await?;
            for warning in &work.warnings {
                client
                    .writer()
                    .notice_response(&ErrorFields::warning(warning.to_string()));
            }
        }
        if self.hold_begin(client, &frames, &work).await?
            || self.end_held_transaction(client, &frames, &work).await?
        {
            return Ok(());
        }
        if self
            .dispatch_to_shards(client, &frames, &work, &live)
            .await?
        {
            return Ok(());
        }
        self.join_held_begin(&mut work);
        if self.pending == 0 && self.answer_from_cache(client, &frames, &work, &live) {
            return Ok(());
        }
        if let Err(e) = self.attach_for(client, &work).await {
            self.fill = None;
            return self.fail_unit(client, e, &frames).await;
        }
        if self.discard_until_sync {
            self.discard_unit(client, &frames);
            return Ok(());
        }
        if let Err(e) = self.check_sequence_home(&work) {
            return self.fail_unit(client, e, &frames).await;
        }
        if let Err(e) = self.before_transaction_end(client, &work.tx).await {
            return self.fail_unit(client, e, &frames).await;
        }
        if self.fill.is_some()
            && let Some(stamp) = self.fill_stamp()
            && let Some(fill) = self.fill.as_mut()
        {
            fill.stamp = stamp;
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
        // The unit's frames join the replay once forwarded (moved, not copied).
        self.replay = self.may_retry(&work).then(|| Replay {
            attempts: self.retries,
            ahead: self.pending,
            held: std::mem::take(&mut self.spare_held),
            ..Default::default()
        });
        self.note_read_position(&work);
        if let Err(e) = self.prepare_sql_statements(&work).await {
            return self.fail_unit(client, e, &frames).await;
        }
        self.state.add_pins(&work.effects);
        let nothing_in_flight =
            self.pending == 0 && self.server.as_ref().is_some_and(|a| a.work.is_none());
        if let Some(attached) = self.server.as_mut() {
            let node = &attached.route.node;
            match work.access() {
                Access::Write => {
                    node.stats.count_write();
                    // A replica refuses writes: nothing commits there to learn the position of.
                    let on_primary = work.executes && node.role() != crate::topology::Role::Replica;
                    if on_primary {
                        self.sequences
                            .wrote_on(node, attached.checkout.conn.key.pid);
                    }
                    self.wrote |= on_primary;
                }
                Access::Read => node.stats.count_read(),
            }
            if attached.work.is_none() {
                attached.work = Some(node.start_work());
                self.unit_text = work::slow_query_text(&live.config.log, &frames);
            }
        }
        let asks_commit_position = nothing_in_flight && self.commits_a_write(&work, &frames, &live);
        self.pending_writes = super::work::merge_scopes(self.pending_writes.take(), work.writes);
        self.send_held_begin();
        self.in_flight.send(work.tx, work.effects);
        for frame in &frames {
            self.forward(frame);
        }
        if asks_commit_position {
            self.ask_commit_position();
        }
        if let Some(replay) = self.replay.as_mut() {
            replay.frames = frames;
        } else if self.batch.capacity() == 0 {
            // Forwarded: its Vec gathers the next unit.
            self.batch = frames;
            self.batch.clear();
        }
        Ok(())
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

    pub(super) fn transaction_status(&self) -> u8 {
        match (&self.held_begin, &self.server) {
            (Some(held), _) => held.status(),
            (None, Some(attached)) => attached.checkout.conn.tx_status,
            (None, None) => b'I',
        }
    }

    /// COPY data goes straight to the server running the COPY.
    fn forward_copy(&mut self, frame: Frame) {
        if self.server.is_some() {
            self.to_server.extend_from_slice(&frame.bytes);
        }
    }

    /// Appends one client message for the server, re-preparing on this connection any named
    /// statement the session prepared elsewhere.
    fn forward(&mut self, frame: &Frame) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        match frame.tag {
            tag::QUERY | tag::SYNC | tag::FUNCTION_CALL => {
                self.pending += 1;
                self.in_flight.close();
                self.bound_since_sync = false;
            }
            tag::BIND => self.bound_since_sync = true,
            _ => {}
        }
        self.responses.forward(
            frame,
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
                // Every unit answered but pgsplit's question for a commit's position: the
                // connection must be quiet before anything else is sent or it is released.
                if self.pending == 0 && self.responses.awaits_commit_position() {
                    attached.checkout.conn.fill().await?;
                    continue;
                }
                break;
            };
            attached.checkout.conn.observe(&frame);
            if !self.responses.pass_to_client(&frame) {
                continue;
            }
            self.collect_for_cache(&frame);
            match self.screen_replay(client, &frame) {
                Step::Relay => {}
                Step::Skip => continue,
                Step::Retry => {
                    retry = true;
                    break;
                }
            }
            match frame.tag {
                tag::ERROR_RESPONSE => self.note_server_error(&frame),
                tag::COMMAND_COMPLETE | tag::PORTAL_SUSPENDED | tag::EMPTY_QUERY_RESPONSE => {
                    self.in_flight.statement_done();
                }
                tag::READY_FOR_QUERY => {
                    self.pending = self.pending.saturating_sub(1);
                    let commits_a_write =
                        self.pending == 0 && self.wrote && frame.body().first() == Some(&b'I');
                    if commits_a_write {
                        self.held_ready = Some(frame);
                    } else {
                        client.out.extend_from_slice(&frame.bytes);
                    }
                    self.unit_answered();
                    continue;
                }
                _ => {}
            }
            client.out.extend_from_slice(&frame.bytes);
        }
        if retry {
            return Box::pin(self.retry_unit(client)).await;
        }
        if self.participants_to_settle() {
            self.settle_participants().await;
        }
        if self.held_ready.is_some() {
            self.take_causal_token(client).await?;
        }
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    /// A ReadyForQuery for the client: the oldest unit in flight is over. Its effects enter
    /// the session's state (and the connection's record); once nothing is in flight, the
    /// connection may go back to the pool.
    pub(super) fn unit_answered(&mut self) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        let conn = &mut attached.checkout.conn;
        let unit = self.in_flight.answered();
        let outcome = UnitOutcome {
            status: conn.tx_status,
            failed: unit.failed,
        };
        let ran = unit.effects_that_ran();
        // A SET LOCAL in force ends with the transaction, at this unit's ReadyForQuery even
        // when a unit opening the next one is already in flight behind it.
        let local_hints_change = outcome.status == b'I' || ran.iter().any(changes_local_settings);
        let taken = self.state.finish_unit(ran, outcome);
        super::state::record_on_connection(conn, &taken);
        self.take_on_pgsplit_settings(&taken);
        if local_hints_change {
            self.refresh_local_hints();
        }
        if self.pending == 0 {
            self.end_units();
        }
    }

    /// Nothing is in flight: the units' time is measured, the cache learns what they wrote,
    /// and the connection may go back to the pool.
    fn end_units(&mut self) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        if let Some(work) = attached.work.take() {
            let elapsed = work.elapsed();
            self.shared
                .metrics
                .unit_finished(&attached.route.node, elapsed);
            if let Some(text) = self.unit_text.take()
                && elapsed > self.shared.live().config.log.slow_query
            {
                tracing::warn!(node = %attached.route.node.name, reason = attached.route.reason.as_str(), elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), statement = %text, "slow query");
            }
            work.finish(elapsed);
        }
        let (tx, failed) = self.in_flight.quiet();
        let outcome = UnitOutcome {
            status: attached.checkout.conn.tx_status,
            failed,
        };
        self.multi_shard.unit_ended(outcome);
        self.settle_cache(outcome, &tx);
        if outcome.status == b'I' {
            self.state.lift_unconfirmed_pins();
        }
        // The connection is released once the causal token of a committed write is known.
        if !(self.wrote && outcome.status == b'I') {
            self.release_if_idle();
        }
    }

    /// Returns a connection still attached at the end to the pool, reset, in the background
    /// so the client's task ends at once.
    fn finish(mut self) {
        self.cancel.set_target(None);
        let Some(attached) = self.server.take() else {
            return;
        };
        let checkout = attached.checkout;
        if self.pending > 0 || checkout.conn.tx_status != b'I' || !self.responses.is_settled() {
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

async fn fill_server(server: Option<&mut ServerConn>) -> Result<(), BackendError> {
    match server {
        Some(conn) => conn.fill().await,
        None => std::future::pending().await,
    }
}
