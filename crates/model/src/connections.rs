//! Client and upstream connection limits and timeouts, table-wide: ingress-nginx's ConfigMap
//! keys of the same names, with NGINX's semantics (see the translate crate's `connections`
//! family for the keys).

use std::time::Duration;

use serde::Serialize;

/// How long and how much a client connection may take, and how upstream connections are
/// kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionLimits {
    /// `client-header-timeout`: the time to send a whole request head (and, on a new
    /// connection, to start one); then the connection is closed without an answer.
    pub client_header_timeout: Duration,
    /// `client-body-timeout`: the longest wait between two reads of a request body; then the
    /// connection is closed without an answer (logged 408).
    pub client_body_timeout: Duration,
    /// `keep-alive-requests`: requests served on one client connection, after which it is
    /// closed (`Connection: close` on the last HTTP/1.x response, GOAWAY on HTTP/2).
    pub keep_alive_requests: u32,
    /// `large-client-header-buffers`: bounds of a request head.
    pub header_buffers: HeaderBuffers,
    /// `max-worker-connections` (and `max-worker-open-files` for its `0`): client connections
    /// one worker serves at once; `0` derives it from the open-file limit.
    pub max_worker_connections: u32,
    /// `max-worker-open-files`: `0` is the process's limit less 1,024.
    pub max_worker_open_files: u32,
    /// The `upstream-keepalive-*` keys.
    pub upstream: UpstreamKeepalive,
}

impl Default for ConnectionLimits {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            keep_alive_requests: 1000,
            header_buffers: HeaderBuffers::default(),
            max_worker_connections: 16384,
            max_worker_open_files: 0,
            upstream: UpstreamKeepalive::default(),
        }
    }
}

impl ConnectionLimits {
    /// The client connections one worker serves at once, as ingress-nginx derives NGINX's
    /// `worker_connections`: `max-worker-connections`, else three quarters of
    /// `max-worker-open-files`, itself the process's open-file limit `nofile` less 1,024 (at
    /// least 1,024) when `0`.
    pub fn worker_connections(&self, nofile: u64) -> usize {
        if self.max_worker_connections > 0 {
            return self.max_worker_connections as usize;
        }
        let open_files = match self.max_worker_open_files {
            0 => nofile.saturating_sub(1024).max(1024),
            n => u64::from(n),
        };
        usize::try_from(open_files * 3 / 4).unwrap_or(usize::MAX).max(1)
    }
}

/// `large-client-header-buffers` (`number size`, NGINX's `large_client_header_buffers`): a
/// request line longer than `size` is answered 414, a header line longer than `size` 400, a
/// head longer than `number × size` 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderBuffers {
    /// How many buffers.
    pub number: u32,
    /// Bytes in each.
    pub size: u32,
}

impl Default for HeaderBuffers {
    fn default() -> Self {
        Self { number: 4, size: 8 * 1024 }
    }
}

impl HeaderBuffers {
    /// The longest request head accepted.
    pub fn total(&self) -> usize {
        (self.number as usize).saturating_mul(self.size as usize)
    }
}

/// Upstream keep-alive (`upstream-keepalive-*`, NGINX's `keepalive*` in the upstream block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamKeepalive {
    /// `upstream-keepalive-connections`: idle connections each worker keeps, all endpoints
    /// together; `0` keeps none.
    pub connections: u32,
    /// `upstream-keepalive-timeout`: how long an idle connection is kept.
    pub timeout: Duration,
    /// `upstream-keepalive-requests`: requests one connection carries before it is closed.
    pub requests: u32,
    /// `upstream-keepalive-time`: how long one connection carries requests before it is
    /// closed (after the response in progress).
    pub time: Duration,
}

impl Default for UpstreamKeepalive {
    fn default() -> Self {
        Self {
            connections: 320,
            timeout: Duration::from_secs(60),
            requests: 10_000,
            time: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_connections_follow_ingress_nginx() {
        let mut limits = ConnectionLimits::default();
        assert_eq!(limits.worker_connections(1 << 20), 16384);
        limits.max_worker_connections = 0;
        // nofile 1,048,576: (1,048,576 − 1,024) × 3/4.
        assert_eq!(limits.worker_connections(1 << 20), 785_664);
        // A low limit: at least 1,024 open files, so 768 connections.
        assert_eq!(limits.worker_connections(1024), 768);
        limits.max_worker_open_files = 4000;
        assert_eq!(limits.worker_connections(1 << 20), 3000);
    }

    #[test]
    fn header_buffers_bound_the_head() {
        assert_eq!(HeaderBuffers::default().total(), 32 * 1024);
    }
}
