//! WebSocket through the proxy: the upgrade, messages both ways, and the idle timeout
//! (`proxy-read-timeout` applies to upgraded connections, as in NGINX).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = WebSocketStream<TcpStream>;

async fn start(annotations: &[(&str, &str)]) -> (Manifests, Sluice) {
    let app = echo("ws").await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("ws", &[app]));
    m.write(
        "ing.yaml",
        &ingress("ws", "ws.example.com", &[("/chat", "Prefix", "ws")], annotations),
    );
    let s = Sluice::start(m.path(), &[]);
    (m, s)
}

/// Opens a WebSocket to `ws://ws.example.com/chat` through the proxy.
async fn connect(s: &Sluice) -> Ws {
    let stream = TcpStream::connect(s.http).await.unwrap();
    let req = "ws://ws.example.com/chat/room?x=1".into_client_request().unwrap();
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("the handshake completes")
        .expect("the handshake succeeds");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["server"], "sluice");
    assert!(resp.headers()["upgrade"].to_str().unwrap().eq_ignore_ascii_case("websocket"));
    ws
}

/// The next data message, failing on anything else within 5 s.
async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer within 5 s")
            .expect("the socket is open")
            .expect("a message");
        if msg.is_text() || msg.is_binary() {
            return msg;
        }
        assert!(!msg.is_close(), "closed: {msg:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn text_and_binary_messages_are_echoed() {
    let (_m, s) = start(&[]).await;
    let mut ws = connect(&s).await;
    ws.send(Message::text("hello through sluice")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("hello through sluice"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(binary));
    for i in 0..20 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(next_message(&mut ws).await, Message::text(format!("m{i}")));
    }
    ws.close(None).await.unwrap();

    // A plain request on the same route still works after the tunnel.
    let r = get(&s.url("/chat"), Some("ws.example.com")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "ws");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_websocket_is_closed_after_the_read_timeout() {
    let (_m, s) = start(&[("nginx.ingress.kubernetes.io/proxy-read-timeout", "1")]).await;
    let mut ws = connect(&s).await;
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("ping"));
    let idle_since = Instant::now();

    let early = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(early.is_err(), "the WebSocket ended within 0.5 s of the last message: {early:?}");
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the idle WebSocket was not closed within 5 s");
    if let Some(Ok(m)) = &end {
        assert!(m.is_close(), "unexpected message on an idle socket: {m:?}");
    }
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed too early: {idle:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_websocket_outlives_the_read_timeout() {
    let (_m, s) = start(&[("nginx.ingress.kubernetes.io/proxy-read-timeout", "1")]).await;
    let mut ws = connect(&s).await;
    // 2.4 s of traffic, a message every 300 ms: never idle for the 1 s timeout.
    for i in 0..8 {
        ws.send(Message::text(format!("tick {i}"))).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text(format!("tick {i}")));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ws.send(Message::text("last")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("last"));
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_style_upgrade_headers_are_understood() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let (_m, s) = start(&[]).await;
    // Firefox sends `Connection: keep-alive, Upgrade`, and header names in any case.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let handshake = format!(
        "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nconnection: keep-alive, Upgrade\r\n\
         UPGRADE: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let head =
        tokio::time::timeout(WAIT, read_head(&mut stream)).await.unwrap().expect("an answer");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "bytes after the 101 head: {head:?}");
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    ws.send(Message::text("from a browser")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("from a browser"));
}
