//! Hostile and idle HTTP/2 clients: idle connections are closed after `keep-alive`; rapid
//! reset, PING and SETTINGS floods are cut off or stay bounded while others are served.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The ConfigMap `default/sluice-config` with `data`.
fn configmap(data: &[(&str, &str)]) -> String {
    let mut s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sluice-config\n  namespace: default\ndata:\n".to_string();
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// Sluice with `keep-alive: 1` in front of an echo backend, for `h2.example.com`.
async fn start_with_keep_alive() -> (Sluice, Manifests) {
    start(&[("keep-alive", "1")]).await
}

/// Sluice with the ConfigMap `data` in front of an echo backend, for `h2.example.com`.
async fn start(data: &[(&str, &str)]) -> (Sluice, Manifests) {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "h2.example.com", &[("/", "Prefix", "app")], &[]));
    m.write("cm.yaml", &configmap(data));
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    (s, m)
}

/// An h2c (prior knowledge) connection: its sender, and its connection task, which ends when
/// the server closes the connection.
async fn h2c_connect(
    s: &Sluice,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(format!("http://h2.example.com{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap()
}

// One request, then silence: the server sends GOAWAY and closes the connection once it has
// been idle for `keep-alive` (1 s here), neither much before nor long after.
#[tokio::test(flavor = "multi_thread")]
async fn idle_h2_connection_is_closed_after_keep_alive() {
    let (s, _m) = start_with_keep_alive().await;
    let (mut sender, conn) = h2c_connect(&s).await;
    let resp = sender.send_request(get("/one")).await.expect("a response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    resp.into_body().collect().await.unwrap();
    let idle_from = Instant::now();

    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let waited = idle_from.elapsed();
    let ended = ended.expect("the idle connection is still open after 5 s").unwrap();
    // hyper's client ends without error on the server's GOAWAY and orderly close.
    assert!(ended.is_ok(), "the connection was not closed gracefully: {ended:?}");
    assert!(waited >= Duration::from_millis(800), "closed too early: {waited:?}");
    assert!(sender.is_closed());
}

// A request in progress longer than `keep-alive` is not cut, and the connection stays usable
// while requests keep coming.
#[tokio::test(flavor = "multi_thread")]
async fn busy_h2_connection_is_not_closed_by_keep_alive() {
    let (s, _m) = start_with_keep_alive().await;
    let (mut sender, conn) = h2c_connect(&s).await;
    // The backend takes 2.5 s to answer: no byte moves meanwhile.
    let resp = sender.send_request(get("/slow?delay_ms=2500")).await.expect("a response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["path"], "/slow?delay_ms=2500");
    // Requests every 400 ms for 2.4 s: the connection is never idle for 1 s.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let resp = sender.send_request(get(&format!("/again/{i}"))).await.expect("a response");
        assert_eq!(resp.status(), 200, "request {i}");
        resp.into_body().collect().await.unwrap();
    }
    assert!(!conn.is_finished());
}

// A `keep-alive` that is not a positive number of seconds is reported, and 75 s stays.
#[tokio::test(flavor = "multi_thread")]
async fn bad_keep_alive_is_reported() {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("cm.yaml", &configmap(&[("keep-alive", "0")]));
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    let found = diagnostics(&s).await;
    assert!(
        found.iter().any(|(_, msg)| msg.contains("keep-alive") && msg.contains("positive")),
        "{found:?}"
    );
}

/// An HTTP/2 frame: 9-byte header (length, type, flags, stream) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const END_STREAM: u8 = 0x1;

/// The client preface and an empty SETTINGS frame.
fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// A HEADERS block for `GET http://h2.example.com/` in HPACK, without touching the dynamic
/// table: `:method GET`, `:scheme http`, `:path /` from the static table, `:authority` literal.
fn get_block() -> Vec<u8> {
    let host = b"h2.example.com";
    let mut block = vec![0x82, 0x86, 0x84, 0x01, host.len() as u8];
    block.extend_from_slice(host);
    block
}

/// Reads frames until the server sends GOAWAY (its error code) or closes (`None`), within `wait`.
async fn goaway_or_close(
    stream: &mut tokio::net::TcpStream,
    wait: Duration,
) -> Result<Option<u32>, &'static str> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut head = [0u8; 9];
        loop {
            if stream.read_exact(&mut head).await.is_err() {
                return None;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return None;
            }
            if head[3] == GOAWAY && payload.len() >= 8 {
                return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
        }
    };
    tokio::time::timeout(wait, read).await.map_err(|_| "neither GOAWAY nor close")
}

/// One request on a fresh h2c connection answers 200.
async fn another_client_is_served(s: &Sluice) {
    let (mut sender, _conn) = h2c_connect(s).await;
    let resp = tokio::time::timeout(WAIT, sender.send_request(get("/other")))
        .await
        .expect("another client waits")
        .expect("a response");
    assert_eq!(resp.status(), 200);
}

/// Runs `attack` and returns it with the proxy's CPU time over it and the time it took,
/// printed for `--nocapture`.
async fn cpu_over<T>(
    s: &Sluice,
    what: &str,
    attack: impl Future<Output = T>,
) -> (T, Duration, Duration) {
    let (cpu, started) = (s.cpu_time(), std::time::Instant::now());
    let out = attack.await;
    let (used, took) = (s.cpu_time().saturating_sub(cpu), started.elapsed());
    eprintln!("{what}: the proxy used {used:?} of CPU in {took:?}");
    (out, used, took)
}

// Rapid reset (CVE-2023-44487): thousands of streams opened and reset at once. The server
// answers GOAWAY (ENHANCE_YOUR_CALM) or closes the connection, and serves other clients.
#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_attack_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    // The default keep-alive (75 s): an idle-timeout GOAWAY cannot pass for the defence.
    let (s, _m) = start(&[]).await;
    another_client_is_served(&s).await;
    let mut attacker = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let block = get_block();
    let mut burst = preface();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &0x8u32.to_be_bytes())); // CANCEL
    }
    let attack = async {
        // The server may stop reading half-way: a write error means it closed, as wanted.
        let _ = attacker.write_all(&burst).await;
        goaway_or_close(&mut attacker, WAIT).await.expect("the attack goes on")
    };
    let (ended, cpu, _) = cpu_over(&s, "rapid reset", attack).await;
    // Cut off early: not the 5,000 streams' worth of work (about 2 s of CPU in the debug
    // build with the defence turned off).
    assert!(cpu < Duration::from_millis(500), "the attack cost {cpu:?} of CPU");
    // GOAWAY with ENHANCE_YOUR_CALM (0xb): 20 streams reset before they are accepted are allowed.
    assert_eq!(ended, Some(0xb), "GOAWAY with ENHANCE_YOUR_CALM, not {ended:?}");
    another_client_is_served(&s).await;
}

