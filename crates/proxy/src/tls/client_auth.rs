//! Client certificates, checked as NGINX checks them (`auth-tls-*`).
//!
//! The handshake never fails because of a client certificate: Sluice asks for one (naming the
//! host's CAs) and accepts whatever is presented, still checking the handshake signature (the
//! client must hold the certificate's key). After the handshake the chain is verified against
//! the CAs, and the request is refused with 400 where NGINX refuses it
//! ([`ClientCheck::refuses`]). The backend receives the outcome in `ssl-client-verify`
//! (`SUCCESS`, `FAILED:<reason>`, `NONE`), with `ssl-client-subject-dn`,
//! `ssl-client-issuer-dn` (RFC 2253) and, on request, `ssl-client-cert` (URL-escaped PEM).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use sluice_model::{ClientAuth, ClientVerify};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// How one host checks client certificates.
#[derive(Debug)]
pub(crate) struct ClientCheck {
    verify: ClientVerify,
    depth: u8,
    pass_certificate: bool,
    hints: Vec<DistinguishedName>,
    /// The listed CAs, DER: a client sending one along with its certificate is not using an
    /// intermediate.
    anchors: Vec<Vec<u8>>,
    /// Verifies chains against the CAs (after the handshake).
    chains: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
    /// `auth-tls-match-cn`, compiled.
    match_cn: Option<regex::Regex>,
    /// `auth-tls-error-page`.
    error_page: Option<String>,
}

/// What a connection's client certificate turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientCert {
    /// A certificate was presented.
    pub present: bool,
    /// It chains to a listed CA within the depth.
    pub valid: bool,
    /// `SUCCESS`, `FAILED:<reason>` or `NONE`.
    pub verify: String,
    /// RFC 2253 subject, empty without a certificate.
    pub subject: String,
    /// RFC 2253 issuer.
    pub issuer: String,
    /// The URL-escaped PEM, when the host passes it on.
    pub escaped_pem: Option<String>,
}

