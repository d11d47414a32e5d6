//! The PROXY protocol (v1 and v2, HAProxy's), which load balancers put before the first byte
//! of a connection to say whom it comes from (ConfigMap `use-proxy-protocol`). The header is
//! read exactly, nothing after it, so that the HTTP or TLS bytes that follow are untouched.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// How long a load balancer has to send the header (ingress-nginx's
/// `proxy-protocol-header-timeout` default).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// v1's longest line (`PROXY TCP6 <two addresses> <two ports>\r\n`).
pub(crate) const V1_MAX: usize = 107;
/// The longest v2 header read (addresses and TLVs); load balancers send far less.
pub(crate) const V2_MAX: usize = 4096;

/// What the header said of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proxied {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to, on the load balancer.
    pub destination: SocketAddr,
}

/// Reads the PROXY header at the start of `stream`: `Ok(None)` for a connection the header
/// says nothing about (v1 `UNKNOWN`, v2 `LOCAL`, a family other than TCP over IP); `Err` for
/// a connection that does not start with one (NGINX closes those: "broken header").
pub(crate) async fn read(stream: &mut TcpStream) -> Result<Option<Proxied>, String> {
    match tokio::time::timeout(HEADER_TIMEOUT, read_header(stream)).await {
        Ok(r) => r,
        Err(_) => Err("no PROXY protocol header in time".into()),
    }
}

/// The reading itself, on any stream (the fuzz check feeds it bytes from memory).
pub(crate) async fn read_header(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<Option<Proxied>, String> {
    let io = |e: std::io::Error| e.to_string();
    // Both versions are at least 15 bytes long: 8 tell which one it is.
    let mut buf = vec![0u8; 8];
    stream.read_exact(&mut buf).await.map_err(io)?;
    if buf.starts_with(b"PROXY ") {
        // A line: read a byte at a time, so as not to read past it.
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err("PROXY protocol v1 line too long".into());
            }
            stream.read_exact(&mut byte).await.map_err(io)?;
            buf.push(byte[0]);
        }
        // The protocol's lines are ASCII. `ppp` slices the line one character past its first
        // CR, which panicked inside a multi-byte character (found by the `proxy_header` fuzz
        // target): only ASCII reaches it.
        if !buf.is_ascii() {
            return Err("PROXY protocol v1 line is not ASCII".into());
        }
        let line = std::str::from_utf8(&buf).map_err(|_| "PROXY protocol v1 line is not text")?;
        let header = v1::Header::try_from(line).map_err(|e| format!("PROXY protocol v1: {e}"))?;
        return Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Some(Proxied {
                source: SocketAddr::from((a.source_address, a.source_port)),
                destination: SocketAddr::from((a.destination_address, a.destination_port)),
            }),
            v1::Addresses::Tcp6(a) => Some(Proxied {
                source: SocketAddr::from((a.source_address, a.source_port)),
                destination: SocketAddr::from((a.destination_address, a.destination_port)),
            }),
            v1::Addresses::Unknown => None,
        });
    }
    if !v2::PROTOCOL_PREFIX.starts_with(&buf) {
        return Err("not a PROXY protocol header".into());
    }
    buf.resize(16, 0);
    stream.read_exact(&mut buf[8..]).await.map_err(io)?;
    if &buf[..12] != v2::PROTOCOL_PREFIX {
        return Err("not a PROXY protocol header".into());
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX {
        return Err("PROXY protocol v2 header too long".into());
    }
    buf.resize(16 + len, 0);
    stream.read_exact(&mut buf[16..]).await.map_err(io)?;
    let header = v2::Header::try_from(&buf[..]).map_err(|e| format!("PROXY protocol v2: {e}"))?;
    if header.command != v2::Command::Proxy || header.protocol != v2::Protocol::Stream {
        return Ok(None);
    }
    Ok(match header.addresses {
        v2::Addresses::IPv4(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::IPv6(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(mut bytes: &[u8]) -> (Result<Option<Proxied>, String>, usize) {
        let r = read_header(&mut bytes).await;
        (r, bytes.len())
    }

    #[tokio::test]
    async fn v1_lines_are_read_to_their_end_and_no_further() {
        let (r, left) = parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nGET /").await;
        let p = r.unwrap().unwrap();
        assert_eq!(p.source, "192.0.2.1:40000".parse().unwrap());
        assert_eq!(p.destination, "198.51.100.2:443".parse().unwrap());
        assert_eq!(left, 5);
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").await.0, Ok(None));
    }

    /// Found by the `proxy_header` fuzz target: a lone CR followed by a multi-byte character
    /// made `ppp` slice inside the character and panic. Such a line is refused.
    #[tokio::test]
    async fn a_line_that_is_not_ascii_is_refused_without_a_panic() {
        let line = "PROXY TCP4 1.2.3.4 5.6.7.8 \u{19b}4?\r\u{19b}\nx\r\n";
        let (r, _) = parse(line.as_bytes()).await;
        assert_eq!(r, Err("PROXY protocol v1 line is not ASCII".to_string()));
        let (r, _) = parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 \u{e9}\r\n".as_bytes()).await;
        assert!(r.is_err());
    }
}
