//! Certificates for the TLS benchmarks: a self-signed certificate per Ingress (issue 15's
//! target 7, `gen-manifests --tls`), or one default certificate for every host (the
//! single-certificate setup it is compared with, `gen-manifests --tls-default`).
//!
//! Keys are ECDSA P-256 (rcgen's default): a key and a certificate take tens of microseconds,
//! so 10,000 of them take well under a second, where RSA 2048 keys would take minutes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::IngressTLS;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::Snapshot;

/// The type of a TLS Secret.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The namespace and name of the Secret `--tls-default` writes (pass it to `sluice serve
/// --default-ssl-certificate`).
pub const DEFAULT_SECRET: (&str, &str) = ("ns-0", "bench-default-tls");

/// A self-signed certificate and its private key.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// The certificate, DER: what a TLS server presents, to compare with what a handshake
    /// received.
    pub cert_der: Vec<u8>,
}

/// A new self-signed ECDSA P-256 certificate for `hosts` (its subject alternative names),
/// with a key of its own: two calls never give the same certificate.
pub fn self_signed(hosts: &[String]) -> SelfSigned {
    let made = rcgen::generate_simple_self_signed(hosts.to_vec())
        .expect("rcgen makes a certificate for DNS names");
    SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        cert_der: made.cert.der().to_vec(),
    }
}

/// A `kubernetes.io/tls` Secret holding `cert`.
pub fn tls_secret(namespace: &str, name: &str, cert: &SelfSigned) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.cert_pem.clone().into_bytes())),
            ("tls.key".to_string(), ByteString(cert.key_pem.clone().into_bytes())),
        ])),
        ..Secret::default()
    }
}

/// The name of the TLS Secret [`with_tls_hosts`] gives the Ingress named `ingress`.
pub fn secret_name(ingress: &str) -> String {
    format!("tls-{ingress}")
}

/// Gives every Ingress a `tls` section for all the hosts of its rules (its exact host, and its
/// wildcard host when it has one) naming a Secret of its own, [`secret_name`], which is added
/// with a new certificate for those hosts. Returns how many certificates were made.
pub fn with_tls_hosts(snapshot: &mut Snapshot) -> usize {
    let mut secrets = Vec::new();
    for ingress in snapshot.ingresses.make_mut() {
        let ingress = Arc::make_mut(ingress);
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let name = secret_name(ingress.metadata.name.as_deref().unwrap_or_default());
        let spec = ingress.spec.get_or_insert_with(Default::default);
        let hosts: Vec<String> =
            spec.rules.iter().flatten().filter_map(|r| r.host.clone()).collect();
        spec.tls =
            Some(vec![IngressTLS { hosts: Some(hosts.clone()), secret_name: Some(name.clone()) }]);
        secrets.push(Arc::new(tls_secret(&namespace, &name, &self_signed(&hosts))));
    }
    let made = secrets.len();
    snapshot.secrets.make_mut().extend(secrets);
    made
}

/// Adds the one Secret [`DEFAULT_SECRET`], a certificate for `*.example.com` (no generated
/// host matches it: what matters is that it is the only certificate), and returns its
/// `namespace/name`.
pub fn with_default_certificate(snapshot: &mut Snapshot) -> String {
    let (namespace, name) = DEFAULT_SECRET;
    let cert = self_signed(&["*.example.com".to_string()]);
    snapshot.secrets.make_mut().push(Arc::new(tls_secret(namespace, name, &cert)));
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scale, generate, host, settings};

    #[test]
    fn every_host_gets_a_certificate_of_its_own_that_translation_accepts() {
        let mut snapshot = generate(Scale::of(20));
        assert_eq!(with_tls_hosts(&mut snapshot), 20);
        assert_eq!(snapshot.secrets.len(), 20);
        let table = sluice_translate::translate(&snapshot, &settings());
        assert!(table.diagnostics.is_empty(), "{:?}", &table.diagnostics[..1]);
        // Translation loaded all of them, and names each host's own.
        assert_eq!(table.tls.certs.len(), 20);
        let cert = &table.tls.certs.iter().find(|c| c.names.contains(&host(3))).unwrap();
        assert_eq!(cert.secret.name, "tls-ing-3");
        assert_eq!(cert.names, [host(3)]);
        // Two certificates never share a key or a body.
        let crts: std::collections::HashSet<_> = snapshot
            .secrets
            .iter()
            .map(|s| s.data.as_ref().unwrap()["tls.crt"].0.clone())
            .collect();
        assert_eq!(crts.len(), 20);
        // Ingress 0 has a wildcard rule too: its tls section and certificate name both hosts.
        let first = snapshot.ingresses.iter().find(|i| i.metadata.name.as_deref() == Some("ing-0"));
        let tls = &first.unwrap().spec.as_ref().unwrap().tls.as_ref().unwrap()[0];
        assert_eq!(tls.hosts.as_deref().unwrap(), [host(0), format!("*.{}", host(0))]);
        assert_eq!(tls.secret_name.as_deref(), Some("tls-ing-0"));
    }

    #[test]
    fn the_default_certificate_is_one_secret() {
        let mut snapshot = generate(Scale::of(5));
        assert_eq!(with_default_certificate(&mut snapshot), "ns-0/bench-default-tls");
        assert_eq!(snapshot.secrets.len(), 1);
        let secret = snapshot.secrets.iter().next().unwrap();
        assert_eq!(secret.type_.as_deref(), Some(TLS_SECRET_TYPE));
        let pem = String::from_utf8(secret.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }
}
