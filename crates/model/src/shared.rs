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
}
