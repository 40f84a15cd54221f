//! `COPY t FROM STDIN` into a sharded table: pgsplit reads the client's rows (text or CSV),
//! finds each row's key and sends the row to its shard's primary, inside one COPY per shard
//! started when that shard's first row arrives (see `copy_shards`). Into a replicated table the
//! data goes whole to every shard. COPY out of a sharded table is refused: a SELECT fans out.

use std::sync::Arc;

use sqlparser::ast::{CopySource, CopyTarget, Ident, ObjectName, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Span, Token, Tokenizer};

use crate::protocol::{Frame, SqlState, tag};
use crate::shard::copy_rows::{CopyFormat, CopyOptions, FieldError, Row, RowSplitter};
use crate::shard::extract::{folded, sharded_tables, table_name as table_name_of};
use crate::shard::map::{Placement, Sharding};

use super::super::client::{ClientConn, IdleLimit};
use super::super::error::FrontendError;
use super::super::scatter::{put_message, remember};
use super::super::session::Session;
use super::super::state::SessionState;
use super::super::work::Work;
use super::ShardTarget;
use super::copy_shards::{Committed, ShardCopies};

/// A COPY FROM STDIN that pgsplit runs over several shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::frontend) struct CopyPlan {
    /// The table as the configuration names it.
    table: String,
    /// The table as the statement writes it (schema, quotes), for the catalog.
    relation: String,
    /// The statement, run as is on each shard.
    sql: String,
    /// The COPY's column list, folded; empty for all the table's columns.
    columns: Vec<String>,
    options: CopyOptions,
    spread: Spread,
}

/// Where a COPY's rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spread {
    /// Each row to the shard of its key, in this column.
    ByKey { key_column: String },
    /// All the data to every one of these clusters.
    Everywhere(Vec<String>),
}

/// Where a COPY statement naming a sharded or replicated table runs; None for any other
/// statement.
pub(super) fn copy_target(
    sharding: &Sharding,
    statement: &Statement,
    sql: &str,
    executes: bool,
) -> Option<Result<ShardTarget, FrontendError>> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        let sharded = sharded_tables(statement, &sharding.tables);
        return sharded.first().map(|table| Err(copy_out_refused(table)));
    };
    let table = table_name_of(table_name)?;
    let spread = match sharding.placement(&table) {
        Placement::Sharded(_) if *to => return Some(Err(copy_out_refused(&table))),
        Placement::Sharded(sharded) => Spread::ByKey {
            key_column: sharded.key_column.clone(),
        },
        Placement::Replicated if *to => return None,
        Placement::Replicated => Spread::Everywhere(super::target::all_shards(sharding)),
        Placement::Default(cluster) => return Some(Ok(ShardTarget::Cluster(cluster.to_string()))),
        Placement::Unknown => return None,
    };
    if *target != CopyTarget::Stdin {
        return Some(Err(refuse(format!(
            "COPY into table \"{table}\" from a server file or program cannot be spread over the shards: send the data FROM STDIN (psql's \\copy does)"
        ))));
    }
    let plan = CopyOptions::read(options, legacy_options)
        .map_err(|message| FrontendError::refuse(SqlState::INVALID_PARAMETER_VALUE, message))
        .and_then(|options| {
            check_splittable(
                CopyPlan {
                    relation: table_name.to_string(),
                    table,
                    sql: sql.to_string(),
                    columns: columns.iter().map(folded).collect(),
                    options,
                    spread,
                },
                table_name,
            )
        });
    // What cannot run is refused from the Parse on; a unit that only prepares the COPY may
    // run on any shard.
    Some(plan.map(|plan| match executes {
        true => ShardTarget::CopyIn(Box::new(plan)),
        false => ShardTarget::Anywhere,
    }))
}

