//! One client session: login, then the relay loop that carries the client's messages to its
//! server connection and the server's answers back, looking only at message headers.

use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::{ConnectSpec, ServerConn};
use crate::pool::{Checkout, PoolKey};
use crate::protocol::{Frame, SqlState, StartupParams, tag};
use crate::route;

use super::Shared;
use super::cancel::{CancelHandle, CancelTarget};
use super::client::ClientConn;
use super::error::FrontendError;
use super::login::{self, Opening, ServerCredentials};

/// Runs a client connection from its first byte to its end.
pub async fn run(mut client: ClientConn, shared: Arc<Shared>) {
    let login_timeout = shared.config.timeouts.client_login;
    let opened = tokio::time::timeout(login_timeout, open_session(&mut client, &shared)).await;
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

/// Startup, authentication and the first server connection; None for a cancel request.
async fn open_session(
    client: &mut ClientConn,
    shared: &Arc<Shared>,
) -> Result<Option<Session>, FrontendError> {
    let params = match login::read_opening(client, shared).await? {
        Opening::Cancelled => return Ok(None),
        Opening::Session(params) => params,
    };
    let credentials = login::authenticate(client, shared, &params).await?;
    let mut session = Session::new(shared.clone(), params, credentials);
    session.attach_server(client).await?;
    session.greet(client).await?;
    Ok(Some(session))
}

pub struct Session {
    shared: Arc<Shared>,
    params: StartupParams,
    database: String,
    credentials: ServerCredentials,
    cancel: CancelHandle,
    server: Option<Checkout>,
    /// Queries and Syncs sent to the server whose ReadyForQuery has not come back yet.
    pending: usize,
    /// Bytes for the server, written once per batch of client messages.
    to_server: BytesMut,
    /// pgsplit checked the client's password, or a server accepted the client's credentials.
    identity_confirmed: bool,
}

impl Session {
    fn new(shared: Arc<Shared>, params: StartupParams, credentials: ServerCredentials) -> Session {
        let database = params.database().unwrap_or_default().to_string();
        let cancel = shared.cancels.register();
        let shared_has_no_users = shared.users.is_empty();
        Session {
            shared,
            params,
            database,
            credentials,
            cancel,
            server: None,
            pending: 0,
            to_server: BytesMut::with_capacity(8 * 1024),
            identity_confirmed: !shared_has_no_users,
        }
    }

    /// AuthenticationOk, the server's ParameterStatus, our own BackendKeyData, ReadyForQuery.
    async fn greet(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let server = self.server.as_ref().map(|c| &c.conn);
        let mut w = client.writer();
        w.authentication(0, &[]);
        if let Some(conn) = server {
            let mut params: Vec<_> = conn.params.iter().collect();
            params.sort();
            for (name, value) in params {
                w.parameter_status(name, value);
            }
        }
        w.backend_key_data(self.cancel.key);
        w.ready_for_query(b'I');
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    /// The decision point: asks the router where the next unit of work runs and borrows a
    /// connection to that node. In pass-through mode, a server that wants a password makes us
    /// ask the client for it once.
    async fn attach_server(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let topology = self.shared.topology.load();
        let cluster = topology.cluster_for_database(&self.database);
        let route = route::decide(cluster);
        tracing::debug!(node = %route.node.name, reason = route.reason.as_str(), "route");
        let checkout = match self.checkout(&route.node.name, &route.node.addr).await {
            Err(FrontendError::Backend(e)) if e.needs_password() && !self.identity_confirmed => {
                self.credentials.password = Some(login::ask_cleartext_password(client).await?);
                self.checkout(&route.node.name, &route.node.addr).await?
            }
            other => other?,
        };
        self.cancel.set_target(Some(CancelTarget {
            addr: checkout.conn.addr.clone(),
            key: checkout.conn.key,
        }));
        self.server = Some(checkout);
        self.identity_confirmed = true;
        Ok(())
    }

    async fn checkout(&self, node: &str, addr: &str) -> Result<Checkout, FrontendError> {
        let options = self.params.get("options").unwrap_or_default().to_string();
        let key = PoolKey {
            node: node.to_string(),
            database: self.database.clone(),
            user: self.credentials.user.clone(),
            options,
        };
        let mut startup = vec![
            ("user".to_string(), self.credentials.user.clone()),
            ("database".to_string(), self.database.clone()),
        ];
        startup.extend(
            self.params
                .session_settings()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let spec = ConnectSpec {
            node: node.to_string(),
            addr: addr.to_string(),
            startup,
            password: self.credentials.password.clone(),
            timeout: self.shared.config.timeouts.connect,
        };
        // In pass-through mode nobody but the server can check a password: a login gets a
        // connection of its own rather than one another client authenticated.
        let fresh = !self.identity_confirmed;
        let mut checkout = self.shared.pools.checkout(&key, &spec, fresh).await?;
        sync_settings(&mut checkout.conn, &self.params).await?;
        Ok(checkout)
    }

    /// Relays until the client leaves (Ok) or something breaks (Err, reported to the client).
    async fn relay(&mut self, client: &mut ClientConn) -> Result<(), FrontendError> {
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            if !self.forward_client_messages(client).await? {
                return Ok(());
            }
            self.forward_server_messages(client).await?;
            let server = self.server.as_mut().map(|c| &mut c.conn);
            tokio::select! {
                more = client.fill() => {
                    if !more? {
                        return Ok(());
                    }
                }
                filled = fill_server(server) => filled?,
                _ = super::stopping(&mut shutdown), if self.pending == 0 => {
                    return Err(FrontendError::refuse(SqlState::ADMIN_SHUTDOWN, "terminating connection because pgsplit is shutting down"));
                }
            }
        }
    }

    /// Passes every whole client message in the buffer to the server. Ok(false) on Terminate.
    async fn forward_client_messages(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<bool, FrontendError> {
        let mut keep_going = true;
        while let Some(frame) = client.next_buffered_frame()? {
            match frame.tag {
                tag::TERMINATE => {
                    keep_going = false;
                    break;
                }
                tag::PASSWORD => {
                    return Err(FrontendError::refuse(
                        SqlState::PROTOCOL_VIOLATION,
                        "unexpected password message after authentication",
                    ));
                }
                _ => self.queue_for_server(client, &frame).await?,
            }
        }
        self.flush_to_server().await?;
        Ok(keep_going)
    }

    async fn queue_for_server(
        &mut self,
        client: &mut ClientConn,
        frame: &Frame,
    ) -> Result<(), FrontendError> {
        if self.server.is_none() {
            self.attach_server(client).await?;
        }
        if matches!(frame.tag, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL) {
            self.pending += 1;
        }
        self.to_server.extend_from_slice(&frame.bytes);
        Ok(())
    }

    async fn flush_to_server(&mut self) -> Result<(), FrontendError> {
        if self.to_server.is_empty() {
            return Ok(());
        }
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        server.conn.write_all(&self.to_server).await?;
        self.to_server.clear();
        Ok(())
    }

    /// Passes every whole server message in the buffer to the client, keeping the
    /// connection's record (transaction status, parameters) current.
    async fn forward_server_messages(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        while let Some(frame) = server.conn.next_buffered_frame()? {
            server.conn.observe(&frame);
            if frame.tag == tag::READY_FOR_QUERY {
                self.pending = self.pending.saturating_sub(1);
            }
            client.out.extend_from_slice(&frame.bytes);
        }
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    /// Returns the server connection to the pool when it is clean, in the background so the
    /// client's task ends at once.
    fn finish(mut self) {
        self.cancel.set_target(None);
        let Some(checkout) = self.server.take() else {
            return;
        };
        if self.pending > 0 || checkout.conn.tx_status != b'I' {
            return; // mid-statement or mid-transaction: dropping closes it
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut checkout = checkout;
            if checkout.conn.run_internal("DISCARD ALL").await.is_ok() {
                shared.pools.checkin(checkout);
            }
        });
    }
}

async fn fill_server(server: Option<&mut ServerConn>) -> Result<(), FrontendError> {
    match server {
        Some(conn) => Ok(conn.fill().await?),
        None => std::future::pending().await,
    }
}

/// Makes a pooled connection's settings those the client asked for at startup: SET what
/// differs, RESET what the connection's own startup set and the client did not ask for.
async fn sync_settings(conn: &mut ServerConn, params: &StartupParams) -> Result<(), FrontendError> {
    let wanted: Vec<(&str, &str)> = params
        .session_settings()
        .filter(|(k, _)| *k != "options")
        .collect();
    let mut sql = String::new();
    for (name, value) in &wanted {
        if !conn
            .startup_settings
            .iter()
            .any(|(k, v)| k == name && v == value)
        {
            sql.push_str(&format!(
                "SET {} = {};",
                quote_ident(name),
                quote_literal(value)
            ));
        }
    }
    for (name, _) in &conn.startup_settings {
        if name != "options" && !wanted.iter().any(|(k, _)| k == name) {
            sql.push_str(&format!("RESET {};", quote_ident(name)));
        }
    }
    if !sql.is_empty() {
        conn.run_internal(&sql).await?;
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
