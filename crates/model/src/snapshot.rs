use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Every object of the kinds Sluice reads, as one consistent set.
///
/// Objects are behind `Arc` so that a source can hand over what it already holds (kube-rs
/// reflector stores keep `Arc`s) without copying. Order carries no meaning: translation sorts
/// what it needs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Ingresses of every class; translation keeps those it owns.
    pub ingresses: Vec<Arc<Ingress>>,
    /// IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Secrets.
    pub secrets: Vec<Arc<Secret>>,
    /// ConfigMaps.
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// When the source took the snapshot, in seconds since the Unix epoch: certificates are
    /// judged expired against it (translation itself reads no clock). `None` skips the check.
    pub observed_at: Option<i64>,
}

impl Snapshot {
    /// The number of objects of all kinds.
    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
    }

    /// True when the snapshot holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
