//! The TLS settings every registry client shares. The system's trust roots are
//! loaded when the first certificate is checked, not when a client is made: parsing
//! them costs milliseconds, and a loopback (plain http) registry never needs them.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// A rustls config for registry connections: the platform's verifier behind a lazy
/// load, or no certificate check at all when `tls_verify` is off (`--tls-verify=false`).
pub fn client_config(tls_verify: bool) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = if tls_verify { Check::Roots(OnceLock::new()) } else { Check::AnyCertificate };
    let verifier = Arc::new(RegistryCerts { provider: provider.clone(), check });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // The client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How a registry's certificate is checked. Either way the handshake's signatures are
/// checked against the certificate shown (the peer holds its key), as the platform
/// verifier itself does.
#[derive(Debug)]
struct RegistryCerts {
    provider: Arc<CryptoProvider>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    /// The platform verifier (system roots, `SSL_CERT_FILE`/`SSL_CERT_DIR`), made on first use.
    Roots(OnceLock<Result<rustls_platform_verifier::Verifier, String>>),
    /// `--tls-verify=false`: any certificate is taken.
    AnyCertificate,
}

impl ServerCertVerifier for RegistryCerts {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Check::Roots(loaded) = &self.check else { return Ok(ServerCertVerified::assertion()) };
        let verifier = loaded
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| rustls::Error::General(format!("load the system's trust roots: {e}")))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
