//! Statements the corpus cannot hold (they pin, need a superuser, or use COPY or VACUUM), with
//! everything a classification says about them: tables, transaction control, session effects.

use super::super::{Access, Classification, PinCause, SessionEffect, TxControl};
use super::{classified, policy};
use crate::route::classify::{FunctionPolicy, classify};

/// What one statement must classify as. Unset fields must be empty.
struct Case {
    sql: &'static str,
    access: Access,
    parsed: bool,
    read: &'static [&'static str],
    written: &'static [&'static str],
    tx: Vec<TxControl>,
    effects: Vec<SessionEffect>,
    statements: Option<usize>,
    explain_route: Option<&'static str>,
}

fn r(sql: &'static str) -> Case {
    Case {
        sql,
        access: Access::Read,
        parsed: true,
        read: &[],
        written: &[],
        tx: Vec::new(),
        effects: Vec::new(),
        statements: None,
        explain_route: None,
    }
}

fn w(sql: &'static str) -> Case {
    Case {
        access: Access::Write,
        ..r(sql)
    }
}

impl Case {
    fn reads(self, read: &'static [&'static str]) -> Self {
        Case { read, ..self }
    }
    fn writes(self, written: &'static [&'static str]) -> Self {
        Case { written, ..self }
    }
    fn tx(self, tx: Vec<TxControl>) -> Self {
        Case { tx, ..self }
    }
    fn effects(self, effects: Vec<SessionEffect>) -> Self {
        Case { effects, ..self }
    }
    fn pin(self, cause: PinCause) -> Self {
        self.effects(vec![SessionEffect::Pin(cause)])
    }
    fn unparsed(self) -> Self {
        Case {
            parsed: false,
            ..self
        }
    }
    fn statements(self, n: usize) -> Self {
        Case {
            statements: Some(n),
            ..self
        }
    }
    fn explains(self, inner: &'static str) -> Self {
        Case {
            explain_route: Some(inner),
            ..self
        }
    }

    /// What differs between this case and `got`, if anything.
    fn mismatch(&self, got: &Classification) -> Option<String> {
        let expected_read: Vec<String> = self.read.iter().map(|t| t.to_string()).collect();
        let expected_written: Vec<String> = self.written.iter().map(|t| t.to_string()).collect();
        let same = got.access == self.access
            && got.parsed == self.parsed
            && got.tables_read == expected_read
            && got.tables_written == expected_written
            && got.tx == self.tx
            && got.effects == self.effects
            && self.statements.is_none_or(|n| n == got.statements)
            && got.explain_route.as_deref() == self.explain_route
            && (got.access == Access::Write) == got.write_reason.is_some();
        (!same).then(|| {
            format!(
                "{}\n  expected {:?} parsed={} read={expected_read:?} written={expected_written:?} \
                 tx={:?} effects={:?} statements={:?} explain_route={:?}\n  got      {got:?}",
                self.sql,
                self.access,
                self.parsed,
                self.tx,
                self.effects,
                self.statements,
                self.explain_route
            )
        })
    }
}

fn set(name: &str, sql: &str) -> SessionEffect {
    SessionEffect::Set {
        name: name.to_owned(),
        sql: sql.to_owned(),
    }
}

fn prepare(name: &str, sql: &str) -> SessionEffect {
    SessionEffect::Prepare {
        name: name.to_owned(),
        sql: sql.to_owned(),
    }
}

fn execute(name: &str) -> SessionEffect {
    SessionEffect::Execute {
        name: name.to_owned(),
    }
}

fn reset(name: &str) -> SessionEffect {
    SessionEffect::Reset {
        name: name.to_owned(),
    }
}

fn set_read_only(read_only: bool, session: bool) -> TxControl {
    TxControl::SetReadOnly { read_only, session }
}

fn begin(read_only: bool) -> TxControl {
    TxControl::Begin {
        read_only,
        plain: true,
    }
}

