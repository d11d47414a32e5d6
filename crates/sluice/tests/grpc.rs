//! gRPC end to end through Sluice: a real tonic server (the standard `grpc.health.v1.Health`
//! service from tonic-health: unary `Check`, server-streaming `Watch`) behind an Ingress with
//! `backend-protocol: GRPC` (h2c to the backend) or `GRPCS` (HTTP/2 over TLS), and a real
//! tonic client reaching Sluice over h2c (prior knowledge) or over HTTPS with ALPN h2.
//! Covers unary calls, streaming (an update pushed after the call started), error statuses
//! and trailers relayed intact, large messages, and what a client gets when the backend is down.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use common::tls::{self, Ca, ClientOpts, Pem};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

const BACKEND_PROTOCOL: &str = "nginx.ingress.kubernetes.io/backend-protocol";
/// The health service's own name: its status can be set, watched and cleared.
const HEALTH: &str = "grpc.health.v1.Health";
const HOST: &str = "grpc.example";

type Health = HealthServer<HealthService>;

/// A tonic-health server in clear (h2c) on a free loopback port.
async fn grpc_backend() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(Server::builder().serve_with_incoming(service, incoming));
    (addr, reporter)
}

/// What a TLS backend saw of each handshake: the SNI and the ALPN protocol.
type Handshakes = Arc<Mutex<Vec<(Option<String>, Option<Vec<u8>>)>>>;

/// A tonic-health server over TLS (rustls, ALPN h2 only) presenting `pem`.
async fn grpcs_backend(pem: &Pem) -> (SocketAddr, HealthReporter, Handshakes) {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Handshakes = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx, record) = (acceptor.clone(), tx.clone(), record.clone());
            // Handshakes in their own tasks: a failed one must not stop the server.
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let (_, conn) = stream.get_ref();
                let sni = conn.server_name().map(str::to_string);
                record.lock().unwrap().push((sni, conn.alpn_protocol().map(<[u8]>::to_vec)));
                let _ = tx.send(stream).await;
            });
        }
    });
    let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, std::io::Error>(s), rx))
    });
    tokio::spawn(Server::builder().serve_with_incoming(service, incoming));
    (addr, reporter, seen)
}

/// Any byte stream a connector may hand to tonic.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Dials Sluice whatever the URI says: in clear, or with TLS (`opts`), where ALPN must pick h2.
#[derive(Clone)]
struct Dial {
    addr: SocketAddr,
    tls: Option<ClientOpts>,
}

