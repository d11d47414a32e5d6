//! The Kubernetes suite: Sluice against a real kube-apiserver and etcd (built from Go modules
//! by `tests/apiserver/build`), running as the service account that `deploy/`'s RBAC grants,
//! never as an administrator. Run it with `scripts/kube-e2e`: it builds the API server if
//! needed, starts a shared one, and points `SLUICE_E2E_DIR` at its kubeconfigs. Without them,
//! every test fails (never skips).
//!
//! Each test works in its own namespace, with its own IngressClass (controller
//! `sluice.dev/e2e-<namespace>`) and election Lease, so tests run side by side.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const E2E: &str = "sluice-e2e";

/// The shared API server started by `scripts/kube-e2e`. Each test makes its own clients:
/// a client's background worker lives on the runtime that made it, and every test has its
/// own runtime.
struct Cluster {
    admin: Client,
    controller_kubeconfig: PathBuf,
}

/// `deploy/`'s RBAC is installed once per run.
static RBAC: OnceCell<()> = OnceCell::const_new();

/// The Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) are installed once per run,
/// before any test starts: while a CRD is being established, discovery of every API group can
/// fail (its group is listed before its resources are served), and every test runs discovery.
static PROMETHEUS_CRDS: OnceCell<()> = OnceCell::const_new();

/// The shared API server's Kubernetes version as `/version` reports it (`v1.30.14`;
/// `tests/apiserver/build` links it in), read once by [`cluster`]. The suite runs against the
/// newest Kubernetes and the oldest the chart accepts (scripts/kube-e2e); a test part that
/// needs a newer version than the oldest would check this and say what it skips.
static SERVER_VERSION: OnceCell<String> = OnceCell::const_new();

/// The shared API server's version, as `helm --kube-version` takes it (`1.30.14`).
fn server_version() -> &'static str {
    SERVER_VERSION.get().expect("cluster() reads the API server's version").trim_start_matches('v')
}

/// Connects to the shared API server and, once, applies `deploy/`'s namespace, RBAC and
/// IngressClass, so that the controller runs with exactly the permissions it ships with, and
/// the Prometheus Operator's CRDs, for the chart's ServiceMonitor and PrometheusRule.
async fn cluster() -> Cluster {
    let dir = std::env::var_os("SLUICE_E2E_DIR").map(PathBuf::from).expect(
        "SLUICE_E2E_DIR is not set: run the Kubernetes suite with scripts/kube-e2e (it builds and starts kube-apiserver)",
    );
    let admin = sluice_testkit::client(&dir.join("admin.kubeconfig")).await.expect("admin client");
    SERVER_VERSION
        .get_or_init(|| async {
            let info = admin.apiserver_version().await.expect("the API server's /version");
            assert!(
                info.major == "1" && info.minor.parse::<u32>().is_ok(),
                "the API server reports no Kubernetes version (tests/apiserver/build links it in): {info:?}"
            );
            info.git_version
        })
        .await;
    RBAC.get_or_init(|| install_rbac(&admin)).await;
    PROMETHEUS_CRDS.get_or_init(|| install_prometheus_crds(&admin)).await;
    Cluster { admin, controller_kubeconfig: dir.join("controller.kubeconfig") }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn install_rbac(admin: &Client) {
    for file in ["00-namespace.yaml", "10-rbac.yaml", "20-ingressclass.yaml"] {
        let text = std::fs::read_to_string(repo().join("deploy/manifests").join(file)).unwrap();
        apply_yaml(admin, &text, None, false).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// Server-side applies every document of `text` (into `namespace` when a namespaced object
/// names none); with `dry_run`, the API server validates without storing. Returns
/// `Kind/name` per object.
async fn apply_yaml(
    client: &Client,
    text: &str,
    namespace: Option<&str>,
    dry_run: bool,
) -> Result<Vec<String>, String> {
    let discovery = Discovery::new(client.clone()).run().await.map_err(|e| e.to_string())?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
        let types = obj.types.clone().ok_or("object without apiVersion/kind")?;
        let gvk = kube::core::GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
        let (resource, caps) =
            discovery.resolve_gvk(&gvk).ok_or_else(|| format!("unknown kind {}", types.kind))?;
        let name = obj.name_any();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = obj
                    .namespace()
                    .or(namespace.map(str::to_string))
                    .unwrap_or_else(|| "default".into());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
        };
        let mut params = PatchParams::apply(E2E).force();
        params.dry_run = dry_run;
        api.patch(&name, &params, &Patch::Apply(&doc))
            .await
            .map_err(|e| format!("{}/{name}: {e}", types.kind))?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

/// A fresh namespace for one test, with our IngressClass `e2e-<ns>`.
struct Test {
    ns: String,
    admin: Client,
    kubeconfig: PathBuf,
}

impl Test {
    async fn new(name: &str) -> Test {
        let c = cluster().await;
        Self::with_client(name, c.admin, c.controller_kubeconfig).await
    }

    async fn with_client(name: &str, admin: Client, kubeconfig: PathBuf) -> Test {
        static N: AtomicU64 = AtomicU64::new(0);
        let ns = format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let api: Api<Namespace> = Api::all(admin.clone());
        let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        api.create(&PostParams::default(), &ns_obj).await.expect("namespace created");
        let t = Test { ns, admin, kubeconfig };
        t.apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": t.class()},
            "spec": {"controller": t.controller()},
        }))
        .await;
        t
    }

    fn class(&self) -> String {
        format!("e2e-{}", self.ns)
    }

    fn controller(&self) -> String {
        format!("sluice.dev/e2e-{}", self.ns)
    }

    /// Starts a controller for this test's namespace and class, as the service account.
    fn sluice(&self, extra: &[&str]) -> Sluice {
        self.sluice_env(extra, &[])
    }

    fn sluice_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Sluice {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env = env.to_vec();
        env.push(("POD_NAMESPACE", sluice_testkit::CONTROLLER_NAMESPACE));
        Sluice::start_kube(&self.kubeconfig, &args, &env)
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            format!("--watch-namespace={}", self.ns),
            format!("--controller-class={}", self.controller()),
            format!("--ingress-class={}", self.class()),
            format!("--election-id={}", self.ns),
            "--debounce-ms=20".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Server-side applies one object (in this namespace when namespaced and unnamed).
    async fn apply(&self, obj: Value) {
        apply_yaml(&self.admin, &serde_json::to_string(&obj).unwrap(), Some(&self.ns), false)
            .await
            .unwrap_or_else(|e| panic!("apply failed: {e}"));
    }

    async fn service(&self, name: &str, endpoints: &[SocketAddr]) {
        self.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }))
        .await;
        self.slice(name, endpoints).await;
    }

    /// The Service's endpoints: one EndpointSlice per endpoint, `<service>-<i>`, since the
    /// test backends share one address and differ by port (a slice has one port list).
    async fn slice(&self, service: &str, endpoints: &[SocketAddr]) {
        for (i, e) in endpoints.iter().enumerate() {
            self.apply(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{service}-{i}"), "namespace": self.ns,
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": e.port()}],
                "endpoints": [{"addresses": [e.ip().to_string()], "conditions": {"ready": true}}],
            }))
            .await;
        }
    }

    /// An Ingress of our class (or of `class`, `None` for none) for `host`, path `/`.
    async fn ingress(
        &self,
        name: &str,
        host: &str,
        service: &str,
        class: Option<&str>,
        annotations: Value,
    ) {
        let mut spec = json!({
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": 80}}},
            }]}}],
        });
        if let Some(c) = class {
            spec["ingressClassName"] = json!(c);
        }
        self.apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": self.ns, "annotations": annotations},
            "spec": spec,
        }))
        .await;
    }

    /// An Ingress of our class for `host`, path `/` to `service`, with TLS from `secret`.
    async fn tls_ingress(&self, name: &str, host: &str, service: &str, secret: &str) {
        self.apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "ingressClassName": self.class(),
                "tls": [{"hosts": [host], "secretName": secret}],
                "rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }]}}],
            },
        }))
        .await;
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn ingress_addresses(&self, name: &str) -> Vec<String> {
        let ing: Ingress = self.api().get(name).await.unwrap();
        let lb =
            ing.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
        lb.into_iter().filter_map(|i| i.ip.or(i.hostname)).collect()
    }
}

/// This machine's own non-loopback IPv4 address: the API server refuses EndpointSlices that
/// list loopback addresses, as in a real cluster.
fn node_ip() -> std::net::IpAddr {
    static IP: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();
    *IP.get_or_init(|| {
        // The source address of the default route (a UDP connect sends nothing).
        let routed = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").and(s.local_addr()))
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
        routed.unwrap_or_else(|| {
            let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            text.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next()?.parse().ok())
                .expect("a non-loopback IPv4 address for test backends (the API server refuses loopback endpoints)")
        })
    })
}

/// An echo backend named `name` on this machine's non-loopback address.
async fn backend(name: &str) -> SocketAddr {
    sluice::echo::spawn((node_ip(), 0).into(), name).await.expect("echo backend starts")
}

/// Polls `check` until it returns true, or fails with `what` after the harness's wait.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The "applied configuration" log lines of `s` after its first table.
fn applies(s: &Sluice) -> Vec<String> {
    let lines = s.stderr().into_iter();
    lines.filter(|l| l.contains("applied configuration") && !l.contains("generation=1 ")).collect()
}

/// The echo backend answering `host` through the proxy, or the status.
async fn answer(s: &Sluice, host: &str) -> String {
    let r = get(&s.url("/"), Some(host)).await;
    if r.status == 200 { r.backend() } else { r.status.as_u16().to_string() }
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_follow_ingresses_services_and_endpoint_slices() {
    let t = Test::new("routes").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    let s = t.sluice(&[]);
    assert_eq!(answer(&s, "web.example.com").await, "a", "routed from the first sync");
    s.wait_stderr(|l| l.contains("initial sync complete"));
    assert!(
        s.stderr().iter().any(|l| l.contains("synced") && l.contains("Ingress")),
        "sync progress is logged"
    );

    // A second Service and Ingress appear: routed without restart.
    let b = backend("b").await;
    t.service("api", &[b]).await;
    t.ingress("api", "api.example.com", "api", Some(&t.class()), json!({})).await;
    eventually("api.example.com reaches b", || async {
        answer(&s, "api.example.com").await == "b"
    })
    .await;

    // The Ingress is deleted: 404.
    t.api::<Ingress>().delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web.example.com answers 404", || async {
        answer(&s, "web.example.com").await == "404"
    })
    .await;
    assert_eq!(answer(&s, "api.example.com").await, "b");
}

/// Ingress changes from watch events are applied as updates of the table in force (the
/// unchanged objects keep comparing equal across snapshots), and route as a full
/// translation would.
#[tokio::test(flavor = "multi_thread")]
async fn ingress_changes_update_the_table_in_force() {
    let t = Test::new("update").await;
    let (a, b) = (backend("a").await, backend("b").await);
    t.service("one", &[a]).await;
    t.service("two", &[b]).await;
    t.ingress("web", "web.example.com", "one", Some(&t.class()), json!({})).await;
    t.ingress("api", "api.example.com", "two", Some(&t.class()), json!({})).await;
    let s = t.sluice(&[]);
    assert_eq!(answer(&s, "web.example.com").await, "a");
    s.wait_stderr(|l| l.contains("initial sync complete"));

    // A changed backend, then a renamed host: each a single Ingress alone on its host.
    t.ingress("web", "web.example.com", "two", Some(&t.class()), json!({})).await;
    eventually("web.example.com reaches b", || async {
        answer(&s, "web.example.com").await == "b"
    })
    .await;
    t.ingress("web", "www.example.com", "one", Some(&t.class()), json!({})).await;
    eventually("www.example.com reaches a", || async {
        answer(&s, "www.example.com").await == "a"
    })
    .await;
    assert_eq!(answer(&s, "web.example.com").await, "404", "the old host is gone");
    assert_eq!(answer(&s, "api.example.com").await, "b", "the neighbour is untouched");
    // Requests follow a table as soon as it is published; its log line comes just after.
    eventually("both changes are logged", || async { applies(&s).len() >= 2 }).await;
    let applies = applies(&s);
    assert!(applies.iter().all(|l| l.contains("update=\"ingresses\"")), "{applies:#?}");
}

