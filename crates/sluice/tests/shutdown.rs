//! Shutdown of the real binary with work in flight: a slow request, a WebSocket and a gRPC
//! stream open at SIGTERM. `/readyz` turns 503 at once, new connections are still accepted
//! for `--shutdown-delay`, then the listener closes; what was in flight keeps working through
//! `--shutdown-grace-period` and is then closed cleanly (WebSocket close 1001; the gRPC
//! connection had its GOAWAY when the listener closed); the process exits as soon as
//! everything has finished.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

type Ws = WebSocketStream<TcpStream>;

/// The gRPC service whose status the test pushes down the Watch stream.
const SERVICE: &str = "shutdown.Test";

/// A tonic-health server in clear (h2c) on a free loopback port.
async fn grpc_backend() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    tokio::spawn(Server::builder().serve_with_incoming(service, incoming));
    (addr, reporter)
}

/// Backends for each host: `slow.example` (held until released), `ws.example` (echo, with
/// WebSocket) and `grpc.example` (tonic-health over h2c).
struct Setup {
    _m: Manifests,
    s: Sluice,
    arrived: tokio::sync::mpsc::Receiver<()>,
    release: std::sync::Arc<tokio::sync::Notify>,
    reporter: HealthReporter,
}

async fn setup(args: &[&str]) -> Setup {
    let (slow, arrived, release) = held_backend().await;
    let ws = echo("ws").await;
    let (grpc, reporter) = grpc_backend().await;
    reporter.set_service_status(SERVICE, ServingStatus::Serving).await;
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("slow-svc.yaml", &service("slow", &[slow]));
    m.write("ws-svc.yaml", &service("ws", &[ws]));
    m.write("grpc-svc.yaml", &service("grpc", &[grpc]));
    m.write("slow.yaml", &ingress("slow", "slow.example", &[("/", "Prefix", "slow")], &[]));
    m.write("ws.yaml", &ingress("ws", "ws.example", &[("/", "Prefix", "ws")], &[]));
    let grpc_protocol = [("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")];
    m.write(
        "grpc.yaml",
        &ingress("grpc", "grpc.example", &[("/", "Prefix", "grpc")], &grpc_protocol),
    );
    let s = Sluice::start(m.path(), args);
    Setup { _m: m, s, arrived, release, reporter }
}

/// Sends SIGTERM without waiting for the exit.
fn sigterm(s: &Sluice) {
    let status = std::process::Command::new("kill").args(["-TERM", &s.pid().to_string()]).status();
    assert!(status.unwrap().success());
}

async fn ws_connect(s: &Sluice) -> Ws {
    let stream = TcpStream::connect(s.http).await.unwrap();
    let req = "ws://ws.example/chat".into_client_request().unwrap();
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("the handshake completes")
        .expect("the handshake succeeds");
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `text` and expects it echoed.
async fn ws_echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("the WebSocket takes a message");
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("an echo in time")
        .expect("the socket is open")
        .expect("a message");
    assert_eq!(msg, Message::text(text));
}

/// A gRPC channel to Sluice's HTTP port (h2c) for `grpc.example`.
async fn grpc_client(s: &Sluice) -> HealthClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{}", s.http))
        .unwrap()
        .origin("http://grpc.example".parse().unwrap());
    HealthClient::new(tokio::time::timeout(WAIT, endpoint.connect()).await.unwrap().unwrap())
}

/// The next status on a Watch stream.
async fn watched(stream: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>) -> Wire {
    let msg = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message in time")
        .expect("the stream is open")
        .expect("a message, not the end");
    Wire::try_from(msg.status).unwrap()
}

/// A GET of `slow.example` on its own connection.
fn slow_request(s: &Sluice) -> tokio::task::JoinHandle<Reply> {
    let url = s.url("/");
    tokio::spawn(async move { get(&url, Some("slow.example")).await })
}

