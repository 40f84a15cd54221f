//! The query-result cache (issue 8): the exact server answers to reads, kept in memory and
//! dropped when a write to a table they read commits, here or on another pgsplit instance.
//!
//! Everything here is pure or self-contained (no I/O, no session state): the session decides,
//! this module answers. Pieces:
//! - [`key`]: [`CacheKey`], what makes two reads the same read (database, user, the settings
//!   that change results, text, parameters and result formats).
//! - [`policy`]: [`cacheable`], whether a read may be cached, and for how long ([`CachePlan`]) or
//!   why not ([`NotCacheable`]); [`TableRules`], the operator's opt-in list; [`write_scope`],
//!   what a committed write must invalidate.
//! - [`volatile`]: the lexical scan for volatile and time-dependent functions.
//! - [`names`]: how table names are compared.
//! - [`store`]: [`ResultCache`], moka bounded in bytes with a TTL per entry, a table -> keys
//!   index for invalidation, LSN stamps, statistics ([`CacheStats`]).
//! - [`related`]: views and partitions, so a write to one relation drops what read another.
//! - [`notify`]: [`Invalidation`], the NOTIFY payloads that carry invalidations to other
//!   instances over [`CHANNEL`].
//!
//! CONTRACT for the session (the wiring, in the order a unit meets it):
//! 1. Per unit that is a single read: `hint` = the `cache` / `cache=off` / `ttl=` hint parsed
//!    by `crate::hint` (None without one), then
//!    `cacheable(sql, &classification, hint, &rules, CacheContext { pinned, in_transaction })`.
//!    `Err(_)`: run it as usual (count the reason if wanted).
//! 2. `Ok(plan)`: `key = CacheKey::new(database, user, session_settings, sql, params)` where
//!    `params` is the raw Bind body from the parameter format codes on (values and result
//!    formats; empty for a simple Query), and `session_settings` every `(name, value)` the
//!    session would apply (the key keeps only [`RESULT_SETTINGS`]).
//!    `cache.get(&key, min_lsn)` with `min_lsn` the session's causal LSN (or the `after=` hint;
//!    0 for `eventual`): `Some(hit)` -> send `hit.messages` then the unit's own ReadyForQuery
//!    (and ParseComplete/BindComplete for extended units), no server is involved.
//! 3. Miss: `ticket = cache.ticket()` BEFORE sending the unit to a server; collect the server
//!    messages from RowDescription to CommandComplete (only when the unit succeeded, one
//!    result set, no NoticeResponse/NotificationResponse interleaved); then
//!    `cache.insert(key, CachedResult { messages, lsn, tables: plan.tables }, plan.ttl, ticket)`
//!    with `lsn` = the replayed LSN of the node that answered as known BEFORE the unit was sent
//!    (a lower bound of what the answer reflects; for the primary, its last polled position).
//! 4. After a write commits (ReadyForQuery 'I' ending a write unit or a transaction that
//!    wrote; never at ROLLBACK), BEFORE the client gets that ReadyForQuery: for each write,
//!    `write_scope(&classification)`: `Tables(t)` -> `cache.invalidate_tables(&t)` and publish
//!    `invalidation.encode(&t)` with `SELECT pg_notify('pgsplit_invalidate', $1)` on the primary;
//!    `All` -> `cache.clear()` and publish `invalidation.encode_all()`.
//! 5. A task LISTENs on [`CHANNEL`] on the primary; each payload through
//!    `invalidation.decode(payload)`: `Some(Remote::Tables(t))` -> `invalidate_tables`,
//!    `Some(Remote::All)` -> `clear`, None -> ignore (own message or not ours). When that
//!    connection is lost, `cache.clear()` and serve uncached (`cacheable` not called) until
//!    it is LISTENing again.
//! 6. `cache.stats()` feeds `/metrics`, `/api/status` and `SHOW CACHE`.
//!
//! 7. With `invalidation = "wal"`, [`wal`] follows the primary's WAL and invalidates on every
//!    committed change, whoever made it.
//!
//! Staleness bound without `invalidation = "wal"`: writes that bypass pgsplit (other
//! applications, triggers writing other tables, functions) are seen only when the TTL ends.

pub mod channel;
pub mod key;
pub mod names;
pub mod notify;
pub mod policy;
pub mod related;
pub mod store;
pub mod volatile;
pub mod wal;

#[cfg(test)]
mod tests;

pub use key::{CacheKey, RESULT_SETTINGS};
pub use notify::{CHANNEL, Invalidation, MAX_PAYLOAD, Remote};
pub use policy::{
    CacheContext, CacheHint, CachePlan, NotCacheable, TableRules, WriteScope, cacheable,
    write_scope,
};
pub use store::{CacheStats, CachedResult, FillTicket, ResultCache};
