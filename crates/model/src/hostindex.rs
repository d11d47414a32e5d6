//! The routing table's hosts, laid out for the request path.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::record::{self, Record};
use crate::{HostRoutes, Location};

/// Bytes per chunk of the record arena, a power of two: an offset splits into chunk and
/// position with a shift and a mask.
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
/// A cache line.
const LINE: usize = 64;
/// Marks a free slot. No record starts there: it would be the last byte of the last chunk an
/// offset can name, and a record is longer than that.
const FREE: u32 = u32::MAX;

/// Host names (exact, and one-label wildcards) to their index in
/// [`RoutingTable::hosts`](crate::RoutingTable::hosts), and each host's record: its name,
/// default route and (up to 16) plain paths in one run of bytes, which is all a lookup reads
/// about most hosts.
///
/// A lookup probes a flat array of `(hash, record offset)` slots, 8 bytes each, open addressing
/// with linear probing at most half full (10,000 hosts: 256 KiB), then reads the record the
/// slot points to, where it confirms the name (so a hash collision never routes to the wrong
/// host) and matches the path: two dependent cache misses for a known host. Records are packed
/// one after the other in 64 KiB chunks (10,000 hosts: about 1 MB), so the lookup's working set
/// is a few hundred pages, not one allocation per host scattered over the heap. A host in regex
/// mode with a few regexes has them inline too, each with its literal prefix, and numbers their
/// [`Location`]s in a list the index keeps (shared locations: the regexes' caches stay warm).
/// Only hosts with many (or very long) paths or regexes send the lookup on to their
/// [`HostRoutes`].
///
/// Clones share the chunks: an update that adds hosts ([`HostIndex::insert`]) copies the
/// slots and the last, partly filled chunk, then appends. Removing a host frees its slot; its
/// record stays unreachable in the arena until the table is next translated in full.
#[derive(Clone)]
pub struct HostIndex {
    slots: Box<[Slot]>,
    records: Records,
    /// The catch-all's record (not in a slot: it is what a lookup finds when no slot matches).
    catch_all: u32,
    /// The locations of inline regexes, which records number. Like records, those of removed
    /// hosts stay until the next full translation.
    locations: Vec<Arc<Location>>,
    exact: usize,
    wildcard: usize,
    hasher: foldhash::fast::RandomState,
    /// Every name hashes alike, so that tests can make collisions.
    #[cfg(test)]
    collide: bool,
}

/// The low 32 bits of a name's hash, and where its record starts. The slot's home is
/// `tag & mask`, so a slot can be moved without reading its record.
#[derive(Clone, Copy, Debug)]
struct Slot {
    tag: u32,
    at: u32,
}

const EMPTY: Slot = Slot { tag: 0, at: FREE };

impl HostIndex {
    /// An index without named hosts, whose lookups all end at the catch-all host (the rules
    /// without a host, name `""`), which is host `index` of its table.
    pub fn new(index: u32, catch_all: &HostRoutes) -> Self {
        let mut records = Records::default();
        let mut locations = Vec::new();
        let bytes =
            record::encode(index, catch_all, &mut locations).expect("a catch-all name fits");
        let catch_all = records.push(&bytes);
        Self {
            slots: vec![EMPTY; 16].into(),
            records,
            catch_all,
            locations,
            exact: 0,
            wildcard: 0,
            hasher: foldhash::fast::RandomState::default(),
            #[cfg(test)]
            collide: false,
        }
    }

