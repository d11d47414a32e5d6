//! TLS towards backends, end to end: `backend-protocol: "HTTPS"` with real TLS backends and
//! the `proxy-ssl-*` annotations (`proxy-ssl-secret`, `-verify`, `-verify-depth`, `-name`,
//! `-server-name`), as ingress-nginx applies them: no verification by default, verification
//! against the Secret's `ca.crt`, the Secret's client certificate presented, SNI only on
//! request, fail-closed when verification cannot be set up, keep-alive to the backend, Secret
//! rotation, and TLS on both sides (client → Sluice → backend).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::tls::{self, Ca, ClientOpts, Pem};
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The name Sluice verifies (and sends, with `proxy-ssl-server-name`) for the Service `app` in
/// `default` when `proxy-ssl-name` is not set.
const APP_SVC_NAME: &str = "app.default.svc";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A backend's TLS configuration: `chain` (PEM, leaf first) and `key`; with `client_ca`, a
/// client certificate signed by that CA is required.
fn server_config(chain: &str, key: &str, client_ca: Option<&str>) -> rustls::ServerConfig {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).unwrap()
}

/// A TLS echo backend (h2 and HTTP/1.1) presenting `pem`.
async fn tls_echo(name: &str, pem: &Pem) -> SocketAddr {
    let config = server_config(&pem.cert, &pem.key, None);
    sluice::echo::spawn_tls("127.0.0.1:0".parse().unwrap(), name, config).await.unwrap()
}

/// A TLS backend (HTTP/1.1) answering JSON with the common name of the client certificate it
/// was shown (`client_cn`, null without one) and the SNI it received: the echo backend does not
/// report client certificates.
async fn cert_reporting_backend(config: rustls::ServerConfig) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tcp_backend(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            // A client without an acceptable certificate fails here: the backend refuses it.
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let (_, conn) = tls.get_ref();
            let client_cn = conn.peer_certificates().and_then(|c| c.first()).map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
                let cn = cert.subject().iter_common_name().next().unwrap();
                cn.as_str().unwrap().to_string()
            });
            let body = serde_json::json!({
                "client_cn": client_cn,
                "sni": conn.server_name(),
            })
            .to_string();
            let service = hyper::service::service_fn(move |_req| {
                let body = Bytes::from(body.clone());
                async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}

/// A `proxy-ssl-secret`: `ca.crt` to verify backends with, and optionally a client
/// certificate (`tls.crt`, `tls.key`) to present to them.
fn proxy_ssl_secret(name: &str, ca: &str, client: Option<&Pem>) -> String {
    match client {
        Some(c) => tls::secret(
            name,
            "kubernetes.io/tls",
            &[("ca.crt", ca), ("tls.crt", &c.cert), ("tls.key", &c.key)],
        ),
        None => tls::ca_secret(name, ca),
    }
}

/// An Ingress `name` sending `host` to the Service `svc` over HTTPS, with more annotations.
fn https_ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let mut all = vec![("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")];
    all.extend_from_slice(annotations);
    ingress(name, host, &[("/", "Prefix", svc)], &all)
}

const SECRET: &str = "nginx.ingress.kubernetes.io/proxy-ssl-secret";
const VERIFY: &str = "nginx.ingress.kubernetes.io/proxy-ssl-verify";
const DEPTH: &str = "nginx.ingress.kubernetes.io/proxy-ssl-verify-depth";
const SSL_NAME: &str = "nginx.ingress.kubernetes.io/proxy-ssl-name";
const SERVER_NAME: &str = "nginx.ingress.kubernetes.io/proxy-ssl-server-name";

/// GET `/` on Sluice's HTTP port for `host`.
async fn get_host(s: &Sluice, host: &str) -> Reply {
    get(&s.url("/"), Some(host)).await
}

/// A CA certificate's parameters (rcgen), for chains with intermediates.
fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

