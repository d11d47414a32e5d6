//! Events on Ingresses, as ingress-nginx emits them: `Normal Sync` ("Scheduled for sync") when
//! an Ingress is applied, and a `Warning` for each diagnostic (its reason is the Event's: an
//! invalid annotation, a missing Service or Secret, a refused snippet, a lost path collision).
//! Only the leader publishes; a new leader repeats current warnings but not past syncs.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use sluice_model::{Diagnostic, Kind, NamespacedName, Objects, Severity};

/// Publishes Events for what changed since the last call.
pub struct Events {
    recorder: Recorder,
    /// Per owned Ingress, the hash of what routing reads (generation, annotations, labels).
    synced: HashMap<NamespacedName, u64>,
    /// Whether this leader term has published once (the first call records, without `Sync`).
    started: bool,
    warned: HashSet<Diagnostic>,
}

impl Events {
    /// A publisher reporting as `sluice`, instance `pod` (the pod's name).
    pub fn new(client: Client, pod: Option<String>) -> Self {
        let reporter = Reporter { controller: crate::FIELD_MANAGER.into(), instance: pod };
        Self {
            recorder: Recorder::new(client, reporter),
            synced: HashMap::new(),
            started: false,
            warned: HashSet::new(),
        }
    }

    /// Forgets what was published (leadership lost): the next leader term starts afresh.
    pub fn reset(&mut self) {
        self.synced.clear();
        self.warned.clear();
        self.started = false;
    }

    /// Publishes `Sync` for owned Ingresses that changed and a Warning for each new diagnostic.
    /// On the first call of a leader term, current Ingresses are recorded without a `Sync`
    /// each.
    pub async fn publish(
        &mut self,
        ingresses: &Objects<Ingress>,
        owned: &HashSet<NamespacedName>,
        diagnostics: &[Diagnostic],
    ) {
        let first = !std::mem::replace(&mut self.started, true);
        let mut next = HashMap::with_capacity(owned.len());
        for ing in ingresses {
            let key = NamespacedName::new(ing.namespace().unwrap_or_default(), ing.name_any());
            if !owned.contains(&key) {
                continue;
            }
            let mut h = DefaultHasher::new();
            ing.metadata.generation.hash(&mut h);
            ing.metadata.annotations.hash(&mut h);
            ing.metadata.labels.hash(&mut h);
            let hash = h.finish();
            if !first && self.synced.get(&key) != Some(&hash) {
                let ev = Event {
                    type_: EventType::Normal,
                    reason: "Sync".into(),
                    note: Some("Scheduled for sync".into()),
                    action: "Sync".into(),
                    secondary: None,
                };
                self.send(&ev, &ing.object_ref(&())).await;
            }
            next.insert(key, hash);
        }
        self.synced = next;

        let uids: HashMap<NamespacedName, &Ingress> = ingresses
            .iter()
            .map(|i| (NamespacedName::new(i.namespace().unwrap_or_default(), i.name_any()), &**i))
            .collect();
        let now: HashSet<Diagnostic> = diagnostics.iter().cloned().collect();
        for d in diagnostics.iter().filter(|d| !self.warned.contains(*d)) {
            let name = NamespacedName::new(&d.object.namespace, &d.object.name);
            let reference = match (d.object.kind, uids.get(&name)) {
                (Kind::Ingress, Some(ing)) => ing.object_ref(&()),
                (kind, _) => reference(kind, &d.object.namespace, &d.object.name),
            };
            let ev = Event {
                type_: EventType::Warning,
                reason: d.reason.as_str().into(),
                note: Some(truncate(&d.message)),
                action: if d.severity == Severity::Error { "Reject".into() } else { "Sync".into() },
                secondary: None,
            };
            self.send(&ev, &reference).await;
        }
        self.warned = now;
    }

    async fn send(&self, ev: &Event, reference: &ObjectReference) {
        if let Err(e) = self.recorder.publish(ev, reference).await {
            tracing::warn!(object = ?reference.name, reason = %ev.reason, error = %e, "cannot publish Event");
        }
    }
}

/// An Event's note is limited to 1 kB.
fn truncate(s: &str) -> String {
    if s.len() <= 1000 {
        return s.to_string();
    }
    let mut end = 1000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn reference(kind: Kind, namespace: &str, name: &str) -> ObjectReference {
    let api_version = match kind {
        Kind::Ingress | Kind::IngressClass => "networking.k8s.io/v1",
        Kind::EndpointSlice => "discovery.k8s.io/v1",
        Kind::Service | Kind::Secret | Kind::ConfigMap => "v1",
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.as_str().into()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}
