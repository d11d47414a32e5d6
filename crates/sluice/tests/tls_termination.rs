//! TLS termination end to end, with real clients (the harness's rustls client, `curl` and
//! `openssl s_client`) against the real binary: certificates chosen by SNI (exact, wildcard,
//! default), unusable Secrets, rotation under traffic, ALPN and TLS versions, `ssl-protocols`
//! and `ssl-ciphers`, HTTPS redirects and their ConfigMap keys, HSTS, the certificate expiry
//! metric, and the forwarding headers of HTTPS requests.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::{Ca, ClientOpts, Pem, tls_secret};
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// The subject CN of the certificate Sluice generates at start-up.
const FAKE: &str = "Sluice Ingress Controller Fake Certificate";
/// ingress-nginx's default `Strict-Transport-Security`.
const HSTS_DEFAULT: &str = "max-age=31536000; includeSubDomains";
/// The ConfigMap `--configmap` names in these tests.
const CONFIGMAP: &str = "default/sluice-config";

// ---------------------------------------------------------------------------------------
// Set-up helpers

/// How a host's Ingress asks for TLS.
#[derive(Clone, Copy)]
enum Tls<'a> {
    /// No `spec.tls` entry.
    Off,
    /// A `spec.tls` entry without `secretName`.
    NoSecret,
    /// A `spec.tls` entry naming this Secret.
    Secret(&'a str),
}

/// A manifests directory holding the `sluice` IngressClass.
fn manifests() -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m
}

/// A DNS label for `host` (Service, Ingress and file names).
fn label(host: &str) -> String {
    host.replace('*', "wildcard").replace('.', "-")
}

/// Serves `host` ("/" Prefix) from an echo backend of its own, named after the host, through
/// an Ingress of its own.
async fn add_host(m: &Manifests, host: &str, tls: Tls<'_>, annotations: &[(&str, &str)]) {
    let name = label(host);
    let backend = echo(host).await;
    m.write(&format!("svc-{name}.yaml"), &service(&name, &[backend]));
    let ing = ingress(&name, host, &[("/", "Prefix", name.as_str())], annotations);
    let ing = match tls {
        Tls::Off => ing,
        Tls::NoSecret => with_tls(ing, &[(&[host][..], None)]),
        Tls::Secret(secret) => with_tls(ing, &[(&[host][..], Some(secret))]),
    };
    m.write(&format!("ing-{name}.yaml"), &ing);
}

/// Writes the `kubernetes.io/tls` Secret `name`.
fn put_secret(m: &Manifests, name: &str, pem: &Pem) {
    m.write(&format!("secret-{name}.yaml"), &tls_secret(name, pem));
}

/// The ConfigMap [`CONFIGMAP`] with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// A calendar date: year, month, day.
type Date = (i32, u8, u8);

/// A CA-signed certificate for `host` (CN `host`) valid from 2024 until `not_after`, and that
/// instant as a Unix time.
fn cert_until(ca: &Ca, host: &str, not_after: Date) -> (Pem, i64) {
    let end = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let pem = ca.sign(&[host], host, |p| {
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = end;
    });
    (pem, end.unix_timestamp())
}

/// Waits until `check` holds, failing with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The messages of `/debug/config`'s diagnostics with `reason`.
async fn diagnostics(s: &Sluice, reason: &str) -> Vec<String> {
    let config = s.config().await;
    config["diagnostics"]
        .as_array()
        .expect("a diagnostics list")
        .iter()
        .filter(|d| d["reason"] == reason)
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// True when a diagnostic with `reason` mentions every one of `needles`.
async fn has_diagnostic(s: &Sluice, reason: &str, needles: &[&str]) -> bool {
    diagnostics(s, reason).await.iter().any(|m| needles.iter().all(|n| m.contains(n)))
}

// ---------------------------------------------------------------------------------------
// Client helpers

/// The subject CN of the certificate presented to a handshake with `sni` (`None`: no SNI).
async fn cert_for(addr: SocketAddr, sni: Option<&str>) -> String {
    let opts = ClientOpts { sni: sni.map(str::to_string), ..Default::default() };
    let stream = tls::connect(addr, &opts).await.expect("a TLS handshake");
    tls::seen(&stream).cn
}

/// GET `path` over a fresh TLS connection made with `opts`, with Host (`:authority`) `host`.
async fn https_get(
    addr: SocketAddr,
    opts: &ClientOpts,
    host: &str,
    path: &str,
) -> (Reply, tls::Seen) {
    let req = http::Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    tls::request(addr, opts, req).await.expect("an HTTPS exchange")
}

/// A plain-HTTP GET of `path` with Host `host` and extra headers.
async fn http_get(s: &Sluice, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request("GET", &s.url(path), Some(host), Bytes::new());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    send(&client(), req).await
}

/// A redirect's status and `Location`.
fn redirect(r: &Reply) -> (u16, &str) {
    let location = r.headers.get("location").map_or("", |l| l.to_str().unwrap());
    (r.status.as_u16(), location)
}

/// What a client process did.
#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program` (stdin closed) to its end, off the runtime's threads; fails the test if it
/// takes longer than [`WAIT`].
async fn run(program: &'static str, args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        let read_all = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = read_all(Box::new(child.stdout.take().unwrap()));
        let err = read_all(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} {args:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Run { ok: status.success(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
    })
    .await
    .unwrap()
}

/// `curl -sS` with `args` (bounded by `--max-time`).
async fn curl(args: &[&str]) -> Run {
    let mut all: Vec<String> = ["-sS", "--max-time", "20"].map(String::from).to_vec();
    all.extend(args.iter().map(|a| a.to_string()));
    run("curl", all).await
}

/// `--resolve` for `host` on `addr`'s port.
fn resolve(host: &str, addr: SocketAddr) -> String {
    format!("{host}:{}:127.0.0.1", addr.port())
}

/// `https://host:port{path}` for curl, with the port of `addr`.
fn https_url(host: &str, addr: SocketAddr, path: &str) -> String {
    format!("https://{host}:{}{path}", addr.port())
}

/// The subject line curl's verbose output shows for the server certificate.
fn curl_subject(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.trim_start_matches('*').trim().strip_prefix("subject: "))
        .unwrap_or_else(|| panic!("no subject in curl's output:\n{}", run.stderr))
        .to_string()
}

/// A CA certificate written to a file, for `curl --cacert`.
fn ca_file(ca: &Ca) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &ca.cert).unwrap();
    f
}

