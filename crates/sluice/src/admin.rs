//! The admin port (`--healthz-port`, 10254 as in ingress-nginx): `/healthz`, `/readyz`,
//! `/metrics`, `/debug/config`, `/debug/backends`, `/debug/certs`, `/debug/info`. The debug
//! endpoints expose routing and public certificate fields only: no Secret, no private key.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use serde::{Deserialize, Serialize};
use sluice_model::Severity;
use sluice_proxy::{Proxy, Shared};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
    /// When the table in force was published (Unix milliseconds; 0: not yet).
    pub applied_at: Arc<AtomicI64>,
    /// The DER of the certificate generated at start-up (the default certificate when
    /// `--default-ssl-certificate` is unset or unusable), for `/debug/certs`.
    pub generated_cert: Vec<u8>,
    /// Who this controller is, for `/debug/info`.
    pub identity: Identity,
}

/// Who a controller is: the pod, and the classes it serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// `POD_NAME` (empty outside a pod).
    pub pod: String,
    /// `POD_NAMESPACE` (empty outside a pod).
    pub namespace: String,
    /// `--ingress-class`.
    pub ingress_class: String,
    /// `--controller-class`.
    pub controller_class: String,
}

/// `/debug/info`: the controller and the configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoView {
    /// Sluice's version.
    pub version: String,
    /// Who the controller is.
    #[serde(flatten)]
    pub identity: Identity,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// The generation of the routing table in force (bumped on every applied change).
    pub generation: u64,
    /// When it was applied, RFC 3339 (`None` before the first configuration).
    pub applied_at: Option<String>,
    /// Seconds since then.
    pub applied_seconds_ago: Option<u64>,
    /// Hosts served (the catch-all counts as one).
    pub hosts: usize,
    /// Backends.
    pub backends: usize,
    /// Certificates loaded from Secrets.
    pub certificates: usize,
    /// Error diagnostics (rejected objects) of the configuration in force.
    pub errors: usize,
    /// Warning diagnostics.
    pub warnings: usize,
    /// Manifest files that do not parse (manifests source only).
    pub source_errors: usize,
}

/// Binds the admin port and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config", get(config))
        .route("/debug/backends", get(backends))
        .route("/debug/certs", get(certs))
        .route("/debug/certs/{host}", get(cert_for))
        .route("/debug/info", get(info))
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

async fn certs(State(s): State<Arc<AdminState>>) -> Response {
    let published = s.shared.state.load();
    axum::Json(crate::certs::all(&published.table, &published.tls, &s.generated_cert))
        .into_response()
}

async fn cert_for(State(s): State<Arc<AdminState>>, Path(host): Path<String>) -> Response {
    let published = s.shared.state.load();
    match crate::certs::for_name(&published.table, &published.tls, &s.generated_cert, &host) {
        Some(view) => axum::Json(view).into_response(),
        None => {
            (StatusCode::INTERNAL_SERVER_ERROR, "the certificate does not parse\n").into_response()
        }
    }
}

async fn info(State(s): State<Arc<AdminState>>) -> Response {
    let table = s.shared.table();
    let applied_ms = s.applied_at.load(Ordering::Relaxed);
    let applied = (applied_ms > 0).then(|| {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(applied_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let ago = (now.as_millis() as i64 - applied_ms).max(0) as u64 / 1000;
        (at.format(&Rfc3339).unwrap_or_default(), ago)
    });
    let errors = table.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    axum::Json(InfoView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        identity: s.identity.clone(),
        ready: s.ready.load(Ordering::Relaxed),
        generation: table.generation,
        applied_at: applied.as_ref().map(|(at, _)| at.clone()),
        applied_seconds_ago: applied.map(|(_, ago)| ago),
        hosts: table.host_count(),
        backends: table.backends.len(),
        certificates: table.tls.certs.len(),
        errors,
        warnings: table.diagnostics.len() - errors,
        source_errors: s.source_errors.load().len(),
    })
    .into_response()
}