fn session_settings() -> Vec<Case> {
    vec![
        r(r#"SET search_path TO "$user", public"#).effects(vec![set(
            "search_path",
            r#"SET search_path = "$user", public"#,
        )]),
        r("SET TIME ZONE 'Europe/Paris'")
            .effects(vec![set("timezone", "SET TIME ZONE 'Europe/Paris'")]),
        r("SET TIME ZONE LOCAL").effects(vec![set("timezone", "SET TIME ZONE LOCAL")]),
        r("SET LOCAL TIME ZONE 'UTC'"),
        r("SET ROLE admin").effects(vec![set("role", "SET ROLE admin")]),
        r("SET ROLE NONE").effects(vec![set("role", "SET ROLE NONE")]),
        r("SET LOCAL ROLE admin"),
        r("SET SESSION AUTHORIZATION bob").effects(vec![set(
            "session_authorization",
            "SET SESSION AUTHORIZATION bob",
        )]),
        r("SET SESSION AUTHORIZATION DEFAULT").effects(vec![set(
            "session_authorization",
            "SET SESSION AUTHORIZATION DEFAULT",
        )]),
        r(r#"SET "TimeZone" = 'UTC'"#).effects(vec![set("timezone", r#"SET "TimeZone" = 'UTC'"#)]),
        r("set Statement_Timeout = '5s'").effects(vec![set(
            "statement_timeout",
            "SET Statement_Timeout = '5s'",
        )]),
        r("SET myapp.user_id = '42'")
            .effects(vec![set("myapp.user_id", "SET myapp.user_id = '42'")]),
        r(r"SET application_name = E'it\'s'").effects(vec![set(
            "application_name",
            r"SET application_name = E'it\'s'",
        )]),
        r("SET application_name = 'it''s'").effects(vec![set(
            "application_name",
            "SET application_name = 'it''s'",
        )]),
        r("SET default_transaction_read_only = on").effects(vec![set(
            "default_transaction_read_only",
            "SET default_transaction_read_only = on",
        )]),
        r("SET NAMES 'UTF8'").effects(vec![set("client_encoding", "SET NAMES 'UTF8'")]),
        r("SET LOCAL statement_timeout = 5"),
        // pgsplit's own: in force until the transaction ends.
        r("SET LOCAL pgsplit.consistency = 'strong'").effects(vec![SessionEffect::SetLocal {
            name: "pgsplit.consistency".into(),
            sql: "SET LOCAL pgsplit.consistency = 'strong'".into(),
        }]),
        r("SET transaction_read_only = on").tx(vec![set_read_only(true, false)]),
        r("RESET ROLE").effects(vec![reset("role")]),
        r("RESET SESSION AUTHORIZATION").effects(vec![reset("session_authorization")]),
        r("RESET Search_Path").effects(vec![reset("search_path")]),
        r("RESET ALL").effects(vec![SessionEffect::ResetAll]),
        r("DISCARD ALL").effects(vec![SessionEffect::DiscardAll]),
        r("DISCARD TEMP").effects(vec![SessionEffect::DiscardTemp]),
        r("DISCARD TEMPORARY").effects(vec![SessionEffect::DiscardTemp]),
        r("DISCARD PLANS"),
        r("SHOW TRANSACTION ISOLATION LEVEL"),
    ]
}

