//! One-off HTTP/1.1 exchanges with a URL outside the routing table: mirrors
//! (`mirror-target`) and external authentication (`auth-url`). The host is resolved when
//! asked (a cluster DNS name, typically); HTTPS is not verified, as NGINX's default
//! `proxy_ssl_verify off` does not verify these either.

use std::net::SocketAddr;

use sluice_model::UpstreamTls;
use tokio::net::TcpStream;

use crate::pool::Sender;

/// A new HTTP/1.1 connection to the host of `uri` (`http` or `https`), and its address.
pub(crate) async fn connect(uri: &http::Uri) -> Result<(Sender, SocketAddr), String> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{uri}: not an http or https URL")),
    };
    let authority = uri.authority().ok_or_else(|| format!("{uri}: no host"))?;
    let name = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = tokio::net::lookup_host((name.as_str(), port))
        .await
        .map_err(|e| format!("{name}: {e}"))?
        .next()
        .ok_or_else(|| format!("{name}: no address"))?;
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let sender = if https {
        let tls = UpstreamTls { name: name.clone(), send_sni: true, ..UpstreamTls::default() };
        let config = crate::tls::upstream::config(&tls, false)?;
        let server = crate::tls::upstream::server_name(&tls)?;
        let io = tokio_rustls::TlsConnector::from(config)
            .connect(server, stream)
            .await
            .map_err(|e| format!("TLS to {addr}: {e}"))?;
        crate::upstream::start_http(io, false, false).await
    } else {
        crate::upstream::start_http(stream, false, false).await
    }
    .map_err(|_| format!("HTTP to {addr} failed"))?;
    Ok((sender, addr))
}
