//! Hostile and idle HTTP/2 clients: idle connections are closed after `keep-alive`.

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
    let app = echo("app").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("app", &[app]));
    m.write("ing.yaml", &ingress("web", "h2.example.com", &[("/", "Prefix", "app")], &[]));
    m.write("cm.yaml", &configmap(&[("keep-alive", "1")]));
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