/// A root CA, `intermediates` CAs below it, and a server certificate for `host` issued by the
/// last one: `(root PEM, leaf, chain PEM leaf first without the root)`.
fn chain_with_intermediates(host: &str, intermediates: usize) -> (String, Pem, String) {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Depth Root CA");
    let root_pem = root_params.self_signed(&root_key).unwrap().pem();
    let mut issuer = rcgen::Issuer::new(root_params, root_key);
    let mut chain_cas = Vec::new();
    for i in 0..intermediates {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(&format!("Depth Intermediate {i}"));
        chain_cas.push(params.signed_by(&key, &issuer).unwrap().pem());
        issuer = rcgen::Issuer::new(params, key);
    }
    let mut leaf = CertificateParams::new(vec![host.to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, host);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap().pem();
    chain_cas.reverse(); // leaf first, then the CA that issued it, up to the root's child
    let chain = std::iter::once(cert.clone()).chain(chain_cas).collect::<String>();
    (root_pem, Pem { cert, key: key.serialize_pem() }, chain)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_backend_with_self_signed_certificate_works_without_verification() {
    // ingress-nginx's default is proxy-ssl-verify off: any backend certificate is accepted.
    let backend = sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        "secure",
        sluice::echo::self_signed("whatever.internal").unwrap(),
    )
    .await
    .unwrap();
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("ing.yaml", &https_ingress("tls", "tls.example", "app", &[]));
    // The same backend spoken to in clear (no backend-protocol): a TLS server does not
    // understand it, which shows the annotation is what makes the first route work.
    m.write("plain.yaml", &ingress("plain", "plain.example", &[("/", "Prefix", "app")], &[]));
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "tls.example").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    assert_eq!(doc["name"], "secure");
    assert_eq!(doc["tls"], true, "the backend was reached over TLS: {doc}");
    assert!(doc["sni"].is_null(), "no SNI without proxy-ssl-server-name: {doc}");
    assert_eq!(doc["version"], "HTTP/1.1", "HTTPS backends are spoken to in HTTP/1.1: {doc}");
    assert_eq!(doc["host"], "tls.example", "the client's Host reaches the backend: {doc}");

    let plain = get_host(&s, "plain.example").await;
    assert_eq!(plain.status, 502, "plain HTTP to a TLS backend cannot work");
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_accepts_the_secret_ca_and_rejects_others_with_502() {
    let ca = Ca::new("Backend CA");
    let other = Ca::new("Other CA");
    // Signed by the Secret's CA for the default name (<service>.<namespace>.svc).
    let good = tls_echo("good", &ca.server(&[APP_SVC_NAME])).await;
    // Right name, wrong CA.
    let foreign = tls_echo("foreign", &other.server(&["foreign.default.svc"])).await;
    // Right CA, a name that is not the one verified.
    let misnamed = tls_echo("misnamed", &ca.server(&["somewhere.else"])).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("secret.yaml", &proxy_ssl_secret("backend-ca", &ca.cert, None));
    m.write("svc-app.yaml", &service("app", &[good]));
    m.write("svc-foreign.yaml", &service("foreign", &[foreign]));
    m.write("svc-misnamed.yaml", &service("misnamed", &[misnamed]));
    let verify = [(SECRET, "default/backend-ca"), (VERIFY, "on")];
    m.write("ing-good.yaml", &https_ingress("good", "good.example", "app", &verify));
    m.write("ing-foreign.yaml", &https_ingress("foreign", "foreign.example", "foreign", &verify));
    m.write(
        "ing-misnamed.yaml",
        &https_ingress("misnamed", "misnamed.example", "misnamed", &verify),
    );
    // The same foreign backend without verification: reachable, so the 502 above comes from
    // verification and not from the backend.
    m.write(
        "ing-lax.yaml",
        &https_ingress("lax", "lax.example", "foreign", &[(SECRET, "default/backend-ca")]),
    );
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "good.example").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.backend(), "good");
    assert_eq!(r.json()["tls"], true);
    // NGINX answers 502 Bad Gateway when the upstream's certificate does not verify.
    assert_eq!(get_host(&s, "foreign.example").await.status, 502, "a certificate from another CA");
    assert_eq!(
        get_host(&s, "misnamed.example").await.status,
        502,
        "a certificate for another name"
    );
    let lax = get_host(&s, "lax.example").await;
    assert_eq!(lax.status, 200);
    assert_eq!(lax.backend(), "foreign");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_depth_counts_intermediate_cas_as_openssl_does() {
    // OpenSSL (so NGINX) counts the CA certificates between the backend's certificate and the
    // trusted one: depth 1, the default, accepts one intermediate; two need depth 2.
    let (root1, leaf1, chain1) = chain_with_intermediates(APP_SVC_NAME, 1);
    let one = sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        "one-intermediate",
        server_config(&chain1, &leaf1.key, None),
    )
    .await
    .unwrap();
    // The same chain with the root sent along, as many servers do: the trusted root does not
    // count as an intermediate.
    let with_root = sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        "with-root",
        server_config(&format!("{chain1}{root1}"), &leaf1.key, None),
    )
    .await
    .unwrap();
    let (root2, leaf2, chain2) = chain_with_intermediates("two.default.svc", 2);
    let two = sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        "two-intermediates",
        server_config(&chain2, &leaf2.key, None),
    )
    .await
    .unwrap();
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("secret1.yaml", &proxy_ssl_secret("root1", &root1, None));
    m.write("secret2.yaml", &proxy_ssl_secret("root2", &root2, None));
    m.write("svc-app.yaml", &service("app", &[one]));
    m.write("svc-two.yaml", &service("two", &[two]));
    m.write("svc-root.yaml", &service("app-root", &[with_root]));
    let verify1 = [(SECRET, "default/root1"), (VERIFY, "on")];
    m.write("ing-1.yaml", &https_ingress("one-default", "one.example", "app", &verify1));
    let verify1_named = [verify1[0], verify1[1], (SSL_NAME, APP_SVC_NAME)];
    m.write("ing-1r.yaml", &https_ingress("root-sent", "root.example", "app-root", &verify1_named));
    let verify2 = |depth| [(SECRET, "default/root2"), (VERIFY, "on"), (DEPTH, depth)];
    m.write("ing-2a.yaml", &https_ingress("two-depth1", "two-d1.example", "two", &verify2("1")));
    m.write("ing-2b.yaml", &https_ingress("two-depth2", "two-d2.example", "two", &verify2("2")));
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "one.example").await;
    assert_eq!(r.status, 200, "one intermediate within the default depth 1");
    assert_eq!(r.backend(), "one-intermediate");
    let r = get_host(&s, "root.example").await;
    assert_eq!(r.status, 200, "the root sent along is not an intermediate");
    assert_eq!(r.backend(), "with-root");
    assert_eq!(get_host(&s, "two-d1.example").await.status, 502, "two intermediates > depth 1");
    let r = get_host(&s, "two-d2.example").await;
    assert_eq!(r.status, 200, "two intermediates within depth 2");
    assert_eq!(r.backend(), "two-intermediates");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_ssl_name_is_verified_and_sent_as_sni_only_with_server_name_on() {
    let ca = Ca::new("Backend CA");
    let backend = tls_echo("named", &ca.server(&["backend.internal"])).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("secret.yaml", &proxy_ssl_secret("backend-ca", &ca.cert, None));
    m.write("svc.yaml", &service("app", &[backend]));
    let base = [(SECRET, "default/backend-ca"), (VERIFY, "on")];
    let named = [base[0], base[1], (SSL_NAME, "backend.internal")];
    let with_sni = [base[0], base[1], (SSL_NAME, "backend.internal"), (SERVER_NAME, "on")];
    m.write("ing-sni.yaml", &https_ingress("sni", "sni.example", "app", &with_sni));
    m.write("ing-nosni.yaml", &https_ingress("nosni", "nosni.example", "app", &named));
    // Without proxy-ssl-name the name verified is app.default.svc, not on this certificate.
    m.write("ing-default.yaml", &https_ingress("default-name", "default.example", "app", &base));
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "sni.example").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["sni"], "backend.internal", "proxy-ssl-name is sent as SNI");
    let r = get_host(&s, "nosni.example").await;
    assert_eq!(r.status, 200, "proxy-ssl-name is the name verified");
    let doc = r.json();
    assert!(doc["sni"].is_null(), "no SNI without proxy-ssl-server-name: {doc}");
    assert_eq!(doc["tls"], true);
    assert_eq!(
        get_host(&s, "default.example").await.status,
        502,
        "the default name does not match"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_name_without_proxy_ssl_name_sends_the_service_name() {
    // NGINX would send its upstream block's name ($proxy_host); Sluice sends the name it
    // verifies by default, <service>.<namespace>.svc.
    let backend = tls_echo("svc-named", &Ca::new("Any").server(&["x.internal"])).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("ing.yaml", &https_ingress("sni", "sni.example", "app", &[(SERVER_NAME, "on")]));
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "sni.example").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sni"], APP_SVC_NAME);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_client_certificate_is_presented_to_backends_requiring_one() {
    let server_ca = Ca::new("Backend CA");
    let client_ca = Ca::new("Client CA");
    let pem = server_ca.server(&[APP_SVC_NAME]);
    let backend =
        cert_reporting_backend(server_config(&pem.cert, &pem.key, Some(&client_ca.cert))).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    let client = client_ca.client("sluice-proxy");
    m.write("secret.yaml", &proxy_ssl_secret("proxy-ssl", &server_ca.cert, Some(&client)));
    // A certificate from a CA the backend does not trust.
    let stranger = Ca::new("Stranger CA").client("stranger");
    m.write("stranger.yaml", &proxy_ssl_secret("stranger", &server_ca.cert, Some(&stranger)));
    m.write("svc.yaml", &service("app", &[backend]));
    let verified = [(SECRET, "default/proxy-ssl"), (VERIFY, "on")];
    m.write("ing-mtls.yaml", &https_ingress("mtls", "mtls.example", "app", &verified));
    // Verification off: the client certificate is still presented.
    m.write(
        "ing-lax.yaml",
        &https_ingress("lax", "lax.example", "app", &[(SECRET, "default/proxy-ssl")]),
    );
    m.write("ing-none.yaml", &https_ingress("none", "none.example", "app", &[]));
    m.write(
        "ing-stranger.yaml",
        &https_ingress("stranger", "stranger.example", "app", &[(SECRET, "default/stranger")]),
    );
    let s = Sluice::start(m.path(), &[]);

    for host in ["mtls.example", "lax.example"] {
        let r = get_host(&s, host).await;
        assert_eq!(r.status, 200, "{host}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["client_cn"], "sluice-proxy", "{host}");
    }
    assert_eq!(
        get_host(&s, "none.example").await.status,
        502,
        "the backend refuses no certificate"
    );
    assert_eq!(
        get_host(&s, "stranger.example").await.status,
        502,
        "the backend refuses a foreign one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_proxy_ssl_secret_with_verification_fails_closed() {
    let ca = Ca::new("Backend CA");
    let backend = tls_echo("guarded", &ca.server(&[APP_SVC_NAME])).await;
    let open = echo("open").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("svc-open.yaml", &service("open", &[open]));
    let verify = [(SECRET, "default/absent"), (VERIFY, "on")];
    m.write("ing.yaml", &https_ingress("guarded", "guarded.example", "app", &verify));
    m.write("ing-open.yaml", &ingress("open", "open.example", &[("/", "Prefix", "open")], &[]));
    let s = Sluice::start(m.path(), &[]);

    // 503 rather than an unverified connection; ingress-nginx denies the location (503) too.
    assert_eq!(get_host(&s, "guarded.example").await.status, 503);
    let diags = s.config().await["diagnostics"].clone();
    let found = diags.as_array().unwrap().iter().find(|d| {
        d["message"].as_str().unwrap_or_default().contains("proxy-ssl-secret default/absent")
    });
    let d = found.unwrap_or_else(|| panic!("no diagnostic about the Secret: {diags}"));
    assert_eq!(d["reason"], "MissingSecret", "{d}");
    assert_eq!(d["severity"], "Error", "{d}");
    assert!(d["message"].as_str().unwrap().contains("503"), "{d}");
    let r = get_host(&s, "open.example").await;
    assert_eq!(r.status, 200, "other routes are unaffected");
    assert_eq!(r.backend(), "open");

    // Once the Secret exists the route is served, verified.
    let g = s.generation().await;
    m.write("secret.yaml", &proxy_ssl_secret("absent", &ca.cert, None));
    s.wait_generation_after(g).await;
    let r = get_host(&s, "guarded.example").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.backend(), "guarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_proxy_ssl_secret_fails_closed_without_verification_too() {
    // As ingress-nginx, which denies the location whenever proxy-ssl-secret cannot be read:
    // the Secret was asked for (a client certificate the backend may require), so the route
    // answers 503 until it appears, verification or not.
    let backend = tls_echo("lax", &Ca::new("Any").server(&[APP_SVC_NAME])).await;
    let ca = Ca::new("Lax CA");
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("ing.yaml", &https_ingress("lax", "lax.example", "app", &[(SECRET, "default/absent")]));
    let s = Sluice::start(m.path(), &[]);

    let r = get_host(&s, "lax.example").await;
    assert_eq!(r.status, 503);
    let diags = s.config().await["diagnostics"].to_string();
    assert!(
        diags.contains("proxy-ssl-secret default/absent does not exist; the paths answer 503"),
        "{diags}"
    );
    let g = s.generation().await;
    m.write("secret.yaml", &proxy_ssl_secret("absent", &ca.cert, None));
    s.wait_generation_after(g).await;
    let r = get_host(&s, "lax.example").await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "lax"));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_backend_connections_are_kept_alive_and_reused() {
    let backend = tls_echo("pooled", &Ca::new("Any").server(&[APP_SVC_NAME])).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[backend]));
    m.write("ing.yaml", &https_ingress("pooled", "pooled.example", "app", &[]));
    // One worker: one pool, so sequential requests must find the idle connection.
    let s = Sluice::start_workers(m.path(), 1, &[]);

    let c = client();
    let mut remotes = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = send(&c, request("GET", &s.url("/"), Some("pooled.example"), Bytes::new())).await;
        assert_eq!(r.status, 200);
        let doc = r.json();
        assert_eq!(doc["tls"], true);
        assert_eq!(doc["version"], "HTTP/1.1");
        // The backend sees Sluice's side of the connection: one address, one TLS connection.
        remotes.insert(doc["remote"].as_str().unwrap().to_string());
    }
    assert_eq!(remotes.len(), 1, "the TLS connection to the backend is reused: {remotes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_proxy_ssl_secret_applies_to_new_connections() {
    let server_ca = Ca::new("Backend CA");
    let client_ca = Ca::new("Client CA");
    let pem = server_ca.server(&[APP_SVC_NAME]);
    let backend =
        cert_reporting_backend(server_config(&pem.cert, &pem.key, Some(&client_ca.cert))).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    let first = client_ca.client("first");
    m.write("secret.yaml", &proxy_ssl_secret("proxy-ssl", &server_ca.cert, Some(&first)));
    m.write("svc.yaml", &service("app", &[backend]));
    let verify = [(SECRET, "default/proxy-ssl"), (VERIFY, "on")];
    m.write("ing.yaml", &https_ingress("rotating", "rot.example", "app", &verify));
    let s = Sluice::start_workers(m.path(), 1, &[]);
    let c = client();
    let get = || send(&c, request("GET", &s.url("/"), Some("rot.example"), Bytes::new()));

    let r = get().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["client_cn"], "first");

    // A new client certificate: the pooled connection (made with the old one) is not reused.
    let g = s.generation().await;
    let second = client_ca.client("second");
    m.write("secret.yaml", &proxy_ssl_secret("proxy-ssl", &server_ca.cert, Some(&second)));
    s.wait_generation_after(g).await;
    let r = get().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["client_cn"], "second", "the rotated certificate is presented");

    // A new CA that did not sign the backend's certificate: verification now fails.
    let g = s.generation().await;
    let other = Ca::new("Other CA");
    m.write("secret.yaml", &proxy_ssl_secret("proxy-ssl", &other.cert, Some(&second)));
    s.wait_generation_after(g).await;
    assert_eq!(get().await.status, 502, "the rotated CA is what verifies the backend");

    // And back to the right CA.
    let g = s.generation().await;
    m.write("secret.yaml", &proxy_ssl_secret("proxy-ssl", &server_ca.cert, Some(&second)));
    s.wait_generation_after(g).await;
    let r = get().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["client_cn"], "second");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_client_to_https_backend_double_tls() {
    let ca = Ca::new("Backend CA");
    let backend = tls_echo("inner", &ca.server(&[APP_SVC_NAME])).await;
    let front = Ca::new("Front CA").server(&["double.example"]);
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("front.yaml", &tls::tls_secret("front", &front));
    m.write("secret.yaml", &proxy_ssl_secret("backend-ca", &ca.cert, None));
    m.write("svc.yaml", &service("app", &[backend]));
    let verify = [(SECRET, "default/backend-ca"), (VERIFY, "on"), (SERVER_NAME, "on")];
    let ing = https_ingress("double", "double.example", "app", &verify);
    m.write("ing.yaml", &with_tls(ing, &[(&["double.example"], Some("front"))]));
    let s = Sluice::start(m.path(), &[]);

    // HTTP/1.1 and h2 clients alike; the backend is always spoken to in HTTP/1.1 over TLS.
    for opts in [ClientOpts::sni("double.example"), ClientOpts::sni("double.example").h2()] {
        let req = http::Request::get("https://double.example/over/tls")
            .header("host", "double.example")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (r, seen) = tls::request(s.https, &opts, req).await.unwrap();
        assert_eq!(seen.cn, "double.example", "the Ingress's own certificate answers the client");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let doc = r.json();
        assert_eq!(doc["name"], "inner");
        assert_eq!(doc["tls"], true);
        assert_eq!(doc["sni"], APP_SVC_NAME);
        assert_eq!(doc["version"], "HTTP/1.1");
        assert_eq!(doc["path"], "/over/tls");
        assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
        assert_eq!(doc["host"], "double.example");
    }
}
