//! One watched kind's objects, kept as snapshots take them.
//!
//! kube-rs's reflector store hands out every object again on each read: at 50,000 objects that
//! is 50,000 reference counts touched per configuration change, and as many released when
//! the snapshot is dropped, all cache misses. This store keeps its objects in buckets (by
//! namespace, then by a hash of the name) and each bucket's snapshot [`Chunk`] until the bucket
//! changes: a snapshot after one EndpointSlice changed rebuilds one bucket's chunk and shares
//! every other with the previous snapshot, which translation then skips unread. It also keeps
//! objects converted ([`LeanSlice`](sluice_model::LeanSlice), slimmed metadata), so the full
//! k8s-openapi objects are never held.
//!
//! Relists keep the reflector's guarantee: objects listed again go to a new set of buckets
//! that replaces the old whole when the list is complete, so a snapshot is never half empty.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use kube::Resource;
use kube::runtime::watcher::Event;
use sluice_model::{Chunk, Named};
use tokio::sync::watch;

/// Buckets per namespace: a namespace of 20,000 objects changes 1,250 at a time; a small one
/// has a few buckets, most of them empty (and skipped).
const BUCKETS_PER_NAMESPACE: u64 = 16;

/// The objects of one kind, shared between the task that watches and the snapshots.
#[derive(Clone)]
pub(crate) struct Store<T> {
    state: Arc<Mutex<State<T>>>,
    ready: watch::Receiver<bool>,
}

/// The watching side: applies the watcher's events.
pub(crate) struct Writer<T> {
    state: Arc<Mutex<State<T>>>,
    ready: watch::Sender<bool>,
}

struct State<T> {
    buckets: Buckets<T>,
    /// A (re)list in progress: what it listed so far.
    listing: Option<Buckets<T>>,
}

/// (namespace, bucket number) -> bucket, in a stable order: snapshots list chunks in the same
/// order every time, which lets translation compare them pairwise.
type Buckets<T> = BTreeMap<(String, u64), Bucket<T>>;

struct Bucket<T> {
    objects: BTreeMap<String, Arc<T>>,
    /// The objects as a chunk, made on the first snapshot after a change.
    chunk: Option<Chunk<T>>,
}

impl<T> Default for Bucket<T> {
    fn default() -> Self {
        Self { objects: BTreeMap::new(), chunk: None }
    }
}

/// A new, empty store (not ready until its first list is complete) and its writer.
pub(crate) fn store<T>() -> (Store<T>, Writer<T>) {
    let state = Arc::new(Mutex::new(State { buckets: BTreeMap::new(), listing: None }));
    let (tx, rx) = watch::channel(false);
    (Store { state: state.clone(), ready: rx }, Writer { state, ready: tx })
}

fn key(namespace: &str, name: &str) -> (String, u64) {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    (namespace.to_string(), h.finish() % BUCKETS_PER_NAMESPACE)
}

fn insert<T: Named>(buckets: &mut Buckets<T>, object: T) {
    let bucket = buckets.entry(key(object.namespace(), object.name())).or_default();
    bucket.chunk = None;
    bucket.objects.insert(object.name().to_string(), Arc::new(object));
}

fn remove<T>(buckets: &mut Buckets<T>, namespace: &str, name: &str) {
    let key = key(namespace, name);
    if let Some(bucket) = buckets.get_mut(&key)
        && bucket.objects.remove(name).is_some()
    {
        bucket.chunk = None;
        if bucket.objects.is_empty() {
            buckets.remove(&key);
        }
    }
}

impl<T: Named> Writer<T> {
    /// Applies one watcher event, with objects converted by `convert` as the store keeps them.
    pub(crate) fn apply<K: Resource>(&self, event: Event<K>, convert: impl Fn(K) -> T) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(object) => insert(&mut state.buckets, convert(object)),
            Event::Delete(object) => {
                let meta = object.meta();
                let namespace = meta.namespace.as_deref().unwrap_or_default();
                remove(&mut state.buckets, namespace, meta.name.as_deref().unwrap_or_default());
            }
            Event::Init => state.listing = Some(BTreeMap::new()),
            Event::InitApply(object) => {
                let object = convert(object);
                insert(state.listing.get_or_insert_default(), object);
            }
            Event::InitDone => {
                let listed = state.listing.take().unwrap_or_default();
                state.buckets = listed;
                drop(state);
                self.ready.send_replace(true);
            }
        }
    }
}

