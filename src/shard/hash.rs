//! PostgreSQL's hash partitioning, reproduced: for a single-column key, the remainder that
//! `PARTITION BY HASH (key)` with `MODULUS n` gives a row, i.e. the shard whose number
//! `satisfies_hash_partition(tbl, n, shard, key)` accepts.
//!
//! The pieces, as PostgreSQL defines them:
//! - `hash_bytes_extended` and `hash_bytes_uint32_extended` (`src/common/hashfn.c`): Bob
//!   Jenkins' lookup3 with a 64-bit seed, returning `(b << 32) | c`. PostgreSQL reads the key in
//!   native byte order; this is the little-endian result (x86-64, ARM64), which is what every
//!   server pgsplit is likely to meet computes.
//! - the per-type extended hash procs: `hashint2extended` / `hashint4extended` hash the value
//!   widened to int32, `hashint8extended` folds the high half into the low half (complemented
//!   for negative values) so equal values of every integer type hash alike, `hashtextextended`
//!   hashes the bytes (deterministic collations), `uuid_hash_extended` the 16 bytes.
//! - `compute_partition_hash_value` (`partbounds.c`): each column's hash with the seed
//!   `HASH_PARTITION_SEED`, folded into a row hash starting at 0 with `hash_combine64`; the
//!   partition is `row_hash % modulus`.

use super::key::KeyValue;

/// The seed PostgreSQL gives every column hash in hash partitioning (`partition.h`).
pub const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

/// The shard (0-based, below `shards`) that PostgreSQL's hash partitioning with
/// `MODULUS shards` chooses for this key.
///
/// # Panics
/// If `shards` is 0; a map always has at least one shard (checked when it is built).
pub fn hash_shard(key: &KeyValue, shards: usize) -> usize {
    assert!(shards > 0, "a hash map has at least one shard");
    let remainder = partition_hash(key) % shards as u64;
    // The remainder is below `shards`, which is a usize.
    remainder as usize
}

/// The row hash PostgreSQL computes for a single-column partition key.
pub fn partition_hash(key: &KeyValue) -> u64 {
    hash_combine64(0, column_hash(key, HASH_PARTITION_SEED))
}

/// The type's extended hash proc (`hashint4extended`, ...) applied to the value with `seed`.
pub fn column_hash(key: &KeyValue, seed: u64) -> u64 {
    match key {
        // PostgreSQL widens to int32 and hashes its bits as uint32.
        KeyValue::Int2(v) => hash_bytes_uint32_extended(i32::from(*v) as u32, seed),
        KeyValue::Int4(v) => hash_bytes_uint32_extended(*v as u32, seed),
        KeyValue::Int8(v) => hash_bytes_uint32_extended(fold_int8(*v), seed),
        KeyValue::Text(v) => hash_bytes_extended(v.as_bytes(), seed),
        KeyValue::Uuid(v) => hash_bytes_extended(v, seed),
    }
}

/// `hashint8`'s folding: the low half xor the high half (or its complement when negative), so
/// an int8 hashes like the int4 of the same value.
fn fold_int8(value: i64) -> u32 {
    let low = value as u32;
    let high = (value >> 32) as u32;
    low ^ if value >= 0 { high } else { !high }
}

/// `hash_combine64` from `hashfn.h`.
pub fn hash_combine64(a: u64, b: u64) -> u64 {
    a ^ b
        .wrapping_add(0x49a0_f4dd_15e5_a8e3)
        .wrapping_add(a << 54)
        .wrapping_add(a >> 7)
}

/// lookup3's internal state.
struct State {
    a: u32,
    b: u32,
    c: u32,
}

impl State {
    /// The initial state for a key of `len` bytes, perturbed by a non-zero seed as if the seed
    /// were a first 12-byte block (its high half, its low half, four zero bytes).
    fn new(len: u32, seed: u64) -> Self {
        let init = 0x9e37_79b9_u32.wrapping_add(len).wrapping_add(3_923_095);
        let mut state = Self {
            a: init,
            b: init,
            c: init,
        };
        if seed != 0 {
            state.a = state.a.wrapping_add((seed >> 32) as u32);
            state.b = state.b.wrapping_add(seed as u32);
            state.mix();
        }
        state
    }

    fn mix(&mut self) {
        let Self { a, b, c } = self;
        *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
        *b = b.wrapping_add(*a);
        *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
        *b = b.wrapping_add(*a);
    }

    /// lookup3's `final`, returning PostgreSQL's 64-bit result `(b << 32) | c`.
    fn finish(mut self) -> u64 {
        let Self { a, b, c } = &mut self;
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
        *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
        *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
        *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
        *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
        *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
        (u64::from(self.b) << 32) | u64::from(self.c)
    }
}

