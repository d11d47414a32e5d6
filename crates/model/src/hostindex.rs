//! The routing table's host names, laid out for the request path.

use std::hash::BuildHasher;

use crate::HostMap;

/// Marks a free slot (no table has 2^32 - 1 hosts).
const FREE: u32 = u32::MAX;

/// Host names (exact, and one-label wildcards) to their index in
/// [`RoutingTable::hosts`](crate::RoutingTable::hosts).
///
/// Writes and reports go through a [`HostMap`]. Lookups go through a flat array of
/// `(hash, index)` slots, open addressing with linear probing at most half full: one cache
/// line per lookup, where a map of boxed names costs three (control bytes, bucket, name). The
/// name itself is compared where the lookup goes next anyway, the host's
/// [`PathTable`](crate::PathTable), so a hash collision never routes to the wrong host.
#[derive(Clone, Debug)]
pub struct HostIndex {
    names: HostMap<u32>,
    slots: Box<[Slot]>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    host: u32,
}

const EMPTY: Slot = Slot { hash: 0, host: FREE };

impl Default for HostIndex {
    fn default() -> Self {
        Self {
            names: HostMap::default(),
            slots: vec![EMPTY; 16].into(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl HostIndex {
    /// Adds `host` as written in an Ingress (lower case; `*.` for a wildcard) for host `index`,
    /// unless it is already there; returns whether it was added (first writer wins).
    pub fn insert(&mut self, host: &str, index: u32) -> bool {
        if !self.names.insert(host, index) {
            return false;
        }
        let (exact, wildcard) = self.names.counts();
        if (exact + wildcard) * 2 > self.slots.len() {
            self.grow();
        }
        let hash = self.hash_written(host);
        self.put(Slot { hash, host: index });
        true
    }

    /// Removes `host` as written; returns its index.
    pub fn remove(&mut self, host: &str) -> Option<u32> {
        let index = self.names.remove(host)?;
        let hash = self.hash_written(host);
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while !(self.slots[at].hash == hash && self.slots[at].host == index) {
            at = (at + 1) & mask;
        }
        // Backward-shift deletion: later slots of the run that may sit in the hole move up,
        // so probes that stop at the first free slot still find them.
        let mut hole = at;
        self.slots[hole] = EMPTY;
        let mut next = (hole + 1) & mask;
        while self.slots[next].host != FREE {
            let home = self.slots[next].hash as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[next];
                self.slots[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        Some(index)
    }

    /// The index of a normalised request name (lower case, no port): an exact name first, then
    /// the wildcard of its parent. `name_of` gives a host's name as written, to confirm a hash
    /// match.
    pub fn get<'a>(&self, name: &str, name_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        self.find(false, name, |i| name_of(i) == name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.find(true, parent, |i| name_of(i).strip_prefix("*.") == Some(parent))
        })
    }

    /// The index stored for `host` exactly as written (`*.example.com` finds the wildcard).
    pub fn get_written(&self, host: &str) -> Option<u32> {
        self.names.get_written(host).copied()
    }

    /// Every entry, with the host as written.
    pub fn iter(&self) -> impl Iterator<Item = (String, u32)> {
        self.names.iter().map(|(h, &i)| (h, i))
    }

    /// How many exact names and wildcards there are.
    pub fn counts(&self) -> (usize, usize) {
        self.names.counts()
    }

    fn find(&self, wildcard: bool, key: &str, confirm: impl Fn(u32) -> bool) -> Option<u32> {
        let hash = self.hasher.hash_one((wildcard, key));
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.host == FREE {
                return None;
            }
            if slot.hash == hash && confirm(slot.host) {
                return Some(slot.host);
            }
            at = (at + 1) & mask;
        }
    }

    fn hash_written(&self, host: &str) -> u64 {
        match host.strip_prefix("*.") {
            Some(parent) => self.hasher.hash_one((true, parent)),
            None => self.hasher.hash_one((false, host)),
        }
    }

    fn put(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut at = slot.hash as usize & mask;
        while self.slots[at].host != FREE {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2].into();
        let old = std::mem::replace(&mut self.slots, bigger);
        for slot in old.iter().filter(|s| s.host != FREE) {
            self.put(*slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names by index, as the table's hosts give them.
    fn names(index: &HostIndex, written: &[String]) -> Vec<(String, Option<u32>)> {
        let name_of = |i: u32| written[i as usize].as_str();
        ["a.example.com", "b.example.com", "x.b.example.com", "example.com", "h7.test", "z.h7.test"]
            .iter()
            .map(|n| (n.to_string(), index.get(n, name_of)))
            .collect()
    }

    #[test]
    fn exact_then_one_label_wildcard() {
        let written: Vec<String> =
            ["a.example.com", "*.example.com", "*.other.com"].map(String::from).into();
        let mut index = HostIndex::default();
        for (i, h) in written.iter().enumerate() {
            assert!(index.insert(h, i as u32));
        }
        assert!(!index.insert("*.example.com", 9), "first writer wins");
        let found = names(&index, &written);
        assert_eq!(found[0].1, Some(0));
        assert_eq!(found[1].1, Some(1));
        assert_eq!(found[2].1, None, "one label only");
        assert_eq!(found[3].1, None, "the parent itself is not covered");
        assert_eq!(index.get_written("*.example.com"), Some(1));
        assert_eq!(index.remove("*.example.com"), Some(1));
        assert_eq!(index.get("b.example.com", |i| written[i as usize].as_str()), None);
        assert_eq!(index.counts(), (1, 1));
    }

    /// Thousands of inserts and removals, in an order that makes long runs and wraps: every
    /// name still present is found, every removed one is not.
    #[test]
    fn growth_and_removal_keep_every_name_reachable() {
        let written: Vec<String> = (0..5000)
            .map(|i| if i % 7 == 0 { format!("*.w{i}.test") } else { format!("h{i}.test") })
            .collect();
        let name_of = |i: u32| written[i as usize].as_str();
        let request = |i: usize| match written[i].strip_prefix("*.") {
            Some(parent) => format!("x.{parent}"),
            None => written[i].clone(),
        };
        let mut index = HostIndex::default();
        for (i, h) in written.iter().enumerate() {
            assert!(index.insert(h, i as u32));
        }
        for i in (0..written.len()).filter(|i| i % 3 == 0) {
            assert_eq!(index.remove(&written[i]), Some(i as u32));
        }
        for (i, w) in written.iter().enumerate() {
            let want = (i % 3 != 0).then_some(i as u32);
            assert_eq!(index.get(&request(i), name_of), want, "{w}");
        }
        // Removed names can be added again.
        for i in (0..written.len()).filter(|i| i % 3 == 0) {
            assert!(index.insert(&written[i], i as u32));
        }
        assert!((0..written.len()).all(|i| index.get(&request(i), name_of) == Some(i as u32)));
        assert_eq!(index.counts().0 + index.counts().1, written.len());
    }
}
