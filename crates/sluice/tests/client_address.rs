//! The client's address end to end, against the real binary in manifests mode: where Sluice
//! finds it and which forwarded headers it sends upstream, with ingress-nginx v1.15's
//! semantics (realip with `real_ip_recursive on`, `lua_ingress.lua`'s trust of the forwarded
//! headers, the `proxy_set_header` lines of `nginx.tmpl`). Covered, with the ingress-nginx
//! e2e scenarios they follow:
//!
//! - `use-forwarded-headers` (`test/e2e/settings/forwarded_headers.go`): the client's
//!   `X-Forwarded-Host` (first entry) becomes `Host`, its proto and port are passed on, its
//!   `X-Forwarded-For` gives the address; off by default, where Sluice's own values are sent and
//!   the client's go to `X-Original-Forwarded-For` / `-Host`;
//! - `enable-real-ip` (`enable_real_ip.go`): the address only, not the host, proto or port;
//! - `proxy-real-ip-cidr`: the rightmost untrusted address, an untrusted peer ignored, an
//!   invalid value failing closed (503, diagnostic), and `forwarded-for-header`;
//! - `compute-full-forwarded-for`: the client's list with the peer appended;
//! - spoofing: a forged `X-Forwarded-For` against the allow and deny lists, and what the
//!   default `0.0.0.0/0` lets through once `use-forwarded-headers` is on;
//! - `use-proxy-protocol` (`proxy_protocol.go`), raw TCP: v1 and v2 headers (built here byte by
//!   byte) on the HTTP and HTTPS ports, destination port 443 meaning HTTPS, `UNKNOWN`/`LOCAL`,
//!   an untrusted load balancer, with `use-forwarded-headers`, and connections without a
//!   header closed unanswered;
//! - a real load balancer: HAProxy (`send-proxy`, `send-proxy-v2`, `mode tcp`) in front of the
//!   HTTP and HTTPS ports, with the client connecting from 127.0.0.2, and the allow list seeing
//!   that address.
//!
//! Every plain-HTTP request is sent the ways Sluice's two paths carry it, and the answers must
//! be the same: two HTTP/1.1 GETs on one keep-alive connection (the fast path), a POST with a
//! chunked body (the general path), and two GETs over one h2c connection (the general path). With the
//! PROXY protocol, each connection starts with the header, so a second request on a connection
//! shows the header's address lasts as long as the connection.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::{Ca, tls_secret};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The ConfigMap `--configmap` names in these tests.
const CONFIGMAP: &str = "default/sluice-config";
const ALLOW: &str = "nginx.ingress.kubernetes.io/whitelist-source-range";
const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";
/// The path every request asks for.
const PATH: &str = "/client?q=1";
/// The headers whose values the backend is told, as these tests compare them.
const TRACKED: [&str; 10] = [
    "host",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-scheme",
    "x-original-forwarded-for",
    "x-original-forwarded-host",
];
/// The forwarded headers of ingress-nginx's e2e scenarios (forwarded_headers.go,
/// enable_real_ip.go).
const CLAIMS: [(&str, &str); 5] = [
    ("x-forwarded-port", "1234"),
    ("x-forwarded-proto", "myproto"),
    ("x-forwarded-scheme", "myproto"),
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-host", "myhost"),
];

// ---------------------------------------------------------------------------------------
// Set-up helpers

/// The ConfigMap [`CONFIGMAP`] with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    if data.is_empty() {
        s.push_str("  {}\n");
    }
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// A running Sluice with its manifests and the CA that signed its hosts' certificates.
struct Setup {
    m: Manifests,
    s: Sluice,
    ca: Ca,
}

/// Starts Sluice with ConfigMap `data` and, for each `(host, annotations)`, an Ingress sending
/// the host to one echo backend; hosts in `tls` get a `spec.tls` entry with a certificate
/// signed by the returned CA.
async fn start(data: &[(&str, &str)], hosts: &[(&str, &[(&str, &str)])], tls: &[&str]) -> Setup {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("cm.yaml", &configmap(data));
    m.write("svc.yaml", &service("app", &[echo("app").await]));
    let ca = Ca::new("client-address CA");
    for (host, annotations) in hosts {
        let name = host.replace('.', "-");
        let mut ing = ingress(&name, host, &[("/", "Prefix", "app")], annotations);
        if tls.contains(host) {
            m.write(&format!("secret-{name}.yaml"), &tls_secret(&name, &ca.server(&[*host])));
            ing = with_tls(ing, &[(&[*host][..], Some(&name))]);
        }
        m.write(&format!("ing-{name}.yaml"), &ing);
    }
    let s = Sluice::start(m.path(), &["--configmap", CONFIGMAP]);
    Setup { m, s, ca }
}

impl Setup {
    /// Replaces the ConfigMap's data and waits until the new table is in force.
    async fn reconfigure(&self, data: &[(&str, &str)]) {
        let generation = self.s.generation().await;
        self.m.write("cm.yaml", &configmap(data));
        self.s.wait_generation_after(generation).await;
    }
}

// ---------------------------------------------------------------------------------------
// What the backend was told

/// The [`TRACKED`] headers an echo backend received, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Told(BTreeMap<String, String>);

