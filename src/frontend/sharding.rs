//! Sharded tables in a session (`[sharding]`): a unit goes to the shard cluster holding the
//! keys its statements name (literals, or parameters bound in the same unit), and read/write
//! splitting then applies within that cluster. A read with no key fans out to every shard of
//! its table (see `fanout`); a write with no key, or a unit or transaction that would touch a
//! second shard, is refused with an error naming the table and its key.
//!
//! A bare `BEGIN` sent as a simple query is answered by pgsplit and run on the server ahead of
//! the transaction's first statement, once that statement says which shard it belongs to.

use std::collections::HashMap;

use sqlparser::ast::{BinaryOperator, Expr, SetExpr, Statement, TableFactor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::hint::{ShardHint, shard_hint};
use crate::protocol::{Frame, SqlState, messages, tag};
use crate::shard::KeyType;
use crate::shard::extract::{Extraction, KeyRef, extract, literal_or_param, sharded_tables};
use crate::shard::map::{Placement, Sharding};
use crate::topology::Topology;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

/// Where a unit runs in a sharded setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ShardTarget {
    /// It names no table that decides: wherever the session is (or the database's cluster).
    Anywhere,
    /// This cluster holds everything it names.
    Cluster(String),
    /// A single read with no single shard: run `sql` on every one of these clusters and merge.
    FanOut { clusters: Vec<String>, sql: String },
    /// A write to replicated tables: run `sql` on every shard's primary.
    Everywhere { clusters: Vec<String>, sql: String },
}

/// The SQL texts a unit runs, and the parameters bound for them.
struct UnitText<'a> {
    texts: Vec<&'a str>,
    params: Option<BindParams<'a>>,
    simple: bool,
}

impl Session {
    /// Where the unit's statements must run; an error for what cannot run on one shard.
    pub(super) async fn shard_target(
        &self,
        frames: &[Frame],
        work: &Work,
    ) -> Result<ShardTarget, FrontendError> {
        let live = self.shared.live();
        let Some(sharding) = live.sharding.clone() else {
            return Ok(ShardTarget::Anywhere);
        };
        let Some(unit) = unit_text(frames, &self.state) else {
            return Ok(ShardTarget::Anywhere);
        };
        if let Some(hint) = unit.texts.first().and_then(|text| shard_hint(text)) {
            return hinted_target(&sharding, hint, unit.texts[0]).await;
        }
        let mut target = ShardTarget::Anywhere;
        let mut statements = 0;
        for text in &unit.texts {
            // Text sqlparser cannot read goes where the session is: the server will say why.
            let Ok(parsed) = Parser::parse_sql(&PostgreSqlDialect {}, text) else {
                continue;
            };
            for statement in &parsed {
                statements += 1;
                let found = statement_target(
                    &sharding,
                    statement,
                    unit.params.as_ref(),
                    self.default_cluster(),
                )
                .await?;
                target = combine(target, found)?;
            }
        }
        if let ShardTarget::FanOut { .. } | ShardTarget::Everywhere { .. } = &target {
            let reads = work.access() == crate::route::classify::Access::Read;
            let fits = statements == 1
                && unit.simple
                && reads == matches!(target, ShardTarget::FanOut { .. });
            if !fits {
                return Err(refuse_multi_shard(&unit.texts, &target));
            }
        }
        Ok(target)
    }

    /// The cluster of tables that are neither sharded nor replicated.
    fn default_cluster(&self) -> String {
        let topology = self.shared.topology.load();
        match self
            .shared
            .live()
            .sharding
            .as_ref()
            .and_then(|s| s.default.clone())
        {
            Some(default) => default,
            None => topology.cluster_for_database(&self.database).name.clone(),
        }
    }

