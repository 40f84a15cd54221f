//! The causal token: the WAL positions a read must see. A bare position ("16/B374D848")
//! applies to every cluster; with shards, positions are named per cluster
//! ("shard_a:0/3000060,shard_b:0/1A2B3C0"), so a reader waits only for the shards that were
//! written, and LSNs of one cluster are never compared with another's.

use std::collections::BTreeMap;
use std::fmt;

use crate::topology::monitor::{LsnText, parse_lsn};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CausalToken {
    /// A position every cluster must have replayed (0: none).
    everywhere: u64,
    /// Positions for named clusters.
    clusters: BTreeMap<String, u64>,
}

impl CausalToken {
    /// One position for every cluster.
    pub fn everywhere(lsn: u64) -> CausalToken {
        CausalToken {
            everywhere: lsn,
            clusters: BTreeMap::new(),
        }
    }

    /// A position per named cluster (zero positions are left out).
    pub fn per_cluster<'a>(positions: impl IntoIterator<Item = (&'a str, u64)>) -> CausalToken {
        CausalToken {
            everywhere: 0,
            clusters: positions
                .into_iter()
                .filter(|(_, lsn)| *lsn > 0)
                .map(|(name, lsn)| (name.to_string(), lsn))
                .collect(),
        }
    }

    /// The position a read on `cluster` must see (0: none).
    pub fn position_for(&self, cluster: &str) -> u64 {
        let named = self.clusters.get(cluster).copied().unwrap_or(0);
        named.max(self.everywhere)
    }

    pub fn is_empty(&self) -> bool {
        self.everywhere == 0 && self.clusters.is_empty()
    }

    /// Reads a token: comma-separated parts, each a bare WAL position (every cluster) or
    /// `cluster:position`. The error names the part that is wrong.
    pub fn parse(text: &str) -> Result<CausalToken, String> {
        let mut token = CausalToken::default();
        for part in text.split(',').map(str::trim) {
            let bad = |why: &str| {
                format!(
                    "bad part \"{part}\": {why}; expected a WAL position such as 16/B374D848, or \
                     cluster:position parts separated by commas"
                )
            };
            if part.is_empty() {
                return Err(bad("it is empty"));
            }
            let (cluster, position) = match part.rsplit_once(':') {
                Some((cluster, position)) => (Some(cluster.trim()), position.trim()),
                None => (None, part),
            };
            let lsn = parse_lsn(position).ok_or_else(|| bad("not a WAL position"))?;
            match cluster {
                Some("") => return Err(bad("the cluster name is empty")),
                Some(name) => {
                    let at = token.clusters.entry(name.to_string()).or_default();
                    *at = (*at).max(lsn);
                }
                None => token.everywhere = token.everywhere.max(lsn),
            }
        }
        Ok(token)
    }
}

/// The text [`CausalToken::parse`] reads back: a bare position alone, else the named ones
/// (after a bare one, if any).
impl fmt::Display for CausalToken {
    /// Written straight into the formatter: a token goes out with every committed write.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = self.everywhere > 0 || self.clusters.is_empty();
        if bare {
            LsnText(self.everywhere).fmt(f)?;
        }
        for (i, (name, lsn)) in self.clusters.iter().enumerate() {
            if bare || i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            f.write_str(":")?;
            LsnText(*lsn).fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_position_applies_to_every_cluster() {
        let token = CausalToken::parse("16/B374D848").expect("bare");
        assert_eq!(token.position_for("anything"), 0x16_B374_D848);
        assert_eq!(token.to_string(), "16/B374D848");
        assert_eq!(token, CausalToken::everywhere(0x16_B374_D848));
    }

    #[test]
    fn named_positions_apply_to_their_clusters_only() {
        let token = CausalToken::parse(" shard_a:0/3000060, shard_b:0/1A2B3C0 ").expect("named");
        assert_eq!(token.position_for("shard_a"), 0x300_0060);
        assert_eq!(token.position_for("shard_b"), 0x1A2_B3C0);
        assert_eq!(token.position_for("shard_c"), 0);
        assert_eq!(token.to_string(), "shard_a:0/3000060,shard_b:0/1A2B3C0");
        assert_eq!(CausalToken::parse(&token.to_string()), Ok(token));
        let mixed = CausalToken::parse("0/10,shard_a:0/20").expect("mixed");
        assert_eq!(
            (mixed.position_for("shard_a"), mixed.position_for("x")),
            (0x20, 0x10)
        );
        assert_eq!(mixed.to_string(), "0/10,shard_a:0/20");
        let written = CausalToken::per_cluster([("b", 2), ("a", 1), ("c", 0)]);
        assert_eq!(written.to_string(), "a:0/1,b:0/2");
    }

    #[test]
    fn errors_name_the_bad_part() {
        for (text, part) in [
            ("shard_a:0/1,shard_b:zz", "shard_b:zz"),
            ("shard_a:0/1,,shard_b:0/2", "\"\""),
            (":0/1", ":0/1"),
            ("nonsense", "nonsense"),
        ] {
            let error = CausalToken::parse(text).expect_err(text);
            assert!(error.contains(part), "{text}: {error}");
        }
    }
}
