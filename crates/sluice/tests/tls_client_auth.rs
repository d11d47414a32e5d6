//! Client certificates (`auth-tls-*`), checked as ingress-nginx checks them: per request Host,
//! 400 where NGINX answers 400, `ssl-client-*` headers to the backend (never from the
//! client), NGINX's verify modes and OpenSSL's depth counting, the URL-escaped PEM, and a
//! host whose CA cannot be read failing closed. Real rustls clients, `curl` and `openssl`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use common::tls::{self, Ca, ClientOpts, Pem};
use common::*;
use http::Request;
use http_body_util::Full;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

const MTLS: &str = "mtls.example.com";
const WEB: &str = "web.example.com";
const SECRET: &str = "nginx.ingress.kubernetes.io/auth-tls-secret";
const VERIFY: &str = "nginx.ingress.kubernetes.io/auth-tls-verify-client";
const DEPTH: &str = "nginx.ingress.kubernetes.io/auth-tls-verify-depth";
const PASS_CERT: &str = "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream";
const UNKNOWN_ISSUER: &str = "FAILED:unable to get local issuer certificate";

/// Client CA "Client CA" in Secret `default/ca`; `mtls.example.com` checks client
/// certificates against it with `annotations` added; `web.example.com` checks none. Both
/// have certificates from "Server CA" and lead to the echo `app`.
struct Setup {
    m: Manifests,
    s: Sluice,
    clients: Ca,
    server_ca: Ca,
}

fn manifests(
    annotations: &[(&str, &str)],
    server_ca: &Ca,
    clients: &Ca,
    app: SocketAddr,
) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("server-tls.yaml", &tls::tls_secret("server-tls", &server_ca.server(&[MTLS, WEB])));
    m.write("ca.yaml", &tls::ca_secret("ca", &clients.cert));
    let mut all = vec![(SECRET, "default/ca")];
    all.extend_from_slice(annotations);
    m.write("ing-secure.yaml", &secure_ingress("secure", MTLS, &all));
    m.write("ing-web.yaml", &secure_ingress("web", WEB, &[]));
    m
}

/// An Ingress for `host` to `app` over HTTPS (certificate `server-tls`) with `annotations`.
fn secure_ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    with_tls(
        ingress(name, host, &[("/", "Prefix", "app")], annotations),
        &[(&[host], Some("server-tls"))],
    )
}

async fn start(annotations: &[(&str, &str)]) -> Setup {
    let clients = Ca::new("Client CA");
    let server_ca = Ca::new("Server CA");
    let m = manifests(annotations, &server_ca, &clients, echo("app").await);
    let s = Sluice::start(m.path(), &[]);
    Setup { m, s, clients, server_ca }
}

/// GET `/` with Host `host` over a fresh TLS connection to `addr` shaped by `opts`, with
/// extra request headers.
async fn call(addr: SocketAddr, opts: &ClientOpts, host: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(format!("https://{host}/")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    tls::request(addr, opts, req).await.expect("an HTTPS exchange").0
}

/// GET `/` on `host` (as SNI and Host), presenting `cert` if any.
async fn get_as(s: &Sluice, host: &str, cert: Option<&Pem>) -> Reply {
    let mut opts = ClientOpts::sni(host);
    opts.client_cert = cert.cloned();
    call(s.https, &opts, host, &[]).await
}

/// The `ssl-client-*` headers the backend received, as `(name, value)`.
fn client_headers(r: &Reply) -> Vec<(String, String)> {
    let doc = r.json();
    let mut found: Vec<(String, String)> = doc["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("ssl-client-"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    found.sort();
    found
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.json()["headers"].get(name).and_then(|v| v.as_str()).map(str::to_string)
}

/// A 400 from Sluice itself: the backend (which answers JSON) was not asked.
fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("400 Bad Request"), "{what}");
}

