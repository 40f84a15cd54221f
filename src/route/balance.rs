//! Choosing which node serves a balanced read: one [`Balancer`] per cluster, applying the
//! cluster's [`LoadBalancing`] algorithm to the candidates the caller found eligible.
//!
//! Picking happens for every balanced read, from every session at once, so it takes no lock and
//! allocates nothing: all state is atomics, updated with single read-modify-write operations.
//! Only [`LoadBalancing::Weighted`] reads the candidates' weights; the other algorithms treat
//! every candidate alike (the primary still takes part only when its read weight is above 0,
//! which [`Candidate::primary`] decides).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::config::LoadBalancing;
use crate::topology::{Cluster, Node};

/// One node a read may go to, with its weight for [`LoadBalancing::Weighted`].
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub node: &'a Arc<Node>,
    pub weight: u32,
}

impl<'a> Candidate<'a> {
    /// A replica, with its own weight.
    pub fn replica(node: &'a Arc<Node>) -> Self {
        Self {
            node,
            weight: node.weight,
        }
    }

    /// The cluster's primary, when it takes balanced reads: its weight is the cluster's
    /// `primary_read_weight` (which belongs to the role, not the node), and 0 means it is no
    /// candidate at all, whatever the algorithm.
    pub fn primary(cluster: &'a Cluster) -> Option<Self> {
        (cluster.primary_read_weight > 0).then_some(Self {
            node: &cluster.primary,
            weight: cluster.primary_read_weight,
        })
    }
}

/// Candidates whose smooth weighted round robin state is kept. A cluster has far fewer nodes;
/// beyond this, [`LoadBalancing::Weighted`] picks at random by weight instead.
const SMOOTH_SLOTS: usize = 64;

/// Under [`LoadBalancing::LeastResponseTime`], one pick in this many goes round robin instead,
/// so a node whose average was raised by a few slow answers gets new samples and can win back
/// its share. At 20 such probes cost 5% of the reads.
const PROBE_EVERY: usize = 20;

/// The balancing state of one cluster.
#[derive(Debug)]
pub struct Balancer {
    algorithm: LoadBalancing,
    /// Picks so far: the position of round robin, and the rotating start that breaks ties
    /// (and chooses probes) for the other algorithms, so equally good nodes share the load.
    turn: AtomicUsize,
    /// The "current weight" of smooth weighted round robin per candidate position; empty
    /// unless the algorithm is [`LoadBalancing::Weighted`].
    current: Box<[AtomicI64]>,
}

