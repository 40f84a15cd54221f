//! The nodes behind pgsplit and their roles, published as an immutable snapshot that the data
//! path reads without waiting. Health and lag monitoring will update it.

use std::sync::Arc;

use crate::config::{ClusterConfig, Config, NodeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// "host:port", as a socket connect accepts it.
    pub addr: String,
    pub role: Role,
}

#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub databases: Vec<String>,
    pub primary: Arc<Node>,
    pub replicas: Vec<Arc<Node>>,
}

#[derive(Debug)]
pub struct Topology {
    pub clusters: Vec<Cluster>,
}

impl Topology {
    pub fn from_config(config: &Config) -> Topology {
        Topology {
            clusters: config.clusters.iter().map(Cluster::from_config).collect(),
        }
    }

    /// The cluster that serves `database`: the one listing it, else the first that lists none.
    /// Config validation guarantees that one of them exists.
    pub fn cluster_for_database(&self, database: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|c| c.databases.iter().any(|d| d == database))
            .or_else(|| self.clusters.iter().find(|c| c.databases.is_empty()))
            .unwrap_or(&self.clusters[0])
    }
}

impl Cluster {
    fn from_config(c: &ClusterConfig) -> Cluster {
        Cluster {
            name: c.name.clone(),
            databases: c.databases.clone(),
            primary: Arc::new(node(&c.primary, Role::Primary)),
            replicas: c
                .replicas
                .iter()
                .map(|r| Arc::new(node(r, Role::Replica)))
                .collect(),
        }
    }
}

fn node(n: &NodeConfig, role: Role) -> Node {
    let addr = if n.host.contains(':') {
        format!("[{}]:{}", n.host, n.port)
    } else {
        format!("{}:{}", n.host, n.port)
    };
    Node {
        name: n.name.clone(),
        addr,
        role,
    }
}
