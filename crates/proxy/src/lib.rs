//! Sluice's data plane: HTTP/1.1 and h2c on the HTTP port, TLS (terminated, or passed through
//! by server name) on the HTTPS port, routing by the current [`RoutingTable`], proxying to pod
//! endpoints over pooled keep-alive connections (HTTP/1.1, HTTPS, gRPC in clear or over TLS).
//!
//! The proxy never sees a Kubernetes object. It reads the [`Published`] state (the table and
//! its TLS side, swapped together by the control plane) once per request, and follows the
//! request life cycle of `pipeline` (match, access, redirect, pick, upstream request,
//! response, log), the same on the HTTP/1.1 fast path and the general path.
//!
//! Concurrency model: `--workers` threads, each a single-threaded tokio runtime with its own
//! `SO_REUSEPORT` listeners, upstream connection pool, access-log buffer and metric handles.
//! Nothing on the request path takes a lock.

mod access_log;
mod auth;
mod body;
mod fast;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod head_limits;
mod http2;
mod idle;
mod local;
mod metrics;
mod mirror;
mod oneshot;
mod passthrough;
mod pipeline;
mod pool;
mod proxy_protocol;
mod record;
mod server;
mod stall;
mod throttle;
pub mod tls;
mod tunnel;
mod upstream;

use std::sync::{Arc, mpsc};

use arc_swap::ArcSwap;
use http::HeaderValue;
use sluice_model::RoutingTable;

pub use access_log::{AccessLog, LogFormat};
pub use metrics::{ControllerLabels, Metrics, MetricsConfig, requests_total};
pub use server::{Proxy, ProxyConfig, connection_counts};
pub use tls::{CertStore, TlsState};

/// A thread that drops what it is sent; `None` if it cannot be started (states are then
/// dropped where they are replaced).
fn reaper<T: Send + 'static>() -> Option<mpsc::Sender<T>> {
    let (tx, rx) = mpsc::channel::<T>();
    let spawned = std::thread::Builder::new().name("sluice-reaper".into()).spawn(move || {
        for old in rx {
            drop(old);
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a thread to drop replaced tables; dropping them inline");
            None
        }
    }
}

/// A routing table and its TLS side, in force together.
pub struct Published {
    /// Routes, backends, TLS hosts and policies.
    pub table: Arc<RoutingTable>,
    /// Server configurations and client-certificate checks built from `table`.
    pub tls: TlsState,
}

/// State shared by every worker for the life of the process.
pub struct Shared {
    /// What is in force; the control plane stores a new one to apply a change.
    pub state: ArcSwap<Published>,
    /// Request metrics.
    pub metrics: Metrics,
    /// The access log.
    pub access_log: AccessLog,
    /// The `Server` header sent on every response.
    pub server_header: HeaderValue,
    /// The HTTPS port, once the proxy listens on one (for redirects).
    https_port: std::sync::OnceLock<u16>,
    /// Where replaced states go to be dropped (see [`Shared::publish`]).
    reaper: Option<mpsc::Sender<Arc<Published>>>,
    /// The counters of `limit-*`, by zone.
    pub(crate) zones: pipeline::Zones,
}

impl Shared {
    /// Creates the shared state and leaks it: it lives as long as the process, and workers
    /// then reach it without reference counting on the hot path.
    pub fn leak(first: Published, metrics: Metrics, access_log: AccessLog) -> &'static Shared {
        let zones = pipeline::Zones::new();
        zones.attach(&first.table);
        Box::leak(Box::new(Shared {
            state: ArcSwap::from_pointee(first),
            metrics,
            access_log,
            server_header: HeaderValue::from_static("sluice"),
            https_port: std::sync::OnceLock::new(),
            reaper: reaper(),
            zones,
        }))
    }

    /// The HTTPS port served, if any.
    pub fn https_port(&self) -> Option<u16> {
        self.https_port.get().copied()
    }

    /// Puts a new table and its TLS side in force; requests and connections already under way
    /// keep the ones they started with. The state replaced is dropped on a thread of its own:
    /// freeing a large table (tens of milliseconds for 10,000 Ingresses) is no part of applying
    /// a change. Whatever a request still holds is freed by that request, as before.
    pub fn publish(&self, published: Published) {
        let table = published.table.clone();
        let old = self.state.swap(Arc::new(published));
        // After the swap: requests attach their limits' zones themselves until then.
        self.zones.attach(&table);
        if let Some(reaper) = &self.reaper {
            // Disconnected (the thread died): `old` comes back and is dropped here instead.
            let _ = reaper.send(old);
        }
    }

    /// The table in force.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.state.load().table.clone()
    }

    /// Flushes this thread's access log buffer and metric handles.
    pub(crate) fn flush_worker(&self) {
        self.access_log.flush_worker();
        self.metrics.flush_worker();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    /// Tells which thread dropped it.
    struct Dropped(mpsc::Sender<Option<String>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn the_reaper_drops_what_it_is_sent_on_its_own_thread() {
        let reaper = super::reaper::<Dropped>().expect("thread started");
        let (tx, rx) = mpsc::channel();
        reaper.send(Dropped(tx)).unwrap();
        let thread = rx.recv_timeout(Duration::from_secs(10)).expect("dropped");
        assert_eq!(thread.as_deref(), Some("sluice-reaper"));
    }
}