/// An application deployed through the API (its Services, EndpointSlices and Ingress, as
/// `kubectl apply -f app.yaml` writes them, in whatever order the watches deliver them) and
/// removed again: every step is an update of the table in force, never a full translation.
#[tokio::test(flavor = "multi_thread")]
async fn an_application_deployed_and_removed_is_never_a_full_translation() {
    let t = Test::new("app").await;
    let (a, b) = (backend("a").await, backend("b").await);
    t.service("one", &[a]).await;
    t.ingress("one", "one.example.com", "one", Some(&t.class()), json!({})).await;
    let s = t.sluice(&[]);
    assert_eq!(answer(&s, "one.example.com").await, "a");
    s.wait_stderr(|l| l.contains("initial sync complete"));

    // The application: two Services, their slices, an Ingress routing `/` and `/api`.
    t.service("app-web", &[a]).await;
    t.service("app-api", &[b]).await;
    let path = |path: &str, service: &str| {
        json!({"path": path, "pathType": "Prefix",
               "backend": {"service": {"name": service, "port": {"number": 80}}}})
    };
    t.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "app", "namespace": t.ns},
        "spec": {"ingressClassName": t.class(), "rules": [{"host": "app.example.com",
            "http": {"paths": [path("/", "app-web"), path("/api", "app-api")]}}]},
    }))
    .await;
    let api_answer = || async {
        let r = get(&s.url("/api"), Some("app.example.com")).await;
        if r.status == 200 { r.backend() } else { r.status.as_u16().to_string() }
    };
    eventually("app.example.com/api reaches b", || async { api_answer().await == "b" }).await;
    assert_eq!(answer(&s, "app.example.com").await, "a");

    // Removed: its Services and slices (the routes answer 503), then the Ingress (404).
    let services = t.api::<k8s_openapi::api::core::v1::Service>();
    let slices = t.api::<k8s_openapi::api::discovery::v1::EndpointSlice>();
    for name in ["app-web", "app-api"] {
        services.delete(name, &DeleteParams::default()).await.unwrap();
        slices.delete(&format!("{name}-0"), &DeleteParams::default()).await.unwrap();
    }
    eventually("both routes answer 503", || async {
        answer(&s, "app.example.com").await == "503" && api_answer().await == "503"
    })
    .await;
    t.api::<Ingress>().delete("app", &DeleteParams::default()).await.unwrap();
    eventually("app.example.com answers 404", || async {
        answer(&s, "app.example.com").await == "404"
    })
    .await;
    assert_eq!(answer(&s, "one.example.com").await, "a", "the neighbour is untouched");
    // Requests follow a table as soon as it is published; its log line comes just after.
    eventually("the removal is logged", || async { applies(&s).len() >= 3 }).await;
    let applies = applies(&s);
    assert!(applies.len() >= 3, "a deployment, a 503 and a removal at least: {applies:#?}");
    assert!(applies.iter().all(|l| !l.contains("update=\"full\"")), "{applies:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scaling_an_endpoint_slice_reaches_every_endpoint_within_a_second() {
    let t = Test::new("scale").await;
    let mut named = Vec::new();
    for i in 0..10 {
        named.push(backend(&format!("e{i}")).await);
    }
    t.service("web", &named[..1]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    let s = t.sluice(&[]);
    assert_eq!(answer(&s, "web.example.com").await, "e0");

    // A WebSocket opened before the change must survive it (endpoint changes swap tables,
    // never connections).
    let mut ws = websocket(&s, "web.example.com").await;

    // Scale 1 -> 10: the nine new slices are written as fast as the API allows, as the
    // EndpointSlice controller does on a scale-up. The second starts once the API server
    // holds all ten: its own write latency (up to 0.8 s when the whole suite runs in
    // parallel on two cores) is not Sluice's, and Sluice cannot see a slice before it.
    t.slice("web", &named).await;
    let started = Instant::now();
    let mut seen = HashSet::new();
    let c = client();
    while seen.len() < 10 {
        let r = send(&c, request("GET", &s.url("/"), Some("web.example.com"), Bytes::new())).await;
        seen.insert(r.backend());
        assert!(started.elapsed() < WAIT, "only {seen:?} answered");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "every endpoint received traffic only after {took:?}");

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text("still there")).await.unwrap();
    let echoed = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("still there"));
}

async fn websocket(
    s: &Sluice,
    host: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", s.http).into_client_request().unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    let (ws, resp) =
        tokio_tungstenite::connect_async(req).await.expect("WebSocket through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_class_selection() {
    let t = Test::new("classes").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    // Another controller's class.
    t.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": format!("other-{}", t.ns)},
        "spec": {"controller": "example.com/other"},
    }))
    .await;
    t.ingress("by-name", "by-name.example.com", "web", Some(&t.class()), json!({})).await;
    t.ingress("other", "other.example.com", "web", Some(&format!("other-{}", t.ns)), json!({}))
        .await;
    t.ingress("missing", "missing.example.com", "web", Some("no-such-class"), json!({})).await;
    t.ingress(
        "legacy",
        "legacy.example.com",
        "web",
        None,
        json!({"kubernetes.io/ingress.class": t.class()}),
    )
    .await;
    t.ingress("classless", "classless.example.com", "web", None, json!({})).await;
    let s = t.sluice(&[]);
    assert_eq!(answer(&s, "by-name.example.com").await, "a");
    assert_eq!(
        answer(&s, "legacy.example.com").await,
        "a",
        "the legacy annotation names our --ingress-class"
    );
    assert_eq!(
        answer(&s, "other.example.com").await,
        "404",
        "another controller's class is ignored"
    );
    assert_eq!(answer(&s, "missing.example.com").await, "404", "a missing class is not ours");
    assert_eq!(answer(&s, "classless.example.com").await, "404", "no class, no default: not ours");

    // Our class becomes the cluster default: class-less Ingresses become ours.
    t.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": t.class(), "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": t.controller()},
    }))
    .await;
    eventually("the class-less Ingress is served", || async {
        answer(&s, "classless.example.com").await == "a"
    })
    .await;
    // Back to non-default (the class is cluster-wide: leave it as other tests expect).
    t.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": t.class(), "annotations": {"ingressclass.kubernetes.io/is-default-class": "false"}},
        "spec": {"controller": t.controller()},
    }))
    .await;
    eventually("the class-less Ingress is dropped", || async {
        answer(&s, "classless.example.com").await == "404"
    })
    .await;

    // An Ingress moves to another class: it stops being served.
    t.ingress("by-name", "by-name.example.com", "web", Some(&format!("other-{}", t.ns)), json!({}))
        .await;
    eventually("the moved Ingress is dropped", || async {
        answer(&s, "by-name.example.com").await == "404"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_and_secret_changes_apply() {
    let t = Test::new("config").await;
    // The ConfigMap lives with the controller, in a namespace `--watch-namespace` leaves out
    // (as ingress-nginx's chart puts it when its scope is one namespace).
    let home = Test::new("config-home").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    let config = |size: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "sluice-config", "namespace": home.ns},
            "data": {"proxy-body-size": size, "global-allowed-response-headers": "X-Team"},
        })
    };
    home.apply(config("1k")).await;
    let s = t.sluice(&[&format!("--configmap={}/sluice-config", home.ns)]);
    let post = |s: &Sluice| {
        let url = s.url("/");
        async move {
            let r = send(
                &client(),
                request("POST", &url, Some("web.example.com"), Bytes::from(vec![b'x'; 4096])),
            )
            .await;
            r.status.as_u16()
        }
    };
    assert_eq!(post(&s).await, 413, "proxy-body-size 1k from the ConfigMap");
    home.apply(config("8k")).await;
    eventually("the new body size applies", || async { post(&s).await == 200 }).await;

    // A ConfigMap an annotation names, in the Ingress's namespace (watched like every object
    // there): missing, the custom-headers route answers 503; created and changed, it applies.
    let headers = format!("{}/team-headers", t.ns);
    let annotations = json!({"nginx.ingress.kubernetes.io/custom-headers": headers});
    t.ingress("headers", "headers.example.com", "web", Some(&t.class()), annotations).await;
    let team = |s: &Sluice| {
        let url = s.url("/");
        async move {
            let r = get(&url, Some("headers.example.com")).await;
            let team = r.headers.get("x-team").map(|v| v.to_str().unwrap().to_string());
            (r.status.as_u16(), team)
        }
    };
    eventually("a missing custom-headers ConfigMap answers 503", || async {
        team(&s).await == (503, None)
    })
    .await;
    let team_headers = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "team-headers", "namespace": t.ns}, "data": {"X-Team": v}});
    t.apply(team_headers("blue")).await;
    eventually("the created ConfigMap's header is set", || async {
        team(&s).await == (200, Some("blue".into()))
    })
    .await;
    t.apply(team_headers("green")).await;
    eventually("the changed ConfigMap's header is set", || async {
        team(&s).await == (200, Some("green".into()))
    })
    .await;

    // An unrelated ConfigMap changing does not rebuild the table.
    let generation = s.generation().await;
    t.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": t.ns}, "data": {"a": "1"}})).await;
    // A Secret is read (TLS and authentication use them): its creation and update rebuild.
    let secret = |v: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": t.ns}, "stringData": {"k": v}});
    t.apply(secret("1")).await;
    let after_secret = s.wait_generation_after(generation).await;
    t.apply(secret("2")).await;
    s.wait_generation_after(after_secret).await;
    let _: Secret = t.api().get("s").await.unwrap();
    let _: ConfigMap = t.api().get("unrelated").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_follows_the_published_service_and_the_class() {
    let t = Test::new("status").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sluice-lb", "namespace": t.ns},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
    }))
    .await;
    let lb: Api<Service> = t.api();
    let set_lb = |ip: &'static str| {
        let lb = lb.clone();
        async move {
            let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
            lb.patch_status("sluice-lb", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    };
    set_lb("203.0.113.10").await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    t.ingress("theirs", "theirs.example.com", "web", Some("someone-else"), json!({})).await;
    let s = t.sluice(&[&format!("--publish-service={}/sluice-lb", t.ns)]);
    eventually("status has the load balancer's IP", || async {
        t.ingress_addresses("web").await == ["203.0.113.10"]
    })
    .await;

    // The load balancer's address changes: so does the status.
    set_lb("203.0.113.20").await;
    eventually("status follows the new IP", || async {
        t.ingress_addresses("web").await == ["203.0.113.20"]
    })
    .await;
    assert!(
        t.ingress_addresses("theirs").await.is_empty(),
        "an Ingress of another class gets no status"
    );

    // The Ingress moves to another class: our address is removed.
    t.ingress("web", "web.example.com", "web", Some("someone-else"), json!({})).await;
    eventually("our address is removed", || async { t.ingress_addresses("web").await.is_empty() })
        .await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_writes_status_and_another_takes_over() {
    let t = Test::new("leader").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    let args = ["--publish-status-address=198.51.100.7", "--election-ttl=4"];
    let first = t.sluice_env(&args, &[("POD_NAME", "replica-1")]);
    let second = t.sluice_env(&args, &[("POD_NAME", "replica-2")]);
    eventually("status is written", || async {
        t.ingress_addresses("web").await == ["198.51.100.7"]
    })
    .await;
    // Both replicas serve traffic.
    assert_eq!(answer(&first, "web.example.com").await, "a");
    assert_eq!(answer(&second, "web.example.com").await, "a");
    let leads = |s: &Sluice| s.stderr().iter().any(|l| l.contains("became the leader"));
    eventually("one replica leads", || async { leads(&first) || leads(&second) }).await;
    assert!(leads(&first) != leads(&second), "exactly one replica leads");
    let follower_pod = if leads(&first) { "replica-2" } else { "replica-1" };
    let (mut leader, follower) = if leads(&first) { (first, second) } else { (second, first) };
    assert!(
        !follower.stderr().iter().any(|l| l.contains("Ingress status synced")),
        "the follower never writes status"
    );

    // Both under steady load; the leader dies (SIGKILL: no chance to release the Lease). Its
    // own requests fail, obviously; the survivor's must not, not one, through the takeover.
    let survivor = SteadyLoad::start(follower.url("/"), "web.example.com");
    let doomed = SteadyLoad::start(leader.url("/"), "web.example.com");
    survivor.until_served(50).await;
    doomed.until_served(50).await;
    leader.kill();
    let died = Instant::now();
    follower.wait_stderr(|l| l.contains("became the leader"));
    let took = died.elapsed();
    // The Lease runs for at most its term (4 s) after the last renewal; the survivor takes it
    // at expiry, after a random pause of up to 1 s (kube-lease-manager's, so that replicas do
    // not collide), plus a second of slack for a loaded machine.
    assert!(took < Duration::from_secs(6), "took over after {took:?}, --election-ttl=4");
    // Status and Events resume from the survivor, for a change made after the takeover.
    t.ingress("new", "new.example.com", "web", Some(&t.class()), json!({})).await;
    eventually("the new leader writes status", || async {
        t.ingress_addresses("new").await == ["198.51.100.7"]
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
    eventually("the new leader records a Sync event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Sync")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("new")
                && e.reporting_instance.as_deref() == Some(follower_pod)
        })
    })
    .await;
    let resumed = died.elapsed();
    let (served, failed) = survivor.stop().await;
    let (_, doomed_failed) = doomed.stop().await;
    assert!(doomed_failed > 0, "the killed replica's load saw it die");
    assert_eq!(failed, 0, "the survivor failed requests ({served} served)");
    println!(
        "failover: took over {took:?} after SIGKILL, status and Events after {resumed:?}; \
         survivor served {served} requests, none failed"
    );
}

