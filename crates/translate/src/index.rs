//! Lookups over the snapshot that translation needs, built once per translation.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::{LeanService, LeanSlice, Named, NamespacedName, Objects, Settings, Snapshot};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// A map for translation's own lookups, hashed with foldhash (seeded per process).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set for translation's own lookups, hashed with foldhash.
pub(crate) type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// A hash of a Service's namespace and name, the same for the life of the process (it keys
/// [`Referrers::by_service`](sluice_model::Referrers::by_service)).
pub(crate) fn service_hash(namespace: &str, name: &str) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one((namespace, name))
}

/// The Services an Ingress's spec names (rules and `defaultBackend`), as (namespace, name).
pub(crate) fn named_services(ingress: &Ingress) -> impl Iterator<Item = (&str, &str)> {
    let ns = ns_name(&ingress.metadata).0;
    let spec = ingress.spec.iter();
    let paths = spec.clone().flat_map(|s| s.rules.iter().flatten()).flat_map(|r| r.http.iter());
    let backends = paths.flat_map(|h| h.paths.iter().map(|p| &p.backend));
    let backends = backends.chain(spec.flat_map(|s| s.default_backend.iter()));
    backends.filter_map(move |b| Some((ns, b.service.as_ref()?.name.as_str())))
}

/// The Services translating `ingress` looks up: those [`named_services`] gives and the
/// `default-backend` annotation's (`key`, with the annotations prefix), of its namespace.
pub(crate) fn referenced_services<'a>(
    ingress: &'a Ingress,
    key: &str,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let ns = ns_name(&ingress.metadata).0;
    let annotation = ingress.metadata.annotations.as_ref().and_then(|a| a.get(key));
    named_services(ingress).chain(annotation.map(|name| (ns, name.trim())))
}

/// The annotation naming an Ingress's own default backend Service, with `prefix`.
pub(crate) fn default_backend_key(prefix: &str) -> String {
    format!("{prefix}/default-backend")
}

/// The namespaces of `services`, sorted, without repeats.
pub(crate) fn namespaces_of<'a>(services: &FastSet<(&'a str, &str)>) -> Vec<&'a str> {
    let mut namespaces: Vec<&str> = services.iter().map(|&(ns, _)| ns).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    namespaces
}

/// namespace -> name -> value; nested so that lookups borrow their keys.
type ByName<'s, V> = FastMap<&'s str, FastMap<&'s str, V>>;

/// One Service's EndpointSlices: most Services have one, which needs no vector.
enum Slices<'s> {
    One(&'s LeanSlice),
    More(Vec<&'s LeanSlice>),
}

impl<'s> Slices<'s> {
    fn push(slot: &mut Option<Slices<'s>>, slice: &'s LeanSlice) {
        *slot = Some(match slot.take() {
            None => Slices::One(slice),
            Some(Slices::One(first)) => Slices::More(vec![first, slice]),
            Some(Slices::More(mut list)) => {
                list.push(slice);
                Slices::More(list)
            }
        });
    }

    fn as_slice(&self) -> &[&'s LeanSlice] {
        match self {
            Slices::One(one) => std::slice::from_ref(one),
            Slices::More(list) => list,
        }
    }
}

pub(crate) struct Index<'s> {
    services: ByName<'s, &'s LeanService>,
    /// namespace -> Service name -> its EndpointSlices, sorted by name.
    slices: ByName<'s, Option<Slices<'s>>>,
    config_maps: ByName<'s, &'s ConfigMap>,
    secrets: ByName<'s, &'s Secret>,
    /// Where Secrets are looked up when `secrets` was not built: an index for a few
    /// Ingresses reads few of them, and hashing every Secret of a cluster with a certificate
    /// per host (10,000) cost more than the update itself.
    secret_list: Option<&'s Objects<Secret>>,
    /// The ConfigMaps looked up so far, found or not: only their changes can change the
    /// table (see [`Referrers::config_maps`](sluice_model::Referrers::config_maps)).
    read_config_maps: RefCell<Vec<NamespacedName>>,
}

/// The Service an EndpointSlice belongs to (namespace, name), from its
/// `kubernetes.io/service-name` label.
pub(crate) fn service_of(slice: &LeanSlice) -> Option<(&str, &str)> {
    Some((slice.namespace.as_str(), slice.service.as_deref()?))
}