impl<T: Named> Store<T> {
    /// Waits until the first list is complete (or the writer is gone).
    pub(crate) async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// How many objects it holds.
    pub(crate) fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.buckets.values().map(|b| b.objects.len()).sum()
    }

    /// Every object of the namespaces `keep` accepts, as chunks: a bucket that did not change
    /// since the last call gives the same chunk again.
    pub(crate) fn chunks(&self, keep: impl Fn(&str) -> bool) -> Vec<Chunk<T>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let buckets = state.buckets.iter_mut().filter(|((ns, _), _)| keep(ns));
        buckets
            .map(|(_, bucket)| {
                let objects = &bucket.objects;
                bucket
                    .chunk
                    .get_or_insert_with(|| Chunk::new(objects.values().cloned().collect()))
                    .clone()
            })
            .collect()
    }

    /// Every object (of every namespace).
    pub(crate) fn objects(&self) -> Vec<Arc<T>> {
        self.chunks(|_| true).iter().flat_map(|c| c.objects().to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn cm(ns: &str, name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    fn value(c: &ConfigMap) -> &str {
        &c.data.as_ref().unwrap()["k"]
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut v: Vec<_> = store
            .objects()
            .iter()
            .map(|c| format!("{}/{}={}", c.namespace(), c.name(), value(c)))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn unchanged_buckets_keep_their_chunks() {
        let (store, writer) = store::<ConfigMap>();
        writer.apply(Event::Init, |c| c);
        for i in 0..64 {
            writer.apply(Event::InitApply(cm("a", &format!("c{i}"), "1")), |c| c);
        }
        writer.apply(Event::InitApply(cm("b", "only", "1")), |c| c);
        assert_eq!(store.len(), 0, "not listed yet: the store is still empty");
        writer.apply(Event::<ConfigMap>::InitDone, |c| c);
        store.wait_until_ready().await;
        assert_eq!(store.len(), 65);
        let first = store.chunks(|_| true);
        assert!(first.len() > 2, "namespace a spreads over several buckets");
        assert!(first.iter().all(|c| c.namespace().is_some()), "each bucket is one namespace");
        assert_eq!(store.chunks(|ns| ns == "b").len(), 1);

        writer.apply(Event::Apply(cm("a", "c7", "2")), |c| c);
        let second = store.chunks(|_| true);
        assert_eq!(second.len(), first.len());
        let changed: Vec<_> =
            first.iter().zip(&second).filter(|(a, b)| !Chunk::ptr_eq(a, b)).collect();
        assert_eq!(changed.len(), 1, "only the bucket of c7 is rebuilt");
        assert!(names(&store).contains(&"a/c7=2".to_string()));

        writer.apply(Event::Delete(cm("b", "only", "1")), |c| c);
        assert_eq!(store.chunks(|ns| ns == "b").len(), 0, "an emptied bucket goes");
        assert_eq!(store.len(), 64);
    }

    #[tokio::test]
    async fn a_relist_replaces_the_store_whole_once_complete() {
        let (store, writer) = store::<ConfigMap>();
        writer.apply(Event::Init, |c| c);
        writer.apply(Event::InitApply(cm("a", "old", "1")), |c| c);
        writer.apply(Event::<ConfigMap>::InitDone, |c| c);
        writer.apply(Event::Init, |c| c);
        writer.apply(Event::InitApply(cm("a", "new", "1")), |c| c);
        assert_eq!(names(&store), ["a/old=1"], "a relist in progress changes nothing");
        writer.apply(Event::<ConfigMap>::InitDone, |c| c);
        assert_eq!(names(&store), ["a/new=1"], "the new list, whole");
    }
}
