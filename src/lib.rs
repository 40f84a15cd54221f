//! pgsplit: a PostgreSQL wire-protocol proxy that splits reads and writes over streaming replicas.

pub mod access;
pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod config;
pub mod demo;
pub mod events;
pub mod fanout;
pub mod frontend;
pub mod fuzz;
pub mod hint;
pub mod localcluster;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod reload;
pub mod route;
pub mod shard;
pub mod tls;
pub mod topology;