impl<'s> Index<'s> {
    /// An index of `wanted`'s Services and their EndpointSlices only (no Secret, no
    /// ConfigMap): what rebuilding their endpoints needs.
    /// `namespaces` are those of `wanted`, in a list: there are few, and most objects are
    /// elsewhere, which comparing a namespace tells more cheaply than a lookup.
    pub(crate) fn of_services(
        snapshot: &'s Snapshot,
        wanted: &FastSet<(&str, &str)>,
        namespaces: &[&str],
    ) -> Self {
        let mut services: ByName<'s, &'s LeanService> = FastMap::default();
        for s in snapshot.services.in_namespaces(namespaces) {
            let (ns, name) = (s.namespace(), s.name());
            if namespaces.contains(&ns) && wanted.contains(&(ns, name)) {
                services.entry(ns).or_default().insert(name, &**s);
            }
        }
        let mut slices: ByName<'s, Option<Slices<'s>>> = FastMap::default();
        for s in snapshot.endpoint_slices.in_namespaces(namespaces) {
            let Some((ns, service)) = service_of(s) else { continue };
            if !namespaces.contains(&ns) {
                continue;
            }
            if wanted.contains(&(ns, service)) {
                Slices::push(slices.entry(ns).or_default().entry(service).or_default(), s);
            }
        }
        sort_slices(&mut slices);
        Self {
            services,
            slices,
            config_maps: FastMap::default(),
            secrets: FastMap::default(),
            secret_list: None,
            read_config_maps: RefCell::default(),
        }
    }

    pub(crate) fn new(snapshot: &'s Snapshot) -> Self {
        let mut services: ByName<'s, &'s LeanService> = FastMap::default();
        for s in &snapshot.services {
            services.entry(s.namespace()).or_default().insert(s.name(), &**s);
        }
        let mut slices: ByName<'s, Option<Slices<'s>>> = FastMap::default();
        for s in &snapshot.endpoint_slices {
            let Some((ns, service)) = service_of(s) else { continue };
            Slices::push(slices.entry(ns).or_default().entry(service).or_default(), s);
        }
        sort_slices(&mut slices);
        Self {
            services,
            slices,
            config_maps: by_name(&snapshot.config_maps),
            secrets: by_name(&snapshot.secrets),
            secret_list: None,
            read_config_maps: RefCell::default(),
        }
    }

    /// An index for translating `ingresses` alone: the Services (with their EndpointSlices)
    /// that they (rules, `defaultBackend`, the `default-backend` annotation) and
    /// `--default-backend-service` name, and every ConfigMap and Secret.
    pub(crate) fn for_ingresses(
        snapshot: &'s Snapshot,
        ingresses: &[&'s Ingress],
        settings: &Settings,
    ) -> Self {
        // The `default-backend` annotation's Service too (an Ingress update never sees one:
        // such Ingresses are translated in full; a review does).
        let key = default_backend_key(&settings.annotations_prefix);
        let mut wanted: FastSet<(&str, &str)> =
            ingresses.iter().flat_map(|i| referenced_services(i, &key)).collect();
        if let Some(d) = &settings.default_backend_service {
            wanted.insert((&d.namespace, &d.name));
        }
        let namespaces = namespaces_of(&wanted);
        let mut index = Self::of_services(snapshot, &wanted, &namespaces);
        index.config_maps = by_name(&snapshot.config_maps);
        index.secret_list = Some(&snapshot.secrets);
        index
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&'s LeanService> {
        self.services.get(ns)?.get(name).copied()
    }

    pub(crate) fn slices(&self, ns: &str, service: &str) -> &[&'s LeanSlice] {
        let found = self.slices.get(ns).and_then(|m| m.get(service)?.as_ref());
        found.map(Slices::as_slice).unwrap_or_default()
    }

    pub(crate) fn secret(&self, ns: &str, name: &str) -> Option<&'s Secret> {
        match self.secret_list {
            // Only the chunks that may hold the namespace are read.
            Some(list) => {
                let found =
                    list.in_namespaces(&[ns]).find(|s| s.namespace() == ns && s.name() == name);
                found.map(|s| &**s)
            }
            None => self.secrets.get(ns)?.get(name).copied(),
        }
    }

    pub(crate) fn config_map(&self, ns: &str, name: &str) -> Option<&'s ConfigMap> {
        self.read_config_maps.borrow_mut().push(NamespacedName::new(ns, name));
        self.config_maps.get(ns)?.get(name).copied()
    }

    /// The ConfigMaps looked up, sorted, without repeats.
    pub(crate) fn config_maps_read(&self) -> Vec<NamespacedName> {
        let mut read = self.read_config_maps.take();
        read.sort_unstable();
        read.dedup();
        read
    }
}

/// `objects` by namespace and name.
fn by_name<T: Named>(objects: &Objects<T>) -> ByName<'_, &T> {
    let mut map: ByName<'_, &T> = FastMap::default();
    for object in objects {
        map.entry(object.namespace()).or_default().insert(object.name(), &**object);
    }
    map
}

/// Stable endpoint order whatever order the source listed slices in.
fn sort_slices(slices: &mut ByName<'_, Option<Slices<'_>>>) {
    for slot in slices.values_mut().flat_map(|m| m.values_mut()) {
        let Some(Slices::More(list)) = slot else { continue };
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

fn ns_name(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}
