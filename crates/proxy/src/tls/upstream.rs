//! TLS towards backends (`backend-protocol: HTTPS` or `GRPCS`, `proxy-ssl-*`): one client
//! configuration per distinct setting, per worker.
//!
//! As with NGINX, the backend's certificate is only verified with `proxy-ssl-verify: on`
//! (against the Secret's `ca.crt`, the name `proxy-ssl-name`, within
//! `proxy-ssl-verify-depth`); otherwise any certificate is accepted, though the handshake's
//! signature is still checked. SNI is sent only with `proxy-ssl-server-name: on`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sluice_model::UpstreamTls;

thread_local! {
    static CONFIGS: RefCell<HashMap<(u64, bool), Arc<ClientConfig>>> = RefCell::new(HashMap::new());
}

/// The client configuration for `tls` speaking h2 or HTTP/1.1, built once per worker.
pub(crate) fn config(tls: &UpstreamTls, h2: bool) -> Result<Arc<ClientConfig>, String> {
    let key = (tls.fingerprint, h2);
    if let Some(c) = CONFIGS.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(c);
    }
    let config = Arc::new(build(tls, h2)?);
    CONFIGS.with(|c| c.borrow_mut().insert(key, config.clone()));
    Ok(config)
}

/// The name the backend's certificate is verified against.
pub(crate) fn server_name(tls: &UpstreamTls) -> Result<ServerName<'static>, String> {
    ServerName::try_from(tls.name.clone())
        .map_err(|e| format!("proxy-ssl-name {:?}: {e}", tls.name))
}

fn build(tls: &UpstreamTls, h2: bool) -> Result<ClientConfig, String> {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.verify {
        let mut roots = RootCertStore::empty();
        for der in &tls.ca {
            roots.add(CertificateDer::from(der.clone())).map_err(|e| format!("ca.crt: {e}"))?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        Arc::new(Depth { inner, depth: tls.depth, anchors: tls.ca.clone() })
    } else {
        Arc::new(AnyCertificate(provider.clone()))
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.client_key, tls.client_chain.is_empty()) {
        (Some(key), false) => {
            let chain = tls.client_chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
            builder
                .with_client_auth_cert(chain, super::key_der(key))
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.enable_sni = tls.send_sni;
    config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    Ok(config)
}

/// Verification against the CAs, refusing chains with more than `proxy-ssl-verify-depth`
/// intermediate CAs: OpenSSL's (so NGINX's) count, where the default 1 accepts a certificate
/// issued by an intermediate of a trusted CA.
#[derive(Debug)]
struct Depth {
    inner: Arc<WebPkiServerVerifier>,
    depth: u8,
    /// The trusted CAs (DER): a backend sending one of them along does not lengthen its chain.
    anchors: Vec<Vec<u8>>,
}

impl ServerCertVerifier for Depth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let untrusted = intermediates
            .iter()
            .filter(|c| !self.anchors.iter().any(|a| a.as_slice() == c.as_ref()))
            .count();
        if untrusted > self.depth as usize {
            return Err(Error::General(format!(
                "more intermediate CAs than proxy-ssl-verify-depth {}",
                self.depth
            )));
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `proxy-ssl-verify: off`: any certificate (the handshake's signature is still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