impl Service<http::Uri> for Dial {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (addr, tls) = (self.addr, self.tls.clone());
        Box::pin(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(tokio::net::TcpStream::connect(addr).await?),
                Some(opts) => {
                    let stream = tls::connect(addr, &opts).await?;
                    let alpn = tls::seen(&stream).alpn;
                    if alpn.as_deref() != Some(b"h2") {
                        return Err(std::io::Error::other(format!("ALPN chose {alpn:?}, not h2")));
                    }
                    Box::new(stream)
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}

/// A tonic channel to Sluice for `host`: h2c to its HTTP port, or HTTPS with ALPN h2.
async fn channel(s: &Sluice, host: &str, https: bool) -> Channel {
    let (scheme, dial) = if https {
        ("https", Dial { addr: s.https, tls: Some(ClientOpts::sni(host).h2()) })
    } else {
        ("http", Dial { addr: s.http, tls: None })
    };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{host}")).unwrap();
    tokio::time::timeout(WAIT, endpoint.connect_with_connector(dial))
        .await
        .expect("connects in time")
        .expect("connects")
}

async fn health_client(s: &Sluice, host: &str, https: bool) -> HealthClient<Channel> {
    HealthClient::new(channel(s, host, https).await)
}

async fn check(
    client: &mut HealthClient<Channel>,
    service: &str,
) -> Result<HealthCheckResponse, tonic::Status> {
    let req = HealthCheckRequest { service: service.to_string() };
    tokio::time::timeout(WAIT, client.check(req)).await.expect("no timeout").map(|r| r.into_inner())
}

fn serving(r: &HealthCheckResponse) -> Wire {
    Wire::try_from(r.status).unwrap()
}

/// A manifests directory with the Service `grpc` (endpoint `backend`) and an Ingress for
/// [`HOST`] with `backend-protocol: protocol` and more annotations.
fn grpc_manifests(backend: SocketAddr, protocol: &str, more: &[(&str, &str)]) -> Manifests {
    let m = Manifests::new();
    m.write("class.yaml", &ingress_class());
    m.write("svc.yaml", &service("grpc", &[backend]));
    let mut annotations = vec![(BACKEND_PROTOCOL, protocol)];
    annotations.extend_from_slice(more);
    m.write("ing.yaml", &ingress("grpc", HOST, &[("/", "Prefix", "grpc")], &annotations));
    m
}

/// Unary Check of the whole server, and of an unknown service (NotFound), over `https` or h2c.
async fn unary_calls(s: &Sluice, https: bool) {
    let mut client = health_client(s, HOST, https).await;
    let r = check(&mut client, "").await.expect("Check succeeds through Sluice");
    assert_eq!(serving(&r), Wire::Serving);
    let err = check(&mut client, "no.such.Service").await.expect_err("an unknown service");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "service not registered", "the grpc-message arrives intact");
}

/// The next message of a Watch stream, within [`WAIT`].
async fn next(
    stream: &mut tonic::Streaming<HealthCheckResponse>,
) -> Result<Option<HealthCheckResponse>, tonic::Status> {
    tokio::time::timeout(WAIT, stream.message()).await.expect("a message in time")
}

/// Watch: the current status first, then an update pushed by the server while the call is
/// open, then a clean end (trailers with grpc-status 0) when the service is cleared.
async fn streaming_watch(s: &Sluice, reporter: &mut HealthReporter, https: bool) {
    reporter.set_serving::<Health>().await;
    let mut client = health_client(s, HOST, https).await;
    let req = HealthCheckRequest { service: HEALTH.to_string() };
    let mut stream = tokio::time::timeout(WAIT, client.watch(req))
        .await
        .unwrap()
        .expect("Watch starts")
        .into_inner();
    let first = next(&mut stream).await.unwrap().expect("the current status");
    assert_eq!(serving(&first), Wire::Serving);

    reporter.set_not_serving::<Health>().await;
    let update = next(&mut stream).await.unwrap().expect("an update on the open stream");
    assert_eq!(serving(&update), Wire::NotServing, "the pushed update crosses Sluice");

    reporter.set_service_status(HEALTH, ServingStatus::Serving).await;
    let again = next(&mut stream).await.unwrap().expect("another update");
    assert_eq!(serving(&again), Wire::Serving);

    // Clearing the service ends the stream on the server: trailers end it here, status OK.
    reporter.clear_service_status(HEALTH).await;
    assert!(next(&mut stream).await.expect("a clean end, with grpc-status 0").is_none());
    let trailers = stream.trailers().await.unwrap().expect("trailers after the messages");
    assert_eq!(trailers.get("grpc-status").map(|v| v.to_str().unwrap()), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_h2c_unary_and_errors() {
    let (backend, _reporter) = grpc_backend().await;
    let m = grpc_manifests(backend, "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);
    unary_calls(&s, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_https_with_alpn_h2_unary_and_errors() {
    let (backend, _reporter) = grpc_backend().await;
    let m = grpc_manifests(backend, "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);
    unary_calls(&s, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_server_streaming_over_h2c() {
    let (backend, mut reporter) = grpc_backend().await;
    let m = grpc_manifests(backend, "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);
    streaming_watch(&s, &mut reporter, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_server_streaming_over_https() {
    let (backend, mut reporter) = grpc_backend().await;
    let m = grpc_manifests(backend, "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);
    streaming_watch(&s, &mut reporter, true).await;
}

/// A gRPC message frame: uncompressed, length-prefixed.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// `HealthCheckRequest { service }` in protobuf: field 1, length-delimited.
fn check_request(service: &str) -> Vec<u8> {
    let mut out = vec![];
    if !service.is_empty() {
        out.push(0x0a);
        let mut n = service.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// One raw gRPC call to `/grpc.health.v1.Health/Check` over h2c on Sluice's HTTP port:
/// the response head, body and trailers as they arrived.
async fn raw_check(
    s: &Sluice,
    service: &str,
) -> (http::response::Parts, Bytes, Option<http::HeaderMap>) {
    let tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{HOST}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(&check_request(service))))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req)).await.unwrap().unwrap();
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(WAIT, body.collect()).await.unwrap().unwrap();
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_status_and_trailers_are_relayed_intact() {
    let (backend, _reporter) = grpc_backend().await;
    let m = grpc_manifests(backend, "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);

    // Success: a message, then grpc-status 0 in real trailers after it.
    let (head, body, trailers) = raw_check(&s, "").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-type"], "application/grpc");
    assert_eq!(&body[..], &grpc_frame(&[0x08, Wire::Serving as u8])[..], "one SERVING message");
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");

    // An error before any message: tonic answers "trailers-only" (grpc-status in the only
    // HEADERS frame, which ends the stream); it arrives as sent, with HTTP 200.
    let (head, body, trailers) = raw_check(&s, "no.such.Service").await;
    assert_eq!(head.status, 200);
    assert!(body.is_empty());
    let status =
        trailers.as_ref().and_then(|t| t.get("grpc-status")).or(head.headers.get("grpc-status"));
    assert_eq!(status.expect("a grpc-status"), &(Code::NotFound as i32).to_string());
    let message =
        trailers.as_ref().and_then(|t| t.get("grpc-message")).or(head.headers.get("grpc-message"));
    // Percent-encoded on the wire, as the gRPC protocol has it.
    assert_eq!(message.expect("a grpc-message"), "service%20not%20registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_large_messages_cross_intact() {
    // 3 MiB: several HTTP/2 flow-control windows, under tonic's 4 MiB decoding limit, over
    // the 1m default proxy-body-size (raised here, as for any large request).
    let (backend, reporter) = grpc_backend().await;
    let big: String = (0..3 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    reporter.set_service_status(&big, ServingStatus::NotServing).await;
    let m =
        grpc_manifests(backend, "GRPC", &[("nginx.ingress.kubernetes.io/proxy-body-size", "8m")]);
    let s = Sluice::start(m.path(), &[]);

    for https in [false, true] {
        let mut client = health_client(&s, HOST, https).await;
        // The server looks the 3 MiB name up exactly: one byte lost or changed is NotFound.
        let r = check(&mut client, &big).await.expect("the large request arrives whole");
        assert_eq!(serving(&r), Wire::NotServing);
        let mut changed = big.clone();
        changed.replace_range(big.len() - 1.., "!");
        let err = check(&mut client, &changed).await.expect_err("a different name is unknown");
        assert_eq!(err.code(), Code::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcs_backend_over_tls() {
    let ca = Ca::new("gRPC backend CA");
    let (backend, mut reporter, seen) = grpcs_backend(&ca.server(&["grpc.internal"])).await;
    let m = grpc_manifests(
        backend,
        "GRPCS",
        &[
            ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "default/backend-ca"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-name", "grpc.internal"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-server-name", "on"),
        ],
    );
    m.write("secret.yaml", &tls::ca_secret("backend-ca", &ca.cert));
    let s = Sluice::start(m.path(), &[]);

    unary_calls(&s, false).await;
    unary_calls(&s, true).await;
    streaming_watch(&s, &mut reporter, true).await;
    let handshakes = seen.lock().unwrap().clone();
    assert!(!handshakes.is_empty());
    for (sni, alpn) in handshakes {
        assert_eq!(sni.as_deref(), Some("grpc.internal"), "proxy-ssl-name sent as SNI");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "HTTP/2 negotiated with the backend");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcs_backend_failing_verification_answers_502() {
    let (backend, _reporter, _) =
        grpcs_backend(&Ca::new("Rogue CA").server(&["grpc.internal"])).await;
    let trusted = Ca::new("Trusted CA");
    let m = grpc_manifests(
        backend,
        "GRPCS",
        &[
            ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "default/backend-ca"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-name", "grpc.internal"),
        ],
    );
    m.write("secret.yaml", &tls::ca_secret("backend-ca", &trusted.cert));
    let s = Sluice::start(m.path(), &[]);

    // The backend's certificate is refused: a gateway error, as when it is down.
    assert_bad_gateway(&s).await;
}

/// Sluice answers a gRPC call it cannot forward as ingress-nginx does: HTTP 502 with NGINX's
/// HTML page, no grpc-status. gRPC clients go by the HTTP status (grpc-go: UNAVAILABLE);
/// tonic reads the HTML as a gRPC frame first and reports INTERNAL, naming the 502.
async fn assert_bad_gateway(s: &Sluice) {
    let (head, body, trailers) = raw_check(s, "").await;
    assert_eq!(head.status, 502);
    assert_eq!(head.headers["content-type"], "text/html");
    assert!(head.headers.get("grpc-status").is_none(), "{:?}", head.headers);
    assert!(trailers.is_none(), "no trailers: {trailers:?}");
    assert!(String::from_utf8_lossy(&body).contains("502 Bad Gateway"));
    for https in [false, true] {
        let mut client = health_client(s, HOST, https).await;
        let err = check(&mut client, "").await.expect_err("no backend answers");
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert!(err.message().contains("502 Bad Gateway"), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_backend_down_answers_502_without_grpc_status() {
    let m = grpc_manifests(unused_addr(), "GRPC", &[]);
    let s = Sluice::start(m.path(), &[]);
    assert_bad_gateway(&s).await;
}
