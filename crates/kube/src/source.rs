use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use sluice_model::{LeanService, LeanSlice, NamespacedName, Objects, Snapshot, slim_metadata};
use tokio::sync::mpsc;

use crate::store::{Store, Writer, store};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct SourceConfig {
    /// `--watch-namespace`: only these namespaces (one watch per namespace and kind); `None`
    /// watches the whole cluster.
    pub namespaces: Option<Vec<String>>,
    /// `--watch-namespace-selector`: only namespaces with these labels (used when
    /// `namespaces` is `None`).
    pub namespace_selector: Option<String>,
    /// `--configmap`: the controller's ConfigMap, watched in its own namespace whichever
    /// namespaces the other kinds are watched in.
    pub configmap: Option<NamespacedName>,
}

/// The stores of every watched kind, holding objects as snapshots keep them (EndpointSlices and
/// Services as [`LeanSlice`]s and [`LeanService`]s, the other kinds slimmed).
pub struct KubeSource {
    ingresses: Vec<Store<Ingress>>,
    services: Vec<Store<LeanService>>,
    endpoint_slices: Vec<Store<LeanSlice>>,
    secrets: Vec<Store<Secret>>,
    config_maps: Vec<Store<ConfigMap>>,
    ingress_classes: Store<IngressClass>,
    selected_namespaces: Option<Store<Namespace>>,
    /// The namespace of `--configmap`, kept whichever namespaces are selected.
    configmap_namespace: Option<String>,
}

/// The outcome of the first full sync.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// Objects per kind, in the order synced.
    pub counts: Vec<(&'static str, usize)>,
    /// Time from start to the last kind synced.
    pub took: Duration,
}

/// Helm keeps every release in a Secret of this type; they can be large and are never
/// referenced by an Ingress (ingress-nginx leaves them out too).
const HELM_RELEASE_SECRETS: &str = "type!=helm.sh/release.v1";

impl KubeSource {
    /// Starts the reflectors. The returned channel receives a wake-up (coalesced: at most one
    /// pending) whenever something that can change routing changed.
    pub fn start(client: Client, config: &SourceConfig) -> (KubeSource, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        let namespaces = config.namespaces.clone();
        let per_ns = |kind: &'static str| Scope { kind, namespaces: namespaces.clone() };
        let ingresses = per_ns("Ingress").reflect(
            &client,
            watcher::Config::default(),
            &tx,
            ingress_filter,
            slim,
        );
        let services = per_ns("Service").reflect(
            &client,
            watcher::Config::default(),
            &tx,
            always,
            <LeanService as From<Service>>::from,
        );
        let endpoint_slices = per_ns("EndpointSlice").reflect(
            &client,
            watcher::Config::default(),
            &tx,
            always,
            <LeanSlice as From<EndpointSlice>>::from,
        );
        let secrets = per_ns("Secret").reflect(
            &client,
            watcher::Config::default().fields(HELM_RELEASE_SECRETS),
            &tx,
            always,
            slim,
        );
        // ConfigMaps of the watched namespaces: Ingresses name some (`custom-headers`), and
        // the controller's ConfigMap names others (`add-headers`, `proxy-set-headers`).
        let mut config_maps =
            per_ns("ConfigMap").reflect(&client, watcher::Config::default(), &tx, always, slim);
        // The controller's own, by name in its own namespace, when the watched namespaces
        // may leave it out: it usually lives with the controller, not with the applications
        // (ingress-nginx reads it there too). A copy also in a watched namespace is harmless.
        let covered = |ns: &str| match (&config.namespaces, &config.namespace_selector) {
            (Some(list), _) => list.iter().any(|n| n == ns),
            (None, None) => true,
            (None, Some(_)) => false,
        };
        config_maps.extend(config.configmap.iter().filter(|c| !covered(&c.namespace)).map(|c| {
            spawn_reflector(
                "ConfigMap",
                Api::namespaced(client.clone(), &c.namespace),
                watcher::Config::default().fields(&format!("metadata.name={}", c.name)),
                tx.clone(),
                always(),
                slim,
            )
        }));
        let ingress_classes = spawn_reflector(
            "IngressClass",
            Api::all(client.clone()),
            watcher::Config::default(),
            tx.clone(),
            always(),
            slim,
        );
        let selected_namespaces = match (&config.namespaces, &config.namespace_selector) {
            (None, Some(selector)) => Some(spawn_reflector(
                "Namespace",
                Api::all(client.clone()),
                watcher::Config::default().labels(selector),
                tx.clone(),
                always(),
                slim,
            )),
            _ => None,
        };
        let source = KubeSource {
            ingresses,
            services,
            endpoint_slices,
            secrets,
            config_maps,
            ingress_classes,
            selected_namespaces,
            configmap_namespace: config.configmap.as_ref().map(|c| c.namespace.clone()),
        };
        (source, rx)
    }

    /// Waits until every store holds a complete first list, logging each kind as it syncs.
    pub async fn wait_synced(&self) -> SyncReport {
        let started = Instant::now();
        let mut counts = Vec::new();
        macro_rules! sync {
            ($kind:literal, $stores:expr) => {{
                for store in $stores {
                    // Only fails if the reflector task is gone, which never happens while
                    // the source lives.
                    let _ = store.wait_until_ready().await;
                }
                let n: usize = $stores.iter().map(|s| s.len()).sum();
                tracing::info!(
                    kind = $kind,
                    objects = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "synced"
                );
                counts.push(($kind, n));
            }};
        }
        if let Some(ns) = &self.selected_namespaces {
            sync!("Namespace", std::slice::from_ref(ns));
        }
        sync!("IngressClass", std::slice::from_ref(&self.ingress_classes));
        sync!("Ingress", &self.ingresses);
        sync!("Service", &self.services);
        sync!("EndpointSlice", &self.endpoint_slices);
        sync!("Secret", &self.secrets);
        sync!("ConfigMap", &self.config_maps);
        SyncReport { counts, took: started.elapsed() }
    }

