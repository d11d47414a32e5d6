//! Lookups over the snapshot that translation needs, built once per translation.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::Snapshot;

/// The label an EndpointSlice carries to name its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// namespace -> name -> value; nested so that lookups borrow their keys.
type ByName<'s, V> = HashMap<&'s str, HashMap<&'s str, V>>;

pub(crate) struct Index<'s> {
    services: ByName<'s, &'s Service>,
    /// namespace -> Service name -> its EndpointSlices, sorted by name.
    slices: ByName<'s, Vec<&'s EndpointSlice>>,
    config_maps: ByName<'s, &'s ConfigMap>,
    secrets: ByName<'s, &'s Secret>,
}

impl<'s> Index<'s> {
    pub(crate) fn new(snapshot: &'s Snapshot) -> Self {
        let mut services: ByName<'s, &'s Service> = HashMap::new();
        for s in &snapshot.services {
            let (ns, name) = ns_name(&s.metadata);
            services.entry(ns).or_default().insert(name, &**s);
        }
        let mut slices: ByName<'s, Vec<&'s EndpointSlice>> = HashMap::new();
        for s in &snapshot.endpoint_slices {
            let labels = s.metadata.labels.as_ref();
            let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
            let (ns, _) = ns_name(&s.metadata);
            slices.entry(ns).or_default().entry(service.as_str()).or_default().push(&**s);
        }
        for list in slices.values_mut().flat_map(HashMap::values_mut) {
            // Stable endpoint order whatever order the source listed slices in.
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        let mut config_maps: ByName<'s, &'s ConfigMap> = HashMap::new();
        for c in &snapshot.config_maps {
            let (ns, name) = ns_name(&c.metadata);
            config_maps.entry(ns).or_default().insert(name, &**c);
        }
        let mut secrets: ByName<'s, &'s Secret> = HashMap::new();
        for s in &snapshot.secrets {
            let (ns, name) = ns_name(&s.metadata);
            secrets.entry(ns).or_default().insert(name, &**s);
        }
        Self { services, slices, config_maps, secrets }
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&'s Service> {
        self.services.get(ns)?.get(name).copied()
    }

    pub(crate) fn slices(&self, ns: &str, service: &str) -> &[&'s EndpointSlice] {
        self.slices.get(ns).and_then(|m| m.get(service)).map(Vec::as_slice).unwrap_or_default()
    }

    pub(crate) fn secret(&self, ns: &str, name: &str) -> Option<&'s Secret> {
        self.secrets.get(ns)?.get(name).copied()
    }

    pub(crate) fn config_map(&self, ns: &str, name: &str) -> Option<&'s ConfigMap> {
        self.config_maps.get(ns)?.get(name).copied()
    }
}

fn ns_name(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}