/// A COPY that sqlparser cannot read (newer options such as `HEADER MATCH` or `ON_ERROR`)
/// into a sharded or replicated table: refused, since sent whole to one shard its rows would
/// land in the wrong places. None for any other text, which goes on to the server.
pub(super) fn unreadable_copy(
    sharding: &Sharding,
    sql: &str,
    error: &ParserError,
) -> Option<FrontendError> {
    let table = copied_table(sql)?;
    matches!(
        sharding.placement(&table),
        Placement::Sharded(_) | Placement::Replicated
    )
    .then(|| {
        refuse(format!(
            "pgsplit cannot read this COPY ({error}), so it cannot spread its rows over the shards of table \"{table}\": write its options in a form pgsplit reads, such as WITH (FORMAT csv, HEADER)"
        ))
    })
}

/// The table `COPY <name>` names, unqualified and folded, from the statement's first tokens.
fn copied_table(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut words = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)));
    let Some(Token::Word(copy)) = words.next() else {
        return None;
    };
    if copy.keyword != Keyword::COPY {
        return None;
    }
    // A name is words joined by periods: `schema.table`; the last word is the table.
    let mut table = None;
    while let Some(Token::Word(word)) = words.next() {
        table = Some(folded(&Ident {
            value: word.value,
            quote_style: word.quote_style,
            span: Span::empty(),
        }));
        if words.next() != Some(Token::Period) {
            break;
        }
    }
    table
}

/// Refuses what cannot be split by key: binary data, a column list without the key.
fn check_splittable(plan: CopyPlan, name: &ObjectName) -> Result<CopyPlan, FrontendError> {
    let Spread::ByKey { key_column } = &plan.spread else {
        return Ok(plan);
    };
    if plan.options.format == CopyFormat::Binary {
        return Err(refuse(format!(
            "COPY in binary format into sharded table \"{name}\" is not supported: pgsplit reads each row's key to pick its shard; use FORMAT text or csv"
        )));
    }
    if !plan.columns.is_empty() && !plan.columns.contains(key_column) {
        return Err(refuse(format!(
            "COPY into sharded table \"{name}\" must include its sharding key \"{key_column}\" in its column list"
        )));
    }
    Ok(plan)
}

fn copy_out_refused(table: &str) -> FrontendError {
    refuse(format!(
        "COPY TO of sharded table \"{table}\" is not supported: each shard holds only its own rows; read them with SELECT (it fans out and merges), or COPY from each shard"
    ))
}

pub(super) fn copy_not_alone() -> FrontendError {
    refuse("a COPY into a sharded or replicated table must be sent as a statement of its own")
}

fn refuse(message: impl Into<String>) -> FrontendError {
    FrontendError::refuse(SqlState::FEATURE_NOT_SUPPORTED, message)
}

/// How each row's key is found.
struct KeyedRows {
    sharding: Arc<Sharding>,
    splitter: RowSplitter,
    /// The key's field number in each row.
    key_field: usize,
}

impl Session {
    /// Runs a COPY FROM STDIN over the shards: answers the unit's own messages, takes the
    /// client's data until CopyDone or CopyFail, and answers `COPY <rows>` or the error.
    pub(in crate::frontend) async fn copy_in(
        &mut self,
        client: &mut ClientConn,
        plan: CopyPlan,
        frames: &[Frame],
        work: &Work,
    ) -> Result<(), FrontendError> {
        self.settle(client).await?;
        let mut copies = ShardCopies::new(plan.sql.clone());
        let keyed = match self.prepare_copy(&plan, &mut copies, work).await {
            Ok(keyed) => keyed,
            Err(e) => {
                copies.abort(self).await;
                return self.fail_unit(client, e, frames).await;
            }
        };
        let columns = match &keyed {
            Some((_, columns)) => *columns,
            None => 0,
        };
        acknowledge(
            client,
            &mut self.state,
            frames,
            copies.response.as_ref(),
            columns,
        );
        client
            .flush()
            .await
            .map_err(|_| FrontendError::ClientGone)?;
        let mut keyed = keyed.map(|(keyed, _)| keyed);
        let taken = self
            .take_copy_data(client, &plan, &mut copies, keyed.as_mut())
            .await;
        let outcome = match taken {
            Ok(()) => copies.finish(self).await,
            Err(e) => {
                copies.abort(self).await;
                Err(e)
            }
        };
        self.answer_copy(client, outcome, &plan, work, frames).await
    }

