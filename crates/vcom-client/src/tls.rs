//! TLS 1.3 client configuration: how the server is trusted and how the client presents
//! its identity.
//!
//! Two ways to trust a server: a pinned SHA-256 fingerprint of its certificate (learned
//! on first use like SSH, or given), or a CA file with normal WebPKI verification of the
//! host name. Pinning skips the certificate chain but still checks that the server holds
//! the pinned certificate's key (the TLS 1.3 handshake signature).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ClientError;
use crate::identity::Identity;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Use the fingerprint pinned in the profile; when none is pinned yet, accept the
    /// server's certificate and pin it (trust on first use, like SSH).
    TrustOnFirstUse,
    /// Use the fingerprint pinned in the profile; refuse to connect when none is pinned.
    PinnedOnly,
    /// Require this fingerprint (lower-case or upper-case hex SHA-256 of the
    /// certificate DER, as the server prints it) and pin it in the profile.
    Fingerprint(String),
    /// Verify the server's certificate chain and host name against the CA
    /// certificates in this PEM file.
    CaFile(PathBuf),
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Normalises a fingerprint to 64 lower-case hex digits (colons allowed between bytes).
pub(crate) fn parse_fingerprint(text: &str) -> Result<String, String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(format!(
            "{text:?} is not a SHA-256 fingerprint (64 hex digits)"
        ))
    }
}

/// The server name for SNI and CA verification: an IP address as such, a DNS name as
/// such, anything else as "localhost" (only pinning can trust such a server anyway).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, ClientError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from("localhost"))
        .map_err(|e| ClientError::Config(format!("no usable server name for {host:?}: {e}")))
}

/// What the pinning verifier saw: the fingerprint of the certificate that was refused.
#[derive(Debug, Default)]
pub(crate) struct PinReport {
    pub(crate) mismatch: Mutex<Option<String>>,
}

/// Trusts exactly one certificate, by fingerprint, or (with `expected: None`) any
/// certificate whose key signs the handshake (first use).
#[derive(Debug)]
pub(crate) struct PinVerifier {
    expected: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
    report: Arc<PinReport>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = sha256_hex(end_entity.as_ref());
        match &self.expected {
            Some(expected) if *expected != found => {
                if let Ok(mut slot) = self.report.mismatch.lock() {
                    *slot = Some(found.clone());
                }
                Err(rustls::Error::General(format!(
                    "certificate fingerprint {found} does not match the pinned {expected}"
                )))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration only enables TLS 1.3; a TLS 1.2 signature is never valid.
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

/// A ready TLS client configuration and what is needed to interpret its failures.
pub(crate) struct TlsSetup {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The fingerprint that must match, when pinning.
    pub(crate) expected: Option<String>,
    pub(crate) report: Arc<PinReport>,
}

/// Builds the TLS 1.3 client configuration for `trust`, given the profile's pin.
pub(crate) fn client_config(
    trust: &Trust,
    pinned: Option<&str>,
    identity: &Identity,
    extensions: bool,
) -> Result<TlsSetup, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let report = Arc::new(PinReport::default());
    let (builder, expected) = match trust {
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(ClientError::Config(format!(
                    "{}: no CA certificate in the file",
                    path.display()
                )));
            }
            (builder.with_root_certificates(roots), None)
        }
        Trust::Fingerprint(fp) => {
            let fp = parse_fingerprint(fp).map_err(ClientError::Config)?;
            (
                pinned_builder(builder, &provider, Some(fp.clone()), &report),
                Some(fp),
            )
        }
        Trust::PinnedOnly | Trust::TrustOnFirstUse => {
            let pin = pinned.map(str::to_owned);
            if pin.is_none() && *trust == Trust::PinnedOnly {
                return Err(ClientError::NoPinnedFingerprint);
            }
            (
                pinned_builder(builder, &provider, pin.clone(), &report),
                pin,
            )
        }
    };
    let mut config = builder
        .with_client_auth_cert(vec![identity.certificate().clone()], identity.private_key())?;
    // Offers the extension set; a server that does not speak it picks the wiki's packets
    // or no ALPN at all, and the client then uses the wiki's packets alone.
    if extensions {
        config.alpn_protocols = vec![
            vcom_protocol::alpn::EXT.to_vec(),
            vcom_protocol::alpn::WIKI.to_vec(),
        ];
    }
    Ok(TlsSetup {
        config: Arc::new(config),
        expected,
        report,
    })
}

fn pinned_builder(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    provider: &CryptoProvider,
    expected: Option<String>,
    report: &Arc<PinReport>,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            expected,
            algorithms: provider.signature_verification_algorithms,
            report: report.clone(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_64_lower_case_digits() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn fingerprints_are_normalised_to_lower_case_without_colons() {
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let expected = upper.to_ascii_lowercase();
        assert_eq!(parse_fingerprint(upper), Ok(expected.clone()));
        let colons = expected
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&colons), Ok(expected));
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"g".repeat(64)).is_err());
    }

    #[test]
    fn server_names_are_ip_addresses_or_dns_names() {
        let name = |h: &str| server_name(h).map(|n| n.to_str().into_owned()).ok();
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert_eq!(
            name("chat.example.org").as_deref(),
            Some("chat.example.org")
        );
        assert_eq!(name("bad host!").as_deref(), Some("localhost"));
    }

    #[test]
    fn pinned_only_without_a_pin_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let user = vcom_protocol::UserId::new("alice")?;
        let identity = Identity::generate(&user)?;
        assert!(matches!(
            client_config(&Trust::PinnedOnly, None, &identity, true),
            Err(ClientError::NoPinnedFingerprint)
        ));
        assert!(client_config(&Trust::TrustOnFirstUse, None, &identity, true).is_ok());
        assert!(matches!(
            client_config(&Trust::Fingerprint("nope".into()), None, &identity, true),
            Err(ClientError::Config(_))
        ));
        Ok(())
    }
}
