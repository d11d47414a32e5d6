use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ByteString, Metadata};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;
use sluice_model::{Kind, LeanService, LeanSlice, Named, ObjectRef, slim_metadata};

/// One object of a kind Sluice reads, shared (snapshots hold the same `Arc`), as snapshots
/// keep it: EndpointSlices and Services as [`LeanSlice`]s and [`LeanService`]s, the other kinds
/// without what nothing reads ([`sluice_model::slim_metadata`]).
#[derive(Clone, Debug)]
pub enum Object {
    /// An Ingress.
    Ingress(Arc<Ingress>),
    /// An IngressClass.
    IngressClass(Arc<IngressClass>),
    /// A Service.
    Service(Arc<LeanService>),
    /// An EndpointSlice.
    EndpointSlice(Arc<LeanSlice>),
    /// A Secret (`stringData` already folded into `data`, as the API server does).
    Secret(Arc<Secret>),
    /// A ConfigMap.
    ConfigMap(Arc<ConfigMap>),
}

impl Object {
    /// The object's kind, namespace and name.
    pub fn object_ref(&self) -> ObjectRef {
        let (kind, object) = self.kind_and_name();
        ObjectRef::new(kind, object.namespace(), object.name())
    }

    /// A hash of [`object_ref`](Self::object_ref), without building it: equal for equal
    /// references (so distinct hashes mean distinct objects), and stable across calls.
    pub(crate) fn ref_hash(&self) -> u64 {
        let (kind, object) = self.kind_and_name();
        let mut h = DefaultHasher::new();
        (kind, object.namespace(), object.name()).hash(&mut h);
        h.finish()
    }

    fn kind_and_name(&self) -> (Kind, &dyn Named) {
        match self {
            Object::Ingress(o) => (Kind::Ingress, &**o),
            Object::IngressClass(o) => (Kind::IngressClass, &**o),
            Object::Service(o) => (Kind::Service, &**o),
            Object::EndpointSlice(o) => (Kind::EndpointSlice, &**o),
            Object::Secret(o) => (Kind::Secret, &**o),
            Object::ConfigMap(o) => (Kind::ConfigMap, &**o),
        }
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
    let docs = match json_document(text) {
        Some(doc) => vec![doc],
        None => yaml_documents(text)?,
    };
    let mut out = Vec::new();
    for (line, value) in docs {
        if value.is_null() {
            continue; // an empty document (`---` twice)
        }
        // Objects of one document share its line; list items have no finer location.
        let mut objects = Vec::new();
        collect(value, &mut objects).map_err(|message| DocError { line: Some(line), message })?;
        out.extend(objects.into_iter().map(|o| (line, o)));
    }
    Ok(out)
}

/// The most YAML documents one file may hold. The YAML reader's default (1,024) refuses a
/// generated or exported manifest of a few hundred applications; the count grows with the
/// file's size, which stays the real bound, so it is raised to what real files hold.
pub const MAX_DOCUMENTS: usize = 100_000;
/// The most YAML nodes (mappings, sequences, scalars) one file may hold: about 25 per
/// Ingress or Service, so room for 100,000 objects.
pub const MAX_NODES: usize = 2_500_000;
/// The most parser events one file may produce (about twice the nodes).
pub const MAX_EVENTS: usize = 10_000_000;

/// Every document of `text`, read as YAML, with the line it starts on. The reader's other
/// limits (nesting depth, aliases, anchors: what hostile input uses) stay at its defaults.
fn yaml_documents(text: &str) -> Result<Vec<(usize, Value)>, DocError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
        },
    };
    let docs: Vec<Spanned<Value>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| {
            let line = e.location().map(|l| l.line() as usize);
            // The error's first line carries the message; the rest is a source snippet.
            let mut message = e.to_string().lines().next().unwrap_or_default().to_string();
            if message.contains("budget breached") {
                message = format!(
                    "{message}: the file is larger than one manifests file may be (at most \
                     {MAX_DOCUMENTS} documents, {MAX_NODES} YAML nodes, {MAX_EVENTS} parser \
                     events, nesting depth 64); split it into several files"
                );
            }
            DocError { line, message }
        })?;
    Ok(docs.into_iter().map(|doc| ((doc.referenced.line() as usize).max(1), doc.value)).collect())
}

