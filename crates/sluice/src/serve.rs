//! `sluice serve`: a source (a manifests directory, or the Kubernetes API), the control loop,
//! the proxy and the admin port, wired together.
//!
//! Start-up order: the admin port first (so probes answer: `/readyz` is 503), then the first
//! full configuration, then the proxy, then ready. The proxy never serves an empty table.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice_manifests::ManifestDir;
use sluice_model::{Settings, Snapshot};
use sluice_proxy::{
    AccessLog, CertStore, ControllerLabels, Metrics, Proxy, ProxyConfig, Published, Shared,
};

use crate::admin::{self, AdminState};
use crate::cli::{LogFormat, ServeArgs};
use crate::control::{ControlMetrics, ManifestControl, Publisher};
use crate::process_metrics::ProcessCollector;
use crate::webhook;

/// Runs until SIGTERM or SIGINT, then drains. `on_listening` is told the proxy's and the
/// admin port's addresses once both accept connections.
pub async fn run(args: ServeArgs, on_listening: impl OnListening) -> anyhow::Result<()> {
    let (base, publisher) = Base::start(&args).await?;
    match args.manifests.clone() {
        Some(root) => run_manifests(args, base, publisher, root, on_listening).await,
        None => crate::kube_mode::run(args, base, publisher, on_listening).await,
    }
}

/// Told the proxy's HTTP and HTTPS addresses and the admin port's address, once all accept
/// connections (the quickstart prints them; tests read them from the log).
pub trait OnListening: FnOnce(SocketAddr, Option<SocketAddr>, SocketAddr) {}
impl<F: FnOnce(SocketAddr, Option<SocketAddr>, SocketAddr)> OnListening for F {}

/// What every source shares: settings, the proxy's state, the admin port.
pub(crate) struct Base {
    pub settings: Settings,
    pub shared: &'static Shared,
    pub admin: Arc<AdminState>,
    pub admin_addr: SocketAddr,
}

impl Base {
    /// Sets up the proxy's state and the admin port (not ready yet); returns them with the
    /// publisher the source will drive.
    async fn start(args: &ServeArgs) -> anyhow::Result<(Base, Publisher)> {
        let settings = args.class.settings();
        let metrics_config = args.metrics.config().map_err(anyhow::Error::msg)?;
        let labels = ControllerLabels {
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_default(),
            class: settings.controller_class.clone(),
            pod: std::env::var("POD_NAME").unwrap_or_default(),
        };
        let metrics = Metrics::with_config(&labels, metrics_config);
        let control_metrics = Arc::new(ControlMetrics::new(metrics.registry(), &labels));
        metrics
            .registry()
            .register(Box::new(ProcessCollector::new(&labels)))
            .expect("metric names are unique");
        let format = match args.log_format {
            LogFormat::Text => sluice_proxy::LogFormat::Upstreaminfo,
            LogFormat::Json => sluice_proxy::LogFormat::Json,
        };
        let access_log = AccessLog::new(format, Box::new(std::io::stdout()));
        let empty = sluice_translate::translate(&Snapshot::default(), &settings);
        let mut certs = CertStore::new()
            .map_err(|e| anyhow::anyhow!("cannot generate the default certificate: {e}"))?;
        let (tls, _) = certs.build(&empty);
        let generated_cert = certs.generated().cert[0].to_vec();
        let shared = Shared::leak(Published { table: Arc::new(empty), tls }, metrics, access_log);
        let publisher = Publisher::new(shared, control_metrics.clone(), certs);
        let admin = Arc::new(AdminState {
            shared,
            proxy: OnceLock::new(),
            ready: AtomicBool::new(false),
            source_errors: publisher.source_errors.clone(),
            control_metrics,
            applied_at: publisher.applied_at.clone(),
            generated_cert,
            identity: admin::Identity {
                pod: std::env::var("POD_NAME").unwrap_or_default(),
                namespace: std::env::var("POD_NAMESPACE").unwrap_or_default(),
                ingress_class: settings.ingress_class.clone(),
                controller_class: settings.controller_class.clone(),
            },
        });
        let admin_addr =
            admin::serve((args.bind_address, args.healthz_port).into(), admin.clone()).await?;
        tracing::info!(admin = %admin_addr, "admin port listening; ready once the first configuration is applied");
        Ok((Base { settings, shared, admin, admin_addr }, publisher))
    }

    /// Starts the proxy on the table in force, and declares the controller ready.
    pub(crate) fn serve_traffic(
        &self,
        args: &ServeArgs,
        on_listening: impl OnListening,
    ) -> anyhow::Result<Arc<Proxy>> {
        let workers = args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let proxy = Arc::new(Proxy::start(
            ProxyConfig {
                bind_address: args.bind_address,
                http_port: args.http_port,
                https_port: Some(args.https_port),
                workers,
                shutdown_grace: Duration::from_secs(args.shutdown_grace_period),
            },
            self.shared,
        )?);
        let _ = self.admin.proxy.set(proxy.clone());
        self.admin.ready.store(true, Ordering::Relaxed);
        let https = proxy.https_addr().map_or_else(|| "none".to_string(), |a| a.to_string());
        tracing::info!(http = %proxy.http_addr(), https = %https, admin = %self.admin_addr, workers, "listening");
        on_listening(proxy.http_addr(), proxy.https_addr(), self.admin_addr);
        Ok(proxy)
    }

