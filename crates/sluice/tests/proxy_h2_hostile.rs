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

/// The proxy's resident memory, in KiB.
fn rss_kib(s: &Sluice) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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
    // The server may stop reading half-way: a write error means it closed, as wanted.
    let _ = attacker.write_all(&burst).await;
    let ended = goaway_or_close(&mut attacker, WAIT).await.expect("the attack goes on");
    // GOAWAY with ENHANCE_YOUR_CALM (0xb): 20 streams reset before they are accepted are allowed.
    assert_eq!(ended, Some(0xb), "GOAWAY with ENHANCE_YOUR_CALM, not {ended:?}");
    another_client_is_served(&s).await;
}

// PING and SETTINGS floods from a client that never reads: the proxy's memory stays bounded
// (no queue of answers grows without end) and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn ping_and_settings_floods_stay_bounded() {
    use tokio::io::AsyncWriteExt;
    let (s, _m) = start(&[]).await;
    another_client_is_served(&s).await;
    let before = rss_kib(&s);
    for kind in [PING, SETTINGS] {
        let mut attacker = tokio::net::TcpStream::connect(s.http).await.unwrap();
        attacker.write_all(&preface()).await.unwrap();
        let one = match kind {
            PING => frame(PING, 0, 0, &[7; 8]),
            // SETTINGS_MAX_CONCURRENT_STREAMS = 100, each one to be acknowledged.
            _ => frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
        };
        let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 10_000).collect();
        // Up to 1,000,000 frames (17 MB), never reading the answers, for 2 s: the server
        // stops reading once its answers back up (TCP back-pressure), or closes.
        let flood = async {
            for _ in 0..100 {
                if attacker.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flood).await;
        another_client_is_served(&s).await;
    }
    let grown = rss_kib(&s).saturating_sub(before);
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
