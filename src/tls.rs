//! TLS client configuration shared by the Kafka and Cassandra clients (rustls, ring provider).
//!
//! The provider is chosen explicitly: several crates in the tree enable different rustls
//! providers, and rustls refuses to guess a process default when more than one is compiled in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A TLS setup problem: all of them are configuration (a file or a key), none fixes itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{key}: bad PEM in {}: {source}", path.display())]
    Pem {
        key: String,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{key}: no usable certificate in {}", path.display())]
    NoCertificate { key: String, path: PathBuf },
    #[error("{key}: TLS setup: {source}")]
    Setup {
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// Whether `error` or one of its causes is a certificate the peer presented that we refuse
/// (unknown issuer, wrong name, expired): a configuration problem on one side or the other,
/// not a transient one. rustls reports it as its own error, often wrapped in an `io::Error`.
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(
            rustls_error,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = e.source();
    }
    false
}

/// A client config trusting the PEM certificates in `ca_file`, or the Mozilla roots when
/// `None`.
///
/// # Errors
/// [`TlsError`] naming `key`: an unreadable or empty CA file cannot fix itself.
pub fn client_config(ca_file: Option<&Path>, key: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|source| TlsError::Read {
                    key: key.to_string(),
                    path: path.to_owned(),
                    source,
                })?
                .collect::<Result<_, _>>()
                .map_err(|source| TlsError::Pem {
                    key: key.to_string(),
                    path: path.to_owned(),
                    source,
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::NoCertificate {
                    key: key.to_string(),
                    path: path.to_owned(),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Setup {
                key: key.to_string(),
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_is_fatal_and_names_the_key() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem")), "kafka.tls_ca_file")
            .expect_err("missing file");
        assert!(e.to_string().contains("kafka.tls_ca_file"), "{e}");
        let stage = crate::supervise::StageError::from(crate::kafka::KafkaError::from(e));
        assert!(!stage.is_retriable());
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "").expect("write");
        let e = client_config(Some(&empty), "cassandra.tls_ca_file").expect_err("empty file");
        assert!(e.to_string().contains("no usable certificate"), "{e}");
    }

    #[test]
    fn default_roots_build() {
        assert!(client_config(None, "x").is_ok());
    }
}