impl Told {
    /// What a backend is told of a request to `host` from `client`, over a connection to `port`
    /// with `proto`, when no forwarded header of the client's is believed or sent.
    fn plain(host: &str, client: &str, port: impl ToString, proto: &str) -> Told {
        let port = port.to_string();
        Told(BTreeMap::new()).set(&[
            ("host", host),
            ("x-forwarded-host", host),
            ("x-real-ip", client),
            ("x-forwarded-for", client),
            ("x-forwarded-port", &port),
            ("x-forwarded-proto", proto),
            ("x-forwarded-scheme", proto),
            ("x-scheme", proto),
        ])
    }

    /// With these headers set.
    fn set(mut self, pairs: &[(&str, &str)]) -> Told {
        for (k, v) in pairs {
            self.0.insert(k.to_string(), v.to_string());
        }
        self
    }

    /// One header's value.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// One answer: its status, and what the backend was told when it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    told: Option<Told>,
}

/// A 200 from the echo backend, which was told `told`.
fn ok(told: Told) -> Seen {
    Seen { status: 200, told: Some(told) }
}

/// A local answer with `status`.
fn refused(status: u16) -> Seen {
    Seen { status, told: None }
}

impl Seen {
    fn of(status: http::StatusCode, body: &[u8]) -> Seen {
        let told = (status == 200).then(|| {
            let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
                panic!("not an echo answer ({e}): {}", String::from_utf8_lossy(body))
            });
            assert_eq!(doc["path"], PATH, "{doc}");
            let h = &doc["headers"];
            Told(
                TRACKED
                    .iter()
                    .filter_map(|n| Some((n.to_string(), h[*n].as_str()?.to_string())))
                    .collect(),
            )
        });
        Seen { status: status.as_u16(), told }
    }

    /// What the backend was told (the answer must be the backend's).
    fn told(&self) -> &Told {
        self.told.as_ref().unwrap_or_else(|| panic!("no answer from the backend: {self:?}"))
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// How a test client reaches Sluice: the address it connects to, the local address it
/// connects from, and bytes written before anything else (a PROXY protocol header).
#[derive(Clone)]
struct Via {
    to: SocketAddr,
    from: Option<IpAddr>,
    preface: Vec<u8>,
}

impl Via {
    fn direct(to: SocketAddr) -> Via {
        Via { to, from: None, preface: Vec::new() }
    }

    /// Each connection starts with `header`.
    fn proxied(to: SocketAddr, header: impl Into<Vec<u8>>) -> Via {
        Via { to, from: None, preface: header.into() }
    }

    /// Connects from `ip` (any of 127/8 on Linux's loopback).
    fn from(mut self, ip: &str) -> Via {
        self.from = Some(ip.parse().unwrap());
        self
    }

    async fn connect(&self) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = self.from {
            socket.bind(SocketAddr::new(ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        }
        let mut stream = tokio::time::timeout(WAIT, socket.connect(self.to))
            .await
            .expect("connected in time")
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.to));
        stream.write_all(&self.preface).await.unwrap();
        stream
    }
}

/// A request for [`PATH`] on `host`: over h2 the host is the `:authority`, over HTTP/1.1 the
/// `Host` header. `headers` are appended (a name given twice makes two lines).
fn build(
    h2: bool,
    scheme: &str,
    method: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    let mut b = if h2 {
        http::Request::builder().uri(format!("{scheme}://{host}{PATH}"))
    } else {
        http::Request::builder().uri(PATH).header("host", host)
    };
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.method(method).body(Full::new(Bytes::from_static(body))).unwrap()
}

/// Sends `reqs` one after the other on one connection over `io` (h2 or HTTP/1.1 keep-alive);
/// returns the answers.
async fn on_one_connection<IO>(io: IO, h2: bool, reqs: Vec<http::Request<Full<Bytes>>>) -> Vec<Seen>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let mut out = Vec::new();
    let read = |resp: Result<http::Response<hyper::body::Incoming>, hyper::Error>| async {
        let (parts, body) = resp.expect("a response").into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Seen::of(parts.status, &body)
    };
    if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("an h2 connection");
        tokio::spawn(conn);
        for req in reqs {
            send.ready().await.expect("the h2 connection stays open");
            let resp = tokio::time::timeout(WAIT, send.send_request(req)).await.expect("in time");
            out.push(read(resp).await);
        }
    } else {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(io).await.expect("an HTTP/1.1 connection");
        tokio::spawn(conn);
        for req in reqs {
            send.ready().await.expect("the keep-alive connection stays open");
            let resp = tokio::time::timeout(WAIT, send.send_request(req)).await.expect("in time");
            out.push(read(resp).await);
        }
    }
    out
}

/// Asserts every answer of `all` is the same; returns it.
fn same(what: &str, all: Vec<(&str, Seen)>) -> Seen {
    let (first_way, first) = &all[0];
    for (way, seen) in &all[1..] {
        assert_eq!(seen, first, "{what}: {way} and {first_way} answer alike");
    }
    first.clone()
}

/// `GET`/`POST` [`PATH`] on `host` with `headers` over plain HTTP through `via`: two GETs on
/// one HTTP/1.1 keep-alive connection (the fast path), a POST with a chunked body (the general path)
/// and two GETs on one h2c connection (the general path). Asserts all answer alike and
/// returns the answer.
async fn ways(via: &Via, host: &str, headers: &[(&str, &str)]) -> Seen {
    let get = |h2| build(h2, "http", "GET", host, headers, b"");
    let fast = on_one_connection(via.connect().await, false, vec![get(false), get(false)]).await;
    let mut post = build(false, "http", "POST", host, headers, b"a request body");
    // Chunked (hyper honours the header): the fast path carries Content-Length bodies only.
    post.headers_mut().insert("transfer-encoding", http::HeaderValue::from_static("chunked"));
    let post = on_one_connection(via.connect().await, false, vec![post]).await;
    let h2c = on_one_connection(via.connect().await, true, vec![get(true), get(true)]).await;
    let labels = ["HTTP/1.1 GET", "a second GET on the connection", "POST"];
    let names = labels.into_iter().chain(["h2c GET", "a second h2c GET on the connection"]);
    same(
        &format!("{host} {headers:?}"),
        names.zip(fast.into_iter().chain(post).chain(h2c)).collect(),
    )
}

