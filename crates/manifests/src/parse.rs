use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ByteString, Metadata};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::Spanned;
use sluice_model::{Kind, ObjectRef};

/// One object of a kind Sluice reads, shared (snapshots hold the same `Arc`).
#[derive(Clone, Debug)]
pub enum Object {
    /// An Ingress.
    Ingress(Arc<Ingress>),
    /// An IngressClass.
    IngressClass(Arc<IngressClass>),
    /// A Service.
    Service(Arc<Service>),
    /// An EndpointSlice.
    EndpointSlice(Arc<EndpointSlice>),
    /// A Secret (`stringData` already folded into `data`, as the API server does).
    Secret(Arc<Secret>),
    /// A ConfigMap.
    ConfigMap(Arc<ConfigMap>),
}

impl Object {
    /// The object's kind, namespace and name.
    pub fn object_ref(&self) -> ObjectRef {
        let (kind, meta) = match self {
            Object::Ingress(o) => (Kind::Ingress, &o.metadata),
            Object::IngressClass(o) => (Kind::IngressClass, &o.metadata),
            Object::Service(o) => (Kind::Service, &o.metadata),
            Object::EndpointSlice(o) => (Kind::EndpointSlice, &o.metadata),
            Object::Secret(o) => (Kind::Secret, &o.metadata),
            Object::ConfigMap(o) => (Kind::ConfigMap, &o.metadata),
        };
        ObjectRef::new(
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// A file that could not be read as Kubernetes manifests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocError {
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Parses the text of one file: one or more YAML (or JSON) documents, each an object or a
/// `List` of objects. Returns each object with the line its document starts on. Kinds Sluice
/// does not read are skipped; an error in any document fails the whole file, so that a file
/// is always applied whole or not at all.
pub fn parse_str(text: &str) -> Result<Vec<(usize, Object)>, DocError> {
    let docs: Vec<Spanned<Value>> = serde_saphyr::from_multiple(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize);
        // The error's first line carries the message; the rest is a source snippet.
        let message = e.to_string().lines().next().unwrap_or_default().to_string();
        DocError { line, message }
    })?;
    let mut out = Vec::new();
    for doc in docs {
        let line = (doc.referenced.line() as usize).max(1);
        if doc.value.is_null() {
            continue; // an empty document (`---` twice)
        }
        // Objects of one document share its line; list items have no finer location.
        let mut objects = Vec::new();
        collect(doc.value, &mut objects)
            .map_err(|message| DocError { line: Some(line), message })?;
        out.extend(objects.into_iter().map(|o| (line, o)));
    }
    Ok(out)
}

fn collect(value: Value, out: &mut Vec<Object>) -> Result<(), String> {
    let Value::Object(map) = &value else {
        return Err(
            "a document must be a Kubernetes object (a mapping with apiVersion and kind)".into()
        );
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind.is_empty() || api_version.is_empty() {
        return Err("object has no apiVersion or kind".into());
    }
    if kind.ends_with("List") && map.contains_key("items") {
        let Some(Value::Array(items)) = map.get("items").cloned() else {
            return Err(format!("{kind}: items must be a list"));
        };
        for (i, item) in items.into_iter().enumerate() {
            collect(item, out).map_err(|e| format!("{kind} item {i}: {e}"))?;
        }
        return Ok(());
    }
    let name =
        value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let object = match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => {
            Object::Ingress(namespaced(typed(value, &kind, &name)?))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let mut class: IngressClass = typed(value, &kind, &name)?;
            class.metadata.namespace = None;
            Object::IngressClass(Arc::new(class))
        }
        ("v1", "Service") => Object::Service(namespaced(typed(value, &kind, &name)?)),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            Object::EndpointSlice(namespaced(typed(value, &kind, &name)?))
        }
        ("v1", "Secret") => {
            Object::Secret(namespaced(fold_string_data(typed(value, &kind, &name)?)))
        }
        ("v1", "ConfigMap") => Object::ConfigMap(namespaced(typed(value, &kind, &name)?)),
        (v, "Ingress" | "IngressClass")
            if v.starts_with("networking.k8s.io/") || v.starts_with("extensions/") =>
        {
            return Err(format!(
                "{kind} {name:?}: {v} was removed in Kubernetes 1.22; use networking.k8s.io/v1"
            ));
        }
        (v, "EndpointSlice") => {
            return Err(format!(
                "EndpointSlice {name:?}: {v} is not served; use discovery.k8s.io/v1"
            ));
        }
        _ => {
            tracing::debug!(%api_version, %kind, %name, "ignoring a kind Sluice does not read");
            return Ok(());
        }
    };
    if name.is_empty() {
        return Err(format!("{kind} has no metadata.name"));
    }
    out.push(object);
    Ok(())
}

/// Deserialises into a typed object, naming the field at fault on error.
fn typed<T: DeserializeOwned>(value: Value, kind: &str, name: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{kind} {name:?}: field {}: {}", e.path(), e.inner()))
}

/// Shares a namespaced object, in `default` when it names no namespace (as `kubectl apply`).
fn namespaced<T: Metadata<Ty = ObjectMeta>>(mut object: T) -> Arc<T> {
    let meta = object.metadata_mut();
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
    Arc::new(object)
}

/// The API server merges `stringData` into `data` on write; manifests read from disk get the
/// same treatment so that every source hands translation the same shape.
fn fold_string_data(mut secret: Secret) -> Secret {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_lists_and_ignored_kinds() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c, namespace: other}
";
        let objs = parse_str(text).unwrap();
        let refs: Vec<_> = objs.iter().map(|(l, o)| (*l, o.object_ref().to_string())).collect();
        assert_eq!(
            refs,
            vec![(1, "Service default/a".to_string()), (9, "ConfigMap other/c".to_string())]
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse_str("apiVersion: v1\nkind: Service\nmetadata:\n  name: [a\n").unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("bracket"), "{}", err.message);
    }

    #[test]
    fn type_error_names_the_object_and_field() {
        let text = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: eighty}}}
";
        let err = parse_str(text).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("Ingress \"web\""), "{}", err.message);
        assert!(
            err.message.contains("spec.rules[0].http.paths[0].backend.service.port.number"),
            "{}",
            err.message
        );
    }

    #[test]
    fn removed_api_versions_say_what_to_use() {
        let err =
            parse_str("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old}\n")
                .unwrap_err();
        assert!(err.message.contains("use networking.k8s.io/v1"), "{}", err.message);
    }

    #[test]
    fn string_data_is_folded_into_data() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {auth: 'x:y'}\n";
        let objs = parse_str(text).unwrap();
        let Object::Secret(s) = &objs[0].1 else { panic!() };
        assert_eq!(s.data.as_ref().unwrap()["auth"].0, b"x:y");
        assert!(s.string_data.is_none());
    }

    #[test]
    fn json_files_parse_too() {
        let text = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j", "namespace": "n"}}"#;
        let objs = parse_str(text).unwrap();
        assert_eq!(objs[0].1.object_ref().to_string(), "Service n/j");
    }
}
