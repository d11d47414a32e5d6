//! Sluice's data plane: HTTP/1.1 and h2c on one port, routing by the current
//! [`RoutingTable`], proxying to pod endpoints over pooled keep-alive connections.
//!
//! The proxy never sees a Kubernetes object. It reads the table from [`Shared::table`]
//! (swapped atomically by the control plane) once per request, and follows the request life
//! cycle in `handler`: match, policies, upstream, response, log.
//!
//! Concurrency model: `--workers` threads, each a single-threaded tokio runtime with its own
//! `SO_REUSEPORT` listener, upstream connection pool, access-log buffer and metric handles.
//! Nothing on the request path takes a lock.

mod access_log;
mod body;
mod forward;
mod handler;
mod local;
mod metrics;
mod record;
mod server;
mod tunnel;
mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use sluice_model::RoutingTable;

pub use access_log::{AccessLog, LogFormat};
pub use metrics::{ControllerLabels, Metrics};
pub use server::{Proxy, ProxyConfig};

/// State shared by every worker for the life of the process.
pub struct Shared {
    /// The routing table in force; the control plane stores a new one to apply a change.
    pub table: ArcSwap<RoutingTable>,
    /// Request metrics.
    pub metrics: Metrics,
    /// The access log.
    pub access_log: AccessLog,
    /// The `Server` header sent on every response.
    pub server_header: HeaderValue,
}

impl Shared {
    /// Creates the shared state and leaks it: it lives as long as the process, and workers
    /// then reach it without reference counting on the hot path.
    pub fn leak(table: RoutingTable, metrics: Metrics, access_log: AccessLog) -> &'static Shared {
        Box::leak(Box::new(Shared {
            table: ArcSwap::from_pointee(table),
            metrics,
            access_log,
            server_header: HeaderValue::from_static("sluice"),
        }))
    }

    /// Publishes a new routing table; requests already in flight keep the one they started with.
    pub fn publish(&self, table: Arc<RoutingTable>) {
        self.table.store(table);
    }

    /// Flushes this thread's access log buffer and metric handles.
    pub(crate) fn flush_worker(&self) {
        self.access_log.flush_worker();
        self.metrics.flush_worker();
    }
}