fn transactions() -> Vec<Case> {
    vec![
        r("BEGIN").tx(vec![begin(false)]),
        r("BEGIN READ ONLY").tx(vec![begin(true)]),
        r("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY").tx(vec![begin(true)]),
        r("START TRANSACTION READ ONLY, READ WRITE").tx(vec![begin(false)]),
        r("COMMIT AND CHAIN")
            .tx(vec![
                TxControl::Commit,
                TxControl::Begin {
                    read_only: false,
                    plain: false,
                },
            ])
            .effects(vec![SessionEffect::Commit]),
        // Not PostgreSQL's grammar: the server will say so, so pgsplit must not answer for it.
        r("BEGIN ISOLATION LEVEL SNAPSHOT").tx(vec![TxControl::Begin {
            read_only: false,
            plain: false,
        }]),
        r("ABORT")
            .tx(vec![TxControl::Rollback])
            .effects(vec![SessionEffect::Rollback]),
        // The ends of blocks are effects too, in order with the SETs between them.
        r("BEGIN; SET a = 1; COMMIT; BEGIN; SET b = 2; ROLLBACK")
            .tx(vec![
                begin(false),
                TxControl::Commit,
                begin(false),
                TxControl::Rollback,
            ])
            .effects(vec![
                set("a", "SET a = 1"),
                SessionEffect::Commit,
                set("b", "SET b = 2"),
                SessionEffect::Rollback,
            ]),
        r("ROLLBACK TO a")
            .tx(vec![TxControl::RollbackToSavepoint])
            .effects(vec![SessionEffect::RollbackToSavepoint {
                name: "a".into(),
            }]),
        r("RELEASE A")
            .tx(vec![TxControl::ReleaseSavepoint])
            .effects(vec![SessionEffect::ReleaseSavepoint { name: "a".into() }]),
        r(r#"SAVEPOINT "My point""#)
            .tx(vec![TxControl::Savepoint])
            .effects(vec![SessionEffect::Savepoint {
                name: "My point".into(),
            }]),
        r("SET TRANSACTION READ ONLY").tx(vec![set_read_only(true, false)]),
        r("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE")
            .tx(vec![set_read_only(false, false)]),
        r("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        r("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .tx(vec![set_read_only(true, true)])
            .effects(vec![set(
                "default_transaction_read_only",
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            )]),
        r("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE")
            .tx(vec![set_read_only(false, true)])
            .effects(vec![
                set(
                    "default_transaction_isolation",
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                ),
                set(
                    "default_transaction_read_only",
                    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
                ),
            ]),
        w("PREPARE TRANSACTION 'tx1'").tx(vec![TxControl::TwoPhase]),
        w("COMMIT PREPARED 'tx1'").tx(vec![TxControl::TwoPhase]),
        w("rollback prepared $$tx1$$").tx(vec![TxControl::TwoPhase]),
        w("BEGIN; UPDATE accounts SET balance = 0; PREPARE TRANSACTION 'x'")
            .writes(&["accounts"])
            .tx(vec![begin(false), TxControl::TwoPhase])
            .statements(3),
        w("COMMIT PREPARED").unparsed(),
    ]
}

fn prepared_statements() -> Vec<Case> {
    vec![
        r("PREPARE Foo (int) AS SELECT * FROM accounts WHERE id = $1").effects(vec![prepare(
            "foo",
            "PREPARE Foo (INT) AS SELECT * FROM accounts WHERE id = $1",
        )]),
        r(r#"PREPARE "Foo" AS INSERT INTO audit_log (message) VALUES ($1)"#).effects(vec![
            prepare(
                "Foo",
                r#"PREPARE "Foo" AS INSERT INTO audit_log (message) VALUES ($1)"#,
            ),
        ]),
        w("EXECUTE foo(1)").effects(vec![execute("foo")]),
        w("EXECUTE Foo").effects(vec![execute("foo")]),
        r("PREPARE p AS SELECT 1; EXECUTE p")
            .effects(vec![prepare("p", "PREPARE p AS SELECT 1"), execute("p")]),
        w("PREPARE p AS DELETE FROM audit_log; EXECUTE p")
            .writes(&["audit_log"])
            .effects(vec![
                prepare("p", "PREPARE p AS DELETE FROM audit_log"),
                execute("p"),
            ]),
        w("PREPARE p AS SELECT pg_advisory_lock($1); EXECUTE p(1)").effects(vec![
            prepare("p", "PREPARE p AS SELECT pg_advisory_lock($1)"),
            SessionEffect::Pin(PinCause::AdvisoryLock),
            execute("p"),
        ]),
        r("PREPARE p AS SELECT * FROM accounts; EXECUTE p")
            .reads(&["accounts"])
            .effects(vec![
                prepare("p", "PREPARE p AS SELECT * FROM accounts"),
                execute("p"),
            ]),
        w("PREPARE p AS SELECT 1; EXECUTE p(nextval('s'))")
            .effects(vec![prepare("p", "PREPARE p AS SELECT 1"), execute("p")]),
        r("DEALLOCATE PREPARE foo").effects(vec![SessionEffect::Deallocate {
            name: Some("foo".to_owned()),
        }]),
        r(r#"DEALLOCATE "ALL""#).effects(vec![SessionEffect::Deallocate {
            name: Some("ALL".to_owned()),
        }]),
        r("DEALLOCATE PREPARE ALL").effects(vec![SessionEffect::Deallocate { name: None }]),
    ]
}