/// A TLS client trusting `ca`, offering `alpn`.
fn tls_connector(ca: &Ca, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET` [`PATH`] on `host` over HTTPS through `via` (server name `host`, certificate checked
/// against `ca`): two GETs and a POST on one HTTP/1.1 connection, two GETs on one h2
/// connection. Asserts all answer alike and returns the answer.
async fn https_ways(via: &Via, ca: &Ca, host: &str) -> Seen {
    let mut all = Vec::new();
    for (h2, alpn) in [(false, &b"http/1.1"[..]), (true, b"h2")] {
        let name = ServerName::try_from(host.to_string()).unwrap();
        let tls = tokio::time::timeout(
            WAIT,
            tls_connector(ca, &[alpn]).connect(name, via.connect().await),
        )
        .await
        .expect("a TLS handshake in time")
        .expect("a TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN as offered");
        let mut reqs = vec![
            build(h2, "https", "GET", host, &[], b""),
            build(h2, "https", "GET", host, &[], b""),
        ];
        if !h2 {
            reqs.push(build(h2, "https", "POST", host, &[], b"a request body"));
        }
        let way = if h2 { "h2" } else { "HTTP/1.1" };
        all.extend(on_one_connection(tls, h2, reqs).await.into_iter().map(|s| (way, s)));
    }
    same(&format!("https://{host}"), all)
}

// ---------------------------------------------------------------------------------------
// PROXY protocol headers

/// A PROXY protocol v1 line for TCP over IPv4 from `src` to `dst`.
fn proxy_v1(src: &str, dst: &str) -> Vec<u8> {
    let (src, dst): (SocketAddrV4, SocketAddrV4) = (src.parse().unwrap(), dst.parse().unwrap());
    format!("PROXY TCP4 {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

/// A PROXY protocol v2 header (`command` 0x21 PROXY or 0x20 LOCAL) for TCP over IPv4 from
/// `src` to `dst`, followed by `tlvs` (type, value): built by hand, as the specification lays
/// it out.
fn proxy_v2(command: u8, src: &str, dst: &str, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let (src, dst): (SocketAddrV4, SocketAddrV4) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut body = Vec::new();
    body.extend_from_slice(&src.ip().octets());
    body.extend_from_slice(&dst.ip().octets());
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    // Version 2 with the command; AF_INET over STREAM; the length of what follows.
    h.extend_from_slice(&[command, 0x11]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// A v2 `LOCAL` header (a load balancer's own health check), address family unspecified.
fn proxy_v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

// ---------------------------------------------------------------------------------------
// HAProxy

/// A running HAProxy (`haproxy -db`, in the foreground), killed on drop.
struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with one `mode tcp` frontend per `(server, option)`, on a free 127.0.0.1
    /// port, passing connections to `server` with `option` (`send-proxy`, `send-proxy-v2`);
    /// returns it with the frontends' addresses once each accepts connections.
    fn start(backends: &[(SocketAddr, &str)]) -> (Haproxy, Vec<SocketAddr>) {
        let bin = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "haproxy is not installed (looked for /usr/sbin/haproxy): install the \
                     Debian package `haproxy` (apt-get install haproxy; .ci/run installs it)"
                )
            });
        let dir = tempfile::tempdir().unwrap();
        let mut cfg =
            "global\n    maxconn 256\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
                       timeout client 60s\n    timeout server 60s\n"
                .to_string();
        let mut fronts = Vec::new();
        for (i, (server, option)) in backends.iter().enumerate() {
            let front = unused_addr();
            cfg.push_str(&format!(
                "frontend f{i}\n    bind {front}\n    default_backend b{i}\nbackend b{i}\n    \
                 server s1 {server} {option}\n"
            ));
            fronts.push(front);
        }
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, &cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let mut h = Haproxy { child, dir };
        let deadline = Instant::now() + WAIT;
        for front in &fronts {
            while std::net::TcpStream::connect(front).is_err() {
                if let Ok(Some(status)) = h.child.try_wait() {
                    panic!("haproxy exited with {status}:\n{cfg}\n{}", h.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy does not listen on {front}:\n{}",
                    h.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (h, fronts)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// use-forwarded-headers, enable-real-ip

// forwarded_headers.go and enable_real_ip.go: the same forwarded headers from the client,
// believed as the ConfigMap says. `use-forwarded-headers`: Host and X-Forwarded-Host are the
// client's X-Forwarded-Host (its first entry, as sent), proto, scheme and port are the client's
// (whoever the peer is: `lua_ingress.lua` checks no range), the address is its X-Forwarded-For
// (when the peer is in `proxy-real-ip-cidr`). `enable-real-ip`: only the address. Neither (the
// default, or either set to false): Sluice's own values. The client's X-Forwarded-For and
// X-Forwarded-Host always travel on as X-Original-Forwarded-For and -Host.
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_believed_as_the_configmap_says() {
    // ConfigMap → (host, proto and port believed, address believed).
    let cases: [(Pairs, bool, bool); 8] = [
        (&[("use-forwarded-headers", "true")], true, true),
        (&[("use-forwarded-headers", "false")], false, false),
        (&[], false, false),
        (&[("enable-real-ip", "true")], false, true),
        (&[("enable-real-ip", "false")], false, false),
        (&[("enable-real-ip", "true"), ("use-forwarded-headers", "true")], true, true),
        (&[("enable-real-ip", "false"), ("use-forwarded-headers", "true")], true, true),
        (&[("use-forwarded-headers", "true"), ("proxy-real-ip-cidr", "10.0.0.0/8")], true, false),
    ];
    let host = "forwarded-headers";
    let list = "myhost.com, another.host,example.net";
    for (data, headers, address) in cases {
        let t = start(data, &[(host, &[])], &[]).await;
        let via = Via::direct(t.s.http);
        let client = if address { "1.2.3.4" } else { "127.0.0.1" };
        let want = |xfh: &str, first: &str| {
            let told = match headers {
                true => Told::plain(first, client, 1234, "myproto"),
                false => Told::plain(host, client, t.s.http.port(), "http"),
            };
            ok(told.set(&[
                ("x-original-forwarded-for", "1.2.3.4"),
                ("x-original-forwarded-host", xfh),
            ]))
        };
        assert_eq!(ways(&via, host, &CLAIMS).await, want("myhost", "myhost"), "{data:?}");
        let mut claims = CLAIMS.to_vec();
        claims[4] = ("x-forwarded-host", list);
        assert_eq!(ways(&via, host, &claims).await, want(list, "myhost.com"), "{data:?}");
    }
}

// ---------------------------------------------------------------------------------------
// proxy-real-ip-cidr, forwarded-for-header, compute-full-forwarded-for

/// Header or ConfigMap pairs, `(name, value)`.
type Pairs<'a> = &'a [(&'a str, &'a str)];

/// A request's headers, and the `X-Real-IP` and `X-Forwarded-For` the backend must get.
type AddressRow<'a> = (Pairs<'a>, &'a str, &'a str);

/// For each ConfigMap of `groups` (applied in turn to one running Sluice), each request's
/// `(headers, X-Real-IP, X-Forwarded-For)`: the address the backend is told, and the upstream
/// X-Forwarded-For.
async fn check_addresses(groups: &[(Pairs<'_>, &[AddressRow<'_>])]) {
    let host = "addresses.example";
    let t = start(groups[0].0, &[(host, &[])], &[]).await;
    for (i, (data, rows)) in groups.iter().enumerate() {
        if i > 0 {
            t.reconfigure(data).await;
        }
        for (headers, real_ip, xff) in rows.iter() {
            let seen = ways(&Via::direct(t.s.http), host, headers).await;
            let told = seen.told();
            let what = format!("ConfigMap {data:?}, request headers {headers:?}: {told:?}");
            assert_eq!(told.get("x-real-ip"), Some(*real_ip), "X-Real-IP, {what}");
            assert_eq!(told.get("x-forwarded-for"), Some(*xff), "X-Forwarded-For, {what}");
        }
    }
}

// realip with `real_ip_recursive on`: with the default `0.0.0.0/0` every IPv4 hop is trusted,
// so the leftmost address wins (the walk stops at an IPv6 address, which 0.0.0.0/0 does not
// trust, and at a token that is not an address); narrowed, the rightmost address outside the
// ranges wins (the leftmost when all are inside), and a peer outside them is not listened to.
// `forwarded-for-header` names the header the address is read from (X-Forwarded-For is then
// ignored). Both `use-forwarded-headers` and `enable-real-ip` read it this way; the ConfigMap
// is changed under the running Sluice between groups.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_real_ip_cidr_decides_which_forwarded_address_is_the_client() {
    let chain: &[(&str, &str)] = &[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.0.0.5")];
    let two_lines: &[(&str, &str)] =
        &[("x-forwarded-for", "1.1.1.1, 2.2.2.2"), ("x-forwarded-for", "10.0.0.5")];
    let inner: &[(&str, &str)] = &[("x-forwarded-for", "10.0.0.7, 10.0.0.5")];
    check_addresses(&[
        (
            &[("use-forwarded-headers", "true")],
            &[
                (chain, "1.1.1.1", "1.1.1.1"),
                (two_lines, "1.1.1.1", "1.1.1.1"),
                (
                    &[("x-forwarded-for", "1.1.1.1, 2001:db8::1, 2.2.2.2")],
                    "2001:db8::1",
                    "2001:db8::1",
                ),
                (&[("x-forwarded-for", "1.1.1.1, unknown, 2.2.2.2")], "2.2.2.2", "2.2.2.2"),
                (&[("x-forwarded-for", "unknown")], "127.0.0.1", "127.0.0.1"),
                (&[("x-forwarded-for", "9.9.9.9:5678")], "9.9.9.9", "9.9.9.9"),
                (&[], "127.0.0.1", "127.0.0.1"),
            ],
        ),
        (
            &[
                ("use-forwarded-headers", "true"),
                ("proxy-real-ip-cidr", "127.0.0.1/32, 10.0.0.0/8"),
            ],
            &[
                (chain, "2.2.2.2", "2.2.2.2"),
                (two_lines, "2.2.2.2", "2.2.2.2"),
                (inner, "10.0.0.7", "10.0.0.7"),
            ],
        ),
        (
            &[("enable-real-ip", "true"), ("proxy-real-ip-cidr", "127.0.0.1/32, 10.0.0.0/8")],
            &[(chain, "2.2.2.2", "2.2.2.2")],
        ),
        (
            // The peer, 127.0.0.1, is not trusted: its header is ignored.
            &[("use-forwarded-headers", "true"), ("proxy-real-ip-cidr", "10.0.0.0/8")],
            &[(chain, "127.0.0.1", "127.0.0.1"), (inner, "127.0.0.1", "127.0.0.1")],
        ),
        (
            &[("use-forwarded-headers", "true"), ("forwarded-for-header", "X-Real-Client")],
            &[
                (
                    &[("x-real-client", "3.3.3.3"), ("x-forwarded-for", "1.2.3.4")],
                    "3.3.3.3",
                    "3.3.3.3",
                ),
                (&[("x-forwarded-for", "1.2.3.4")], "127.0.0.1", "127.0.0.1"),
            ],
        ),
    ])
    .await;
}

// nginx.tmpl's `proxy_set_header X-Original-Forwarded-For $http_<forwarded-for-header>`: the
// client's value of the header the address is read from travels on as
// X-Original-Forwarded-For, whatever its name.
#[tokio::test(flavor = "multi_thread")]
async fn x_original_forwarded_for_is_the_forwarded_for_header() {
    let host = "original.example";
    let data = [("use-forwarded-headers", "true"), ("forwarded-for-header", "X-Real-Client")];
    let t = start(&data, &[(host, &[])], &[]).await;
    let via = Via::direct(t.s.http);
    let seen =
        ways(&via, host, &[("x-real-client", "3.3.3.3"), ("x-forwarded-for", "1.2.3.4")]).await;
    let want = Told::plain(host, "3.3.3.3", t.s.http.port(), "http")
        .set(&[("x-original-forwarded-for", "3.3.3.3")]);
    assert_eq!(seen, ok(want));
    let seen = ways(&via, host, &[("x-real-client", "3.3.3.3")]).await;
    let want = Told::plain(host, "3.3.3.3", t.s.http.port(), "http")
        .set(&[("x-original-forwarded-for", "3.3.3.3")]);
    assert_eq!(seen, ok(want));
}

// `compute-full-forwarded-for` with `use-forwarded-headers`: the upstream X-Forwarded-For is
// `$http_x_forwarded_for, $realip_remote_addr` (the client's lines, joined, with the peer
// appended), or the peer alone; the address (X-Real-IP) is unchanged. Without
// `use-forwarded-headers` the key does nothing, even with `enable-real-ip`.
#[tokio::test(flavor = "multi_thread")]
async fn compute_full_forwarded_for_appends_the_peer() {
    let one: &[(&str, &str)] = &[("x-forwarded-for", "1.2.3.4")];
    check_addresses(&[
        (
            &[("use-forwarded-headers", "true"), ("compute-full-forwarded-for", "true")],
            &[
                (one, "1.2.3.4", "1.2.3.4, 127.0.0.1"),
                (&[], "127.0.0.1", "127.0.0.1"),
                (
                    &[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2")],
                    "1.1.1.1",
                    "1.1.1.1, 2.2.2.2, 127.0.0.1",
                ),
            ],
        ),
        (
            // The peer is not trusted: the address is the peer's, the list still grows.
            &[
                ("use-forwarded-headers", "true"),
                ("compute-full-forwarded-for", "true"),
                ("proxy-real-ip-cidr", "10.0.0.0/8"),
            ],
            &[(one, "127.0.0.1", "1.2.3.4, 127.0.0.1")],
        ),
        (&[("compute-full-forwarded-for", "true")], &[(one, "127.0.0.1", "127.0.0.1")]),
        (
            &[("enable-real-ip", "true"), ("compute-full-forwarded-for", "true")],
            &[(one, "1.2.3.4", "1.2.3.4")],
        ),
    ])
    .await;
}

// A `proxy-real-ip-cidr` that does not parse, alone or as one entry of a list: every route
// answers 503 (trusting everyone instead would let any client choose its address), with a
// diagnostic naming the key and the value in /debug/config; a valid value restores the routes.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_proxy_real_ip_cidr_fails_closed() {
    let hosts: [(&str, &[(&str, &str)]); 2] =
        [("one.example", &[]), ("two.example", &[(ALLOW, "0.0.0.0/0")])];
    let with = |cidr| [("use-forwarded-headers", "true"), ("proxy-real-ip-cidr", cidr)];
    let t = start(&with("not-a-cidr"), &hosts, &[]).await;
    let via = Via::direct(t.s.http);
    for (i, cidr) in ["not-a-cidr", "10.0.0.0/8, not-a-cidr"].into_iter().enumerate() {
        if i > 0 {
            t.reconfigure(&with(cidr)).await;
        }
        for (host, _) in hosts {
            assert_eq!(ways(&via, host, &[]).await, refused(503), "{cidr:?}: {host}");
        }
        let config = t.s.config().await;
        let found = config["diagnostics"].as_array().expect("a diagnostics list").iter().any(|d| {
            let message = d["message"].as_str().unwrap_or_default();
            d["reason"] == "InvalidConfigMapKey"
                && d["object"]["name"] == "sluice-config"
                && message.contains("proxy-real-ip-cidr")
                && message.contains("not-a-cidr")
        });
        assert!(found, "{cidr:?}: no diagnostic about it in {:#}", config["diagnostics"]);
    }
    t.reconfigure(&with("10.0.0.0/8")).await;
    let port = t.s.http.port();
    for (host, _) in hosts {
        assert_eq!(ways(&via, host, &[]).await, ok(Told::plain(host, "127.0.0.1", port, "http")));
    }
}

// ---------------------------------------------------------------------------------------
// Spoofing

// A client at 127.0.0.1 claims `X-Forwarded-For: 10.1.1.1` to get past an Ingress allow list
// (`whitelist-source-range: 10.0.0.0/8`) or out of a deny list (`denylist-source-range:
// 127.0.0.1/32`). Not believed without `use-forwarded-headers`/`enable-real-ip`, nor when the
// peer is outside `proxy-real-ip-cidr`: 403 both. With `use-forwarded-headers` and the default
// `proxy-real-ip-cidr` (0.0.0.0/0: every IPv4 peer is trusted), the claim IS believed, as in
// ingress-nginx: that is what operators get with the default, and why `proxy-real-ip-cidr`
// must name the load balancers when clients can reach Sluice directly.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_forwarded_for_gets_past_the_address_lists_only_when_trusted() {
    let hosts: [(&str, &[(&str, &str)]); 3] = [
        ("open.example", &[]),
        ("allow.example", &[(ALLOW, "10.0.0.0/8")]),
        ("deny.example", &[(DENY, "127.0.0.1/32")]),
    ];
    let forged: &[(&str, &str)] = &[("x-forwarded-for", "10.1.1.1")];
    // ConfigMap → whether the forged address is believed.
    let cases: [(&[(&str, &str)], bool); 6] = [
        (&[], false),
        (&[("use-forwarded-headers", "false"), ("enable-real-ip", "false")], false),
        (&[("use-forwarded-headers", "true"), ("proxy-real-ip-cidr", "10.0.0.0/8")], false),
        (&[("enable-real-ip", "true"), ("proxy-real-ip-cidr", "10.0.0.0/8")], false),
        (&[("use-forwarded-headers", "true")], true),
        (&[("enable-real-ip", "true")], true),
    ];
    let t = start(cases[0].0, &hosts, &[]).await;
    let via = Via::direct(t.s.http);
    let port = t.s.http.port();
    for (i, (data, believed)) in cases.into_iter().enumerate() {
        if i > 0 {
            t.reconfigure(data).await;
        }
        // Without the header, the lists see 127.0.0.1.
        assert_eq!(ways(&via, "allow.example", &[]).await, refused(403), "{data:?}");
        assert_eq!(ways(&via, "deny.example", &[]).await, refused(403), "{data:?}");
        let open = ways(&via, "open.example", forged).await;
        let (allow, deny) =
            (ways(&via, "allow.example", forged).await, ways(&via, "deny.example", forged).await);
        let client = if believed { "10.1.1.1" } else { "127.0.0.1" };
        let told = |host| {
            let t = Told::plain(host, client, port, "http");
            ok(t.set(&[("x-original-forwarded-for", "10.1.1.1")]))
        };
        assert_eq!(open, told("open.example"), "{data:?}");
        if believed {
            assert_eq!(
                allow,
                told("allow.example"),
                "{data:?}: the allow list believes the header"
            );
            assert_eq!(deny, told("deny.example"), "{data:?}: the deny list believes the header");
        } else {
            assert_eq!(allow, refused(403), "{data:?}: a forged address passed the allow list");
            assert_eq!(deny, refused(403), "{data:?}: a forged address escaped the deny list");
        }
    }
}

