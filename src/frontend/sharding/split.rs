//! A multi-row `INSERT ... VALUES` whose rows belong to several shards, with two-phase commit
//! on: the rows of each shard become one INSERT on that shard, and all of them commit as one
//! (in a transaction block, as part of it; in autocommit, in a transaction of pgsplit's own).

use bytes::{BufMut, BytesMut};
use sqlparser::ast::{SetExpr, Statement};

use crate::backend::{BackendError, ServerConn};
use crate::protocol::{SqlState, read_cstr, tag};
use crate::shard::extract::KeyRef;
use crate::shard::map::Sharding;

use super::super::client::ClientConn;
use super::super::error::FrontendError;
use super::super::session::Session;
use super::super::work::Work;
use super::ShardTarget;
use super::refusal::cross_shard_write;
use super::twophase::Participant;

/// One shard's share of a split INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::frontend) struct ShardPart {
    pub(in crate::frontend) cluster: String,
    pub(in crate::frontend) sql: String,
}

/// A write whose keys name several shards: a multi-row INSERT ... VALUES is split per shard
/// when two-phase commit is on; anything else is refused, saying why.
pub(super) async fn split_write(
    sharding: &Sharding,
    table: &str,
    statement: &Statement,
    keys: &[KeyRef],
) -> Result<ShardTarget, FrontendError> {
    let refuse =
        |why: &str| FrontendError::refuse(SqlState::FEATURE_NOT_SUPPORTED, why.to_string());
    if !sharding.two_phase_commit {
        return Err(cross_shard_write(sharding, table));
    }
    let Statement::Insert(insert) = statement else {
        return Err(refuse(&format!(
            "this write to sharded table \"{table}\" has keys on more than one shard: only a multi-row INSERT ... VALUES is split over shards; write each shard's rows in its own statement (one transaction may hold them all)"
        )));
    };
    if insert.returning.is_some() {
        return Err(refuse(&format!(
            "INSERT ... RETURNING into sharded table \"{table}\" with rows for more than one shard is not supported: insert each shard's rows separately, or leave out RETURNING"
        )));
    }
    let Some(SetExpr::Values(values)) = insert.source.as_ref().map(|q| q.body.as_ref()) else {
        return Err(cross_shard_write(sharding, table));
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (row, key) in keys.iter().enumerate() {
        let KeyRef::Literal(text) = key else {
            return Err(refuse(&format!(
                "an INSERT into sharded table \"{table}\" whose rows belong to several shards is split only when its keys are literals, not bound parameters: insert each shard's rows separately"
            )));
        };
        let cluster = match sharding.cluster_for(table, text).await {
            Some(Ok(cluster)) => cluster.to_string(),
            Some(Err(e)) => return Err(FrontendError::refuse(e.sqlstate(), e.to_string())),
            None => return Err(cross_shard_write(sharding, table)),
        };
        match groups.iter_mut().find(|(c, _)| *c == cluster) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((cluster, vec![row])),
        }
    }
    let parts = groups
        .into_iter()
        .map(|(cluster, rows)| {
            let mut part = statement.clone();
            if let Statement::Insert(insert) = &mut part
                && let Some(source) = insert.source.as_mut()
                && let SetExpr::Values(values_of_part) = source.body.as_mut()
            {
                values_of_part.rows = rows.iter().map(|&i| values.rows[i].clone()).collect();
            }
            ShardPart {
                cluster,
                sql: part.to_string(),
            }
        })
        .collect();
    Ok(ShardTarget::SplitWrite { parts })
}

impl Session {
    /// Runs a split INSERT: in a transaction block on the transaction's participants, else in
    /// a multi-shard transaction of pgsplit's own. The answer is one CommandComplete with the
    /// rows of every shard.
    pub(in crate::frontend) async fn write_split(
        &mut self,
        client: &mut ClientConn,
        parts: Vec<ShardPart>,
        work: &Work,
    ) -> Result<BytesMut, FrontendError> {
        let inserted = if self.transaction_status() == b'I' {
            let (inserted, positions) = self.write_split_alone(&parts).await?;
            self.advance_causal(client, positions.iter().map(|(c, lsn)| (c.as_str(), *lsn)));
            self.invalidate(work.writes.clone(), 0);
            inserted
        } else {
            self.write_split_in_transaction(client, &parts, work)
                .await?
        };
        let mut out = BytesMut::new();
        let text = format!("INSERT 0 {inserted}\0");
        out.put_u8(b'C');
        out.put_i32((text.len() + 4) as i32);
        out.put_slice(text.as_bytes());
        Ok(out)
    }

    /// Each part on its shard's primary in a transaction begun there, then all committed as one.
    async fn write_split_alone(
        &mut self,
        parts: &[ShardPart],
    ) -> Result<(u64, Vec<(String, u64)>), FrontendError> {
        let mut participants = Vec::with_capacity(parts.len());
        let mut inserted = 0;
        for part in parts {
            let ran = self.run_in_own_transaction(part).await;
            match ran {
                Ok((participant, rows)) => {
                    participants.push(participant);
                    inserted += rows;
                }
                Err(e) => {
                    drop(participants); // closing them rolls them back
                    return Err(e);
                }
            }
        }
        let positions = self.commit_participants(participants).await?;
        Ok((inserted, positions))
    }

