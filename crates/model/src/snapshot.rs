use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{LeanService, LeanSlice};

/// Every object of the kinds Sluice reads, as one consistent set.
///
/// Objects are behind `Arc` so that a source can hand over what it already holds without
/// copying, and each kind's list is made of shared chunks ([`Objects`]), so that taking a new
/// snapshot after a change, comparing it with the previous one and dropping the previous one
/// cost what changed, not what the cluster holds: a source keeps a chunk per file or per
/// bucket of its store and rebuilds only the chunks that changed. Order carries no meaning:
/// translation sorts what it needs.
///
/// Every kind is kept as its k8s-openapi type, except EndpointSlices and Services, which are
/// kept as the fields routing reads ([`LeanSlice`], [`LeanService`]): they are the most
/// numerous objects of a cluster, and the full types take six times the memory.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Ingresses of every class; translation keeps those it owns.
    pub ingresses: Objects<Ingress>,
    /// IngressClasses.
    pub ingress_classes: Objects<IngressClass>,
    /// Services.
    pub services: Objects<LeanService>,
    /// EndpointSlices.
    pub endpoint_slices: Objects<LeanSlice>,
    /// Secrets.
    pub secrets: Objects<Secret>,
    /// ConfigMaps.
    pub config_maps: Objects<ConfigMap>,
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

/// An object of a snapshot, by namespace and name.
pub trait Named {
    /// The namespace; `""` for cluster-scoped kinds.
    fn namespace(&self) -> &str;
    /// The name.
    fn name(&self) -> &str;
}

fn meta_namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn meta_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

macro_rules! named_by_metadata {
    ($($kind:ty),*) => {$(
        impl Named for $kind {
            fn namespace(&self) -> &str {
                meta_namespace(&self.metadata)
            }
            fn name(&self) -> &str {
                meta_name(&self.metadata)
            }
        }
    )*};
}

named_by_metadata!(Ingress, IngressClass, Service, Secret, ConfigMap, Namespace);

/// One kind's objects in a snapshot: a list of shared [`Chunk`]s.
///
/// Cloning copies one pointer per chunk, and two lists that share a chunk are known to agree
/// on its objects without looking at them. Reads go through [`iter`](Self::iter) (or `for o in
/// &list`); [`in_namespaces`](Self::in_namespaces) skips the chunks that hold only other
/// namespaces' objects. [`make_mut`](Self::make_mut) turns the list into one chunk of its own
/// for editing, as tests and builders do.
pub struct Objects<T> {
    chunks: Vec<Chunk<T>>,
}

/// Objects that sources hand over together and that change together: those of one file, or
/// of one bucket of a store. Knows the namespace its objects share, if they do.
pub struct Chunk<T>(Arc<ChunkInner<T>>);

struct ChunkInner<T> {
    /// The namespace every object has, when there is one and the chunk is not empty; `None`
    /// also once the objects were edited in place ([`Objects::make_mut`]).
    namespace: Option<Box<str>>,
    objects: Vec<Arc<T>>,
}

impl<T: Named> Chunk<T> {
    /// A chunk of `objects`.
    pub fn new(objects: Vec<Arc<T>>) -> Self {
        let first = objects.first().map(|o| o.namespace());
        let shared = first.filter(|first| objects.iter().all(|o| o.namespace() == *first));
        let namespace = shared.map(Box::from);
        Self(Arc::new(ChunkInner { namespace, objects }))
    }
}

impl<T> Chunk<T> {
    /// Its objects.
    pub fn objects(&self) -> &[Arc<T>] {
        &self.0.objects
    }

    /// The namespace all its objects are in, if known to be one.
    pub fn namespace(&self) -> Option<&str> {
        self.0.namespace.as_deref()
    }

    /// True when both are the same chunk (so hold the same objects).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The chunk's address, to recognise it in a set.
    pub fn as_ptr(&self) -> *const () {
        Arc::as_ptr(&self.0).cast()
    }
}

impl<T> Clone for Chunk<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for Chunk<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.objects()).finish()
    }
}