// PING and SETTINGS floods from a client that never reads: the server stops reading once
// its answers back up (TCP back-pressure), so the attacker's writes block after a bounded
// amount; from then on the flood costs the proxy no CPU, its memory stays bounded (no queue
// of answers grows without end), and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn ping_and_settings_floods_stay_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let (s, _m) = start(&[]).await;
    another_client_is_served(&s).await;
    let before = s.rss_kib();
    for kind in [PING, SETTINGS] {
        let what = if kind == PING { "PING flood" } else { "SETTINGS flood" };
        let attacker = tokio::net::TcpStream::connect(s.http).await.unwrap();
        let (_unread, mut wr) = attacker.into_split();
        wr.write_all(&preface()).await.unwrap();
        let one = match kind {
            PING => frame(PING, 0, 0, &[7; 8]),
            // SETTINGS_MAX_CONCURRENT_STREAMS = 100, each one to be acknowledged.
            _ => frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
        };
        let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 10_000).collect();
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        let flood = tokio::spawn(async move {
            while wr.write_all(&chunk).await.is_ok() {
                count.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        });
        // Served while the flood goes on.
        another_client_is_served(&s).await;
        // Until the flood is held back: half a second in which the attacker, still writing,
        // gets nothing more taken and the proxy spends (almost) no CPU. Until then the proxy
        // works through what the socket buffers hold, a bounded amount.
        let started = Instant::now();
        let mut spent = Duration::ZERO;
        loop {
            let taken = written.load(Ordering::Relaxed);
            let window = tokio::time::sleep(Duration::from_millis(500));
            let (_, cpu, _) = cpu_over(&s, what, window).await;
            spent += cpu;
            let now = written.load(Ordering::Relaxed);
            assert!(now < 256 << 20, "{what}: {now} bytes taken and the proxy still reads");
            if now == taken && cpu < Duration::from_millis(100) {
                break;
            }
            assert!(!flood.is_finished(), "{what}: the attacker's connection failed");
            assert!(
                started.elapsed() < WAIT,
                "{what}: still busy after {WAIT:?} ({spent:?} of CPU)"
            );
        }
        flood.abort();
        let taken = written.load(Ordering::Relaxed);
        eprintln!(
            "{what}: held back after {taken} bytes, {spent:?} of CPU over {:?}",
            started.elapsed()
        );
        another_client_is_served(&s).await;
    }
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "the proxy grew by {grown} KiB under the floods");
}

