//! Where COPY statements go, as a pure function of the statement and the sharding layout.

use std::collections::{HashMap, HashSet};

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;
use crate::shard::KeyType;
use crate::shard::map::{NamedMap, ShardMap, ShardedTable};

fn layout() -> Sharding {
    let users = ShardedTable {
        key_column: "id".into(),
        key_type: KeyType::Int8,
        map: 0,
    };
    Sharding {
        tables: HashMap::from([("users".to_string(), users)]),
        maps: vec![NamedMap {
            name: "by_id".into(),
            key_type: KeyType::Int8,
            shards: vec!["a".into(), "b".into()],
            map: ShardMap::Hash { shards: 2 },
        }],
        replicated: HashSet::from(["countries".to_string()]),
        default: Some("a".into()),
        two_phase_commit: false,
    }
}

/// The target of `sql`: Ok(None) for a statement COPY handling leaves alone, Err(SQLSTATE).
fn target_of(sql: &str, executes: bool) -> Result<Option<ShardTarget>, String> {
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .expect("parses")
        .remove(0);
    match copy_target(&layout(), &statement, sql, executes) {
        None => Ok(None),
        Some(Ok(target)) => Ok(Some(target)),
        Some(Err(FrontendError::Refused(fields))) => Err(fields.code.0.to_string()),
        Some(Err(other)) => panic!("{sql}: {other}"),
    }
}

fn spread_of(sql: &str) -> Spread {
    match target_of(sql, true) {
        Ok(Some(ShardTarget::CopyIn(plan))) => plan.spread,
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn copy_into_sharded_and_replicated_tables_is_spread() {
    assert_eq!(
        spread_of("COPY users FROM STDIN"),
        Spread::ByKey {
            key_column: "id".into()
        }
    );
    assert_eq!(
        spread_of("COPY Users (name, ID) FROM stdin WITH (FORMAT csv, HEADER)"),
        Spread::ByKey {
            key_column: "id".into()
        }
    );
    assert_eq!(
        spread_of("COPY countries FROM STDIN WITH (FORMAT binary)"),
        Spread::Everywhere(vec!["a".into(), "b".into()])
    );
    // Preparing it (Parse, Describe) may happen on any shard.
    assert_eq!(
        target_of("COPY users FROM STDIN", false),
        Ok(Some(ShardTarget::Anywhere))
    );
}

#[test]
fn copy_elsewhere_keeps_its_usual_route() {
    assert_eq!(
        target_of("COPY other FROM STDIN", true),
        Ok(Some(ShardTarget::Cluster("a".into())))
    );
    assert_eq!(target_of("COPY countries TO STDOUT", true), Ok(None));
    assert_eq!(
        target_of("COPY (SELECT * FROM countries) TO STDOUT", true),
        Ok(None)
    );
    assert_eq!(target_of("SELECT * FROM users", true), Ok(None));
}

#[test]
fn what_cannot_be_split_is_refused_even_when_only_prepared() {
    for (sql, code) in [
        ("COPY users TO STDOUT", "0A000"),
        ("COPY (SELECT * FROM users WHERE id = 1) TO STDOUT", "0A000"),
        ("COPY users FROM '/tmp/users.txt'", "0A000"),
        ("COPY users FROM STDIN WITH (FORMAT binary)", "0A000"),
        ("COPY users FROM STDIN BINARY", "0A000"),
        ("COPY users (name) FROM STDIN", "0A000"),
        ("COPY users FROM STDIN WITH (FORMAT parquet)", "22023"),
    ] {
        for executes in [true, false] {
            assert_eq!(target_of(sql, executes), Err(code.to_string()), "{sql}");
        }
    }
}

#[test]
fn a_copy_pgsplit_cannot_parse_is_refused_only_for_spread_tables() {
    let refused = |sql: &str| {
        let error = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect_err(sql);
        unreadable_copy(&layout(), sql, &error).map(|e| e.to_string())
    };
    let e = refused("/* bulk */ COPY public.Users FROM STDIN (FORMAT csv, HEADER match)");
    assert!(
        e.as_deref().is_some_and(|e| e.contains("\"users\"")),
        "{e:?}"
    );
    assert!(refused("COPY countries FROM STDIN (ON_ERROR ignore)").is_some());
    assert!(refused("COPY other FROM STDIN (ON_ERROR ignore)").is_none());
    assert!(refused("COPY \"users\" FROM STDIN (ON_ERROR ignore)").is_some());
    assert!(refused("SELEC 1").is_none());
}