    /// Whether `ns` is the controller's ConfigMap's namespace.
    fn is_controller_ns(&self, ns: &str) -> bool {
        self.configmap_namespace.as_deref() == Some(ns)
    }

    /// Everything watched, as one snapshot: the stores' chunks, shared with the previous
    /// snapshot where their buckets did not change.
    pub fn snapshot(&self) -> Snapshot {
        let selected = self.selected_namespaces.as_ref().map(|s| {
            s.objects().iter().map(|n| n.name_any()).collect::<std::collections::HashSet<_>>()
        });
        let keep = |ns: &str| match &selected {
            None => true,
            Some(set) => ns.is_empty() || set.contains(ns),
        };
        fn all<T: sluice_model::Named>(
            stores: &[Store<T>],
            keep: &impl Fn(&str) -> bool,
        ) -> Objects<T> {
            Objects::from_chunks(stores.iter().flat_map(|s| s.chunks(keep)))
        }
        Snapshot {
            ingresses: all(&self.ingresses, &keep),
            ingress_classes: all(std::slice::from_ref(&self.ingress_classes), &|_| true),
            services: all(&self.services, &keep),
            endpoint_slices: all(&self.endpoint_slices, &keep),
            secrets: all(&self.secrets, &keep),
            // The controller's own ConfigMap is kept whichever namespaces are selected.
            config_maps: all(&self.config_maps, &|ns| keep(ns) || self.is_controller_ns(ns)),
            observed_at: Some(unix_now()),
        }
    }
}

/// Which namespaces one kind is watched in.
struct Scope {
    kind: &'static str,
    namespaces: Option<Vec<String>>,
}

impl Scope {
    /// One watch per namespace (or one for the cluster); `filter` makes, per watch, the
    /// predicate deciding which applied objects wake the control loop; `convert` turns objects
    /// into what the store keeps.
    fn reflect<K, T, F, P>(
        &self,
        client: &Client,
        config: watcher::Config,
        tx: &mpsc::Sender<()>,
        filter: F,
        convert: fn(K) -> T,
    ) -> Vec<Store<T>>
    where
        T: sluice_model::Named + Send + Sync + 'static,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
        F: Fn() -> P,
        P: FnMut(&K) -> bool + Send + 'static,
    {
        match &self.namespaces {
            None => vec![spawn_reflector(
                self.kind,
                Api::all(client.clone()),
                config,
                tx.clone(),
                filter(),
                convert,
            )],
            Some(list) => list
                .iter()
                .map(|ns| {
                    spawn_reflector(
                        self.kind,
                        Api::namespaced(client.clone(), ns),
                        config.clone(),
                        tx.clone(),
                        filter(),
                        convert,
                    )
                })
                .collect(),
        }
    }
}

/// Every applied object matters.
fn always<K>() -> impl FnMut(&K) -> bool + Send + 'static {
    |_: &K| true
}

/// An Ingress matters when what routing reads changed: its spec (`generation`), annotations or
/// labels. Status updates, including Sluice's own, do not wake the loop.
fn ingress_filter() -> impl FnMut(&Ingress) -> bool + Send + 'static {
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    move |ing: &Ingress| {
        let mut h = DefaultHasher::new();
        ing.metadata.generation.hash(&mut h);
        ing.metadata.annotations.hash(&mut h);
        ing.metadata.labels.hash(&mut h);
        let key = (ing.namespace().unwrap_or_default(), ing.name_any());
        seen.insert(key, h.finish()) != Some(h.finish())
    }
}

/// Slims an object's metadata, as every kind but Service and EndpointSlice is kept.
fn slim<K: Resource>(mut object: K) -> K {
    slim_metadata(object.meta_mut());
    object
}

fn spawn_reflector<K, T, P>(
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    tx: mpsc::Sender<()>,
    mut matters: P,
    convert: fn(K) -> T,
) -> Store<T>
where
    T: sluice_model::Named + Send + Sync + 'static,
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    P: FnMut(&K) -> bool + Send + 'static,
{
    let (reader, writer): (Store<T>, Writer<T>) = store();
    let stream = watcher::watcher(api, config).backoff(crate::retry::WatchRetry::new());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut failing = false;
        let mut listed = false;
        while let Some(event) = stream.next().await {
            let wake = match &event {
                Ok(Event::Apply(obj)) => matters(obj),
                // Deletions always matter; the filter still learns the object is gone.
                Ok(Event::Delete(_)) => true,
                Ok(Event::InitApply(obj)) => {
                    matters(obj);
                    false
                }
                Ok(Event::Init) => false,
                // A (re)list is complete: the store was just replaced whole. After the first,
                // one only happens when a watch could not resume (410 Gone: history expired).
                Ok(Event::InitDone) => {
                    if listed {
                        tracing::info!(
                            kind,
                            "relisted after the watch expired; the store was replaced whole"
                        );
                    }
                    listed = true;
                    true
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(kind, error = %e, "watch failed; retrying with backoff, the last configuration keeps serving");
                    }
                    failing = true;
                    continue;
                }
            };
            if failing {
                tracing::info!(kind, "watch recovered");
                failing = false;
            }
            if let Ok(event) = event {
                writer.apply(event, convert);
            }
            if wake {
                // A full channel already holds a wake-up that covers this change.
                let _ = tx.try_send(());
            }
        }
    });
    reader
}

/// Seconds since the Unix epoch (certificate expiry is judged against the snapshot's time).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
