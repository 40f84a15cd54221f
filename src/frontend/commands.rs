//! What a session answers itself: `SET`, `RESET` and `SHOW pgsplit.*`, `EXPLAIN ROUTE`, the
//! `pgsplit.*` settings of the startup packet, and the errors of units that never reached a
//! server.

use crate::fanout::Merged;
use crate::hint::{
    Hints, SessionCommand, Setting, SettingValue, ShardHint, parse_setting_value,
    parse_shard_choice, session_command, setting_from_name,
};
use crate::protocol::{ErrorFields, Frame, SqlState, tag};
use crate::route::classify::SessionEffect;
use crate::route::{Reason, Route};

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work;

impl Session {
    /// Answers a unit that never reached a server with an ErrorResponse, as PostgreSQL would
    /// answer a failed statement, keeping the session alive. The answers to units still in
    /// flight come first: a client pipelining matches answers to its statements by order.
    pub(super) async fn fail_unit(
        &mut self,
        client: &mut ClientConn,
        e: FrontendError,
        frames: &[Frame],
    ) -> Result<(), FrontendError> {
        tracing::warn!(error = %e, "unit failed before reaching a server");
        // A server that fails meanwhile is the relay's to report (08006 for what it ran), as
        // when nothing waits behind it: its failure must not end the session here.
        if let Err(FrontendError::ClientGone) = self.settle(client).await {
            return Err(FrontendError::ClientGone);
        }
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
        self.abort_transaction().await;
        let last = frames.last().map(|f| f.tag);
        if matches!(last, Some(tag::SYNC | tag::QUERY | tag::FUNCTION_CALL)) {
            client.writer().ready_for_query(self.transaction_status());
        } else {
            self.discard_until_sync = true;
        }
        self.release_if_idle();
        Ok(())
    }

    /// A unit refused inside a transaction aborts it, as an error in PostgreSQL does: what
    /// ran before it must not commit with what follows. A held one is marked failed; one on a
    /// server fails there, by a statement whose error names pgsplit (in the server's log).
    async fn abort_transaction(&mut self) {
        self.fail_held_transaction();
        if let Some(attached) = self.server.as_mut()
            && attached.checkout.conn.tx_status == b'T'
        {
            // Its error is expected: the server is then in the failed transaction.
            let _ = attached.checkout.conn.run_internal(ABORT_TRANSACTION).await;
        }
    }

    /// `SET`, `RESET` and `SHOW pgsplit.*` sent alone as a simple query: answered by pgsplit,
    /// never sent to a server.
    pub(super) async fn answer_session_command(
        &mut self,
        client: &mut ClientConn,
        text: &str,
        command: Result<SessionCommand, String>,
    ) {
        let status = self.transaction_status();
        if status == b'E' {
            // As PostgreSQL: a failed transaction takes nothing but its end.
            let mut w = client.writer();
            w.error_response(&in_failed_transaction());
            w.ready_for_query(status);
            return;
        }
        let shows_token = matches!(
            command,
            Ok(SessionCommand::Show {
                setting: Setting::CausalToken
            })
        );
        if shows_token && let Err(fields) = self.learn_every_unasked_position(client).await {
            client.writer().error_response(&fields);
            self.abort_transaction().await;
            client.writer().ready_for_query(self.transaction_status());
            return;
        }
        if let Ok(SessionCommand::Show { setting }) = command {
            let shown = self.shown_setting(setting);
            client
                .out
                .extend_from_slice(&super::scatter::encode(&shown));
            client.writer().ready_for_query(self.transaction_status());
            return;
        }
        let mut w = client.writer();
        let mut failed = false;
        match command {
            Ok(SessionCommand::Set { local: true, .. }) if status == b'I' => {
                // As PostgreSQL: outside a transaction block SET LOCAL has no effect.
                w.notice_response(&ErrorFields::warning(
                    "SET LOCAL can only be used in transaction blocks",
                ));
                w.command_complete("SET");
            }
            Ok(command) => match setting_change(command) {
                Ok(change) => {
                    w.command_complete(change.tag());
                    match change {
                        SettingChange::Hint {
                            setting,
                            local: true,
                            ..
                        } => self.set_local(setting, text),
                        change => self.apply_setting_change(change),
                    }
                }
                Err(fields) => {
                    w.error_response(&fields);
                    failed = true;
                }
            },
            Err(message) => {
                w.error_response(&ErrorFields::error(SqlState::UNDEFINED_OBJECT, message));
                failed = true;
            }
        }
        if failed {
            // An error inside a transaction aborts it, as any other refusal does.
            self.abort_transaction().await;
        }
        client.writer().ready_for_query(self.transaction_status());
    }

