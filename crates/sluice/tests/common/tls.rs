//! TLS for the integration tests: a throwaway PKI (rcgen), Secret manifests, and a real
//! rustls client that reports what the handshake showed (certificate, ALPN, version).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Reply, WAIT};

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().pem();
        Ca { cert, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `hosts` (DNS names, wildcards allowed), common name the first.
    pub fn server(&self, hosts: &[&str]) -> Pem {
        self.sign(hosts, hosts.first().copied().unwrap_or("server"), |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        })
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> Pem {
        self.sign(&[], cn, |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A certificate shaped by `edit` (validity, usages, ...).
    pub fn sign(&self, hosts: &[&str], cn: &str, edit: impl FnOnce(&mut CertificateParams)) -> Pem {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// A `kubernetes.io/tls` Secret manifest.
pub fn tls_secret(name: &str, pem: &Pem) -> String {
    secret(name, "kubernetes.io/tls", &[("tls.crt", &pem.cert), ("tls.key", &pem.key)])
}

/// An Opaque Secret holding a CA bundle under `ca.crt` (auth-tls-secret, proxy-ssl-secret).
pub fn ca_secret(name: &str, ca: &str) -> String {
    secret(name, "Opaque", &[("ca.crt", ca)])
}

/// A Secret manifest in `default` with `data` as stringData.
pub fn secret(name: &str, kind: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: {kind}\nstringData:\n"
    );
    for (k, v) in data {
        s.push_str(&format!("  {k}: |\n"));
        for line in v.lines() {
            s.push_str(&format!("    {line}\n"));
        }
    }
    s
}

/// How a test client connects.
#[derive(Clone, Default)]
pub struct ClientOpts {
    /// The server name sent, if any.
    pub sni: Option<String>,
    /// ALPN protocols offered (none by default).
    pub alpn: Vec<Vec<u8>>,
    /// A client certificate to present.
    pub client_cert: Option<Pem>,
    /// Only these TLS versions (default: 1.2 and 1.3).
    pub versions: Option<Vec<&'static rustls::SupportedProtocolVersion>>,
}

impl ClientOpts {
    /// Sends `sni` as the server name.
    pub fn sni(sni: &str) -> ClientOpts {
        ClientOpts { sni: Some(sni.to_string()), ..Default::default() }
    }

    /// Offers h2 then HTTP/1.1.
    pub fn h2(mut self) -> ClientOpts {
        self.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self
    }

    /// Presents `pem` as client certificate.
    pub fn cert(mut self, pem: &Pem) -> ClientOpts {
        self.client_cert = Some(pem.clone());
        self
    }
}

/// What the handshake showed.
#[derive(Debug)]
pub struct Seen {
    /// The server certificate's subject common name.
    pub cn: String,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The negotiated version.
    pub version: rustls::ProtocolVersion,
}

/// Connects to `addr` with TLS; the server's certificate is accepted whatever it is (the tests
/// check which one was presented through [`Seen`]).
pub async fn connect(addr: SocketAddr, opts: &ClientOpts) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = opts.versions.clone().unwrap_or_else(|| rustls::ALL_VERSIONS.to_vec());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match &opts.client_cert {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.clone();
    // Without a name rustls sends no SNI when given an IP address.
    config.enable_sni = opts.sni.is_some();
    let name = match &opts.sni {
        Some(s) => ServerName::try_from(s.clone()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(WAIT, TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// What the server presented on `stream`.
pub fn seen(stream: &TlsStream<TcpStream>) -> Seen {
    let (_, conn) = stream.get_ref();
    let der = conn.peer_certificates().expect("a server certificate")[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Seen {
        cn,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version().unwrap(),
    }
}

/// One request over a fresh TLS connection (h2 if ALPN chose it, else HTTP/1.1).
pub async fn request(
    addr: SocketAddr,
    opts: &ClientOpts,
    req: Request<Full<Bytes>>,
) -> std::io::Result<(Reply, Seen)> {
    let stream = connect(addr, opts).await?;
    let seen = seen(&stream);
    let io = TokioIo::new(stream);
    let resp = if seen.alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(other)?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(other)?;
        tokio::spawn(conn);
        send.send_request(req).await
    };
    let resp = resp.map_err(other)?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(other)?.to_bytes();
    Ok((Reply { status: parts.status, headers: parts.headers, body }, seen))
}

/// GET `path` on `addr` with SNI and Host `host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (Reply, Seen) {
    let req = Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(addr, &ClientOpts::sni(host), req).await.expect("an HTTPS exchange")
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(e)
}

/// Accepts any server certificate (what the server presents is what the tests check).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