    /// Checks the COPY may run, and readies it: for a replicated table every shard's COPY is
    /// started; for a sharded one, the key's field number and the column count are found.
    async fn prepare_copy(
        &self,
        plan: &CopyPlan,
        copies: &mut ShardCopies,
        work: &Work,
    ) -> Result<Option<(KeyedRows, usize)>, FrontendError> {
        if self.transaction_status() != b'I' {
            return Err(refuse(format!(
                "COPY into table \"{}\" runs in a transaction of its own on each shard: send it outside a transaction block",
                plan.table
            )));
        }
        let key_column = match &plan.spread {
            Spread::Everywhere(clusters) => {
                for cluster in clusters {
                    copies.start(self, cluster).await?;
                }
                return Ok(None);
            }
            Spread::ByKey { key_column } => key_column,
        };
        let sharding = self.shared.live().sharding.clone().ok_or_else(|| {
            refuse("the sharding configuration was removed by a reload: send the COPY again")
        })?;
        let (key_field, columns) = match plan.columns.iter().position(|c| c == key_column) {
            Some(field) => (field, plan.columns.len()),
            None => {
                self.key_field_from_catalog(plan, key_column, &sharding, work)
                    .await?
            }
        };
        let keyed = KeyedRows {
            sharding,
            splitter: RowSplitter::new(plan.options.clone()),
            key_field,
        };
        Ok(Some((keyed, columns)))
    }

    /// The key's field number among the columns a COPY without a column list takes (the
    /// table's, but dropped and generated ones), and their count, from a shard's catalog.
    async fn key_field_from_catalog(
        &self,
        plan: &CopyPlan,
        key_column: &str,
        sharding: &Sharding,
        work: &Work,
    ) -> Result<(usize, usize), FrontendError> {
        let cluster = sharding
            .tables
            .get(&plan.table)
            .and_then(|t| sharding.maps.get(t.map))
            .and_then(|m| m.shards.first())
            .cloned()
            .unwrap_or_default();
        let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
        let copied = "a.attrelid = k.attrelid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''";
        let sql = format!(
            "SELECT (SELECT count(*) FROM pg_attribute a WHERE {copied} AND a.attnum < k.attnum) || ',' || \
             (SELECT count(*) FROM pg_attribute a WHERE {copied}) \
             FROM pg_attribute k WHERE k.attrelid = {}::regclass AND k.attname = {}",
            literal(&plan.relation),
            literal(key_column)
        );
        let topology = self.shared.topology.load();
        let cluster = topology
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .ok_or_else(|| {
                refuse(format!(
                    "no cluster \"{cluster}\" holds table \"{}\"",
                    plan.table
                ))
            })?;
        let mut checkout = self.checkout(&self.decide_in(cluster, work)).await?;
        let answer = checkout.conn.run_internal(&sql).await;
        self.shared.pools.checkin(checkout);
        let numbers = answer?.unwrap_or_default();
        let parsed = numbers
            .split_once(',')
            .and_then(|(field, count)| Some((field.parse().ok()?, count.parse().ok()?)));
        parsed.ok_or_else(|| {
            FrontendError::refuse(
                SqlState("42703"),
                format!(
                    "sharded table \"{}\" has no sharding key column \"{key_column}\"",
                    plan.table
                ),
            )
        })
    }