fn pins() -> Vec<Case> {
    vec![
        w("LISTEN Jobs").effects(vec![
            SessionEffect::Pin(PinCause::Listen),
            SessionEffect::Listen {
                channel: "jobs".into(),
            },
        ]),
        r("UNLISTEN jobs").effects(vec![SessionEffect::Unlisten {
            channel: Some("jobs".to_owned()),
        }]),
        r(r#"UNLISTEN "Jobs""#).effects(vec![SessionEffect::Unlisten {
            channel: Some("Jobs".to_owned()),
        }]),
        r("UNLISTEN *").effects(vec![SessionEffect::Unlisten { channel: None }]),
        w("CREATE TEMP TABLE t (i int)")
            .writes(&["t"])
            .pin(PinCause::TempTable),
        w("CREATE TEMPORARY TABLE t AS SELECT * FROM accounts")
            .reads(&["accounts"])
            .writes(&["t"])
            .pin(PinCause::TempTable),
        w("CREATE TEMP VIEW v AS SELECT 1")
            .writes(&["v"])
            .pin(PinCause::TempTable),
        w("CREATE TEMP SEQUENCE s").pin(PinCause::TempTable),
        w("SELECT * INTO TEMP t FROM accounts")
            .reads(&["accounts"])
            .writes(&["t"])
            .pin(PinCause::TempTable),
        w("CREATE TABLE t (i int)").writes(&["t"]),
        w("SELECT pg_advisory_lock(1)").pin(PinCause::AdvisoryLock),
        w("SELECT pg_catalog.pg_advisory_lock_shared(1)").pin(PinCause::AdvisoryLock),
        w("SELECT pg_try_advisory_lock_shared(1), pg_try_advisory_lock(2), pg_advisory_lock(3)")
            .pin(PinCause::AdvisoryLock),
        w("SELECT pg_advisory_xact_lock(1)"),
        w("SELECT pg_advisory_unlock(1)"),
        w("SELECT set_config('app.user', '7', false)").pin(PinCause::SessionFunction),
        w("SELECT set_config('app.user', '7', current_setting('x')::bool)")
            .pin(PinCause::SessionFunction),
        w("SELECT set_config('app.user', '7')").pin(PinCause::SessionFunction),
        w("SELECT * FROM set_config('app.user', '7', false)").pin(PinCause::SessionFunction),
        r("SELECT set_config('app.user', '7', 'on')"),
        r("SELECT set_config('app.user', '7', is_local => true)"),
        r("DECLARE \"C\" CURSOR WITH HOLD FOR SELECT * FROM accounts")
            .reads(&["accounts"])
            .effects(vec![
                SessionEffect::Pin(PinCause::HoldCursor),
                SessionEffect::HoldCursor { name: "C".into() },
            ]),
        r("DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1"),
        w("DECLARE c CURSOR FOR SELECT * FROM accounts FOR UPDATE").reads(&["accounts"]),
        w("DECLARE c CURSOR FOR SELECT nextval('s')"),
        // They answer from the backend that ran nextval(): the session's own connection.
        w("SELECT lastval()").effects(vec![SessionEffect::SequenceState]),
        w("SELECT pg_catalog.currval('orders_id_seq'), lastval()")
            .effects(vec![SessionEffect::SequenceState]),
        w("SELECT * FROM orders WHERE id = currval(pg_get_serial_sequence('orders', 'id'))")
            .reads(&["orders"])
            .effects(vec![SessionEffect::SequenceState]),
        // What comes after a nextval() of its own text reads that one: any connection will do.
        w("INSERT INTO orders (item) VALUES ('x'); SELECT lastval()").writes(&["orders"]),
        w("SELECT nextval('s'), currval('s')"),
        r("EXPLAIN SELECT lastval()"),
    ]
}

