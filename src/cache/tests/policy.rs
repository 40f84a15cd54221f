use std::time::Duration;

use super::classified;
use crate::cache::{
    CacheContext, CacheHint, CachePlan, NotCacheable, TableRules, WriteScope, cacheable,
    write_scope,
};

fn rules() -> TableRules {
    TableRules::new([
        ("t", Duration::from_secs(10)),
        ("public.u", Duration::from_secs(20)),
        ("s.v", Duration::from_secs(5)),
        ("\"Orders\"", Duration::from_secs(60)),
    ])
    .with_default_ttl(Duration::from_secs(45))
}

const FREE: CacheContext = CacheContext {
    pinned: false,
    in_transaction: false,
};

fn hint(secs: u64) -> Option<CacheHint> {
    Some(CacheHint::Cache {
        ttl: Some(Duration::from_secs(secs)),
    })
}

const HINT_NO_TTL: Option<CacheHint> = Some(CacheHint::Cache { ttl: None });

fn judge(
    sql: &str,
    hint: Option<CacheHint>,
    context: CacheContext,
) -> Result<CachePlan, NotCacheable> {
    cacheable(sql, &classified(sql), hint, &rules(), context)
}

/// `Ok(ttl in seconds)` or `Err(reason label)`.
fn verdict(sql: &str, hint: Option<CacheHint>, context: CacheContext) -> Verdict {
    judge(sql, hint, context)
        .map(|plan| plan.ttl.as_secs())
        .map_err(|why| why.reason())
}