// ---------------------------------------------------------------------------------------
// PROXY protocol, raw

// proxy_protocol.go, scenarios "should respect port passed by the PROXY Protocol" (and 443 →
// https) and "…over HTTPS": with `use-proxy-protocol`, the header's source is the client
// (X-Real-IP, X-Forwarded-For) and its destination port the X-Forwarded-Port, 443 making the
// request HTTPS; v1 (TCP4, TCP6, UNKNOWN) and v2 (PROXY, with TLVs, LOCAL) alike. `UNKNOWN`
// and `LOCAL` say nothing: the connection's own address and port stand. On the HTTPS port the
// header comes before the TLS handshake.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_headers_name_the_client_and_the_port() {
    let (host, secure) = ("proxy-protocol", "secure.example.com");
    let t =
        start(&[("use-proxy-protocol", "true")], &[(host, &[]), (secure, &[])], &[secure]).await;
    let port = t.s.http.port();
    let (src, dst, dst443) = ("192.168.0.1:56324", "192.168.0.11:1234", "192.168.0.11:443");
    let authority: &[u8] = b"lb.example";
    let cases: [(&str, Vec<u8>, Told); 9] = [
        ("v1", proxy_v1(src, dst), Told::plain(host, "192.168.0.1", 1234, "http")),
        ("v1 to 443", proxy_v1(src, dst443), Told::plain(host, "192.168.0.1", 443, "https")),
        (
            "v1 TCP6",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 8080\r\n".to_vec(),
            Told::plain(host, "2001:db8::1", 8080, "http"),
        ),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), Told::plain(host, "127.0.0.1", port, "http")),
        (
            "v1 UNKNOWN with addresses",
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec(),
            Told::plain(host, "127.0.0.1", port, "http"),
        ),
        ("v2", proxy_v2(0x21, src, dst, &[]), Told::plain(host, "192.168.0.1", 1234, "http")),
        (
            "v2 to 443",
            proxy_v2(0x21, src, dst443, &[]),
            Told::plain(host, "192.168.0.1", 443, "https"),
        ),
        (
            "v2 with TLVs",
            proxy_v2(0x21, src, dst, &[(0x02, authority), (0xEA, b"\x01vpce-0123")]),
            Told::plain(host, "192.168.0.1", 1234, "http"),
        ),
        ("v2 LOCAL", proxy_v2_local(), Told::plain(host, "127.0.0.1", port, "http")),
    ];
    for (what, header, want) in cases {
        let seen = ways(&Via::proxied(t.s.http, header), host, &[]).await;
        assert_eq!(seen, ok(want), "{what}");
    }
    // Over HTTPS: X-Forwarded-Proto is https whatever the port.
    let https = [
        ("v1", proxy_v1(src, dst), Told::plain(secure, "192.168.0.1", 1234, "https")),
        (
            "v2 to 443",
            proxy_v2(0x21, src, dst443, &[]),
            Told::plain(secure, "192.168.0.1", 443, "https"),
        ),
        ("v2 LOCAL", proxy_v2_local(), Told::plain(secure, "127.0.0.1", t.s.https.port(), "https")),
    ];
    for (what, header, want) in https {
        let seen = https_ways(&Via::proxied(t.s.https, header), &t.ca, secure).await;
        assert_eq!(seen, ok(want), "HTTPS, {what}");
    }
}

