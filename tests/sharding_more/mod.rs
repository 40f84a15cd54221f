//! More of the sharding test binary: reads of every shard over the extended protocol, and the
//! causal token carried across shards to another pgsplit instance.

mod causal;
mod extended;
