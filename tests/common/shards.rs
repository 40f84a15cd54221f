//! Shard clusters for sharding tests: several private clusters (a primary with replicas each)
//! started side by side, and the `[[clusters]]` config text that names them.

use pgsplit::localcluster::LocalCluster;

/// One private cluster per name, each with `replicas` replicas and `conf` lines, started in
/// parallel (a cluster takes seconds to start).
pub fn start_shards(names: &[&str], replicas: usize, conf: &[&str]) -> Vec<LocalCluster> {
    std::thread::scope(|s| {
        let started: Vec<_> = names
            .iter()
            .map(|_| s.spawn(|| super::private_cluster_with(replicas, conf)))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a shard starts"))
            .collect()
    })
}

/// `[[clusters]]` entries for the shards: nodes `<name>_p` and `<name>_r<i>`.
pub fn clusters_toml(names: &[&str], shards: &[LocalCluster]) -> String {
    let mut text = String::new();
    for (name, cluster) in names.iter().zip(shards) {
        let replicas: Vec<String> = cluster
            .replicas()
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{{ name = \"{name}_r{i}\", addr = \"{}\" }}", r.addr()))
            .collect();
        text += &format!(
            "[[clusters]]\nname = \"{name}\"\nprimary = {{ name = \"{name}_p\", addr = \"{}\" }}\nreplicas = [{}]\n",
            cluster.primary().addr(),
            replicas.join(", ")
        );
    }
    text
}
