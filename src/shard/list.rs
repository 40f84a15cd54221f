//! List shard maps: explicit key values per shard, with an optional default shard for every
//! other value. A value listed twice (for two shards, or twice for one) is a configuration error.

use std::collections::HashMap;

use super::{KeyValue, ShardError, shard_label};

/// The values of one shard, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSpec {
    pub shard: usize,
    pub values: Vec<KeyValue>,
}

#[derive(Debug, Clone)]
pub struct ListMap {
    name: String,
    shards: HashMap<KeyValue, usize>,
    default: Option<usize>,
}

impl ListMap {
    /// Checks the lists for duplicates; `shard_names` name the shards in errors.
    pub fn new(
        name: &str,
        shard_names: &[String],
        lists: Vec<ListSpec>,
        default: Option<usize>,
    ) -> Result<Self, ShardError> {
        let shard_name = |shard| shard_label(shard_names, shard);
        let mut shards = HashMap::new();
        for list in lists {
            for value in list.values {
                let text = value.to_string();
                if let Some(first) = shards.insert(value, list.shard) {
                    return Err(ShardError::InvalidMap(format!(
                        "list map {name:?} lists the value {text} for shard {} and again for \
                         shard {}: a value belongs to one shard",
                        shard_name(first),
                        shard_name(list.shard)
                    )));
                }
            }
        }
        if shards.is_empty() && default.is_none() {
            return Err(ShardError::InvalidMap(format!(
                "list map {name:?} lists no values and has no default shard"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            shards,
            default,
        })
    }

    /// The shard listing the key, else the default shard.
    pub fn shard_for(&self, key: &KeyValue) -> Result<usize, ShardError> {
        self.shards
            .get(key)
            .copied()
            .or(self.default)
            .ok_or_else(|| ShardError::NoShardForKey {
                map: self.name.clone(),
                key: key.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["eu", "us"].map(String::from).to_vec()
    }

    fn text(values: &[&str]) -> Vec<KeyValue> {
        values.iter().map(|v| KeyValue::Text((*v).into())).collect()
    }

    fn regions(default: Option<usize>) -> ListMap {
        let lists = vec![
            ListSpec {
                shard: 0,
                values: text(&["fr", "de"]),
            },
            ListSpec {
                shard: 1,
                values: text(&["us", "ca"]),
            },
        ];
        ListMap::new("regions", &names(), lists, default).unwrap()
    }

    #[test]
    fn listed_values_find_their_shard() {
        let m = regions(None);
        assert_eq!(m.shard_for(&KeyValue::Text("de".into())).unwrap(), 0);
        assert_eq!(m.shard_for(&KeyValue::Text("ca".into())).unwrap(), 1);
    }

    #[test]
    fn other_values_go_to_the_default_or_fail_clearly() {
        assert_eq!(
            regions(Some(1))
                .shard_for(&KeyValue::Text("jp".into()))
                .unwrap(),
            1
        );
        let err = regions(None)
            .shard_for(&KeyValue::Text("jp".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no shard of map \"regions\" accepts the key 'jp'"
        );
        // Case matters: text compares by bytes.
        assert!(
            regions(None)
                .shard_for(&KeyValue::Text("FR".into()))
                .is_err()
        );
    }

    #[test]
    fn duplicates_are_rejected_naming_both_shards() {
        let lists = vec![
            ListSpec {
                shard: 0,
                values: vec![KeyValue::Int4(1), KeyValue::Int4(2)],
            },
            ListSpec {
                shard: 1,
                values: vec![KeyValue::Int4(2)],
            },
        ];
        let err = ListMap::new("m", &names(), lists, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "list map \"m\" lists the value 2 for shard \"eu\" and again for shard \"us\": a \
             value belongs to one shard"
        );
        let twice = vec![ListSpec {
            shard: 0,
            values: vec![KeyValue::Int4(1), KeyValue::Int4(1)],
        }];
        assert!(ListMap::new("m", &names(), twice, None).is_err());
        assert!(ListMap::new("m", &names(), vec![], None).is_err());
        assert!(ListMap::new("m", &names(), vec![], Some(0)).is_ok());
    }
}