    /// Holds a bare simple-protocol `BEGIN` of a sharded session until a statement picks the
    /// shard (answering the client as the server would); true if `frames` was that BEGIN.
    pub(super) fn defer_begin(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
    ) -> bool {
        let bare_begin = self.shared.live().sharding.is_some()
            && self.server.is_none()
            && self.deferred_begin.is_none()
            && matches!(frames, [f] if f.tag == tag::QUERY)
            && matches!(
                work.tx.as_slice(),
                [crate::route::classify::TxControl::Begin { .. }]
            )
            && work.effects.is_empty();
        if !bare_begin {
            return false;
        }
        self.deferred_begin = frames
            .first()
            .and_then(|f| messages::query_text(f.body()))
            .map(str::to_string);
        client.writer().command_complete("BEGIN");
        client.writer().ready_for_query(b'T');
        true
    }

    /// COMMIT or ROLLBACK of a transaction that never ran a statement: pgsplit answers it.
    pub(super) fn end_empty_transaction(&mut self, client: &mut ClientConn, work: &Work) -> bool {
        use crate::route::classify::TxControl;
        if self.deferred_begin.is_none() || self.server.is_some() {
            return false;
        }
        let tag = match work.tx.as_slice() {
            [TxControl::Commit] => "COMMIT",
            [TxControl::Rollback] => "ROLLBACK",
            _ => return false,
        };
        self.deferred_begin = None;
        client.writer().command_complete(tag);
        client.writer().ready_for_query(b'I');
        true
    }

    /// Runs the held BEGIN on the connection the transaction's first statement got.
    pub(super) async fn start_deferred_transaction(&mut self) -> Result<(), FrontendError> {
        let (Some(begin), Some(attached)) = (self.deferred_begin.take(), self.server.as_mut())
        else {
            return Ok(());
        };
        attached.checkout.conn.run_internal(&begin).await?;
        Ok(())
    }