/// `text` as one JSON object, with the line it starts on, when it is exactly that; `None`
/// leaves it to the YAML reader (JSON is YAML), which also words every error. serde_json reads
/// JSON about ten times faster than the YAML reader, and generated or `kubectl get -o json`
/// manifests are JSON; like the YAML reader, it refuses duplicate keys, so both read the
/// same text to the same value.
fn json_document(text: &str) -> Option<(usize, Value)> {
    let body = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !body.starts_with('{') {
        return None;
    }
    let StrictJson(value) = serde_json::from_str(body).ok()?;
    // YAML counts `\r\n`, `\r` and `\n` each as one line break.
    let leading = &text[..text.len() - body.len()];
    let line = 1 + leading.replace("\r\n", "\n").matches(['\n', '\r']).count();
    Some((line, value))
}

/// A JSON value that refuses duplicate keys in objects (serde_json's own `Value` keeps the
/// last), as the YAML reader does.
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(value) = map.next_value()?;
            if out.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(out))
    }
}

fn collect(mut value: Value, out: &mut Vec<Object>) -> Result<(), String> {
    let Value::Object(map) = &mut value else {
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
        // Taken, not cloned: the list is dropped right after.
        let Some(Value::Array(items)) = map.remove("items") else {
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
            Object::Ingress(Arc::new(namespaced(typed(value, &kind, &name)?)))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let mut class: IngressClass = typed(value, &kind, &name)?;
            class.metadata.namespace = None;
            slim_metadata(&mut class.metadata);
            Object::IngressClass(Arc::new(class))
        }
        ("v1", "Service") => {
            let service: Service = typed(value, &kind, &name)?;
            Object::Service(Arc::new(LeanService::from(namespaced(service))))
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let slice: EndpointSlice = typed(value, &kind, &name)?;
            Object::EndpointSlice(Arc::new(LeanSlice::from(namespaced(slice))))
        }
        ("v1", "Secret") => {
            Object::Secret(Arc::new(namespaced(fold_string_data(typed(value, &kind, &name)?))))
        }
        ("v1", "ConfigMap") => Object::ConfigMap(Arc::new(namespaced(typed(value, &kind, &name)?))),
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

/// A namespaced object, in `default` when it names no namespace (as `kubectl apply`), and
/// slimmed.
fn namespaced<T: Metadata<Ty = ObjectMeta>>(mut object: T) -> T {
    let meta = object.metadata_mut();
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
    slim_metadata(meta);
    object
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
    fn objects_are_kept_as_snapshots_keep_them() {
        let text = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{\"kind\": \"Service\"}'
    nginx.ingress.kubernetes.io/x: 'y'
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web, app: web}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true, serving: true}
  nodeName: node-1
ports: [{name: http, port: 8080, protocol: TCP}]
";
        let objs = parse_str(text).unwrap();
        let Object::Service(service) = &objs[0].1 else { panic!("{objs:?}") };
        assert_eq!((service.namespace(), service.name()), ("default", "web"));
        assert_eq!((service.ports[0].name.as_deref(), service.ports[0].port), (Some("http"), 80));
        let Object::EndpointSlice(slice) = &objs[1].1 else { panic!("{objs:?}") };
        assert_eq!((slice.namespace(), slice.name()), ("default", "web-1"));
        assert_eq!(slice.service.as_deref(), Some("web"));
        assert_eq!(slice.endpoints[0].addresses, ["10.0.0.1"]);
        assert_eq!(slice.endpoints[0].ready, Some(true));
        assert_eq!(slice.ports[0].port, Some(8080));
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

    /// Both readers, for texts that must read the same either way.
    fn read_both(text: &str) -> (usize, Value) {
        let json = json_document(text).unwrap_or_else(|| panic!("not read as JSON: {text:?}"));
        let yaml = yaml_documents(text).unwrap();
        assert_eq!(vec![json.clone()], yaml, "{text:?}");
        json
    }

    #[test]
    fn json_reads_as_the_yaml_reader_reads_it() {
        let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"ing-7","namespace":"ns-7","annotations":{"a/b":"x"}},"spec":{"ingressClassName":"sluice","rules":[{"host":"app-7.example.com","http":{"paths":[{"backend":{"service":{"name":"svc-14","port":{"number":80}}},"path":"/","pathType":"Prefix"}]}}]}},
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"e","namespace":"ns-7","labels":{"kubernetes.io/service-name":"svc-14"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":false}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}
]}
"#;
        assert_eq!(read_both(list).0, 1);
        for (text, line) in [
            ("\n\n  {\"a\": 1}", 3),
            ("\r\n\r\n{\"a\": 1}\r\n", 3),
            ("\t{\"a\": -1, \"b\": 1.5, \"c\": 12345678901234, \"d\": 0}", 1),
            (
                r#"{"s": "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \t", "e": {}, "l": [], "n": null, "t": true, "f": false}"#,
                1,
            ),
            (r#"{"nested": [[1, [2, {"x": [3]}]], {"y": {"z": "w"}}]}"#, 1),
        ] {
            assert_eq!(read_both(text).0, line, "{text:?}");
        }
        let objs = parse_str(list).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].1.object_ref().to_string(), "EndpointSlice ns-7/e");
    }

    #[test]
    fn what_is_not_one_json_object_is_left_to_the_yaml_reader() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1, "b": 1}}"#,
            "{\"a\": 1}\n---\n{\"b\": 2}\n",
            "{\"a\": 1} # a comment\n",
            "{a: 1}",
            "[{\"a\": 1}]",
            "apiVersion: v1\nkind: Service\n",
        ] {
            assert!(json_document(text).is_none(), "{text:?}");
        }
        // Hence the same errors as before, from the YAML reader.
        let err = parse_str(r#"{"apiVersion": "v1", "apiVersion": "v1", "kind": "Service"}"#)
            .unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("duplicate"), "{}", err.message);
        // And YAML's extras still read.
        let two = "{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"a\"}}\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"b\"}}\n";
        let objs = parse_str(two).unwrap();
        assert_eq!(objs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn json_files_parse_too() {
        let text = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j", "namespace": "n"}}"#;
        let objs = parse_str(text).unwrap();
        assert_eq!(objs[0].1.object_ref().to_string(), "Service n/j");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An Ingress and its Service, as a generated manifest holds one application.
    fn app(i: usize) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: ns\nspec:\n  ports:\n  - name: http\n    port: 80\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app-{i}\n  namespace: ns\nspec:\n  rules:\n  - host: app-{i}.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: app-{i}\n            port:\n              number: 80\n"
        )
    }

    // A file of 2,000 applications (4,000 documents) reads whole: the YAML reader's default
    // stopped at 1,024 documents.
    #[test]
    fn a_generated_file_of_thousands_of_documents_reads() {
        let text: String = (0..2_000).map(app).collect();
        let objects = parse_str(&text).expect("a large generated manifest");
        assert_eq!(objects.len(), 4_000);
    }

    // Past the bound, the error says which limits hold and what to do.
    #[test]
    fn too_many_documents_say_to_split_the_file() {
        let text = "---\n{}\n".repeat(MAX_DOCUMENTS + 1);
        let error = parse_str(&text).expect_err("over the document limit");
        assert!(error.message.contains("split it into several files"), "{}", error.message);
        assert!(error.message.contains(&MAX_DOCUMENTS.to_string()), "{}", error.message);
    }
}
