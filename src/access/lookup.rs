//! auth_query: the stored password (SCRAM verifier or md5 hash) of a user not configured in
//! pgsplit, read from the primary as PgBouncer does, so clients' passwords need not be copied
//! into pgsplit's config. Answers, "no such user" included, are reused for `cache_ttl`.

use std::sync::Arc;

use moka::future::Cache;

use crate::config::AuthQuerySettings;

pub struct AuthQuery {
    pub settings: AuthQuerySettings,
    /// User name -> the stored password, or None for no such user (or no password).
    answers: Cache<String, Option<Arc<str>>>,
    /// How long a lookup may take, connection included.
    timeout: std::time::Duration,
}

impl AuthQuery {
    pub fn new(settings: AuthQuerySettings, timeout: std::time::Duration) -> Self {
        AuthQuery {
            answers: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.cache_ttl)
                .build(),
            settings,
            timeout,
        }
    }

    /// The stored password of `user`, read from `primary` ("host:port") unless cached.
    /// Errors never contain a secret.
    pub async fn secret(&self, user: &str, primary: &str) -> Result<Option<Arc<str>>, String> {
        if let Some(answer) = self.answers.get(user).await {
            return Ok(answer);
        }
        let answer = tokio::time::timeout(self.timeout, self.fetch(user, primary))
            .await
            .map_err(|_| {
                format!(
                    "auth_query: no answer from {primary} within {:?}",
                    self.timeout
                )
            })??;
        self.answers.insert(user.to_string(), answer.clone()).await;
        Ok(answer)
    }

    async fn fetch(&self, user: &str, primary: &str) -> Result<Option<Arc<str>>, String> {
        let (host, port) = crate::config::address::split_node_addr(primary);
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user(&self.settings.user)
            .dbname(&self.settings.database)
            .application_name("pgsplit auth_query");
        if let Some(password) = &self.settings.password {
            config.password(password);
        }
        let failed = |e: tokio_postgres::Error| format!("auth_query on {primary}: {e}");
        let (client, connection) = crate::tls::connect_internal(&mut config)
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        let row = client
            .query_opt(&self.settings.query, &[&user])
            .await
            .map_err(failed)?;
        let secret = match row {
            Some(row) => row
                .try_get::<_, Option<String>>(1)
                .map_err(|e| format!("auth_query: the second column must be text: {e}"))?,
            None => None,
        };
        Ok(secret.filter(|s| !s.is_empty()).map(Arc::from))
    }
}
