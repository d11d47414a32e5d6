//! Objects as a snapshot keeps them: without what routing never reads.
//!
//! At 10,000 Ingresses, 20,000 Services and 50,000 endpoints, k8s-openapi's types hold most of
//! a controller's memory: an `EndpointSlice` with two or three endpoints takes about 2 KiB
//! (each `Endpoint` has 350 bytes of optional fields, each label map a 544-byte B-tree node),
//! a Service about 1 KiB (its spec has 30 optional fields, its selector another B-tree node).
//! Sources keep both as the fields routing reads, [`LeanSlice`] and [`LeanService`] (a sixth of
//! that), and drop from the other kinds what nothing reads ([`slim_metadata`]). Fields are
//! copied as they are: what they mean (readiness, ports, FQDN addresses, Service types) is
//! decided by translation.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Named;

/// The label an EndpointSlice carries to name its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The annotation `kubectl apply` keeps the whole last applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An EndpointSlice (`discovery.k8s.io/v1`) with the fields routing reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeanSlice {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The label `kubernetes.io/service-name`: the Service whose endpoints these are.
    pub service: Option<String>,
    /// `addressType`: `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// `ports`.
    pub ports: Vec<SlicePort>,
    /// `endpoints`.
    pub endpoints: Vec<SliceEndpoint>,
}

/// One of an EndpointSlice's `ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlicePort {
    /// `name`: the Service port's name (unset or empty for a single unnamed port).
    pub name: Option<String>,
    /// `port`: the number dialled.
    pub port: Option<i32>,
}

/// One of an EndpointSlice's `endpoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SliceEndpoint {
    /// `addresses`.
    pub addresses: Vec<String>,
    /// `conditions.ready` (unset means ready, as the API documents; translation decides).
    pub ready: Option<bool>,
}

impl From<EndpointSlice> for LeanSlice {
    fn from(slice: EndpointSlice) -> Self {
        let EndpointSlice { metadata, address_type, endpoints, ports } = slice;
        let service = metadata.labels.and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL));
        Self {
            namespace: metadata.namespace.unwrap_or_default(),
            name: metadata.name.unwrap_or_default(),
            service,
            address_type,
            ports: exact(
                ports
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| SlicePort { name: p.name, port: p.port }),
            ),
            endpoints: exact(endpoints.into_iter().map(|e| SliceEndpoint {
                addresses: e.addresses,
                ready: e.conditions.and_then(|c| c.ready),
            })),
        }
    }
}

/// A Service (`v1`) with the fields routing reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeanService {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type` (`ClusterIP` when unset, as the API defaults it).
    pub service_type: Option<String>,
    /// `spec.clusterIP` (`None` for headless Services), for `service-upstream`.
    pub cluster_ip: Option<String>,
    /// `spec.ports`.
    pub ports: Vec<LeanServicePort>,
}

/// One of a Service's `ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeanServicePort {
    /// `name` (unset for a single unnamed port).
    pub name: Option<String>,
    /// `port`: what an Ingress names by number.
    pub port: i32,
}

impl From<Service> for LeanService {
    fn from(service: Service) -> Self {
        let spec = service.spec.unwrap_or_default();
        let ports = spec.ports.unwrap_or_default().into_iter();
        Self {
            namespace: service.metadata.namespace.unwrap_or_default(),
            name: service.metadata.name.unwrap_or_default(),
            service_type: spec.type_,
            cluster_ip: spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None"),
            ports: exact(ports.map(|p| LeanServicePort { name: p.name, port: p.port })),
        }
    }
}

impl Named for LeanService {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The items in a vector of their own, sized exactly. `collect` would reuse the source
/// vector's buffer, sized for the much larger k8s-openapi items: the memory saved would stay
/// allocated.
fn exact<T>(items: impl ExactSizeIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    out.extend(items);
    out
}

impl Named for LeanSlice {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Drops from `meta` what no part of Sluice reads and can be large: `kubectl apply`'s copy of
/// the whole object, and the field sets of `managedFields` (who manages what is kept: the
/// status writer reads it).
pub fn slim_metadata(meta: &mut ObjectMeta) {
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
    for entry in meta.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;

    #[test]
    fn a_lean_slice_keeps_what_routing_reads() {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("web-abc".into()),
                labels: Some(BTreeMap::from([
                    (SERVICE_NAME_LABEL.to_string(), "web".to_string()),
                    ("app".to_string(), "web".to_string()),
                ])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![
                Endpoint {
                    addresses: vec!["10.0.0.1".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(false),
                        serving: Some(true),
                        ..Default::default()
                    }),
                    node_name: Some("node-1".into()),
                    ..Default::default()
                },
                Endpoint { addresses: vec!["10.0.0.2".into()], ..Default::default() },
            ],
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        let lean = LeanSlice::from(slice);
        assert_eq!((lean.namespace(), lean.name()), ("shop", "web-abc"));
        assert_eq!(lean.service.as_deref(), Some("web"));
        assert_eq!(lean.address_type, "IPv4");
        assert_eq!(lean.ports, [SlicePort { name: Some("http".into()), port: Some(8080) }]);
        assert_eq!(lean.endpoints.len(), 2);
        assert_eq!(
            (lean.endpoints[0].addresses[0].as_str(), lean.endpoints[0].ready),
            ("10.0.0.1", Some(false))
        );
        assert_eq!(lean.endpoints[1].ready, None, "unset stays unset: translation decides");
        assert_eq!(LeanSlice::from(EndpointSlice::default()).service, None);
    }

    #[test]
    fn a_lean_service_keeps_its_type_and_ports() {
        let service = Service {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ports: Some(vec![
                    ServicePort { name: Some("http".into()), port: 80, ..Default::default() },
                    ServicePort { port: 8443, ..Default::default() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let lean = LeanService::from(service);
        assert_eq!((lean.namespace(), lean.name()), ("shop", "web"));
        assert_eq!(lean.service_type.as_deref(), Some("ExternalName"));
        assert_eq!(
            lean.ports,
            [
                LeanServicePort { name: Some("http".into()), port: 80 },
                LeanServicePort { name: None, port: 8443 }
            ]
        );
        assert_eq!(LeanService::from(Service::default()).ports, []);
    }

    #[test]
    fn slimming_keeps_annotations_and_owners() {
        let mut meta = ObjectMeta {
            annotations: Some(BTreeMap::from([
                (LAST_APPLIED.to_string(), "{\"big\": true}".to_string()),
                ("nginx.ingress.kubernetes.io/x".to_string(), "1".to_string()),
            ])),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("sluice".into()),
                subresource: Some("status".into()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:status": {}}))),
                ..Default::default()
            }]),
            ..Default::default()
        };
        slim_metadata(&mut meta);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["nginx.ingress.kubernetes.io/x"]);
        let entry = &meta.managed_fields.as_ref().unwrap()[0];
        let owner = (entry.manager.as_deref(), entry.subresource.as_deref());
        assert_eq!(owner, (Some("sluice"), Some("status")), "the status writer reads it");
        assert!(entry.fields_v1.is_none());
    }
}