fn cursors_copy_maintenance() -> Vec<Case> {
    vec![
        r("FETCH c"),
        r("FETCH FROM c"),
        r("MOVE c"),
        r("MOVE FORWARD 2 IN c"),
        r("FETCH ABSOLUTE 3 c"),
        r("FETCH ALL FROM c"),
        r("CLOSE ALL").effects(vec![SessionEffect::CloseCursor { name: None }]),
        r("CLOSE C").effects(vec![SessionEffect::CloseCursor {
            name: Some("c".into()),
        }]),
        w("COPY accounts FROM STDIN").writes(&["accounts"]),
        w("COPY app.settings (key, value) FROM STDIN WITH (FORMAT csv)").writes(&["app.settings"]),
        w("COPY accounts FROM '/tmp/accounts.csv' CSV").writes(&["accounts"]),
        r("COPY accounts TO STDOUT").reads(&["accounts"]),
        r("COPY (SELECT * FROM orders WHERE amount > 1) TO STDOUT WITH (FORMAT csv)")
            .reads(&["orders"]),
        w("COPY (SELECT nextval('s')) TO STDOUT"),
        w("COPY accounts TO '/tmp/accounts.csv'").reads(&["accounts"]),
        w("COPY accounts TO PROGRAM 'cat'").reads(&["accounts"]),
        w("VACUUM accounts"),
        w("VACUUM FULL"),
        w("VACUUM (ANALYZE) accounts").unparsed(),
        w("CHECKPOINT").unparsed(),
        w("REFRESH MATERIALIZED VIEW account_summary").unparsed(),
        w("CALL touch_counter()"),
        w("BEGIN; LOCK TABLE accounts IN SHARE MODE; COMMIT")
            .tx(vec![begin(false), TxControl::Commit])
            .effects(vec![SessionEffect::Commit]),
    ]
}

fn explain_and_odd_texts() -> Vec<Case> {
    vec![
        r("EXPLAIN ROUTE SELECT 1")
            .explains("SELECT 1")
            .statements(1),
        r("  /* pgsplit: replica */ explain   route\n INSERT INTO t VALUES (1);")
            .explains("INSERT INTO t VALUES (1)"),
        r("-- note\nExplain /* x */ Route DELETE FROM t").explains("DELETE FROM t"),
        r("EXPLAIN ROUTE").explains(""),
        w("EXPLAIN routes"),
        w("EXPLAIN ROUTE_X SELECT 1").unparsed(),
        r("EXPLAIN (ANALYZE false) INSERT INTO t VALUES (1)").reads(&["t"]),
        r("EXPLAIN (ANALYZE off) INSERT INTO t VALUES (1)").reads(&["t"]),
        w("EXPLAIN (ANALYZE on) INSERT INTO t VALUES (1)").writes(&["t"]),
        r("EXPLAIN UPDATE t SET a = 1 FROM u WHERE u.id = t.id").reads(&["u", "t"]),
        w("SELEC 1").unparsed().statements(1),
        w("SELECT 'unterminated").unparsed(),
        w("SELECT 1; SELEC 2; SELECT 3").unparsed().statements(3),
        w("DO $$BEGIN NULL; END$$").unparsed(),
        w("SELECT * FROM accounts FOR NO KEY UPDATE").unparsed(),
        r("").statements(0),
        r("   \n\t ").statements(0),
        r("-- only a comment").statements(0),
        r("/* only a comment */ ;;").statements(0),
    ]
}