/// What `openssl s_client -brief` reported.
#[derive(Debug)]
struct Handshake {
    ok: bool,
    /// `TLSv1.2`, `TLSv1.3`.
    protocol: String,
    /// The OpenSSL name of the negotiated suite.
    cipher: String,
    /// The server certificate's subject CN.
    cn: String,
    output: String,
}

impl Handshake {
    /// True when the server refused the handshake with a TLS alert saying `why`
    /// (`handshake failure`, `protocol version`), rather than failing some other way.
    fn refused(&self, why: &str) -> bool {
        !self.ok && self.output.contains(&format!("alert {why}"))
    }
}

/// One handshake by `openssl s_client` with server name `sni` (`None`: no SNI) and `extra`
/// options (`-tls1_2`, `-cipher ...`).
async fn s_client(addr: SocketAddr, sni: Option<&str>, extra: &[&str]) -> Handshake {
    let mut args =
        vec!["s_client".to_string(), "-brief".into(), "-connect".into(), addr.to_string()];
    match sni {
        Some(name) => args.extend(["-servername".to_string(), name.to_string()]),
        None => args.push("-noservername".into()),
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let r = run("openssl", args).await;
    let output = format!("{}{}", r.stdout, r.stderr);
    let field = |key: &str| {
        output.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_string()
    };
    let cn = field("Peer certificate:");
    let cn = cn.split(", ").find_map(|p| p.strip_prefix("CN = ")).unwrap_or_default().to_string();
    Handshake {
        ok: r.ok && output.contains("CONNECTION ESTABLISHED"),
        protocol: field("Protocol version:"),
        cipher: field("Ciphersuite:"),
        cn,
        output,
    }
}

/// A line of `/metrics` for `name` carrying every `k="v"` of `labels`, and its value.
async fn metric(s: &Sluice, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = String::from_utf8(get(&s.admin_url("/metrics"), None).await.body.to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("a number"))
}

// ---------------------------------------------------------------------------------------
// 1. Certificates by server name

#[tokio::test(flavor = "multi_thread")]
async fn each_host_gets_its_own_certificate_by_sni() {
    let ca = Ca::new("sni CA");
    let m = manifests();
    let hosts = ["a.example.com", "b.example.com", "c.example.org"];
    for host in hosts {
        let secret = format!("{}-tls", label(host));
        put_secret(&m, &secret, &ca.server(&[host]));
        add_host(&m, host, Tls::Secret(&secret), &[]).await;
    }
    let s = Sluice::start(m.path(), &[]);
    let ca_pem = ca_file(&ca);
    let cacert = ca_pem.path().to_str().unwrap();

    for host in hosts {
        let (r, seen) = tls::get(s.https, host, "/").await;
        assert_eq!(seen.cn, host, "rustls client: the certificate for {host}");
        assert_eq!((r.status.as_u16(), r.backend()), (200, host.to_string()));

        // curl verifies the chain against the CA and the name against the URL.
        let out = curl(&[
            "--cacert",
            cacert,
            "--resolve",
            &resolve(host, s.https),
            &https_url(host, s.https, "/"),
        ])
        .await;
        assert!(out.ok, "curl verifies {host}'s certificate: {out:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["name"], host);

        let hs = s_client(s.https, Some(host), &[]).await;
        assert!(hs.ok, "{}", hs.output);
        assert_eq!(hs.cn, host, "openssl s_client: the certificate for {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exact_host_beats_a_wildcard_which_covers_one_label_only() {
    let ca = Ca::new("wildcard CA");
    let m = manifests();
    put_secret(&m, "exact-tls", &ca.server(&["exact.example.com"]));
    // The wildcard certificate would cover exact.example.com too: the exact host's own wins.
    put_secret(&m, "wild-tls", &ca.server(&["*.example.com"]));
    add_host(&m, "exact.example.com", Tls::Secret("exact-tls"), &[]).await;
    add_host(&m, "*.example.com", Tls::Secret("wild-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);

    assert_eq!(cert_for(s.https, Some("exact.example.com")).await, "exact.example.com");
    assert_eq!(cert_for(s.https, Some("Exact.Example.COM")).await, "exact.example.com");
    assert_eq!(cert_for(s.https, Some("other.example.com")).await, "*.example.com");
    assert_eq!(cert_for(s.https, Some("a.b.example.com")).await, FAKE, "one label only");
    assert_eq!(cert_for(s.https, Some("example.com")).await, FAKE, "not the parent itself");

    let (r, seen) = tls::get(s.https, "other.example.com", "/").await;
    assert_eq!((seen.cn.as_str(), r.backend().as_str()), ("*.example.com", "*.example.com"));

    let ca_pem = ca_file(&ca);
    let out = curl(&[
        "--cacert",
        ca_pem.path().to_str().unwrap(),
        "--resolve",
        &resolve("other.example.com", s.https),
        &https_url("other.example.com", s.https, "/"),
    ])
    .await;
    assert!(out.ok, "curl accepts the wildcard certificate for other.example.com: {out:?}");
    let hs = s_client(s.https, Some("deep.sub.example.com"), &[]).await;
    assert_eq!(hs.cn, FAKE, "{}", hs.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_sni_unknown_sni_and_tls_without_secret_get_the_generated_certificate() {
    let ca = Ca::new("default CA");
    let m = manifests();
    put_secret(&m, "named-tls", &ca.server(&["named.example.com"]));
    add_host(&m, "named.example.com", Tls::Secret("named-tls"), &[]).await;
    add_host(&m, "nosecret.example.com", Tls::NoSecret, &[]).await;
    let s = Sluice::start(m.path(), &[]);

    assert_eq!(cert_for(s.https, None).await, FAKE, "no SNI");
    assert_eq!(cert_for(s.https, Some("unknown.example.net")).await, FAKE, "unknown SNI");
    assert_eq!(cert_for(s.https, Some("named.example.com")).await, "named.example.com");

    // A `tls:` entry without secretName: the default certificate, yet a TLS host (served over
    // HTTPS, redirected from HTTP).
    let (r, seen) = tls::get(s.https, "nosecret.example.com", "/").await;
    assert_eq!((seen.cn.as_str(), r.status.as_u16()), (FAKE, 200));
    assert_eq!(r.backend(), "nosecret.example.com");
    assert_eq!(http_get(&s, "nosecret.example.com", "/x", &[]).await.status, 308);

    let hs = s_client(s.https, None, &[]).await;
    assert_eq!(hs.cn, FAKE, "openssl without SNI: {}", hs.output);
    let out = curl(&[
        "-k",
        "-v",
        "--resolve",
        &resolve("unknown.example.net", s.https),
        &https_url("unknown.example.net", s.https, "/"),
    ])
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(curl_subject(&out), format!("CN={FAKE}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn default_ssl_certificate_flag_replaces_the_generated_certificate() {
    let ca = Ca::new("fallback CA");
    let m = manifests();
    put_secret(&m, "fallback", &ca.sign(&["fallback.example.com"], "fallback", |_| {}));
    put_secret(&m, "own-tls", &ca.server(&["own.example.com"]));
    add_host(&m, "own.example.com", Tls::Secret("own-tls"), &[]).await;
    add_host(&m, "nosecret.example.com", Tls::NoSecret, &[]).await;
    add_host(&m, "missing.example.com", Tls::Secret("absent"), &[]).await;
    let s = Sluice::start(m.path(), &["--default-ssl-certificate", "default/fallback"]);

    assert_eq!(cert_for(s.https, None).await, "fallback", "no SNI");
    assert_eq!(cert_for(s.https, Some("unknown.example.net")).await, "fallback");
    assert_eq!(cert_for(s.https, Some("nosecret.example.com")).await, "fallback");
    assert_eq!(cert_for(s.https, Some("missing.example.com")).await, "fallback");
    assert_eq!(cert_for(s.https, Some("own.example.com")).await, "own.example.com");
    let hs = s_client(s.https, None, &["-tls1_2"]).await;
    assert_eq!((hs.ok, hs.cn.as_str()), (true, "fallback"), "{}", hs.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_default_ssl_certificate_leaves_the_generated_one_until_it_appears() {
    let ca = Ca::new("late CA");
    let m = manifests();
    add_host(&m, "app.example.com", Tls::NoSecret, &[]).await;
    let s = Sluice::start(m.path(), &["--default-ssl-certificate", "default/late"]);

    assert_eq!(cert_for(s.https, Some("app.example.com")).await, FAKE);
    assert!(
        has_diagnostic(&s, "MissingSecret", &["--default-ssl-certificate", "default/late"]).await,
        "{:?}",
        s.config().await["diagnostics"]
    );

    let g = s.generation().await;
    put_secret(&m, "late", &ca.sign(&["late.example.com"], "late", |_| {}));
    s.wait_generation_after(g).await;
    assert_eq!(cert_for(s.https, Some("app.example.com")).await, "late");
    assert_eq!(cert_for(s.https, None).await, "late");
}

/// The server name picks the certificate, the Host header the route, as with ingress-nginx
/// (NGINX picks the server block by Host once the handshake is done): a request whose Host
/// differs from its SNI is served by the Host's route, over the SNI's certificate, without
/// a 421. Clients that coalesce HTTP/2 connections across names rely on this.
#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_host_picks_the_route() {
    let ca = Ca::new("coalesce CA");
    let m = manifests();
    for host in ["a.example.com", "b.example.com"] {
        let secret = format!("{}-tls", label(host));
        put_secret(&m, &secret, &ca.server(&[host]));
        add_host(&m, host, Tls::Secret(&secret), &[]).await;
    }
    let s = Sluice::start(m.path(), &[]);

    for opts in [ClientOpts::sni("a.example.com"), ClientOpts::sni("a.example.com").h2()] {
        let (r, seen) = https_get(s.https, &opts, "b.example.com", "/").await;
        assert_eq!(seen.cn, "a.example.com", "the certificate follows SNI");
        assert_eq!((r.status.as_u16(), r.backend()), (200, "b.example.com".into()), "{seen:?}");
    }
    // An unknown server name: the default certificate, and still the Host's route.
    let opts = ClientOpts::sni("unknown.example.net");
    let (r, seen) = https_get(s.https, &opts, "a.example.com", "/").await;
    assert_eq!((seen.cn.as_str(), r.backend().as_str()), (FAKE, "a.example.com"));

    let ca_pem = ca_file(&ca);
    let out = curl(&[
        "--cacert",
        ca_pem.path().to_str().unwrap(),
        "--resolve",
        &resolve("a.example.com", s.https),
        "-H",
        "Host: b.example.com",
        &https_url("a.example.com", s.https, "/"),
    ])
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["name"],
        "b.example.com"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Unusable Secrets

#[tokio::test(flavor = "multi_thread")]
async fn unusable_secrets_fall_back_to_the_default_certificate_with_a_diagnostic() {
    let ca = Ca::new("bad secrets CA");
    let m = manifests();
    put_secret(&m, "good-tls", &ca.server(&["good.example.com"]));
    // "missing-tls" is never written.
    let good_key = ca.server(&["badpem.example.com"]).key;
    let corrupt = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string();
    put_secret(&m, "badpem-tls", &Pem { cert: corrupt, key: good_key });
    let stranger = ca.server(&["stranger.example.com"]);
    let badkey = Pem { key: stranger.key, ..ca.server(&["badkey.example.com"]) };
    put_secret(&m, "badkey-tls", &badkey);
    let (expired, _) = cert_until(&ca, "expired.example.com", (2024, 6, 1));
    put_secret(&m, "expired-tls", &expired);
    put_secret(&m, "wronghost-tls", &ca.server(&["elsewhere.example.com"]));
    let bad = [
        ("missing.example.com", "missing-tls", "MissingSecret", "does not exist"),
        ("badpem.example.com", "badpem-tls", "InvalidSecret", "tls.crt"),
        ("badkey.example.com", "badkey-tls", "InvalidSecret", "does not match its certificate"),
        ("expired.example.com", "expired-tls", "InvalidSecret", "expired"),
        ("wronghost.example.com", "wronghost-tls", "InvalidSecret", "elsewhere.example.com"),
    ];
    add_host(&m, "good.example.com", Tls::Secret("good-tls"), &[]).await;
    for (host, secret, _, _) in bad {
        add_host(&m, host, Tls::Secret(secret), &[]).await;
    }
    let s = Sluice::start(m.path(), &[]);

    let (r, seen) = tls::get(s.https, "good.example.com", "/").await;
    assert_eq!((seen.cn.as_str(), r.status.as_u16()), ("good.example.com", 200));
    for (host, secret, reason, why) in bad {
        let (r, seen) = tls::get(s.https, host, "/").await;
        assert_eq!(seen.cn, FAKE, "{host} falls back to the default certificate");
        assert_eq!((r.status.as_u16(), r.backend()), (200, host.to_string()), "{host} serves");
        // The key mismatch is found when the key is loaded, and reported on the Secret (with
        // the hosts it serves); the others on the Ingress, naming host and Secret.
        let needles: &[&str] =
            if secret == "badkey-tls" { &[host, why] } else { &[host, secret, why] };
        assert!(
            has_diagnostic(&s, reason, needles).await,
            "no {reason} diagnostic with {needles:?} in {:#?}",
            s.config().await["diagnostics"]
        );
    }
    let hs = s_client(s.https, Some("expired.example.com"), &[]).await;
    assert_eq!((hs.ok, hs.cn.as_str()), (true, FAKE), "{}", hs.output);
}

// ---------------------------------------------------------------------------------------
// 3. Rotation under traffic

/// Requests to `host` in a loop until stopped: each over a new TLS connection, and (in a
/// second task) over one kept-alive connection. Counts them, and records every failure.
struct Traffic {
    stop: Arc<AtomicBool>,
    /// Requests answered over the kept-alive connection so far.
    kept_count: Arc<AtomicUsize>,
    /// The certificate the kept-alive connection was set up with.
    kept_cn: String,
    fresh: tokio::task::JoinHandle<(usize, Vec<String>)>,
    kept: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    async fn start(addr: SocketAddr, host: &'static str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let fresh = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut n, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let req = http::Request::get(format!("https://{host}/fresh"))
                        .header("host", host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match tls::request(addr, &ClientOpts::sni(host), req).await {
                        Ok((r, _)) if r.status == 200 && r.backend() == host => n += 1,
                        Ok((r, seen)) => failures.push(format!("{} {seen:?}", r.status)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (n, failures)
            })
        };
        let stream = tls::connect(addr, &ClientOpts::sni(host)).await.expect("a TLS handshake");
        let kept_cn = tls::seen(&stream).cn;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let kept_count = Arc::new(AtomicUsize::new(0));
        let kept = {
            let (stop, count) = (stop.clone(), kept_count.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let req = http::Request::get("/kept")
                        .header("host", host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let sent = async {
                        sender.ready().await?;
                        let resp = sender.send_request(req).await?;
                        let status = resp.status();
                        http_body_util::BodyExt::collect(resp.into_body()).await?;
                        Ok::<_, hyper::Error>(status)
                    };
                    match tokio::time::timeout(WAIT, sent).await {
                        Ok(Ok(status)) if status == 200 => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(status)) => failures.push(format!("kept-alive: {status}")),
                        Ok(Err(e)) => {
                            failures.push(format!("kept-alive connection failed: {e}"));
                            break;
                        }
                        Err(_) => {
                            failures.push("kept-alive request timed out".into());
                            break;
                        }
                    }
                    // Leaves room for the fresh connections on a 2-core machine.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            })
        };
        Traffic { stop, kept_count, kept_cn, fresh, kept }
    }

    /// Waits until the kept-alive connection has answered `n` more requests.
    async fn kept_answers(&self, n: usize) {
        let target = self.kept_count.load(Ordering::Relaxed) + n;
        eventually("the kept-alive connection answers more requests", || async {
            self.kept_count.load(Ordering::Relaxed) >= target
        })
        .await;
    }

    /// Stops the traffic; fails the test if any request failed.
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (fresh, fresh_failures) = self.fresh.await.unwrap();
        let kept_failures = self.kept.await.unwrap();
        assert_eq!(fresh_failures, Vec::<String>::new(), "requests on new connections failed");
        assert_eq!(kept_failures, Vec::<String>::new(), "the kept-alive connection failed");
        assert!(fresh > 0, "requests were made on new connections");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_a_secret_under_traffic_fails_no_request() {
    let ca = Ca::new("rotation CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.sign(&["web.example.com"], "first", |_| {}));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(cert_for(s.https, Some("web.example.com")).await, "first");

    let traffic = Traffic::start(s.https, "web.example.com").await;
    assert_eq!(traffic.kept_cn, "first");
    traffic.kept_answers(3).await;

    put_secret(&m, "web-tls", &ca.sign(&["web.example.com"], "renewed", |_| {}));
    eventually("new handshakes present the renewed certificate", || async {
        cert_for(s.https, Some("web.example.com")).await == "renewed"
    })
    .await;
    // The connection set up before the rotation keeps serving after it.
    traffic.kept_answers(5).await;
    traffic.stop().await;
    assert_eq!(cert_for(s.https, Some("web.example.com")).await, "renewed", "and stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_then_restoring_a_secret_falls_back_and_recovers_under_traffic() {
    let ca = Ca::new("restore CA");
    let m = manifests();
    let pem = ca.sign(&["web.example.com"], "web", |_| {});
    put_secret(&m, "web-tls", &pem);
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);
    assert_eq!(cert_for(s.https, Some("web.example.com")).await, "web");

    let traffic = Traffic::start(s.https, "web.example.com").await;
    m.remove("secret-web-tls.yaml");
    eventually("the default certificate is presented", || async {
        cert_for(s.https, Some("web.example.com")).await == FAKE
    })
    .await;
    assert!(has_diagnostic(&s, "MissingSecret", &["web.example.com", "default/web-tls"]).await);
    traffic.kept_answers(3).await;

    put_secret(&m, "web-tls", &pem);
    eventually("the restored certificate is presented", || async {
        cert_for(s.https, Some("web.example.com")).await == "web"
    })
    .await;
    assert!(diagnostics(&s, "MissingSecret").await.is_empty(), "the diagnostic is resolved");
    traffic.kept_answers(3).await;
    traffic.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. ALPN, versions, ciphers

/// A Sluice serving `web.example.com` with a CA-signed certificate (ECDSA P-256, as rcgen
/// makes by default), and `args`; the manifests are kept for live changes.
async fn web(args: &[&str], cm: Option<&[(&str, &str)]>) -> (Sluice, Manifests, Ca) {
    let ca = Ca::new("web CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    let mut all = args.to_vec();
    if let Some(data) = cm {
        m.write("configmap.yaml", &configmap(data));
        all.extend(["--configmap", CONFIGMAP]);
    }
    (Sluice::start(m.path(), &all), m, ca)
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_negotiates_h2_or_http11_with_rustls() {
    let (s, _m, _ca) = web(&[], None).await;
    let host = "web.example.com";
    // (protocols offered, protocol chosen)
    for (alpn, expected) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], Some(&b"h2"[..])),
        (vec![b"http/1.1".to_vec()], Some(&b"http/1.1"[..])),
        (vec![], None),
    ] {
        let opts = ClientOpts { alpn: alpn.clone(), ..ClientOpts::sni(host) };
        let (r, seen) = https_get(s.https, &opts, host, "/alpn").await;
        assert_eq!(seen.alpn.as_deref(), expected, "offered {alpn:?}");
        assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, host));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_negotiates_h2_or_http11_with_curl() {
    let (s, _m, ca) = web(&[], None).await;
    let host = "web.example.com";
    let ca_pem = ca_file(&ca);
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl(&[
            flag,
            "--cacert",
            ca_pem.path().to_str().unwrap(),
            "--resolve",
            &resolve(host, s.https),
            "-w",
            "\n%{http_version}",
            &https_url(host, s.https, "/curl"),
        ])
        .await;
        assert!(out.ok, "{out:?}");
        let (body, got) = out.stdout.rsplit_once('\n').unwrap();
        assert_eq!(got, version, "curl {flag}");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((doc["name"].as_str(), doc["path"].as_str()), (Some(host), Some("/curl")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls12_and_tls13_are_accepted_by_default() {
    let (s, _m, _ca) = web(&[], None).await;
    let host = "web.example.com";
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let opts = ClientOpts { versions: Some(vec![version]), ..ClientOpts::sni(host) };
        let (r, seen) = https_get(s.https, &opts, host, "/").await;
        assert_eq!((seen.version, r.status.as_u16()), (expected, 200));
    }
    for (flag, expected) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let hs = s_client(s.https, Some(host), &[flag]).await;
        assert!(hs.ok, "{}", hs.output);
        assert_eq!((hs.protocol.as_str(), hs.cn.as_str()), (expected, host));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_protocols_tls13_only_refuses_tls12_clients() {
    let (s, _m, ca) = web(&[], Some(&[("ssl-protocols", "TLSv1.3")])).await;
    let host = "web.example.com";

    let tls12 =
        ClientOpts { versions: Some(vec![&rustls::version::TLS12]), ..ClientOpts::sni(host) };
    let refused = tls::connect(s.https, &tls12).await.expect_err("a TLS 1.2-only rustls client");
    assert!(refused.to_string().contains("ProtocolVersion"), "{refused}");
    let hs = s_client(s.https, Some(host), &["-tls1_2"]).await;
    assert!(hs.refused("protocol version"), "openssl -tls1_2 is refused: {}", hs.output);
    let ca_pem = ca_file(&ca);
    let out = curl(&[
        "--tls-max",
        "1.2",
        "--cacert",
        ca_pem.path().to_str().unwrap(),
        "--resolve",
        &resolve(host, s.https),
        &https_url(host, s.https, "/"),
    ])
    .await;
    assert!(!out.ok && out.stderr.contains("alert protocol version"), "curl refused: {out:?}");

    let hs = s_client(s.https, Some(host), &["-tls1_3"]).await;
    assert_eq!((hs.ok, hs.protocol.as_str()), (true, "TLSv1.3"), "{}", hs.output);
    let (r, seen) = tls::get(s.https, host, "/").await;
    assert_eq!((seen.version, r.status.as_u16()), (rustls::ProtocolVersion::TLSv1_3, 200));
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_ciphers_configmap_key_restricts_tls12_suites() {
    let (s, _m, _ca) =
        web(&[], Some(&[("ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-SHA")]))
            .await;
    let host = "web.example.com";

    let hs =
        s_client(s.https, Some(host), &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
            .await;
    assert!(hs.refused("handshake failure"), "a suite outside ssl-ciphers: {}", hs.output);
    let hs = s_client(s.https, Some(host), &["-tls1_2"]).await;
    assert!(hs.ok, "{}", hs.output);
    assert_eq!(hs.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384", "the one TLS 1.2 suite allowed");
    // TLS 1.3 suites are not governed by ssl-ciphers (as with NGINX).
    let hs = s_client(s.https, Some(host), &["-tls1_3"]).await;
    assert_eq!((hs.ok, hs.protocol.as_str()), (true, "TLSv1.3"), "{}", hs.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_ciphers_annotation_restricts_its_host_only() {
    let ca = Ca::new("ciphers CA");
    let m = manifests();
    for host in ["strict.example.com", "plain.example.com"] {
        let secret = format!("{}-tls", label(host));
        put_secret(&m, &secret, &ca.server(&[host]));
        let annotations: &[(&str, &str)] = if host.starts_with("strict") {
            &[("nginx.ingress.kubernetes.io/ssl-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305")]
        } else {
            &[]
        };
        add_host(&m, host, Tls::Secret(&secret), annotations).await;
    }
    let s = Sluice::start(m.path(), &[]);
    let aes128 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];

    let hs = s_client(s.https, Some("strict.example.com"), &aes128).await;
    assert!(hs.refused("handshake failure"), "the annotated host: {}", hs.output);
    let hs = s_client(s.https, Some("plain.example.com"), &aes128).await;
    assert_eq!((hs.ok, hs.cipher.as_str()), (true, "ECDHE-ECDSA-AES128-GCM-SHA256"), "{hs:?}");
    let hs = s_client(s.https, Some("strict.example.com"), &["-tls1_2"]).await;
    assert_eq!((hs.ok, hs.cipher.as_str()), (true, "ECDHE-ECDSA-CHACHA20-POLY1305"), "{hs:?}");
    let (r, _) = tls::get(s.https, "strict.example.com", "/").await;
    assert_eq!(r.status, 200, "TLS 1.3 clients are served");
}

// ---------------------------------------------------------------------------------------
// 5. Redirects

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_a_tls_host_is_redirected_with_308() {
    let ca = Ca::new("redirect CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    put_secret(&m, "ported-tls", &ca.server(&["ported.example.com"]));
    let ported = [("nginx.ingress.kubernetes.io/use-port-in-redirects", "true")];
    add_host(&m, "ported.example.com", Tls::Secret("ported-tls"), &ported).await;
    add_host(&m, "open.example.com", Tls::Off, &[]).await;
    let s = Sluice::start(m.path(), &[]);
    let https_port = s.https.port();

    let r = http_get(&s, "web.example.com", "/path/x?q=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://web.example.com/path/x?q=1");
    // The port the client used is dropped, as ingress-nginx does (HTTPS is on 443)...
    let r = http_get(&s, "web.example.com:8080", "/path/x", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://web.example.com/path/x");
    // ... unless use-port-in-redirects: then Sluice's HTTPS port is named.
    let r = http_get(&s, "ported.example.com:8080", "/path/x", &[]).await;
    assert_eq!(r.headers["location"], format!("https://ported.example.com:{https_port}/path/x"));
    // The trailing slash is dropped by default, as ingress-nginx does.
    let r = http_get(&s, "web.example.com", "/dir/", &[]).await;
    assert_eq!(r.headers["location"], "https://web.example.com/dir");
    // A host without TLS is served over plain HTTP.
    let r = http_get(&s, "open.example.com", "/path", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "open.example.com"));

    // curl follows the redirect to HTTPS and verifies the certificate there.
    let ca_pem = ca_file(&ca);
    let out = curl(&[
        "-L",
        "--cacert",
        ca_pem.path().to_str().unwrap(),
        "--resolve",
        &resolve("ported.example.com", s.http),
        "--resolve",
        &resolve("ported.example.com", s.https),
        "-w",
        "\n%{url_effective} %{num_redirects}",
        &format!("http://ported.example.com:{}/followed", s.http.port()),
    ])
    .await;
    assert!(out.ok, "{out:?}");
    let (body, summary) = out.stdout.rsplit_once('\n').unwrap();
    assert_eq!(summary, format!("https://ported.example.com:{https_port}/followed 1"));
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_redirect_false_serves_a_tls_host_over_plain_http() {
    let ca = Ca::new("no redirect CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    let no_redirect = [("nginx.ingress.kubernetes.io/ssl-redirect", "false")];
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &no_redirect).await;
    let s = Sluice::start(m.path(), &[]);

    let r = http_get(&s, "web.example.com", "/plain", &[]).await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "web.example.com"));
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");
    let (r, seen) = tls::get(s.https, "web.example.com", "/secure").await;
    assert_eq!((r.status.as_u16(), seen.cn.as_str()), (200, "web.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn force_ssl_redirect_redirects_a_host_without_tls() {
    let m = manifests();
    let force = [("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")];
    add_host(&m, "elb.example.com", Tls::Off, &force).await;
    add_host(&m, "open.example.com", Tls::Off, &[]).await;
    let s = Sluice::start(m.path(), &[]);

    let r = http_get(&s, "elb.example.com", "/x?y=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://elb.example.com/x?y=1");
    assert_eq!(http_get(&s, "open.example.com", "/x", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn preserve_trailing_slash_keeps_the_slash_in_redirects() {
    let ca = Ca::new("slash CA");
    let m = manifests();
    put_secret(&m, "keep-tls", &ca.server(&["keep.example.com"]));
    put_secret(&m, "strip-tls", &ca.server(&["strip.example.com"]));
    let keep = [("nginx.ingress.kubernetes.io/preserve-trailing-slash", "true")];
    add_host(&m, "keep.example.com", Tls::Secret("keep-tls"), &keep).await;
    add_host(&m, "strip.example.com", Tls::Secret("strip-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);

    let r = http_get(&s, "keep.example.com", "/dir/", &[]).await;
    assert_eq!(redirect(&r), (308, "https://keep.example.com/dir/"));
    let r = http_get(&s, "strip.example.com", "/dir/", &[]).await;
    assert_eq!(redirect(&r), (308, "https://strip.example.com/dir"));
}

/// cert-manager's HTTP-01 solver: an Ingress of its own for the challenge path on a host that
/// already has TLS (the usual renewal). The challenge must be answered over plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn acme_http01_challenges_are_served_over_plain_http() {
    let ca = Ca::new("acme CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    let solver = echo("solver").await;
    m.write("svc-solver.yaml", &service("cm-acme-http-solver", &[solver]));
    let path = "/.well-known/acme-challenge/Tok3n-xyz";
    m.write(
        "ing-solver.yaml",
        &ingress(
            "cm-acme-http-solver-x7k2p",
            "web.example.com",
            &[(path, "ImplementationSpecific", "cm-acme-http-solver")],
            &[],
        ),
    );
    let s = Sluice::start(m.path(), &[]);

    let r = http_get(&s, "web.example.com", path, &[]).await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "solver"), "{r:?}");
    assert_eq!(r.json()["path"], path);
    // The rest of the host is still redirected.
    assert_eq!(http_get(&s, "web.example.com", "/other", &[]).await.status, 308);
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_sets_the_redirect_code_and_the_exempt_locations() {
    let cm = [("http-redirect-code", "301"), ("no-tls-redirect-locations", "/public, /status")];
    let (s, _m, _ca) = web(&[], Some(&cm)).await;
    let host = "web.example.com";

    let r = http_get(&s, host, "/private", &[]).await;
    assert_eq!(redirect(&r), (301, "https://web.example.com/private"));
    for path in ["/public/x", "/status"] {
        let r = http_get(&s, host, path, &[]).await;
        assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, host), "{path}");
    }
    // The list replaces the default one, as with ingress-nginx.
    let r = http_get(&s, host, "/.well-known/acme-challenge/t", &[]).await;
    assert_eq!(r.status, 301);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_forwarded_proto_is_not_trusted_by_default() {
    let ca = Ca::new("untrusted CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    add_host(&m, "open.example.com", Tls::Off, &[]).await;
    let s = Sluice::start(m.path(), &[]);
    let claims = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-host", "evil.example"),
    ];

    let r = http_get(&s, "web.example.com", "/x", &claims).await;
    assert_eq!(r.status, 308, "a client saying it used HTTPS is still redirected");
    assert_eq!(r.headers["location"], "https://web.example.com/x", "nor names the redirect's host");
    let r = http_get(&s, "open.example.com", "/x", &claims).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-proto"], "http", "the client's claim is replaced");
    assert_eq!(h["x-forwarded-port"], s.http.port().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn use_forwarded_headers_trusts_forwarded_proto_from_a_tls_load_balancer() {
    let (s, _m, _ca) = web(&[], Some(&[("use-forwarded-headers", "true")])).await;
    let host = "web.example.com";

    let r = http_get(&s, host, "/behind-lb", &[("x-forwarded-proto", "https")]).await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, host), "no redirect loop");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    let r = http_get(&s, host, "/behind-lb", &[("x-forwarded-proto", "http")]).await;
    assert_eq!(r.status, 308, "plain HTTP at the load balancer is redirected");
    assert_eq!(r.headers["location"], "https://web.example.com/behind-lb");
    assert_eq!(http_get(&s, host, "/direct", &[]).await.status, 308);
    // The redirect names the host the load balancer was asked for (ingress-nginx's
    // `$best_http_host`: the first X-Forwarded-Host entry, without its port).
    let lb = [("x-forwarded-proto", "http"), ("x-forwarded-host", "www.example.com:8080, lb")];
    let r = http_get(&s, host, "/behind-lb?a=1", &lb).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://www.example.com/behind-lb?a=1");
}

// ---------------------------------------------------------------------------------------
// 6. HSTS

#[tokio::test(flavor = "multi_thread")]
async fn hsts_is_sent_over_https_and_never_over_plain_http() {
    let ca = Ca::new("hsts CA");
    let m = manifests();
    put_secret(&m, "web-tls", &ca.server(&["web.example.com"]));
    put_secret(&m, "both-tls", &ca.server(&["both.example.com"]));
    add_host(&m, "web.example.com", Tls::Secret("web-tls"), &[]).await;
    let no_redirect = [("nginx.ingress.kubernetes.io/ssl-redirect", "false")];
    add_host(&m, "both.example.com", Tls::Secret("both-tls"), &no_redirect).await;
    let s = Sluice::start(m.path(), &[]);

    for host in ["web.example.com", "both.example.com"] {
        for opts in [ClientOpts::sni(host), ClientOpts::sni(host).h2()] {
            let (r, _) = https_get(s.https, &opts, host, "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["strict-transport-security"], HSTS_DEFAULT, "{host}");
        }
    }
    let redirect = http_get(&s, "web.example.com", "/", &[]).await;
    assert_eq!(redirect.status, 308);
    assert!(redirect.headers.get("strict-transport-security").is_none(), "{redirect:?}");
    let plain = http_get(&s, "both.example.com", "/", &[]).await;
    assert_eq!(plain.status, 200);
    assert!(plain.headers.get("strict-transport-security").is_none(), "{plain:?}");

    let out = curl(&[
        "-k",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--resolve",
        &resolve("web.example.com", s.https),
        &https_url("web.example.com", s.https, "/"),
    ])
    .await;
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("strict-transport-security: {HSTS_DEFAULT}"))),
        "curl sees HSTS:\n{}",
        out.stdout
    );
}

/// Over HTTPS, hosts without `tls:` (served on the default certificate), unknown hosts and
/// Sluice's own answers get HSTS too. ingress-nginx means to send it only where a certificate
/// is configured, but its `lua_ingress.header()` tests the function
/// `certificate_configured_for_current_request` instead of calling it, so in practice every
/// HTTPS response of every server (`_` included) carries it: Sluice does the same. (Browsers
/// ignore HSTS received over a certificate they reject, RFC 6797 section 8.1.)
#[tokio::test(flavor = "multi_thread")]
async fn hsts_is_sent_on_every_https_response_as_ingress_nginx_does() {
    let m = manifests();
    add_host(&m, "open.example.com", Tls::Off, &[]).await;
    add_host(&m, "nosecret.example.com", Tls::NoSecret, &[]).await;
    let s = Sluice::start(m.path(), &[]);

    let (r, seen) = tls::get(s.https, "open.example.com", "/").await;
    assert_eq!((r.status.as_u16(), seen.cn.as_str()), (200, FAKE));
    assert_eq!(r.headers["strict-transport-security"], HSTS_DEFAULT, "a host without tls:");
    let (r, _) = tls::get(s.https, "nosecret.example.com", "/").await;
    assert_eq!(r.headers["strict-transport-security"], HSTS_DEFAULT, "tls: without a Secret");
    let (r, _) = tls::get(s.https, "unknown.example.net", "/").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["strict-transport-security"], HSTS_DEFAULT, "Sluice's own 404");
    // Never over plain HTTP, whatever the host.
    let r = http_get(&s, "open.example.com", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("strict-transport-security").is_none(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hsts_configmap_keys_shape_the_header() {
    let cm =
        [("hsts-max-age", "600"), ("hsts-include-subdomains", "false"), ("hsts-preload", "true")];
    let (s, m, _ca) = web(&[], Some(&cm)).await;
    let host = "web.example.com";

    let (r, _) = tls::get(s.https, host, "/").await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=600; preload");

    let g = s.generation().await;
    m.write("configmap.yaml", &configmap(&[("hsts-max-age", "600"), ("hsts-preload", "true")]));
    s.wait_generation_after(g).await;
    let (r, _) = tls::get(s.https, host, "/").await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=600; includeSubDomains; preload");

    let g = s.generation().await;
    m.write("configmap.yaml", &configmap(&[("hsts", "false")]));
    s.wait_generation_after(g).await;
    let (r, _) = tls::get(s.https, host, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("strict-transport-security").is_none(), "hsts: false: {r:?}");
}

// ---------------------------------------------------------------------------------------
// 7. Certificate expiry metric

const EXPIRE: &str = "nginx_ingress_controller_ssl_expire_time_seconds";

#[tokio::test(flavor = "multi_thread")]
async fn ssl_expire_time_metric_reports_not_after_and_follows_rotation() {
    let ca = Ca::new("metrics CA");
    let m = manifests();
    let (a, a_end) = cert_until(&ca, "a.example.com", (2031, 1, 2));
    let (b, b_end) = cert_until(&ca, "b.example.com", (2032, 3, 4));
    put_secret(&m, "a-tls", &a);
    put_secret(&m, "b-tls", &b);
    add_host(&m, "a.example.com", Tls::Secret("a-tls"), &[]).await;
    add_host(&m, "b.example.com", Tls::Secret("b-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);

    let labels = |host, secret| [("namespace", "default"), ("host", host), ("secret_name", secret)];
    assert_eq!(metric(&s, EXPIRE, &labels("a.example.com", "a-tls")).await, Some(a_end as f64));
    assert_eq!(metric(&s, EXPIRE, &labels("b.example.com", "b-tls")).await, Some(b_end as f64));

    let (renewed, renewed_end) = cert_until(&ca, "a.example.com", (2033, 5, 6));
    put_secret(&m, "a-tls", &renewed);
    eventually("the metric shows the renewed certificate's expiry", || async {
        metric(&s, EXPIRE, &labels("a.example.com", "a-tls")).await == Some(renewed_end as f64)
    })
    .await;
    assert_eq!(metric(&s, EXPIRE, &labels("b.example.com", "b-tls")).await, Some(b_end as f64));

    // b's Secret goes: b gets the generated certificate, and its series goes with it.
    m.remove("secret-b-tls.yaml");
    eventually("b's series is removed", || async {
        metric(&s, EXPIRE, &labels("b.example.com", "b-tls")).await.is_none()
    })
    .await;
    assert_eq!(
        metric(&s, EXPIRE, &labels("a.example.com", "a-tls")).await,
        Some(renewed_end as f64),
        "a's series stays"
    );
}

/// `/debug/certs` (what `kubectl sluice certs` shows): the certificate each name is presented,
/// chosen as the handshake chooses it, with its public fields only.
#[tokio::test(flavor = "multi_thread")]
async fn debug_certs_show_the_certificate_each_name_gets_and_never_a_key() {
    let ca = Ca::new("debug CA");
    let m = manifests();
    let (a, a_end) = cert_until(&ca, "a.example.com", (2031, 1, 2));
    let (wild, _) = cert_until(&ca, "*.apps.example.com", (2032, 3, 4));
    put_secret(&m, "a-tls", &a);
    put_secret(&m, "wild-tls", &wild);
    add_host(&m, "a.example.com", Tls::Secret("a-tls"), &[]).await;
    add_host(&m, "*.apps.example.com", Tls::Secret("wild-tls"), &[]).await;
    add_host(&m, "bare.example.com", Tls::NoSecret, &[]).await;
    let s = Sluice::start(m.path(), &[]);
    let json = |path: &str| {
        let url = s.admin_url(path);
        async move {
            let r = get(&url, None).await;
            assert_eq!(r.status, 200, "{url}");
            assert!(!String::from_utf8_lossy(&r.body).contains("PRIVATE"), "no key material");
            r.json()
        }
    };

    let one = json("/debug/certs/A.example.com").await;
    assert_eq!(one["host"], "a.example.com");
    assert_eq!(one["secret"], "default/a-tls");
    assert_eq!(one["default"], false);
    assert_eq!(one["subject"], "CN=a.example.com");
    assert_eq!(one["issuer"], "CN=debug CA");
    assert_eq!(one["names"], serde_json::json!(["a.example.com"]));
    assert_eq!(one["not_after"], "2031-01-02T00:00:00Z");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(one["days_left"], (a_end - now.as_secs() as i64).div_euclid(86_400));
    assert_eq!(cert_for(s.https, Some("a.example.com")).await, "a.example.com");

    let wildcard = json("/debug/certs/x.apps.example.com").await;
    assert_eq!(
        (wildcard["secret"].as_str(), wildcard["default"].as_bool()),
        (Some("default/wild-tls"), Some(false))
    );
    // A TLS host without a Secret, and a name no Ingress lists: the default certificate.
    for name in ["bare.example.com", "unknown.example.com"] {
        let fallback = json(&format!("/debug/certs/{name}")).await;
        assert_eq!(fallback["default"], true, "{name}");
        assert_eq!(fallback["secret"], serde_json::Value::Null, "{name}");
        assert_eq!(fallback["subject"], format!("CN={FAKE}"), "{name}");
        assert_eq!(cert_for(s.https, Some(name)).await, FAKE);
    }

    let all = json("/debug/certs").await;
    let hosts: Vec<&str> =
        all.as_array().unwrap().iter().map(|c| c["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["*.apps.example.com", "a.example.com", "_"]);
}

// ---------------------------------------------------------------------------------------
// 8. Forwarding headers of HTTPS requests

#[tokio::test(flavor = "multi_thread")]
async fn https_requests_reach_the_backend_with_https_forwarding_headers() {
    let (s, _m, ca) = web(&[], None).await;
    let host = "web.example.com";
    let port = s.https.port().to_string();

    for opts in [ClientOpts::sni(host), ClientOpts::sni(host).h2()] {
        let req = http::Request::get(format!("https://{host}/fwd?x=1"))
            .header("host", host)
            // Not trusted without use-forwarded-headers: replaced by what Sluice saw.
            .header("x-forwarded-proto", "http")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (r, seen) = tls::request(s.https, &opts, req).await.unwrap();
        let doc = r.json();
        let h = &doc["headers"];
        assert_eq!((doc["name"].as_str(), doc["path"].as_str()), (Some(host), Some("/fwd?x=1")));
        assert_eq!(h["x-forwarded-proto"], "https", "{seen:?}");
        assert_eq!(h["x-forwarded-scheme"], "https");
        assert_eq!(h["x-scheme"], "https");
        assert_eq!(h["x-forwarded-port"], port.as_str());
        assert_eq!(h["x-forwarded-host"], host);
        assert_eq!(h["host"], host);
    }

    let ca_pem = ca_file(&ca);
    let out = curl(&[
        "--cacert",
        ca_pem.path().to_str().unwrap(),
        "--resolve",
        &resolve(host, s.https),
        &https_url(host, s.https, "/curl"),
    ])
    .await;
    assert!(out.ok, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
    assert_eq!(doc["headers"]["x-forwarded-port"], port.as_str());
    assert_eq!(doc["host"], format!("{host}:{port}"), "curl's Host carries the port");
}

/// A Secret whose key does not match its certificate is not served (the host gets the default
/// certificate), so its expiry must not be reported for the host as if it were in use:
/// ingress-nginx never loads such a Secret.
#[tokio::test(flavor = "multi_thread")]
async fn ssl_expire_time_metric_omits_certificates_that_cannot_be_served() {
    let ca = Ca::new("metrics CA");
    let m = manifests();
    let (cert, _) = cert_until(&ca, "badkey.example.com", (2031, 1, 2));
    let stranger = ca.server(&["stranger.example.com"]);
    put_secret(&m, "badkey-tls", &Pem { key: stranger.key, ..cert });
    add_host(&m, "badkey.example.com", Tls::Secret("badkey-tls"), &[]).await;
    let s = Sluice::start(m.path(), &[]);

    assert_eq!(cert_for(s.https, Some("badkey.example.com")).await, FAKE);
    assert_eq!(metric(&s, EXPIRE, &[("secret_name", "badkey-tls")]).await, None);
}
