use std::borrow::Cow;
use std::collections::HashMap;

/// The maps probed on every request, with a hasher cheaper than SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Values by host name: exact names, and one-label wildcards (`*.example.com` matches
/// `a.example.com`, not `a.b.example.com` nor `example.com`). Used for routing, certificates,
/// handshake policies and passthrough, which all resolve a name the same way.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: FastMap<Box<str>, T>,
    wildcard: FastMap<Box<str>, T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        Self { exact: FastMap::default(), wildcard: FastMap::default() }
    }
}

impl<T> HostMap<T> {
    /// Adds `host` as written in an Ingress (lower case; `*.` for a wildcard), unless it is
    /// already there; returns whether it was added (first writer wins).
    pub fn insert(&mut self, host: &str, value: T) -> bool {
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, host),
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.into(), value);
        true
    }

    /// Removes `host` as written; returns its value.
    pub fn remove(&mut self, host: &str) -> Option<T> {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.remove(parent),
            None => self.exact.remove(host),
        }
    }

    /// The value for a normalised request name (lower case, no port): exact first, then the
    /// wildcard of its parent.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.exact.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    /// The value stored for `host` exactly as written (`*.example.com` finds the wildcard).
    pub fn get_written(&self, host: &str) -> Option<&T> {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.get(parent),
            None => self.exact.get(host),
        }
    }

    /// Every entry, with the host as written (only a wildcard's name is made anew: walks of
    /// every certificate's names run on each TLS change).
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'_, str>, &T)> {
        self.exact
            .iter()
            .map(|(k, v)| (Cow::Borrowed(&**k), v))
            .chain(self.wildcard.iter().map(|(k, v)| (Cow::Owned(format!("*.{k}")), v)))
    }

    /// Every value.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact.values().chain(self.wildcard.values())
    }

    /// Every value, to be changed in place (certificate indices renumbered).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.exact.values_mut().chain(self.wildcard.values_mut())
    }

    /// How many exact names and wildcards there are.
    pub fn counts(&self) -> (usize, usize) {
        (self.exact.len(), self.wildcard.len())
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_one_label_wildcard() {
        let mut m = HostMap::default();
        assert!(m.insert("a.example.com", 1));
        assert!(m.insert("*.example.com", 2));
        assert!(!m.insert("*.example.com", 3), "first writer wins");
        assert_eq!(m.get("a.example.com"), Some(&1));
        assert_eq!(m.get("b.example.com"), Some(&2));
        assert_eq!(m.get("x.b.example.com"), None);
        assert_eq!(m.get("example.com"), None);
        assert_eq!(m.get_written("*.example.com"), Some(&2));
        assert_eq!(m.remove("*.example.com"), Some(2));
        assert_eq!(m.get("b.example.com"), None);
        assert!(m.insert("*.example.com", 2));
        let mut all: Vec<_> = m.iter().map(|(h, v)| (h.into_owned(), *v)).collect();
        all.sort();
        assert_eq!(all, [("*.example.com".to_string(), 2), ("a.example.com".to_string(), 1)]);
    }
}
