//! Ingress status: the addresses external-dns and users read from
//! `status.loadBalancer.ingress`.
//!
//! The addresses come from `--publish-status-address` (a fixed list) or `--publish-service`
//! (that Service's load balancer addresses, followed as they change), as in ingress-nginx. The
//! leader writes them on every Ingress it owns, with server-side apply under the field
//! manager `sluice`; an Ingress that stops being ours (class changed, annotation removed) has
//! our addresses removed by releasing the field Sluice owns. Writes happen only when the
//! status differs.

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_model::{NamespacedName, Objects};
use tokio::sync::watch;

use crate::FIELD_MANAGER;

/// Where the published addresses come from.
#[derive(Clone, Debug, Default)]
pub struct StatusConfig {
    /// `--publish-service`.
    pub publish_service: Option<NamespacedName>,
    /// `--publish-status-address`.
    pub publish_status_address: Vec<String>,
}

/// The addresses to publish.
pub enum Addresses {
    /// `--publish-status-address`: never changes.
    Fixed(Vec<String>),
    /// `--publish-service`: follows the Service.
    Service(watch::Receiver<Vec<String>>),
}

impl Addresses {
    /// The addresses now, sorted.
    pub fn current(&mut self) -> Vec<String> {
        match self {
            Addresses::Fixed(list) => list.clone(),
            Addresses::Service(rx) => rx.borrow_and_update().clone(),
        }
    }

    /// Resolves when the addresses change (never, for a fixed list).
    pub async fn changed(&mut self) {
        if let Addresses::Service(rx) = self
            && rx.changed().await.is_ok()
        {
            return;
        }
        // A fixed list, or a watch that ended with the process: nothing more will change.
        std::future::pending().await
    }
}

/// Where the addresses come from; `None` when neither flag is set (status is then not written).
pub fn addresses(client: &Client, config: &StatusConfig) -> Option<Addresses> {
    if !config.publish_status_address.is_empty() {
        let mut fixed = config.publish_status_address.clone();
        fixed.sort();
        fixed.dedup();
        return Some(Addresses::Fixed(fixed));
    }
    let svc = config.publish_service.clone()?;
    let (tx, rx) = watch::channel(Vec::new());
    let api: Api<Service> = Api::namespaced(client.clone(), &svc.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", svc.name));
    tokio::spawn(async move {
        let stream = watcher::watcher(api, cfg).backoff(crate::retry::WatchRetry::new());
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(s) | Event::InitApply(s)) => {
                    tx.send_if_modified(|cur| replace(cur, service_addresses(&s)));
                }
                Ok(Event::Delete(_)) => {
                    tx.send_if_modified(|cur| replace(cur, Vec::new()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(service = %svc, error = %e, "cannot watch --publish-service; retrying")
                }
            }
        }
    });
    Some(Addresses::Service(rx))
}

fn replace(cur: &mut Vec<String>, new: Vec<String>) -> bool {
    if *cur == new {
        return false;
    }
    *cur = new;
    true
}

/// A Service's published addresses, as ingress-nginx reads them: the name of an ExternalName
/// Service, the cluster IP of a ClusterIP Service, else the load balancer's IPs and hostnames
/// and the external IPs. Sorted, without duplicates.
pub fn service_addresses(svc: &Service) -> Vec<String> {
    let spec = svc.spec.as_ref();
    let mut out: Vec<String> = match spec.and_then(|s| s.type_.as_deref()) {
        Some("ExternalName") => spec.and_then(|s| s.external_name.clone()).into_iter().collect(),
        Some("ClusterIP") | None => spec
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None")
            .into_iter()
            .collect(),
        _ => {
            let lb = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref());
            let mut v: Vec<String> = lb
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect();
            v.extend(spec.and_then(|s| s.external_ips.clone()).unwrap_or_default());
            v
        }
    };
    out.sort();
    out.dedup();
    out
}

/// The addresses an Ingress's status holds now.
fn current(ing: &Ingress) -> Vec<String> {
    let lb =
        ing.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    let mut v: Vec<String> = lb
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    v.sort();
    v
}

/// True when Sluice owns (has written) this Ingress's status.
fn written_by_us(ing: &Ingress) -> bool {
    ing.metadata.managed_fields.iter().flatten().any(|f| {
        f.manager.as_deref() == Some(FIELD_MANAGER) && f.subresource.as_deref() == Some("status")
    })
}

/// What one sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Ingresses whose status was set.
    pub updated: usize,
    /// Ingresses no longer ours whose status Sluice released.
    pub released: usize,
    /// Writes that failed (retried on the next sync).
    pub failed: usize,
}

/// Brings every Ingress's status in line: `addresses` on those in `owned`, Sluice's addresses
/// removed from those it wrote but no longer owns.
pub async fn sync(
    client: &Client,
    addresses: &[String],
    owned: &HashSet<NamespacedName>,
    ingresses: &Objects<Ingress>,
) -> SyncStats {
    let mut stats = SyncStats::default();
    for ing in ingresses {
        let key = NamespacedName::new(ing.namespace().unwrap_or_default(), ing.name_any());
        let ours = owned.contains(&key);
        let result = if ours {
            if current(ing) == addresses && written_by_us(ing) {
                continue;
            }
            stats.updated += 1;
            apply(client, &key, Some(addresses)).await
        } else if written_by_us(ing) && !current(ing).is_empty() {
            stats.released += 1;
            apply(client, &key, None).await
        } else {
            continue;
        };
        if let Err(e) = result {
            stats.failed += 1;
            tracing::warn!(ingress = %key, error = %e, "cannot update Ingress status; retrying on the next sync");
        }
    }
    stats
}

/// Removes Sluice's addresses from every Ingress it owns (shutdown of the last replica).
pub async fn clear(
    client: &Client,
    owned: &HashSet<NamespacedName>,
    ingresses: &Objects<Ingress>,
) -> usize {
    let mut cleared = 0;
    for ing in ingresses {
        let key = NamespacedName::new(ing.namespace().unwrap_or_default(), ing.name_any());
        if owned.contains(&key)
            && !current(ing).is_empty()
            && apply(client, &key, None).await.is_ok()
        {
            cleared += 1;
        }
    }
    cleared
}

/// Server-side applies the status: `Some(addresses)` sets them; `None` gives up Sluice's
/// ownership of the list, which removes what Sluice wrote.
async fn apply(
    client: &Client,
    key: &NamespacedName,
    addresses: Option<&[String]>,
) -> kube::Result<Ingress> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), &key.namespace);
    let load_balancer = match addresses {
        Some(list) => {
            let entries: Vec<_> = list
                .iter()
                .map(|a| {
                    if a.parse::<std::net::IpAddr>().is_ok() {
                        json!({"ip": a})
                    } else {
                        json!({"hostname": a})
                    }
                })
                .collect();
            json!({"ingress": entries})
        }
        None => json!({}),
    };
    let body = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": {"loadBalancer": load_balancer},
    });
    api.patch_status(&key.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
}
