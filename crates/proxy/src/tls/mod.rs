//! TLS on the HTTPS port: certificates chosen by server name, a handshake policy per host
//! (client certificates, cipher suites), passthrough, and TLS towards backends.
//!
//! A [`TlsState`] is built from each routing table by the [`CertStore`] (which loads signing
//! keys once per certificate content and checks each key against its certificate) and
//! swapped in like the table. A connection reads its ClientHello first
//! ([`hello`]), then either is spliced to a passthrough backend, or completes the handshake
//! with its host's `ServerConfig`.

pub(crate) mod client_auth;
pub(crate) mod hello;
pub(crate) mod upstream;

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use sluice_model::{
    Diagnostic, FastMap, HandshakePolicy, KeyFormat, Kind, ObjectRef, PrivateKey, Reason,
    RoutingTable, Tls, TlsVersions,
};

use client_auth::ClientCheck;

/// The crypto provider every TLS configuration uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A DER private key of the model, for rustls.
pub(crate) fn key_der(key: &PrivateKey) -> PrivateKeyDer<'static> {
    match key.format {
        KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(key.der.clone()).into(),
        KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(key.der.clone()).into(),
        KeyFormat::Sec1 => PrivateSec1KeyDer::from(key.der.clone()).into(),
    }
}

/// The server side of TLS for one routing table: published together with it. A clone shares
/// the configurations (a table whose TLS side did not change keeps them).
#[derive(Clone)]
pub struct TlsState {
    /// One server configuration per handshake policy of the table.
    pub(crate) configs: Vec<Arc<ServerConfig>>,
    /// Per policy, how to check client certificates after the handshake.
    pub(crate) checks: Vec<Option<Arc<ClientCheck>>>,
    /// Per certificate of the table (same order as `Tls::certs`), whether it loaded: a
    /// certificate whose key is unusable is never presented.
    loaded: Vec<bool>,
}

impl TlsState {
    /// Whether the table's certificate `index` is presented to clients (its key loaded).
    pub fn is_served(&self, index: u32) -> bool {
        self.loaded.get(index as usize).copied().unwrap_or(false)
    }
}

/// Loads certificates into signing keys and builds [`TlsState`]s. Owned by the control loop.
pub struct CertStore {
    provider: Arc<CryptoProvider>,
    /// The certificate of last resort: generated at start-up, self-signed.
    generated: Arc<CertifiedKey>,
    /// Loaded keys (or why they could not be), by certificate fingerprint, with the last
    /// build that used each.
    loaded: FastMap<u64, (u64, Result<Arc<CertifiedKey>, String>)>,
    /// Builds so far.
    round: u64,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertStore({} loaded)", self.loaded.len())
    }
}

