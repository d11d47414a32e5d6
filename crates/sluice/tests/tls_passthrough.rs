//! `nginx.ingress.kubernetes.io/ssl-passthrough` with `--enable-ssl-passthrough`: on the one
//! HTTPS port, connections whose ClientHello names a passthrough host are spliced, raw, to the
//! backend (which terminates TLS itself: its certificate, its ALPN), while other hosts are
//! terminated by Sluice. Covers big transfers and half-close through the splice, dead
//! backends, live toggling, the flag being off, and what `openssl s_client` and `curl` see.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::tls::{self, Ca, ClientOpts, Pem};
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASS: &str = "pass.example.com";
const WEB: &str = "web.example.com";
const PASSTHROUGH: (&str, &str) = ("nginx.ingress.kubernetes.io/ssl-passthrough", "true");
const FLAG: &str = "--enable-ssl-passthrough";
/// The CN of the certificate Sluice makes up when it has none for a host.
const FAKE_CN: &str = "Sluice Ingress Controller Fake Certificate";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server configuration presenting `pem`.
fn server_config(pem: &Pem) -> rustls::ServerConfig {
    let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes()).collect::<Result<_, _>>();
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.unwrap(), key)
        .unwrap()
}

/// A TLS echo backend named `name` with a certificate for `host` from `ca` (h2 and HTTP/1.1).
async fn tls_echo(name: &str, ca: &Ca, host: &str) -> SocketAddr {
    sluice::echo::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        name,
        server_config(&ca.server(&[host])),
    )
    .await
    .expect("TLS echo starts")
}

/// The bytes of a real ClientHello (rustls's) naming `sni`, as the first flight of a client.
fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A passthrough host and a terminated one on the same HTTPS port: `pass.example.com` goes,
/// raw, to the TLS echo `inside` (certificate from "Backend CA"); `web.example.com` is
/// terminated by Sluice with a certificate from "Sluice CA" and routed to the plain echo `app`.
struct Setup {
    m: Manifests,
    backend_ca: Ca,
    sluice_ca: Ca,
}

async fn setup() -> Setup {
    let backend_ca = Ca::new("Backend CA");
    let sluice_ca = Ca::new("Sluice CA");
    let inside = tls_echo("inside", &backend_ca, PASS).await;
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc-inside.yaml", &service("inside", &[inside]));
    m.write("svc-app.yaml", &service("app", &[app]));
    m.write("secret.yaml", &tls::tls_secret("web-tls", &sluice_ca.server(&[WEB])));
    m.write("ing-pass.yaml", &ingress("pass", PASS, &[("/", "Prefix", "inside")], &[PASSTHROUGH]));
    m.write(
        "ing-web.yaml",
        &with_tls(
            ingress("web", WEB, &[("/", "Prefix", "app")], &[]),
            &[(&[WEB], Some("web-tls"))],
        ),
    );
    Setup { m, backend_ca, sluice_ca }
}