    /// A `SET LOCAL` of a `pgsplit.*` setting (`sql`) is in force until its transaction ends,
    /// or a ROLLBACK TO a savepoint set before it: it is kept among the transaction's effects.
    fn set_local(&mut self, setting: Setting, sql: &str) {
        self.state.note_set_local(SessionEffect::SetLocal {
            name: format!("pgsplit.{}", setting.key()),
            sql: sql.to_string(),
        });
        self.refresh_local_hints();
    }

    /// A `SET` or `RESET` of a `pgsplit.*` setting takes effect in the session (a `SET LOCAL`
    /// is among the transaction's effects instead, see `refresh_local_hints`).
    fn apply_setting_change(&mut self, change: SettingChange) {
        match change {
            SettingChange::Hint { setting, value, .. } => self.hints.apply(setting, value),
            SettingChange::ShardChoice(choice) => self.shard_choice = choice,
            SettingChange::Reset(setting) => {
                self.hints.reset(setting);
                if shown_choice(self.shard_choice.as_ref(), setting).is_some() {
                    self.shard_choice = None;
                }
            }
        }
    }

    /// Effects a server ran that took hold, in order, as they touch pgsplit's own settings:
    /// `RESET ALL` and `DISCARD ALL` reset them too, as they would a server's; `SET` / `RESET
    /// pgsplit.*` sent over the extended protocol, or among other statements in one text (the
    /// server keeps them as placeholder settings), are taken on (they were checked before
    /// they were sent).
    pub(super) fn take_on_pgsplit_settings(&mut self, taken: &[SessionEffect]) {
        for effect in taken {
            if matches!(effect, SessionEffect::ResetAll | SessionEffect::DiscardAll) {
                self.hints = Hints::default();
                self.shard_choice = None;
            } else if let Some(Ok(change)) = pgsplit_setting_change(effect) {
                self.apply_setting_change(change);
            }
        }
    }

    /// The transaction ended without a server's answer saying so (pgsplit answered its end,
    /// or rolled it back): none of its effects holds, its `SET LOCAL pgsplit.*` included.
    pub(in crate::frontend) fn forget_transaction(&mut self) {
        self.state.forget_transaction();
        self.refresh_local_hints();
    }

    /// The session's `SET LOCAL pgsplit.*` in force, from the transaction's effects: after
    /// its end none is, after a ROLLBACK TO a savepoint those set before it are.
    pub(super) fn refresh_local_hints(&mut self) {
        let mut hints = Hints::default();
        for effect in self.state.local_settings() {
            if let Some(Ok(SettingChange::Hint { setting, value, .. })) =
                pgsplit_setting_change(effect)
            {
                hints.apply(setting, value);
            }
        }
        self.local_hints = hints;
    }

    /// What `SHOW pgsplit.<name>` says: the session's value, else the configured default.
    pub(super) fn show_setting(&self, setting: Setting) -> String {
        if setting == Setting::CausalToken {
            let token = self.causal_token();
            return if token.is_empty() {
                String::new()
            } else {
                token.to_string()
            };
        }
        // As PostgreSQL's SHOW: a SET LOCAL in force wins over the session's SET.
        if let Some(value) = self
            .local_hints
            .show(setting)
            .or_else(|| self.hints.show(setting))
        {
            return value;
        }
        if setting.is_shard_choice() {
            return shown_choice(self.shard_choice.as_ref(), setting).unwrap_or_default();
        }
        let topology = self.shared.topology.load();
        let live = self.shared.live();
        let settings = live.consistency(&topology.cluster_for_database(&self.database).name);
        match setting {
            Setting::Consistency => settings.mode.as_str().to_string(),
            Setting::MaxLag => humantime::format_duration(settings.max_lag).to_string(),
            _ => String::new(),
        }
    }

