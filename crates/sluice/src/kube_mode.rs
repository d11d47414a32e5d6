//! `sluice serve` on the Kubernetes API: reflectors feed the same translate and proxy as the
//! manifests source; the elected leader also writes Ingress status and Events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use sluice_kube::events::Events;
use sluice_kube::leader::Election;
use sluice_kube::status::{self, StatusConfig};
use sluice_kube::{KubeSource, SourceConfig};
use sluice_model::{NamespacedName, Settings};
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::control::{Applied, Publisher, next_table};
use crate::serve::{Base, debounced, shutdown_signal};

/// Runs until SIGTERM or SIGINT.
pub(crate) async fn run(
    args: ServeArgs,
    base: Base,
    mut publisher: Publisher,
    on_listening: impl crate::serve::OnListening,
) -> anyhow::Result<()> {
    let client =
        sluice_kube::client(args.kubeconfig.as_deref()).await.map_err(anyhow::Error::msg)?;
    let source_config = SourceConfig {
        namespaces: (!args.watch_namespace.is_empty()).then(|| args.watch_namespace.clone()),
        namespace_selector: args.watch_namespace_selector.clone(),
        configmap: base.settings.configmap.clone(),
    };
    match &source_config.namespaces {
        Some(list) => tracing::info!(namespaces = %list.join(","), "watching the Kubernetes API"),
        None => {
            tracing::info!(selector = ?source_config.namespace_selector, "watching the Kubernetes API in every namespace")
        }
    }
    let (source, mut changes) = KubeSource::start(client.clone(), &source_config);
    let synced = tokio::select! {
        report = source.wait_synced() => report,
        () = shutdown_signal() => return Ok(()),
    };
    // The wake-ups of the initial lists are covered by the first build below.
    while changes.try_recv().is_ok() {}
    let objects: usize = synced.counts.iter().map(|(_, n)| n).sum();
    tracing::info!(objects, took_ms = synced.took.as_millis() as u64, "initial sync complete");
    let mut applied = Arc::new(rebuild(&source, &base.settings, &mut publisher, None));
    publisher.in_force.store(Some(applied.clone()));
    let proxy = base.serve_traffic(&args, on_listening)?;
    base.serve_webhook(&args, &publisher.in_force, Some(&client)).await?;

    let (applied_tx, applied_rx) = watch::channel(applied.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let duties =
        tokio::spawn(leader_duties(client, LeaderConfig::from(&args), applied_rx, stop_rx));

    let debounce = Duration::from_millis(args.debounce_ms);
    // Changes apply until the process ends, through the shutdown delay and grace period too:
    // a backend's pods may be replaced while in-flight requests drain.
    let apply = async {
        while changes.recv().await.is_some() {
            debounced(&mut changes, debounce).await;
            let next = Arc::new(tokio::task::block_in_place(|| {
                rebuild(&source, &base.settings, &mut publisher, Some(&applied))
            }));
            // Leader duties sync status and Events from a new table only: the same table
            // (nothing changed) would have them walk every Ingress for nothing.
            let published = !Arc::ptr_eq(&next.table, &applied.table);
            applied = next;
            publisher.in_force.store(Some(applied.clone()));
            if published {
                let _ = applied_tx.send(applied.clone());
            }
        }
    };
    tokio::pin!(apply);
    let source_ended = tokio::select! {
        () = &mut apply => true,
        () = shutdown_signal() => false,
    };
    base.admin.ready.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if let Err(e) = duties.await {
        tracing::warn!(error = %e, "leader duties ended abnormally");
    }
    let drain = base.drain(&args, proxy);
    if source_ended {
        return drain.await;
    }
    tokio::pin!(drain);
    tokio::select! {
        r = &mut drain => return r,
        () = &mut apply => {}
    }
    drain.await
}

/// Builds and publishes a table from the stores as they are now (only new endpoints, when
/// only EndpointSlices changed since `previous`). Nothing is published when nothing changed:
/// a wake-up can come with no change (see [`sluice_translate::unchanged`]), and a new
/// generation for it would only be noise in the logs and metrics.
fn rebuild(
    source: &KubeSource,
    settings: &Settings,
    publisher: &mut Publisher,
    previous: Option<&Applied>,
) -> Applied {
    let started = Instant::now();
    let snapshot = source.snapshot();
    if let Some(p) =
        previous.filter(|p| sluice_translate::unchanged(&p.table, &p.snapshot, &snapshot))
    {
        tracing::debug!(
            generation = p.table.generation,
            "woken with nothing changed; the table in force stays"
        );
        return Applied { snapshot, table: p.table.clone() };
    }
    let table = next_table(previous, &snapshot, settings);
    let table = publisher.publish(table, Vec::new(), started.elapsed());
    Applied { snapshot, table }
}

/// What the leader does, and with which flags.
struct LeaderConfig {
    namespace: String,
    identity: String,
    pod: Option<String>,
    election_id: String,
    election_ttl: Duration,
    status: StatusConfig,
    update_status: bool,
    update_status_on_shutdown: bool,
    status_interval: Duration,
}

impl From<&ServeArgs> for LeaderConfig {
    fn from(args: &ServeArgs) -> Self {
        let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
        let identity = pod.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        Self {
            namespace: controller_namespace(),
            identity,
            pod,
            election_id: args.election_id.clone(),
            election_ttl: Duration::from_secs(args.election_ttl),
            status: StatusConfig {
                publish_service: args.publish_service.clone(),
                publish_status_address: args.publish_status_address.clone(),
            },
            update_status: args.update_status,
            update_status_on_shutdown: args.update_status_on_shutdown,
            status_interval: Duration::from_secs(args.status_update_interval.max(1)),
        }
    }
}

/// The controller's namespace: `POD_NAMESPACE`, else the service account's, else `default`.
fn controller_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "default".into())
}

