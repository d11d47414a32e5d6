//! Sluice's production source: the Kubernetes API.
//!
//! - [`KubeSource`]: one watch per kind (Ingress, IngressClass, Service, EndpointSlice,
//!   Secret, ConfigMap, and Namespace for `--watch-namespace-selector`), whose stores (objects
//!   kept as snapshots take them, in buckets whose chunks are shared until they change) become
//!   a [`Snapshot`](sluice_model::Snapshot) on demand. Changes arrive as coalesced wake-ups for
//!   the caller's debounce loop. A relist (watch expired, 410 Gone) swaps a store only once the
//!   new list is complete, so a snapshot is never half empty; while the API server is
//!   unreachable, the stores keep their last state and the watchers retry with backoff.
//! - [`status`]: the Ingress status writer (`--publish-service`, `--publish-status-address`).
//! - [`leader`]: leader election on a Lease; the leader alone writes status and Events.
//! - [`events`]: Events on Ingresses (`Sync`, and a Warning per diagnostic).

pub mod events;
pub mod leader;
mod retry;
mod source;
pub mod status;
mod store;

pub use source::{KubeSource, SourceConfig, SyncReport};

/// The field manager Sluice writes with (server-side apply), and the Event reporter.
pub const FIELD_MANAGER: &str = "sluice";

/// Builds a client from `kubeconfig`, else from `KUBECONFIG` or `~/.kube/config`, else from
/// the in-cluster service account.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| format!("invalid kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!(
                "no Kubernetes configuration found (in-cluster, KUBECONFIG or ~/.kube/config): {e}"
            )
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}
