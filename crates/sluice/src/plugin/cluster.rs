//! Reaching the cluster: the client from the operator's kubeconfig, the controller pod chosen
//! as ingress-nginx's plugin chooses it, and GETs on its admin port through the API server's
//! pod proxy subresource (`pods/{name}:{port}/proxy/...`): no port-forward, no exec.

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::de::DeserializeOwned;

use super::Connection;

/// The admin port when neither `--port` nor the container's `metrics` port says otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 10254;

/// A client from `--kubeconfig` (else `KUBECONFIG`, else `~/.kube/config`, else in-cluster)
/// and `--context`; with the namespace of the chosen context (`default` when it names none).
pub async fn client(conn: &Connection) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions { context: conn.context.clone(), ..Default::default() };
    let config = match &conn.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if conn.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await.context(
            "no usable kubeconfig (KUBECONFIG, ~/.kube/config) nor in-cluster configuration",
        )?,
    };
    let namespace = config.default_namespace.clone();
    Ok((Client::try_from(config)?, namespace))
}

/// Whether `pod` belongs to Deployment `deployment`: its controller is a ReplicaSet named
/// `<deployment>-<hash>` (the name a Deployment gives its ReplicaSets). Needs only `pods`
/// `list`, as ingress-nginx's plugin does, not `deployments` nor `replicasets`.
pub fn in_deployment(pod: &Pod, deployment: &str) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == "ReplicaSet"
            && o.name
                .strip_prefix(deployment)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hash| !hash.is_empty() && !hash.contains('-'))
    })
}

fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn has_ip(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty())
}

/// Of `candidates`, the pod to ask: a ready one first, then one that has an address, then any;
/// by name among equals, so that the choice is stable.
pub fn choose<'a>(candidates: impl IntoIterator<Item = &'a Pod>) -> Option<&'a Pod> {
    candidates.into_iter().min_by_key(|p| (!ready(p), !has_ip(p), p.metadata.name.clone()))
}

/// The controller pod to ask, with its admin port: `--pod`, else a pod matching `--selector`,
/// else a pod of `--deployment`; in `namespace`.
pub async fn controller_pod(
    client: &Client,
    namespace: &str,
    conn: &Connection,
) -> anyhow::Result<(Pod, u16)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = if let Some(name) = &conn.pod {
        pods.get(name).await.map_err(|e| api_error(e, &format!("pod {namespace}/{name}")))?
    } else if let Some(selector) = &conn.selector {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_error(e, &format!("pods in namespace {namespace}")))?;
        choose(&list.items).cloned().ok_or_else(|| {
            anyhow!("no pods match the selector {selector} in namespace {namespace}")
        })?
    } else {
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(e, &format!("pods in namespace {namespace}")))?;
        let deployment = &conn.deployment;
        choose(list.items.iter().filter(|p| in_deployment(p, deployment))).cloned().ok_or_else(
            || {
                anyhow!(
                    "no pods of Deployment {deployment} in namespace {namespace} (use --namespace, --deployment, --selector or --pod)"
                )
            },
        )?
    };
    let port = conn.port.unwrap_or_else(|| admin_port(&pod, &conn.container));
    Ok((pod, port))
}

/// The admin port of `pod`: its container `container`'s port named `metrics` (as the chart
/// and manifests name it), else 10254.
pub fn admin_port(pod: &Pod, container: &str) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter(|c| c.name == container)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("metrics"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_ADMIN_PORT)
}

/// GETs `path` (with its leading `/`) from `pod`'s admin `port`, through the API server.
pub async fn admin_get(
    client: &Client,
    pod: &Pod,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if !has_ip(pod) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        bail!("pod {ns}/{name} has no IP address yet (phase {phase})");
    }
    let uri = format!("/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy{path}");
    let request = http::Request::get(&uri).body(Vec::new())?;
    client.request_text(request).await.map_err(|e| {
        api_error(
            e,
            &format!("{path} on pod {ns}/{name} port {port} (through the API server's pod proxy)"),
        )
    })
}

/// Like [`admin_get`], parsing the answer as JSON.
pub async fn admin_json<T: DeserializeOwned>(
    client: &Client,
    pod: &Pod,
    port: u16,
    path: &str,
) -> anyhow::Result<T> {
    let text = admin_get(client, pod, port, path).await?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{path} did not answer the JSON expected (is this a Sluice controller of this version?)"
        )
    })
}

/// An API error with what was asked, and for a refusal, the permission it takes.
pub fn api_error(e: kube::Error, what: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(status) if status.code == 403 => anyhow!(
            "forbidden: {what}: {} (kubectl sluice needs: pods list/get in the controller's namespace, pods/proxy get there; services get for info; ingresses and endpointslices list for ingresses)",
            status.message
        ),
        kube::Error::Api(status) if status.code == 404 => {
            anyhow!("not found: {what}: {}", status.message)
        }
        _ => anyhow!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, owner: &str, phase: &str, ready: bool, ip: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": "u", "controller": true,
            }]},
            "spec": {"containers": [{"name": "sluice", "ports": [{"name": "metrics", "containerPort": 9999}]}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn pods_belong_to_a_deployment_by_their_replica_set() {
        assert!(in_deployment(
            &pod("sluice-7d9f-abcde", "sluice-7d9f", "Running", true, None),
            "sluice"
        ));
        // Another Deployment whose name starts the same.
        assert!(!in_deployment(
            &pod("sluice-canary-7d9f-x", "sluice-canary-7d9f", "Running", true, None),
            "sluice"
        ));
        assert!(in_deployment(
            &pod("sluice-canary-7d9f-x", "sluice-canary-7d9f", "Running", true, None),
            "sluice-canary"
        ));
        assert!(!in_deployment(&pod("sluice-x", "sluice", "Running", true, None), "sluice"));
        let mut not_controller = pod("sluice-7d9f-abcde", "sluice-7d9f", "Running", true, None);
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = Some(false);
        assert!(!in_deployment(&not_controller, "sluice"));
    }

    #[test]
    fn a_ready_pod_is_chosen_first_then_by_name() {
        let pods = [
            pod("a", "x-1", "Pending", false, None),
            pod("b", "x-1", "Running", false, Some("10.0.0.2")),
            pod("d", "x-1", "Running", true, Some("10.0.0.4")),
            pod("c", "x-1", "Running", true, Some("10.0.0.3")),
        ];
        assert_eq!(choose(&pods).unwrap().metadata.name.as_deref(), Some("c"));
        assert_eq!(choose(&pods[..2]).unwrap().metadata.name.as_deref(), Some("b"));
        assert!(choose(&[]).is_none());
    }

    #[test]
    fn the_admin_port_is_the_containers_metrics_port() {
        let p = pod("a", "x-1", "Running", true, None);
        assert_eq!(admin_port(&p, "sluice"), 9999);
        assert_eq!(admin_port(&p, "other"), DEFAULT_ADMIN_PORT);
    }
}