// The load balancer (here 127.0.0.1) is outside `proxy-real-ip-cidr`: the header's source is
// not believed (NGINX's `real_ip_header proxy_protocol` with `set_real_ip_from`), but its
// destination port still is the X-Forwarded-Port (`$proxy_protocol_server_port`, always used
// with `use-proxy-protocol`), and 443 still means HTTPS.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_from_an_untrusted_load_balancer_names_no_client() {
    let (host, listed) = ("proxy-protocol", "listed.example");
    let data = [("use-proxy-protocol", "true"), ("proxy-real-ip-cidr", "10.0.0.0/8")];
    let t = start(&data, &[(host, &[]), (listed, &[(ALLOW, "192.168.0.0/16")])], &[]).await;
    let src = "192.168.0.1:56324";
    for (header, port, proto) in [
        (proxy_v1(src, "192.168.0.11:1234"), 1234, "http"),
        (proxy_v2(0x21, src, "192.168.0.11:443", &[]), 443, "https"),
    ] {
        let via = Via::proxied(t.s.http, header);
        assert_eq!(ways(&via, host, &[]).await, ok(Told::plain(host, "127.0.0.1", port, proto)));
        // The allow list takes in 192.168.0.1, not the load balancer's 127.0.0.1.
        assert_eq!(ways(&via, listed, &[]).await, refused(403));
    }
}