impl ClientCheck {
    /// The check for `auth`; fails if rustls refuses the CAs.
    pub(crate) fn new(auth: &ClientAuth, provider: &Arc<CryptoProvider>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for der in &auth.ca {
            roots.add(CertificateDer::from(der.clone())).map_err(|e| e.to_string())?;
        }
        let hints = roots.subjects();
        let chains = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            verify: auth.verify,
            depth: auth.depth,
            pass_certificate: auth.pass_certificate,
            hints,
            anchors: auth.ca.clone(),
            chains: Some(chains),
            provider: provider.clone(),
            match_cn: auth
                .match_cn
                .as_deref()
                .map(|re| regex::Regex::new(re).map_err(|e| format!("auth-tls-match-cn: {e}")))
                .transpose()?,
            error_page: auth.error_page.clone(),
        })
    }

    /// `auth-tls-match-cn`: whether the certificate's subject passes (always, without it).
    /// NGINX's `if ($ssl_client_s_dn !~ ...) { return 403; }`.
    pub(crate) fn subject_matches(&self, cert: &ClientCert) -> bool {
        self.match_cn.as_ref().is_none_or(|re| re.is_match(&cert.subject))
    }

    /// `auth-tls-error-page`: where a refused certificate is redirected.
    pub(crate) fn error_page(&self) -> Option<&str> {
        self.error_page.as_deref()
    }

    /// A check that refuses every request: the host's CAs cannot be used (fail closed).
    pub(crate) fn refuse_all() -> Self {
        Self {
            verify: ClientVerify::On,
            depth: 1,
            pass_certificate: false,
            hints: Vec::new(),
            anchors: Vec::new(),
            chains: None,
            provider: super::provider(),
            match_cn: None,
            error_page: None,
        }
    }

    /// The verifier used during handshakes.
    pub(crate) fn verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(Handshake(self.clone()))
    }

    /// Verifies the presented chain (leaf first) against the CAs and the depth.
    pub(crate) fn inspect(&self, presented: Option<&[CertificateDer<'_>]>) -> ClientCert {
        let Some((leaf, intermediates)) = presented.and_then(|c| c.split_first()) else {
            return ClientCert {
                present: false,
                valid: false,
                verify: "NONE".into(),
                subject: String::new(),
                issuer: String::new(),
                escaped_pem: None,
            };
        };
        let outcome = match &self.chains {
            None => Err("no usable CA".to_string()),
            // OpenSSL (so NGINX) counts the CAs between the client's certificate and a listed
            // one: depth 1 allows one intermediate.
            Some(_)
                if intermediates
                    .iter()
                    .filter(|c| !self.anchors.iter().any(|a| a == c.as_ref()))
                    .count()
                    > self.depth as usize =>
            {
                Err("certificate chain too long".to_string())
            }
            Some(chains) => chains
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .map(|_| ())
                .map_err(reason),
        };
        let (subject, issuer) = match X509Certificate::from_der(leaf) {
            Ok((_, cert)) => (rfc2253(cert.subject()), rfc2253(cert.issuer())),
            Err(_) => (String::new(), String::new()),
        };
        // As NGINX's `$ssl_client_escaped_cert`: OpenSSL's PEM (LF line ends), every byte but
        // letters, digits and `-._~` percent-encoded.
        let escaped_pem = self.pass_certificate.then(|| {
            let pem = pem::encode_config(
                &pem::Pem::new("CERTIFICATE", leaf.to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            percent_encoding::utf8_percent_encode(&pem, URI_COMPONENT).to_string()
        });
        ClientCert {
            present: true,
            valid: outcome.is_ok(),
            verify: match &outcome {
                Ok(()) => "SUCCESS".into(),
                Err(why) => format!("FAILED:{why}"),
            },
            subject,
            issuer,
            escaped_pem,
        }
    }

    /// True when NGINX would answer 400: `on` without a valid certificate, `optional` with an
    /// invalid one, `optional_no_ca` with one invalid for another reason than its unknown
    /// issuer; never for `off`. Always when the CAs are unusable.
    pub(crate) fn refuses(&self, cert: &ClientCert) -> bool {
        if self.chains.is_none() {
            return true;
        }
        match self.verify {
            ClientVerify::On => !cert.valid,
            ClientVerify::Optional => cert.present && !cert.valid,
            ClientVerify::OptionalNoCa => {
                cert.present && !cert.valid && cert.verify != format!("FAILED:{UNKNOWN_ISSUER}")
            }
            ClientVerify::Off => false,
        }
    }

    /// Whether the client's certificate goes to the backend in `ssl-client-cert`.
    pub(crate) fn passes_certificate(&self) -> bool {
        self.pass_certificate
    }
}

/// NGINX's `ngx_http_ssl_module` escaping for `$ssl_client_escaped_cert`.
const URI_COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// OpenSSL's wording for an unknown issuer (the one failure `optional_no_ca` lets through).
const UNKNOWN_ISSUER: &str = "unable to get local issuer certificate";

/// OpenSSL's wording for the usual failures (what NGINX's `$ssl_client_verify` says).
fn reason(e: Error) -> String {
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => UNKNOWN_ISSUER.into(),
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate has expired".into(),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate is not yet valid".into(),
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "certificate signature failure".into()
        }
        Error::InvalidCertificate(CertificateError::Revoked) => "certificate revoked".into(),
        e => e.to_string(),
    }
}

/// A distinguished name as RFC 2253 (and NGINX's `$ssl_client_s_dn`) writes it: last RDN
/// first, comma-separated, special characters escaped.
fn rfc2253(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = x509_parser::objects::oid2abbrev(atv.attr_type(), registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| atv.attr_type().to_id_string());
                    let value = atv.as_str().map(escape).unwrap_or_default();
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let leading = i == 0 && (c == ' ' || c == '#');
        let trailing = i + 1 == value.chars().count() && c == ' ';
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || leading || trailing {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The handshake side: ask (never require), accept any certificate, check signatures.
#[derive(Debug)]
struct Handshake(Arc<ClientCheck>);

impl ClientCertVerifier for Handshake {
    fn offer_client_auth(&self) -> bool {
        self.0.verify != ClientVerify::Off
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Judged after the handshake (`inspect`), so that a bad certificate gets NGINX's 400
        // rather than a handshake alert.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn rfc2253_escapes() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("trail "), "trail\\ ");
        assert_eq!(escape("#hash"), "\\#hash");
        assert_eq!(escape("plain"), "plain");
    }
}