// The same `keep-alive` governs HTTP/1.1: after a response on the fast path, a silent
// keep-alive connection is closed after 1 s.
#[tokio::test(flavor = "multi_thread")]
async fn idle_http1_connection_is_closed_after_keep_alive() {
    use tokio::io::AsyncReadExt;
    let (s, _m) = start_with_keep_alive().await;
    let mut stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (status, _, _) =
        exchange(&mut stream, "GET /h1 HTTP/1.1\r\nHost: h2.example.com\r\n\r\n").await;
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
    let waited = idle_from.elapsed();
    assert_eq!(read.expect("the idle connection is still open after 5 s").unwrap_or(0), 0);
    assert!(waited >= Duration::from_millis(800), "closed too early: {waited:?}");
}

// ---- http2-max-concurrent-streams, CONTINUATION floods, clients that take nothing ----

const DATA: u8 = 0x0;
const CONTINUATION: u8 = 0x9;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

/// The TLS host: `h2s.example.com`, with a certificate, over the same echo backend.
const TLS_HOST: &str = "h2s.example.com";

/// Sluice with the ConfigMap `data` in front of an echo backend for `h2.example.com` (plain)
/// and [`TLS_HOST`] (HTTPS, no redirect).
async fn start_tls(data: &[(&str, &str)]) -> (Sluice, Manifests) {
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "h2.example.com", &[("/", "Prefix", "app")], &[]));
    let pem = tls::Ca::new("h2 test CA").server(&[TLS_HOST]);
    m.write("secret.yaml", &tls::tls_secret("h2s-cert", &pem));
    let no_redirect = [("nginx.ingress.kubernetes.io/ssl-redirect", "false")];
    let secure = ingress("secure", TLS_HOST, &[("/", "Prefix", "app")], &no_redirect);
    m.write("ing-tls.yaml", &with_tls(secure, &[(&[TLS_HOST][..], Some("h2s-cert"))]));
    m.write("cm.yaml", &configmap(data));
    let s = Sluice::start(m.path(), &["--configmap", "default/sluice-config"]);
    (s, m)
}