/// Joins the election and, while leading, keeps Ingress status and Events in line with the
/// latest table: on every change, on leadership gained, on new addresses, and periodically.
/// On stop: clears status if this is the last replica (and `--update-status-on-shutdown`),
/// then releases the Lease.
async fn leader_duties(
    client: Client,
    config: LeaderConfig,
    mut applied: watch::Receiver<Arc<Applied>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut election = loop {
        match Election::join(
            client.clone(),
            &config.namespace,
            &config.election_id,
            &config.identity,
            config.election_ttl,
        )
        .await
        {
            Ok(e) => break e,
            Err(e) => {
                tracing::error!(
                    "{e}; retrying in 10 s (traffic is served meanwhile, but no status or Events are written)"
                );
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(10)) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
    };
    tracing::info!(lease = %format!("{}/{}", config.namespace, config.election_id), identity = %config.identity, "joined the leader election");
    // The election's own receiver, not a clone: resigning closes it, which is what releases
    // the Lease.
    let leading = &mut election.leading;
    let mut addresses =
        if config.update_status { status::addresses(&client, &config.status) } else { None };
    if config.update_status && addresses.is_none() {
        tracing::info!(
            "neither --publish-service nor --publish-status-address is set: Ingress status is not written"
        );
    }
    let mut events = Events::new(client.clone(), config.pod.clone());
    let mut tick = tokio::time::interval(config.status_interval);
    let mut term_started = false;
    loop {
        if *leading.borrow_and_update() {
            let current = applied.borrow_and_update().clone();
            let owned: HashSet<NamespacedName> = current.table.owned.iter().cloned().collect();
            if let Some(addrs) = &mut addresses {
                let list = addrs.current();
                let stats = status::sync(&client, &list, &owned, &current.snapshot.ingresses).await;
                if stats.updated + stats.released + stats.failed > 0 {
                    tracing::info!(addresses = %list.join(","), updated = stats.updated, released = stats.released, failed = stats.failed, "Ingress status synced");
                }
            }
            events.publish(&current.snapshot.ingresses, &owned, &current.table.diagnostics).await;
            if !std::mem::replace(&mut term_started, true) {
                tracing::info!(
                    owned = owned.len(),
                    "leading: Ingress status and Events are up to date"
                );
            }
        }
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    break;
                }
                if *leading.borrow() {
                    tracing::info!(identity = %config.identity, "became the leader: writing Ingress status and Events");
                } else {
                    tracing::info!(identity = %config.identity, "no longer the leader");
                    events.reset();
                    term_started = false;
                }
            }
            _ = applied.changed() => {}
            _ = async {
                match &mut addresses {
                    Some(a) => a.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
    }

    if *leading.borrow() && config.update_status_on_shutdown && addresses.is_some() {
        match other_replicas_running(&client, &config).await {
            Some(false) => {
                let current = applied.borrow().clone();
                let owned: HashSet<NamespacedName> = current.table.owned.iter().cloned().collect();
                let cleared = status::clear(&client, &owned, &current.snapshot.ingresses).await;
                tracing::info!(
                    cleared,
                    "last replica shutting down: removed our address from Ingress status"
                );
            }
            Some(true) => tracing::info!("other replicas run: Ingress status left in place"),
            None => tracing::info!(
                "cannot tell whether other replicas run (POD_NAME unknown): Ingress status left in place"
            ),
        }
    }
    election.resign().await;
}

/// Whether other running pods share this pod's labels (ignoring the labels that differ between
/// revisions of one Deployment or DaemonSet), as ingress-nginx checks before clearing status on
/// shutdown. `None` when this pod cannot be found.
async fn other_replicas_running(client: &Client, config: &LeaderConfig) -> Option<bool> {
    let name = config.pod.as_ref()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let me = pods.get(name).await.ok()?;
    let selector = me
        .labels()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "pod-template-hash" | "controller-revision-hash" | "pod-template-generation"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selector.is_empty() {
        return None;
    }
    let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
    Some(list.items.iter().any(|p| {
        p.name_any() != *name
            && p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    }))
}