    /// A unit for `target` while the session holds a connection (a transaction, a pin): the
    /// connection's cluster must be the target's.
    pub(super) fn check_same_shard(&self, target: &ShardTarget) -> Result<(), FrontendError> {
        let Some(attached) = &self.server else {
            return Ok(());
        };
        let holds_session = attached.checkout.conn.tx_status != b'I'
            || self.state.pin().is_some()
            || self.session_mode();
        if !holds_session {
            return Ok(()); // the unit is routed afresh
        }
        let topology = self.shared.topology.load();
        let current = cluster_of_node(&topology, &attached.route.node.name).unwrap_or_default();
        match target {
            ShardTarget::Cluster(cluster) if *cluster != current => Err(FrontendError::refuse(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "this transaction runs on shard \"{current}\" and this statement belongs to shard \"{cluster}\": a transaction stays on one shard (two-phase commit across shards is not enabled)"
                ),
            )),
            ShardTarget::FanOut { .. } => Err(FrontendError::refuse(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "a read of every shard cannot run inside a transaction on shard \"{current}\": name the sharding key in its WHERE clause"
                ),
            )),
            ShardTarget::Everywhere { .. } => Err(FrontendError::refuse(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "a write to a replicated table goes to every shard and cannot run inside a transaction on shard \"{current}\": write it outside the transaction"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// `shard=<n or name>` or `shard_key=<value>`: the shard the operator named, under the map of
/// the statement's first sharded table (else the first map).
async fn hinted_target(
    sharding: &Sharding,
    hint: ShardHint,
    text: &str,
) -> Result<ShardTarget, FrontendError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, text).unwrap_or_default();
    let table = statements
        .iter()
        .flat_map(|statement| sharded_tables(statement, &sharding.tables))
        .next()
        .or_else(|| sharding.tables.keys().min().cloned());
    let map_index = table
        .as_ref()
        .and_then(|t| sharding.tables.get(t))
        .map_or(0, |t| t.map);
    let shards = sharding
        .maps
        .get(map_index)
        .map(|m| m.shards.as_slice())
        .unwrap_or_default();
    let unknown = |what: String| FrontendError::refuse(SqlState::UNDEFINED_OBJECT, what);
    match hint {
        ShardHint::Shard(shard) => {
            let by_number = shard.parse::<usize>().ok().and_then(|n| shards.get(n));
            let by_name = shards.iter().find(|name| **name == shard);
            by_number
                .or(by_name)
                .map(|cluster| ShardTarget::Cluster(cluster.clone()))
                .ok_or_else(|| {
                    unknown(format!(
                        "no shard {shard:?}: the shards are {} (by number from 0, or by name)",
                        shards.join(", ")
                    ))
                })
        }
        ShardHint::Key(key) => {
            let table =
                table.ok_or_else(|| unknown("a shard_key hint needs a sharded table".into()))?;
            match sharding.cluster_for(&table, &key).await {
                Some(Ok(cluster)) => Ok(ShardTarget::Cluster(cluster.to_string())),
                Some(Err(e)) => Err(FrontendError::refuse(e.sqlstate(), e.to_string())),
                None => Err(unknown(format!("table {table:?} is not sharded"))),
            }
        }
    }
}

/// The name of the cluster a node belongs to (node names are unique across clusters).
pub(super) fn cluster_of_node(topology: &Topology, node: &str) -> Option<String> {
    topology
        .clusters
        .iter()
        .find(|c| c.nodes().any(|n| n.name == node))
        .map(|c| c.name.clone())
}

/// Where one statement must run.
async fn statement_target(
    sharding: &Sharding,
    statement: &Statement,
    params: Option<&BindParams<'_>>,
    default_cluster: String,
) -> Result<ShardTarget, FrontendError> {
    match extract(statement, &sharding.tables) {
        Extraction::NotSharded => Ok(unsharded_target(sharding, statement, default_cluster)),
        Extraction::Keys(keys) => {
            let table = sharded_tables(statement, &sharding.tables).remove(0);
            keys_target(sharding, &table, &keys, params, statement).await
        }
        Extraction::NoKey => no_key_target(sharding, statement, params).await,
    }
}

/// A statement on no sharded table: on the default cluster if it names a table placed there,
/// else anywhere (replicated tables, no table at all).
fn unsharded_target(
    sharding: &Sharding,
    statement: &Statement,
    default_cluster: String,
) -> ShardTarget {
    let names_default = table_names(statement)
        .iter()
        .any(|table| matches!(sharding.placement(table), Placement::Default(_)));
    if names_default {
        return ShardTarget::Cluster(default_cluster);
    }
    let writes = !matches!(statement, Statement::Query(_));
    if writes && names_replicated(sharding, statement) {
        return ShardTarget::Everywhere {
            clusters: all_shards(sharding),
            sql: statement.to_string(),
        };
    }
    ShardTarget::Anywhere
}

fn names_replicated(sharding: &Sharding, statement: &Statement) -> bool {
    table_names(statement)
        .iter()
        .any(|table| sharding.replicated.contains(table))
}

/// Every table the statement names (subqueries included), unqualified and lower-cased, without
/// repeats.
fn table_names(statement: &Statement) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |name| {
        if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
            let table = table.value.to_lowercase();
            if !names.contains(&table) {
                names.push(table);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    names
}

/// Every cluster any map places rows on, in map order.
fn all_shards(sharding: &Sharding) -> Vec<String> {
    let mut clusters: Vec<String> = Vec::new();
    for cluster in sharding.maps.iter().flat_map(|m| &m.shards) {
        if !clusters.contains(cluster) {
            clusters.push(cluster.clone());
        }
    }
    clusters
}

async fn keys_target(
    sharding: &Sharding,
    table: &str,
    keys: &[KeyRef],
    params: Option<&BindParams<'_>>,
    statement: &Statement,
) -> Result<ShardTarget, FrontendError> {
    let key_type = sharding
        .tables
        .get(table)
        .map_or(KeyType::Text, |t| t.key_type);
    let mut clusters: Vec<String> = Vec::new();
    for key in keys {
        let text = match key {
            KeyRef::Literal(text) => text.clone(),
            KeyRef::Param(n) => match params.and_then(|p| p.key_text(*n, key_type)) {
                Some(text) => text,
                // A parameter not bound here (a Parse/Describe unit): any shard can prepare it.
                None => return Ok(ShardTarget::Anywhere),
            },
        };
        let placed = sharding.cluster_for(table, &text).await;
        let cluster = match placed {
            Some(Ok(cluster)) => cluster.to_string(),
            Some(Err(e)) => return Err(FrontendError::refuse(e.sqlstate(), e.to_string())),
            None => continue,
        };
        if !clusters.contains(&cluster) {
            clusters.push(cluster);
        }
    }
    match clusters.as_slice() {
        [] => Ok(ShardTarget::Anywhere),
        [one] => Ok(ShardTarget::Cluster(one.clone())),
        _ if matches!(statement, Statement::Query(_)) => Ok(ShardTarget::FanOut {
            sql: statement.to_string(),
            clusters,
        }),
        _ => Err(cross_shard_write(sharding, table)),
    }
}

async fn no_key_target(
    sharding: &Sharding,
    statement: &Statement,
    params: Option<&BindParams<'_>>,
) -> Result<ShardTarget, FrontendError> {
    let tables = sharded_tables(statement, &sharding.tables);
    let table = tables.first().cloned().unwrap_or_default();
    if !matches!(statement, Statement::Query(_)) {
        return Err(write_without_key(sharding, &table, statement));
    }
    if let Some(alone) = single_shard_tables(sharding, statement).first() {
        return Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "table \"{alone}\" is on one shard only and cannot be joined with sharded table \"{table}\" across shards: make it replicated, or read it separately"
            ),
        ));
    }
    if tables.len() > 1 && !co_located(sharding, statement, &tables) {
        return Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "this read joins sharded tables ({}) other than on their sharding keys, or over different maps: each shard holds only its own rows, so it cannot be answered correctly; join on the keys or name a key value",
                tables.join(", ")
            ),
        ));
    }
    if let Some((keyed, key)) = joined_key(sharding, statement) {
        return keys_target(sharding, &keyed, &[key], params, statement).await;
    }
    let clusters = sharding
        .tables
        .get(&table)
        .map(|sharded| sharding.maps[sharded.map].shards.clone())
        .unwrap_or_default();
    Ok(ShardTarget::FanOut {
        clusters,
        sql: statement.to_string(),
    })
}

