//! TLS with rustls (ring for the cryptography): the acceptor that encrypts clients' connections
//! and the connector for pgsplit's own connections to servers. Both are built from the config
//! when it is applied, so a reload (SIGHUP, POST /reload) reads the certificate files again;
//! a file that cannot be read refuses the reload and names the file.

mod server;
mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientTlsMode, TlsSettings};

pub use server::{InternalStream, ServerTls, connect_internal, use_for_internal_connections};
pub use stream::{ClientStream, MaybeTls, ServerStream};

/// The process's one crypto provider, so nothing depends on a default being installed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS towards clients as configured: the mode, and the acceptor when the mode uses one.
#[derive(Clone)]
pub struct ClientTls {
    pub mode: ClientTlsMode,
    acceptor: Option<TlsAcceptor>,
}

impl ClientTls {
    pub fn load(settings: &TlsSettings) -> Result<ClientTls, String> {
        let acceptor = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) if settings.mode != ClientTlsMode::Disable => {
                Some(build_acceptor(cert, key)?)
            }
            _ => None,
        };
        Ok(ClientTls {
            mode: settings.mode,
            acceptor,
        })
    }

    /// The acceptor for a client's SSLRequest; None: decline it ('N').
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// Whether a client that did not encrypt must be refused.
    pub fn required(&self) -> bool {
        self.mode == ClientTlsMode::Require
    }
}

fn build_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    let certs = read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "tls.key_file {}: no usable private key: {e}",
            key_file.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls: the key in {} does not fit the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file; none is an error that names the file.
fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            file.display()
        ));
    }
    Ok(certs)
}
