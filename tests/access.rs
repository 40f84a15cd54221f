//! Access rules: the first rule matching user, database and client address decides; a login no
//! rule allows gets 28000 naming user, database and address; a wrong password stays 28P01.
//! auth_query: a role's SCRAM verifier read from the primary checks the client, whose proof then
//! logs pgsplit in to the server (which demands SCRAM of that role); a role with an md5 hash is
//! checked against it and pgsplit answers the server's md5 challenge with it.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::cluster;
use common::load::{bounded, sqlstate};
use common::proxy::{TestProxy, start_proxy};
use pgsplit::config::Config;
use pgsplit::localcluster::{APP_MD5_PASSWORD, APP_MD5_USER, APP_SCRAM_PASSWORD, APP_SCRAM_USER};

/// pgsplit in front of the shared primary with `settings` added to the file.
fn proxy_with(settings: &str) -> TestProxy {
    let toml = format!(
        "{settings}\n\n[[clusters]]\nprimary = {{ addr = \"{}\" }}\n",
        cluster().primary().addr()
    );
    start_proxy(Config::from_toml(&toml, "access test config").expect("valid test config"))
}

fn proxy_with_rules() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        proxy_with(
            r#"
            [[users]]
            name = "alice"
            password = "alice secret"
            server_user = "postgres"

            [[users]]
            name = "mallory"
            password = "mallory secret"
            server_user = "postgres"

            [[access]]
            users = ["mallory"]
            action = "reject"

            [[access]]
            databases = ["postgres"]
            addresses = ["127.0.0.0/8", "::1/128"]
            action = "allow"

            [[access]]
            addresses = ["10.0.0.0/8"]
            action = "allow"
            "#,
        )
    })
}

async fn login(user: &str, database: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    let connstr = format!(
        "{} password='{password}'",
        proxy_with_rules().connstr(user, database)
    );
    let client = bounded("login", Duration::from_secs(10), common::connect(&connstr)).await?;
    client.simple_query("SELECT 1").await.map(|_| ())
}

#[tokio::test]
async fn an_allowed_login_works() {
    login("alice", "postgres", "alice secret")
        .await
        .expect("alice may reach postgres from loopback");
}

#[tokio::test]
async fn a_rejected_user_gets_28000_before_any_password() {
    let err = login("mallory", "postgres", "mallory secret")
        .await
        .expect_err("mallory is rejected");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err:?}");
    assert!(
        format!("{err:?}")
            .contains("no access rule allows user \\\"mallory\\\" to database \\\"postgres\\\""),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_database_no_rule_allows_gets_28000_naming_the_address() {
    let err = login("alice", "template1", "alice secret")
        .await
        .expect_err("no rule allows template1 from loopback");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err:?}");
    assert!(format!("{err:?}").contains("from 127.0.0.1"), "{err:?}");
}

#[tokio::test]
async fn a_wrong_password_is_still_28p01() {
    let err = login("alice", "postgres", "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
}

fn proxy_with_auth_query() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| proxy_with("[auth_query]\nuser = \"postgres\"\ncache_ttl = \"2s\""))
}

async fn login_by_query(user: &str, password: &str) -> Result<String, tokio_postgres::Error> {
    let connstr = format!(
        "{} password='{password}'",
        proxy_with_auth_query().connstr(user, "postgres")
    );
    let client = bounded("login", Duration::from_secs(10), common::connect(&connstr)).await?;
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn auth_query_checks_scram_against_the_primary_and_passes_the_proof_on() {
    for _ in 0..2 {
        // The second login uses the cached verifier.
        let user = login_by_query(APP_SCRAM_USER, APP_SCRAM_PASSWORD)
            .await
            .expect("SCRAM login via auth_query");
        assert_eq!(user, APP_SCRAM_USER);
    }
    let err = login_by_query(APP_SCRAM_USER, "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
    let err = login_by_query("no_such_role", "whatever")
        .await
        .expect_err("unknown role");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
}

#[tokio::test]
async fn auth_query_checks_md5_and_answers_the_servers_md5_challenge_with_the_hash() {
    let user = login_by_query(APP_MD5_USER, APP_MD5_PASSWORD)
        .await
        .expect("md5 login via auth_query, to a server that demands md5");
    assert_eq!(user, APP_MD5_USER);
    let err = login_by_query(APP_MD5_USER, "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
}
