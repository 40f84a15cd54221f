//! TLS towards servers, as libpq's sslmode: prefer and require encrypt without checking the
//! certificate (what they promise is privacy from passive listeners), verify-full checks it
//! against the configured authorities and the host name.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::config::{ServerTlsMode, TlsSettings};

use super::{provider, read_certificates};

/// How pgsplit's connections to servers are encrypted.
#[derive(Clone, Default)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    connector: Option<TlsConnector>,
    /// The same settings for tokio-postgres (pgsplit's own connections).
    config: Option<Arc<rustls::ClientConfig>>,
}

/// The server TLS of the configuration in force, for pgsplit's own connections (node monitor,
/// invalidation channel, WAL follower, catalog reads, auth_query, shard directories), which
/// are opened far from any session. Replaced by every applied configuration.
static INTERNAL: OnceLock<ArcSwap<ServerTls>> = OnceLock::new();

fn internal() -> &'static ArcSwap<ServerTls> {
    INTERNAL.get_or_init(|| ArcSwap::from_pointee(ServerTls::default()))
}

/// Makes `tls` the one pgsplit's own connections use from now on.
pub fn use_for_internal_connections(tls: &ServerTls) {
    internal().store(Arc::new(tls.clone()));
}

/// Connects `config` with the configured server TLS (libpq's sslmode: disable, prefer, require;
/// verify-full checks the certificate against `tls.ca_file` and the host name).
pub async fn connect_internal(
    config: &mut tokio_postgres::Config,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, InternalStream>,
    ),
    tokio_postgres::Error,
> {
    let tls = internal().load_full();
    config.ssl_mode(match tls.mode {
        // PostgreSQL offers no TLS on its Unix-domain socket, which never leaves the machine.
        _ if reaches_unix_socket(config) => SslMode::Disable,
        ServerTlsMode::Disable => SslMode::Disable,
        ServerTlsMode::Prefer => SslMode::Prefer,
        ServerTlsMode::Require | ServerTlsMode::VerifyFull => SslMode::Require,
    });
    let rustls_config = match &tls.config {
        Some(config) => (**config).clone(),
        // With sslmode disable the connector is never used; any configuration will do.
        None => unused_config(),
    };
    config.connect(MakeRustlsConnect::new(rustls_config)).await
}

fn reaches_unix_socket(config: &tokio_postgres::Config) -> bool {
    config
        .get_hosts()
        .iter()
        .any(|host| matches!(host, tokio_postgres::config::Host::Unix(_)))
}

/// The stream of an internal connection.
pub type InternalStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// A configuration for a connector that is never used (TLS disabled).
fn unused_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}

impl ServerTls {
    pub fn load(settings: &TlsSettings) -> Result<ServerTls, String> {
        let config = match settings.server_tls {
            ServerTlsMode::Disable => None,
            ServerTlsMode::Prefer | ServerTlsMode::Require => Some(unverified_config()?),
            ServerTlsMode::VerifyFull => {
                let ca_file = settings.ca_file.as_deref().ok_or_else(|| {
                    "tls.server_tls = \"verify-full\" needs tls.ca_file".to_string()
                })?;
                let mut roots = RootCertStore::empty();
                for cert in read_certificates(ca_file)? {
                    roots.add(cert).map_err(|e| {
                        format!("{}: not a usable CA certificate: {e}", ca_file.display())
                    })?;
                }
                Some(
                    rustls::ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| format!("tls: {e}"))?
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
        };
        let config = config.map(Arc::new);
        Ok(ServerTls {
            mode: settings.server_tls,
            connector: config.clone().map(TlsConnector::from),
            config,
        })
    }

    /// The connector, when pgsplit asks servers for TLS at all.
    pub fn connector(&self) -> Option<&TlsConnector> {
        self.connector.as_ref()
    }

    /// Whether a server that declines TLS must be given up.
    pub fn required(&self) -> bool {
        matches!(
            self.mode,
            ServerTlsMode::Require | ServerTlsMode::VerifyFull
        )
    }
}

fn unverified_config() -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier = Arc::new(EncryptOnly(provider.clone()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any certificate (sslmode=require), but still checks the handshake's signatures, so
/// the session keys belong to whoever holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
