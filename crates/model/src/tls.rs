//! TLS in the routing table: which certificate answers which server name, each host's
//! handshake policy (client certificates, cipher suites), passthrough hosts, how to reach
//! HTTPS and gRPC backends, and the HTTPS behaviour of plain HTTP requests (redirects, HSTS).
//!
//! Certificates and keys are carried as DER, as translation found them in Secrets; the proxy
//! turns them into signing keys (and checks that each key matches its certificate) when a
//! table is published. Key material is never serialised (`/debug/config`) nor printed.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::{BackendId, HostMap, NamespacedName};

/// A private key in DER, with its encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PrivateKey {
    /// The key's DER bytes.
    pub der: Vec<u8>,
    /// How they are encoded.
    pub format: KeyFormat,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, {} bytes)", self.format, self.der.len())
    }
}

/// The encodings of a PEM private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum KeyFormat {
    /// `BEGIN PRIVATE KEY`.
    Pkcs8,
    /// `BEGIN RSA PRIVATE KEY`.
    Pkcs1,
    /// `BEGIN EC PRIVATE KEY`.
    Sec1,
}

/// A certificate chain and its key, from a `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, Serialize)]
pub struct TlsCert {
    /// The Secret it came from.
    pub secret: NamespacedName,
    /// DER certificates, leaf first.
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key.
    #[serde(skip)]
    pub key: PrivateKey,
    /// The leaf's names (subject alternative names, else its common name).
    pub names: Vec<String>,
    /// The leaf's expiry, in seconds since the Unix epoch.
    pub not_after: i64,
    /// A hash of the chain and key, so that unchanged certificates are not loaded again.
    pub fingerprint: u64,
}

/// How a host's handshake is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HandshakePolicy {
    /// Client certificates (`auth-tls-*`); `None` asks for none.
    pub client_auth: Option<ClientAuth>,
    /// TLS 1.2 cipher suites by their rustls names (`ssl-ciphers`), in preference order;
    /// `None` keeps the defaults. TLS 1.3 suites are always all enabled, as with NGINX.
    pub tls12_suites: Option<Vec<String>>,
}

/// Client certificate verification for a host (`auth-tls-*`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientAuth {
    /// The Secret holding `ca.crt`.
    pub secret: NamespacedName,
    /// The trusted CA certificates (DER).
    #[serde(skip)]
    pub ca: Vec<Vec<u8>>,
    /// `auth-tls-verify-client`.
    pub verify: ClientVerify,
    /// `auth-tls-verify-depth`, as OpenSSL (so NGINX) counts: the intermediate CAs allowed
    /// between the client's certificate and a listed CA.
    pub depth: u8,
    /// `auth-tls-pass-certificate-to-upstream`: send the URL-escaped PEM in `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-match-cn`: a regex (starting `CN=`) the certificate's subject DN must match,
    /// else 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_cn: Option<String>,
    /// `auth-tls-error-page`: where a refused certificate is redirected (302) instead of 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_page: Option<String>,
}

/// `auth-tls-verify-client`, with NGINX's semantics: the handshake never fails for a client
/// certificate; the request is refused with 400 where NGINX refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ClientVerify {
    /// A valid certificate is required: none, or an invalid one, gets 400.
    On,
    /// A certificate is asked for: none is fine, an invalid one gets 400.
    Optional,
    /// A certificate is asked for and passed on whatever its verification says (the backend
    /// decides): never 400.
    OptionalNoCa,
    /// No certificate is asked for.
    Off,
}

/// How Sluice speaks to a backend (`backend-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum UpstreamProtocol {
    /// `HTTP`: HTTP/1.1 in clear.
    #[default]
    Http1,
    /// `HTTPS`: HTTP/1.1 over TLS.
    Https,
    /// `GRPC`: HTTP/2 in clear (h2c, prior knowledge).
    Grpc,
    /// `GRPCS`: HTTP/2 over TLS.
    Grpcs,
}

impl UpstreamProtocol {
    /// True for the protocols over TLS.
    pub fn tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::Grpcs)
    }

    /// True for the protocols over HTTP/2.
    pub fn h2(self) -> bool {
        matches!(self, UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs)
    }
}

