//! TLS for XAPI: rustls with one of four verifiers (see [`TlsPolicy`]). A pinned
//! fingerprint is checked by a verifier of our own: the certificate's SHA-256 digest must
//! match, and the handshake signatures are still verified against that certificate's key
//! (so a server must hold the pinned certificate's private key).

use super::config::{fingerprint_text, TlsPolicy};
use super::error::XapiError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 digest of a certificate's DER form.
pub fn cert_digest(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Accepts exactly the certificate whose digest is pinned (or, insecure, any).
#[derive(Debug)]
struct Pinned {
    pin: Option<[u8; 32]>,
    url: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = cert_digest(end_entity.as_ref());
        match self.pin {
            Some(pin) if pin == got => Ok(ServerCertVerified::assertion()),
            Some(pin) => Err(rustls::Error::General(format!(
                "the certificate of {} has SHA-256 fingerprint {}, not the pinned {}; refusing to connect",
                self.url,
                fingerprint_text(&got),
                fingerprint_text(&pin)
            ))),
            None => {
                log::warn!(target: "bioxen_vm::xapi", "TLS certificate of {} accepted without checking (insecure = true): SHA-256 fingerprint {}", self.url, fingerprint_text(&got));
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn roots_from_file(path: &str) -> Result<rustls::RootCertStore, XapiError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| XapiError::Config(format!("option 'ca_file': cannot read {path}: {e}")))?;
    for c in certs {
        let c =
            c.map_err(|e| XapiError::Config(format!("option 'ca_file': {path} is not PEM: {e}")))?;
        roots
            .add(c)
            .map_err(|e| XapiError::Config(format!("option 'ca_file': {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(XapiError::Config(format!(
            "option 'ca_file': {path} holds no certificate"
        )));
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, XapiError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for c in found.certs {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(XapiError::Tls(format!(
            "no trusted root certificates were found on this system ({}); give 'ca_file' or 'tls_fingerprint'",
            found
                .errors
                .first()
                .map_or("none installed".to_string(), |e| e.to_string())
        )));
    }
    Ok(roots)
}

/// The rustls configuration for `policy` (`url` names the server in messages).
pub fn client_config(
    policy: &TlsPolicy,
    url: &str,
) -> Result<Arc<rustls::ClientConfig>, XapiError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| XapiError::Tls(format!("TLS cannot be set up: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match policy {
        TlsPolicy::Pinned(pin) => Arc::new(Pinned {
            pin: Some(*pin),
            url: url.to_string(),
            provider,
        }),
        TlsPolicy::Insecure => {
            log::warn!(target: "bioxen_vm::xapi", "TLS verification for {url} is OFF (insecure = true): anyone on the path can read the password and the session");
            Arc::new(Pinned {
                pin: None,
                url: url.to_string(),
                provider,
            })
        }
        TlsPolicy::CaFile(path) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots_from_file(path)?),
            provider,
        )
        .build()
        .map_err(|e| XapiError::Tls(format!("TLS cannot be set up: {e}")))?,
        TlsPolicy::System => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(system_roots()?),
            provider,
        )
        .build()
        .map_err(|e| XapiError::Tls(format!("TLS cannot be set up: {e}")))?,
    };
    Ok(Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}