/// A raw HTTP/2 connection, h2c (prior knowledge) or h2 over TLS (ALPN).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects to Sluice: `tls` picks the HTTPS port (h2 by ALPN, checked) and [`TLS_HOST`].
/// Returns the stream and the `:scheme` and `:authority` its requests use.
async fn raw_connect(s: &Sluice, tls: bool) -> (Box<dyn Io>, &'static str, &'static str) {
    if tls {
        let stream = tls::connect(s.https, &tls::ClientOpts::sni(TLS_HOST).h2()).await.unwrap();
        assert_eq!(tls::seen(&stream).alpn.as_deref(), Some(&b"h2"[..]));
        (Box::new(stream), "https", TLS_HOST)
    } else {
        let stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
        (Box::new(stream), "http", "h2.example.com")
    }
}

/// A HEADERS block for `GET scheme://authority path` in HPACK, without touching the dynamic
/// table.
fn request_block(scheme: &str, authority: &str, path: &str) -> Vec<u8> {
    // :method GET (static 2); :scheme http (6) or https (7).
    let mut block = vec![0x82, if scheme == "https" { 0x87 } else { 0x86 }];
    // Literals without indexing, names from the static table: :path (4), :authority (1).
    for (index, value) in [(0x04u8, path), (0x01, authority)] {
        assert!(value.len() < 127);
        block.extend([index, value.len() as u8]);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// One frame: kind, flags, stream, payload; `None` when the connection ends.
async fn read_frame(
    io: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(u8, u8, u32, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Sends the preface, reads the server's SETTINGS and acknowledges them; returns them as
/// (identifier, value) pairs.
async fn handshake(io: &mut Box<dyn Io>, settings: &[(u16, u32)]) -> Vec<(u16, u32)> {
    use tokio::io::AsyncWriteExt;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let payload: Vec<u8> = settings
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    out.extend(frame(SETTINGS, 0, 0, &payload));
    io.write_all(&out).await.unwrap();
    loop {
        let (kind, flags, _, payload) =
            tokio::time::timeout(WAIT, read_frame(io)).await.unwrap().expect("server SETTINGS");
        if kind == SETTINGS && flags & ACK == 0 {
            io.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            return payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes(c[2..6].try_into().unwrap()),
                    )
                })
                .collect();
        }
    }
}

// `http2-max-concurrent-streams: 4`: advertised in SETTINGS; of six streams opened at once
// the two beyond the limit get RST_STREAM REFUSED_STREAM, as NGINX refuses them, the four
// others are answered, the connection serves new streams once they are done, and other
// clients are served meanwhile. Over h2c and h2 (TLS).
#[tokio::test(flavor = "multi_thread")]
async fn streams_beyond_the_limit_are_refused() {
    use std::collections::BTreeSet;
    use tokio::io::AsyncWriteExt;
    let (s, _m) = start_tls(&[("http2-max-concurrent-streams", "4")]).await;
    for tls in [false, true] {
        let (mut io, scheme, authority) = raw_connect(&s, tls).await;
        let settings = handshake(&mut io, &[]).await;
        assert!(settings.contains(&(0x3, 4)), "SETTINGS_MAX_CONCURRENT_STREAMS 4: {settings:?}");
        // The backend holds each answer 1 s: the first four are still open when the last
        // two arrive.
        let slow = request_block(scheme, authority, "/slow?delay_ms=1000");
        let burst: Vec<u8> = (0..6u32)
            .flat_map(|i| frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &slow))
            .collect();
        io.write_all(&burst).await.unwrap();
        another_client_is_served(&s).await;
        let (mut refused, mut answered, mut ended) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        let read = async {
            while ended.len() + refused.len() < 6 {
                let (kind, flags, id, payload) =
                    read_frame(&mut io).await.expect("the connection stays open");
                match kind {
                    RST_STREAM => {
                        assert_eq!(
                            u32::from_be_bytes(payload[..4].try_into().unwrap()),
                            REFUSED_STREAM
                        );
                        refused.insert(id);
                    }
                    // :status 200 from the static table.
                    HEADERS => assert_eq!(payload[0], 0x88, "stream {id}: not 200"),
                    _ => {}
                }
                if matches!(kind, HEADERS | DATA) {
                    answered.insert(id);
                    if flags & END_STREAM != 0 {
                        ended.insert(id);
                    }
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("answers and refusals");
        assert_eq!(refused, BTreeSet::from([9, 11]), "tls {tls}");
        assert_eq!(ended, BTreeSet::from([1, 3, 5, 7]), "tls {tls}");
        assert_eq!(answered, ended);
        // The streams are done: a new one is served on the same connection.
        let block = request_block(scheme, authority, "/again");
        io.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 13, &block)).await.unwrap();
        let again = async {
            loop {
                let (kind, _, id, payload) =
                    read_frame(&mut io).await.expect("the connection stays open");
                if kind == HEADERS && id == 13 {
                    return payload[0];
                }
            }
        };
        assert_eq!(tokio::time::timeout(WAIT, again).await.unwrap(), 0x88, "tls {tls}");
    }
}

// A client that ignores the refusals and keeps opening streams beyond the limit is cut off
// after 1,024 of them (GOAWAY ENHANCE_YOUR_CALM, h2's bound on the resets it sends), while
// another client is served.
#[tokio::test(flavor = "multi_thread")]
async fn refused_stream_flood_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let (s, _m) = start_tls(&[("http2-max-concurrent-streams", "1")]).await;
    let (mut io, scheme, authority) = raw_connect(&s, false).await;
    handshake(&mut io, &[]).await;
    let slow = request_block(scheme, authority, "/slow?delay_ms=5000");
    let burst: Vec<u8> = (0..5_000u32)
        .flat_map(|i| frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &slow))
        .collect();
    let _ = io.write_all(&burst).await;
    let ended = async {
        loop {
            match read_frame(&mut io).await {
                None => return None,
                Some((GOAWAY, _, _, p)) => {
                    return Some(u32::from_be_bytes(p[4..8].try_into().unwrap()));
                }
                Some(_) => {}
            }
        }
    };
    let (ended, cpu, _) = cpu_over(&s, "refused streams", tokio::time::timeout(WAIT, ended)).await;
    let ended = ended.expect("the flood goes on");
    assert_eq!(ended, Some(0xb), "GOAWAY with ENHANCE_YOUR_CALM, not {ended:?}");
    assert!(cpu < Duration::from_millis(500), "the flood cost {cpu:?} of CPU");
    another_client_is_served(&s).await;
}