/// Whether every row a join of sharded tables can produce comes from one shard: all tables
/// placed by the same map, each one equated on its key to another's key (`a.user_id = u.id`).
fn co_located(sharding: &Sharding, statement: &Statement, tables: &[String]) -> bool {
    let sharded: Vec<_> = tables
        .iter()
        .filter_map(|t| sharding.tables.get(t))
        .collect();
    if sharded.windows(2).any(|pair| pair[0].map != pair[1].map) {
        return false;
    }
    let mut equated: Vec<(String, String)> = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |expr| {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
            && let (Some(l), Some(r)) = (column_name(left), column_name(right))
        {
            equated.push((l, r));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let keys: Vec<&str> = sharded.iter().map(|t| t.key_column.as_str()).collect();
    // Every mention but one must be tied by key equality to another mention's key.
    let ties = equated
        .iter()
        .filter(|(l, r)| keys.contains(&l.as_str()) && keys.contains(&r.as_str()))
        .count();
    ties + 1 >= tables.len()
}

/// Tables the statement names that are neither sharded nor replicated: they live on one
/// shard, so a read that spans shards cannot join them.
fn single_shard_tables(sharding: &Sharding, statement: &Statement) -> Vec<String> {
    table_names(statement)
        .into_iter()
        .filter(|table| {
            matches!(
                sharding.placement(table),
                Placement::Default(_) | Placement::Unknown
            )
        })
        .collect()
}

/// In a shard-local join, a condition `alias.key = <value>` ANDed into the WHERE clause puts
/// every row on that value's shard. The alias must name a sharded table whose key it is.
fn joined_key(sharding: &Sharding, statement: &Statement) -> Option<(String, KeyRef)> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let mut aliases: HashMap<String, String> = HashMap::new();
    let relations = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for relation in relations {
        if let TableFactor::Table { name, alias, .. } = relation
            && let Some(table) = name.0.last().and_then(|p| p.as_ident())
        {
            let table = table.value.to_lowercase();
            let called = alias
                .as_ref()
                .map_or(table.clone(), |a| a.name.value.to_lowercase());
            aliases.insert(called, table);
        }
    }
    let mut conditions = vec![select.selection.as_ref()?];
    while let Some(condition) = conditions.pop() {
        match condition {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                conditions.push(left);
                conditions.push(right);
            }
            Expr::Nested(inner) => conditions.push(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let found = qualified_key(sharding, &aliases, left, right)
                    .or_else(|| qualified_key(sharding, &aliases, right, left));
                if found.is_some() {
                    return found;
                }
            }
            _ => {}
        }
    }
    None
}