/// TLS towards a backend (`proxy-ssl-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct UpstreamTls {
    /// `proxy-ssl-secret`, if any.
    pub secret: Option<NamespacedName>,
    /// CA certificates to verify the backend with (`ca.crt` of the Secret).
    #[serde(skip)]
    pub ca: Vec<Vec<u8>>,
    /// A client certificate chain and key to present (`tls.crt`, `tls.key` of the Secret).
    #[serde(skip)]
    pub client_chain: Vec<Vec<u8>>,
    /// Its key.
    #[serde(skip)]
    pub client_key: Option<PrivateKey>,
    /// `proxy-ssl-verify`: verify the backend's certificate.
    pub verify: bool,
    /// `proxy-ssl-verify-depth`.
    pub depth: u8,
    /// `proxy-ssl-name`, else `<service>.<namespace>.svc`: the name verified (and sent).
    pub name: String,
    /// `proxy-ssl-server-name`: send `name` as SNI.
    pub send_sni: bool,
    /// A hash of all the above, so that workers keep one client configuration, and pooled
    /// connections, per distinct setting across table rebuilds.
    pub fingerprint: u64,
}

/// The TLS side of a routing table. Cloned only by an Ingress update that changes which
/// certificate a host gets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tls {
    /// Every certificate referenced by a served host; shared, so that an update that changes
    /// one host's certificate copies pointers, not every chain and key.
    pub certs: Vec<Arc<TlsCert>>,
    /// Which certificate answers which server name.
    #[serde(skip)]
    pub cert_by_name: HostMap<u32>,
    /// `--default-ssl-certificate`, when usable; else the proxy's own generated certificate.
    pub default_cert: Option<u32>,
    /// Handshake policies; index 0 is the default (no client certificates, global ciphers).
    pub policies: Vec<HandshakePolicy>,
    /// Which policy a server name gets (others get policy 0).
    #[serde(skip)]
    pub policy_by_name: HostMap<u32>,
    /// Hosts whose connections are passed through to a backend without terminating TLS.
    #[serde(skip)]
    pub passthrough: HostMap<BackendId>,
    /// TLS versions offered (`ssl-protocols`).
    pub versions: TlsVersions,
}

impl Tls {
    /// The policy for a server name.
    pub fn policy_for(&self, name: &str) -> u32 {
        // Most tables give no host a policy of its own: no hashing per request then.
        if self.policy_by_name.is_empty() {
            return 0;
        }
        self.policy_by_name.get(name).copied().unwrap_or(0)
    }
}

/// The TLS versions offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TlsVersions {
    /// TLS 1.2.
    pub tls12: bool,
    /// TLS 1.3.
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        Self { tls12: true, tls13: true }
    }
}

/// What plain-HTTP requests and HTTPS responses get, table-wide (ConfigMap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpsBehaviour {
    /// The `Strict-Transport-Security` value sent on HTTPS responses (`hsts*` keys); `None`
    /// sends none.
    pub hsts: Option<String>,
    /// Request paths never redirected to HTTPS (`no-tls-redirect-locations`), by prefix.
    pub no_redirect_prefixes: Vec<String>,
    /// The status of HTTPS redirects (`http-redirect-code`).
    pub redirect_code: u16,
    /// Trust `X-Forwarded-Proto`, `-Port`, `-Host` and `-For` from clients
    /// (`use-forwarded-headers`): Sluice is behind a proxy or load balancer that sets them.
    pub use_forwarded_headers: bool,
    /// Where the client's address comes from.
    pub real_ip: crate::RealIp,
    /// How long an idle client connection is kept (`keep-alive`): HTTP/1.1 between
    /// requests, HTTP/2 without a request in progress.
    pub keep_alive: std::time::Duration,
    /// Client and upstream connection limits and timeouts (`client-*-timeout`,
    /// `keep-alive-requests`, `large-client-header-buffers`, `max-worker-connections`,
    /// `upstream-keepalive-*`).
    pub connections: crate::ConnectionLimits,
    /// Client HTTP/2 connections (`http2-*` keys).
    pub http2: crate::Http2Settings,
}

impl Default for HttpsBehaviour {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            hsts: Some("max-age=31536000; includeSubDomains".into()),
            no_redirect_prefixes: vec!["/.well-known/acme-challenge".into()],
            redirect_code: 308,
            use_forwarded_headers: false,
            real_ip: crate::RealIp::default(),
            keep_alive: std::time::Duration::from_secs(75),
            connections: crate::ConnectionLimits::default(),
            http2: crate::Http2Settings::default(),
        }
    }
}
