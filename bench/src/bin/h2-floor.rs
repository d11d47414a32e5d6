//! hyper's HTTP/2 server with nothing of Sluice's around it: the floors under Sluice's HTTP/2
//! path (issue 15, target 2), measured by `bench/h2-floor.sh` against nginx doing the same.
//!
//! It runs hyper as Sluice's proxy worker does (one current-thread runtime, hyper's HTTP/2
//! server with Sluice's default settings and defences, a task per stream through
//! `TokioExecutor`, rustls with aws-lc-rs for TLS). Without `--upstream` it answers every
//! request from memory (nginx's `return 200`): what any server built on hyper's HTTP/2 spends
//! per request. With `--upstream`, each stream's task forwards a `GET` to the backend over
//! pooled kept-alive HTTP/1.1 connections, as Sluice's upstream leg does, with nothing else:
//! no route lookup, no policies, no headers beyond `Host`, no access log. That is the least a
//! proxy on hyper's HTTP/2 server and tokio can spend; Sluice's life cycle is the rest.
//!
//! ```text
//! h2-floor --port P [--tls CERT.pem KEY.pem] [--upstream HOST:PORT]
//! ```
//!
//! Cleartext takes HTTP/2 with prior knowledge (h2c) only; with `--tls`, ALPN `h2` only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sluice's allocator, as in its binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The backend's answer in the benchmarks (nginx's `return 200 "ok\n"`), headers included.
fn answer(_request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    let headers = response.headers_mut();
    headers.insert("server", hyper::header::HeaderValue::from_static("nginx/1.22.1"));
    headers.insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
    response
}

/// Idle kept-alive connections to the backend, at most `upstream-keepalive-connections`'
/// default (320) of them, as Sluice's pool and the benchmark's nginx keep.
struct Pool {
    backend: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
}

/// The request the backend gets: `GET /` with `Host`, as nginx's `proxy_pass` sends it.
const UPSTREAM_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench.example.com\r\n\r\n";

impl Pool {
    /// One request to the backend on an idle connection or a new one; the response's body.
    /// Enough HTTP/1.1 for the benchmark's backend (a head, then `Content-Length` bytes).
    async fn forward(&self) -> std::io::Result<Bytes> {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = TcpStream::connect(self.backend).await?;
                conn.set_nodelay(true)?;
                conn
            }
        };
        conn.write_all(UPSTREAM_REQUEST).await?;
        let mut buf = [0u8; 2048];
        let mut len = 0;
        loop {
            let n = conn.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            len += n;
            if let Some(body) = complete_body(&buf[..len]) {
                let body = Bytes::copy_from_slice(body);
                let mut idle = self.idle.lock().expect("not poisoned");
                if idle.len() < 320 {
                    idle.push(conn);
                }
                return Ok(body);
            }
            if len == buf.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
        }
    }
}

/// The body of a whole response in `read` (head and `Content-Length` bytes), if all is there.
fn complete_body(read: &[u8]) -> Option<&[u8]> {
    let end = read.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&read[..end]).ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    read.get(end..end + length)
}

/// The backend's body as a response, or 502.
async fn proxied(pool: &Pool) -> Response<Full<Bytes>> {
    match pool.forward().await {
        Ok(body) => {
            let mut response = Response::new(Full::new(body));
            response
                .headers_mut()
                .insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
            response
        }
        Err(_) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// rustls offering ALPN `h2` alone, with the certificate and key from PEM files.
fn tls_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// hyper's HTTP/2 server with Sluice's defaults (`crates/proxy/src/http2.rs`).
fn builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(64 * 1024);
    h2
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: h2-floor --port P [--tls CERT.pem KEY.pem] [--upstream HOST:PORT]";
    let port: u16 = match args.iter().position(|a| a == "--port") {
        Some(i) => args.get(i + 1).and_then(|p| p.parse().ok()).expect(usage),
        None => panic!("{usage}"),
    };
    let tls = args.iter().position(|a| a == "--tls").map(|i| {
        let (cert, key) = (args.get(i + 1).expect(usage), args.get(i + 2).expect(usage));
        tokio_rustls::TlsAcceptor::from(tls_config(cert, key).unwrap_or_else(|e| panic!("{e}")))
    });
    let pool: Option<Arc<Pool>> = args.iter().position(|a| a == "--upstream").map(|i| {
        let backend = args.get(i + 1).and_then(|a| a.parse().ok()).expect(usage);
        Arc::new(Pool { backend, idle: Mutex::new(Vec::new()) })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("127.0.0.1:{port}: {e}"));
        let builder = builder();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: let the clients that have one go on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            let tls = tls.clone();
            let pool = pool.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| {
                    let pool = pool.clone();
                    async move {
                        Ok::<_, Infallible>(match pool {
                            Some(pool) => proxied(&pool).await,
                            None => answer(r),
                        })
                    }
                });
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(TokioIo::new(stream), service).await,
                };
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::complete_body;

    #[test]
    fn a_body_is_complete_only_with_its_content_length() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        assert_eq!(complete_body(whole), Some(&b"ok\n"[..]));
        assert_eq!(complete_body(&whole[..whole.len() - 1]), None);
        assert_eq!(complete_body(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(complete_body(empty), Some(&b""[..]));
    }
}