/// `alias.column = value` where the column is the key of the table the alias names.
fn qualified_key(
    sharding: &Sharding,
    aliases: &HashMap<String, String>,
    column: &Expr,
    value: &Expr,
) -> Option<(String, KeyRef)> {
    let Expr::CompoundIdentifier(parts) = column else {
        return None;
    };
    let [qualifier, name] = parts.as_slice() else {
        return None;
    };
    let table = aliases.get(&qualifier.value.to_lowercase())?;
    let sharded = sharding.tables.get(table)?;
    if name.value.to_lowercase() != sharded.key_column {
        return None;
    }
    let key = literal_or_param(value)?;
    if let KeyRef::Literal(text) = &key {
        sharded.key_type.parse(text).ok()?;
    }
    Some((table.clone(), key))
}

fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.to_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_lowercase()),
        _ => None,
    }
}

/// Two statements' targets as one: the same cluster, or a refusal.
fn combine(a: ShardTarget, b: ShardTarget) -> Result<ShardTarget, FrontendError> {
    match (a, b) {
        (ShardTarget::Anywhere, x) | (x, ShardTarget::Anywhere) => Ok(x),
        (ShardTarget::Cluster(x), ShardTarget::Cluster(y)) if x == y => Ok(ShardTarget::Cluster(x)),
        (ShardTarget::Cluster(x), ShardTarget::Cluster(y)) => Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "these statements belong to two shards (\"{x}\" and \"{y}\"); send them separately, outside one transaction"
            ),
        )),
        (many @ (ShardTarget::FanOut { .. } | ShardTarget::Everywhere { .. }), _)
        | (_, many @ (ShardTarget::FanOut { .. } | ShardTarget::Everywhere { .. })) => Ok(many),
    }
}

fn key_hint(sharding: &Sharding, table: &str) -> String {
    sharding.tables.get(table).map_or_else(String::new, |t| {
        format!(" (sharding key \"{}\")", t.key_column)
    })
}

fn write_without_key(sharding: &Sharding, table: &str, statement: &Statement) -> FrontendError {
    if let Statement::Insert(insert) = statement
        && insert.columns.is_empty()
    {
        return FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "INSERT into sharded table \"{table}\" must list its columns, so that pgsplit finds the key{}: INSERT INTO {table} (...) VALUES (...)",
                key_hint(sharding, table)
            ),
        );
    }
    let verb = statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("write")
        .to_uppercase();
    FrontendError::refuse(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "{verb} on sharded table \"{table}\" must name its key{}: add WHERE {} = <value> (or a /* pgsplit: shard_key=... */ hint)",
            key_hint(sharding, table),
            sharding
                .tables
                .get(table)
                .map_or("<key>", |t| t.key_column.as_str()),
        ),
    )
}

fn cross_shard_write(sharding: &Sharding, table: &str) -> FrontendError {
    FrontendError::refuse(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "this write to sharded table \"{table}\" has keys on more than one shard{}: write each shard's rows separately (two-phase commit across shards is not enabled)",
            key_hint(sharding, table)
        ),
    )
}

fn refuse_multi_shard(texts: &[&str], target: &ShardTarget) -> FrontendError {
    let what = match target {
        ShardTarget::Everywhere { .. } => "a write to a replicated table (run on every shard)",
        _ => "a read of every shard",
    };
    let why = if texts.len() > 1 || texts.first().is_some_and(|t| t.contains(';')) {
        "must be a single statement"
    } else {
        "needs the simple query protocol (or name the sharding key)"
    };
    FrontendError::refuse(SqlState::FEATURE_NOT_SUPPORTED, format!("{what} {why}"))
}

