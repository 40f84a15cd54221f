//! pgsplit: a PostgreSQL wire-protocol proxy that splits reads and writes over streaming replicas.

pub mod config;
