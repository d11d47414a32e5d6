//! The admin port (`--healthz-port`, 10254 as in ingress-nginx): `/healthz`, `/readyz`,
//! `/metrics`, `/debug/config`, `/debug/backends`. The debug endpoints expose routing only:
//! no Secret, no private key.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use sluice_proxy::{Proxy, Shared};

use crate::control::ControlMetrics;
use crate::report::{ConfigView, backends_json};

/// What the admin handlers read.
pub struct AdminState {
    /// The proxy's shared state (table, metrics, access log).
    pub shared: &'static Shared,
    /// The proxy once it runs, for worker health (it starts after the first configuration).
    pub proxy: OnceLock<Arc<Proxy>>,
    /// True once the first configuration is applied, false again while shutting down.
    pub ready: AtomicBool,
    /// The source's own errors (files that do not parse).
    pub source_errors: Arc<ArcSwap<Vec<String>>>,
    /// Gauges refreshed at scrape time.
    pub control_metrics: Arc<ControlMetrics>,
}

/// Binds the admin port and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config", get(config))
        .route("/debug/backends", get(backends))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--healthz-port): {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(local)
}

async fn healthz(State(s): State<Arc<AdminState>>) -> Response {
    // Still starting (waiting for the first configuration) counts as healthy.
    if s.proxy.get().is_none_or(|p| p.healthy()) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "a proxy worker has stopped\n").into_response()
    }
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    s.control_metrics.access_log_dropped.set(s.shared.access_log.dropped() as i64);
    let families = s.shared.metrics.registry().gather();
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&families, &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_string())], buf).into_response()
}

async fn config(State(s): State<Arc<AdminState>>) -> Response {
    let table = s.shared.table();
    let errors = s.source_errors.load();
    axum::Json(ConfigView::new(&table, &errors)).into_response()
}

async fn backends(State(s): State<Arc<AdminState>>) -> Response {
    let table = s.shared.table();
    axum::Json(backends_json(&table)).into_response()
}
