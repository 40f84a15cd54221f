//! TLS: towards clients (required: plain text refused with 28000; a TLS client logs in and
//! queries; a new certificate is served after a reload) and towards servers (verify-full against
//! the shared primary with ssl turned on).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::load::{bounded, sqlstate};
use common::process::http;
use common::proxy::start_proxy;
use common::{cluster, unique_name};
use pgsplit::config::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A certificate authority and a certificate it signed for localhost and 127.0.0.1, as PEM
/// files in `dir` (made with the openssl command-line tool).
struct TestCerts {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(name: &str) -> TestCerts {
    let dir = std::env::temp_dir().join(unique_name(name));
    std::fs::create_dir_all(&dir).expect("cert dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_args = [&ec[..], &["-x509", "-keyout", "ca.key", "-out", "ca.crt"]].concat();
    openssl(
        &dir,
        &[
            &["req"],
            &ca_args[..],
            &["-days", "2", "-subj", "/CN=pgsplit test CA"],
        ]
        .concat(),
    );
    let csr_args = [&ec[..], &["-keyout", "server.key", "-out", "server.csr"]].concat();
    openssl(
        &dir,
        &[&["req"], &csr_args[..], &["-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("san");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
    TestCerts {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// A rustls client trusting only `ca`.
fn tls_connector(ca: &Path) -> MakeRustlsConnect {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("ca added");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

async fn query_over_tls(connstr: &str, ca: &Path) -> Result<i32, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{connstr} sslmode=require"), tls_connector(ca)).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT 7", &[]).await?;
    Ok(row.get(0))
}

fn tls_config_text(certs: &TestCerts) -> String {
    format!(
        // server_tls "prefer": pgsplit's own connections are one setting per process, and the
        // other test here checks that they are encrypted.
        "admin = \"127.0.0.1:9\"\n\n[tls]\nmode = \"require\"\nserver_tls = \"prefer\"\ncert_file = {:?}\nkey_file = {:?}\n\n\
         [[clusters]]\nprimary = {{ addr = \"{}\" }}\n",
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
        cluster().primary().addr()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_required_refuses_plain_text_serves_tls_and_reloads_the_certificate() {
    let first = make_certs("tls_first");
    let dir = std::env::temp_dir().join(unique_name("tls_conf"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pgsplit.toml");
    std::fs::write(&file, tls_config_text(&first)).expect("config");
    let proxy = start_proxy(Config::load(&file).expect("config loads"));
    let connstr = proxy.connstr("postgres", "postgres");

    let plain = bounded(
        "plain login",
        Duration::from_secs(10),
        common::connect(&connstr),
    )
    .await;
    let err = plain.expect_err("plain text is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err:?}");
    assert!(
        format!("{err:?}").contains("encrypted connections only"),
        "{err:?}"
    );

    let answer = bounded(
        "TLS query",
        Duration::from_secs(10),
        query_over_tls(&connstr, &first.ca),
    );
    assert_eq!(answer.await.expect("TLS login and query"), 7);

    // A new certificate from another authority: after the reload only that authority's
    // clients can verify pgsplit.
    let second = make_certs("tls_second");
    std::fs::write(&file, tls_config_text(&second)).expect("config");
    let admin = proxy.admin.expect("admin server").to_string();
    let (status, body) =
        http(&admin, "POST", "/reload", Duration::from_secs(10)).expect("admin answers");
    assert_eq!(status, 200, "{body}");
    let answer = bounded(
        "TLS query",
        Duration::from_secs(10),
        query_over_tls(&connstr, &second.ca),
    );
    assert_eq!(answer.await.expect("the new certificate is served"), 7);
    let old = bounded(
        "TLS query",
        Duration::from_secs(10),
        query_over_tls(&connstr, &first.ca),
    );
    assert!(
        old.await.is_err(),
        "the old certificate is no longer served"
    );

    // A certificate file that cannot be read refuses the reload, naming the file.
    std::fs::write(&second.key, "not a key").expect("break key");
    let (status, body) =
        http(&admin, "POST", "/reload", Duration::from_secs(10)).expect("admin answers");
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("server.key"), "{body}");
}

/// Turns ssl on at the shared primary with `certs` (files owned by the server's OS user).
async fn enable_server_ssl(certs: &TestCerts) {
    use std::os::unix::fs::MetadataExt;
    let datadir = &cluster().primary().datadir;
    let owner = std::fs::metadata(datadir).expect("datadir");
    for (from, to) in [
        (&certs.cert, "pgsplit_test.crt"),
        (&certs.key, "pgsplit_test.key"),
    ] {
        let target = datadir.join(to);
        std::fs::copy(from, &target).expect("copy into datadir");
        std::os::unix::fs::chown(&target, Some(owner.uid()), Some(owner.gid())).expect("chown");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let admin = common::connect(&cluster().primary().connstr("postgres", "postgres"))
        .await
        .expect("primary");
    // ALTER SYSTEM refuses to run in the implicit transaction of a multi-statement query.
    for statement in [
        "ALTER SYSTEM SET ssl_cert_file = 'pgsplit_test.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'pgsplit_test.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.expect(statement);
    }
    // The reload is asynchronous: wait until the setting shows.
    bounded("ssl on", Duration::from_secs(10), async {
        loop {
            let row = admin.query_one("SHOW ssl", &[]).await.expect("show ssl");
            if row.get::<_, String>(0) == "on" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_connections_are_encrypted_and_verified() {
    let certs = make_certs("server_tls");
    enable_server_ssl(&certs).await;
    let primary = cluster().primary().addr();
    let toml = format!(
        "[tls]\nserver_tls = \"verify-full\"\nca_file = {:?}\n\n[[clusters]]\nprimary = {{ addr = \"{primary}\" }}\n",
        certs.ca.display().to_string()
    );
    let proxy = start_proxy(Config::from_toml(&toml, "tls test").expect("valid config"));
    let client = bounded(
        "login",
        Duration::from_secs(10),
        common::connect(&proxy.connstr("postgres", "postgres")),
    )
    .await
    .expect("login through pgsplit");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query");
    assert!(
        row.get::<_, bool>(0),
        "pgsplit's server connection is encrypted"
    );
    // pgsplit's own connections (the node monitor here) are encrypted alike.
    let monitor_ssl = "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                       WHERE a.application_name = 'pgsplit monitor' AND s.ssl";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client
        .query_one(monitor_ssl, &[])
        .await
        .expect("pg_stat_ssl")
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no encrypted monitor connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A CA that did not sign the server's certificate: verify-full refuses the server.
    let other = make_certs("server_tls_other");
    let toml = toml.replace(
        &certs.ca.display().to_string(),
        &other.ca.display().to_string(),
    );
    let proxy = start_proxy(Config::from_toml(&toml, "tls test").expect("valid config"));
    let refused = bounded(
        "login",
        Duration::from_secs(10),
        common::connect(&proxy.connstr("postgres", "postgres")),
    )
    .await;
    let err = refused.expect_err("an unverifiable server is refused");
    assert!(format!("{err:?}").contains("TLS"), "{err:?}");
}