/// Writes `frames` again and again (up to `cap` bytes, for at most 5 s) while reading what the
/// server says: its GOAWAY error code, or `None` if it closed; panics if it did neither.
async fn flood_until_cut(
    io: Box<dyn Io>,
    first: Vec<u8>,
    frames: Vec<u8>,
    cap: usize,
) -> Option<u32> {
    use tokio::io::AsyncWriteExt;
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        if wr.write_all(&first).await.is_err() {
            return;
        }
        let mut sent = 0;
        while sent < cap {
            if wr.write_all(&frames).await.is_err() {
                return;
            }
            sent += frames.len();
        }
    });
    let read = async {
        loop {
            match read_frame(&mut rd).await {
                None => return None,
                Some((GOAWAY, _, _, p)) => {
                    return Some(u32::from_be_bytes(p[4..8].try_into().unwrap()));
                }
                Some(_) => {}
            }
        }
    };
    let ended =
        tokio::time::timeout(Duration::from_secs(5), read).await.expect("the flood goes on");
    writer.abort();
    ended
}

// CONTINUATION floods (CVE-2024-27316 and its family): a HEADERS frame without END_HEADERS,
// then CONTINUATION frames without end, either full of small headers or one byte each of an
// endless value. The connection is ended (GOAWAY) once the header block goes beyond the
// header list limit (64 KiB) or needs more frames than that limit does, never after the
// 64 MiB the attacker offers; the proxy's memory stays bounded and other clients are
// served. Over h2c and h2 (TLS).
#[tokio::test(flavor = "multi_thread")]
async fn continuation_flood_is_cut_off() {
    let (s, _m) = start_tls(&[]).await;
    another_client_is_served(&s).await;
    let before = s.rss_kib();
    for tls in [false, true] {
        // Full frames of `x-a: b` literals (7 bytes, 36 bytes decoded each).
        let (mut io, scheme, authority) = raw_connect(&s, tls).await;
        handshake(&mut io, &[]).await;
        let first = frame(HEADERS, 0, 1, &request_block(scheme, authority, "/"));
        let literal = [0x00, 0x03, b'x', b'-', b'a', 0x01, b'b'];
        let block: Vec<u8> = literal.iter().copied().cycle().take(7 * 2340).collect();
        let more: Vec<u8> = (0..64).flat_map(|_| frame(CONTINUATION, 0, 1, &block)).collect();
        let flood = flood_until_cut(io, first, more, 64 << 20);
        let (ended, cpu, _) = cpu_over(&s, "CONTINUATION flood, full frames", flood).await;
        // ENHANCE_YOUR_CALM (0xb) or COMPRESSION_ERROR (0x9): h2's two ways of refusing it.
        assert!(matches!(ended, Some(0xb | 0x9)), "tls {tls}: {ended:?}");
        // Cut off after a few frames, not after the 64 MiB offered.
        assert!(cpu < Duration::from_millis(500), "tls {tls}: the flood cost {cpu:?} of CPU");

        // One-byte frames of a value announced as 1 MiB long.
        let (mut io, scheme, authority) = raw_connect(&s, tls).await;
        handshake(&mut io, &[]).await;
        let mut block = request_block(scheme, authority, "/");
        // A new name `x-big`, then a value of 2^20 bytes: 0x7f then 2^20 - 127 in 7-bit groups.
        block.extend([0x00, 0x05, b'x', b'-', b'b', b'i', b'g', 0x7f]);
        let mut rest = (1u32 << 20) - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
        let first = frame(HEADERS, 0, 1, &block);
        let more: Vec<u8> = (0..4096).flat_map(|_| frame(CONTINUATION, 0, 1, b"v")).collect();
        let flood = flood_until_cut(io, first, more, 64 << 20);
        let (ended, cpu, _) = cpu_over(&s, "CONTINUATION flood, one-byte frames", flood).await;
        assert!(matches!(ended, Some(0xb | 0x9)), "tls {tls}: {ended:?}");
        assert!(cpu < Duration::from_millis(500), "tls {tls}: the flood cost {cpu:?} of CPU");
        another_client_is_served(&s).await;
    }
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "the proxy grew by {grown} KiB under the floods");
}