    /// Adds `host` (its name as written in an Ingress: lower case, `*.` for a wildcard) as
    /// host `index` of its table, unless its name is already there or is not a host name
    /// (empty, or longer than 255 bytes); returns whether it was added (first writer wins).
    ///
    /// The record is made from `host` as it is now: a host whose paths or default change is
    /// removed and added again.
    pub fn insert(&mut self, index: u32, host: &HostRoutes) -> bool {
        let name = host.host();
        if name.is_empty() || self.get_written(name).is_some() {
            return false;
        }
        let Some(bytes) = record::encode(index, host, &mut self.locations) else {
            return false;
        };
        if (self.exact + self.wildcard + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let at = self.records.push(&bytes);
        self.put(Slot { tag: self.hash_written(name), at });
        match name.starts_with("*.") {
            true => self.wildcard += 1,
            false => self.exact += 1,
        }
        true
    }

    /// Removes `host` as written; returns its index.
    pub fn remove(&mut self, host: &str) -> Option<u32> {
        let (at, record) = self.probe(self.hash_written(host), |n| n == host.as_bytes())?;
        let index = record.index();
        // Backward-shift deletion: later slots of the run that may sit in the hole move up,
        // so probes that stop at the first free slot still find them.
        let mask = self.slots.len() - 1;
        let mut hole = at;
        self.slots[hole] = EMPTY;
        let mut next = (hole + 1) & mask;
        while self.slots[next].at != FREE {
            let home = self.slots[next].tag as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[next];
                self.slots[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        match host.starts_with("*.") {
            true => self.wildcard -= 1,
            false => self.exact -= 1,
        }
        Some(index)
    }

    /// The record a normalised request name (lower case, no port) leads to: its exact name,
    /// else the wildcard of its parent, else the catch-all.
    pub(crate) fn find(&self, name: &[u8]) -> Record<'_> {
        self.find_named(name).unwrap_or_else(|| self.records.get(self.catch_all))
    }

    /// Whether a rule names the normalised request name (lower case, no port): exactly, or
    /// by the wildcard of its parent; else its requests go to the catch-all.
    pub fn names(&self, name: &str) -> bool {
        self.find_named(name.as_bytes()).is_some()
    }

    fn find_named(&self, name: &[u8]) -> Option<Record<'_>> {
        let exact = self.probe(self.hash(false, name), |n| n == name);
        let found = exact.or_else(|| {
            let dot = name.iter().position(|&c| c == b'.')?;
            let parent = &name[dot + 1..];
            let is_wildcard = |n: &[u8]| n.strip_prefix(b"*.") == Some(parent);
            self.probe(self.hash(true, parent), is_wildcard)
        });
        found.map(|(_, record)| record)
    }

    /// The locations that records with inline regexes number.
    pub(crate) fn locations(&self) -> &[Arc<Location>] {
        &self.locations
    }

    /// The index stored for `host` exactly as written (`*.example.com` finds the wildcard).
    pub fn get_written(&self, host: &str) -> Option<u32> {
        let found = self.probe(self.hash_written(host), |n| n == host.as_bytes());
        found.map(|(_, record)| record.index())
    }

    /// Every named host as written, with its index (not the catch-all).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.slots.iter().filter(|s| s.at != FREE).map(|s| {
            let record = self.records.get(s.at);
            // Records are made from `&str` names: valid UTF-8, so the fallback never shows.
            (std::str::from_utf8(record.name()).unwrap_or_default(), record.index())
        })
    }

    /// How many exact names and wildcards there are.
    pub fn counts(&self) -> (usize, usize) {
        (self.exact, self.wildcard)
    }

    /// The slot (position, record) whose tag is `tag` and whose record's name satisfies
    /// `confirm`.
    fn probe(&self, tag: u32, confirm: impl Fn(&[u8]) -> bool) -> Option<(usize, Record<'_>)> {
        let mask = self.slots.len() - 1;
        let mut at = tag as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.at == FREE {
                return None;
            }
            if slot.tag == tag {
                let record = self.records.get(slot.at);
                if confirm(record.name()) {
                    return Some((at, record));
                }
            }
            at = (at + 1) & mask;
        }
    }

    fn hash(&self, wildcard: bool, key: &[u8]) -> u32 {
        #[cfg(test)]
        if self.collide {
            return 7;
        }
        self.hasher.hash_one((wildcard, key)) as u32
    }

    fn hash_written(&self, host: &str) -> u32 {
        match host.strip_prefix("*.") {
            Some(parent) => self.hash(true, parent.as_bytes()),
            None => self.hash(false, host.as_bytes()),
        }
    }

    fn put(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut at = slot.tag as usize & mask;
        while self.slots[at].at != FREE {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2].into();
        let old = std::mem::replace(&mut self.slots, bigger);
        for slot in old.iter().filter(|s| s.at != FREE) {
            self.put(*slot);
        }
    }
}

impl fmt::Debug for HostIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let catch_all = self.records.get(self.catch_all).index();
        f.debug_struct("HostIndex")
            .field("catch_all", &catch_all)
            .field("hosts", &self.iter().collect::<std::collections::BTreeMap<_, _>>())
            .finish()
    }
}

/// The records, packed in chunks that tables share. A record never spans two chunks, so a
/// lookup reads it as one slice.
#[derive(Clone, Default)]
struct Records {
    chunks: Vec<Arc<[u8]>>,
    /// Bytes used in the last chunk.
    used: usize,
}

