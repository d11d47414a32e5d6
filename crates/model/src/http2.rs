//! How client HTTP/2 connections are served: the `http2-*` ConfigMap keys, and the limits
//! NGINX applies to HTTP/2 that ingress-nginx leaves at their defaults.

use std::time::Duration;

use serde::Serialize;

/// Settings of client HTTP/2 connections (h2c and h2 over TLS), read from the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Http2Settings {
    /// `use-http2`: whether clients may speak HTTP/2 (ALPN `h2` on the HTTPS port, h2c with
    /// prior knowledge on the HTTP port). Off, they get HTTP/1.1 only.
    pub enabled: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients (`http2-max-concurrent-streams`):
    /// a stream opened beyond it is refused with RST_STREAM REFUSED_STREAM, as NGINX does.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, in bytes (decoded names and values): a larger request
    /// head is refused, and a header block (HEADERS and CONTINUATION frames) far beyond it ends
    /// the connection. NGINX bounds it with `large-client-header-buffers`; Sluice keeps the
    /// 64 KiB its HTTP/1.1 reader allows.
    pub max_header_list_size: u32,
    /// Longest time a response may wait for the client to take more of it (NGINX's
    /// `send_timeout`, which ingress-nginx leaves at 60 s): the socket accepts no byte, or
    /// the client grants no flow-control window. Then the connection is closed.
    pub send_timeout: Duration,
}

impl Default for Http2Settings {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            enabled: true,
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            send_timeout: Duration::from_secs(60),
        }
    }
}