/// GET `path` with SNI and Host `host` over a fresh TLS connection shaped by `opts`.
async fn get_with(
    addr: SocketAddr,
    opts: &ClientOpts,
    host: &str,
    path: &str,
) -> (Reply, tls::Seen) {
    let req = Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    tls::request(addr, opts, req).await.expect("an HTTPS exchange")
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_hosts_reach_the_backends_tls_and_other_hosts_are_terminated_by_sluice() {
    let t = setup().await;
    let s = Sluice::start(t.m.path(), &[FLAG]);

    // The backend terminates TLS: its certificate, the SNI as sent, and no proxy headers
    // (Sluice never saw the HTTP inside).
    let (r, seen) = tls::get(s.https, PASS, "/inside?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(seen.cn, PASS, "the backend's own certificate");
    let doc = r.json();
    assert_eq!(doc["name"], "inside");
    assert_eq!(doc["tls"], true);
    assert_eq!(doc["sni"], PASS);
    assert_eq!(doc["path"], "/inside?x=1");
    for h in ["x-forwarded-for", "x-request-id", "x-real-ip"] {
        assert!(doc["headers"].get(h).is_none(), "{h} added to a passed-through request: {doc}");
    }
    assert!(r.headers.get("server").is_none(), "no Server header from Sluice: {:?}", r.headers);

    // ALPN is the backend's too: h2 end to end.
    let (r, seen) = get_with(s.https, &ClientOpts::sni(PASS).h2(), PASS, "/h2").await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen.cn, PASS);
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["version"].as_str()),
        (Some("inside"), Some("HTTP/2.0"))
    );

    // Server names are case-insensitive.
    let (r, seen) = get_with(s.https, &ClientOpts::sni("PASS.Example.COM"), PASS, "/").await;
    assert_eq!((seen.cn.as_str(), r.backend().as_str()), (PASS, "inside"));

    // On the same port, another host is terminated by Sluice and routed as usual.
    let (r, seen) = tls::get(s.https, WEB, "/web").await;
    assert_eq!(r.status, 200);
    assert_eq!(seen.cn, WEB, "Sluice's certificate for the host");
    let doc = r.json();
    assert_eq!((doc["name"].as_str(), doc["tls"].as_bool()), (Some("app"), Some(false)));
    assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
    assert_eq!(r.headers["server"], "sluice");
    let (r, seen) = get_with(s.https, &ClientOpts::sni(WEB).h2(), WEB, "/web").await;
    assert_eq!((seen.alpn.as_deref(), seen.cn.as_str()), (Some(&b"h2"[..]), WEB));
    assert_eq!(r.backend(), "app");

    // Without a server name there is nothing to pass through: Sluice answers.
    let stream = tls::connect(s.https, &ClientOpts::default()).await.unwrap();
    assert_eq!(tls::seen(&stream).cn, FAKE_CN);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_flag_the_annotation_is_ignored_with_a_warning() {
    // As in ingress-nginx, the Ingress is then served like any other: TLS terminated by the
    // controller, requests routed to the Service. A plain backend shows that routing works.
    let plain = echo("plain").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("plain", &[plain]));
    m.write("ing.yaml", &ingress("pass", PASS, &[("/", "Prefix", "plain")], &[PASSTHROUGH]));
    let s = Sluice::start(m.path(), &[]);

    let (r, seen) = tls::get(s.https, PASS, "/").await;
    assert_eq!(seen.cn, FAKE_CN, "terminated by Sluice");
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "plain");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");

    let config = s.config().await;
    let diags = config["diagnostics"].as_array().expect("diagnostics");
    let warning = diags
        .iter()
        .find(|d| d["object"]["name"] == "pass")
        .unwrap_or_else(|| panic!("no diagnostic for the Ingress in {config}"));
    assert_eq!(warning["severity"], "Warning", "{warning}");
    assert_eq!(warning["reason"], "UnsupportedFeature", "{warning}");
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains("ssl-passthrough needs --enable-ssl-passthrough"), "{message}");
    assert!(message.contains(PASS), "{message}");
    s.wait_stderr(|l| l.contains("ssl-passthrough needs --enable-ssl-passthrough"));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_cross_the_splice_both_ways() {
    let t = setup().await;
    let s = Sluice::start(t.m.path(), &[FLAG]);
    const DOWN: usize = 5_000_000;
    const UP: usize = 8 * 1024 * 1024;

    for opts in [ClientOpts::sni(PASS), ClientOpts::sni(PASS).h2()] {
        let (r, seen) = get_with(s.https, &opts, PASS, &format!("/?bytes={DOWN}")).await;
        assert_eq!(seen.cn, PASS);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), DOWN, "alpn {:?}", seen.alpn);
        assert!(r.body.iter().all(|&b| b == b'x'), "the body arrived intact");

        let req = Request::post(format!("https://{PASS}/upload"))
            .header("host", PASS)
            .body(Full::new(Bytes::from(vec![b'u'; UP])))
            .unwrap();
        let (r, _) = tls::request(s.https, &opts, req).await.expect("an upload");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body_bytes"], UP, "alpn {:?}", seen.alpn);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_half_close_reaches_the_backend_and_its_answer_still_comes_back() {
    // The splice is plain TCP: a backend that reads until end of stream, then answers how
    // many bytes it got, shows the client's FIN was passed on while the way back stayed open.
    let counter = tcp_backend(|mut stream| async move {
        let mut got = Vec::new();
        if stream.read_to_end(&mut got).await.is_ok() {
            let _ = stream.write_all(format!("got {}", got.len()).as_bytes()).await;
        }
    })
    .await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("counter", &[counter]));
    m.write(
        "ing.yaml",
        &ingress("half", "half.example.com", &[("/", "Prefix", "counter")], &[PASSTHROUGH]),
    );
    let s = Sluice::start(m.path(), &[FLAG]);

    let mut sent = client_hello("half.example.com");
    sent.extend(std::iter::repeat_n(b'p', 300_000));
    let mut stream = tokio::net::TcpStream::connect(s.https).await.unwrap();
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives after the half-close")
        .unwrap();
    assert_eq!(answer, format!("got {}", sent.len()));
}

