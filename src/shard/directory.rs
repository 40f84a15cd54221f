//! Directory shard maps: the shard of each key is a row in a PostgreSQL table
//! (`key column -> shard name`), read through a moka cache. An entry stays until it expires or
//! is invalidated (`invalidate` for one key after the table changed, `invalidate_all`); a key
//! with no row is an error and is not cached, so a row added later is found at once.

use std::time::Duration;

use moka::future::Cache;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::{KeyType, KeyValue, ShardError};

/// Where the directory lives and how to read it.
#[derive(Debug, Clone)]
pub struct DirectorySpec {
    /// The table, optionally schema-qualified (`schema.table`); names are used exactly as
    /// written (quoted), so they are case-sensitive.
    pub table: String,
    pub key_column: String,
    /// A text column holding the shard's name.
    pub shard_column: String,
    pub key_type: KeyType,
    /// Cached keys at most.
    pub capacity: u64,
    /// How long an entry may be used without reading the table again; `None`: until
    /// invalidated or evicted.
    pub ttl: Option<Duration>,
    /// Bound on connecting and on each lookup.
    pub timeout: Duration,
}

pub struct Directory {
    spec: DirectorySpec,
    shard_names: Vec<String>,
    connection: tokio_postgres::Config,
    /// The lookup connection, opened on first use and again after it breaks.
    client: Mutex<Option<Client>>,
    lookup_sql: String,
    cache: Cache<KeyValue, usize>,
}

impl Directory {
    /// `connection` points at the cluster holding the table; `shard_names` are the map's shards,
    /// which the table's shard column names.
    pub fn new(
        spec: DirectorySpec,
        mut connection: tokio_postgres::Config,
        shard_names: &[String],
    ) -> Self {
        connection.connect_timeout(spec.timeout);
        let lookup_sql = format!(
            "SELECT {shard}::text FROM {table} WHERE {key} = $1::text::{key_type}",
            shard = quote_ident(&spec.shard_column),
            table = quote_table(&spec.table),
            key = quote_ident(&spec.key_column),
            key_type = spec.key_type.sql_name(),
        );
        let mut cache = Cache::builder().max_capacity(spec.capacity);
        if let Some(ttl) = spec.ttl {
            cache = cache.time_to_live(ttl);
        }
        Self {
            spec,
            shard_names: shard_names.to_vec(),
            connection,
            client: Mutex::new(None),
            lookup_sql,
            cache: cache.build(),
        }
    }

    /// The key's shard: from the cache, else from the table (concurrent misses for one key
    /// share one lookup).
    pub async fn shard_for(&self, key: &KeyValue) -> Result<usize, ShardError> {
        self.cache
            .try_get_with_by_ref(key, self.lookup(key))
            .await
            .map_err(|e| ShardError::clone(&e))
    }

    /// Forgets one key, after its row changed.
    pub async fn invalidate(&self, key: &KeyValue) {
        self.cache.invalidate(key).await;
    }

    /// The table's name, as configured.
    pub fn table(&self) -> &str {
        &self.spec.table
    }

    /// Forgets every key, after the table changed in ways not known key by key.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    async fn lookup(&self, key: &KeyValue) -> Result<usize, ShardError> {
        let name = match tokio::time::timeout(self.spec.timeout, self.query(key)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(self.unavailable(format!("no answer within {:?}", self.spec.timeout)));
            }
        };
        let name = name.ok_or_else(|| ShardError::UnknownKey {
            table: self.spec.table.clone(),
            key: key.to_string(),
        })?;
        self.shard_names
            .iter()
            .position(|shard| *shard == name)
            .ok_or_else(|| ShardError::UnknownShard {
                table: self.spec.table.clone(),
                key: key.to_string(),
                shard: name,
            })
    }

    /// The shard name in the key's row, if it has one. A broken connection is dropped, so the
    /// next lookup opens a new one.
    async fn query(&self, key: &KeyValue) -> Result<Option<String>, ShardError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(self.connect().await?);
        }
        let Some(client) = slot.as_ref() else {
            return Err(self.unavailable("no connection".into()));
        };
        let text = key.to_text();
        match client.query_opt(&self.lookup_sql, &[&text]).await {
            Ok(row) => row
                .map(|row| row.try_get::<_, Option<String>>(0))
                .transpose()
                .map(Option::flatten)
                .map_err(|e| self.unavailable(e.to_string())),
            Err(e) => {
                if client.is_closed() {
                    *slot = None;
                }
                Err(self.unavailable(e.to_string()))
            }
        }
    }

    async fn connect(&self) -> Result<Client, ShardError> {
        let mut config = self.connection.clone();
        let (client, connection) = crate::tls::connect_internal(&mut config)
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        tokio::spawn(async move {
            // It ends when the server goes away; the next lookup sees a closed client.
            let _ = connection.await;
        });
        Ok(client)
    }

    fn unavailable(&self, reason: String) -> ShardError {
        ShardError::DirectoryUnavailable {
            table: self.spec.table.clone(),
            reason,
        }
    }
}

/// `schema.table` or `table`, each part quoted.
fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote_table("public.map"), "\"public\".\"map\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
