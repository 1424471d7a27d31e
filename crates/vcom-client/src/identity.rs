//! The user's key: a self-signed TLS client certificate that the server binds to the
//! user identifier on first login.
//!
//! All devices of a user share one identity, moved between them as a single PEM file
//! holding the private key and the certificate. This module never writes files; the
//! [`crate::Profile`] does, with owner-only permissions.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vcom_protocol::UserId;

use crate::profile::ProfileError;
use crate::tls::sha256_hex;

/// A user's key pair and self-signed certificate.
#[derive(Clone)]
pub struct Identity {
    /// The PEM text as generated or imported (private key and certificate).
    pem: String,
    certificate: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    // The private key must never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificate_sha256", &self.certificate_sha256())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a new ECDSA P-256 key and a self-signed certificate whose subject common
    /// name is `user`.
    pub fn generate(user: &UserId) -> Result<Identity, ProfileError> {
        let key_pair = rcgen::KeyPair::generate().map_err(identity_error)?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(identity_error)?;
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, user.as_str());
        params.distinguished_name = name;
        let certificate = params.self_signed(&key_pair).map_err(identity_error)?;
        let pem = format!("{}{}", key_pair.serialize_pem(), certificate.pem());
        Identity::from_pem(&pem)
    }

    /// Reads an identity from PEM text holding one private key and one certificate (in
    /// any order), and checks that the key belongs to the certificate.
    pub fn from_pem(pem: &str) -> Result<Identity, ProfileError> {
        let certificate = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            ProfileError::Identity(format!("no usable certificate in the PEM text: {e}"))
        })?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            ProfileError::Identity(format!("no usable private key in the PEM text: {e}"))
        })?;
        let provider = rustls::crypto::ring::default_provider();
        // `from_der` parses the key and compares it with the certificate's public key.
        CertifiedKey::from_der(vec![certificate.clone()], key.clone_key(), &provider).map_err(
            |e| ProfileError::Identity(format!("the key does not fit the certificate: {e}")),
        )?;
        Ok(Identity {
            pem: pem.to_owned(),
            certificate,
            key: Arc::new(key),
        })
    }

    /// The PEM text: private key and certificate. Secret: store it owner-only.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The certificate (DER) presented to the server.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The private key (DER), for the TLS client configuration.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// Lower-case hex SHA-256 of the certificate DER.
    pub fn certificate_sha256(&self) -> String {
        sha256_hex(self.certificate.as_ref())
    }

    /// Lower-case hex SHA-256 of the public key (its DER SubjectPublicKeyInfo): the
    /// value the server binds to the user identifier.
    pub fn public_key_sha256(&self) -> Result<String, ProfileError> {
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(self.private_key())
            .map_err(|e| ProfileError::Identity(format!("unusable private key: {e}")))?;
        let spki = signing_key.public_key().ok_or_else(|| {
            ProfileError::Identity("the key type does not expose its public key".into())
        })?;
        Ok(sha256_hex(spki.as_ref()))
    }
}

fn identity_error(e: rcgen::Error) -> ProfileError {
    ProfileError::Identity(format!("could not generate a key and certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::new("alice").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_generated_identity_round_trips_through_pem() -> Result<(), ProfileError> {
        let identity = Identity::generate(&alice())?;
        let back = Identity::from_pem(identity.to_pem())?;
        assert_eq!(back.certificate(), identity.certificate());
        assert_eq!(back.public_key_sha256()?, identity.public_key_sha256()?);
        assert_eq!(identity.certificate_sha256().len(), 64);
        Ok(())
    }

    #[test]
    fn two_generated_identities_have_different_keys() -> Result<(), ProfileError> {
        let a = Identity::generate(&alice())?;
        let b = Identity::generate(&alice())?;
        assert_ne!(a.public_key_sha256()?, b.public_key_sha256()?);
        Ok(())
    }

    #[test]
    fn a_key_from_another_identity_is_refused() -> Result<(), ProfileError> {
        let a = Identity::generate(&alice())?;
        let b = Identity::generate(&alice())?;
        let key_a = a.to_pem().split("-----BEGIN CERTIFICATE-----").next();
        let cert_b = b
            .to_pem()
            .find("-----BEGIN CERTIFICATE-----")
            .map(|i| &b.to_pem()[i..]);
        let (Some(key_a), Some(cert_b)) = (key_a, cert_b) else {
            panic!("generated PEM lacks a key or a certificate");
        };
        let mixed = format!("{key_a}{cert_b}");
        assert!(matches!(
            Identity::from_pem(&mixed),
            Err(ProfileError::Identity(_))
        ));
        Ok(())
    }

    #[test]
    fn pem_text_without_a_key_is_refused() -> Result<(), ProfileError> {
        let a = Identity::generate(&alice())?;
        let cert_only = a
            .to_pem()
            .find("-----BEGIN CERTIFICATE-----")
            .map(|i| &a.to_pem()[i..])
            .unwrap_or_default();
        assert!(matches!(
            Identity::from_pem(cert_only),
            Err(ProfileError::Identity(_))
        ));
        assert!(Identity::from_pem("garbage").is_err());
        Ok(())
    }

    #[test]
    fn debug_output_does_not_contain_the_key() -> Result<(), ProfileError> {
        let a = Identity::generate(&alice())?;
        assert!(!format!("{a:?}").contains("PRIVATE"));
        Ok(())
    }
}
