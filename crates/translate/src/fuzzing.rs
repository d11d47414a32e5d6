//! The check the fuzz target `annotations` runs on each input (in `fuzz/`, with nightly), and
//! the corpus replay runs on stable: one definition of the target's invariants. Not an API:
//! hidden from the documentation, and free to change.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::{Kind, LeanService, LeanSlice, NamespacedName, ObjectRef, Settings, Snapshot};

const NS: &str = "fuzz";

/// Annotation values and ConfigMap keys, translated by [`crate::translate`] so that every
/// family's parser reads them. The input is lines of `key: value` (a line starting with a
/// space or tab continues the value on a new line, for snippets):
///
/// - `name: value` is the annotation `nginx.ingress.kubernetes.io/<name>` (a name with a `/`
///   is taken whole) of the Ingress `fuzz/web`, whose rules send `/` (Prefix) on host
///   `fuzz.example` to Service `fuzz/web`, which has a ready endpoint;
/// - `@path: p` adds an `ImplementationSpecific` path `p` to that rule; `@host: h` is the host;
///   `@tls: secret` adds a TLS section for the host with that Secret;
/// - `@cm.key: value` is a key of the controller's ConfigMap `fuzz/sluice-config`;
/// - `@secret.key: value` is a data key of the Secret `fuzz/secret` (htpasswd files, CA
///   bundles, certificates).
///
/// Invariants: translation finishes, gives the same diagnostics twice, and every diagnostic
/// names an object of the snapshot and says something.
pub fn annotations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        match (line.strip_prefix([' ', '\t']), entries.last_mut()) {
            (Some(more), Some((_, value))) => {
                value.push('\n');
                value.push_str(more);
            }
            _ => {
                let (key, value) = line.split_once(':').unwrap_or((line, ""));
                entries.push((key.trim().to_string(), value.trim_start().to_string()));
            }
        }
    }

    let mut annotations = BTreeMap::new();
    let mut config = BTreeMap::new();
    let mut secret = BTreeMap::new();
    let mut host = "fuzz.example".to_string();
    let mut paths = vec![path("/", "Prefix")];
    let mut tls = Vec::new();
    for (key, value) in entries {
        if let Some(key) = key.strip_prefix("@cm.") {
            config.insert(key.to_string(), value);
        } else if let Some(key) = key.strip_prefix("@secret.") {
            secret.insert(key.to_string(), ByteString(value.into_bytes()));
        } else if key == "@path" {
            paths.push(path(&value, "ImplementationSpecific"));
        } else if key == "@host" {
            host = value;
        } else if key == "@tls" {
            tls.push(value);
        } else if key.contains('/') {
            annotations.insert(key, value);
        } else if !key.is_empty() {
            annotations.insert(format!("nginx.ingress.kubernetes.io/{key}"), value);
        }
    }

    let meta = |name: &str| ObjectMeta {
        namespace: Some(NS.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    let ingress = Ingress {
        metadata: ObjectMeta { annotations: Some(annotations), ..meta("web") },
        spec: Some(IngressSpec {
            tls: (!tls.is_empty()).then(|| {
                tls.into_iter()
                    .map(|secret| IngressTLS {
                        hosts: Some(vec![host.clone()]),
                        secret_name: Some(secret),
                    })
                    .collect()
            }),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    };
    let service = Service {
        metadata: meta("web"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut slice_meta = meta("web-1");
    slice_meta.labels =
        Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), "web".to_string())]));
    let slice = EndpointSlice {
        metadata: slice_meta,
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPort::default()
        }]),
    };
    let config_map =
        ConfigMap { metadata: meta("sluice-config"), data: Some(config), ..ConfigMap::default() };
    let secret = Secret { metadata: meta("secret"), data: Some(secret), ..Secret::default() };
    let snapshot = Snapshot {
        ingresses: vec![Arc::new(ingress)].into(),
        services: vec![Arc::new(LeanService::from(service))].into(),
        endpoint_slices: vec![Arc::new(LeanSlice::from(slice))].into(),
        secrets: vec![Arc::new(secret)].into(),
        config_maps: vec![Arc::new(config_map)].into(),
        ..Snapshot::default()
    };
    let settings = Settings {
        watch_ingress_without_class: true,
        configmap: Some(NamespacedName::new(NS, "sluice-config")),
        ..Settings::default()
    };

    let table = crate::translate(&snapshot, &settings);
    let again = crate::translate(&snapshot, &settings);
    assert_eq!(table.diagnostics[..], again.diagnostics[..], "translation is not deterministic");
    let known = [
        ObjectRef::new(Kind::Ingress, NS, "web"),
        ObjectRef::new(Kind::Service, NS, "web"),
        ObjectRef::new(Kind::EndpointSlice, NS, "web-1"),
        ObjectRef::new(Kind::Secret, NS, "secret"),
        ObjectRef::new(Kind::ConfigMap, NS, "sluice-config"),
    ];
    for d in table.diagnostics.iter() {
        assert!(known.contains(&d.object), "a diagnostic about {}: {d:?}", d.object);
        assert!(!d.message.trim().is_empty(), "{d:?}");
    }
}

fn path(path: &str, kind: &str) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(path.into()),
        path_type: kind.into(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: "web".into(),
                port: Some(ServiceBackendPort { number: Some(80), name: None }),
            }),
            resource: None,
        },
    }
}