impl<T> Objects<T> {
    /// A list made of `chunks` (empty ones are left out).
    pub fn from_chunks(chunks: impl IntoIterator<Item = Chunk<T>>) -> Self {
        Self { chunks: chunks.into_iter().filter(|c| !c.objects().is_empty()).collect() }
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.objects().len()).sum()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(|c| c.objects().is_empty())
    }

    /// Every object, chunk after chunk.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<T>> + Clone {
        self.chunks.iter().flat_map(|c| c.objects().iter())
    }

    /// The chunks.
    pub fn chunks(&self) -> &[Chunk<T>] {
        &self.chunks
    }

    /// Every object that may be in one of `namespaces`: the objects of the chunks whose
    /// namespace is one of them or is not known to be one. Callers still check each object's
    /// namespace; this only skips the chunks known to hold none of theirs.
    pub fn in_namespaces<'a>(&'a self, namespaces: &[&str]) -> impl Iterator<Item = &'a Arc<T>> {
        self.chunks
            .iter()
            .filter(|c| c.namespace().is_none_or(|ns| namespaces.contains(&ns)))
            .flat_map(|c| c.objects().iter())
    }

    /// Where the first object that `which` accepts is: its chunk's index, and its index in
    /// the chunk.
    pub fn position(&self, which: impl Fn(&T) -> bool) -> Option<(usize, usize)> {
        self.chunks
            .iter()
            .enumerate()
            .find_map(|(c, chunk)| chunk.objects().iter().position(|o| which(o)).map(|i| (c, i)))
    }

    /// True when both lists are made of the same chunks.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.chunks.len() == b.chunks.len()
            && a.chunks.iter().zip(&b.chunks).all(|(x, y)| Chunk::ptr_eq(x, y))
    }

    /// Replaces chunk `i` by a new chunk of `objects` (what changed in one file or bucket),
    /// sharing the others.
    pub fn replace_chunk(&mut self, i: usize, objects: Vec<Arc<T>>)
    where
        T: Named,
    {
        self.chunks[i] = Chunk::new(objects);
        if self.chunks[i].objects().is_empty() {
            self.chunks.remove(i);
        }
    }

    /// Applies `f` to a copy of the first object that `which` accepts, in place in its chunk
    /// (the other chunks stay shared, as when a source sees one object change); false when
    /// no object is accepted.
    pub fn edit(&mut self, which: impl Fn(&T) -> bool, f: impl FnOnce(&mut T)) -> bool
    where
        T: Named + Clone,
    {
        let Some((chunk, at)) = self.position(which) else { return false };
        let mut objects = self.chunks[chunk].objects().to_vec();
        let mut object = (*objects[at]).clone();
        f(&mut object);
        objects[at] = Arc::new(object);
        self.replace_chunk(chunk, objects);
        true
    }

    /// Adds `object` at the end (through [`make_mut`](Self::make_mut)).
    pub fn push(&mut self, object: Arc<T>) {
        self.make_mut().push(object);
    }

    /// The objects as one vector, for editing: the list becomes one chunk of its own (copied
    /// if shared), whose namespace is no longer known.
    pub fn make_mut(&mut self) -> &mut Vec<Arc<T>> {
        let alone = self.chunks.len() == 1 && Arc::get_mut(&mut self.chunks[0].0).is_some();
        if !alone {
            let objects: Vec<Arc<T>> = self.iter().cloned().collect();
            self.chunks = vec![Chunk(Arc::new(ChunkInner { namespace: None, objects }))];
        }
        let inner = Arc::get_mut(&mut self.chunks[0].0).expect("a chunk of its own");
        inner.namespace = None;
        &mut inner.objects
    }
}

impl<T> Clone for Objects<T> {
    fn clone(&self) -> Self {
        Self { chunks: self.chunks.clone() }
    }
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Objects<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Named> From<Vec<Arc<T>>> for Objects<T> {
    /// One chunk of `objects`.
    fn from(objects: Vec<Arc<T>>) -> Self {
        Self::from_chunks([Chunk::new(objects)])
    }
}

impl<T: Named> FromIterator<Arc<T>> for Objects<T> {
    fn from_iter<I: IntoIterator<Item = Arc<T>>>(objects: I) -> Self {
        Self::from(objects.into_iter().collect::<Vec<_>>())
    }
}

impl<'a, T> IntoIterator for &'a Objects<T> {
    type Item = &'a Arc<T>;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Chunk<T>>,
        std::slice::Iter<'a, Arc<T>>,
        fn(&'a Chunk<T>) -> std::slice::Iter<'a, Arc<T>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flat_map(|c| c.objects().iter())
    }
}

impl<T> std::ops::Index<usize> for Objects<T> {
    type Output = Arc<T>;