impl CertStore {
    /// A store whose certificate of last resort is a fresh self-signed one, like
    /// ingress-nginx's "Fake Certificate".
    pub fn new() -> Result<Self, String> {
        let provider = provider();
        let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
            .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Sluice Ingress Controller Fake Certificate");
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let generated = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider)
            .map_err(|e| e.to_string())?;
        Ok(Self { provider, generated: Arc::new(generated), loaded: FastMap::default(), round: 0 })
    }

    /// Builds the TLS state of `table`, loading new certificates. Certificates whose key
    /// cannot be used are reported; their hosts get the default certificate.
    ///
    /// Only new certificates are loaded, and the server-name map is the table's own (shared,
    /// not copied): a rotation among 10,000 certificates costs a walk of the list, no more.
    pub fn build(&mut self, table: &RoutingTable) -> (TlsState, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let tls = &table.tls;
        self.round += 1;
        let round = self.round;
        let mut keys: Vec<Option<Arc<CertifiedKey>>> = Vec::with_capacity(tls.certs.len());
        let mut kept = 0;
        for cert in &tls.certs {
            let (seen, loaded) = self.loaded.entry(cert.fingerprint).or_insert_with(|| {
                let chain: Vec<CertificateDer<'static>> =
                    cert.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
                let loaded = CertifiedKey::from_der(chain, key_der(&cert.key), &self.provider)
                    .map(Arc::new)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => {
                            "its private key does not match its certificate".to_string()
                        }
                        e => format!("its private key cannot be used ({e})"),
                    });
                (0, loaded)
            });
            if *seen != round {
                *seen = round;
                kept += 1;
            }
            if let Err(why) = loaded {
                diagnostics.push(Diagnostic::error(
                    ObjectRef::new(Kind::Secret, &cert.secret.namespace, &cert.secret.name),
                    Reason::InvalidSecret,
                    format!(
                        "{why}; hosts using it ({}) get the default certificate",
                        cert.names.join(", ")
                    ),
                ));
            }
            keys.push(loaded.as_ref().ok().cloned());
        }
        // Certificates no longer referenced are forgotten.
        if kept < self.loaded.len() {
            self.loaded.retain(|_, (seen, _)| *seen == round);
        }

        let default = tls
            .default_cert
            .and_then(|i| keys[i as usize].clone())
            .unwrap_or_else(|| self.generated.clone());
        let loaded = keys.iter().map(Option::is_some).collect();
        let resolver = Arc::new(SniResolver { tls: tls.clone(), keys, default });
        let mut configs = Vec::with_capacity(tls.policies.len());
        let mut checks = Vec::with_capacity(tls.policies.len());
        for policy in &tls.policies {
            let check = policy
                .client_auth
                .as_ref()
                .map(|auth| ClientCheck::new(auth, &self.provider))
                .transpose();
            let check = match check {
                Ok(c) => c.map(Arc::new),
                Err(why) => {
                    // The CA parsed in translation but rustls refuses it: fail closed.
                    let auth = policy.client_auth.as_ref().expect("only client auth can fail");
                    diagnostics.push(Diagnostic::error(
                        ObjectRef::new(Kind::Secret, &auth.secret.namespace, &auth.secret.name),
                        Reason::InvalidSecret,
                        format!("its ca.crt cannot be used to verify clients ({why}); the hosts using it refuse every request"),
                    ));
                    Some(Arc::new(ClientCheck::refuse_all()))
                }
            };
            configs.push(Arc::new(self.server_config(
                policy,
                tls.versions,
                table.https.http2.enabled,
                resolver.clone(),
                check.clone(),
            )));
            checks.push(check);
        }
        (TlsState { configs, checks, loaded }, diagnostics)
    }

    fn server_config(
        &self,
        policy: &HandshakePolicy,
        versions: TlsVersions,
        h2: bool,
        resolver: Arc<SniResolver>,
        check: Option<Arc<ClientCheck>>,
    ) -> ServerConfig {
        let mut provider = (*self.provider).clone();
        if let Some(wanted) = &policy.tls12_suites {
            provider.cipher_suites = ordered_suites(&provider.cipher_suites, wanted);
        }
        let mut protocol_versions = Vec::new();
        if versions.tls13 {
            protocol_versions.push(&rustls::version::TLS13);
        }
        if versions.tls12 {
            protocol_versions.push(&rustls::version::TLS12);
        }
        let builder = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&protocol_versions)
            .expect("TLS 1.2 and 1.3 are supported by the provider");
        let builder = match check {
            Some(check) => builder.with_client_cert_verifier(check.verifier()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        // `use-http2: false` offers HTTP/1.1 only.
        config.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        config
    }

    /// The certificate of last resort (for tests and the quickstart).
    pub fn generated(&self) -> &Arc<CertifiedKey> {
        &self.generated
    }
}

/// Every TLS 1.3 suite, then the TLS 1.2 suites of `wanted` in its order.
fn ordered_suites(all: &[SupportedCipherSuite], wanted: &[String]) -> Vec<SupportedCipherSuite> {
    let mut out: Vec<SupportedCipherSuite> =
        all.iter().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))).copied().collect();
    for name in wanted {
        if let Some(s) = all.iter().find(|s| {
            matches!(s, SupportedCipherSuite::Tls12(_)) && format!("{:?}", s.suite()) == *name
        }) {
            out.push(*s);
        }
    }
    out
}

/// Chooses the certificate by server name: exact, then one-label wildcard, then the default
/// (also for a name whose certificate's key did not load).
#[derive(Debug)]
struct SniResolver {
    /// The table's certificates by name.
    tls: Arc<Tls>,
    /// The loaded key of each of `tls.certs`.
    keys: Vec<Option<Arc<CertifiedKey>>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello
            .server_name()
            .and_then(|n| self.tls.cert_by_name.get(&n.to_ascii_lowercase()))
            .and_then(|&i| self.keys.get(i as usize)?.as_ref());
        Some(found.unwrap_or(&self.default).clone())
    }
}
