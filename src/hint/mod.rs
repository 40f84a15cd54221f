//! Consistency hints: what one statement (a leading `/* pgsplit: ... */` comment) or a whole
//! session (`SET pgsplit.* = ...`) asks of routing. Pure text handling, no I/O.
//!
//! - [`parse_hints`] reads the hint comments before a statement's first token.
//! - [`session_command`] recognises the `SET`/`RESET`/`SHOW pgsplit.*` statements pgsplit
//!   answers itself; [`parse_setting_value`] turns a `SET` value into a [`SettingValue`].
//! - [`Hints`] holds either kind; [`Hints::or`] lets a statement's hints override the session's.

mod command;
mod comment;
mod lex;
mod setting;
mod token;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use command::{SessionCommand, session_command};
pub use comment::{ShardHint, may_hold_hints, parse_hints, shard_hint};
pub use setting::{
    Setting, SettingValue, parse_setting_value, parse_shard_choice, setting_from_name,
};
pub use token::CausalToken;

/// How fresh the data a read sees must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Any replica will do, however far behind.
    Eventual,
    /// A replica only once it has replayed the session's own last commit.
    ReadYourWrites,
    /// Never older than what the session already read.
    Monotonic,
    /// The primary.
    Strong,
    /// A replica at most this far behind.
    Bounded(Duration),
}

/// Where a hint asks a read to go. A hint never sends a write to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteHint {
    Primary,
    Replica,
}

/// What a statement's hint comments, or a session's `pgsplit.*` settings, ask for. `None` means
/// "not said here": the next layer down (session settings, then configuration) decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    pub route: Option<RouteHint>,
    pub consistency: Option<Consistency>,
    pub max_lag: Option<Duration>,
    /// The WAL positions (per cluster, or one for all) a replica must have replayed before it
    /// may serve the read.
    pub after: Option<CausalToken>,
    /// `cache`, `cache=off`, `ttl=30s`: the statement's say on the result cache.
    pub cache: Option<crate::cache::CacheHint>,
}

/// A hint that was not understood and so was skipped: a sentence naming the bad key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintWarning(pub String);

impl fmt::Display for HintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Hints {
    /// Each value said here, else the one in `base`: a statement's hints over its session's.
    pub fn or(&self, base: &Hints) -> Hints {
        Hints {
            route: self.route.or(base.route),
            consistency: self.consistency.or(base.consistency),
            max_lag: self.max_lag.or(base.max_lag),
            after: self.after.clone().or_else(|| base.after.clone()),
            cache: self.cache.or(base.cache),
        }
    }

    /// Records a parsed value. `setting` only matters for [`SettingValue::Default`], which
    /// forgets that setting's value.
    pub fn apply(&mut self, setting: Setting, value: SettingValue) {
        match value {
            SettingValue::Consistency(level) => self.consistency = Some(level),
            SettingValue::MaxLag(lag) => self.max_lag = Some(lag),
            SettingValue::After(token) => self.after = Some(token),
            SettingValue::Route(route) => self.route = Some(route),
            SettingValue::Default => self.reset(setting),
        }
    }

    /// Forgets one setting's value (`RESET pgsplit.<name>`).
    pub fn reset(&mut self, setting: Setting) {
        match setting {
            Setting::Consistency => self.consistency = None,
            Setting::MaxLag => self.max_lag = None,
            Setting::After => self.after = None,
            Setting::Route => self.route = None,
            // Not held here: the session owns its causal token and its shard choice.
            Setting::CausalToken | Setting::Shard | Setting::ShardKey => {}
        }
    }

    /// The text `SHOW` gives for a setting held here, in the form `SET` accepts; `None` when
    /// unset (the caller shows the configured default) and for `causal_token`, `shard` and
    /// `shard_key`, which the session owns.
    pub fn show(&self, setting: Setting) -> Option<String> {
        match setting {
            Setting::Consistency => self.consistency.map(|level| level.to_string()),
            Setting::MaxLag => self.max_lag.map(value::format_duration),
            Setting::After => self.after.as_ref().map(CausalToken::to_string),
            Setting::Route => self.route.map(|route| route.to_string()),
            Setting::CausalToken | Setting::Shard | Setting::ShardKey => None,
        }
    }
}
