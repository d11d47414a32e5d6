//! Leader election on a Lease (`--election-id`, in the controller's namespace). Every replica
//! serves traffic; only the leader writes Ingress status and Events. When the leader stops,
//! it releases the Lease so another replica takes over at once; when it dies, another takes
//! over once the Lease expires (`--election-ttl`).

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// This replica's part in the election.
pub struct Election {
    /// True while this replica leads.
    pub leading: watch::Receiver<bool>,
    task:
        JoinHandle<Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

impl Election {
    /// Joins the election for Lease `namespace/name` as `identity`.
    pub async fn join(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        ttl: Duration,
    ) -> Result<Election, String> {
        let ttl_s = ttl.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(ttl_s)
            // Renew with a fifth of the term left: room for clock skew and a slow API server.
            .with_grace((ttl_s / 5).max(1))
            .with_field_manager(format!("{}-leader-election", crate::FIELD_MANAGER))
            .build()
            .await
            .map_err(|e| {
                format!("cannot join the leader election on Lease {namespace}/{name}: {e}")
            })?;
        let (leading, task) = manager.watch().await;
        Ok(Election { leading, task })
    }

    /// Steps down: releases the Lease so that another replica leads at once.
    pub async fn resign(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader Lease"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the leader Lease; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }
}