impl Balancer {
    pub fn new(algorithm: LoadBalancing) -> Self {
        let slots = if algorithm == LoadBalancing::Weighted {
            SMOOTH_SLOTS
        } else {
            0
        };
        Self {
            algorithm,
            turn: AtomicUsize::new(0),
            current: (0..slots).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn algorithm(&self) -> LoadBalancing {
        self.algorithm
    }

    /// Picks one of `candidates` (already filtered to eligible nodes; may include the primary
    /// with its read weight) and returns its index. `client` is the client's address, which
    /// only [`LoadBalancing::ClientHash`] uses. `None` if there are no candidates.
    pub fn pick(&self, candidates: &[Candidate<'_>], client: IpAddr) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let n = candidates.len();
        let index = match self.algorithm {
            LoadBalancing::RoundRobin => self.next_turn() % n,
            LoadBalancing::Weighted => self.weighted(candidates),
            // A sticky session's first pick (later ones keep its node: see `route::decide`).
            LoadBalancing::LeastConnections | LoadBalancing::Sticky => {
                least_by(candidates, self.next_turn(), |node| {
                    node.stats.in_flight.load(Ordering::Relaxed)
                })
            }
            // The thread's own generator: no state shared between sessions to contend on.
            LoadBalancing::Random => rand::random_range(..n),
            LoadBalancing::LeastResponseTime => self.fastest(candidates),
            LoadBalancing::ClientHash => rendezvous(candidates, client),
        };
        Some(index)
    }

    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Nginx's smooth weighted round robin: every pick adds each candidate's weight to its
    /// current weight, takes the highest and subtracts the total from it. Weights 5, 1, 1 give
    /// `a a b a c a a`, not `a a a a a b c`.
    ///
    /// Without a lock, two simultaneous picks may read the same state and choose the same node.
    /// Every update is an atomic add, so the current weights still sum to zero and the next
    /// picks even it out: over many picks each node's share stays its weight's share.
    ///
    /// The state is kept by position, so the caller should list candidates in a stable order
    /// (the cluster's). When the set changes, the credit a position built up passes to
    /// whichever node holds it next: a brief skew that the same evening-out corrects.
    fn weighted(&self, candidates: &[Candidate<'_>]) -> usize {
        let total: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            // Nothing to weigh by: treat them alike rather than refuse the read.
            return self.next_turn() % candidates.len();
        }
        if candidates.len() > self.current.len() {
            return weighted_random(candidates, total);
        }
        // At most SMOOTH_SLOTS weights of at most u32::MAX: far within i64.
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        let mut best: Option<(usize, i64)> = None;
        for (index, (candidate, slot)) in candidates.iter().zip(self.current.iter()).enumerate() {
            // Weight 0 takes no part, so it never accumulates a claim.
            if candidate.weight == 0 {
                continue;
            }
            let weight = i64::from(candidate.weight);
            let current = slot
                .fetch_add(weight, Ordering::Relaxed)
                .wrapping_add(weight);
            if best.is_none_or(|(_, highest)| current > highest) {
                best = Some((index, current));
            }
        }
        // The total is above 0, so some candidate had a weight.
        let (index, _) = best.unwrap_or((0, 0));
        if let Some(slot) = self.current.get(index) {
            slot.fetch_sub(total, Ordering::Relaxed);
        }
        index
    }

    /// The candidate with the lowest average response time; one without a sample yet (0) comes
    /// first, so new and restarted nodes are measured at once. Every [`PROBE_EVERY`]th pick is
    /// round robin instead, which keeps every node's average current.
    fn fastest(&self, candidates: &[Candidate<'_>]) -> usize {
        let turn = self.next_turn();
        if turn % PROBE_EVERY == PROBE_EVERY - 1 {
            // Probes count in their own sequence: `turn % n` could hit the same node every
            // time when n divides PROBE_EVERY.
            return (turn / PROBE_EVERY) % candidates.len();
        }
        least_by(candidates, turn, |node| {
            node.stats.ewma_micros.load(Ordering::Relaxed)
        })
    }
}

/// The index of the candidate with the lowest `key`; ties go round robin by `turn`, so equally
/// loaded nodes share the reads evenly.
///
/// Two passes: the first finds the lowest key and how many share it, the second takes the
/// `turn`-th of those. Keys are live figures that may change in between; then the first
/// lowest seen is as good an answer.
fn least_by<K: Ord>(candidates: &[Candidate<'_>], turn: usize, key: impl Fn(&Node) -> K) -> usize {
    let mut lowest: Option<(K, usize, usize)> = None; // (key, first index, ties)
    for (index, candidate) in candidates.iter().enumerate() {
        let value = key(candidate.node);
        lowest = match lowest {
            Some((best, first, ties)) if value == best => Some((best, first, ties + 1)),
            Some(best) if value > best.0 => Some(best),
            _ => Some((value, index, 1)),
        };
    }
    let Some((best, first, ties)) = lowest else {
        return 0;
    };
    candidates
        .iter()
        .enumerate()
        .filter(|(_, candidate)| key(candidate.node) == best)
        .nth(turn % ties)
        .map_or(first, |(index, _)| index)
}

/// A candidate drawn with probability weight / total; weight 0 is never drawn.
fn weighted_random(candidates: &[Candidate<'_>], total: u64) -> usize {
    let mut ticket = rand::random_range(..total);
    candidates
        .iter()
        .position(|candidate| {
            let weight = u64::from(candidate.weight);
            if ticket < weight {
                return true;
            }
            ticket -= weight;
            false
        })
        // The tickets of all candidates add up to `total`, so one holds it.
        .unwrap_or(0)
}

/// Rendezvous (highest random weight) hashing: each candidate scores hash(client, node name)
/// and the highest wins. The same client keeps its node while the candidates stay the same;
/// removing a node moves only that node's clients, adding one takes clients from each other
/// node evenly. The hash is FNV-1a with a fixed finalizer and hashes node names, not
/// addresses in memory, so every pgsplit instance and version maps a client alike.
fn rendezvous(candidates: &[Candidate<'_>], client: IpAddr) -> usize {
    let client = client_key(client);
    candidates
        .iter()
        .enumerate()
        .max_by_key(|(_, candidate)| mix(fnv1a(client, candidate.node.name.as_bytes())))
        .map_or(0, |(index, _)| index)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A client's address as a hash state. An IPv4 client reaching a dual-stack listener shows up
/// as `::ffff:a.b.c.d`; it is the same client as `a.b.c.d`.
fn client_key(client: IpAddr) -> u64 {
    match client.to_canonical() {
        IpAddr::V4(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(FNV_OFFSET, &v6.octets()),
    }
}

fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The finalizer of MurmurHash3: FNV's last bytes reach only some bits of the hash well, and
/// node names often differ only in their last byte ("replica1", "replica2").
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;
    use crate::topology::Role;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node::new(
            name.to_owned(),
            format!("{name}:5432"),
            Role::Replica,
            1,
        ))
    }

    fn nodes(count: usize) -> Vec<Arc<Node>> {
        (1..=count).map(|i| node(&format!("replica{i}"))).collect()
    }

    fn candidates<'a>(nodes: &'a [Arc<Node>], weights: &[u32]) -> Vec<Candidate<'a>> {
        nodes
            .iter()
            .zip(weights)
            .map(|(node, &weight)| Candidate { node, weight })
            .collect()
    }

    fn pick(balancer: &Balancer, candidates: &[Candidate<'_>], client: IpAddr) -> usize {
        match balancer.pick(candidates, client) {
            Some(index) if index < candidates.len() => index,
            other => panic!("no valid pick: {other:?}"),
        }
    }

    /// How often each candidate is picked in `picks` picks from the same client.
    fn counts(balancer: &Balancer, candidates: &[Candidate<'_>], picks: usize) -> Vec<usize> {
        let mut counts = vec![0; candidates.len()];
        for _ in 0..picks {
            counts[pick(balancer, candidates, CLIENT)] += 1;
        }
        counts
    }

    fn sequence(balancer: &Balancer, candidates: &[Candidate<'_>], picks: usize) -> Vec<usize> {
        (0..picks)
            .map(|_| pick(balancer, candidates, CLIENT))
            .collect()
    }

    fn assert_near(counts: &[usize], expected: &[usize], tolerance: usize) {
        for (got, want) in counts.iter().zip(expected) {
            assert!(
                got.abs_diff(*want) <= tolerance,
                "{counts:?}, expected about {expected:?}"
            );
        }
    }

    #[test]
    fn balancers_are_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Balancer>();
    }

    #[test]
    fn no_candidates_no_pick() {
        for algorithm in LoadBalancing::ALL {
            let balancer = Balancer::new(algorithm);
            assert_eq!(balancer.algorithm(), algorithm);
            assert_eq!(balancer.pick(&[], CLIENT), None, "{algorithm}");
        }
    }

    #[test]
    fn a_single_candidate_is_always_picked() {
        let nodes = nodes(1);
        for algorithm in LoadBalancing::ALL {
            let balancer = Balancer::new(algorithm);
            assert_eq!(
                counts(&balancer, &candidates(&nodes, &[1]), 50),
                [50],
                "{algorithm}"
            );
        }
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 5, 0]);
        let balancer = Balancer::new(LoadBalancing::RoundRobin);
        let picks = sequence(&balancer, &candidates, 300);
        assert!(
            picks.iter().enumerate().all(|(i, &pick)| pick == i % 3),
            "{picks:?}"
        );
        assert_eq!(counts(&balancer, &candidates, 300), [100, 100, 100]);
    }

    #[test]
    fn round_robin_stays_exact_across_threads() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 1, 1]);
        let balancer = Balancer::new(LoadBalancing::RoundRobin);
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| counts(&balancer, &candidates, 300)))
                .collect();
            threads.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        let total = per_thread.iter().fold(vec![0; 3], |mut sum, counts| {
            sum.iter_mut().zip(counts).for_each(|(s, c)| *s += c);
            sum
        });
        assert_eq!(total, [800, 800, 800]);
    }

    #[test]
    fn weighted_is_exact_and_smooth() {
        let nodes = nodes(3);
        let balancer = Balancer::new(LoadBalancing::Weighted);
        assert_eq!(
            counts(&balancer, &candidates(&nodes, &[1, 2, 3]), 600),
            [100, 200, 300]
        );
        // Nginx's example: the heavy node's picks are spread out, not bunched.
        let balancer = Balancer::new(LoadBalancing::Weighted);
        let picks = sequence(&balancer, &candidates(&nodes, &[5, 1, 1]), 14);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weight_zero_is_never_picked_unless_all_are_zero() {
        let nodes = nodes(3);
        let balancer = Balancer::new(LoadBalancing::Weighted);
        assert_eq!(
            counts(&balancer, &candidates(&nodes, &[2, 0, 1]), 300),
            [200, 0, 100]
        );
        let balancer = Balancer::new(LoadBalancing::Weighted);
        let picks = sequence(&balancer, &candidates(&nodes, &[0, 0, 0]), 6);
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_keeps_shares_across_threads() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 2, 3]);
        let balancer = Balancer::new(LoadBalancing::Weighted);
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| counts(&balancer, &candidates, 600)))
                .collect();
            threads.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        let total = per_thread.iter().fold(vec![0; 3], |mut sum, counts| {
            sum.iter_mut().zip(counts).for_each(|(s, c)| *s += c);
            sum
        });
        // Racing picks may bunch, but the shared state evens them out within a few picks.
        assert_near(&total, &[800, 1600, 2400], 24);
    }

    #[test]
    fn weighted_beyond_the_smooth_slots_draws_by_weight() {
        let nodes = nodes(SMOOTH_SLOTS + 6);
        // One node weighs as much as all the others together; the last weighs nothing.
        let mut weights = vec![1; nodes.len()];
        weights[0] = u32::try_from(nodes.len() - 2).unwrap_or(u32::MAX);
        weights[nodes.len() - 1] = 0;
        let candidates = candidates(&nodes, &weights);
        let balancer = Balancer::new(LoadBalancing::Weighted);
        let counts = counts(&balancer, &candidates, 10_000);
        assert_near(&counts[..1], &[5_000], 300);
        assert_eq!(counts[nodes.len() - 1], 0);
    }

    #[test]
    fn random_is_uniform() {
        let nodes = nodes(3);
        let balancer = Balancer::new(LoadBalancing::Random);
        let counts = counts(&balancer, &candidates(&nodes, &[1, 1, 1]), 3000);
        // 7% of 3000 is more than 8 standard deviations: this does not fail by chance.
        assert_near(&counts, &[1000, 1000, 1000], 210);
    }

    #[test]
    fn least_connections_prefers_the_idlest_and_shares_ties() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 1, 1]);
        let balancer = Balancer::new(LoadBalancing::LeastConnections);
        assert_eq!(counts(&balancer, &candidates, 300), [100, 100, 100]);

        let _busy: Vec<_> = (0..5).map(|_| nodes[2].start_work()).collect();
        assert_eq!(counts(&balancer, &candidates, 300), [150, 150, 0]);

        let _first: Vec<_> = (0..3).map(|_| nodes[0].start_work()).collect();
        let _second = nodes[1].start_work();
        assert_eq!(counts(&balancer, &candidates, 300), [0, 300, 0]);
    }

    #[test]
    fn least_connections_follows_work_as_it_starts_and_ends() {
        let nodes = nodes(2);
        let candidates = candidates(&nodes, &[1, 1]);
        let balancer = Balancer::new(LoadBalancing::LeastConnections);
        // Each pick starts work that stays open: the picks alternate.
        let mut open = Vec::new();
        for _ in 0..10 {
            let index = pick(&balancer, &candidates, CLIENT);
            open.push(nodes[index].start_work());
        }
        let per_node: Vec<usize> = nodes
            .iter()
            .map(|n| n.stats.in_flight.load(Ordering::Relaxed))
            .collect();
        assert_eq!(per_node, [5, 5]);
        drop(open);
        assert!(
            nodes
                .iter()
                .all(|n| n.stats.in_flight.load(Ordering::Relaxed) == 0)
        );
    }

    fn record(node: &Arc<Node>, millis: u64) {
        node.start_work().finish(Duration::from_millis(millis));
    }

    #[test]
    fn least_response_time_tries_unmeasured_nodes_first() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 1, 1]);
        record(&nodes[0], 5);
        record(&nodes[2], 1);
        let balancer = Balancer::new(LoadBalancing::LeastResponseTime);
        let picks = sequence(&balancer, &candidates, PROBE_EVERY - 1);
        assert!(picks.iter().all(|&pick| pick == 1), "{picks:?}");
    }

    #[test]
    fn least_response_time_prefers_the_fastest_and_still_probes_the_others() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 1, 1]);
        record(&nodes[0], 50);
        record(&nodes[1], 2);
        record(&nodes[2], 9);
        let balancer = Balancer::new(LoadBalancing::LeastResponseTime);
        // 600 picks hold 30 probes, 10 per node.
        assert_eq!(counts(&balancer, &candidates, 600), [10, 580, 10]);
    }

    #[test]
    fn least_response_time_probes_every_node_when_their_count_divides_the_period() {
        let nodes = nodes(4);
        let candidates = candidates(&nodes, &[1, 1, 1, 1]);
        for (node, millis) in nodes.iter().zip([1, 9, 9, 9]) {
            record(node, millis);
        }
        let balancer = Balancer::new(LoadBalancing::LeastResponseTime);
        let counts = counts(&balancer, &candidates, PROBE_EVERY * 4);
        assert_eq!(counts, [77, 1, 1, 1]);
    }

    #[test]
    fn least_response_time_shares_ties() {
        let nodes = nodes(3);
        let balancer = Balancer::new(LoadBalancing::LeastResponseTime);
        let counts = counts(&balancer, &candidates(&nodes, &[1, 1, 1]), 600);
        assert_near(&counts, &[200, 200, 200], 10);
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    /// The name of the node each of `clients` clients is sent to.
    fn assignments(candidates: &[Candidate<'_>], clients: u32) -> Vec<String> {
        let balancer = Balancer::new(LoadBalancing::ClientHash);
        (0..clients)
            .map(|i| {
                candidates[pick(&balancer, candidates, ip(i))]
                    .node
                    .name
                    .clone()
            })
            .collect()
    }

    #[test]
    fn client_hash_keeps_a_client_on_its_node() {
        let nodes = nodes(3);
        let candidates = candidates(&nodes, &[1, 1, 1]);
        let balancer = Balancer::new(LoadBalancing::ClientHash);
        for i in 0..50 {
            let first = pick(&balancer, &candidates, ip(i));
            assert!((0..20).all(|_| pick(&balancer, &candidates, ip(i)) == first));
        }
    }

    #[test]
    fn client_hash_spreads_clients_evenly() {
        let nodes = nodes(3);
        let names = assignments(&candidates(&nodes, &[1, 1, 1]), 3000);
        let counts: Vec<usize> = nodes
            .iter()
            .map(|n| names.iter().filter(|&name| *name == n.name).count())
            .collect();
        assert_near(&counts, &[1000, 1000, 1000], 210);
    }

    #[test]
    fn client_hash_moves_only_the_clients_of_a_removed_node() {
        let nodes = nodes(3);
        let before = assignments(&candidates(&nodes, &[1, 1, 1]), 1000);
        let remaining = [Arc::clone(&nodes[0]), Arc::clone(&nodes[2])];
        let after = assignments(&candidates(&remaining, &[1, 1]), 1000);
        for (old, new) in before.iter().zip(&after) {
            if *old != nodes[1].name {
                assert_eq!(old, new);
            }
        }
        let moved = before.iter().filter(|&name| *name == nodes[1].name).count();
        assert!(
            moved > 250,
            "{moved} of 1000 clients were on the removed node"
        );
    }

    #[test]
    fn client_hash_is_the_same_in_every_instance() {
        // Pinned: instances (and versions) behind one TCP balancer must agree, so the hash may
        // not change silently.
        let nodes = nodes(3);
        let names = assignments(&candidates(&nodes, &[1, 1, 1]), 6);
        assert_eq!(
            names,
            [
                "replica3", "replica2", "replica2", "replica2", "replica3", "replica1"
            ]
        );
    }

    #[test]
    fn the_hash_is_standard_fnv1a() {
        // Test vectors of FNV-1a 64.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn client_hash_sees_an_ipv4_client_alike_through_ipv6() {
        let nodes = nodes(5);
        let candidates = candidates(&nodes, &[1; 5]);
        let balancer = Balancer::new(LoadBalancing::ClientHash);
        for i in 0..100 {
            let v4 = Ipv4Addr::from(0xc0a8_0000 + i);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(
                pick(&balancer, &candidates, IpAddr::V4(v4)),
                pick(&balancer, &candidates, mapped)
            );
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(
            pick(&balancer, &candidates, v6),
            pick(&balancer, &candidates, v6)
        );
    }

    #[test]
    fn the_primary_is_a_candidate_only_with_a_read_weight() {
        let config = |weight: u32| {
            let text = format!(
                "[[clusters]]\nprimary_read_weight = {weight}\nprimary = {{ addr = \"a:1\" }}\n\
                 replicas = [ {{ addr = \"b:1\", weight = 4 }} ]\n"
            );
            match crate::config::Config::from_toml(&text, "test.toml") {
                Ok(config) => crate::topology::Topology::from_config(&config),
                Err(err) => panic!("{err}"),
            }
        };
        let without = config(0);
        assert!(Candidate::primary(&without.clusters[0]).is_none());
        let with = config(3);
        let cluster = &with.clusters[0];
        let primary = Candidate::primary(cluster).map(|c| (c.node.name.as_str(), c.weight));
        assert_eq!(primary, Some(("primary", 3)));
        assert_eq!(Candidate::replica(&cluster.replicas[0]).weight, 4);
    }
}