/// Requests sent one after another on a keep-alive connection until stopped, counted.
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyLoad {
    fn start(url: String, host: &'static str) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let req = request("GET", &url, Some(host), Bytes::new());
                    let answer = tokio::time::timeout(Duration::from_secs(5), c.request(req)).await;
                    match answer {
                        Ok(Ok(r)) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        SteadyLoad { stop, ok, failed, task }
    }

    /// Waits until `n` requests were served.
    async fn until_served(&self, n: u64) {
        eventually("the load is served", || async { self.ok.load(Ordering::Relaxed) >= n }).await;
    }

    /// Stops the load: (served, failed).
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_report_syncs_and_rejections() {
    let t = Test::new("events").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    let s = t.sluice(&["--publish-status-address=198.51.100.9"]);
    // Ingresses that exist when a leader term starts get no Sync; later changes do.
    s.wait_stderr(|l| l.contains("Ingress status and Events are up to date"));
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    t.ingress(
        "snippet",
        "snippet.example.com",
        "web",
        Some(&t.class()),
        json!({"nginx.ingress.kubernetes.io/server-snippet": "deny all;"}),
    )
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
    let has = |reason: &'static str, name: &'static str, kind: &'static str| {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.unwrap();
            list.items.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some(kind)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
        }
    };
    eventually("a Normal Sync event on the Ingress", || has("Sync", "web", "Normal")).await;
    eventually("a Warning SnippetRefused event", || has("SnippetRefused", "snippet", "Warning"))
        .await;
    assert_eq!(answer(&s, "snippet.example.com").await, "503");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_chosen_by_label() {
    let c = cluster().await;
    let t = Test::new("selector").await;
    let other = Test::new("selector-other").await;
    let a = backend("a").await;
    for (test, host) in [(&t, "in.example.com"), (&other, "out.example.com")] {
        test.service("web", &[a]).await;
        test.ingress("web", host, "web", Some(&t.class()), json!({})).await;
    }
    // A label only this test uses, so that other tests' namespaces never match.
    let key = format!("sel-{}", t.ns);
    let set_label = |ns: String, on: bool| {
        let api: Api<Namespace> = Api::all(c.admin.clone());
        let patch = json!({"metadata": {"labels": {key.clone(): if on { json!("yes") } else { Value::Null }}}});
        async move {
            api.patch(&ns, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    };
    set_label(t.ns.clone(), true).await;
    // Watch the whole cluster, filtered by namespace label (not --watch-namespace).
    let args = [
        format!("--controller-class={}", t.controller()),
        format!("--ingress-class={}", t.class()),
        format!("--election-id={}", t.ns),
        format!("--watch-namespace-selector={key}=yes"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Sluice::start_kube(
        &t.kubeconfig,
        &args,
        &[("POD_NAMESPACE", sluice_testkit::CONTROLLER_NAMESPACE)],
    );
    assert_eq!(answer(&s, "in.example.com").await, "a");
    assert_eq!(answer(&s, "out.example.com").await, "404");
    set_label(other.ns.clone(), true).await;
    eventually("the newly labelled namespace is served", || async {
        answer(&s, "out.example.com").await == "a"
    })
    .await;
    set_label(other.ns.clone(), false).await;
    eventually("the unlabelled namespace is dropped", || async {
        answer(&s, "out.example.com").await == "404"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_manifests_and_helm_chart_pass_server_side_dry_run() {
    let c = cluster().await;
    let mut kinds = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("deploy/manifests")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for applied in apply_yaml(&c.admin, &text, None, true)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            kinds.insert(applied.split('/').next().unwrap().to_string(), ());
        }
    }
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "IngressClass",
        "Namespace",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ];
    assert_eq!(kinds.keys().cloned().collect::<Vec<_>>(), expected);

    // The controller's identity has what deploy/ grants and nothing more: the suite's
    // controllers run with it, and it cannot, say, read Deployments.
    let controller = sluice_testkit::client(&c.controller_kubeconfig).await.unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::all(controller.clone());
    let denied = deployments.list(&Default::default()).await.unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");
    let ingresses: Api<Ingress> = Api::all(controller);
    assert!(ingresses.list(&Default::default()).await.is_ok(), "reading Ingresses is granted");

    // The chart renders the same kinds (bar the Namespace, which Helm's --namespace makes),
    // for this API server's version, and the same without --kube-version (helm's default
    // version, as GitOps tools render charts); it refuses clusters older than the oldest
    // version the suite runs against (tests/apiserver/oldest), with the reason.
    let t = Test::new("helm").await;
    let template = |kube_version: Option<&str>| {
        let helm = sluice_testkit::bin_dir().unwrap().join("helm");
        let mut cmd = std::process::Command::new(helm);
        cmd.args(["template", "edge"]);
        if let Some(v) = kube_version {
            cmd.args(["--kube-version", v]);
        }
        cmd.arg(repo().join("deploy/helm/sluice"))
            .args([
                "--namespace",
                &t.ns,
                "--set",
                "ingressClass.name=helm-e2e",
                "--set",
                "ingressClass.default=true",
            ])
            .output()
            .expect("helm runs")
    };
    let out = template(Some(server_version()));
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let out = template(None);
    assert!(
        out.status.success(),
        "helm template without --kube-version failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        without_generated_keys(&String::from_utf8(out.stdout).unwrap()),
        without_generated_keys(&rendered)
    );
    // The chart claims the oldest version the suite runs against, and no older one.
    let pins = std::fs::read_to_string(repo().join("tests/apiserver/oldest/versions.env")).unwrap();
    let oldest = pins.lines().find_map(|l| l.strip_prefix("K8S_VERSION=")).expect("K8S_VERSION");
    let minor: u32 = oldest.split('.').nth(1).and_then(|m| m.parse().ok()).expect("1.<minor>");
    let chart = std::fs::read_to_string(repo().join("deploy/helm/sluice/Chart.yaml")).unwrap();
    let claim = format!("kubeVersion: \">=1.{minor}.0-0\"");
    assert!(chart.lines().any(|l| l == claim), "Chart.yaml does not say {claim}");
    let older = format!("1.{}.99", minor - 1);
    let out = template(Some(&older));
    assert!(!out.status.success(), "the chart accepts Kubernetes {older}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("incompatible with Kubernetes v{older}")), "{err}");
    let applied = apply_yaml(&c.admin, &rendered, Some(&t.ns), true)
        .await
        .unwrap_or_else(|e| panic!("chart: {e}"));
    let chart_kinds: std::collections::BTreeSet<_> =
        applied.iter().map(|a| a.split('/').next().unwrap().to_string()).collect();
    // ... and the Secret of the webhook's certificate, which the chart makes with Helm's
    // genCA (Sluice makes it itself under deploy/manifests).
    let want: std::collections::BTreeSet<_> = expected
        .iter()
        .filter(|k| **k != "Namespace")
        .chain(&["Secret"])
        .map(|k| k.to_string())
        .collect();
    assert_eq!(chart_kinds, want);
    assert!(rendered.contains("ingressclass.kubernetes.io/is-default-class: \"true\""));
}

/// Installs the ServiceMonitor and PrometheusRule CRDs from `SLUICE_PROMETHEUS_CRDS`
/// (`tests/prometheus-operator/crds`, which scripts/kube-e2e runs: the Prometheus Operator's
/// own, from its Go module), so that the API server validates the chart's objects of those
/// kinds against their schemas; returns once discovery serves both kinds.
async fn install_prometheus_crds(admin: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let dir = std::env::var_os("SLUICE_PROMETHEUS_CRDS").map(PathBuf::from).expect(
        "SLUICE_PROMETHEUS_CRDS is not set: run the Kubernetes suite with scripts/kube-e2e (tests/prometheus-operator/crds fetches the CRDs)",
    );
    let kinds = [("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")];
    // One apply_yaml for both: its discovery runs before either CRD exists.
    let mut text = String::new();
    for (plural, _) in kinds {
        let file = dir.join(format!("monitoring.coreos.com_{plural}.yaml"));
        let crd =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.push_str(&format!("---\n{crd}\n"));
    }
    apply_yaml(admin, &text, None, false).await.unwrap_or_else(|e| panic!("the CRDs: {e}"));
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for (plural, kind) in kinds {
        let name = format!("{plural}.monitoring.coreos.com");
        eventually(&format!("{name} is established"), || async {
            let crd = crds.get(&name).await.ok();
            let conditions =
                crd.and_then(|c| c.status).and_then(|s| s.conditions).unwrap_or_default();
            conditions.iter().any(|c| c.type_ == "Established" && c.status == "True")
        })
        .await;
        let gvk = kube::core::GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
        eventually(&format!("discovery serves {kind}"), || async {
            let discovery = Discovery::new(admin.clone()).run().await;
            discovery.is_ok_and(|d| d.resolve_gvk(&gvk).is_some())
        })
        .await;
    }
}

/// Renders the chart as release `edge` in `ns` with `values` (a values file's text) for the
/// API server's version, after `helm lint --strict` of the same values; `Err` holds helm's
/// message. Without --kube-version (helm's default version, as GitOps tools render charts) the
/// chart renders the same.
fn helm_render(ns: &str, values: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let helm = sluice_testkit::bin_dir().unwrap().join("helm");
    let run = |verb: &[&str], kube_version: Option<&str>| {
        let mut cmd = std::process::Command::new(&helm);
        cmd.args(verb);
        if let Some(v) = kube_version {
            cmd.args(["--kube-version", v]);
        }
        let out = cmd
            .args(["--namespace", ns, "--values"])
            .arg(&file)
            .arg(repo().join("deploy/helm/sluice"))
            .output()
            .expect("helm runs");
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            let stdout = String::from_utf8_lossy(&out.stdout);
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    let version = Some(server_version());
    let rendered = run(&["template", "edge"], version)?;
    run(&["lint", "--strict"], version).map_err(|e| format!("helm lint: {e}"))?;
    let default = run(&["template", "edge"], None)
        .map_err(|e| format!("helm template without --kube-version: {e}"))?;
    assert_eq!(
        without_generated_keys(&default),
        without_generated_keys(&rendered),
        "the chart renders differently without --kube-version"
    );
    Ok(rendered)
}

/// A rendering of the chart without the webhook's certificate and key, which Helm's genCA
/// makes anew at each rendering.
fn without_generated_keys(rendered: &str) -> String {
    rendered
        .lines()
        .map(|l| match l.split_once(':') {
            Some((k, _)) if ["ca.crt", "tls.crt", "tls.key", "caBundle"].contains(&k.trim()) => {
                format!("{k}: <generated>\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// How many objects of each kind `apply_yaml` applied.
fn kind_counts(applied: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in applied {
        *counts.entry(a.split('/').next().unwrap().to_string()).or_default() += 1;
    }
    counts
}

/// The rendered object `kind`/`name`.
fn rendered_object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart rendered no {kind}/{name}"))
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v)
}

/// The chart's options, each switched on, pass the API server's server-side dry run, the
/// ServiceMonitor and PrometheusRule against the Prometheus Operator's own CRDs: first as a
/// Deployment with everything on, then as a DaemonSet on the host network; and the values
/// the chart refuses fail `helm template` with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn helm_chart_options_pass_server_side_dry_run() {
    let c = cluster().await;
    let t = Test::new("helm-options").await;

    // 1. A Deployment with every option on.
    let values = r#"
ingressClass: {name: helm-options-e2e}
controller:
  config:
    proxy-body-size: 8m
    use-forwarded-headers: true
    worker-processes: "4"
  configAnnotations: {owner: platform}
  extraEnvs:
  - {name: SLUICE_LOG_FORMAT, value: json}
  extraEnvFrom:
  - configMapRef: {name: sluice-env, optional: true}
  extraVolumes:
  - {name: scratch, emptyDir: {}}
  extraVolumeMounts:
  - {name: scratch, mountPath: /tmp}
  extraInitContainers:
  - {name: wait, image: "busybox:1.36", command: ["true"]}
  extraContainers:
  - {name: sidecar, image: "busybox:1.36", command: [sleep, infinity]}
  podAnnotations: {prometheus.io/scrape: "true"}
  podLabels: {team: edge}
  priorityClassName: system-cluster-critical
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {app.kubernetes.io/name: sluice, app.kubernetes.io/instance: edge}
  updateStrategy:
    rollingUpdate: {maxUnavailable: 1}
  hostPort: {enabled: true}
  podDisruptionBudget: {enabled: true, maxUnavailable: "50%"}
  autoscaling:
    enabled: true
    minReplicas: 3
    maxReplicas: 9
    targetCPUUtilizationPercentage: 60
    targetMemoryUtilizationPercentage: 80
    behavior:
      scaleDown: {stabilizationWindowSeconds: 300}
  metrics:
    enabled: true
    serviceMonitor:
      enabled: true
      additionalLabels: {release: prometheus}
      scrapeTimeout: 10s
      metricRelabelings:
      - {action: drop, sourceLabels: [__name__], regex: sluice_access_log_dropped_lines}
    prometheusRule:
      enabled: true
      additionalLabels: {release: prometheus}
  networkPolicy:
    enabled: true
    metricsFrom:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: monitoring}
    egress:
    - {}
defaultBackend:
  enabled: true
"#;
    let rendered = helm_render(&t.ns, values).unwrap_or_else(|e| panic!("{e}"));
    let applied = apply_yaml(&c.admin, &rendered, Some(&t.ns), true)
        .await
        .unwrap_or_else(|e| panic!("chart with every option: {e}"));
    let want: BTreeMap<String, usize> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("ConfigMap", 1),
        // The controller and the default backend.
        ("Deployment", 2),
        ("HorizontalPodAutoscaler", 1),
        ("IngressClass", 1),
        ("NetworkPolicy", 1),
        ("PodDisruptionBudget", 1),
        ("PrometheusRule", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Secret", 1),
        // The proxy's, the webhook's, the metrics' and the default backend's.
        ("Service", 4),
        ("ServiceAccount", 1),
        ("ServiceMonitor", 1),
        ("ValidatingWebhookConfiguration", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kind_counts(&applied), want);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let get = |kind: &str, name: &str| rendered_object(&docs, kind, name);

    // The controller: no replicas of its own under the HPA, and the pod options.
    let deploy = get("Deployment", "edge-sluice");
    assert!(deploy["spec"].get("replicas").is_none(), "replicas beside an HPA: {}", deploy["spec"]);
    assert_eq!(deploy["spec"]["strategy"], json!({"rollingUpdate": {"maxUnavailable": 1}}));
    let pod = &deploy["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(pod["metadata"]["labels"]["team"], "edge");
    assert_eq!(pod["metadata"]["annotations"], json!({"prometheus.io/scrape": "true"}));
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    assert!(spec.get("hostNetwork").is_none() && spec.get("dnsPolicy").is_none(), "{spec}");
    assert_eq!(spec["initContainers"][0]["name"], "wait");
    let containers: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(containers, ["sluice", "sidecar"]);
    let sluice = &spec["containers"][0];
    assert!(
        sluice["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "SLUICE_LOG_FORMAT", "value": "json"}))
    );
    assert_eq!(
        sluice["envFrom"],
        json!([{"configMapRef": {"name": "sluice-env", "optional": true}}])
    );
    assert!(
        spec["volumes"].as_array().unwrap().contains(&json!({"name": "scratch", "emptyDir": {}}))
    );
    assert!(
        sluice["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "scratch", "mountPath": "/tmp"}))
    );
    let port = |name: &str| {
        let ports = sluice["ports"].as_array().unwrap();
        ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}")).clone()
    };
    assert_eq!(port("http"), json!({"name": "http", "containerPort": 8080, "hostPort": 80}));
    assert_eq!(port("https"), json!({"name": "https", "containerPort": 8443, "hostPort": 443}));
    let args: Vec<&str> =
        sluice["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--healthz-port=10254"), "{args:?}");

    // The ConfigMap of controller.config reaches the controller's --configmap, every value a
    // string.
    let configmap = args
        .iter()
        .find_map(|a| a.strip_prefix("--configmap=$(POD_NAMESPACE)/"))
        .unwrap_or_else(|| panic!("no --configmap in {args:?}"));
    let cm = get("ConfigMap", configmap);
    assert_eq!(
        cm["data"],
        json!({"proxy-body-size": "8m", "use-forwarded-headers": "true", "worker-processes": "4"})
    );
    assert_eq!(cm["metadata"]["annotations"], json!({"owner": "platform"}));

    // The default backend: --default-backend-service names a Service whose first port reaches
    // the default backend's pods (and not the controller's).
    let backend = args
        .iter()
        .find_map(|a| a.strip_prefix("--default-backend-service=$(POD_NAMESPACE)/"))
        .unwrap_or_else(|| panic!("no --default-backend-service in {args:?}"));
    let backend_svc = get("Service", backend);
    let backend_deploy = get("Deployment", backend);
    let backend_pod = &backend_deploy["spec"]["template"];
    assert!(selects(&backend_svc["spec"]["selector"], &backend_pod["metadata"]["labels"]));
    assert!(!selects(&backend_svc["spec"]["selector"], &pod["metadata"]["labels"]));
    assert!(!selects(
        &get("Service", "edge-sluice")["spec"]["selector"],
        &backend_pod["metadata"]["labels"]
    ));
    assert_eq!(backend_svc["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        backend_pod["spec"]["containers"][0]["ports"],
        json!([{"name": "http", "containerPort": 8080}])
    );
    assert_eq!(
        backend_pod["spec"]["containers"][0]["image"],
        "registry.k8s.io/defaultbackend-amd64:1.5"
    );

    // The HPA scales the controller's Deployment on CPU and memory.
    let hpa = get("HorizontalPodAutoscaler", "edge-sluice");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "edge-sluice"})
    );
    assert_eq!((&hpa["spec"]["minReplicas"], &hpa["spec"]["maxReplicas"]), (&json!(3), &json!(9)));
    let targets: BTreeMap<&str, &Value> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "Resource");
            assert_eq!(m["resource"]["target"]["type"], "Utilization");
            (
                m["resource"]["name"].as_str().unwrap(),
                &m["resource"]["target"]["averageUtilization"],
            )
        })
        .collect();
    assert_eq!(targets, BTreeMap::from([("cpu", &json!(60)), ("memory", &json!(80))]));
    assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 300);

    // The PodDisruptionBudget covers the controller's pods.
    let pdb = get("PodDisruptionBudget", "edge-sluice");
    assert_eq!(pdb["spec"]["selector"], deploy["spec"]["selector"]);
    assert_eq!(pdb["spec"]["maxUnavailable"], "50%");
    assert!(pdb["spec"].get("minAvailable").is_none());

    // The metrics Service exposes the admin port; the ServiceMonitor selects it, and neither
    // the proxy's Service nor the webhook's.
    let metrics = get("Service", "edge-sluice-metrics");
    assert_eq!(metrics["spec"]["type"], "ClusterIP");
    assert_eq!(
        metrics["spec"]["ports"],
        json!([{"name": "metrics", "port": 10254, "targetPort": "metrics"}])
    );
    assert_eq!(port("metrics")["containerPort"], 10254);
    assert!(selects(&metrics["spec"]["selector"], &pod["metadata"]["labels"]));
    let monitor = get("ServiceMonitor", "edge-sluice");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, &metrics["metadata"]["labels"]));
    assert!(!selects(selector, &get("Service", "edge-sluice")["metadata"]["labels"]));
    assert!(!selects(selector, &get("Service", "edge-sluice-admission")["metadata"]["labels"]));
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"matchNames": [t.ns]}));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!((&endpoint["port"], &endpoint["path"]), (&json!("metrics"), &json!("/metrics")));
    assert_eq!((&endpoint["interval"], &endpoint["scrapeTimeout"]), (&json!("30s"), &json!("10s")));

    // The PrometheusRule: Sluice's alerts, each on series Sluice exports.
    let rule = get("PrometheusRule", "edge-sluice");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "SluiceConfigurationRefused",
            "SluiceIngressHigh5xxRatio",
            "SluiceCertificateExpiring",
            "SluiceNoReadyEndpoints"
        ]
    );
    let exported = [
        "sluice_diagnostics",
        "nginx_ingress_controller_requests",
        "nginx_ingress_controller_ssl_expire_time_seconds",
    ];
    let series = regex::Regex::new(r"\b(?:sluice|nginx_ingress_controller)_[a-z_]+").unwrap();
    for r in rules {
        let expr = r["expr"].as_str().unwrap();
        let names: Vec<&str> = series.find_iter(expr).map(|m| m.as_str()).collect();
        assert!(!names.is_empty() && names.iter().all(|n| exported.contains(n)), "{expr}");
        assert!(r["labels"]["severity"].is_string() && r["annotations"]["summary"].is_string());
    }

    // The NetworkPolicy: HTTP and HTTPS from anywhere, the admin port from the monitoring
    // namespace, the webhook from anywhere; egress as given. Every port it names is the
    // controller's.
    let policy = get("NetworkPolicy", "edge-sluice");
    assert_eq!(policy["spec"]["podSelector"], deploy["spec"]["selector"]);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy["spec"]["egress"], json!([{}]));
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    let rule_ports = |i: usize| -> Vec<&str> {
        let ports = ingress[i]["ports"].as_array().unwrap();
        ports.iter().map(|p| p["port"].as_str().unwrap()).collect()
    };
    assert_eq!(ingress.len(), 3);
    assert_eq!(rule_ports(0), ["http", "https"]);
    assert!(ingress[0].get("from").is_none());
    assert_eq!(rule_ports(1), ["metrics"]);
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    assert_eq!(rule_ports(2), ["webhook"]);
    assert!(ingress[2].get("from").is_none());
    for name in ["http", "https", "metrics", "webhook"] {
        port(name);
    }

    // The API server really checks them against the CRDs: a ServiceMonitor with an interval
    // that is no duration, or a field the CRD does not declare (server-side apply refuses
    // those, so a misspelt field in a template fails this test), and a rule without an
    // expression, are refused.
    let mut bad = monitor.clone();
    bad["spec"]["endpoints"][0]["interval"] = json!("soon");
    let refused = apply_yaml(&c.admin, &bad.to_string(), Some(&t.ns), true).await.unwrap_err();
    assert!(refused.contains("interval"), "{refused}");
    let mut bad = monitor.clone();
    bad["spec"]["endpoints"][0]["intervall"] = json!("30s");
    let refused = apply_yaml(&c.admin, &bad.to_string(), Some(&t.ns), true).await.unwrap_err();
    assert!(refused.contains("intervall: field not declared in schema"), "{refused}");
    let mut bad = rule.clone();
    bad["spec"]["groups"][0]["rules"][0].as_object_mut().unwrap().remove("expr");
    let refused = apply_yaml(&c.admin, &bad.to_string(), Some(&t.ns), true).await.unwrap_err();
    assert!(refused.contains("expr"), "{refused}");

    // 2. A DaemonSet on the host network, with the options that apply to it.
    let values = r#"