    /// Takes the client's messages until CopyDone (Ok) or CopyFail or a bad row (Err), sending
    /// the rows on as they come.
    async fn take_copy_data(
        &self,
        client: &mut ClientConn,
        plan: &CopyPlan,
        copies: &mut ShardCopies,
        mut keyed: Option<&mut KeyedRows>,
    ) -> Result<(), FrontendError> {
        // The shards hold transactions open meanwhile: a silent client is one idle in one.
        let idle = IdleLimit::of(&self.shared.live().config.timeouts, b'T');
        let max_row = self.shared.live().config.limits.max_message_size;
        loop {
            let frame = tokio::select! {
                frame = client.read_frame() => frame?.ok_or(FrontendError::ClientGone)?,
                _ = idle.elapsed() => return Err(idle.error()),
            };
            match (frame.tag, keyed.as_deref_mut()) {
                (tag::COPY_DATA, Some(keyed)) => {
                    let rows = keyed.splitter.feed(frame.body());
                    check_partial_row(plan, &keyed.splitter, max_row)?;
                    self.route_rows(plan, keyed, copies, rows).await?;
                    copies.flush().await?;
                }
                (tag::COPY_DATA, None) => copies.send_everywhere(&frame).await?,
                (tag::COPY_DONE, Some(keyed)) => {
                    let last: Vec<Row> = keyed.splitter.finish().into_iter().collect();
                    return self.route_rows(plan, keyed, copies, last).await;
                }
                // Each shard's CopyDone is sent when the COPYs are finished.
                (tag::COPY_DONE, None) => return Ok(()),
                (tag::COPY_FAIL, _) => return Err(client_failed(frame.body())),
                // As PostgreSQL: Sync and Flush mean nothing in copy-in mode.
                (tag::SYNC | tag::FLUSH, _) => {}
                (other, _) => {
                    return Err(FrontendError::refuse(
                        SqlState::PROTOCOL_VIOLATION,
                        format!("unexpected message type 0x{other:02X} during COPY from stdin"),
                    ));
                }
            }
        }
    }

    /// Sends each row to the shard of its key.
    async fn route_rows(
        &self,
        plan: &CopyPlan,
        keyed: &mut KeyedRows,
        copies: &mut ShardCopies,
        rows: Vec<Row>,
    ) -> Result<(), FrontendError> {
        if copies.header.is_none() {
            copies.header = keyed.splitter.header().cloned();
        }
        for row in rows {
            let key = keyed
                .splitter
                .field(&row.bytes, keyed.key_field)
                .map_err(|e| bad_row(plan, &row, e))?
                .ok_or_else(|| null_key(plan, &row))?;
            let cluster = match keyed.sharding.cluster_for(&plan.table, &key).await {
                Some(Ok(cluster)) => cluster.to_string(),
                Some(Err(e)) => {
                    return Err(FrontendError::refuse(
                        e.sqlstate(),
                        format!("{e} ({})", context(plan, &row)),
                    ));
                }
                None => return Err(refuse(format!("table \"{}\" is not sharded", plan.table))),
            };
            copies.queue(self, &cluster, &row).await?;
        }
        Ok(())
    }

    /// The client's answer: `COPY <rows>` or the error; and, for a simple query, ReadyForQuery.
    /// After an extended-protocol COPY the client's Sync comes next, and is answered then.
    async fn answer_copy(
        &mut self,
        client: &mut ClientConn,
        outcome: Result<Committed, FrontendError>,
        plan: &CopyPlan,
        work: &Work,
        frames: &[Frame],
    ) -> Result<(), FrontendError> {
        let simple = frames.iter().any(|f| f.tag == tag::QUERY);
        let committed = match outcome {
            Ok(committed) => committed,
            Err(e) => {
                tracing::warn!(error = %e, table = %plan.table, "COPY over the shards failed");
                // Without a Query to answer, the error waits for the client's Sync.
                return self
                    .fail_unit(client, e, if simple { frames } else { &[] })
                    .await;
            }
        };
        self.advance_causal(
            client,
            committed
                .positions
                .iter()
                .map(|(c, lsn)| (c.as_str(), *lsn)),
        );
        self.invalidate(work.writes.clone(), 0);
        let rows: u64 = match plan.spread {
            Spread::ByKey { .. } => committed.rows.iter().sum(),
            Spread::Everywhere(_) => committed.rows.first().copied().unwrap_or(0),
        };
        client.writer().command_complete(&format!("COPY {rows}"));
        if simple {
            client.writer().ready_for_query(self.transaction_status());
        } else {
            self.discard_until_sync = true;
        }
        Ok(())
    }
}

