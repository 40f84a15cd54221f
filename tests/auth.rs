//! Authentication: clients against users configured in pgsplit (trust, cleartext, md5,
//! SCRAM-SHA-256), and pass-through, where the server's verdict is what the client sees.

mod common;

use std::sync::OnceLock;

use common::cluster;
use common::proxy::{TestProxy, proxy, start_proxy};
use pgsplit::config::Config;
use pgsplit::localcluster::{APP_MD5_PASSWORD, APP_MD5_USER, APP_SCRAM_PASSWORD, APP_SCRAM_USER};
use tokio_postgres::NoTls;

/// pgsplit with its own users, each mapped to a server role that needs a different method.
fn proxy_with_users() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let toml = format!(
            r#"
            [[clusters]]
            primary = {{ addr = "{primary}" }}

            [[users]]
            name = "scram_client"
            password = "scram secret"
            auth = "scram-sha-256"
            server_user = "{APP_SCRAM_USER}"
            server_password = "{APP_SCRAM_PASSWORD}"

            [[users]]
            name = "md5_client"
            password = "md5 secret"
            auth = "md5"
            server_user = "{APP_MD5_USER}"
            server_password = "{APP_MD5_PASSWORD}"

            [[users]]
            name = "plain_client"
            password = "plain secret"
            auth = "password"
            server_user = "postgres"

            [[users]]
            name = "trusted_client"
            auth = "trust"
            server_user = "postgres"
            "#,
            primary = cluster().primary().addr()
        );
        start_proxy(Config::from_toml(&toml, "auth test config").expect("valid test config"))
    })
}

async fn login(
    proxy: &TestProxy,
    user: &str,
    password: Option<&str>,
) -> Result<String, tokio_postgres::Error> {
    let mut connstr = proxy.connstr(user, "postgres");
    if let Some(password) = password {
        connstr.push_str(&format!(" password='{password}'"));
    }
    let (client, connection) = tokio_postgres::connect(&connstr, NoTls).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

#[tokio::test]
async fn configured_users_log_in_with_each_method_and_run_as_their_server_user() {
    let p = proxy_with_users();
    assert_eq!(
        login(p, "scram_client", Some("scram secret"))
            .await
            .unwrap(),
        APP_SCRAM_USER
    );
    assert_eq!(
        login(p, "md5_client", Some("md5 secret")).await.unwrap(),
        APP_MD5_USER
    );
    assert_eq!(
        login(p, "plain_client", Some("plain secret"))
            .await
            .unwrap(),
        "postgres"
    );
    assert_eq!(login(p, "trusted_client", None).await.unwrap(), "postgres");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_28p01() {
    let p = proxy_with_users();
    for (user, password) in [
        ("scram_client", "nope"),
        ("md5_client", "nope"),
        ("plain_client", "nope"),
        ("nobody", "x"),
    ] {
        let err = login(p, user, Some(password)).await.unwrap_err();
        assert_eq!(sqlstate(&err), Some("28P01"), "{user}: {err}");
    }
}

#[tokio::test]
async fn pass_through_lets_the_server_decide() {
    let p = proxy();
    assert_eq!(
        login(p, APP_SCRAM_USER, Some(APP_SCRAM_PASSWORD))
            .await
            .unwrap(),
        APP_SCRAM_USER
    );
    assert_eq!(
        login(p, APP_MD5_USER, Some(APP_MD5_PASSWORD))
            .await
            .unwrap(),
        APP_MD5_USER
    );
    let err = login(p, APP_SCRAM_USER, Some("wrong")).await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
    let err = login(p, "no_such_role", None).await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("28000"), "{err}");
}