ingressClass: {name: helm-options-e2e}
controller:
  kind: DaemonSet
  hostNetwork: true
  hostPort: {enabled: true}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  config: {ssl-redirect: "false"}
  podDisruptionBudget: {enabled: true}
  metrics:
    enabled: true
    serviceMonitor: {enabled: true}
    prometheusRule: {enabled: true}
  networkPolicy: {enabled: true}
"#;
    let rendered = helm_render(&t.ns, values).unwrap_or_else(|e| panic!("{e}"));
    let applied = apply_yaml(&c.admin, &rendered, Some(&t.ns), true)
        .await
        .unwrap_or_else(|e| panic!("chart as a DaemonSet: {e}"));
    let mut want = want;
    for gone in ["Deployment", "HorizontalPodAutoscaler"] {
        want.remove(gone);
    }
    want.insert("DaemonSet".into(), 1);
    want.insert("Service".into(), 3);
    assert_eq!(kind_counts(&applied), want);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let daemonset = rendered_object(&docs, "DaemonSet", "edge-sluice");
    assert!(daemonset["spec"].get("replicas").is_none());
    assert_eq!(daemonset["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let spec = &daemonset["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    // Under the host network the pod binds its container ports on the node.
    let ports = spec["containers"][0]["ports"].as_array().unwrap();
    assert_eq!(ports[0], json!({"name": "http", "containerPort": 8080, "hostPort": 8080}));
    assert_eq!(ports[1], json!({"name": "https", "containerPort": 8443, "hostPort": 8443}));
    let pdb = rendered_object(&docs, "PodDisruptionBudget", "edge-sluice");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let policy = rendered_object(&docs, "NetworkPolicy", "edge-sluice");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert!(policy["spec"]["ingress"][1].get("from").is_none(), "the admin port open to all");

    // 3. What the chart refuses, and says why.
    for (values, reason) in [
        (
            "controller: {kind: DaemonSet, autoscaling: {enabled: true}}",
            "controller.autoscaling needs controller.kind=Deployment",
        ),
        ("controller: {kind: StatefulSet}", "controller.kind must be Deployment or DaemonSet"),
        (
            "controller: {metrics: {serviceMonitor: {enabled: true}}}",
            "needs controller.metrics.enabled=true",
        ),
    ] {
        let err = helm_render(&t.ns, values).unwrap_err();
        assert!(err.contains(reason), "{values}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_apply_while_draining_after_sigterm() {
    let t = Test::new("draining").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    // A long delay: the proxy keeps accepting, not ready, for the rest of the test.
    let mut s = t.sluice(&["--shutdown-delay=30"]);
    assert_eq!(answer(&s, "web.example.com").await, "a");
    let term = std::process::Command::new("kill").args(["-TERM", &s.pid().to_string()]).status();
    assert!(term.unwrap().success());
    eventually("/readyz answers 503", || async {
        get(&s.admin_url("/readyz"), None).await.status == 503
    })
    .await;
    // A backend's pods replaced meanwhile: the draining replica follows.
    let b = backend("b").await;
    t.service("web", &[b]).await;
    eventually("the new endpoint is used while draining", || async {
        answer(&s, "web.example.com").await == "b"
    })
    .await;
    assert!(s.running());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_replica_clears_status_on_shutdown_but_not_while_others_run() {
    let t = Test::new("shutdown").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    // Pods standing for the replicas, Running (no kubelet here: the status is set directly).
    let pods: Api<Pod> = Api::namespaced(t.admin.clone(), sluice_testkit::CONTROLLER_NAMESPACE);
    let app = format!("app-{}", t.ns);
    let pod = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": sluice_testkit::CONTROLLER_NAMESPACE,
                         "labels": {"app": app, "pod-template-hash": name}},
            "spec": {"containers": [{"name": "sluice", "image": "sluice"}]},
        })
    };
    let running = json!({"status": {"phase": "Running"}});
    let names = [format!("{}-a", t.ns), format!("{}-b", t.ns)];
    for n in &names {
        pods.create(&PostParams::default(), &serde_json::from_value(pod(n)).unwrap())
            .await
            .unwrap();
        pods.patch_status(n, &PatchParams::default(), &Patch::Merge(&running)).await.unwrap();
    }
    let args = ["--publish-status-address=198.51.100.8"];
    // Another replica runs: status stays.
    let mut s = t.sluice_env(&args, &[("POD_NAME", &names[0])]);
    eventually("status is written", || async {
        t.ingress_addresses("web").await == ["198.51.100.8"]
    })
    .await;
    assert!(s.terminate());
    assert!(
        s.stderr().iter().any(|l| l.contains("other replicas run")),
        "{}",
        s.stderr().join("\n")
    );
    assert_eq!(t.ingress_addresses("web").await, ["198.51.100.8"]);
    // The other replica is gone: the last one clears its address.
    pods.delete(&names[1], &DeleteParams::default()).await.unwrap();
    let mut s = t.sluice_env(&args, &[("POD_NAME", &names[0])]);
    s.wait_stderr(|l| l.contains("became the leader"));
    assert!(s.terminate());
    assert!(t.ingress_addresses("web").await.is_empty(), "{}", s.stderr().join("\n"));
}

