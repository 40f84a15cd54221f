//! Sharded tables in a session (`[sharding]`): a unit goes to the shard cluster holding the
//! keys its statements name (literals, or parameters bound in the same unit), and read/write
//! splitting then applies within that cluster. A read with no key fans out to every shard of
//! its table (see `fanout`); a write with no key, or a unit or transaction that would touch a
//! second shard, is refused with an error naming the table and its key.
//!
//! A bare `BEGIN` is held until the transaction's first statement says which shard it belongs
//! to (see `held_begin`).

mod bind;
mod copy;
mod copy_shards;
mod joins;
mod refusal;
mod split;
mod target;
mod twophase;

use std::collections::HashMap;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::hint::shard_hint;
use crate::protocol::{Frame, SqlState, messages, tag};
use crate::topology::Topology;

use super::Live;
use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

pub(super) use bind::BindParams;
use copy::{CopyPlan, copy_not_alone, copy_target, unreadable_copy};
use refusal::refuse_multi_shard;
pub(super) use split::ShardPart;
use target::{combine, hinted_target, statement_target};
pub(super) use twophase::MultiShard;

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
    /// COPY FROM STDIN into a sharded table (rows split by key) or a replicated one (to all).
    CopyIn(Box<CopyPlan>),
    /// A multi-row INSERT whose rows belong to several shards (two-phase commit on): each
    /// part on its shard, committed as one.
    SplitWrite { parts: Vec<ShardPart> },
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
        live: &Live,
    ) -> Result<ShardTarget, FrontendError> {
        let Some(sharding) = live.sharding.clone() else {
            return Ok(ShardTarget::Anywhere);
        };
        let Some(unit) = unit_text(frames, &self.state) else {
            return Ok(ShardTarget::Anywhere);
        };
        if let Some(hint) = unit.texts.first().and_then(|text| shard_hint(text)) {
            return hinted_target(&sharding, &hint, unit.texts[0]).await;
        }
        let mut target = ShardTarget::Anywhere;
        let mut statements = 0;
        for text in &unit.texts {
            // Text sqlparser cannot read goes where the session is: the server will say why.
            let parsed = match Parser::parse_sql(&PostgreSqlDialect {}, text) {
                Ok(parsed) => parsed,
                Err(error) => match unreadable_copy(&sharding, text, &error) {
                    Some(refusal) => return Err(refusal),
                    None => continue,
                },
            };
            for statement in &parsed {
                statements += 1;
                let found = match copy_target(&sharding, statement, text, work.executes) {
                    Some(copy) => copy?,
                    None => {
                        statement_target(
                            &sharding,
                            statement,
                            unit.params.as_ref(),
                            self.default_cluster(),
                            self.shard_choice.as_ref(),
                        )
                        .await?
                    }
                };
                target = combine(target, found)?;
            }
        }
        if matches!(target, ShardTarget::CopyIn(_)) && statements != 1 {
            return Err(copy_not_alone());
        }
        if let ShardTarget::FanOut { clusters, .. } = &target
            && !work.executes
        {
            // Preparing or describing a read of every shard: any shard describes it alike.
            return Ok(clusters
                .first()
                .map_or(ShardTarget::Anywhere, |c| ShardTarget::Cluster(c.clone())));
        }
        if let ShardTarget::FanOut { .. } | ShardTarget::Everywhere { .. } = &target {
            let reads = work.access() == crate::route::classify::Access::Read;
            let fan_out = matches!(target, ShardTarget::FanOut { .. });
            // Reads of every shard run over either protocol; replicated writes need a Query.
            let fits = statements == 1 && (unit.simple || fan_out) && reads == fan_out;
            if !fits {
                return Err(refuse_multi_shard(&unit.texts, &target));
            }
        }
        if let ShardTarget::SplitWrite { .. } = &target
            && !(statements == 1 && unit.simple)
        {
            return Err(refuse_multi_shard(&unit.texts, &target));
        }
        Ok(target)
    }

    /// Runs a unit the shards answer by themselves (a read of every shard, a write to every
    /// shard, a split COPY or INSERT), or notes the one shard it runs on; true when the unit
    /// has been answered (or refused).
    pub(super) async fn dispatch_to_shards(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
        live: &Live,
    ) -> Result<bool, FrontendError> {
        let target = self.shard_target(frames, work, live).await;
        match target.and_then(|t| self.check_same_shard(&t).map(|()| t)) {
            Err(e) => self.fail_unit(client, e, frames).await.map(|()| true),
            Ok(ShardTarget::FanOut { clusters, sql }) => {
                self.settle(client).await?;
                let answer = self.gather(&clusters, &sql, work, frames).await;
                self.answer_from_shards(client, answer, frames)
                    .await
                    .map(|()| true)
            }
            Ok(ShardTarget::Everywhere { clusters, sql }) => {
                self.settle(client).await?;
                let answer = self.write_everywhere(&clusters, &sql, work).await;
                self.answer_from_shards(client, answer, frames)
                    .await
                    .map(|()| true)
            }
            Ok(ShardTarget::CopyIn(plan)) => self
                .copy_in(client, *plan, frames, work)
                .await
                .map(|()| true),
            Ok(ShardTarget::SplitWrite { parts }) => {
                self.settle(client).await?;
                let answer = self.write_split(client, parts, work).await;
                self.answer_from_shards(client, answer, frames)
                    .await
                    .map(|()| true)
            }
            Ok(ShardTarget::Cluster(cluster)) => {
                if let Err(e) = self.enter_shard(client, &cluster).await {
                    return self.fail_unit(client, e, frames).await.map(|()| true);
                }
                self.unit_cluster = Some(cluster);
                Ok(false)
            }
            Ok(ShardTarget::Anywhere) => {
                self.unit_cluster = None;
                Ok(false)
            }
        }
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

    /// A unit for `target` while the session holds a connection (a transaction, a pin): the
    /// connection's cluster must be the target's.
    pub(super) fn check_same_shard(&self, target: &ShardTarget) -> Result<(), FrontendError> {
        let Some(attached) = &self.server else {
            return Ok(());
        };
        if matches!(target, ShardTarget::Anywhere) {
            return Ok(()); // whatever the session holds serves it
        }
        // Also a transaction whose BEGIN is still in flight (a client pipelining).
        if !self.holds_session(attached) {
            return Ok(()); // the unit is routed afresh
        }
        let topology = self.shared.topology.load();
        let current = cluster_of_node(&topology, &attached.route.node.name).unwrap_or_default();
        match target {
            ShardTarget::Cluster(cluster) if *cluster != current && !self.may_join_shard() => {
                Err(FrontendError::refuse(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "this transaction runs on shard \"{current}\" and this statement belongs to shard \"{cluster}\": a transaction stays on one shard ({})",
                        self.why_one_shard()
                    ),
                ))
            }
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
            ShardTarget::SplitWrite { .. } if !self.may_join_shard() => Err(FrontendError::refuse(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "an INSERT whose rows belong to several shards cannot run on the connection this session holds on shard \"{current}\": insert each shard's rows separately"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The name of the cluster a node belongs to (node names are unique across clusters).
pub(super) fn cluster_of_node(topology: &Topology, node: &str) -> Option<String> {
    topology.cluster_of_node(node).map(|c| c.name.clone())
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