impl Records {
    /// Appends a record (at most a chunk long); returns its offset. The last chunk is copied
    /// first if another table shares it. A record starts on the next cache line when it would
    /// otherwise span one line more than its length needs: a lookup reads the whole record.
    fn push(&mut self, record: &[u8]) -> u32 {
        assert!(record.len() <= CHUNK - LINE, "a record fits a chunk");
        if let Some(last) = self.chunks.last() {
            let start = last.as_ptr().addr() + self.used;
            let end = start + record.len().max(1) - 1;
            let spanned = end / LINE - start / LINE + 1;
            if spanned > record.len().div_ceil(LINE) {
                self.used += LINE - start % LINE;
            }
        }
        if self.chunks.is_empty() || self.used + record.len() > CHUNK {
            assert!(self.chunks.len() < 1 << (32 - CHUNK_BITS), "offsets are 32-bit");
            self.chunks.push(vec![0; CHUNK].into());
            self.used = 0;
            return self.push(record);
        }
        let last = self.chunks.len() - 1;
        let chunk = Arc::make_mut(&mut self.chunks[last]);
        chunk[self.used..self.used + record.len()].copy_from_slice(record);
        let at = (last << CHUNK_BITS | self.used) as u32;
        self.used += record.len();
        at
    }

    fn get(&self, at: u32) -> Record<'_> {
        let chunk = &self.chunks[(at >> CHUNK_BITS) as usize];
        Record(&chunk[at as usize & (CHUNK - 1)..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PathTable, RouteId};

    /// A host with one prefix path `/` to route `index`, and default route `100 + index`.
    fn host(name: &str, index: u32) -> HostRoutes {
        HostRoutes {
            paths: PathTable::new(name, [], [("", index as RouteId)]),
            regex: None,
            default_route: 100 + index,
        }
    }

    /// The index of the host a request name finds (the catch-all is `u32::MAX`).
    fn found(index: &HostIndex, name: &str) -> u32 {
        let record = index.find(name.as_bytes());
        assert_eq!(record.default_route(), 100 + record.index(), "{name}: a record of its own");
        record.index()
    }

    const CATCH_ALL: u32 = u32::MAX - 100;

    fn empty(collide: bool) -> HostIndex {
        let mut index = HostIndex::new(CATCH_ALL, &host("", CATCH_ALL));
        index.collide = collide;
        index
    }

    #[test]
    fn exact_then_one_label_wildcard_then_catch_all() {
        for collide in [false, true] {
            let mut index = empty(collide);
            for (i, h) in ["a.example.com", "*.example.com", "*.other.com"].iter().enumerate() {
                assert!(index.insert(i as u32, &host(h, i as u32)));
            }
            assert!(!index.insert(9, &host("*.example.com", 9)), "first writer wins");
            assert!(!index.insert(9, &host("", 9)), "the catch-all is not named");
            assert_eq!(found(&index, "a.example.com"), 0);
            assert_eq!(found(&index, "b.example.com"), 1);
            assert_eq!(found(&index, "x.b.example.com"), CATCH_ALL, "one label only");
            assert_eq!(found(&index, "example.com"), CATCH_ALL, "the parent is not covered");
            assert_eq!(found(&index, "a.other.com"), 2);
            assert_eq!(found(&index, ""), CATCH_ALL);
            assert_eq!(found(&index, "*.example.com"), 1, "as any name under example.com");
            assert!(index.names("a.example.com") && index.names("b.example.com"));
            assert!(!index.names("x.b.example.com") && !index.names(""), "the catch-all's");
            assert_eq!(index.get_written("*.example.com"), Some(1));
            assert_eq!(index.get_written("example.com"), None);
            assert_eq!(index.counts(), (1, 2));
            assert_eq!(index.remove("*.example.com"), Some(1));
            assert_eq!(index.remove("*.example.com"), None);
            assert_eq!(found(&index, "b.example.com"), CATCH_ALL);
            assert_eq!(found(&index, "a.example.com"), 0);
            assert_eq!(index.counts(), (1, 1));
            let mut all: Vec<_> = index.iter().collect();
            all.sort();
            assert_eq!(all, [("*.other.com", 2), ("a.example.com", 0)]);
        }
    }

    /// With every name hashing alike, only the names in the records tell hosts apart: each
    /// request still finds its own host, never another on the same probe run.
    #[test]
    fn colliding_hashes_are_told_apart_by_name() {
        let mut index = empty(true);
        let names: Vec<String> = (0..40).map(|i| format!("h{i}.test")).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(index.insert(i as u32, &host(n, i as u32)));
        }
        // Exact and wildcard of the same name collide too.
        assert!(index.insert(40, &host("*.h3.test", 40)));
        for (i, n) in names.iter().enumerate() {
            assert_eq!(found(&index, n), i as u32);
        }
        assert_eq!(found(&index, "x.h3.test"), 40);
        assert_eq!(found(&index, "x.h4.test"), CATCH_ALL);
        assert_eq!(found(&index, "h40.test"), CATCH_ALL);
        for i in (0..40).step_by(3) {
            assert_eq!(index.remove(&names[i]), Some(i as u32));
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(found(&index, n), if i % 3 == 0 { CATCH_ALL } else { i as u32 });
        }
        assert_eq!(found(&index, "x.h3.test"), 40);
    }

