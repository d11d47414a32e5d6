//! How hyper serves client HTTP/2 connections: the ConfigMap's `http2-*` settings and the
//! fixed defences against hostile clients.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Http2Builder;
use sluice_model::Http2Settings;

/// Response data a stream may hold while the client takes nothing (hyper's default is
/// 400 KiB): with `http2-max-concurrent-streams` streams, what one client that never reads
/// can pin in memory.
pub(crate) const MAX_SEND_BUF: usize = 64 * 1024;

/// Applies `settings` to hyper's HTTP/2 server side.
pub(crate) fn configure(h2: &mut Http2Builder<'_, TokioExecutor>, settings: &Http2Settings) {
    h2.timer(TokioTimer::new())
        // A stream beyond it gets RST_STREAM REFUSED_STREAM, as from NGINX.
        .max_concurrent_streams(settings.max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): more than 20 streams reset by the client before
        // they are served, or 1,024 reset by the server for errors, end the connection
        // with GOAWAY ENHANCE_YOUR_CALM (h2's defaults, stated so they stay on).
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // A larger request head gets 431; h2 ends the connection (GOAWAY ENHANCE_YOUR_CALM)
        // when a header block goes on far beyond it or takes more CONTINUATION frames than
        // it needs (CVE-2024-27316 and its family), buffering no more than that meanwhile.
        .max_header_list_size(settings.max_header_list_size)
        .max_send_buf_size(MAX_SEND_BUF);
}