/// Readiness waits for the first full sync; an API server that is down at start-up, then
/// restarted mid-traffic, costs no request; so does a whole-control-plane outage (etcd and
/// the API server both down, `SLUICE_OUTAGE_SECS`, 3 s by default, 60 s in
/// `bench/churn.sh`): the controller resyncs by itself, applies the changes written around
/// the outage, and Ingress status catches up.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_outages_cost_no_request() {
    let outage = Duration::from_secs(env_number("SLUICE_OUTAGE_SECS", 3));
    // A private API server: this test stops and restarts it.
    let mut server = tokio::task::spawn_blocking(sluice_testkit::ApiServer::start)
        .await
        .unwrap()
        .expect("private API server");
    let admin = sluice_testkit::client(&server.admin_kubeconfig()).await.unwrap();
    install_rbac(&admin).await;
    let t = Test::with_client("outage", admin, server.controller_kubeconfig()).await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;

    // Down before the controller starts: alive, not ready, not serving.
    server.stop_apiserver();
    let args = t.args(&["--publish-status-address=198.51.100.9"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("POD_NAMESPACE", sluice_testkit::CONTROLLER_NAMESPACE)];
    let unready = Sluice::start_kube_unready(&t.kubeconfig, &args, &env);
    assert_eq!(get(&unready.admin_url("/readyz"), None).await.status, 503);
    assert_eq!(get(&unready.admin_url("/healthz"), None).await.status, 200);
    server.start_apiserver().unwrap();
    let line = unready.wait_stderr(|l| l.contains(" listening "));
    assert!(line.contains("http="));
    assert_eq!(get(&unready.admin_url("/readyz"), None).await.status, 200);
    drop(unready);

    let s = Arc::new(Sluice::start_kube(&t.kubeconfig, &args, &env));
    assert_eq!(answer(&s, "web.example.com").await, "a");
    eventually("status is written before the outage", || async {
        t.ingress_addresses("web").await == ["198.51.100.9"]
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (s, stop, ok, failed) = (s.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c
                    .request(request("GET", &s.url("/"), Some("web.example.com"), Bytes::new()))
                    .await
                {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let served = |what: &str| {
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        assert_eq!(failed, 0, "{failed} requests failed ({what}), {ok} served");
        ok
    };
    // The outage itself is the scenario: traffic flows while the API server is down. Meanwhile
    // etcd's history is compacted, so the controller's watches come back to `410 Gone` and
    // must list everything again: the table must never be empty in between.
    server.stop_apiserver();
    s.wait_stderr(|l| l.contains("watch failed"));
    server.expire_watches().unwrap();
    let before = served("before the API server's restart");
    eventually("requests are served while the API server is down", || async {
        ok.load(Ordering::Relaxed) > before + 100
    })
    .await;
    server.start_apiserver().unwrap();
    // Resynced by itself: a change made after the restart is applied.
    let b = backend("b").await;
    t.service("api", &[b]).await;
    t.ingress("api", "api.example.com", "api", Some(&t.class()), json!({})).await;
    eventually("a change after the restart is applied", || async {
        answer(&s, "api.example.com").await == "b"
    })
    .await;
    s.wait_stderr(|l| l.contains("relisted after the watch expired") && l.contains("Ingress"));
    served("across the API server's restart");

    // The whole control plane goes down: etcd too, for `outage`. A change written just
    // before (the controller may or may not have seen it when the API server dies) and one
    // written as soon as the API server is back must both be applied, with status.
    t.ingress("queued", "queued.example.com", "web", Some(&t.class()), json!({})).await;
    server.stop_apiserver();
    server.stop_etcd();
    let down = Instant::now();
    let before = served("as the control plane went down");
    // The outage's length is the scenario, not a wait for something: nothing can be polled
    // for "a minute has passed". Traffic is checked all along.
    while down.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(200)).await;
        served("during the control plane's outage");
    }
    assert!(ok.load(Ordering::Relaxed) > before, "requests were served during the outage");
    server.start_etcd().expect("etcd restarts");
    server.start_apiserver().expect("the API server restarts");
    let back = Instant::now();
    let c = backend("c").await;
    t.service("after", &[c]).await;
    t.ingress("after", "after.example.com", "after", Some(&t.class()), json!({})).await;
    // The watchers retry with kube-rs's default back-off (capped at 30 s, with jitter): after
    // a long outage their next attempt may be that far away.
    let recovery = WAIT + Duration::from_secs(40);
    let deadline = back + recovery;
    while answer(&s, "after.example.com").await != "c" {
        // The controller's log says where it stands (which watch is still backing off).
        let log = || s.stderr().iter().rev().take(40).rev().cloned().collect::<Vec<_>>();
        assert!(
            Instant::now() < deadline,
            "the change written after the outage was not applied within {recovery:?}:\n{}",
            log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = back.elapsed();
    assert_eq!(answer(&s, "queued.example.com").await, "a", "the change from before the outage");
    eventually_within("status catches up after the outage", recovery, || async {
        let mut all = Vec::new();
        for name in ["web", "api", "queued", "after"] {
            all.push(t.ingress_addresses(name).await);
        }
        all.iter().all(|a| a == &["198.51.100.9"])
    })
    .await;
    let status = back.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let total = served("across the control plane's outage");
    eprintln!(
        "outage: control plane down {:.1} s; {total} requests served, 0 failed; changes applied {:.1} s and status caught up {:.1} s after the API server was back",
        outage.as_secs_f64(),
        applied.as_secs_f64(),
        status.as_secs_f64()
    );
    drop(server);
}

/// A number from the environment (how long a scenario lasts, how many changes it makes), or
/// `default`: the test command runs the short forms, `bench/churn.sh` the long ones.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// Like [`eventually`], with its own deadline.
async fn eventually_within<F, Fut>(what: &str, wait: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + wait;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_restored_each_interval_and_never_written_when_disabled() {
    let t = Test::new("interval").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    let s = t.sluice(&["--publish-status-address=198.51.100.5", "--status-update-interval=1"]);
    eventually("status is written", || async {
        t.ingress_addresses("web").await == ["198.51.100.5"]
    })
    .await;
    // Someone else empties the status: the next periodic check restores it.
    let api: Api<Ingress> = t.api();
    let empty = json!({"status": {"loadBalancer": {"ingress": null}}});
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(&empty)).await.unwrap();
    assert!(t.ingress_addresses("web").await.is_empty());
    eventually("the periodic check restores the status", || async {
        t.ingress_addresses("web").await == ["198.51.100.5"]
    })
    .await;
    drop(s);

    // --update-status=false: the leader still does its other duties (Events), never status.
    let quiet = Test::new("no-status").await;
    quiet.service("web", &[a]).await;
    let s = quiet.sluice(&["--publish-status-address=198.51.100.6", "--update-status=false"]);
    s.wait_stderr(|l| l.contains("Ingress status and Events are up to date"));
    quiet.ingress("web", "web.example.com", "web", Some(&quiet.class()), json!({})).await;
    let events: Api<k8s_openapi::api::events::v1::Event> = quiet.api();
    eventually("the leader published a Sync Event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items.iter().any(|e| e.reason.as_deref() == Some("Sync"))
    })
    .await;
    assert!(
        quiet.ingress_addresses("web").await.is_empty(),
        "no status with --update-status=false"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_secrets_from_the_api_are_served_and_rotate_without_restart() {
    let t = Test::new("tls").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    let ca = tls::Ca::new("e2e CA");
    let secret = |name: &str, pem: &tls::Pem| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": t.ns},
            "stringData": {"tls.crt": pem.cert, "tls.key": pem.key},
        })
    };
    t.apply(secret("default-cert", &ca.sign(&["fallback.example.com"], "fallback", |_| {}))).await;
    t.apply(secret("web-tls", &ca.sign(&["web.example.com"], "first", |_| {}))).await;
    t.tls_ingress("web", "web.example.com", "web", "web-tls").await;
    let s = Arc::new(t.sluice(&[&format!("--default-ssl-certificate={}/default-cert", t.ns)]));
    let (r, seen) = tls::get(s.https, "web.example.com", "/").await;
    assert_eq!((r.backend().as_str(), seen.cn.as_str()), ("a", "first"));
    let (_, seen) = tls::get(s.https, "other.example.com", "/").await;
    assert_eq!(seen.cn, "fallback", "--default-ssl-certificate for unknown names");
    assert_eq!(get(&s.url("/"), Some("web.example.com")).await.status, 308, "HTTP redirected");

    // cert-manager renews: the Secret changes while handshakes keep coming. New handshakes
    // present the new certificate; no request fails on the way.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (r, _) = tls::get(s.https, "web.example.com", "/").await;
                if r.status != 200 {
                    failures.push(r.status.as_u16());
                }
            }
            failures
        })
    };
    t.apply(secret("web-tls", &ca.sign(&["web.example.com"], "renewed", |_| {}))).await;
    eventually("the renewed certificate is presented", || async {
        tls::get(s.https, "web.example.com", "/").await.1.cn == "renewed"
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(load.await.unwrap(), Vec::<u16>::new(), "no request failed during the rotation");
    // The renewal re-translated the one Ingress that reads the Secret: an update.
    let renewal = s.stderr().into_iter().rfind(|l| l.contains("applied configuration"));
    assert!(renewal.as_deref().is_some_and(|l| l.contains("update=\"ingresses\"")), "{renewal:?}");

    // The Secret disappears: the host falls back to the default certificate, still routed.
    t.api::<Secret>().delete("web-tls", &DeleteParams::default()).await.unwrap();
    eventually("the default certificate is presented", || async {
        tls::get(s.https, "web.example.com", "/").await.1.cn == "fallback"
    })
    .await;
    assert_eq!(tls::get(s.https, "web.example.com", "/").await.0.backend(), "a");
}

// Basic authentication from the API: the htpasswd Secret an Ingress names is watched, and a
// changed password applies without a restart (the old one is refused from then on).
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_secret_rotation_applies_without_restart() {
    let t = Test::new("basic-auth").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    let htpasswd = |password: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "web-users", "namespace": t.ns},
            "stringData": {"auth": format!("alice:{{PLAIN}}{password}\n")},
        })
    };
    t.apply(htpasswd("first")).await;
    let annotations = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "web-users",
        "nginx.ingress.kubernetes.io/auth-realm": "team",
    });
    t.ingress("web", "web.example.com", "web", Some(&t.class()), annotations).await;
    let s = t.sluice(&[]);
    let status = |password: &'static str| {
        let url = s.url("/");
        async move {
            let mut req = request("GET", &url, Some("web.example.com"), Bytes::new());
            let credentials = basic_credentials("alice", password);
            req.headers_mut().insert("authorization", credentials.parse().unwrap());
            send(&client(), req).await.status.as_u16()
        }
    };
    eventually("the first password signs in", || async { status("first").await == 200 }).await;
    assert_eq!(status("second").await, 401);
    let challenge = get(&s.url("/"), Some("web.example.com")).await;
    assert_eq!(challenge.status, 401);
    assert_eq!(challenge.headers["www-authenticate"], "Basic realm=\"team\"");

    t.apply(htpasswd("second")).await;
    eventually("the rotated password signs in", || async { status("second").await == 200 }).await;
    assert_eq!(status("first").await, 401, "the old password is refused after the rotation");
}