/// The answers to the unit's own messages, then CopyInResponse: the first shard's (a
/// replicated table), or text columns as many as the COPY takes. Statements and portals the
/// unit defines enter the session's record, as when a server runs them.
fn acknowledge(
    client: &mut ClientConn,
    state: &mut SessionState,
    frames: &[Frame],
    response: Option<&Frame>,
    columns: usize,
) {
    remember(frames, state);
    for frame in frames {
        match frame.tag {
            tag::PARSE => client.writer().bodiless(b'1'),
            tag::BIND => client.writer().bodiless(b'2'),
            tag::DESCRIBE => {
                if frame.body().first() == Some(&b'S') {
                    put_message(&mut client.out, b't', &0i16.to_be_bytes());
                }
                client.writer().bodiless(b'n');
            }
            tag::EXECUTE | tag::QUERY => match response {
                Some(response) => client.out.extend_from_slice(&response.bytes),
                None => put_message(
                    &mut client.out,
                    tag::COPY_IN_RESPONSE,
                    &text_columns(columns),
                ),
            },
            _ => {}
        }
    }
}

/// A CopyInResponse body: text format overall and for each column.
fn text_columns(columns: usize) -> Vec<u8> {
    let count = i16::try_from(columns).unwrap_or(i16::MAX);
    let mut body = vec![0u8];
    body.extend_from_slice(&count.to_be_bytes());
    body.extend(std::iter::repeat_n(0u8, 2 * count as usize));
    body
}

/// A row still without its end past `max_row` bytes (`limits.max_message_size`, which no
/// INSERT of it could pass either) is refused rather than gathered without bound.
fn check_partial_row(
    plan: &CopyPlan,
    splitter: &RowSplitter,
    max_row: usize,
) -> Result<(), FrontendError> {
    if splitter.partial_len() <= max_row {
        return Ok(());
    }
    Err(FrontendError::refuse(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "a row of the COPY into \"{}\" is longer than limits.max_message_size ({max_row} bytes)",
            plan.table
        ),
    ))
}

/// `COPY users, line 3`, as PostgreSQL's error context names a row.
fn context(plan: &CopyPlan, row: &Row) -> String {
    format!("COPY {}, line {}", plan.table, row.line)
}

fn key_name(plan: &CopyPlan) -> &str {
    match &plan.spread {
        Spread::ByKey { key_column } => key_column,
        Spread::Everywhere(_) => "",
    }
}

fn bad_row(plan: &CopyPlan, row: &Row, e: FieldError) -> FrontendError {
    let key = key_name(plan);
    let (code, message) = match e {
        FieldError::Missing => ("22P04", format!("missing data for column \"{key}\"")),
        FieldError::Encoding => (
            "22021",
            format!("invalid byte sequence for encoding \"UTF8\" in column \"{key}\""),
        ),
    };
    FrontendError::refuse(
        SqlState(code),
        format!("{message} ({})", context(plan, row)),
    )
}

fn null_key(plan: &CopyPlan, row: &Row) -> FrontendError {
    FrontendError::refuse(
        SqlState("23502"),
        format!(
            "null value in sharding key column \"{}\": a row needs its key to find its shard ({})",
            key_name(plan),
            context(plan, row)
        ),
    )
}

/// CopyFail: the client gave up; its reason, as PostgreSQL reports it.
fn client_failed(body: &[u8]) -> FrontendError {
    let reason = crate::protocol::read_cstr(body).map_or("", |(text, _)| text);
    FrontendError::refuse(
        SqlState::QUERY_CANCELED,
        format!("COPY from stdin failed: {reason}"),
    )
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
