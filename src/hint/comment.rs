//! Hint comments: `/* pgsplit: route=primary, max_lag=500ms */` (or `-- pgsplit: ...`) before a
//! statement's first token.

use super::lex::LeadingComments;
use super::setting::{Setting, parse_value};
use super::value::{parse_duration, quoted, strip_prefix_ignore_case, unquote};
use super::{HintWarning, Hints};

/// The settings a hint may give, in the order warnings list them. `causal_token` is read-only,
/// so it is no hint.
const HINT_SETTINGS: [Setting; 4] = [
    Setting::Route,
    Setting::Consistency,
    Setting::MaxLag,
    Setting::After,
];

/// Reads the hints in the comments before `sql`'s first token. Other comments (sqlcommenter's,
/// an ORM's) are skipped, as is everything from the first token on. A pair that is malformed,
/// names an unknown key or has a bad value is skipped with a warning; the other pairs still
/// apply, and a key given twice keeps its last value. An unterminated comment gives no hints:
/// the server will reject the statement anyway.
pub fn parse_hints(sql: &str) -> (Hints, Vec<HintWarning>) {
    let mut hints = Hints::default();
    let mut warnings = Vec::new();
    let Some(pairs) = hint_pairs(sql) else {
        return (Hints::default(), Vec::new());
    };
    for pair in pairs {
        if let Err(warning) = apply_pair(pair, &mut hints) {
            warnings.push(warning);
        }
    }
    (hints, warnings)
}

/// Where a statement on sharded tables goes, by hint: `shard=<number or cluster name>`, or
/// `shard_key=<value>` (the key's shard under the map of the statement's sharded table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardHint {
    Shard(String),
    Key(String),
}

/// The statement's shard hint, if any (the last one given wins).
pub fn shard_hint(sql: &str) -> Option<ShardHint> {
    hint_pairs(sql)?.into_iter().rev().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let value = unquote(value.trim()).into_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "shard" => Some(ShardHint::Shard(value)),
            "shard_key" => Some(ShardHint::Key(value)),
            _ => None,
        }
    })
}

/// Whether `sql` begins (after whitespace) with a comment, so that it may carry hints. Most
/// statements do not: this lets them skip [`parse_hints`] and merging its empty answer.
pub fn may_hold_hints(sql: &str) -> bool {
    let start = sql.trim_start_matches(super::lex::is_space).as_bytes();
    start.starts_with(b"--") || start.starts_with(b"/*")
}

/// The `key=value` pieces of the `pgsplit:` comments before `sql`'s first token; None for an
/// unterminated comment (the server will reject the statement anyway).
fn hint_pairs(sql: &str) -> Option<Vec<&str>> {
    let mut pairs = Vec::new();
    for comment in LeadingComments::new(sql) {
        let text = comment.ok()?;
        let Some(found) = strip_prefix_ignore_case(text.trim_start(), "pgsplit:") else {
            continue;
        };
        // Empty pieces (a trailing comma, ", ,") are no mistake worth a warning.
        let mut rest = found;
        while !rest.is_empty() {
            let end = pair_end(rest);
            let pair = rest[..end].trim();
            if !pair.is_empty() {
                pairs.push(pair);
            }
            rest = rest.get(end + 1..).unwrap_or("");
        }
    }
    Some(pairs)
}

/// Where the pair at the start of `text` ends: at the next comma, except that a causal token's
/// `cluster:position` parts (`after=shard_a:0/10,shard_b:0/20`) stay in one pair.
fn pair_end(text: &str) -> usize {
    let mut end = text.find(',').unwrap_or(text.len());
    let is_after = text[..end]
        .split_once('=')
        .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("after"));
    while is_after && end < text.len() {
        let next = &text[end + 1..];
        let next_end = next.find(',').unwrap_or(next.len());
        let piece = &next[..next_end];
        if piece.contains('=') || !piece.contains(':') {
            break;
        }
        end += 1 + next_end;
    }
    end
}

/// Applies one `key=value` pair (keys in any case; values may be single-quoted, as
/// sqlcommenter writes them).
fn apply_pair(pair: &str, hints: &mut Hints) -> Result<(), HintWarning> {
    if let Some(result) = apply_cache_pair(pair, hints) {
        return result;
    }
    let key = pair.split_once('=').map_or(pair, |(key, _)| key).trim();
    if key.eq_ignore_ascii_case("shard") || key.eq_ignore_ascii_case("shard_key") {
        return Ok(()); // read by `shard_hint`
    }
    let (key, value) = pair
        .split_once('=')
        .map(|(key, value)| (key.trim(), value.trim()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| {
            HintWarning(format!(
                "malformed pgsplit hint {}: expected key=value",
                quoted(pair)
            ))
        })?;
    let setting = HINT_SETTINGS
        .into_iter()
        .find(|setting| setting.key().eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            HintWarning(format!(
                "unknown pgsplit hint {} (known: {})",
                quoted(key),
                known_keys()
            ))
        })?;
    let parsed = parse_value(setting, &unquote(value)).map_err(|expected| {
        HintWarning(format!(
            "invalid value {} for pgsplit hint {} ({expected})",
            quoted(value),
            setting.key()
        ))
    })?;
    hints.apply(setting, parsed);
    Ok(())
}

fn known_keys() -> String {
    let mut keys: Vec<&str> = HINT_SETTINGS.map(Setting::key).to_vec();
    keys.extend(["cache", "ttl", "shard", "shard_key"]);
    keys.join(", ")
}

/// The cache hints, which are no session setting: `cache` (alone or `=on`), `cache=off`, and
/// `ttl=<duration>` (which implies `cache`). None for any other key.
fn apply_cache_pair(pair: &str, hints: &mut Hints) -> Option<Result<(), HintWarning>> {
    use crate::cache::CacheHint;
    let (key, value) = match pair.split_once('=') {
        Some((key, value)) => (key.trim(), Some(unquote(value.trim()))),
        None => (pair.trim(), None),
    };
    let ttl = match hints.cache {
        Some(CacheHint::Cache { ttl }) => ttl,
        _ => None,
    };
    let bad = |expected: &str| {
        Err(HintWarning(format!(
            "invalid value {} for pgsplit hint {key} ({expected})",
            quoted(value.as_deref().unwrap_or(""))
        )))
    };
    let parsed = if key.eq_ignore_ascii_case("cache") {
        match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("on") => Ok(CacheHint::Cache { ttl }),
            Some("off") => Ok(CacheHint::Off),
            Some(_) => bad("expected on or off"),
        }
    } else if key.eq_ignore_ascii_case("ttl") {
        match value.as_deref().map(parse_duration) {
            Some(Ok(ttl)) => Ok(CacheHint::Cache { ttl: Some(ttl) }),
            _ => bad("expected a duration such as 30s"),
        }
    } else {
        return None;
    };
    Some(parsed.map(|hint| hints.cache = Some(hint)))
}
