//! Range shard maps: each shard owns one or more ranges of keys, `from` inclusive and `to`
//! exclusive, either end open. Ranges must neither overlap nor leave gaps between them, so a
//! key inside the covered span always has exactly one shard; a key outside it has none.

use super::{KeyValue, ShardError, shard_label};

/// One range of a shard, as configured. `None` is an open end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    pub shard: usize,
    pub from: Option<KeyValue>,
    pub to: Option<KeyValue>,
}

/// Ranges sorted by their start, checked to tile the span they cover.
#[derive(Debug, Clone)]
pub struct RangeMap {
    name: String,
    ranges: Vec<RangeSpec>,
}

impl RangeMap {
    /// Sorts and checks the ranges; `shard_names` name the shards in errors.
    pub fn new(
        name: &str,
        shard_names: &[String],
        mut ranges: Vec<RangeSpec>,
    ) -> Result<Self, ShardError> {
        let describe = |r: &RangeSpec| describe(shard_names, r);
        if ranges.is_empty() {
            return Err(invalid(name, "has no ranges"));
        }
        for range in &ranges {
            if let (Some(from), Some(to)) = (&range.from, &range.to)
                && from >= to
            {
                return Err(invalid(name, &format!("{} is empty", describe(range))));
            }
        }
        // An open start sorts first (None < Some).
        ranges.sort_by(|a, b| a.from.cmp(&b.from));
        for pair in ranges.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let Some(end) = &before.to else {
                return Err(overlap(name, &describe(before), &describe(after)));
            };
            match after.from.as_ref().map(|start| start.cmp(end)) {
                Some(std::cmp::Ordering::Equal) => {}
                Some(std::cmp::Ordering::Greater) => {
                    return Err(invalid(
                        name,
                        &format!(
                            "leaves a gap between {} and {}: give the keys from {end} to the \
                             next range a shard",
                            describe(before),
                            describe(after)
                        ),
                    ));
                }
                _ => return Err(overlap(name, &describe(before), &describe(after))),
            }
        }
        Ok(Self {
            name: name.to_owned(),
            ranges,
        })
    }

    /// The shard whose range holds the key.
    pub fn shard_for(&self, key: &KeyValue) -> Result<usize, ShardError> {
        // Ranges starting at or before the key (an open start always does).
        let starts_before = self
            .ranges
            .partition_point(|r| r.from.as_ref().is_none_or(|from| from <= key));
        starts_before
            .checked_sub(1)
            .map(|i| &self.ranges[i])
            .filter(|r| r.to.as_ref().is_none_or(|to| key < to))
            .map(|r| r.shard)
            .ok_or_else(|| ShardError::NoShardForKey {
                map: self.name.clone(),
                key: key.to_string(),
            })
    }
}

fn describe(shard_names: &[String], range: &RangeSpec) -> String {
    let end = |bound: &Option<KeyValue>, open: &str| {
        bound
            .as_ref()
            .map_or_else(|| open.to_owned(), ToString::to_string)
    };
    let shard = shard_label(shard_names, range.shard);
    format!(
        "the range [{}, {}) of shard {shard}",
        end(&range.from, "-infinity"),
        end(&range.to, "infinity")
    )
}

fn overlap(map: &str, a: &str, b: &str) -> ShardError {
    invalid(map, &format!("has overlapping ranges: {a} and {b}"))
}

fn invalid(map: &str, what: &str) -> ShardError {
    ShardError::InvalidMap(format!("range map {map:?} {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    fn int(v: i64) -> Option<KeyValue> {
        Some(KeyValue::Int8(v))
    }

    fn spec(shard: usize, from: Option<KeyValue>, to: Option<KeyValue>) -> RangeSpec {
        RangeSpec { shard, from, to }
    }

    fn map(ranges: Vec<RangeSpec>) -> Result<RangeMap, ShardError> {
        RangeMap::new("users", &names(), ranges)
    }

    #[test]
    fn keys_find_their_range_at_and_between_boundaries() {
        let m = map(vec![
            spec(2, int(200), None),
            spec(0, None, int(100)),
            spec(1, int(100), int(200)),
        ])
        .unwrap();
        for (key, shard) in [
            (i64::MIN, 0),
            (99, 0),
            (100, 1),
            (199, 1),
            (200, 2),
            (i64::MAX, 2),
        ] {
            assert_eq!(m.shard_for(&KeyValue::Int8(key)).unwrap(), shard, "{key}");
        }
    }

    #[test]
    fn keys_outside_closed_ends_have_no_shard() {
        let m = map(vec![spec(0, int(0), int(10)), spec(1, int(10), int(20))]).unwrap();
        for key in [-1, 20, 1000] {
            let err = m.shard_for(&KeyValue::Int8(key)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("no shard of map \"users\" accepts the key {key}")
            );
            assert_eq!(err.sqlstate().0, "23514");
        }
    }

    #[test]
    fn text_ranges_compare_bytes() {
        let text = |s: &str| Some(KeyValue::Text(s.into()));
        let m = map(vec![spec(0, None, text("m")), spec(1, text("m"), None)]).unwrap();
        assert_eq!(m.shard_for(&KeyValue::Text("Zebra".into())).unwrap(), 0);
        assert_eq!(m.shard_for(&KeyValue::Text("apple".into())).unwrap(), 0);
        assert_eq!(m.shard_for(&KeyValue::Text("m".into())).unwrap(), 1);
        assert_eq!(m.shard_for(&KeyValue::Text("é".into())).unwrap(), 1);
    }

    #[test]
    fn a_shard_may_own_several_ranges() {
        let m = map(vec![
            spec(0, None, int(10)),
            spec(1, int(10), int(20)),
            spec(0, int(20), None),
        ])
        .unwrap();
        assert_eq!(m.shard_for(&KeyValue::Int8(25)).unwrap(), 0);
    }

    #[test]
    fn overlaps_are_rejected_naming_both_shards() {
        let err = map(vec![spec(0, None, int(150)), spec(1, int(100), None)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "range map \"users\" has overlapping ranges: the range [-infinity, 150) of shard \
             \"a\" and the range [100, infinity) of shard \"b\""
        );
        let two_open_starts = map(vec![spec(0, None, int(1)), spec(2, None, int(5))]);
        assert!(
            two_open_starts
                .unwrap_err()
                .to_string()
                .contains("shard \"c\"")
        );
        let two_open_ends = map(vec![spec(0, int(1), None), spec(1, int(5), None)]);
        assert!(
            two_open_ends
                .unwrap_err()
                .to_string()
                .contains("overlapping")
        );
    }

    #[test]
    fn gaps_and_empty_ranges_are_rejected() {
        let err = map(vec![spec(0, None, int(100)), spec(1, int(101), None)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "range map \"users\" leaves a gap between the range [-infinity, 100) of shard \"a\" \
             and the range [101, infinity) of shard \"b\": give the keys from 100 to the next \
             range a shard"
        );
        let empty = map(vec![spec(0, int(5), int(5))]).unwrap_err();
        assert!(
            empty.to_string().contains("[5, 5) of shard \"a\" is empty"),
            "{empty}"
        );
        assert!(map(vec![]).is_err());
    }
}
