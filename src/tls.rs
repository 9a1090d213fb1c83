//! TLS client configuration shared by the Kafka and Cassandra clients (rustls, ring provider).
//!
//! The provider is chosen explicitly: several crates in the tree enable different rustls
//! providers, and rustls refuses to guess a process default when more than one is compiled in.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::supervise::StageError;

/// A client config trusting the PEM certificates in `ca_file`, or the Mozilla roots when
/// `None`.
///
/// # Errors
/// Fatal: an unreadable or empty CA file cannot fix itself.
pub fn client_config(ca_file: Option<&Path>, key: &str) -> Result<Arc<ClientConfig>, StageError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    StageError::fatal(format!("{key}: cannot read {}: {e}", path.display()))
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    StageError::fatal(format!("{key}: bad PEM in {}: {e}", path.display()))
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StageError::fatal(format!(
                    "{key}: no usable certificate in {}",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StageError::fatal(format!("{key}: TLS setup: {e}")))?
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
        assert!(!e.retriable);
        assert!(e.message.contains("kafka.tls_ca_file"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "").expect("write");
        let e = client_config(Some(&empty), "cassandra.tls_ca_file").expect_err("empty file");
        assert!(e.message.contains("no usable certificate"), "{e}");
    }

    #[test]
    fn default_roots_build() {
        assert!(client_config(None, "x").is_ok());
    }
}