    /// Thousands of inserts and removals, in an order that makes long runs and wraps: every
    /// name still present is found, every removed one is not; removed names come back with a
    /// new record (another index, as an update appends hosts).
    #[test]
    fn growth_and_removal_keep_every_name_reachable() {
        let written: Vec<String> = (0..5000)
            .map(|i| if i % 7 == 0 { format!("*.w{i}.test") } else { format!("h{i}.test") })
            .collect();
        let request = |i: usize| match written[i].strip_prefix("*.") {
            Some(parent) => format!("x.{parent}"),
            None => written[i].clone(),
        };
        let mut index = empty(false);
        for (i, h) in written.iter().enumerate() {
            assert!(index.insert(i as u32, &host(h, i as u32)));
        }
        for i in (0..written.len()).filter(|i| i % 3 == 0) {
            assert_eq!(index.remove(&written[i]), Some(i as u32));
        }
        for (i, w) in written.iter().enumerate() {
            let want = if i % 3 != 0 { i as u32 } else { CATCH_ALL };
            assert_eq!(found(&index, &request(i)), want, "{w}");
        }
        let moved = |i: usize| (i + written.len()) as u32;
        for i in (0..written.len()).filter(|i| i % 3 == 0) {
            assert!(index.insert(moved(i), &host(&written[i], moved(i))));
        }
        for (i, w) in written.iter().enumerate() {
            let want = if i % 3 == 0 { moved(i) } else { i as u32 };
            assert_eq!(found(&index, &request(i)), want);
            assert_eq!(index.get_written(w), Some(want));
        }
        assert_eq!(index.counts().0 + index.counts().1, written.len());
        assert!(index.records.chunks.len() > 1, "records span chunks");
    }

    /// Records of any length span as few cache lines as their length allows, and read back as
    /// written.
    #[test]
    fn records_span_few_lines() {
        let mut records = Records::default();
        let mut written = Vec::new();
        for i in 0..5000usize {
            let record: Vec<u8> = (0..(i * 37) % 300 + 1).map(|b| (b + i) as u8).collect();
            written.push((records.push(&record), record));
        }
        assert!(records.chunks.len() > 10);
        for (at, record) in &written {
            let chunk = &records.chunks[(at >> CHUNK_BITS) as usize];
            let start = chunk.as_ptr().addr() + (*at as usize & (CHUNK - 1));
            let lines = (start + record.len() - 1) / LINE - start / LINE + 1;
            assert_eq!(lines, record.len().div_ceil(LINE));
            assert_eq!(&records.get(*at).0[..record.len()], &record[..]);
        }
    }

    /// A clone shares the records: adding hosts to it copies the last chunk only, and leaves
    /// the original as it was.
    #[test]
    fn clones_share_records_until_written() {
        let mut a = empty(false);
        let names: Vec<String> = (0..3000).map(|i| format!("host-{i}.example.com")).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(a.insert(i as u32, &host(n, i as u32)));
        }
        let mut b = a.clone();
        assert_eq!(b.remove(&names[7]), Some(7));
        assert!(b.insert(3000, &host(&names[7], 3000)));
        assert!(b.insert(3001, &host("new.example.com", 3001)));
        let last = a.records.chunks.len() - 1;
        for (i, (x, y)) in a.records.chunks.iter().zip(&b.records.chunks).enumerate() {
            assert_eq!(Arc::ptr_eq(x, y), i != last, "chunk {i}");
        }
        assert_eq!((found(&a, &names[7]), found(&b, &names[7])), (7, 3000));
        assert_eq!((found(&a, "new.example.com"), found(&b, "new.example.com")), (CATCH_ALL, 3001));
        assert_eq!(a.counts(), (3000, 0));
        assert_eq!(b.counts(), (3001, 0));
    }
}