    /// The answer to `SHOW pgsplit.<setting>`: one row, as the server answers `SHOW`.
    pub(super) fn shown_setting(&self, setting: Setting) -> Merged {
        let column = format!("pgsplit.{}", setting.key());
        Merged::one_text_row(&[&column], &[&self.show_setting(setting)], "SHOW")
    }

    /// `EXPLAIN ROUTE <statement>` as a simple query.
    pub(super) fn explain_route(&self, client: &mut ClientConn, inner: &str) {
        let answer = self.route_explained(inner);
        client
            .out
            .extend_from_slice(&super::scatter::encode(&answer));
        client.writer().ready_for_query(self.transaction_status());
    }

    /// The answer to `EXPLAIN ROUTE <statement>`: one row (node, role, reason) for where the
    /// statement would go now, without running it.
    pub(super) fn route_explained(&self, inner: &str) -> Merged {
        let route = match &self.server {
            Some(attached)
                if attached.checkout.conn.tx_status != b'I' || self.state.pin().is_some() =>
            {
                Route {
                    node: attached.route.node.clone(),
                    reason: self
                        .state
                        .pin()
                        .map_or(Reason::InTransaction, Reason::Pinned),
                    detail: None,
                }
            }
            _ => {
                let mut work = work::describe_text(inner, &self.shared.live().classifier);
                // In a held transaction the statement would go with its BEGIN.
                self.join_held_begin(&mut work);
                self.decide(&work)
            }
        };
        let reason = match &route.detail {
            Some(detail) => format!("{}: {detail}", route.reason.as_str()),
            None => route.reason.as_str().to_string(),
        };
        Merged::one_text_row(
            &["node", "role", "reason"],
            &[&route.node.name, route.node.role().as_str(), &reason],
            "EXPLAIN ROUTE",
        )
    }
}

/// The session's shard choice as `SHOW` gives `setting` (`shard` or `shard_key`): its text when
/// it is of that kind.
fn shown_choice(choice: Option<&ShardHint>, setting: Setting) -> Option<String> {
    match (choice?, setting) {
        (ShardHint::Shard(text), Setting::Shard) | (ShardHint::Key(text), Setting::ShardKey) => {
            Some(text.clone())
        }
        _ => None,
    }
}

pub(super) fn is_pgsplit_setting(name: &str) -> bool {
    name.get(..8)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("pgsplit."))
}

/// What a `SET` or `RESET` of a `pgsplit.*` setting changes in the session.
pub(super) enum SettingChange {
    Hint {
        setting: Setting,
        value: SettingValue,
        local: bool,
    },
    ShardChoice(Option<ShardHint>),
    Reset(Setting),
}

impl SettingChange {
    fn tag(&self) -> &'static str {
        match self {
            SettingChange::Reset(_) => "RESET",
            _ => "SET",
        }
    }
}