/// A client certificate from `ca` whose validity ended yesterday.
fn expired(ca: &Ca, cn: &str) -> Pem {
    ca.sign(&[], cn, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_on_passes_a_valid_certificate_and_its_names_to_the_backend() {
    let t = start(&[]).await;
    let alice = t.clients.sign(&[], "alice", |p| {
        p.distinguished_name.push(DnType::OrganizationName, "Acme, Inc.");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });

    let r = get_as(&t.s, MTLS, Some(&alice)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        client_headers(&r),
        pairs(&[
            ("ssl-client-issuer-dn", "CN=Client CA"),
            // RFC 2253: last RDN first, the comma escaped.
            ("ssl-client-subject-dn", "O=Acme\\, Inc.,CN=alice"),
            ("ssl-client-verify", "SUCCESS"),
        ]),
        "no ssl-client-cert unless asked for"
    );
    // NGINX's $ssl_client_s_dn is OpenSSL's RFC 2253 form: the same as `openssl x509`'s.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pem"), &alice.cert).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253", "-in"]);
    let out = run(cmd.arg(dir.path().join("alice.pem"))).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("subject={}", header(&r, "ssl-client-subject-dn").unwrap())),
        "{said}"
    );
    assert!(
        said.contains(&format!("issuer={}", header(&r, "ssl-client-issuer-dn").unwrap())),
        "{said}"
    );

    // The same over h2, and over TLS 1.2 (where the certificate request differs).
    let req = Request::get(format!("https://{MTLS}/")).body(Full::new(Bytes::new())).unwrap();
    let h2 = ClientOpts::sni(MTLS).h2().cert(&alice);
    let (r, seen) = tls::request(t.s.https, &h2, req).await.unwrap();
    assert_eq!((r.status.as_u16(), seen.alpn.as_deref()), (200, Some(&b"h2"[..])));
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));
    let mut tls12 = ClientOpts::sni(MTLS).cert(&alice);
    tls12.versions = Some(vec![&rustls::version::TLS12]);
    let r = call(t.s.https, &tls12, MTLS, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_on_answers_400_without_a_valid_certificate() {
    // NGINX: "400 No required SSL certificate was sent" / "400 The SSL certificate error",
    // after a completed handshake (its verify callback never fails the handshake).
    let t = start(&[]).await;
    let other = Ca::new("Other CA");
    assert_refused(&get_as(&t.s, MTLS, None).await, "no certificate");
    assert_refused(&get_as(&t.s, MTLS, Some(&other.client("mallory"))).await, "another CA");
    assert_refused(&get_as(&t.s, MTLS, Some(&expired(&t.clients, "late"))).await, "expired");
    // A server certificate of the right CA is not a client certificate.
    let server = t.clients.server(&["svc.example.com"]);
    assert_refused(&get_as(&t.s, MTLS, Some(&server)).await, "no clientAuth usage");
    // Hosts without client certificates are untouched.
    assert_eq!(get_as(&t.s, WEB, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_admits_clients_without_a_certificate_but_not_with_a_bad_one() {
    let t = start(&[(VERIFY, "optional"), (PASS_CERT, "true")]).await;
    let r = get_as(&t.s, MTLS, None).await;
    assert_eq!(r.status, 200);
    // NGINX sends no header for an empty value: without a certificate only the verdict.
    assert_eq!(client_headers(&r), pairs(&[("ssl-client-verify", "NONE")]));

    let r = get_as(&t.s, MTLS, Some(&t.clients.client("bob"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(header(&r, "ssl-client-subject-dn").as_deref(), Some("CN=bob"));

    let other = Ca::new("Other CA");
    assert_refused(&get_as(&t.s, MTLS, Some(&other.client("mallory"))).await, "another CA");
    assert_refused(&get_as(&t.s, MTLS, Some(&expired(&t.clients, "late"))).await, "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_no_ca_passes_certificates_of_unknown_issuers_on_with_the_reason() {
    let t = start(&[(VERIFY, "optional_no_ca")]).await;
    let other = Ca::new("Other CA");
    let r = get_as(&t.s, MTLS, Some(&other.client("mallory"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        client_headers(&r),
        pairs(&[
            ("ssl-client-issuer-dn", "CN=Other CA"),
            ("ssl-client-subject-dn", "CN=mallory"),
            ("ssl-client-verify", UNKNOWN_ISSUER),
        ])
    );
    let r = get_as(&t.s, MTLS, Some(&t.clients.client("bob"))).await;
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));
    let r = get_as(&t.s, MTLS, None).await;
    assert_eq!((r.status.as_u16(), header(&r, "ssl-client-verify")), (200, Some("NONE".into())));
    // Only an unknown issuer is forgiven (NGINX's ngx_ssl_verify_error_optional): an expired
    // certificate of the listed CA is still "The SSL certificate error".
    assert_refused(&get_as(&t.s, MTLS, Some(&expired(&t.clients, "late"))).await, "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_off_asks_for_no_certificate_and_refuses_nobody() {
    let t = start(&[(VERIFY, "off")]).await;
    let other = Ca::new("Other CA");
    for cert in [None, Some(t.clients.client("bob")), Some(other.client("mallory"))] {
        let r = get_as(&t.s, MTLS, cert.as_ref()).await;
        assert_eq!(r.status, 200);
        // Not asked for, so not sent: the verdict is NONE, as NGINX's with verify off.
        assert_eq!(client_headers(&r), pairs(&[("ssl-client-verify", "NONE")]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_certificate_sends_the_url_escaped_pem_as_nginx_does() {
    let t = start(&[(PASS_CERT, "true")]).await;
    let bob = t.clients.client("bob");
    // OpenSSL's PEM of the certificate (what NGINX escapes) is the one rcgen wrote.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bob.pem"), &bob.cert).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["x509", "-in"]).arg(dir.path().join("bob.pem"));
    let openssl_pem = String::from_utf8(run(&mut cmd).await.stdout).unwrap();
    assert_eq!(openssl_pem, bob.cert);

    let r = get_as(&t.s, MTLS, Some(&bob)).await;
    assert_eq!(r.status, 200);
    let sent = header(&r, "ssl-client-cert").expect("an ssl-client-cert header");
    assert!(sent.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"), "{sent}");
    assert_eq!(sent, percent_encode(&openssl_pem));
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));

    // The other host does not ask for certificates and passes none on.
    let r = call(t.s.https, &ClientOpts::sni(MTLS).cert(&bob), WEB, &[]).await;
    assert_eq!((r.status.as_u16(), client_headers(&r)), (200, vec![]));
}

/// A root CA and client certificates chained to it through intermediates.
struct Pki {
    root: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let root = params.self_signed(&key).unwrap().pem();
        Pki { root, issuer: Issuer::new(params, key) }
    }

    /// A client certificate `cn` signed through `n` intermediate CAs; its `cert` is the chain
    /// a client sends (leaf first), `intermediates` the CAs alone.
    fn leaf_through(&self, n: usize, cn: &str) -> (Pem, String) {
        let mut issuers: Vec<Issuer<'static, KeyPair>> = Vec::new();
        let mut intermediates = Vec::new();
        for i in 0..n {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, format!("{cn} intermediate {i}"));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuers.last().unwrap_or(&self.issuer)).unwrap();
            intermediates.insert(0, cert.pem());
            issuers.push(Issuer::new(params, key));
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, issuers.last().unwrap_or(&self.issuer)).unwrap();
        let chain = intermediates.concat();
        (Pem { cert: leaf.pem() + &chain, key: key.serialize_pem() }, chain)
    }
}

/// What `openssl verify -verify_depth depth` (the setting NGINX's `ssl_verify_depth` makes)
/// says of `leaf` sent with `intermediates`, against `root`.
async fn openssl_accepts(root: &str, leaf: &Pem, intermediates: &str, depth: u8) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("root.pem"), root).unwrap();
    let leaf_only = leaf.cert.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap();
    std::fs::write(path("leaf.pem"), leaf_only).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-verify_depth", &depth.to_string(), "-CAfile"]).arg(path("root.pem"));
    if !intermediates.is_empty() {
        std::fs::write(path("chain.pem"), intermediates).unwrap();
        cmd.arg("-untrusted").arg(path("chain.pem"));
    }
    run(cmd.arg(path("leaf.pem"))).await.status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_depth_counts_intermediates_as_openssl_does() {
    // OpenSSL (and so NGINX) counts the CAs between the client's certificate and a trusted
    // one: the default depth 1 admits one intermediate, two need depth 2. A client that sends
    // the root along with its certificate uses no intermediate.
    let pki = Pki::new("Chain Root");
    let server_ca = Ca::new("Server CA");
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write(
        "server-tls.yaml",
        &tls::tls_secret("server-tls", &server_ca.server(&["*.example.com"])),
    );
    m.write("ca.yaml", &tls::ca_secret("roots", &pki.root));
    for (name, depth) in [("d1", None), ("d2", Some("2"))] {
        let mut a = vec![(SECRET, "roots")];
        a.extend(depth.map(|d| (DEPTH, d)));
        m.write(
            &format!("ing-{name}.yaml"),
            &secure_ingress(name, &format!("{name}.example.com"), &a),
        );
    }
    let s = Sluice::start(m.path(), &[]);

    let (direct, _) = pki.leaf_through(0, "direct");
    let (one, one_chain) = pki.leaf_through(1, "one");
    let (two, two_chain) = pki.leaf_through(2, "two");
    let mut direct_and_root = direct.clone();
    direct_and_root.cert.push_str(&pki.root);
    let mut one_and_root = one.clone();
    one_and_root.cert.push_str(&pki.root);
    let cases: [(&str, &Pem, &str, u8, bool); 7] = [
        ("direct", &direct, "", 1, true),
        ("one intermediate", &one, &one_chain, 1, true),
        ("two intermediates", &two, &two_chain, 1, false),
        ("two intermediates", &two, &two_chain, 2, true),
        ("one intermediate", &one, &one_chain, 2, true),
        ("direct, root sent along", &direct_and_root, &pki.root, 1, true),
        (
            "one intermediate, root sent along",
            &one_and_root,
            &(one_chain.clone() + &pki.root),
            1,
            true,
        ),
    ];
    for (what, cert, untrusted, depth, accepted) in cases {
        let host = format!("d{depth}.example.com");
        assert_eq!(
            openssl_accepts(&pki.root, cert, untrusted, depth).await,
            accepted,
            "openssl disagrees on {what} at depth {depth}"
        );
        let r = get_as(&s, &host, Some(cert)).await;
        if accepted {
            assert_eq!(r.status, 200, "{what} at depth {depth}");
            assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"), "{what}");
        } else {
            assert_refused(&r, &format!("{what} at depth {depth}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_cannot_send_their_own_ssl_client_headers() {
    let t = start(&[(VERIFY, "optional"), (PASS_CERT, "true")]).await;
    let forged = [
        ("ssl-client-verify", "SUCCESS"),
        ("SSL-Client-Subject-DN", "CN=admin"),
        ("ssl-client-issuer-dn", "CN=Client CA"),
        ("ssl-client-cert", "-----BEGIN%20CERTIFICATE-----%0Aforged"),
    ];
    // Without a certificate: the real verdict, nothing else.
    for opts in [ClientOpts::sni(MTLS), ClientOpts::sni(MTLS).h2()] {
        let r = call(t.s.https, &opts, MTLS, &forged).await;
        assert_eq!(client_headers(&r), pairs(&[("ssl-client-verify", "NONE")]));
    }
    // With one: the real values, once.
    let bob = t.clients.client("bob");
    let r = call(t.s.https, &ClientOpts::sni(MTLS).cert(&bob), MTLS, &forged).await;
    let got = client_headers(&r);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(header(&r, "ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(header(&r, "ssl-client-subject-dn").as_deref(), Some("CN=bob"));
    assert!(!header(&r, "ssl-client-cert").unwrap().contains("forged"));
    // A host without client certificates passes none of them on either.
    let r = call(t.s.https, &ClientOpts::sni(WEB), WEB, &forged).await;
    assert_eq!((r.status.as_u16(), client_headers(&r)), (200, vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_follows_the_request_host_not_the_handshake() {
    // A second mTLS host with its own CA: a certificate valid there must not open the first.
    let t = start(&[]).await;
    // Read before writing: with a 10 ms debounce the change can be in force before a read after.
    let g = t.s.generation().await;
    let partners = Ca::new("Partner CA");
    t.m.write("partner-ca.yaml", &tls::ca_secret("partner-ca", &partners.cert));
    let partner_tls = tls::tls_secret("partner-tls", &t.server_ca.server(&["partner.example.com"]));
    t.m.write("partner-tls.yaml", &partner_tls);
    t.m.write(
        "ing-partner.yaml",
        &with_tls(
            ingress(
                "partner",
                "partner.example.com",
                &[("/", "Prefix", "app")],
                &[(SECRET, "partner-ca")],
            ),
            &[(&["partner.example.com"], Some("partner-tls"))],
        ),
    );
    t.s.wait_generation_after(g).await;
    let alice = t.clients.client("alice");
    let partner = partners.client("partner");
    assert_eq!(get_as(&t.s, "partner.example.com", Some(&partner)).await.status, 200);

    // The handshake of a host that asks for no certificate, then the mTLS host's Host.
    assert_refused(
        &call(t.s.https, &ClientOpts::sni(WEB).cert(&alice), MTLS, &[]).await,
        "SNI web",
    );
    let no_sni = ClientOpts { client_cert: Some(alice.clone()), ..Default::default() };
    assert_refused(&call(t.s.https, &no_sni, MTLS, &[]).await, "no SNI");
    // Another mTLS host's handshake and valid certificate: checked again against this CA.
    let opts = ClientOpts::sni("partner.example.com").cert(&partner);
    assert_refused(&call(t.s.https, &opts, MTLS, &[]).await, "the partner's certificate");
    // Over h2 the same connection can carry both hosts: each request is judged by its own.
    let opts = ClientOpts::sni(MTLS).h2().cert(&alice);
    let r = call(t.s.https, &opts, MTLS, &[]).await;
    assert_eq!((r.status.as_u16(), header(&r, "ssl-client-verify")), (200, Some("SUCCESS".into())));
    assert_refused(
        &call(t.s.https, &opts, "partner.example.com", &[]).await,
        "alice at the partner",
    );
    // The other way round is allowed: the host asking for nothing gets nothing.
    let r = call(t.s.https, &opts, WEB, &[]).await;
    assert_eq!((r.status.as_u16(), client_headers(&r)), (200, vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_unreadable_ca_fails_the_host_closed() {
    let clients = Ca::new("Client CA");
    let server_ca = Ca::new("Server CA");
    let m = manifests(&[], &server_ca, &clients, echo("app").await);
    m.write(
        "broken.yaml",
        &tls::ca_secret(
            "broken",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        ),
    );
    m.write("empty.yaml", &tls::secret("empty", "Opaque", &[("other", "x")]));
    let hosts =
        [("missing", "default/nope"), ("broken", "default/broken"), ("empty", "default/empty")];
    for (name, secret) in hosts {
        m.write(
            &format!("ing-{name}.yaml"),
            &secure_ingress(name, &format!("{name}.example.com"), &[(SECRET, secret)]),
        );
    }
    let server = tls::tls_secret("server-tls", &server_ca.server(&["*.example.com"]));
    m.write("server-tls.yaml", &server);
    let s = Sluice::start(m.path(), &[]);
    let alice = clients.client("alice");

    for (name, _) in hosts {
        let r = get_as(&s, &format!("{name}.example.com"), Some(&alice)).await;
        assert_eq!(r.status, 503, "{name}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(get_as(&s, MTLS, Some(&alice)).await.status, 200, "the hosts with a CA work");
    assert_eq!(get_as(&s, WEB, None).await.status, 200);
    let diags = s.config().await["diagnostics"].to_string();
    for needle in
        ["MissingSecret", "default/nope", "InvalidSecret", "default/broken", "default/empty"]
    {
        assert!(diags.contains(needle), "{needle} in {diags}");
    }

    // The Secret appears: the host checks certificates again.
    let g = s.generation().await;
    m.write("nope.yaml", &tls::ca_secret("nope", &clients.cert));
    s.wait_generation_after(g).await;
    let host = "missing.example.com";
    let r = get_as(&s, host, Some(&alice)).await;
    assert_eq!((r.status.as_u16(), header(&r, "ssl-client-verify")), (200, Some("SUCCESS".into())));
    assert_refused(&get_as(&s, host, None).await, "no certificate once the CA is known");
}

/// Runs a command to completion (stdin empty), killing it if it takes longer than [`WAIT`].
async fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(WAIT, waited).await {
        Ok(out) => out.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} still running after {WAIT:?}");
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_and_openssl_as_clients() {
    let t = start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let alice = t.clients.client("alice");
    let (cert, key) = (write("alice.pem", &alice.cert), write("alice.key", &alice.key));
    let server_ca = write("server-ca.pem", &t.server_ca.cert);
    let port = t.s.https.port();
    let curl = |host: &str, with_cert: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "15", "-w", "\n%{http_code}", "--cacert"]).arg(&server_ca);
        cmd.arg("--resolve").arg(format!("{host}:{port}:127.0.0.1"));
        if with_cert {
            cmd.arg("--cert").arg(&cert).arg("--key").arg(&key);
        }
        cmd.arg(format!("https://{host}:{port}/curl"));
        cmd
    };
    let split = |out: &Output| {
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = all.rsplit_once('\n').unwrap_or(("", ""));
        (body.to_string(), code.to_string())
    };

    let out = run(&mut curl(MTLS, true)).await;
    assert!(out.status.success(), "{}", text(&out));
    let (body, code) = split(&out);
    assert_eq!(code, "200", "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["headers"]["ssl-client-verify"], "SUCCESS");
    assert_eq!(doc["headers"]["ssl-client-subject-dn"], "CN=alice");
    let out = run(&mut curl(MTLS, false)).await;
    assert_eq!(split(&out).1, "400", "{}", text(&out));
    let out = run(&mut curl(WEB, false)).await;
    assert_eq!(split(&out).1, "200", "{}", text(&out));

    // The certificate request names the host's CA (so clients can pick a certificate), and
    // only on the host that checks.
    let connect = t.s.https.to_string();
    let s_client = |host: &str| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &connect, "-servername", host]);
        cmd
    };
    let said = text(&run(&mut s_client(MTLS)).await);
    let names = said.split("Acceptable client certificate CA names").nth(1);
    assert!(names.is_some_and(|n| n.trim_start().starts_with("CN = Client CA")), "{said}");
    let said = text(&run(&mut s_client(WEB)).await);
    assert!(said.contains("No client certificate CA names sent"), "{said}");
}

// `auth-tls-match-cn` (ingress-nginx's `if ($ssl_client_s_dn !~ ...) { return 403; }`): a
// valid certificate whose subject DN does not match is refused with 403, as is a request
// without one when the certificate is optional; a matching one reaches the backend.
#[tokio::test(flavor = "multi_thread")]
async fn match_cn_refuses_other_subjects_with_403() {
    const MATCH_CN: &str = "nginx.ingress.kubernetes.io/auth-tls-match-cn";
    let t = start(&[(MATCH_CN, "CN=(alice|bob)"), (VERIFY, "optional")]).await;
    let alice = get_as(&t.s, MTLS, Some(&t.clients.client("alice"))).await;
    assert_eq!(alice.status, 200, "{}", String::from_utf8_lossy(&alice.body));
    assert_eq!(header(&alice, "ssl-client-subject-dn").as_deref(), Some("CN=alice"));
    let mallory = get_as(&t.s, MTLS, Some(&t.clients.client("mallory"))).await;
    assert_eq!(mallory.status, 403, "{}", String::from_utf8_lossy(&mallory.body));
    assert_eq!(get_as(&t.s, MTLS, None).await.status, 403, "no certificate, no subject");
    assert_eq!(get_as(&t.s, WEB, None).await.status, 200, "other hosts are untouched");

    // Not `CN=` and a regex: the host fails closed, with a diagnostic.
    let generation = t.s.generation().await;
    let invalid = [(SECRET, "default/ca"), (MATCH_CN, "alice")];
    t.m.write("ing-secure.yaml", &secure_ingress("secure", MTLS, &invalid));
    t.s.wait_generation_after(generation).await;
    assert_eq!(get_as(&t.s, MTLS, Some(&t.clients.client("alice"))).await.status, 503);
    let config = t.s.config().await;
    let text = config["diagnostics"].to_string();
    assert!(text.contains("auth-tls-match-cn") && text.contains("CN="), "{text}");
}

// `auth-tls-error-page` (ingress-nginx's `error_page 495 496 = <page>`): a refused
// certificate is redirected there (302) instead of answered 400.
#[tokio::test(flavor = "multi_thread")]
async fn error_page_redirects_refused_certificates() {
    const ERROR_PAGE: &str = "nginx.ingress.kubernetes.io/auth-tls-error-page";
    let t = start(&[(ERROR_PAGE, "https://login.example.com/cert-error")]).await;
    for (what, cert) in [("none", None), ("another CA", Some(Ca::new("Other CA").client("eve")))] {
        let r = get_as(&t.s, MTLS, cert.as_ref()).await;
        assert_eq!(r.status, 302, "{what}");
        assert_eq!(r.headers["location"], "https://login.example.com/cert-error", "{what}");
    }
    assert_eq!(get_as(&t.s, MTLS, Some(&t.clients.client("alice"))).await.status, 200);
}