/// Opens `n` streams on `io`, each asking for 1 MiB.
async fn ask_for_megabytes(io: &mut Box<dyn Io>, scheme: &str, authority: &str, n: u32) {
    use tokio::io::AsyncWriteExt;
    let big = request_block(scheme, authority, "/big?bytes=1048576");
    let burst: Vec<u8> =
        (0..n).flat_map(|i| frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &big)).collect();
    io.write_all(&burst).await.unwrap();
}

// Clients that take nothing of large responses: one (h2c) opens its windows wide and never
// reads the socket, another (h2 over TLS) reads but grants no flow-control window beyond the
// initial 64 KiB. Each has 128 streams asking for 1 MiB (256 MiB in all). The proxy stops
// reading the upstream (back-pressure), its memory stays bounded, other clients are served,
// and both connections are closed after NGINX's send_timeout (60 s) without progress.
#[tokio::test(flavor = "multi_thread")]
async fn clients_that_take_nothing_are_bounded_then_cut() {
    use tokio::io::AsyncWriteExt;
    let (s, _m) = start_tls(&[]).await;
    another_client_is_served(&s).await;
    let before = s.rss_kib();
    let start = Instant::now();

    let tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let deaf_port = tcp.local_addr().unwrap().port();
    let mut deaf: Box<dyn Io> = Box::new(tcp);
    let (scheme, authority) = ("http", "h2.example.com");
    handshake(&mut deaf, &[(0x4, 0x7fff_ffff)]).await;
    deaf.write_all(&frame(WINDOW_UPDATE, 0, 0, &(0x7fff_ffff - 65_535u32).to_be_bytes()))
        .await
        .unwrap();
    ask_for_megabytes(&mut deaf, scheme, authority, 128).await;

    let (mut stingy, scheme, authority) = raw_connect(&s, true).await;
    handshake(&mut stingy, &[]).await;
    ask_for_megabytes(&mut stingy, scheme, authority, 128).await;
    let (window_full_tx, window_full) = tokio::sync::oneshot::channel();
    let stingy = tokio::spawn(async move {
        let (mut data, mut full) = (0usize, Some(window_full_tx));
        while let Some((kind, _, _, payload)) = read_frame(&mut stingy).await {
            if kind == DATA {
                data += payload.len();
            }
            if data >= 65_535
                && let Some(tx) = full.take()
            {
                let _ = tx.send(start.elapsed());
            }
        }
        (start.elapsed(), data)
    });
    // The stingy client has had the whole connection window: from here it stalls.
    let stalled_at = tokio::time::timeout(WAIT, window_full).await.unwrap().unwrap();

    // Memory over 10 s of stalling, while others are served (h2c and HTTP/1.1).
    let mut peak = 0;
    for _ in 0..20 {
        another_client_is_served(&s).await;
        let r = common::get(&s.url("/h1"), Some("h2.example.com")).await;
        assert_eq!(r.status, 200);
        peak = peak.max(s.rss_kib());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let grown = peak.saturating_sub(before);
    eprintln!("proxy RSS grew by {grown} KiB with 256 stalled 1 MiB responses");
    assert!(grown < 80 * 1024, "the proxy grew by {grown} KiB");

    // The stingy client is cut 60 s after it stalled (its reader sees the end).
    let (ended_at, data) = tokio::time::timeout(Duration::from_secs(90), stingy)
        .await
        .expect("the stingy client is still connected after 90 s")
        .unwrap();
    let stalled_for = ended_at - stalled_at;
    assert!(
        stalled_for >= Duration::from_secs(55) && stalled_for < Duration::from_secs(75),
        "closed {stalled_for:?} after the window ran out"
    );
    assert!(data < 2 * 65_536, "{data} bytes sent beyond the window");

    // The deaf client: the proxy's side of its connection leaves ESTABLISHED (reading it
    // first would let the proxy go on).
    let closed = async {
        while proxy_side_established(s.http.port(), deaf_port) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        start.elapsed()
    };
    let closed = tokio::time::timeout(Duration::from_secs(90), closed)
        .await
        .expect("the deaf client is still connected after 90 s");
    assert!(closed >= Duration::from_secs(55), "closed after {closed:?}");
    // Its socket holds what the kernel buffered, then the end.
    let drain = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match deaf.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    let drained = tokio::time::timeout(WAIT, drain).await.expect("the end of the deaf connection");
    assert!(drained < 128 << 20, "the whole {drained} bytes were sent");
    another_client_is_served(&s).await;
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS a new connection is told.
async fn advertised(s: &Sluice, tls: bool) -> Option<u32> {
    let (mut io, _, _) = raw_connect(s, tls).await;
    let settings = handshake(&mut io, &[]).await;
    settings.iter().find(|(id, _)| *id == 0x3).map(|(_, v)| *v)
}

/// Whether the proxy's side of the loopback connection from `client_port` to `proxy_port` is
/// ESTABLISHED (`/proc/net/tcp`): once the proxy closes it, it leaves that state even while
/// the client has not read what was sent before.
fn proxy_side_established(proxy_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        port(f[1]) == proxy_port && port(f[2]) == client_port && f[3] == "01"
    })
}