/// Up to four bytes as a little-endian word, missing bytes zero.
fn le_word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .rev()
        .fold(0, |word, &byte| (word << 8) | u32::from(byte))
}

/// `hash_bytes_extended`: the key in 12-byte blocks, then the last 0 to 11 bytes, where the
/// lowest byte of `c` is left for the length (so the third word is shifted up by 8 bits).
pub fn hash_bytes_extended(key: &[u8], seed: u64) -> u64 {
    // PostgreSQL takes the length as a C int; a key over 4 GiB cannot reach a shard map.
    let mut state = State::new(key.len() as u32, seed);
    let mut blocks = key.chunks_exact(12);
    for block in &mut blocks {
        state.a = state.a.wrapping_add(le_word(&block[0..4]));
        state.b = state.b.wrapping_add(le_word(&block[4..8]));
        state.c = state.c.wrapping_add(le_word(&block[8..12]));
        state.mix();
    }
    let tail = blocks.remainder();
    let word = |from: usize| le_word(tail.get(from..tail.len().min(from + 4)).unwrap_or(&[]));
    state.a = state.a.wrapping_add(word(0));
    state.b = state.b.wrapping_add(word(4));
    state.c = state.c.wrapping_add(word(8) << 8);
    state.finish()
}

/// `hash_bytes_uint32_extended`: the same result as hashing the value's four bytes.
pub fn hash_bytes_uint32_extended(value: u32, seed: u64) -> u64 {
    let mut state = State::new(4, seed);
    state.a = state.a.wrapping_add(value);
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint32_hash_equals_hashing_its_bytes() {
        for value in [0u32, 1, 42, 0xdead_beef, u32::MAX] {
            for seed in [0, 1, HASH_PARTITION_SEED] {
                assert_eq!(
                    hash_bytes_uint32_extended(value, seed),
                    hash_bytes_extended(&value.to_le_bytes(), seed)
                );
            }
        }
    }

    #[test]
    fn int8_hashes_like_int4_and_int2_of_the_same_value() {
        for v in [-70_000i32, -1, 0, 1, 12_345, i32::MAX, i32::MIN] {
            let int4 = partition_hash(&KeyValue::Int4(v));
            assert_eq!(partition_hash(&KeyValue::Int8(i64::from(v))), int4, "{v}");
            if let Ok(small) = i16::try_from(v) {
                assert_eq!(partition_hash(&KeyValue::Int2(small)), int4, "{v}");
            }
        }
    }

    /// Values read from PostgreSQL 15 (`SELECT hashint4extended(0, 0)`, ...; PostgreSQL shows
    /// them as bigint), so a change here shows without a server; the integration test compares
    /// thousands of keys with a server.
    #[test]
    fn known_values_from_postgres() {
        let seed = HASH_PARTITION_SEED;
        let uuid = crate::shard::KeyType::Uuid
            .parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            .unwrap();
        let cases: [(&str, u64, i64); 7] = [
            (
                "hashint4extended(0, 0)",
                column_hash(&KeyValue::Int4(0), 0),
                4_154_612_158_245_552_303,
            ),
            (
                "hashint4extended(42, seed)",
                column_hash(&KeyValue::Int4(42), seed),
                7_363_975_540_656_877_951,
            ),
            (
                "hashint8extended(-5000000000, seed)",
                column_hash(&KeyValue::Int8(-5_000_000_000), seed),
                -4_482_100_988_868_492_312,
            ),
            (
                "hashtextextended('hello, world!', seed)",
                column_hash(&KeyValue::Text("hello, world!".into()), seed),
                -5_470_842_415_702_857_201,
            ),
            (
                "uuid_hash_extended(uuid, seed)",
                column_hash(&uuid, seed),
                424_513_190_990_560_493,
            ),
            (
                "hashtextextended('', 0)",
                hash_bytes_extended(b"", 0),
                -6_939_563_903_564_495_251,
            ),
            (
                "hashtextextended('abcdefghijklmnopq', 0)",
                hash_bytes_extended(b"abcdefghijklmnopq", 0),
                981_995_727_863_167_554,
            ),
        ];
        for (what, ours, postgres) in cases {
            assert_eq!(ours as i64, postgres, "{what}");
        }
    }

    #[test]
    fn every_shard_count_gives_a_shard_in_range() {
        for shards in 1..10 {
            for v in -50..50 {
                assert!(hash_shard(&KeyValue::Int8(v), shards) < shards);
            }
        }
    }
}