/// The texts a unit runs (a Query's, or the statement an Execute runs) and its Bind.
fn unit_text<'a>(
    frames: &'a [Frame],
    state: &'a super::state::SessionState,
) -> Option<UnitText<'a>> {
    let mut texts = Vec::new();
    let mut params = None;
    let mut parsed: HashMap<&str, &str> = HashMap::new();
    let mut simple = false;
    for frame in frames {
        match frame.tag {
            tag::QUERY => {
                simple = true;
                texts.push(messages::query_text(frame.body())?);
            }
            tag::PARSE => {
                let (name, sql) = messages::parse_message(frame.body())?;
                parsed.insert(name, sql);
                texts.push(sql);
            }
            tag::BIND => {
                let (_, statement) = messages::bind_names(frame.body())?;
                if !parsed.contains_key(statement) {
                    let parse = state.statements.get(statement)?;
                    texts.push(messages::parse_message(parse.get(5..)?)?.1);
                }
                params = BindParams::read(frame.body());
            }
            _ => {}
        }
    }
    (!texts.is_empty()).then_some(UnitText {
        texts,
        params,
        simple,
    })
}

/// A Bind's parameter values and their formats.
pub(super) struct BindParams<'a> {
    formats: Vec<i16>,
    values: Vec<Option<&'a [u8]>>,
}

impl<'a> BindParams<'a> {
    fn read(body: &'a [u8]) -> Option<BindParams<'a>> {
        let mut rest = messages::bind_arguments(body)?;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
            rest = tail;
            Some(head)
        };
        let count = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
        let formats_len = usize::try_from(count(take(2)?)).ok()?;
        let mut formats = Vec::with_capacity(formats_len);
        for _ in 0..formats_len {
            formats.push(count(take(2)?));
        }
        let values_len = usize::try_from(count(take(2)?)).ok()?;
        let mut values = Vec::with_capacity(values_len);
        for _ in 0..values_len {
            let len = take(4)?;
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            values.push(match usize::try_from(len) {
                Ok(n) => Some(take(n)?),
                Err(_) => None, // -1: NULL
            });
        }
        Some(BindParams { formats, values })
    }

    /// Parameter `n` (1-based) as the text of a key of `key_type`, whatever its format.
    fn key_text(&self, n: usize, key_type: KeyType) -> Option<String> {
        let value = (*self.values.get(n.checked_sub(1)?)?)?;
        let binary = match self.formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => *many.get(n - 1)? == 1,
        };
        if !binary {
            return std::str::from_utf8(value).ok().map(str::to_string);
        }
        binary_key_text(value, key_type)
    }
}

/// A binary-format parameter as key text: integers by their width, uuids as 16 bytes.
fn binary_key_text(value: &[u8], key_type: KeyType) -> Option<String> {
    match (key_type, value.len()) {
        (KeyType::Text, _) => std::str::from_utf8(value).ok().map(str::to_string),
        (KeyType::Uuid, 16) => {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            Some(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        (_, 2) => Some(i16::from_be_bytes(value.try_into().ok()?).to_string()),
        (_, 4) => Some(i32::from_be_bytes(value.try_into().ok()?).to_string()),
        (_, 8) => Some(i64::from_be_bytes(value.try_into().ok()?).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bind_parameters_in_any_format() {
        // portal "", statement "s", formats [1], values [int4 42, NULL], result formats []
        let mut body = b"\0s\0".to_vec();
        body.extend_from_slice(&[
            0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ]);
        let params = BindParams::read(&body).expect("a valid Bind");
        assert_eq!(params.key_text(1, KeyType::Int8).as_deref(), Some("42"));
        assert_eq!(params.key_text(2, KeyType::Int8), None);
        assert_eq!(params.key_text(3, KeyType::Int8), None);
        let text = BindParams {
            formats: vec![],
            values: vec![Some(b"-7")],
        };
        assert_eq!(text.key_text(1, KeyType::Int4).as_deref(), Some("-7"));
        let uuid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            binary_key_text(&uuid, KeyType::Uuid).as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
        assert!(BindParams::read(b"\0s\0\0\x01").is_none(), "truncated");
    }
}
