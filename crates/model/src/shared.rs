use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A vector that tables share: cloning it only counts a reference, so a table built from the
/// previous one (an endpoint-only change) keeps the parts that did not change without copying
/// them. Reads go through `Deref` (indexing, `iter`, `len`, `for x in &v`); writes through
/// [`SharedVec::make_mut`], which copies only if another table shares the vector.
pub struct SharedVec<T>(Arc<Vec<T>>);

impl<T> SharedVec<T> {
    /// Shares `items`.
    pub fn new(items: Vec<T>) -> Self {
        Self(Arc::new(items))
    }

    /// True when both share the same vector (one is a clone of the other, and neither was
    /// written since).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T: Clone> SharedVec<T> {
    /// The vector, for writing: copied first if shared.
    pub fn make_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<T> Clone for SharedVec<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for SharedVec<T> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<T> From<Vec<T>> for SharedVec<T> {
    fn from(items: Vec<T>) -> Self {
        Self::new(items)
    }
}

impl<T> Deref for SharedVec<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a SharedVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: PartialEq> PartialEq for SharedVec<T> {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || *self.0 == *other.0
    }
}

impl<T: Eq> Eq for SharedVec<T> {}

impl<T: fmt::Debug> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for SharedVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A vector that tables share in chunks: cloning it counts a reference per chunk, and
/// appending copies only the last chunk. A table built from the previous one by adding a few
/// Ingresses (`sluice_translate::update_ingresses`) appends their routes and hosts without
/// copying the tens of thousands already there. Indexing costs what indexing a `Vec` behind an
/// `Arc` does: two dependent loads.
pub struct ChunkVec<T> {
    chunks: Vec<Arc<[T]>>,
    len: usize,
}

/// Items per chunk: a power of two, so that an index splits with a shift and a mask.
const CHUNK: usize = 1024;

impl<T> ChunkVec<T> {
    /// How many items there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `i`, if any.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    /// Every item, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// True when both share every chunk (one is a clone of the other, and neither was
    /// written since).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.len == b.len && a.chunks.iter().zip(&b.chunks).all(|(x, y)| Arc::ptr_eq(x, y))
    }

    /// True when both share their first chunk: one was made from the other by appending.
    pub fn shares_start(a: &Self, b: &Self) -> bool {
        matches!((a.chunks.first(), b.chunks.first()), (Some(x), Some(y)) if Arc::ptr_eq(x, y))
    }
}

impl<T: Clone> ChunkVec<T> {
    /// The item at `i`, for writing: only its chunk is copied, and only if another vector
    /// shares it. An endpoint update rewrites a few backends of 20,000 this way.
    pub fn make_mut(&mut self, i: usize) -> &mut T {
        &mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK]
    }

    /// Appends `items`; only a partly filled last chunk is copied.
    pub fn extend(&mut self, items: impl IntoIterator<Item = T>) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        let mut open: Vec<T> = Vec::with_capacity(CHUNK);
        if !self.len.is_multiple_of(CHUNK) {
            let last = self.chunks.pop().expect("a partly filled chunk");
            open.extend(last.iter().cloned());
        }
        for item in items {
            open.push(item);
            self.len += 1;
            if open.len() == CHUNK {
                self.chunks.push(std::mem::replace(&mut open, Vec::with_capacity(CHUNK)).into());
            }
        }
        if !open.is_empty() {
            self.chunks.push(open.into());
        }
    }
}

impl<T> Clone for ChunkVec<T> {
    fn clone(&self) -> Self {
        Self { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        Self { chunks: Vec::new(), len: 0 }
    }
}

impl<T> From<Vec<T>> for ChunkVec<T> {
    fn from(items: Vec<T>) -> Self {
        let len = items.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut items = items.into_iter();
        while items.len() > 0 {
            chunks.push(items.by_ref().take(CHUNK).collect());
        }
        Self { chunks, len }
    }
}

impl<'a, T> IntoIterator for &'a ChunkVec<T> {
    type Item = &'a T;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<[T]>>,
        std::slice::Iter<'a, T>,
        fn(&'a Arc<[T]>) -> std::slice::Iter<'a, T>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<T> std::ops::Index<usize> for ChunkVec<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T: fmt::Debug> fmt::Debug for ChunkVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for ChunkVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_written() {
        let a = SharedVec::new(vec![1, 2, 3]);
        let mut b = a.clone();
        assert!(SharedVec::ptr_eq(&a, &b));
        assert_eq!(b[1], 2);
        assert_eq!((&b).into_iter().sum::<i32>(), 6);
        b.make_mut().push(4);
        assert!(!SharedVec::ptr_eq(&a, &b));
        assert_eq!(a.len(), 3);
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn chunks_are_shared_and_only_the_last_is_copied() {
        let n = CHUNK * 2 + 3;
        let a = ChunkVec::from((0..n).collect::<Vec<_>>());
        assert_eq!((a.len(), a.chunks.len()), (n, 3));
        assert_eq!((a[0], a[CHUNK], a[n - 1]), (0, CHUNK, n - 1));
        assert_eq!(a.get(n), None);
        let mut b = a.clone();
        assert!(ChunkVec::ptr_eq(&a, &b));
        b.extend(n..n + CHUNK);
        assert_eq!(b.len(), n + CHUNK);
        assert!(b.iter().copied().eq(0..n + CHUNK), "in order, nothing lost");
        assert!(Arc::ptr_eq(&a.chunks[1], &b.chunks[1]), "full chunks are shared");
        assert!(!Arc::ptr_eq(&a.chunks[2], &b.chunks[2]), "the partly filled one is copied");
        assert!(ChunkVec::shares_start(&a, &b) && !ChunkVec::ptr_eq(&a, &b));
        assert_eq!(a.len(), n, "the original is unchanged");
        assert!(!ChunkVec::shares_start(&a, &ChunkVec::from(vec![0])));
        let mut c = a.clone();
        *c.make_mut(CHUNK + 1) = 0;
        assert_eq!((c[CHUNK + 1], a[CHUNK + 1]), (0, CHUNK + 1), "written in a copy");
        assert!(Arc::ptr_eq(&a.chunks[0], &c.chunks[0]), "the other chunks are shared");
        assert!(!Arc::ptr_eq(&a.chunks[1], &c.chunks[1]));
        assert_eq!((&c).into_iter().count(), n);
    }
}