/// Waits until the proxy's port refuses connections (the listener is closed).
async fn until_refused(addr: SocketAddr) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if TcpStream::connect(addr).await.is_err() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the listener is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the process to exit; returns when, and whether cleanly.
async fn exited(s: &mut Sluice) -> (Instant, bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if !s.running() {
            return (Instant::now(), s.wait_exit());
        }
        assert!(Instant::now() < deadline, "sluice did not exit:\n{}", s.stderr().join("\n"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_work_runs_through_the_grace_period_then_closes_cleanly() {
    const DELAY: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_secs(3);
    let Setup { _m, mut s, mut arrived, release, reporter } =
        setup(&["--shutdown-delay", "2", "--shutdown-grace-period", "3"]).await;

    // Work in flight: a slow request, a WebSocket, a gRPC Watch stream.
    let slow = slow_request(&s);
    tokio::time::timeout(WAIT, arrived.recv()).await.expect("the slow request reaches its backend");
    let mut ws = ws_connect(&s).await;
    ws_echo(&mut ws, "before").await;
    let mut grpc = grpc_client(&s).await;
    let req = HealthCheckRequest { service: SERVICE.to_string() };
    let mut watch = grpc.watch(req.clone()).await.expect("Watch starts").into_inner();
    assert_eq!(watched(&mut watch).await, Wire::Serving);

    let term = Instant::now();
    sigterm(&s);

    // Not ready at once, yet still accepting for the delay: a Service's endpoints and the
    // load balancers take that long to stop sending new connections here.
    let deadline = Instant::now() + WAIT;
    while get(&s.admin_url("/readyz"), None).await.status != 503 {
        assert!(Instant::now() < deadline, "/readyz still answers 200 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = get(&s.url("/"), Some("ws.example")).await;
    assert_eq!(during.status, 200, "a new connection during the delay is served");
    assert!(term.elapsed() < DELAY, "too slow to observe the delay: {:?}", term.elapsed());

    // Then the listener closes.
    let closed = until_refused(s.http).await;
    assert!(closed - term >= DELAY, "the listener closed {:?} after SIGTERM", closed - term);

    // What was in flight keeps working.
    ws_echo(&mut ws, "after the listener closed").await;
    reporter.set_service_status(SERVICE, ServingStatus::NotServing).await;
    assert_eq!(watched(&mut watch).await, Wire::NotServing, "the gRPC stream still delivers");
    // The connection had its GOAWAY: a new call on it is not served there (and the channel
    // cannot reconnect, the listener being closed).
    let refused = tokio::time::timeout(WAIT, grpc.check(req.clone())).await.expect("no hang");
    assert!(refused.is_err(), "a new gRPC call after GOAWAY: {refused:?}");
    release.notify_one();
    let reply = tokio::time::timeout(WAIT, slow).await.expect("the slow request ends").unwrap();
    assert_eq!((reply.status.as_u16(), &reply.body[..]), (200, &b"held"[..]));

    // At the end of the grace period, the WebSocket gets a close frame (going away) and the
    // gRPC stream ends; not before.
    let close = match tokio::time::timeout(WAIT, ws.next()).await.expect("a close frame in time") {
        Some(Ok(Message::Close(frame))) => frame,
        other => panic!("the WebSocket ended without a close frame: {other:?}"),
    };
    let closed_at = term.elapsed();
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    assert!(closed_at >= DELAY + GRACE, "the WebSocket was closed {closed_at:?} after SIGTERM");
    let end = tokio::time::timeout(WAIT, watch.message()).await.expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "the gRPC stream goes on: {end:?}");

    let (exit, clean) = exited(&mut s).await;
    assert!(clean, "exit status after SIGTERM:\n{}", s.stderr().join("\n"));
    let took = exit - term;
    assert!(took < DELAY + GRACE + Duration::from_secs(3), "exit {took:?} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_process_exits_as_soon_as_in_flight_work_ends() {
    let Setup { _m, mut s, mut arrived, release, reporter: _r } =
        setup(&["--shutdown-grace-period", "60"]).await;
    let slow = slow_request(&s);
    tokio::time::timeout(WAIT, arrived.recv()).await.expect("the slow request reaches its backend");
    let mut ws = ws_connect(&s).await;
    ws_echo(&mut ws, "before").await;
    let mut grpc = grpc_client(&s).await;
    let req = HealthCheckRequest { service: SERVICE.to_string() };
    let mut watch = grpc.watch(req).await.expect("Watch starts").into_inner();
    assert_eq!(watched(&mut watch).await, Wire::Serving);

    sigterm(&s);
    // Without --shutdown-delay the listener closes at once.
    until_refused(s.http).await;
    ws_echo(&mut ws, "after").await;
    release.notify_one();
    let reply = tokio::time::timeout(WAIT, slow).await.expect("the slow request ends").unwrap();
    assert_eq!(reply.status, 200);
    assert!(s.running(), "sluice exited with a WebSocket and a gRPC stream open");

    // The clients end their streams: the process exits then, not at the end of the 60 s.
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, ws.next()).await.expect("the close ends") {}
    drop((ws, watch, grpc));
    let ended = Instant::now();
    let (exit, clean) = exited(&mut s).await;
    assert!(clean, "exit status after SIGTERM:\n{}", s.stderr().join("\n"));
    assert!(exit - ended < Duration::from_secs(5), "exit {:?} after the last stream", exit - ended);
    assert!(
        !s.stderr().iter().any(|l| l.contains("still open after the grace period")),
        "nothing was cut"
    );
}