// proxy_protocol.go with `use-forwarded-headers` ("should (not) trust X-Forwarded headers when
// the client IP address is (not) trusted"): the client behind the load balancer sent
// X-Forwarded-For. With the default range the PROXY source (192.168.0.1) is trusted, so the
// address is the X-Forwarded-For's (192.168.0.111; the e2e test's `Contains` cannot tell).
// With the load balancer and the PROXY source trusted, the same; with only the load balancer
// trusted, the PROXY source. X-Forwarded-Port stays the header's destination port.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_with_forwarded_headers() {
    let host = "proxy-protocol";
    let header = proxy_v1("192.168.0.1:56324", "192.168.0.11:1234");
    let xff: &[(&str, &str)] = &[("x-forwarded-for", "192.168.0.111")];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "192.168.0.111"),
        (&[("proxy-real-ip-cidr", "127.0.0.1/32, 192.168.0.1/32")], "192.168.0.111"),
        (&[("proxy-real-ip-cidr", "127.0.0.1/32")], "192.168.0.1"),
    ];
    for (extra, client) in cases {
        let mut data = vec![("use-proxy-protocol", "true"), ("use-forwarded-headers", "true")];
        data.extend_from_slice(extra);
        let t = start(&data, &[(host, &[])], &[]).await;
        let seen = ways(&Via::proxied(t.s.http, header.clone()), host, xff).await;
        let want = Told::plain(host, client, 1234, "http")
            .set(&[("x-original-forwarded-for", "192.168.0.111")]);
        assert_eq!(seen, ok(want), "{data:?}");
    }
}