/// A statement, its hint, the session, and the expected [`verdict`].
type Case = (&'static str, Option<CacheHint>, CacheContext, Verdict);
type Verdict = Result<u64, &'static str>;

#[test]
fn cacheability_table() {
    let pinned = CacheContext {
        pinned: true,
        ..FREE
    };
    let in_tx = CacheContext {
        in_transaction: true,
        ..FREE
    };
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // opted-in tables, any spelling; the shortest TTL wins
        ("SELECT * FROM t", None, FREE, Ok(10)),
        ("SELECT * FROM public.t", None, FREE, Ok(10)),
        ("SELECT * FROM \"t\" WHERE id = 1", None, FREE, Ok(10)),
        ("SELECT * FROM u", None, FREE, Ok(20)),
        ("SELECT * FROM t JOIN u ON t.id = u.id", None, FREE, Ok(10)),
        ("SELECT * FROM s.v", None, FREE, Ok(5)),
        ("SELECT count(*) FROM Orders", None, FREE, Ok(60)),
        ("WITH w AS (SELECT * FROM t) SELECT * FROM w", None, FREE, Ok(10)),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", None, FREE, Ok(10)),
        ("SELECT age FROM t", None, FREE, Ok(10)),
        ("SELECT current_setting('TimeZone') FROM t", None, FREE, Ok(10)),
        // not opted in
        ("SELECT * FROM v", None, FREE, Err("not opted in")),
        ("SELECT * FROM x", None, FREE, Err("not opted in")),
        ("SELECT * FROM t JOIN x USING (id)", None, FREE, Err("not opted in")),
        // hints: ttl, the tables' TTL, the default, off, zero
        ("SELECT * FROM x", hint(30), FREE, Ok(30)),
        ("SELECT * FROM t", hint(3), FREE, Ok(3)),
        ("SELECT * FROM t", HINT_NO_TTL, FREE, Ok(10)),
        ("SELECT * FROM x", HINT_NO_TTL, FREE, Ok(45)),
        ("SELECT * FROM t", Some(CacheHint::Off), FREE, Err("disabled")),
        ("SELECT * FROM t", hint(0), FREE, Err("zero ttl")),
        // no table: only with a hint
        ("SELECT 1", None, FREE, Err("no tables")),
        ("SELECT 1", hint(30), FREE, Ok(30)),
        // volatile and time-dependent, as calls, keywords and literals
        ("SELECT now(), * FROM t", None, FREE, Err("volatile")),
        ("SELECT * FROM t WHERE d > current_date", None, FREE, Err("volatile")),
        ("SELECT * FROM t WHERE ts > CURRENT_TIMESTAMP - interval '1 hour'", None, FREE, Err("volatile")),
        ("SELECT * FROM t WHERE ts > 'now'::timestamptz", None, FREE, Err("volatile")),
        ("SELECT * FROM t WHERE d = 'today'::date", None, FREE, Err("volatile")),
        ("SELECT random() FROM t", hint(30), FREE, Err("volatile")),
        ("SELECT gen_random_uuid(), id FROM t", None, FREE, Err("volatile")),
        ("SELECT clock_timestamp() FROM t", None, FREE, Err("volatile")),
        ("SELECT age(created) FROM t", None, FREE, Err("volatile")),
        ("SELECT pg_sleep(1) FROM t", None, FREE, Err("volatile")),
        ("SELECT txid_current_snapshot() FROM t", None, FREE, Err("volatile")),
        ("SELECT inet_server_addr() FROM t", None, FREE, Err("volatile")),
        ("SELECT pg_backend_pid() FROM t", None, FREE, Err("volatile")),
        ("SELECT pg_last_wal_replay_lsn() FROM t", None, FREE, Err("volatile")),
        // conservative by design: the word in a literal costs the cache, never correctness
        ("SELECT * FROM t WHERE note = 'random text'", None, FREE, Err("volatile")),
        // not a single plain read
        ("SELECT nextval('seq') FROM t", None, FREE, Err("write")),
        ("SELECT * FROM t FOR UPDATE", None, FREE, Err("write")),
        ("SELECT * FROM t FOR SHARE", hint(30), FREE, Err("write")),
        ("INSERT INTO t VALUES (1)", None, FREE, Err("write")),
        ("SELECT my_function() FROM t", None, FREE, Err("write")),
        ("SELECT * FROM t; SELECT * FROM u", None, FREE, Err("multi-statement")),
        ("BEGIN", None, FREE, Err("transaction control")),
        ("SET search_path = s", None, FREE, Err("session effects")),
        ("SELEC * FROM t", None, FREE, Err("unparsable")),
        ("EXPLAIN ROUTE SELECT * FROM t", None, FREE, Err("explain route")),
        // the session's state
        ("SELECT * FROM t", None, pinned, Err("pinned")),
        ("SELECT * FROM t", hint(30), in_tx, Err("transaction")),
    ];
    let mut failures = Vec::new();
    for (sql, hint, context, expected) in cases {
        let got = verdict(sql, *hint, *context);
        if got != *expected {
            failures.push(format!(
                "{sql} (hint {hint:?}): expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn plan_lists_each_table_once_normalized() {
    let plan = judge(
        "SELECT * FROM public.t JOIN T ON true JOIN s.v ON true",
        None,
        FREE,
    );
    assert_eq!(
        plan.map(|p| p.tables),
        Ok(vec!["t".to_owned(), "s.v".to_owned()])
    );
}

#[test]
fn reasons_name_what_failed() {
    assert_eq!(
        judge("SELECT * FROM t JOIN x USING (id)", None, FREE),
        Err(NotCacheable::NotOptedIn("x".to_owned()))
    );
    assert_eq!(
        judge("SELECT now() FROM t", None, FREE),
        Err(NotCacheable::Volatile("now".to_owned()))
    );
    let write = judge("SELECT * FROM t FOR UPDATE", None, FREE);
    assert!(matches!(write, Err(NotCacheable::NotRead(r)) if r.contains("FOR UPDATE")));
    assert_eq!(
        NotCacheable::Volatile("now".to_owned()).to_string(),
        "volatile or time-dependent: now"
    );
}

fn scope(sql: &str) -> WriteScope {
    write_scope(&classified(sql))
}

fn tables(names: &[&str]) -> WriteScope {
    WriteScope::Tables(names.iter().map(|n| (*n).to_owned()).collect())
}

#[test]
fn write_scopes() {
    assert_eq!(scope("SELECT * FROM t"), WriteScope::Nothing);
    assert_eq!(scope("INSERT INTO public.t VALUES (1)"), tables(&["t"]));
    assert_eq!(scope("UPDATE s.v SET a = 1"), tables(&["s.v"]));
    assert_eq!(scope("DELETE FROM \"T\" WHERE id = 1"), tables(&["t"]));
    assert_eq!(scope("TRUNCATE a, b"), tables(&["a", "b"]));
    assert_eq!(scope("DROP TABLE s.x"), tables(&["s.x"]));
    assert_eq!(scope("LISTEN ch"), WriteScope::Nothing);
    assert_eq!(scope("SELECT my_writer()"), WriteScope::All);
    assert_eq!(scope("DO $$ BEGIN DELETE FROM t; END $$"), WriteScope::All);
    assert_eq!(scope("CALL p()"), WriteScope::All);
    assert_eq!(scope("DELET FROM t"), WriteScope::All);
    // A dataless first statement must not hide a second that writes.
    assert_eq!(scope("LISTEN ch; SELECT my_writer()"), WriteScope::All);
}