/// Sends a ClientHello for `host` on a raw connection and returns what came back before the
/// connection closed; panics if it stays open longer than [`WAIT`].
async fn closed_after_hello(addr: SocketAddr, host: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&client_hello(host)).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            Err(_) => panic!("the connection for {host} was left hanging"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_passthrough_backend_closes_the_connection_at_once() {
    let t = setup().await;
    let slammer = tcp_backend(|stream| async move { drop(stream) }).await;
    t.m.write("svc-down.yaml", &service("down", &[unused_addr()]));
    t.m.write("svc-slam.yaml", &service("slam", &[slammer]));
    t.m.write("svc-none.yaml", &service_with("none", &[], &[unused_addr()]));
    for (name, svc) in [("down", "down"), ("slam", "slam"), ("none", "none")] {
        let host = format!("{name}.example.com");
        t.m.write(
            &format!("ing-{name}.yaml"),
            &ingress(name, &host, &[("/", "Prefix", svc)], &[PASSTHROUGH]),
        );
    }
    let s = Sluice::start(t.m.path(), &[FLAG]);

    // Refused, accepted then closed, no ready endpoint: the client is told by a close, not
    // left waiting (and never gets Sluice's own handshake instead).
    for name in ["down", "slam", "none"] {
        let host = format!("{name}.example.com");
        let got = closed_after_hello(s.https, &host).await;
        assert!(got.is_empty(), "{host}: {} bytes came back", got.len());
        let err = tls::connect(s.https, &ClientOpts::sni(&host)).await.err();
        let err = err.unwrap_or_else(|| panic!("a TLS session with {host}"));
        assert!(!err.to_string().contains("timed out"), "{host}: {err}");
    }
    // The live hosts keep working.
    assert_eq!(tls::get(s.https, PASS, "/").await.0.backend(), "inside");
    assert_eq!(tls::get(s.https, WEB, "/").await.0.backend(), "app");
}

/// One TLS connection kept open for several HTTP/1.1 requests.
struct Kept {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    cn: String,
}

impl Kept {
    async fn open(addr: SocketAddr, host: &str) -> Kept {
        let stream = tls::connect(addr, &ClientOpts::sni(host)).await.unwrap();
        let cn = tls::seen(&stream).cn;
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Kept { send, cn }
    }

    async fn backend(&mut self, host: &str) -> String {
        let req = Request::get("/").header("host", host).body(Full::new(Bytes::new())).unwrap();
        let resp = tokio::time::timeout(WAIT, self.send.send_request(req)).await.unwrap().unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        doc["name"].as_str().unwrap_or_default().to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn toggling_the_annotation_live_changes_new_connections_only() {
    let t = setup().await;
    let plain = echo("plain").await;
    t.m.write("svc-plain.yaml", &service("plain", &[plain]));
    let s = Sluice::start(t.m.path(), &[FLAG]);
    let mut old = Kept::open(s.https, PASS).await;
    assert_eq!(old.cn, PASS);
    assert_eq!(old.backend(PASS).await, "inside");

    // Off: the host is now an ordinary Ingress (to a plain backend), terminated by Sluice.
    let g = s.generation().await;
    t.m.write("ing-pass.yaml", &ingress("pass", PASS, &[("/", "Prefix", "plain")], &[]));
    let g = s.wait_generation_after(g).await;
    let (r, seen) = tls::get(s.https, PASS, "/").await;
    assert_eq!((seen.cn.as_str(), r.backend().as_str()), (FAKE_CN, "plain"));
    // A connection spliced before the change stays with its backend.
    assert_eq!(old.backend(PASS).await, "inside");

    // On again: new connections are passed through again.
    t.m.write(
        "ing-pass.yaml",
        &ingress("pass", PASS, &[("/", "Prefix", "inside")], &[PASSTHROUGH]),
    );
    s.wait_generation_after(g).await;
    let (r, seen) = tls::get(s.https, PASS, "/").await;
    assert_eq!((seen.cn.as_str(), r.backend().as_str()), (PASS, "inside"));
    // The terminated host was never affected.
    assert_eq!(tls::get(s.https, WEB, "/").await.1.cn, WEB);
}

/// Runs a command to completion (stdin empty), killing it if it takes longer than [`WAIT`].
async fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let started = Instant::now();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(WAIT, waited).await {
        Ok(out) => out.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} still running after {:?}", started.elapsed());
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_and_curl_see_the_backends_certificate() {
    let t = setup().await;
    let s = Sluice::start(t.m.path(), &[FLAG]);
    let connect = s.https.to_string();

    // `openssl s_client -servername`: the subject is the backend's for the passthrough host,
    // Sluice's for the other, on the same port.
    for (host, issuer) in [(PASS, "Backend CA"), (WEB, "Sluice CA")] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &connect, "-servername", host, "-alpn", "h2,http/1.1"]);
        let out = run(cmd).await;
        let said = text(&out);
        let subject = regex::Regex::new(&format!(r"subject=\s*CN\s*=\s*{}", regex::escape(host)));
        assert!(subject.unwrap().is_match(&said), "{host}: {said}");
        assert!(
            said.contains(&format!("CN = {issuer}")) || said.contains(&format!("CN={issuer}")),
            "{host}: {said}"
        );
        assert!(said.contains("ALPN protocol: h2"), "{host}: {said}");
    }

    // curl verifies each certificate against its own CA: only the backend's passes for the
    // passthrough host.
    let dir = tempfile::tempdir().unwrap();
    let backend_ca = dir.path().join("backend-ca.pem");
    let sluice_ca = dir.path().join("sluice-ca.pem");
    std::fs::write(&backend_ca, &t.backend_ca.cert).unwrap();
    std::fs::write(&sluice_ca, &t.sluice_ca.cert).unwrap();
    let port = s.https.port();
    let curl = |host: &str, ca: &std::path::Path| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--http2", "--max-time", "15", "--cacert"])
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}/curl"));
        cmd
    };
    let out = run(curl(PASS, &backend_ca)).await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], "inside");
    assert_eq!(doc["sni"], PASS);
    assert_eq!(doc["version"], "HTTP/2.0");
    let out = run(curl(WEB, &sluice_ca)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["name"], "app");
    let out = run(curl(PASS, &sluice_ca)).await;
    assert!(!out.status.success(), "the passthrough host is not Sluice's: {}", text(&out));
}
