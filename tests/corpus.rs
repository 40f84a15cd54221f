//! No write ever reaches a replica: every statement of the classification corpus
//! (tests/data/classify_corpus.txt, the same file the classifier's unit tests check) runs
//! through pgsplit against the real cluster, and none is refused as a write on a replica.

mod common;

use std::time::Duration;

use common::cluster;
use common::proxy::{cluster_config, start_proxy};
use tokio_postgres::NoTls;

const CORPUS: &str = include_str!("data/classify_corpus.txt");
const SCHEMA: &str = include_str!("data/corpus_schema.sql");

/// (expected access, statement) for every corpus line.
fn corpus() -> Vec<(char, &'static str)> {
    CORPUS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (kind, sql) = l.split_once('|')?;
            Some((kind.chars().next()?, sql))
        })
        .collect()
}

#[tokio::test]
async fn every_corpus_statement_runs_and_no_write_reaches_a_replica() {
    let c = cluster();
    let db = common::unique_name("corpus");
    c.psql(c.primary(), "postgres", &format!("CREATE DATABASE {db}"))
        .expect("create the corpus database");
    c.psql(c.primary(), &db, SCHEMA)
        .expect("load the corpus schema");
    let lsn = c.current_lsn().expect("primary LSN");
    for replica in c.replicas() {
        c.wait_replayed(replica, &lsn, Duration::from_secs(30))
            .expect("replicas have the schema");
    }
    let mut config = cluster_config();
    config.routing.read_only_functions = vec!["read_only_fn".to_string()];
    let proxy = start_proxy(config);
    let (client, connection) = tokio_postgres::connect(&proxy.connstr("postgres", &db), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);

    let statements = corpus();
    assert!(
        statements.len() >= 200,
        "the corpus has {} statements",
        statements.len()
    );
    let mut failures = Vec::new();
    for (kind, sql) in &statements {
        if let Err(e) = client.batch_execute(sql).await {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            failures.push(format!("{kind}|{sql}\n    -> {code} {e}"));
        }
    }
    let on_replica: Vec<&String> = failures.iter().filter(|f| f.contains("25006")).collect();
    assert!(
        on_replica.is_empty(),
        "writes reached a replica:\n{}",
        on_replica
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} corpus statements failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