    /// Starts the validating admission webhook (`--validating-webhook`), once the first
    /// configuration is in force: it judges Ingresses against `in_force`. `client` reaches the
    /// API server, to publish a generated certificate's CA (kube mode only).
    pub(crate) async fn serve_webhook(
        &self,
        args: &ServeArgs,
        in_force: &crate::control::InForce,
        client: Option<&kube::Client>,
    ) -> anyhow::Result<()> {
        let Some(addr) = &args.validating_webhook else { return Ok(()) };
        let addr = addr.resolve(args.bind_address);
        let state = webhook::WebhookState::new(self.settings.clone(), in_force.clone());
        if let (Some(cert), Some(key)) =
            (&args.validating_webhook_certificate, &args.validating_webhook_key)
        {
            let tls = webhook::TlsSource::Files { cert: cert.clone(), key: key.clone() };
            let local = webhook::serve(addr, tls, state).await?;
            tracing::info!(addr = %local, path = webhook::PATH, "validating admission webhook listening");
            return Ok(());
        }
        let (Some(configuration), Some(client)) = (&args.validating_webhook_configuration, client)
        else {
            anyhow::bail!(
                "--validating-webhook needs --validating-webhook-certificate and \
                 --validating-webhook-key, or (watching the Kubernetes API) \
                 --validating-webhook-configuration: Sluice then makes its certificate and sets \
                 that configuration's caBundle"
            );
        };
        let (configuration, client) = (configuration.clone(), client.clone());
        let secret = args.validating_webhook_secret.clone();
        // In the background: the configuration may be created after the controller (one
        // `kubectl apply` of many objects), and traffic is served meanwhile.
        tokio::spawn(async move {
            loop {
                match webhook::generated(&client, &configuration, secret.as_ref()).await {
                    Ok(tls) => {
                        match webhook::serve(addr, tls, state).await {
                            Ok(local) => {
                                tracing::info!(addr = %local, path = webhook::PATH, "validating admission webhook listening")
                            }
                            Err(e) => {
                                tracing::error!("{e:#}; the validating webhook is not served")
                            }
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("validating webhook: {e:#}; retrying in 10 s");
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Stops being ready at once; keeps accepting for `--shutdown-delay` (endpoints take a
    /// moment to drop this pod everywhere); then stops accepting and lets in-flight requests,
    /// WebSockets and streams finish within the grace period.
    pub(crate) async fn drain(&self, args: &ServeArgs, proxy: Arc<Proxy>) -> anyhow::Result<()> {
        self.admin.ready.store(false, Ordering::Relaxed);
        if args.shutdown_delay > 0 {
            tracing::info!(
                delay_s = args.shutdown_delay,
                "shutting down: not ready; still accepting connections for the delay"
            );
            tokio::time::sleep(Duration::from_secs(args.shutdown_delay)).await;
        }
        tracing::info!(
            grace_s = args.shutdown_grace_period,
            "shutting down: no new connections, draining"
        );
        tokio::task::spawn_blocking(move || proxy.shutdown()).await?;
        tracing::info!("drained");
        Ok(())
    }
}

async fn run_manifests(
    args: ServeArgs,
    base: Base,
    publisher: Publisher,
    root: std::path::PathBuf,
    on_listening: impl OnListening,
) -> anyhow::Result<()> {
    let settings = base.settings.clone();
    // The first load and every change run on one thread of their own. glibc's malloc gives
    // each thread an arena and does not hand one arena's free memory to another: building
    // each table on whichever runtime thread was free left a table's worth of free memory
    // in several arenas (with 10,000 Ingresses, RSS went from 167 to 343 MB over the first
    // changes; 236 MB with every table built in one arena).
    //
    // The watch starts before the first load, so that nothing written meanwhile is missed:
    // what it saw is applied after. Each apply reads only the files the watch saw change.
    let (watch, mut changes) = sluice_manifests::watch(&root)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", root.display()))?;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (apply_tx, apply_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let control_root = root.clone();
    let log = watch.changes();
    std::thread::Builder::new().name("sluice-control".into()).spawn(move || {
        let dir = ManifestDir::new(&control_root);
        let in_force = publisher.in_force.clone();
        let mut control = match ManifestControl::start(dir, settings, publisher) {
            Ok(control) => control,
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return;
            }
        };
        let _ = started_tx.send(Ok(in_force));
        // Until the sender goes, at shutdown.
        for () in apply_rx {
            control.apply(&log.take());
        }
    })?;
    let in_force = started_rx
        .await
        .map_err(|_| anyhow::anyhow!("the control thread ended before loading"))??;
    let proxy = base.serve_traffic(&args, on_listening)?;
    base.serve_webhook(&args, &in_force, None).await?;

    let debounce = Duration::from_millis(args.debounce_ms);
    let apply_loop = tokio::spawn(async move {
        let _watch = watch;
        while changes.recv().await.is_some() {
            // Apply once the changes stop arriving for `debounce` (an editor's save, a
            // rewrite of many files, a ConfigMap volume swap).
            debounced(&mut changes, debounce).await;
            // Full: an apply is already waiting, and its rescan will see these changes too.
            let _ = apply_tx.try_send(());
        }
    });
    shutdown_signal().await;
    apply_loop.abort();
    base.drain(&args, proxy).await
}

/// The longest a change waits for quiet: a steady stream of changes (a controller rewriting
/// objects, a flapping pod) is still applied once a second.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Waits until no wake-up arrived for `quiet`, or [`MAX_DEBOUNCE`] passed.
pub(crate) async fn debounced(changes: &mut tokio::sync::mpsc::Receiver<()>, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE.max(quiet);
    while let Ok(Some(())) = tokio::time::timeout(quiet, changes.recv()).await {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
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
