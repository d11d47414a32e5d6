//! `sluice echo`: a backend that answers every request with JSON describing it (method, path
//! with query, host, headers, body size, and its own name), and echoes WebSocket messages.
//! Used by the quickstart, the tests and anyone checking where a route leads.
//!
//! Query parameters shape the answer: `status=NNN` sets the status, `delay_ms=N` waits before
//! answering, `bytes=N` answers N bytes of `x` instead of JSON.
//!
//! With TLS ([`spawn_tls`], `sluice echo --tls`) it serves h2 and HTTP/1.1 over TLS and reports
//! the server name the client sent (`sni`): a passthrough or HTTPS backend for tests and demos.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cli::EchoArgs;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Binds `addr` and serves echo answers named `name` until the runtime stops. Returns the
/// bound address (useful with port 0).
pub async fn spawn(addr: SocketAddr, name: &str) -> std::io::Result<SocketAddr> {
    listen(addr, name, None).await
}

/// Like [`spawn`], over TLS with `config` (its ALPN protocols are set to h2 and HTTP/1.1).
pub async fn spawn_tls(
    addr: SocketAddr,
    name: &str,
    mut config: rustls::ServerConfig,
) -> std::io::Result<SocketAddr> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    listen(addr, name, Some(TlsAcceptor::from(Arc::new(config)))).await
}

/// A server configuration with a fresh self-signed certificate for `host`.
pub fn self_signed(host: &str) -> anyhow::Result<rustls::ServerConfig> {
    // The host as common name too, so `curl -v` shows whose certificate answered.
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, host);
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    Ok(rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())?)
}

/// A server configuration from PEM files.
pub fn from_pem(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    Ok(rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?)
}

async fn listen(
    addr: SocketAddr,
    name: &str,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else { continue };
            let tls = tls.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let service = service_fn(move |req| answer(req, name, remote, None));
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let sni: Option<Arc<str>> = stream.get_ref().1.server_name().map(Arc::from);
                        let service =
                            service_fn(move |req| answer(req, name, remote, Some(sni.clone())));
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Ok(local)
}

/// `sluice echo`: serves until interrupted.
pub async fn run(args: &EchoArgs) -> anyhow::Result<()> {
    let local = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => spawn_tls(args.listen, &args.name, from_pem(cert, key)?).await?,
        _ if args.tls => spawn_tls(args.listen, &args.name, self_signed(&args.tls_host)?).await?,
        _ => spawn(args.listen, &args.name).await?,
    };
    tracing::info!(listen = %local, name = %args.name, tls = args.tls || args.tls_cert.is_some(), "echo backend listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Answers one request; `tls` is `Some(sni)` on a TLS connection.
async fn answer(
    mut req: Request<Incoming>,
    name: &'static str,
    remote: SocketAddr,
    tls: Option<Option<Arc<str>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(ms) = query.get("delay_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if is_websocket(&req) {
        return Ok(websocket(&mut req));
    }
    let status = query
        .get("status")
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(n) = query.get("bytes").and_then(|v| v.parse::<usize>().ok()) {
        let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; n])));
        *resp.status_mut() = status;
        return Ok(resp);
    }
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let version = format!("{:?}", req.version());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let doc = serde_json::json!({
        "name": name,
        "method": method,
        "path": path,
        "host": host,
        "version": version,
        "remote": remote.to_string(),
        "headers": headers,
        "body_bytes": body_bytes,
        "tls": tls.is_some(),
        "sni": tls.flatten().as_deref(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(doc.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    Ok(resp)
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the WebSocket handshake and echoes every text and binary message.
fn websocket(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"missing Sec-WebSocket-Key")));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()))
        .expect("a valid handshake response")
}