    /// The `i`th object, chunk after chunk (finding its chunk costs a step per chunk).
    fn index(&self, mut i: usize) -> &Arc<T> {
        for chunk in &self.chunks {
            match chunk.objects().get(i) {
                Some(object) => return object,
                None => i -= chunk.objects().len(),
            }
        }
        panic!("object index out of range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str) -> Arc<Service> {
        let metadata = ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        };
        Arc::new(Service { metadata, ..Default::default() })
    }

    #[test]
    fn chunks_know_their_namespace_and_are_shared() {
        let a = Chunk::new(vec![service("a", "1"), service("a", "2")]);
        let mixed = Chunk::new(vec![service("a", "3"), service("b", "4")]);
        let b = Chunk::new(vec![service("b", "5")]);
        assert_eq!((a.namespace(), mixed.namespace(), b.namespace()), (Some("a"), None, Some("b")));
        let list = Objects::from_chunks([a.clone(), Chunk::new(vec![]), mixed, b]);
        assert_eq!((list.len(), list.chunks().len()), (5, 3), "empty chunks are left out");
        let names = |it: &mut dyn Iterator<Item = &Arc<Service>>| {
            it.map(|s| s.name().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(&mut list.iter()), ["1", "2", "3", "4", "5"]);
        assert_eq!(names(&mut list.in_namespaces(&["b"])), ["3", "4", "5"]);
        assert_eq!(names(&mut list.in_namespaces(&["c"])), ["3", "4"], "mixed chunks stay");
        assert_eq!(list[3].name(), "4");
        let copy = list.clone();
        assert!(Objects::ptr_eq(&list, &copy));
        assert!(Chunk::ptr_eq(&copy.chunks()[0], &a));
    }

    #[test]
    fn editing_makes_one_chunk_of_its_own() {
        let list = Objects::from_chunks([
            Chunk::new(vec![service("a", "1")]),
            Chunk::new(vec![service("a", "2")]),
        ]);
        let mut edited = list.clone();
        edited.make_mut().retain(|s| s.name() != "1");
        assert_eq!((edited.len(), edited.chunks().len()), (1, 1));
        assert_eq!(edited.chunks()[0].namespace(), None, "edited in place: not known any more");
        assert_eq!(list.len(), 2, "the original is unchanged");
        assert!(!Objects::ptr_eq(&list, &edited));
        let mut two = list.clone();
        let (chunk, at) = two.position(|s| s.name() == "2").unwrap();
        assert_eq!((chunk, at), (1, 0));
        two.replace_chunk(chunk, vec![service("a", "2b"), service("a", "3")]);
        assert!(Chunk::ptr_eq(&two.chunks()[0], &list.chunks()[0]), "the other chunk is shared");
        assert_eq!(two.chunks()[1].namespace(), Some("a"));
        assert_eq!(two.len(), 3);
        let mut three = two.clone();
        assert!(three.edit(|s| s.name() == "3", |s| s.metadata.name = Some("3b".into())));
        assert!(!three.edit(|s| s.name() == "nowhere", |_| {}));
        assert!(Chunk::ptr_eq(&three.chunks()[0], &two.chunks()[0]));
        assert_eq!(three[2].name(), "3b");
        assert_eq!(two[2].name(), "3", "edited in a copy");
        two.replace_chunk(1, Vec::new());
        assert_eq!(two.chunks().len(), 1, "an empty chunk is dropped");
        let mut one: Objects<Service> = vec![service("a", "1")].into();
        let before = one.chunks()[0].as_ptr();
        one.make_mut().push(service("b", "2"));
        assert_eq!(one.chunks()[0].as_ptr(), before, "a chunk of its own is edited in place");
        assert_eq!(one.len(), 2);
    }
}
