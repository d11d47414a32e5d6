//! Reading TLS material from Secrets, and mapping NGINX's TLS settings onto what rustls
//! offers. Parsing only: signing keys are built (and checked against their certificate) by
//! the proxy when a table is published.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_model::{KeyFormat, NamespacedName, PrivateKey, TlsCert, TlsVersions};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A Secret's data entry, decoded.
fn entry<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    secret.data.as_ref()?.get(key).map(|b| b.0.as_slice()).filter(|b| !b.is_empty())
}

/// Every certificate of a PEM bundle, in order.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs: Result<Vec<_>, _> =
        CertificateDer::pem_slice_iter(pem).map(|c| c.map(|c| c.to_vec())).collect();
    let certs = certs.map_err(|e| format!("{what}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in it"));
    }
    for (i, der) in certs.iter().enumerate() {
        X509Certificate::from_der(der)
            .map_err(|e| format!("{what}: certificate {} does not parse ({e})", i + 1))?;
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
fn private_key(pem: &[u8], what: &str) -> Result<PrivateKey, String> {
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("{what}: no PEM private key ({e})"))?;
    let format = match &key {
        PrivateKeyDer::Pkcs8(_) => KeyFormat::Pkcs8,
        PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
        _ => return Err(format!("{what}: unsupported private key encoding")),
    };
    Ok(PrivateKey { der: key.secret_der().to_vec(), format })
}

/// Reads `tls.crt` and `tls.key` of `secret` (any type, as ingress-nginx accepts). Fails on
/// a missing entry, bad PEM, or a leaf certificate expired at `now`.
pub(crate) fn load_cert(
    name: &NamespacedName,
    secret: &Secret,
    now: Option<i64>,
) -> Result<TlsCert, String> {
    let crt = entry(secret, "tls.crt").ok_or("has no tls.crt")?;
    let key = entry(secret, "tls.key").ok_or("has no tls.key")?;
    let chain = certificates(crt, "tls.crt")?;
    let key = private_key(key, "tls.key")?;
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| format!("tls.crt: {e}"))?;
    let not_after = leaf.validity().not_after.timestamp();
    if let Some(now) = now
        && now > not_after
    {
        return Err(format!("its certificate expired on {}", leaf.validity().not_after));
    }
    let mut names: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            leaf.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let mut h = DefaultHasher::new();
    chain.hash(&mut h);
    key.der.hash(&mut h);
    Ok(TlsCert { secret: name.clone(), chain, key, names, not_after, fingerprint: h.finish() })
}

/// Reads the CA bundle `ca.crt` of `secret`.
pub(crate) fn load_ca(secret: &Secret) -> Result<Vec<Vec<u8>>, String> {
    certificates(entry(secret, "ca.crt").ok_or("has no ca.crt")?, "ca.crt")
}

/// A certificate chain (DER, leaf first) and its key.
pub(crate) type KeyPair = (Vec<Vec<u8>>, PrivateKey);

/// Reads an optional client certificate and key (`tls.crt`, `tls.key`) for backend TLS.
pub(crate) fn load_client_pair(secret: &Secret) -> Result<Option<KeyPair>, String> {
    match (entry(secret, "tls.crt"), entry(secret, "tls.key")) {
        (Some(crt), Some(key)) => {
            Ok(Some((certificates(crt, "tls.crt")?, private_key(key, "tls.key")?)))
        }
        (None, None) => Ok(None),
        _ => Err("has only one of tls.crt and tls.key".into()),
    }
}

/// True when a certificate with `names` is valid for `host` (as written in an Ingress,
/// perhaps a wildcard): an exact name, or a one-label wildcard name covering it.
pub(crate) fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n == host
            || n.strip_prefix("*.").is_some_and(|parent| {
                host.split_once('.').is_some_and(|(label, rest)| label != "*" && rest == parent)
            })
    })
}

/// The rustls TLS 1.2 suite for an OpenSSL cipher name, if rustls has it. TLS 1.3 names are
/// recognised and need nothing: every TLS 1.3 suite is always enabled, as with NGINX.
fn tls12_suite(openssl: &str) -> Option<Option<&'static str>> {
    Some(Some(match openssl {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Some(None);
        }
        _ => return None,
    }))
}

/// Maps an OpenSSL cipher list (`ssl-ciphers`) onto rustls TLS 1.2 suites, in its order.
/// Returns the suites and the names rustls cannot offer (legacy CBC or DHE suites, OpenSSL
/// keywords such as `HIGH` or `!aNULL`): those are left out, which only ever narrows the
/// list, never weakens it.
pub(crate) fn map_ciphers(list: &str) -> (Vec<String>, Vec<String>) {
    let mut suites = Vec::new();
    let mut unsupported = Vec::new();
    for name in list.split([':', ',', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
        match tls12_suite(name) {
            Some(Some(suite)) if !suites.iter().any(|s| s == suite) => {
                suites.push(suite.to_string())
            }
            Some(_) => {}
            None => unsupported.push(name.to_string()),
        }
    }
    (suites, unsupported)
}

/// Maps `ssl-protocols` (`TLSv1.2 TLSv1.3`) onto the versions rustls offers, with the
/// names it cannot offer (TLS 1.0 and 1.1, SSLv3: never enabled).
pub(crate) fn map_protocols(list: &str) -> (TlsVersions, Vec<String>) {
    let mut versions = TlsVersions { tls12: false, tls13: false };
    let mut unsupported = Vec::new();
    for name in list.split_whitespace() {
        match name {
            "TLSv1.2" => versions.tls12 = true,
            "TLSv1.3" => versions.tls13 = true,
            other => unsupported.push(other.to_string()),
        }
    }
    (versions, unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names_cover_one_label() {
        let names = vec!["*.example.com".to_string(), "example.com".to_string()];
        assert!(covers(&names, "a.example.com"));
        assert!(covers(&names, "example.com"));
        assert!(!covers(&names, "a.b.example.com"));
        assert!(covers(&["*.example.com".to_string()], "*.example.com"));
        assert!(!covers(&names, "other.com"));
    }

    #[test]
    fn cipher_lists_map_to_rustls_and_never_widen() {
        let (suites, unsupported) = map_ciphers(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:!aNULL:TLS_AES_128_GCM_SHA256",
        );
        assert_eq!(
            suites,
            ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        );
        assert_eq!(unsupported, ["DHE-RSA-AES128-GCM-SHA256", "!aNULL"]);
    }

    #[test]
    fn protocols_keep_only_tls12_and_13() {
        let (v, bad) = map_protocols("TLSv1 TLSv1.1 TLSv1.2");
        assert_eq!(v, TlsVersions { tls12: true, tls13: false });
        assert_eq!(bad, ["TLSv1", "TLSv1.1"]);
    }
}
