//! Consistent hashing: every shard places `virtual_nodes` points on a 64-bit ring, and a key
//! belongs to the shard of the first point at or after the key's hash (wrapping around), found
//! by binary search. Adding a shard takes about 1/N of the keys, all from other shards; removing
//! one moves only its own keys.
//!
//! The hash functions are fixed and seedless, so every pgsplit instance and every release
//! places keys alike:
//! - a key's position is the 64-bit hash PostgreSQL's hash partitioning computes for it
//!   ([`partition_hash`]);
//! - the points of a shard are PostgreSQL's `hash_bytes_extended` (lookup3), seed 0, of
//!   `"<shard name>#<i>"` for `i` in `0..virtual_nodes`. Points follow the shard's name, not its
//!   position in the list, so reordering shards in the configuration moves nothing.

use super::hash::{hash_bytes_extended, partition_hash};
use super::{KeyValue, ShardError};

/// Points per shard when the configuration does not say.
pub const DEFAULT_VIRTUAL_NODES: usize = 256;

#[derive(Debug, Clone)]
pub struct Ring {
    shard_names: Vec<String>,
    /// (position, shard), sorted by position, then shard name for equal positions.
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub fn new(shard_names: &[String], virtual_nodes: usize) -> Result<Self, ShardError> {
        if shard_names.is_empty() || virtual_nodes == 0 {
            return Err(ShardError::InvalidMap(
                "a consistent-hash ring needs at least one shard and one virtual node per shard"
                    .into(),
            ));
        }
        let mut points: Vec<(u64, usize)> = shard_names
            .iter()
            .enumerate()
            .flat_map(|(shard, name)| (0..virtual_nodes).map(move |i| (point(name, i), shard)))
            .collect();
        points.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| shard_names[a.1].cmp(&shard_names[b.1]))
        });
        Ok(Self {
            shard_names: shard_names.to_vec(),
            points,
        })
    }

    /// The index (in the ring's shard list) of the key's shard.
    pub fn shard_for(&self, key: &KeyValue) -> usize {
        let position = partition_hash(key);
        let next = self.points.partition_point(|&(p, _)| p < position);
        // Past the last point, the ring wraps to the first.
        self.points.get(next).unwrap_or(&self.points[0]).1
    }

    /// The name of the key's shard.
    pub fn shard_name_for(&self, key: &KeyValue) -> &str {
        &self.shard_names[self.shard_for(key)]
    }

    pub fn shard_names(&self) -> &[String] {
        &self.shard_names
    }
}

fn point(shard_name: &str, i: usize) -> u64 {
    hash_bytes_extended(format!("{shard_name}#{i}").as_bytes(), 0)
}

/// How many of `keys` change shard (by name) between the `old` and the `new` ring: what a
/// `pgsplit shard plan` reports before shards are added or removed.
pub fn plan<'k>(old: &Ring, new: &Ring, keys: impl IntoIterator<Item = &'k KeyValue>) -> usize {
    keys.into_iter()
        .filter(|key| old.shard_name_for(key) != new.shard_name_for(key))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: i64 = 100_000;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("shard{i}")).collect()
    }

    fn keys() -> Vec<KeyValue> {
        (0..KEYS).map(KeyValue::Int8).collect()
    }

    #[test]
    fn adding_a_fifth_shard_moves_about_a_fifth_of_the_keys() {
        let four = Ring::new(&names(4), DEFAULT_VIRTUAL_NODES).unwrap();
        let five = Ring::new(&names(5), DEFAULT_VIRTUAL_NODES).unwrap();
        let keys = keys();
        let moved = plan(&four, &five, &keys);
        let share = moved as f64 / KEYS as f64;
        assert!(
            (0.15..=0.25).contains(&share),
            "moved {share:.3} of the keys"
        );
        // Every key that moved went to the new shard.
        for key in &keys {
            if four.shard_name_for(key) != five.shard_name_for(key) {
                assert_eq!(five.shard_name_for(key), "shard4");
            }
        }
    }

    #[test]
    fn removing_a_shard_moves_only_its_keys() {
        let four = Ring::new(&names(4), DEFAULT_VIRTUAL_NODES).unwrap();
        let without_1: Vec<String> = names(4).into_iter().filter(|n| n != "shard1").collect();
        let three = Ring::new(&without_1, DEFAULT_VIRTUAL_NODES).unwrap();
        let keys = keys();
        let on_removed = keys
            .iter()
            .filter(|k| four.shard_name_for(k) == "shard1")
            .count();
        assert_eq!(plan(&four, &three, &keys), on_removed);
        assert!(on_removed > 0);
    }

    #[test]
    fn the_order_of_shards_in_the_list_does_not_matter() {
        let forward = Ring::new(&names(3), 64).unwrap();
        let mut reversed_names = names(3);
        reversed_names.reverse();
        let reversed = Ring::new(&reversed_names, 64).unwrap();
        assert_eq!(plan(&forward, &reversed, &keys()), 0);
    }

    #[test]
    fn keys_spread_over_every_shard() {
        let ring = Ring::new(&names(4), DEFAULT_VIRTUAL_NODES).unwrap();
        let mut counts = [0usize; 4];
        for key in keys() {
            counts[ring.shard_for(&key)] += 1;
        }
        for count in counts {
            assert!(count > KEYS as usize / 8, "{counts:?}");
        }
    }

    #[test]
    fn an_empty_ring_is_refused() {
        assert!(Ring::new(&[], 256).is_err());
        assert!(Ring::new(&names(2), 0).is_err());
    }
}