/// The change a `SET` or `RESET` asks for, or the error PostgreSQL gives for a bad one.
fn setting_change(command: SessionCommand) -> Result<SettingChange, ErrorFields> {
    let cannot_change = |setting: Setting| {
        ErrorFields::error(
            SqlState::CANT_CHANGE_RUNTIME_PARAM,
            format!("parameter \"pgsplit.{}\" cannot be changed", setting.key()),
        )
    };
    let bad_value = |message| ErrorFields::error(SqlState::INVALID_PARAMETER_VALUE, message);
    match command {
        SessionCommand::Set { setting, local, .. } if local && setting.is_shard_choice() => {
            Err(ErrorFields::error(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "SET LOCAL {setting} is not supported: use SET {setting}, then RESET {setting}"
                ),
            ))
        }
        SessionCommand::Set { setting, value, .. } if setting.is_shard_choice() => value
            .map(|value| parse_shard_choice(setting, &value))
            .transpose()
            .map(SettingChange::ShardChoice)
            .map_err(bad_value),
        SessionCommand::Set {
            setting,
            value,
            local,
        } => {
            let value = match value {
                Some(value) => parse_setting_value(setting, &value).map_err(bad_value)?,
                None => SettingValue::Default,
            };
            if setting.is_read_only() {
                return Err(cannot_change(setting));
            }
            Ok(SettingChange::Hint {
                setting,
                value,
                local,
            })
        }
        SessionCommand::Reset { setting } if setting.is_read_only() => Err(cannot_change(setting)),
        SessionCommand::Reset { setting } => Ok(SettingChange::Reset(setting)),
        SessionCommand::Show { setting } => Err(ErrorFields::error(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "SHOW pgsplit.{} is answered alone, as a simple query",
                setting.key()
            ),
        )),
    }
}

/// The change a session effect makes to a `pgsplit.*` setting, if it names one: the classifier
/// records `SET` and `RESET` of every setting.
fn pgsplit_setting_change(effect: &SessionEffect) -> Option<Result<SettingChange, ErrorFields>> {
    let command = match effect {
        SessionEffect::Set { name, sql } | SessionEffect::SetLocal { name, sql }
            if is_pgsplit_setting(name) =>
        {
            session_command(sql)
        }
        SessionEffect::Reset { name } if is_pgsplit_setting(name) => {
            session_command(&format!("RESET {name}"))
        }
        _ => return None,
    }?;
    Some(match command {
        Ok(command) => setting_change(command),
        Err(message) => Err(ErrorFields::error(SqlState::UNDEFINED_OBJECT, message)),
    })
}

/// PostgreSQL's answer to anything but the end of a failed transaction.
pub(super) fn in_failed_transaction() -> ErrorFields {
    ErrorFields::error(
        SqlState::IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Fails on any server, with a message that says why in its log.
const ABORT_TRANSACTION: &str = "SELECT 'pgsplit refused a statement of this transaction, which is therefore aborted'::pg_catalog.int4";

/// A unit that sets a `pgsplit.*` setting where pgsplit does not answer it itself is refused
/// before it is sent when the setting or its value is bad, as it would be sent alone.
pub(super) fn check_pgsplit_settings(effects: &[SessionEffect]) -> Result<(), FrontendError> {
    for effect in effects {
        if let Some(Err(fields)) = pgsplit_setting_change(effect) {
            return Err(FrontendError::Refused(fields));
        }
    }
    Ok(())
}

/// The session's starting `pgsplit.*` settings, from the startup packet (`-c pgsplit.after=...`
/// in `options`, or as parameters of their own), and its shard choice (`pgsplit.shard` or
/// `pgsplit.shard_key`). A bad one is logged and ignored: the session starts as if it were not
/// there.
pub(super) fn startup_hints(
    pairs: impl Iterator<Item = (String, String)>,
) -> (Hints, Option<ShardHint>) {
    let mut hints = Hints::default();
    let mut choice = None;
    for (name, value) in pairs {
        let setting = setting_from_name(&name);
        if let Some(setting) = setting.filter(|s| s.is_shard_choice()) {
            match parse_shard_choice(setting, &value) {
                Ok(chosen) => choice = Some(chosen),
                Err(e) => {
                    tracing::warn!(%name, error = %e, "ignoring a pgsplit setting in the startup packet")
                }
            }
            continue;
        }
        let parsed = setting
            .ok_or_else(|| format!("unknown setting {name}"))
            .and_then(|setting| parse_setting_value(setting, &value).map(|v| (setting, v)));
        match parsed {
            Ok((setting, value)) if !setting.is_read_only() => hints.apply(setting, value),
            Ok(_) => {
                tracing::warn!(%name, "ignoring a read-only pgsplit setting in the startup packet")
            }
            Err(e) => {
                tracing::warn!(%name, error = %e, "ignoring a pgsplit setting in the startup packet")
            }
        }
    }
    (hints, choice)
}