// A bad `http2-max-concurrent-streams` is reported against the ConfigMap and 128 stays
// advertised; the keys NGINX ignores since 1.19.7 are reported as such; a new value applies
// to connections made after the change.
#[tokio::test(flavor = "multi_thread")]
async fn http2_keys_are_checked_and_applied() {
    let (s, m) = start_tls(&[
        ("http2-max-concurrent-streams", "0"),
        ("http2-max-requests", "1000"),
        ("http2-max-field-size", "8k"),
    ])
    .await;
    let config = s.config().await;
    let diagnostics = config["diagnostics"].as_array().unwrap();
    let about = |key: &str| {
        diagnostics
            .iter()
            .find(|d| d["message"].as_str().unwrap_or_default().contains(key))
            .unwrap_or_else(|| panic!("no diagnostic about {key}: {diagnostics:#?}"))
            .to_string()
    };
    let bad = about("http2-max-concurrent-streams");
    assert!(bad.contains("sluice-config") && bad.contains("positive"), "{bad}");
    for key in ["http2-max-requests", "http2-max-field-size"] {
        let ignored = about(key);
        assert!(ignored.contains("sluice-config") && ignored.contains("1.19.7"), "{ignored}");
    }
    assert_eq!(advertised(&s, false).await, Some(128));
    assert_eq!(advertised(&s, true).await, Some(128));

    let generation = s.generation().await;
    m.write("cm.yaml", &configmap(&[("http2-max-concurrent-streams", "9")]));
    s.wait_generation_after(generation).await;
    assert_eq!(advertised(&s, false).await, Some(9));
    assert_eq!(advertised(&s, true).await, Some(9));
}