// `lua_ingress.lua` with `use-proxy-protocol` and `use-forwarded-headers`: a PROXY header
// whose destination port is 443 makes `$pass_access_scheme` https AFTER the client's
// X-Forwarded-Proto was read, so the port wins over the claim (X-Forwarded-Port, read
// before, stays the client's).
#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_port_443_outranks_a_forwarded_proto() {
    let host = "proxy-protocol";
    let data = [("use-proxy-protocol", "true"), ("use-forwarded-headers", "true")];
    let t = start(&data, &[(host, &[])], &[]).await;
    let header = proxy_v2(0x21, "192.168.0.1:56324", "192.168.0.11:443", &[]);
    let claims = [
        ("x-forwarded-for", "192.168.0.111"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-port", "8443"),
    ];
    let seen = ways(&Via::proxied(t.s.http, header), host, &claims).await;
    let want = Told::plain(host, "192.168.0.111", 8443, "https")
        .set(&[("x-original-forwarded-for", "192.168.0.111")]);
    assert_eq!(seen, ok(want));
}

// With `use-proxy-protocol`, a connection that does not start with a PROXY header (a plain
// request, a broken line, a TLS handshake, or nothing within the header timeout) is closed
// without an answer, as NGINX does ("broken header"); Sluice keeps serving proper ones.
#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_proxy_header_are_closed_unanswered() {
    let (host, secure) = ("proxy-protocol", "secure.example.com");
    let t =
        start(&[("use-proxy-protocol", "true")], &[(host, &[]), (secure, &[])], &[secure]).await;
    let get = format!("GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let cases: [(&str, Vec<u8>); 5] = [
        ("a plain request", get.clone().into_bytes()),
        ("a v1 line of nonsense", [b"PROXY nonsense here\r\n".as_slice(), get.as_bytes()].concat()),
        (
            "a v1 line too long",
            [format!("PROXY TCP4 {} 5.6.7.8 1 2\r\n", "1".repeat(120)).as_bytes(), get.as_bytes()]
                .concat(),
        ),
        (
            "a wrong v2 signature",
            [b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c".as_slice(), get.as_bytes()].concat(),
        ),
        ("h2c without a header", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        assert_eq!(raw_exchange(t.s.http, &bytes).await, "", "{what}: closed without an answer");
    }
    // Nothing but the start of a header: closed once the header timeout (5 s) has passed.
    let started = Instant::now();
    assert_eq!(raw_exchange(t.s.http, b"PROX").await, "", "an incomplete header");
    assert!(started.elapsed() >= Duration::from_secs(4), "closed before the header timeout");
    // TLS without a header, on the HTTPS port: no handshake.
    let name = ServerName::try_from(secure.to_string()).unwrap();
    let tls = tls_connector(&t.ca, &[]).connect(name, Via::direct(t.s.https).connect().await);
    assert!(
        tokio::time::timeout(WAIT, tls).await.expect("an answer in time").is_err(),
        "a TLS handshake without a header"
    );
    // Proper connections are still served.
    let seen =
        ways(&Via::proxied(t.s.http, proxy_v1("192.168.0.1:1", "192.168.0.11:80")), host, &[])
            .await;
    assert_eq!(seen, ok(Told::plain(host, "192.168.0.1", 80, "http")));
}

// ---------------------------------------------------------------------------------------
// HAProxy in front

/// Sluice with `use-proxy-protocol`, the hosts the HAProxy tests use, and HAProxy in front:
/// `send-proxy-v2` and `send-proxy` frontends to the HTTP port, `send-proxy-v2` to HTTPS.
async fn behind_haproxy() -> (Setup, Haproxy, [SocketAddr; 3]) {
    let hosts: [(&str, &[(&str, &str)]); 4] = [
        ("open.example", &[]),
        ("allowed.example", &[(ALLOW, "127.0.0.2/32")]),
        ("refused.example", &[(ALLOW, "127.0.0.3/32")]),
        ("secure.example.com", &[(ALLOW, "127.0.0.2/32")]),
    ];
    let t = start(&[("use-proxy-protocol", "true")], &hosts, &["secure.example.com"]).await;
    let (h, fronts) = Haproxy::start(&[
        (t.s.http, "send-proxy-v2"),
        (t.s.http, "send-proxy"),
        (t.s.https, "send-proxy-v2"),
    ]);
    (t, h, [fronts[0], fronts[1], fronts[2]])
}

// A real load balancer, HAProxy in `mode tcp`, sends the PROXY header (v2 and v1): a client
// connecting to it from 127.0.0.2 is seen by the backend as 127.0.0.2 (not HAProxy's
// 127.0.0.1), X-Forwarded-Port is HAProxy's port, and the allow list judges 127.0.0.2:
// `whitelist-source-range: 127.0.0.2/32` lets it in, `127.0.0.3/32` does not.
#[tokio::test(flavor = "multi_thread")]
async fn haproxy_send_proxy_passes_the_client_address() {
    let (_t, h, fronts) = behind_haproxy().await;
    for (option, front) in [("send-proxy-v2", fronts[0]), ("send-proxy", fronts[1])] {
        let via = Via::direct(front).from("127.0.0.2");
        for host in ["open.example", "allowed.example"] {
            let seen = ways(&via, host, &[]).await;
            let want = Told::plain(host, "127.0.0.2", front.port(), "http");
            assert_eq!(seen, ok(want), "{option}: {host}\n{}", h.log());
        }
        assert_eq!(ways(&via, "refused.example", &[]).await, refused(403), "{option}");
    }
}

// HTTPS through HAProxy (`mode tcp`, `send-proxy-v2` to Sluice's HTTPS port; TLS is Sluice's):
// the backend sees X-Forwarded-Proto https and the client 127.0.0.2, which the host's allow
// list (127.0.0.2/32) lets in.
#[tokio::test(flavor = "multi_thread")]
async fn haproxy_send_proxy_v2_in_front_of_https() {
    let (t, h, fronts) = behind_haproxy().await;
    let host = "secure.example.com";
    let seen = https_ways(&Via::direct(fronts[2]).from("127.0.0.2"), &t.ca, host).await;
    let want = Told::plain(host, "127.0.0.2", fronts[2].port(), "https");
    assert_eq!(seen, ok(want), "{}", h.log());
    // From 127.0.0.3, the allow list refuses.
    let seen = https_ways(&Via::direct(fronts[2]).from("127.0.0.3"), &t.ca, host).await;
    assert_eq!(seen, refused(403));
}