fn tables_and_functions() -> Vec<Case> {
    vec![
        w("SELECT * FROM (WITH d AS (DELETE FROM audit_log RETURNING *) SELECT * FROM d) s")
            .writes(&["audit_log"]),
        w("SELECT (WITH i AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1 FROM i)")
            .writes(&["t"]),
        w("SELECT * FROM accounts WHERE id IN (WITH u AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT id FROM u)")
            .reads(&["accounts"])
            .writes(&["accounts"]),
        w("WITH m AS (MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE) SELECT 1")
            .reads(&["u"])
            .writes(&["t"]),
        r("SELECT * FROM generate_series(1, 3) g JOIN accounts a ON a.id = g").reads(&["accounts"]),
        r("WITH t AS (SELECT * FROM accounts) SELECT * FROM t JOIN t AS t2 ON true")
            .reads(&["accounts"]),
        r("SELECT * FROM Public.Accounts, \"Orders\"").reads(&["public.accounts", "orders"]),
        r("TABLE app.settings").reads(&["app.settings"]),
        r("SELECT * FROM orders UNION TABLE app.settings").reads(&["app.settings", "orders"]),
        r("SELECT * FROM ONLY accounts a JOIN ONLY orders o ON true, ONLY items")
            .reads(&["accounts", "orders", "items"]),
        w("UPDATE ONLY accounts SET balance = 0").writes(&["accounts"]),
        w("DELETE FROM ONLY audit_log").writes(&["audit_log"]),
        r("SELECT * FROM accounts FETCH FIRST 1 ROWS ONLY").reads(&["accounts"]),
        r("WITH accounts AS (SELECT * FROM accounts WHERE id > 1) SELECT * FROM accounts")
            .reads(&["accounts"]),
        r("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t").reads(&["t"]),
        r("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r"),
        r("WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM b").reads(&["b"]),
        r(r#"WITH "T" AS (SELECT 1) SELECT * FROM t, "T""#).reads(&["t"]),
        r("WITH x AS (SELECT 1) SELECT * FROM x WHERE EXISTS (SELECT 1 FROM x)"),
        w("UPDATE accounts SET balance = 0 FROM accounts AS other WHERE other.id = accounts.id")
            .reads(&["accounts"])
            .writes(&["accounts"]),
        w("MERGE INTO counters c USING orders o ON c.name = o.status WHEN MATCHED THEN DELETE")
            .reads(&["orders"])
            .writes(&["counters"]),
        w("DELETE FROM audit_log a USING accounts b WHERE a.id = b.id")
            .reads(&["accounts"])
            .writes(&["audit_log"]),
        w("TRUNCATE a, s.b").writes(&["a", "s.b"]),
        w("DROP TABLE a, s.b").writes(&["a", "s.b"]),
        w("ALTER TABLE s.a ADD COLUMN b int").writes(&["s.a"]),
        w("INSERT INTO t SELECT * FROM t").reads(&["t"]).writes(&["t"]),
        w("SELECT public.lower('x')"),
        r("SELECT pg_catalog.now(), PG_CATALOG.Upper('x')"),
        w(r#"SELECT "row"(1)"#),
        r("SELECT ARRAY(SELECT 1), ROW(1, 2)"),
        w("SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM accounts").reads(&["accounts"]),
        w("SELECT string_agg(x, ',' ORDER BY nextval('s')) FROM t").reads(&["t"]),
        w("SELECT * FROM t WHERE x = ANY(ARRAY[nextval('s')])").reads(&["t"]),
        w("SELECT * FROM t LIMIT nextval('s')").reads(&["t"]),
        w("SELECT * FROM t JOIN u ON u.id = nextval('s')").reads(&["t", "u"]),
        w("SELECT * FROM t a, LATERAL nextval('s') AS n").reads(&["t"]),
        w("SELECT * FROM ROWS FROM (generate_series(1, 2))").unparsed(),
    ]
}

fn all_cases() -> Vec<Case> {
    [
        session_settings(),
        transactions(),
        prepared_statements(),
        pins(),
        cursors_copy_maintenance(),
        explain_and_odd_texts(),
        tables_and_functions(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn every_case_classifies_as_expected() {
    let cases = all_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|case| case.mismatch(&classified(case.sql)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// What SET and PREPARE effects carry is re-run on other server connections: it must parse
/// again, and mean the same thing.
#[test]
fn replayed_sql_reparses_to_the_same_effect() {
    for case in all_cases() {
        for effect in classified(case.sql).effects {
            let (SessionEffect::Set { sql, .. } | SessionEffect::Prepare { sql, .. }) = &effect
            else {
                continue;
            };
            let again = classified(sql);
            assert!(again.parsed, "{sql} (from {}) does not parse", case.sql);
            assert_eq!(again.effects, vec![effect.clone()], "re-running {sql}");
        }
    }
}

#[test]
fn unparsable_reason_quotes_the_parser() {
    let got = classified("SELEC 1");
    let reason = got.write_reason.unwrap_or_default();
    assert!(reason.starts_with("unparsable: "), "{reason}");
    assert!(reason.len() <= "unparsable: ".len() + 60, "{reason}");
    assert!(reason.contains("SELEC"), "{reason}");
}

#[test]
fn write_reasons_name_the_cause() {
    for (sql, reason) in [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("SELECT * FROM t FOR UPDATE", "SELECT FOR UPDATE"),
        ("SELECT * FROM t FOR SHARE", "SELECT FOR SHARE"),
        ("SELECT pg_catalog.NextVal('s')", "function nextval"),
        ("SELECT LASTVAL()", "function lastval"),
        ("SELECT 1 INTO t", "SELECT INTO"),
        (
            "CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)",
            "CREATE UNIQUE INDEX",
        ),
        ("DROP TABLE IF EXISTS t", "DROP TABLE"),
        ("GRANT SELECT ON t TO PUBLIC", "GRANT SELECT"),
        ("NOTIFY ch, 'x'", "NOTIFY"),
        ("COPY t FROM STDIN", "COPY FROM"),
        ("LISTEN ch", "LISTEN"),
    ] {
        assert_eq!(
            classified(sql).write_reason.as_deref(),
            Some(reason),
            "{sql}"
        );
    }
}

/// A COPY FROM anywhere in a text is flagged (copy data may follow it on the connection); a
/// COPY TO is not.
#[test]
fn copy_from_is_flagged_wherever_it_is() {
    for (sql, copy_in) in [
        ("COPY t FROM STDIN", true),
        (
            "INSERT INTO u VALUES (1); COPY t (a, b) FROM STDIN WITH (FORMAT csv)",
            true,
        ),
        ("COPY t FROM '/tmp/t.csv'", true),
        ("COPY t TO STDOUT", false),
        ("COPY (SELECT 1) TO STDOUT", false),
        ("INSERT INTO t VALUES (1)", false),
        ("EXPLAIN SELECT 1", false),
    ] {
        assert_eq!(classified(sql).copy_in, copy_in, "{sql}");
    }
}

/// Every function the brief names as a write is one, whatever the declared list says.
#[test]
fn known_side_effect_functions_write_even_when_declared_read_only() {
    let functions = [
        "nextval",
        "setval",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "txid_current",
        "pg_current_xact_id",
        "pg_current_wal_lsn",
        "pg_current_wal_insert_lsn",
        "pg_notify",
        "lo_create",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_put",
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_create_logical_replication_slot",
        "pg_drop_replication_slot",
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "some_user_function",
    ];
    let declared: Vec<String> = functions.iter().map(|f| f.to_string()).collect();
    let trusting = FunctionPolicy::new(&declared);
    for function in functions {
        for sql in [
            format!("SELECT {function}(1, 2, false)"),
            format!("SELECT * FROM pg_catalog.{function}(1)"),
        ] {
            let by_default = classify(&sql, &policy());
            assert_eq!(by_default.access, Access::Write, "{sql}");
            if function != "some_user_function" {
                assert_eq!(
                    classify(&sql, &trusting).access,
                    Access::Write,
                    "{sql} (declared)"
                );
            }
        }
    }
}

#[test]
fn declared_functions_match_by_last_identifier_in_any_case() {
    let policy = FunctionPolicy::new(&["Shop.Price_Of".to_owned(), " ".to_owned()]);
    for sql in [
        "SELECT price_of(1)",
        "SELECT shop.price_of(1)",
        "SELECT SHOP.PRICE_OF(1)",
        "SELECT * FROM price_of(1)",
    ] {
        assert_eq!(classify(sql, &policy).access, Access::Read, "{sql}");
    }
    assert_eq!(
        classify("SELECT price_of_x(1)", &policy).access,
        Access::Write
    );
    assert_eq!(
        classify("SELECT read_only_fn()", &policy).access,
        Access::Write
    );
}

#[test]
fn each_statements_effects_end_where_it_does() {
    let c = classified("SET a = 1; SELECT 1; PREPARE q AS SELECT 1; COMMIT");
    assert_eq!(c.effect_ends, [(1, 1), (3, 2), (4, 3)]);
    assert!(classified("SELECT 1; SELECT 2").effect_ends.is_empty());
}