/// One GET over TLS offering `h2` and `http/1.1`: the status and the protocol ALPN chose.
async fn tls_get_alpn(s: &Sluice) -> (u16, Option<Vec<u8>>) {
    let req = http::Request::get(format!("https://{TLS_HOST}/alpn"))
        .header("host", TLS_HOST)
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let (reply, seen) =
        tls::request(s.https, &tls::ClientOpts::sni(TLS_HOST).h2(), req).await.unwrap();
    (reply.status.as_u16(), seen.alpn)
}

/// Whether an h2c (prior knowledge) request on the HTTP port is answered.
async fn h2c_answered(s: &Sluice) -> bool {
    let stream = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let Ok((mut sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let answer = tokio::time::timeout(WAIT, sender.send_request(get("/h2c"))).await;
    matches!(answer.expect("an answer or a refusal"), Ok(r) if r.status() == 200)
}

// `use-http2: false`, as NGINX's listeners without `http2`: the HTTPS port offers HTTP/1.1
// only in ALPN and serves it, the HTTP port refuses h2c and serves HTTP/1.1; turned back on
// by a ConfigMap change, both speak HTTP/2 again.
#[tokio::test(flavor = "multi_thread")]
async fn use_http2_false_serves_http1_only() {
    let (s, m) = start_tls(&[("use-http2", "false")]).await;
    assert_eq!(tls_get_alpn(&s).await, (200, Some(b"http/1.1".to_vec())));
    assert!(!h2c_answered(&s).await, "h2c was served with use-http2: false");
    // The preface alone is a request of a version NGINX does not speak there: 505.
    let answer = raw_exchange(s.http, &preface()).await;
    assert!(answer.starts_with("HTTP/1.1 505 "), "{answer}");
    let plain = common::get(&s.url("/plain"), Some("h2.example.com")).await;
    assert_eq!(plain.status, 200);

    let generation = s.generation().await;
    m.write("cm.yaml", &configmap(&[("use-http2", "true")]));
    s.wait_generation_after(generation).await;
    assert_eq!(tls_get_alpn(&s).await, (200, Some(b"h2".to_vec())));
    assert!(h2c_answered(&s).await, "h2c was refused with use-http2: true");
}