    async fn run_in_own_transaction(
        &self,
        part: &ShardPart,
    ) -> Result<(Participant, u64), FrontendError> {
        let mut participant = self.begin_on_primary(&part.cluster).await?;
        participant.attached.route.node.stats.count_write();
        let rows = run_insert(&mut participant.attached.checkout.conn, &part.sql).await?;
        Ok((participant, rows))
    }

    /// Each part on the transaction's participant for its shard (joining shards as needed).
    async fn write_split_in_transaction(
        &mut self,
        client: &mut ClientConn,
        parts: &[ShardPart],
        work: &Work,
    ) -> Result<u64, FrontendError> {
        if self.server.is_none() {
            // A held BEGIN: the first shard's primary starts the transaction.
            let first = parts.first().map(|p| p.cluster.clone()).unwrap_or_default();
            let route = self.primary_route(&first)?;
            self.attach(client, route).await?;
            self.run_held_begin().await?;
        }
        self.wrote = true;
        self.pending_writes =
            super::super::work::merge_scopes(self.pending_writes.take(), work.writes.clone());
        let mut inserted = 0;
        for part in parts {
            self.enter_shard(client, &part.cluster).await?;
            let Some(attached) = self.server.as_mut() else {
                break;
            };
            attached.route.node.stats.count_write();
            let ran = run_insert(&mut attached.checkout.conn, &part.sql).await;
            let status = attached.checkout.conn.tx_status;
            let outcome = super::super::state::UnitOutcome {
                status,
                failed: ran.is_err(),
            };
            self.multi_shard.unit_ended(outcome);
            self.settle_participants().await;
            inserted += ran?;
        }
        Ok(inserted)
    }
}

/// Runs one INSERT (a simple query) and returns how many rows it inserted, or the server's
/// error.
async fn run_insert(conn: &mut ServerConn, sql: &str) -> Result<u64, FrontendError> {
    let mut query = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut query)
        .map_err(|e| BackendError::Malformed(e.to_string()))?;
    conn.write_all(&query).await?;
    let mut rows = 0;
    let mut error = None;
    loop {
        let frame = conn.read_frame().await?;
        conn.observe(&frame);
        match frame.tag {
            b'C' => {
                rows = read_cstr(frame.body())
                    .and_then(|(tag, _)| tag.rsplit(' ').next()?.parse().ok())
                    .unwrap_or(0);
            }
            tag::ERROR_RESPONSE => error = Some(frame.bytes),
            tag::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match error {
        Some(raw) => Err(BackendError::Server(raw).into()),
        None => Ok(rows),
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;
    use crate::shard::config::ShardingConfig;
    use crate::shard::extract::{Extraction, extract};

    fn sharding(two_phase: bool) -> Sharding {
        let text = format!(
            "two_phase_commit = {two_phase}\n\
             tables = [{{ name = \"items\", key = \"id\", key_type = \"int8\", map = \"m\" }}]\n\
             [[maps]]\nname = \"m\"\nkind = \"range\"\nshards = [\"a\", \"b\"]\n\
             ranges = [{{ shard = \"a\", to = 100 }}, {{ shard = \"b\", from = 100 }}]\n"
        );
        let config: ShardingConfig = toml::from_str(&text).expect("valid");
        let clusters = ["a".to_string(), "b".to_string()];
        config
            .build(&clusters, &|_| tokio_postgres::Config::new())
            .expect("builds")
    }

    async fn split(two_phase: bool, sql: &str) -> Result<ShardTarget, FrontendError> {
        let sharding = sharding(two_phase);
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        let Extraction::Keys(keys) = extract(&statement, &sharding.tables) else {
            panic!("keys in {sql}");
        };
        split_write(&sharding, "items", &statement, &keys).await
    }

    fn refusal(result: Result<ShardTarget, FrontendError>) -> String {
        match result {
            Err(FrontendError::Refused(fields)) => fields.message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rows_go_to_their_shards_in_order() {
        let target = split(
            true,
            "INSERT INTO items (id, v) VALUES (1, 'x'), (150, 'y'), (2, 'z') ON CONFLICT DO NOTHING",
        )
        .await
        .expect("split");
        let ShardTarget::SplitWrite { parts } = target else {
            panic!("{target:?}");
        };
        let expected = [
            (
                "a",
                "INSERT INTO items (id, v) VALUES (1, 'x'), (2, 'z') ON CONFLICT DO NOTHING",
            ),
            (
                "b",
                "INSERT INTO items (id, v) VALUES (150, 'y') ON CONFLICT DO NOTHING",
            ),
        ];
        let got: Vec<(&str, &str)> = parts
            .iter()
            .map(|p| (p.cluster.as_str(), p.sql.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn what_cannot_be_split_is_refused_with_the_reason() {
        let off = refusal(split(false, "INSERT INTO items (id) VALUES (1), (150)").await);
        assert!(
            off.contains("two-phase commit across shards is not enabled"),
            "{off}"
        );
        let returning = refusal(
            split(
                true,
                "INSERT INTO items (id) VALUES (1), (150) RETURNING id",
            )
            .await,
        );
        assert!(returning.contains("RETURNING"), "{returning}");
        let params = refusal(split(true, "INSERT INTO items (id) VALUES ($1), ($2)").await);
        assert!(params.contains("literals"), "{params}");
        let delete = refusal(split(true, "DELETE FROM items WHERE id IN (1, 150)").await);
        assert!(delete.contains("only a multi-row INSERT"), "{delete}");
    }
}
