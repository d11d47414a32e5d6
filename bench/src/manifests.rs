//! A [`Snapshot`] as a directory of Kubernetes manifests, for `sluice serve --manifests` and
//! `sluice check`.
//!
//! Layout (every file is JSON, one `List` of objects, one object per line):
//!
//! ```text
//! DIR/ingressclasses.json          the IngressClass(es): cluster-scoped
//! DIR/ns-0/ingresses.json          the Ingresses of namespace ns-0
//! DIR/ns-0/services.json           its Services
//! DIR/ns-0/endpointslices.json     its EndpointSlices
//! DIR/ns-0/secrets.json ...        Secrets and ConfigMaps, when the snapshot has any
//! DIR/ns-1/...
//! ```
//!
//! One file per namespace and kind keeps the file count low (301 files for 10,000 Ingresses)
//! while a change stays local: the manifests source reads every file on each rescan to see
//! what changed, but parses only the files that did, so a change of one object costs one
//! reparse of its namespace's file of that kind (100 Ingresses, or 200 EndpointSlices, at the
//! `LARGE` scale), not of the whole cluster. One file per object would make every rescan read
//! 80,000 files; one file for everything would make every change reparse everything.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::{LeanService, LeanSlice, SERVICE_NAME_LABEL, Snapshot};

/// What [`write`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Files written.
    pub files: usize,
    /// Objects written, over all files.
    pub objects: usize,
    /// Bytes written, over all files.
    pub bytes: u64,
}

/// Writes `snapshot` under `dir` in the layout above. `dir` is created if missing; it must not
/// hold manifests already (stale files would define objects twice).
pub fn write(snapshot: &Snapshot, dir: &Path) -> io::Result<Written> {
    fs::create_dir_all(dir)?;
    if let Some(existing) = first_manifest(dir)? {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already holds manifests ({}): use an empty directory",
                dir.display(),
                existing.display()
            ),
        ));
    }
    // file name -> serialized objects, one JSON line each; BTreeMap: a stable file order.
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut add = |path: PathBuf, line: serde_json::Result<String>| -> io::Result<()> {
        files.entry(path).or_default().push(line.map_err(io::Error::other)?);
        Ok(())
    };
    for class in &snapshot.ingress_classes {
        add(PathBuf::from("ingressclasses.json"), serde_json::to_string(&**class))?;
    }
    for o in &snapshot.ingresses {
        add(namespaced(&**o, "ingresses.json"), serde_json::to_string(&**o))?;
    }
    for o in &snapshot.services {
        add(Path::new(&o.namespace).join("services.json"), serde_json::to_string(&service(o)))?;
    }
    for o in &snapshot.endpoint_slices {
        let file = Path::new(&o.namespace).join("endpointslices.json");
        add(file, serde_json::to_string(&endpoint_slice(o)))?;
    }
    for o in &snapshot.secrets {
        add(namespaced(&**o, "secrets.json"), serde_json::to_string(&**o))?;
    }
    for o in &snapshot.config_maps {
        add(namespaced(&**o, "configmaps.json"), serde_json::to_string(&**o))?;
    }
    let mut written = Written::default();
    for (name, objects) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let text = list(objects);
        fs::write(&path, &text)?;
        written.files += 1;
        written.objects += objects.len();
        written.bytes += text.len() as u64;
    }
    Ok(written)
}

/// A `v1` `List` of the given serialized objects, one per line.
pub fn list(objects: &[String]) -> String {
    let mut out = String::from("{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n");
    for (i, o) in objects.iter().enumerate() {
        out.push_str(o);
        out.push_str(if i + 1 < objects.len() { ",\n" } else { "\n" });
    }
    out.push_str("]}\n");
    out
}

/// Writes `content` to `path` atomically: to a hidden temporary file next to it (the manifests
/// source skips hidden files), flushed, then renamed over `path`. A watcher never sees a half
/// written file.
pub fn replace(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, path)
}

fn namespaced<T: Metadata<Ty = ObjectMeta>>(object: &T, file: &str) -> PathBuf {
    let ns = object.metadata().namespace.as_deref().unwrap_or("default");
    Path::new(ns).join(file)
}

/// The Service a [`LeanService`] was read from (as far as routing can tell), to write it
/// back as a manifest: each port forwards to the same port number on the pods.
pub fn service(lean: &LeanService) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(lean.namespace.clone()),
            name: Some(lean.name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: lean.service_type.clone(),
            ports: Some(
                lean.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The EndpointSlice a [`LeanSlice`] was read from (as far as routing can tell: the fields it
/// keeps), to write it back as a manifest.
pub fn endpoint_slice(lean: &LeanSlice) -> EndpointSlice {
    let labels = lean.service.clone().map(|s| BTreeMap::from([(SERVICE_NAME_LABEL.into(), s)]));
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(lean.namespace.clone()),
            name: Some(lean.name.clone()),
            labels,
            ..ObjectMeta::default()
        },
        address_type: lean.address_type.clone(),
        endpoints: lean
            .endpoints
            .iter()
            .map(|e| Endpoint {
                addresses: e.addresses.clone(),
                conditions: Some(EndpointConditions { ready: e.ready, ..Default::default() }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(
            lean.ports
                .iter()
                .map(|p| EndpointPort {
                    name: p.name.clone(),
                    port: p.port,
                    protocol: Some("TCP".into()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

/// The first file under `dir` (recursively) that the manifests source would read.
fn first_manifest(dir: &Path) -> io::Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = first_manifest(&path)? {
                return Ok(Some(found));
            }
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml"))
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scale, generate};

    #[test]
    fn writes_one_file_per_namespace_and_kind_that_reads_back() {
        let tmp =
            std::env::temp_dir().join(format!("sluice-bench-manifests-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let snapshot = generate(Scale::SMALL);
        let written = write(&snapshot, &tmp).unwrap();
        // 1 class file; 100 namespaces x (ingresses, services, endpoint slices).
        assert_eq!(written.files, 1 + 3 * 100);
        assert_eq!(written.objects, snapshot.len());
        let text = fs::read_to_string(tmp.join("ns-7/ingresses.json")).unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(list["items"][0]["kind"], "Ingress");
        assert_eq!(list["items"][0]["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(list["items"][0]["metadata"]["name"], "ing-7");
        // What the manifests source reads back translates as cleanly as the snapshot.
        let mut dir = sluice_manifests::ManifestDir::new(&tmp);
        dir.rescan().unwrap();
        assert!(dir.errors().is_empty(), "{:?}", dir.errors());
        let (read, duplicates) = dir.snapshot();
        assert!(duplicates.is_empty());
        assert_eq!(read.len(), snapshot.len());
        let slices = |s: &Snapshot| {
            let mut v: Vec<_> = s.endpoint_slices.iter().map(|e| (**e).clone()).collect();
            v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            v
        };
        assert_eq!(slices(&read), slices(&snapshot), "EndpointSlices read back as they were");
        let table = sluice_translate::translate(&read, &crate::settings());
        assert!(table.diagnostics.is_empty(), "{:?}", &table.diagnostics[..1]);
        assert_eq!(table.host_index.counts().0, 100);
        // A second write into the same directory is refused.
        assert!(write(&snapshot, &tmp).is_err());
        fs::remove_dir_all(&tmp).unwrap();
    }
}