/// Runs the real `kubectl-sluice` with `kubeconfig` (as `--kubeconfig`, or as `KUBECONFIG`
/// when `via_env`); returns whether it succeeded, its stdout and stderr.
async fn plugin(
    kubeconfig: &std::path::Path,
    via_env: bool,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-sluice"));
    cmd.env_remove("KUBECONFIG").env("HOME", "/nonexistent");
    if via_env {
        cmd.env("KUBECONFIG", kubeconfig);
    } else {
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl-sluice runs"))
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The line of `out` containing every one of `needles`.
fn line_with<'a>(out: &'a str, needles: &[&str]) -> &'a str {
    out.lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?} in:\n{out}"))
}

/// `kubectl sluice` against the real API server. The controller runs on this machine's
/// non-loopback address; a Pod object of Deployment `sluice` (there is no kubelet: its status
/// is set through the status subresource) carries that address and the admin port, and the
/// API server's pod proxy takes the plugin there. The plugin runs as a user holding only the
/// RBAC the README lists.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_plugin_reaches_the_controller_through_the_pod_proxy() {
    let t = Test::new("plugin").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    let ca = tls::Ca::new("e2e plugin CA");
    // Half a day past 30 days: 30 whole days left while the test runs.
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(30 * 24 + 12);
    let pem = ca.sign(&["web.example.com"], "web", |p| p.not_after = expiry);
    t.apply(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-tls", "namespace": t.ns},
        "stringData": {"tls.crt": pem.cert, "tls.key": pem.key},
    }))
    .await;
    t.tls_ingress("web", "web.example.com", "web", "web-tls").await;
    // The controller's Service, as the manifests install it, with a load balancer address.
    t.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sluice", "namespace": t.ns},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
    }))
    .await;
    let services: Api<Service> = t.api();
    let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}});
    services.patch_status("sluice", &PatchParams::default(), &Patch::Merge(&lb)).await.unwrap();

    let ip = node_ip();
    let s = t.sluice(&[&format!("--bind-address={ip}"), "--publish-status-address=203.0.113.9"]);
    assert_eq!(s.admin.ip(), ip, "the admin port listens on the pod's address");

    // Pods of Deployment `sluice` (owned by its ReplicaSet `sluice-5d8f7c`): one not ready
    // without an address (first by name), the one to ask; and a pod of another Deployment
    // whose name starts the same, at an address where nothing listens.
    let pods: Api<Pod> = t.api();
    let pod = |name: &str, replica_set: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": t.ns, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                "uid": "8c0f4bb6-8d1c-4c1e-9d0e-3f0e7d1c2b3a", "controller": true,
            }]},
            "spec": {"containers": [{"name": "sluice", "image": "sluice", "ports": [
                {"name": "metrics", "containerPort": s.admin.port()},
            ]}]},
        })
    };
    let running = |pod_ip: String| {
        json!({"status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    t.apply(pod("sluice-5d8f7c-aaaaa", "sluice-5d8f7c")).await;
    t.apply(pod("sluice-5d8f7c-bbbbb", "sluice-5d8f7c")).await;
    t.apply(pod("sluice-canary-5d8f7c-aaaaa", "sluice-canary-5d8f7c")).await;
    let status = running(ip.to_string());
    pods.patch_status("sluice-5d8f7c-bbbbb", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let nowhere = running("198.51.100.1".to_string());
    pods.patch_status(
        "sluice-canary-5d8f7c-aaaaa",
        &PatchParams::default(),
        &Patch::Merge(&nowhere),
    )
    .await
    .unwrap();

    // A user with only what the README asks for.
    t.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "sluice-plugin", "namespace": t.ns},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["list"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
        ],
    }))
    .await;
    t.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "sluice-plugin", "namespace": t.ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sluice-plugin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "plugin-viewer"}],
    }))
    .await;
    let dir = PathBuf::from(std::env::var_os("SLUICE_E2E_DIR").unwrap());
    let admin_kubeconfig = dir.join("admin.kubeconfig");
    let mut kubeconfig: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&admin_kubeconfig).unwrap()).unwrap();
    kubeconfig["users"][0]["user"]["as"] = json!("plugin-viewer");
    // `ingresses` without `-n` lists the context's namespace.
    kubeconfig["contexts"][0]["context"]["namespace"] = json!(t.ns);
    let files = tempfile::tempdir().unwrap();
    let viewer = files.path().join("viewer.kubeconfig");
    std::fs::write(&viewer, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    let ns = t.ns.as_str();
    let run = |args: &'static [&'static str]| {
        let viewer = viewer.clone();
        async move {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            let (ok, out, err) = plugin(&viewer, false, &all).await;
            assert!(ok, "kubectl sluice {args:?} failed: {err}");
            out
        }
    };

    // backends: the backend, its Service and its endpoint.
    let backend_name = format!("{ns}-web-80");
    let out = run(&["backends"]).await;
    line_with(&out, &[&backend_name, &format!("{ns}/web"), &a.to_string()]);
    assert_eq!(
        run(&["backends", "--list"]).await.lines().collect::<Vec<_>>(),
        [backend_name.as_str()]
    );
    let (ok, out, _) =
        plugin(&viewer, false, &["-n", ns, "backends", "--backend", &backend_name, "-o", "json"])
            .await;
    assert!(ok);
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(one["endpoints"][0]["port"], a.port().to_string(), "{out}");
    let (ok, _, err) = plugin(&viewer, false, &["-n", ns, "backends", "--backend", "nope"]).await;
    assert!(!ok && err.contains("no backend nope"), "{err}");

    // certs: the host's certificate, issuer and expiry; never key material.
    let out = run(&["certs", "--host", "web.example.com"]).await;
    line_with(&out, &["Issuer:", "CN=e2e plugin CA"]);
    line_with(&out, &["Secret:", &format!("{ns}/web-tls")]);
    line_with(&out, &["Names:", "web.example.com"]);
    line_with(&out, &["Expires:", "in 30 days"]);
    assert!(!out.contains("PRIVATE"), "{out}");
    let out = run(&["certs", "--host", "other.example.com"]).await;
    line_with(&out, &["Presented:", "the default certificate"]);
    line_with(&out, &["Subject:", "Fake Certificate"]);

    // conf: the host's route.
    let out = run(&["conf", "--host", "web.example.com"]).await;
    line_with(&out, &["web.example.com", "/", "Prefix", &format!("{ns}/web"), &a.to_string()]);
    let (ok, _, err) =
        plugin(&viewer, false, &["-n", ns, "conf", "--host", "nope.example.com"]).await;
    assert!(!ok && err.contains("no rules for host nope.example.com"), "{err}");

    // ingresses: from the API alone, with the address Sluice published and the ready endpoint.
    eventually("the Ingress row shows its address and ready endpoint", || async {
        let out = run(&["ingresses"]).await;
        out.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>()
                == ["web", "web.example.com/", "203.0.113.9", "YES", "web", "80", "1"]
        })
    })
    .await;
    let (ok, out, err) = plugin(&viewer, false, &["ingresses"]).await;
    assert!(ok, "{err}");
    line_with(&out, &["web", "web.example.com/", "YES"]);
    // Every namespace takes more than the Role grants: the refusal says what is needed.
    let (ok, _, err) = plugin(&viewer, false, &["ingresses", "-A"]).await;
    assert!(!ok && err.contains("forbidden") && err.contains("endpointslices list"), "{err}");
    let (ok, out, err) = plugin(&admin_kubeconfig, true, &["ingresses", "-A"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("NAMESPACE"), "{out}");
    line_with(&out, &[ns, "web.example.com/", "YES"]);

    // info: the Service's addresses, the pod asked, and the generation in force.
    eventually("info shows the generation in force", || async {
        let out = run(&["info"]).await;
        let generation = s.generation().await;
        out.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["Generation:", &generation.to_string()]
        })
    })
    .await;
    let out = run(&["info"]).await;
    line_with(&out, &["LoadBalancer IP|CNAME:", "203.0.113.10"]);
    line_with(&out, &["Pod:", &format!("{ns}/sluice-5d8f7c-bbbbb"), &ip.to_string()]);
    line_with(&out, &["Classes:", &t.controller()]);

    // --pod names one; a missing one is reported by name.
    let out = run(&["backends", "--list", "--pod", "sluice-5d8f7c-bbbbb"]).await;
    assert!(out.contains(&backend_name));
    let (ok, _, err) = plugin(&viewer, false, &["-n", ns, "info", "--pod", "gone"]).await;
    assert!(!ok && err.contains(&format!("pod {ns}/gone")), "{err}");

    // kubectl itself finds the plugin on PATH and hands it the rest of the line.
    let kubectl = sluice_testkit::bin_dir().unwrap().join("kubectl");
    let plugin_dir =
        PathBuf::from(env!("CARGO_BIN_EXE_kubectl-sluice")).parent().unwrap().to_path_buf();
    let mut command = std::process::Command::new(kubectl);
    command.args(["sluice", "-n", ns, "backends", "--list", "--kubeconfig"]).arg(&viewer);
    let out =
        tokio::task::spawn_blocking(move || command.env("PATH", plugin_dir).output().unwrap())
            .await
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        backend_name,
        "`kubectl sluice` ran the plugin"
    );

    // lint: `sluice migrate`'s report on the context's cluster, limited by -n.
    let (ok, out, err) = plugin(&admin_kubeconfig, true, &["lint", "-n", ns, "-o", "json"]).await;
    assert!(ok, "nothing answers 503: {err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ingresses = report["ingresses"].as_array().unwrap();
    assert_eq!(ingresses.len(), 1, "{report}");
    assert_eq!(
        (&ingresses[0]["name"], &ingresses[0]["verdict"]),
        (&json!("web"), &json!("moves-as-is"))
    );
    // An Ingress that would answer 503 fails the default gate, as `sluice migrate` does.
    let snippet = json!({"nginx.ingress.kubernetes.io/stream-snippet": "server { listen 9000; }"});
    t.ingress("streams", "stream.example.com", "web", Some(&t.class()), snippet).await;
    let (ok, out, _) = plugin(&admin_kubeconfig, true, &["lint", "-n", ns]).await;
    assert!(!ok, "exit 1: an Ingress will answer 503:\n{out}");
    line_with(&out, &["streams"]);
}

/// `sluice migrate` reads a namespace of the cluster, as the controller's service account
/// (read permissions only), with ingress-nginx's ConfigMap, and reports each Ingress's verdict
/// and the flags that take its class over.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_reports_the_ingresses_of_a_cluster() {
    let t = Test::new("migrate").await;
    let a = backend("a").await;
    t.service("web", &[a]).await;
    t.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "nginx-config", "namespace": t.ns},
        "data": {"worker-processes": "4", "use-gzip": "true"},
    }))
    .await;
    let class = t.class();
    t.ingress("plain", "plain.example.com", "web", Some(&class), json!({})).await;
    let mirror = json!({"nginx.ingress.kubernetes.io/mirror-target": "http://copy.example/"});
    t.ingress("mirrored", "mirror.example.com", "web", Some(&class), mirror).await;
    let snippet = json!({"nginx.ingress.kubernetes.io/stream-snippet": "server { listen 9000; }"});
    t.ingress("streams", "stream.example.com", "web", Some(&class), snippet).await;

    let kubeconfig = t.kubeconfig.display().to_string();
    let configmap = format!("{}/nginx-config", t.ns);
    let args = ["migrate", "--kubeconfig", &kubeconfig, "-n", &t.ns, "--configmap", &configmap];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One Ingress will answer 503: the default gate fails.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let verdict = |name: &str| {
        let i = report["ingresses"].as_array().unwrap().iter().find(|i| i["name"] == name);
        i.unwrap_or_else(|| panic!("{name}: {report}"))["verdict"].as_str().unwrap().to_string()
    };
    assert_eq!(verdict("plain"), "moves-as-is");
    assert_eq!(verdict("mirrored"), "moves-with-differences");
    assert_eq!(verdict("streams"), "will-answer-503");
    assert_eq!(report["configmap"]["found"], true);
    let key = |k: &str| {
        let keys = report["configmap"]["keys"].as_array().unwrap();
        keys.iter().find(|f| f["name"] == k).unwrap()["fate"].as_str().unwrap().to_string()
    };
    assert_eq!(key("worker-processes"), "accepted");
    assert_eq!(key("use-gzip"), "ignored");
    // The class's IngressClass was read: the flags name its controller.
    let plan = report["classes"].as_array().unwrap().iter().find(|c| c["class"] == class.as_str());
    assert_eq!(
        plan.unwrap()["take_over"],
        format!("sluice serve --ingress-class {class} --controller-class {}", t.controller())
    );
}

