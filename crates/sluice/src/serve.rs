//! `sluice serve`: the manifests source, the control loop, the proxy and the admin port,
//! wired together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_manifests::ManifestDir;
use sluice_model::Snapshot;
use sluice_proxy::{AccessLog, ControllerLabels, Metrics, Proxy, ProxyConfig, Shared};

use crate::admin::{self, AdminState};
use crate::cli::{LogFormat, ServeArgs};
use crate::control::{Control, ControlMetrics};

/// Runs until SIGTERM or SIGINT, then drains. `on_listening` is told the proxy's and the
/// admin port's addresses once both accept connections.
pub async fn run(
    args: ServeArgs,
    on_listening: impl FnOnce(SocketAddr, SocketAddr),
) -> anyhow::Result<()> {
    let Some(root) = args.manifests.clone() else {
        anyhow::bail!(
            "--manifests DIR is required: this version of Sluice serves a directory of \
             Kubernetes manifests (the Kubernetes API source is not built yet)"
        );
    };
    let settings = args.class.settings();
    let metrics = Metrics::new(&ControllerLabels {
        namespace: std::env::var("POD_NAMESPACE").unwrap_or_default(),
        class: settings.controller_class.clone(),
        pod: std::env::var("POD_NAME").unwrap_or_default(),
    });
    let control_metrics = Arc::new(ControlMetrics::new(metrics.registry()));
    let format = match args.log_format {
        LogFormat::Text => sluice_proxy::LogFormat::Upstreaminfo,
        LogFormat::Json => sluice_proxy::LogFormat::Json,
    };
    let access_log = AccessLog::new(format, Box::new(std::io::stdout()));
    let empty = sluice_translate::translate(&Snapshot::default(), &settings);
    let shared = Shared::leak(empty, metrics, access_log);

    // The first table is in force before the proxy accepts a connection.
    let control = tokio::task::block_in_place(|| {
        Control::start(ManifestDir::new(&root), settings, shared, control_metrics.clone())
    })?;
    let source_errors = control.source_errors.clone();

    let workers =
        args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let proxy = Arc::new(Proxy::start(
        ProxyConfig {
            bind_address: args.bind_address,
            http_port: args.http_port,
            workers,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_period),
        },
        shared,
    )?);
    let state = Arc::new(AdminState {
        shared,
        proxy: proxy.clone(),
        ready: AtomicBool::new(true),
        source_errors,
        control_metrics,
    });
    let admin_addr =
        admin::serve((args.bind_address, args.healthz_port).into(), state.clone()).await?;
    tracing::info!(http = %proxy.http_addr(), admin = %admin_addr, workers, "listening");
    on_listening(proxy.http_addr(), admin_addr);

    let (watch, mut changes) = sluice_manifests::watch(&root)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", root.display()))?;
    let debounce = Duration::from_millis(args.debounce_ms);
    let apply_loop = tokio::spawn(async move {
        let _watch = watch;
        let mut control = control;
        while changes.recv().await.is_some() {
            // Apply once the changes stop arriving for `debounce` (an editor's save, a
            // `kubectl`-style rewrite of many files, a ConfigMap volume swap).
            while let Ok(Some(())) = tokio::time::timeout(debounce, changes.recv()).await {}
            tokio::task::block_in_place(|| control.apply());
        }
    });

    shutdown_signal().await;
    tracing::info!(
        grace_s = args.shutdown_grace_period,
        "shutting down: no new connections, draining"
    );
    state.ready.store(false, Ordering::Relaxed);
    apply_loop.abort();
    tokio::task::spawn_blocking(move || proxy.shutdown()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
