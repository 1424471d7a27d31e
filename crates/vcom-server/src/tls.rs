//! TLS 1.3 for the server: the certificate (generated on first start or configured), the
//! rustls configuration, and client certificates as user keys.
//!
//! Client certificates are self-signed: they are not checked against any authority, only
//! used to prove possession of a key. Login binds the user identifier to the SHA-256 of
//! that key (`docs/protocol.md`), so this module accepts any well-formed certificate
//! whose handshake signature verifies, and leaves the decision to login.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest;
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};
use vcom_store::KeyFingerprint;

use crate::config::ServerConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's TLS setup: its rustls configuration and its certificate's fingerprint.
#[derive(Clone)]
pub struct ServerTls {
    /// The rustls configuration (TLS 1.3 only, client certificates requested).
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the end-entity certificate, lower-case hex: what clients pin.
    pub cert_sha256: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_sha256", &self.cert_sha256)
            .finish()
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key fingerprint of a client certificate: SHA-256 of its SubjectPublicKeyInfo.
///
/// `None` when the certificate cannot be parsed (the handshake would have failed).
pub fn key_fingerprint(cert: &CertificateDer<'_>) -> Option<KeyFingerprint> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, spki.as_ref()).as_ref());
    Some(KeyFingerprint(out))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Loads the configured certificate and key, or the generated ones in the data
    /// directory, generating them on first start.
    pub fn load_or_generate(config: &ServerConfig) -> Result<Self, TlsError> {
        let (cert_path, key_path, configured) = Self::paths(config);
        if !configured && (!cert_path.exists() || !key_path.exists()) {
            let dir = config.data_dir.join("tls");
            generate(&dir, &cert_path, &key_path, &config.tls.names)?;
        }
        Self::from_files(&cert_path, &key_path)
    }

    /// What `vcom-server check` says of the TLS files, changing nothing: the
    /// certificate's SHA-256 once they load and match, `None` when the server would
    /// generate them at its first start.
    pub fn check(config: &ServerConfig) -> Result<Option<String>, TlsError> {
        let (cert_path, key_path, configured) = Self::paths(config);
        if !configured && !cert_path.exists() && !key_path.exists() {
            return Ok(None);
        }
        Self::from_files(&cert_path, &key_path).map(|tls| Some(tls.cert_sha256))
    }

    /// The certificate and key files, and whether the configuration names them (if not,
    /// they are the generated ones in the data directory).
    fn paths(config: &ServerConfig) -> (PathBuf, PathBuf, bool) {
        match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone(), true),
            _ => {
                let dir = config.data_dir.join("tls");
                (dir.join("cert.pem"), dir.join("key.pem"), false)
            }
        }
    }

    fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let chain = read_certs(cert_path)?;
        let key = read_key(key_path)?;
        let cert_sha256 = chain
            .first()
            .map(|c| sha256_hex(c.as_ref()))
            .unwrap_or_default();
        let provider = provider();
        let verifier = Arc::new(AnyClientKey {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        tls.max_early_data_size = 0;
        // The extension set is negotiated here, before login; a client that offers no
        // ALPN gets the wiki's packets alone (docs/protocol.md, "Negotiation").
        tls.alpn_protocols = vec![
            vcom_protocol::alpn::EXT.to_vec(),
            vcom_protocol::alpn::WIKI.to_vec(),
        ];
        Ok(ServerTls {
            config: Arc::new(tls),
            cert_sha256,
        })
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn generate(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
) -> Result<(), TlsError> {
    let mut all = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    all.extend(names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(all)?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(io_error(cert_path))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes a file readable by its owner only (mode 0600), replacing any old one.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            problem: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// Accepts any client certificate whose TLS 1.3 handshake signature verifies.
///
/// Client authentication is offered but not mandatory, so a client without a certificate
/// still reaches login and is told why it is refused (258 code 4) instead of seeing a
/// bare handshake failure.
#[derive(Debug)]
struct AnyClientKey {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Possession of the key is proven by the handshake signature below; the key's
        // binding to a user is checked at login.
        match key_fingerprint(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered; a TLS 1.2 signature is never valid here.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_a_certificate_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::new(dir.path());
        let first = ServerTls::load_or_generate(&config).unwrap();
        let second = ServerTls::load_or_generate(&config).unwrap();
        assert_eq!(first.cert_sha256.len(), 64);
        assert_eq!(first.cert_sha256, second.cert_sha256);
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_missing_configured_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        config.tls.cert = Some(dir.path().join("nope.pem"));
        config.tls.key = Some(dir.path().join("nope.key"));
        let err = ServerTls::load_or_generate(&config).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