/// `kubectl` (built with kube-apiserver by tests/apiserver/build) as the administrator:
/// `kubectl <args>` with `stdin`, returning whether it succeeded, and its stdout and stderr.
fn kubectl(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let bin = sluice_testkit::bin_dir().unwrap().join("kubectl");
    assert!(bin.is_file(), "{} is missing: run tests/apiserver/build", bin.display());
    let dir = PathBuf::from(std::env::var_os("SLUICE_E2E_DIR").expect("SLUICE_E2E_DIR"));
    let mut child = std::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", dir.join("admin.kubeconfig"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

// The real API server calls Sluice's validating webhook (registered by URL, with its CA) for
// Ingresses of the test's namespace: `kubectl apply` of an Ingress Sluice would refuse is denied
// with the diagnostic, a good one is admitted, one with an annotation Sluice ignores is admitted
// with the warning shown to the client, a host and path an older Ingress owns is denied, and an
// Ingress of another class is not judged.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_calls_the_validating_webhook() {
    use base64::Engine;
    let t = Test::new("webhook").await;
    let b = backend("web").await;
    t.service("web", &[b]).await;

    // A CA and a certificate for 127.0.0.1, as a cert-manager Certificate would give.
    let pair = sluice::webhook_cert::generate(&["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let s = t.sluice(&[
        &format!("--validating-webhook={addr}"),
        &format!("--validating-webhook-certificate={}", cert.display()),
        &format!("--validating-webhook-key={}", key.display()),
    ]);
    s.wait_stderr(|l| l.contains("validating admission webhook listening"));

    // An older Ingress owns owner.test/ before the webhook is registered.
    t.ingress("owner", "owner.test", "web", Some(&t.class()), json!({})).await;
    eventually("owner.test is served", || async { answer(&s, "owner.test").await == "web" }).await;

    let hook_name = format!("sluice-e2e-{}", t.ns);
    let ca = base64::engine::general_purpose::STANDARD.encode(&pair.ca_pem);
    t.apply(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": hook_name},
        "webhooks": [{
            "name": "validate.sluice.dev",
            "clientConfig": {"url": format!("https://{addr}/networking/v1/ingresses"), "caBundle": ca},
            "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            // Only this test's namespace: the suite's other tests share the API server.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.ns}},
        }],
    }))
    .await;

    let manifest = |name: &str, host: &str, class: &str, annotations: Value| {
        serde_json::to_string(&json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": t.ns, "annotations": annotations},
            "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
        }))
        .unwrap()
    };
    let snippet =
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X: y\";"});
    let bad = manifest("bad", "bad.test", &t.class(), snippet.clone());
    // The API server takes the new configuration up within a moment: until it does, a
    // server-side dry run (which calls webhooks, but stores nothing) is admitted.
    eventually("the API server calls the webhook", || async {
        let (ok, _, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], &bad);
        !ok && err.contains("denied the request")
    })
    .await;

    let (ok, _, err) = kubectl(&["apply", "-f", "-"], &bad);
    assert!(!ok, "a snippet was admitted");
    assert!(
        err.contains(r#"admission webhook "validate.sluice.dev" denied the request"#)
            && err.contains(&format!("error: Ingress {}/bad [SnippetRefused]", t.ns))
            && err.contains("configuration-snippet holds NGINX configuration"),
        "{err}"
    );
    let ingresses: Api<Ingress> = t.api();
    assert!(ingresses.get_opt("bad").await.unwrap().is_none(), "the refused Ingress was stored");

    // A good one is admitted, without warnings.
    let (ok, out, err) =
        kubectl(&["apply", "-f", "-"], &manifest("good", "good.test", &t.class(), json!({})));
    assert!(ok && out.contains("ingress.networking.k8s.io/good created"), "{out}{err}");
    assert!(!err.contains("Warning"), "{err}");
    eventually("good.test is served", || async { answer(&s, "good.test").await == "web" }).await;

    // An annotation Sluice ignores: admitted, and the client shows why.
    let typo = json!({"nginx.ingress.kubernetes.io/proxy-conect-timeout": "10"});
    let (ok, out, err) =
        kubectl(&["apply", "-f", "-"], &manifest("typo", "typo.test", &t.class(), typo));
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(&format!("Warning: Ingress {}/typo [UnknownAnnotation]", t.ns))
            && err.contains("proxy-conect-timeout is not an ingress-nginx annotation; ignored"),
        "{err}"
    );

    // A host and path the older Ingress owns: denied, naming the owner.
    let (ok, _, err) =
        kubectl(&["apply", "-f", "-"], &manifest("late", "owner.test", &t.class(), json!({})));
    assert!(!ok, "a collision was admitted");
    assert!(err.contains(&format!("already served by older Ingress {}/owner", t.ns)), "{err}");

    // Another controller's Ingress is not Sluice's to judge, snippet or not.
    let (ok, out, err) =
        kubectl(&["apply", "-f", "-"], &manifest("theirs", "bad.test", "someone-else", snippet));
    assert!(ok && !err.contains("Warning"), "{out}{err}");

    // Updates go through it too: adding a snippet to the good Ingress is denied, and the
    // stored Ingress stays as it was.
    let mut patched: Value =
        serde_json::from_str(&manifest("good", "good.test", &t.class(), json!({}))).unwrap();
    patched["metadata"]["annotations"] =
        json!({"nginx.ingress.kubernetes.io/server-snippet": "return 200;"});
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], &patched.to_string());
    assert!(!ok && err.contains("[SnippetRefused]"), "{err}");
    let stored = ingresses.get("good").await.unwrap();
    assert!(stored.annotations().keys().all(|k| !k.contains("snippet")), "{stored:?}");

    let hooks: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(t.admin.clone());
    hooks.delete(&hook_name, &DeleteParams::default()).await.unwrap();
}

