//! The `pgsplit.*` session settings: their names and the values `SET` may give them.

use std::fmt;
use std::time::Duration;

use super::comment::ShardHint;
use super::value::{
    parse_consistency, parse_duration, parse_route, quoted, strip_prefix_ignore_case, unquote,
};
use super::{CausalToken, Consistency, RouteHint};

/// A `pgsplit.*` setting. Its hint key (in `/* pgsplit: ... */`) is the same name without the
/// `pgsplit.` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    Consistency,
    MaxLag,
    After,
    /// Read-only: the WAL position of the session's last commit, for the application to carry
    /// to another session (as `pgsplit.after`).
    CausalToken,
    Route,
    /// The shard (by number from 0, or cluster name) a session's statements without a key of
    /// their own go to. Its value is text, kept by the session rather than in `Hints`.
    Shard,
    /// A key value whose shard the session's statements without a key of their own go to.
    ShardKey,
}

/// What `SET pgsplit.<name> = <value>` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    Consistency(Consistency),
    MaxLag(Duration),
    After(CausalToken),
    Route(RouteHint),
    /// `DEFAULT`: forget the session's value, so the configured one applies again.
    Default,
}

impl Setting {
    pub const ALL: [Setting; 7] = [
        Setting::Consistency,
        Setting::MaxLag,
        Setting::After,
        Setting::CausalToken,
        Setting::Route,
        Setting::Shard,
        Setting::ShardKey,
    ];

    /// The name without its `pgsplit.` prefix; also the hint key.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Consistency => "consistency",
            Setting::MaxLag => "max_lag",
            Setting::After => "after",
            Setting::CausalToken => "causal_token",
            Setting::Route => "route",
            Setting::Shard => "shard",
            Setting::ShardKey => "shard_key",
        }
    }

    /// Whether `SET` and `RESET` must refuse it (PostgreSQL answers such attempts with
    /// SQLSTATE 55P02).
    pub fn is_read_only(self) -> bool {
        self == Setting::CausalToken
    }

    /// `shard` and `shard_key`: their value is text naming a shard, which the session keeps
    /// itself (read with [`parse_shard_choice`]), as the `shard=`/`shard_key=` hints name one
    /// per statement.
    pub fn is_shard_choice(self) -> bool {
        matches!(self, Setting::Shard | Setting::ShardKey)
    }

    /// The setting whose key is `key`, ASCII-case-insensitively.
    pub(crate) fn from_key(key: &str) -> Option<Setting> {
        Setting::ALL
            .into_iter()
            .find(|setting| setting.key().eq_ignore_ascii_case(key))
    }
}

/// The full name, "pgsplit.max_lag".
impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgsplit.{}", self.key())
    }
}

/// The setting named `name` ("pgsplit.max_lag", any case); the `pgsplit.` prefix is required,
/// as it is for every extension's settings in PostgreSQL.
pub fn setting_from_name(name: &str) -> Option<Setting> {
    strip_prefix_ignore_case(name, "pgsplit.").and_then(Setting::from_key)
}

/// Reads the value `SET` gives a setting, plain or in single quotes (`'strong'`); `DEFAULT`
/// gives [`SettingValue::Default`]. The error is a sentence for the client (SQLSTATE 22023 for a
/// bad value, 55P02 for the read-only `causal_token`).
pub fn parse_setting_value(setting: Setting, value: &str) -> Result<SettingValue, String> {
    if setting.is_read_only() {
        return Err(format!("parameter \"{setting}\" cannot be changed"));
    }
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Ok(SettingValue::Default);
    }
    parse_value(setting, &unquote(value)).map_err(|expected| {
        format!(
            "invalid value for parameter \"{setting}\": {} ({expected})",
            quoted(value)
        )
    })
}

/// Reads an unquoted value for `setting`; the error says what was expected. Shared by
/// settings and hints, so both accept exactly the same values.
pub(crate) fn parse_value(setting: Setting, text: &str) -> Result<SettingValue, String> {
    match setting {
        Setting::Consistency => parse_consistency(text).map(SettingValue::Consistency),
        Setting::MaxLag => parse_duration(text).map(SettingValue::MaxLag),
        Setting::After => CausalToken::parse(text).map(SettingValue::After),
        Setting::Route => parse_route(text).map(SettingValue::Route),
        Setting::CausalToken => Err("nothing: it is read-only".into()),
        Setting::Shard | Setting::ShardKey => Err("a shard, read by parse_shard_choice".into()),
    }
}

/// Reads the value `SET pgsplit.shard` or `SET pgsplit.shard_key` gives (plain or quoted): the
/// shard it names. Whether that shard exists is known only against the sharding configuration,
/// when a statement uses it.
pub fn parse_shard_choice(setting: Setting, value: &str) -> Result<ShardHint, String> {
    let value = value.trim();
    let text = unquote(value).into_owned();
    if text.is_empty() {
        return Err(format!(
            "invalid value for parameter \"{setting}\": {} (expected a shard number or name, or a key value)",
            quoted(value)
        ));
    }
    match setting {
        Setting::Shard => Ok(ShardHint::Shard(text)),
        Setting::ShardKey => Ok(ShardHint::Key(text)),
        _ => Err(format!("parameter \"{setting}\" names no shard")),
    }
}