// deploy/manifests' way, with no certificate tool: Sluice (as the service account, with
// deploy/'s RBAC) makes the webhook's certificate for the address the
// ValidatingWebhookConfiguration calls, keeps it in its Secret, and sets the caBundle; the API
// server then trusts it. A second replica serves the same certificate, read from the Secret.
#[tokio::test(flavor = "multi_thread")]
async fn sluice_makes_its_webhook_certificate_and_sets_the_ca_bundle() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let t = Test::new("webhook-cert").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // The name deploy/'s RBAC lets Sluice update, by URL here (the API server cannot reach a
    // Service on this machine), without a caBundle.
    t.apply(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "sluice-admission"},
        "webhooks": [{
            "name": "validate.sluice.dev",
            "clientConfig": {"url": format!("https://{addr}/networking/v1/ingresses")},
            "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.ns}},
        }],
    }))
    .await;
    let flags = [
        "--validating-webhook-configuration=sluice-admission",
        "--validating-webhook-secret=sluice/sluice-admission",
    ];
    let first = format!("--validating-webhook={addr}");
    let s = t.sluice(&[&first, flags[0], flags[1]]);
    s.wait_stderr(|l| l.contains("validating admission webhook listening"));
    assert!(s.stderr().iter().any(|l| l.contains("made a certificate and kept it in its Secret")));

    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(t.admin.clone());
    let secrets: Api<Secret> =
        Api::namespaced(t.admin.clone(), sluice_testkit::CONTROLLER_NAMESPACE);
    let secret = secrets.get("sluice-admission").await.unwrap();
    let ca = secret.data.as_ref().unwrap()["ca.crt"].0.clone();
    let hook = hooks.get("sluice-admission").await.unwrap();
    assert_eq!(hook.webhooks.unwrap()[0].client_config.ca_bundle.as_ref().unwrap().0, ca);

    // The API server trusts it: a snippet is refused.
    let bad = serde_json::to_string(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "bad", "namespace": t.ns,
                     "annotations": {"nginx.ingress.kubernetes.io/server-snippet": "return 200;"}},
        "spec": {"ingressClassName": t.class(), "rules": [{"host": "bad.test", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap();
    eventually("the API server calls the webhook with the CA Sluice set", || async {
        let (ok, _, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], &bad);
        !ok && err.contains("[SnippetRefused]")
    })
    .await;

    // Another replica reuses the Secret's certificate rather than making its own.
    let port2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let second = format!("--validating-webhook=127.0.0.1:{port2}");
    let s2 = t.sluice(&[&second, flags[0], flags[1]]);
    s2.wait_stderr(|l| l.contains("validating admission webhook listening"));
    assert!(s2.stderr().iter().any(|l| l.contains("using the certificate kept in its Secret")));
    let again = secrets.get("sluice-admission").await.unwrap();
    assert_eq!(again.data.as_ref().unwrap()["ca.crt"].0, ca, "the CA changed");

    hooks.delete("sluice-admission", &DeleteParams::default()).await.unwrap();
    secrets.delete("sluice-admission", &DeleteParams::default()).await.unwrap();
}

// The chart's webhook certificate (Helm's genCA/genSignedCert) stays the same across
// `helm upgrade`: the template reads the previous Secret back with `lookup`, so the caBundle
// and the certificate the pods mount do not change under running replicas.
#[tokio::test(flavor = "multi_thread")]
async fn the_charts_webhook_certificate_survives_upgrades() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let t = Test::new("helm-cert").await;
    let dir = PathBuf::from(std::env::var_os("SLUICE_E2E_DIR").expect("SLUICE_E2E_DIR"));
    // The chart as shipped: helm checks its kubeVersion against the API server's /version.
    let chart = repo().join("deploy/helm/sluice");
    let helm = |verb: &str| {
        let out = std::process::Command::new(sluice_testkit::bin_dir().unwrap().join("helm"))
            .args([verb, "cert"])
            .arg(&chart)
            .args(["--namespace", &t.ns, "--kubeconfig"])
            .arg(dir.join("admin.kubeconfig"))
            // Cluster-scoped objects of their own, and a webhook for this namespace only.
            .args(["--set", &format!("ingressClass.name={}-class", t.ns)])
            .args([
                "--set",
                &format!(
                    "admissionWebhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={}",
                    t.ns
                ),
            ])
            .output()
            .expect("helm runs");
        assert!(out.status.success(), "helm {verb}: {}", String::from_utf8_lossy(&out.stderr));
    };
    helm("install");
    let secrets: Api<Secret> = t.api();
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(t.admin.clone());
    let name = "cert-sluice-admission";
    let read = || async {
        let secret = secrets.get(name).await.unwrap();
        let data = secret.data.unwrap();
        let hook = hooks.get(name).await.unwrap();
        let bundle = hook.webhooks.unwrap()[0].client_config.ca_bundle.clone().unwrap();
        (data["ca.crt"].0.clone(), data["tls.crt"].0.clone(), bundle.0)
    };
    let (ca, crt, bundle) = read().await;
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    assert_eq!(bundle, ca, "the caBundle is the Secret's CA");
    helm("upgrade");
    assert_eq!(read().await, (ca, crt, bundle), "the upgrade made a new certificate");

    let out = std::process::Command::new(sluice_testkit::bin_dir().unwrap().join("helm"))
        .args(["uninstall", "cert", "--namespace", &t.ns, "--kubeconfig"])
        .arg(dir.join("admin.kubeconfig"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A gRPC server (the standard health service, whose server-streaming `Watch` pushes every
/// status change to every open stream) on this machine's non-loopback address.
async fn grpc_backend() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind((node_ip(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
    (addr, reporter)
}

/// Server-side applies `obj` (named `name`) through a typed client: no discovery round per
/// write, so the churn goes as fast as the API server takes it.
async fn apply_to<K>(api: &Api<K>, name: &str, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(E2E).force(), &Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// The proxy's resident memory (KiB, `VmRSS`) and open file descriptors.
fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, fds)
}

/// Churn with long-lived streams: under steady HTTP and HTTPS load, with 50 WebSockets and
/// 50 gRPC server streams (a message every ~100 ms each) held open from start to end,
/// `SLUICE_CHURN_CHANGES` changes (100 in the test command, 1,000 in `bench/churn.sh`) spread
/// over Ingresses, Services, EndpointSlices, the TLS Secret of a host under load and the
/// ConfigMap. No request fails, no stream is cut, and the proxy's memory and file
/// descriptors are flat from the first tenth of the changes to the last.
#[tokio::test(flavor = "multi_thread")]
async fn churn_under_load_cuts_no_stream_and_leaks_nothing() {
    use futures_util::{SinkExt, StreamExt};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use std::sync::Mutex;
    use tokio_tungstenite::tungstenite::Message;

    const STREAMS: usize = 50;
    // Flat: memory within 10 % plus 8 MiB (allocator arenas settle in steps), descriptors
    // within 24 (connections the load opens and closes, the TLS load's handshakes, watch
    // reconnections).
    const RSS_SLACK_KIB: u64 = 8 * 1024;
    const FD_SLACK: usize = 24;
    let changes = env_number("SLUICE_CHURN_CHANGES", 100) as usize;
    let checkpoint = (changes / 10).max(1);

    let t = Test::new("churn").await;
    let ca = tls::Ca::new("churn CA");
    let (a, b) = (backend("a").await, backend("b").await);
    let mut extras = Vec::new();
    for i in 0..4 {
        extras.push(backend(&format!("x{i}")).await);
    }
    let w = backend("w").await;
    let (g, reporter) = grpc_backend().await;
    t.service("web", &[a, b]).await;
    t.service("ws", &[w]).await;
    t.service("grpc", &[g]).await;
    t.ingress("web", "web.example.com", "web", Some(&t.class()), json!({})).await;
    t.ingress("ws", "ws.example.com", "ws", Some(&t.class()), json!({})).await;
    let grpc = json!({"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"});
    t.ingress("grpc", "grpc.example.com", "grpc", Some(&t.class()), grpc).await;
    let secret = |cn: &str| {
        let pem = ca.sign(&["secure.example.com"], cn, |_| {});
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "secure-tls", "namespace": t.ns},
            "stringData": {"tls.crt": pem.cert, "tls.key": pem.key},
        })
    };
    t.apply(secret("rotation-0")).await;
    t.tls_ingress("secure", "secure.example.com", "web", "secure-tls").await;
    let config = |size: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "sluice-config", "namespace": t.ns},
            "data": {"proxy-body-size": size},
        })
    };
    t.apply(config("8m")).await;
    let s = Arc::new(t.sluice(&[&format!("--configmap={}/sluice-config", t.ns)]));
    assert!(["a", "b"].contains(&answer(&s, "web.example.com").await.as_str()));
    assert_eq!(tls::get(s.https, "secure.example.com", "/").await.1.cn, "rotation-0");

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let fail = {
        let failures = failures.clone();
        move |what: String| failures.lock().unwrap().push(what)
    };

    // Steady load: two keep-alive HTTP clients on a route whose endpoints gain and lose
    // extra endpoints, and a client making a fresh TLS handshake per request on the host
    // whose certificate rotates.
    let mut load = Vec::new();
    for _ in 0..2 {
        let (s, stop, fail) = (s.clone(), stop.clone(), fail.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let req = request("GET", &s.url("/"), Some("web.example.com"), Bytes::new());
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        use http_body_util::BodyExt;
                        match r.into_body().collect().await {
                            Ok(_) => latencies.push(started.elapsed().as_micros() as u64),
                            Err(e) => fail(format!("HTTP body: {e}")),
                        }
                    }
                    Ok(r) => fail(format!("HTTP status {}", r.status())),
                    Err(e) => fail(format!("HTTP: {e:?}")),
                }
            }
            latencies
        }));
    }
    let tls_load = {
        let (s, stop, fail) = (s.clone(), stop.clone(), fail.clone());
        tokio::spawn(async move {
            let mut served = 0u64;
            let opts = tls::ClientOpts::sni("secure.example.com");
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get("https://secure.example.com/")
                    .header("host", "secure.example.com")
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap();
                match tls::request(s.https, &opts, req).await {
                    Ok((r, _)) if r.status == 200 => served += 1,
                    Ok((r, _)) => fail(format!("HTTPS status {}", r.status)),
                    Err(e) => fail(format!("HTTPS: {e}")),
                }
            }
            served
        })
    };

    // 50 WebSockets, each exchanging a message every ~100 ms until the end, then once more.
    let mut sockets = Vec::new();
    for i in 0..STREAMS {
        let mut ws = websocket(&s, "ws.example.com").await;
        let stop = stop.clone();
        sockets.push(tokio::spawn(async move {
            let mut exchanged = 0u64;
            loop {
                let last = stop.load(Ordering::Relaxed);
                let text = format!("{i}-{exchanged}");
                ws.send(Message::text(text.clone()))
                    .await
                    .map_err(|e| format!("WebSocket {i}: send: {e}"))?;
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(m))) if m == Message::text(text.clone()) => exchanged += 1,
                    other => return Err(format!("WebSocket {i}: {other:?} for {text}")),
                }
                if last {
                    return Ok(exchanged);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    // 50 gRPC Watch streams over 5 HTTP/2 connections; the server flips the status every
    // 100 ms and each stream must receive the flips until the end, then once more.
    let toggling = Arc::new(AtomicBool::new(true));
    let toggler = {
        let toggling = toggling.clone();
        tokio::spawn(async move {
            let mut serving = false;
            while toggling.load(Ordering::Relaxed) {
                let status = if serving {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                reporter.set_service_status("churn", status).await;
                serving = !serving;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut watches = Vec::new();
    for c in 0..5 {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.http))
            .unwrap()
            .origin("http://grpc.example.com".parse().unwrap())
            .connect()
            .await
            .expect("a gRPC connection through the proxy");
        for n in 0..STREAMS / 5 {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let req = tonic_health::pb::HealthCheckRequest { service: "churn".into() };
            let mut stream = client.watch(req).await.expect("Watch starts").into_inner();
            let stop = stop.clone();
            watches.push(tokio::spawn(async move {
                let mut received = 0u64;
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                        Ok(Ok(Some(_))) => received += 1,
                        other => return Err(format!("gRPC stream {c}/{n}: {other:?}")),
                    }
                    if last {
                        return Ok(received);
                    }
                }
            }));
        }
    }

    // The churn. Writes go one after the other, as fast as the API server takes them.
    let ingresses: Api<Ingress> = t.api();
    let services: Api<Service> = t.api();
    let slices: Api<EndpointSlice> = t.api();
    let secrets: Api<Secret> = t.api();
    let configs: Api<ConfigMap> = t.api();
    let class = t.class();
    let ns = t.ns.clone();
    let slice = |name: &str, service: &str, e: SocketAddr| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": e.port()}],
            "endpoints": [{"addresses": [e.ip().to_string()], "conditions": {"ready": true}}],
        })
    };
    let other_ingress = |k: usize, version: usize| {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("other-{k}"), "namespace": ns,
                         "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": (version % 50 + 10).to_string()}},
            "spec": {"ingressClassName": class, "rules": [{"host": format!("other-{k}.example.com"), "http": {"paths": [{
                "path": format!("/v{}", version % 3), "pathType": "Prefix",
                "backend": {"service": {"name": format!("other-svc-{k}"), "port": {"number": 80}}},
            }]}}]},
        })
    };
    let other_service = |k: usize, version: usize| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("other-svc-{k}"), "namespace": ns,
                         "labels": {"version": version.to_string()}},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        })
    };
    let mut other_ingresses = [false; 8];
    let mut other_services = [false; 8];
    let mut web_extras = vec![false; extras.len()];
    let mut other_slices = [false; 8];
    let mut last_cn = "rotation-0".to_string();
    let mut figures = Vec::new();
    let started = Instant::now();
    for i in 0..changes {
        let k = (i / 10) % 8;
        match i % 10 {
            // Ingresses: another Ingress created, modified, or deleted.
            0 | 1 | 9 => {
                let k = (i / 10 + i % 10) % 8;
                if !other_ingresses[k] || (i / 80) % 2 == 0 {
                    apply_to(&ingresses, &format!("other-{k}"), other_ingress(k, i)).await;
                    other_ingresses[k] = true;
                } else {
                    ingresses.delete(&format!("other-{k}"), &Default::default()).await.unwrap();
                    other_ingresses[k] = false;
                }
            }
            // Pods added and removed: extra endpoints of the Service under load (its two
            // ready endpoints stay), and endpoints of the other Services.
            2 | 3 => {
                let j = (i / 10 + i % 10) % extras.len();
                let name = format!("web-extra-{j}");
                if web_extras[j] {
                    slices.delete(&name, &Default::default()).await.unwrap();
                } else {
                    apply_to(&slices, &name, slice(&name, "web", extras[j])).await;
                }
                web_extras[j] = !web_extras[j];
            }
            4 => {
                let name = format!("other-svc-{k}-0");
                if other_slices[k] {
                    slices.delete(&name, &Default::default()).await.unwrap();
                } else {
                    let service = format!("other-svc-{k}");
                    apply_to(&slices, &name, slice(&name, &service, extras[k % extras.len()]))
                        .await;
                }
                other_slices[k] = !other_slices[k];
            }
            // Services: created, relabelled, deleted.
            5 | 6 => {
                let name = format!("other-svc-{k}");
                if other_services[k] && (i / 10) % 3 == 2 {
                    services.delete(&name, &Default::default()).await.unwrap();
                    other_services[k] = false;
                } else {
                    apply_to(&services, &name, other_service(k, i)).await;
                    other_services[k] = true;
                }
            }
            // The certificate of the host under TLS load rotates.
            7 => {
                last_cn = format!("rotation-{i}");
                apply_to(&secrets, "secure-tls", secret(&last_cn)).await;
            }
            // A harmless ConfigMap key toggles.
            _ => {
                let size = if (i / 10) % 2 == 0 { "9m" } else { "8m" };
                apply_to(&configs, "sluice-config", config(size)).await;
            }
        }
        let done = i + 1;
        if done == checkpoint || done == changes {
            let writing = started.elapsed();
            // Measured once the proxy has caught up: the newest certificate is presented.
            eventually_within("the churn so far is applied", WAIT * 2, || async {
                tls::get(s.https, "secure.example.com", "/").await.1.cn == last_cn
            })
            .await;
            let (rss, fds) = rss_and_fds(s.pid());
            figures.push((done, writing, rss, fds));
        }
    }
    let writing = started.elapsed();

    // The end: every stream exchanges once more, then the load stops.
    stop.store(true, Ordering::Relaxed);
    let mut cut = Vec::new();
    let (mut ws_messages, mut grpc_messages) = (0, 0);
    for task in sockets {
        match task.await.unwrap() {
            Ok(n) => ws_messages += n,
            Err(e) => cut.push(e),
        }
    }
    for task in watches {
        match task.await.unwrap() {
            Ok(n) => grpc_messages += n,
            Err(e) => cut.push(e),
        }
    }
    toggling.store(false, Ordering::Relaxed);
    toggler.await.unwrap();
    let mut latencies = Vec::new();
    for task in load {
        latencies.extend(task.await.unwrap());
    }
    let tls_served = tls_load.await.unwrap();
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let failures = failures.lock().unwrap().clone();
    let (first, last) = (figures[0], figures[figures.len() - 1]);
    eprintln!(
        "churn: {changes} changes in {:.1} s ({:.0}/s) with {STREAMS} WebSockets and {STREAMS} gRPC streams open; \
         {} HTTP requests (p50 {:.2} ms, p99 {:.2} ms), {tls_served} HTTPS requests with a fresh handshake each, \
         {} failed; {ws_messages} WebSocket and {grpc_messages} gRPC messages, {} streams cut; \
         RSS {} KiB and {} fds after {} changes, {} KiB and {} fds after {}",
        writing.as_secs_f64(),
        changes as f64 / writing.as_secs_f64(),
        latencies.len(),
        p(0.5),
        p(0.99),
        failures.len(),
        cut.len(),
        first.2,
        first.3,
        first.0,
        last.2,
        last.3,
        last.0,
    );
    assert_eq!(failures, Vec::<String>::new(), "no request failed during the churn");
    assert_eq!(cut, Vec::<String>::new(), "no stream was cut");
    assert!(latencies.len() > changes, "the load ran throughout");
    assert!(
        last.2 <= first.2 + first.2 / 10 + RSS_SLACK_KIB,
        "resident memory grew from {} KiB to {} KiB",
        first.2,
        last.2
    );
    assert!(last.3 <= first.3 + FD_SLACK, "open descriptors grew from {} to {}", first.3, last.3);
}
