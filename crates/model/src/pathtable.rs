//! A host's name and plain paths, laid out for the request path.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::{FastMap, RouteId};

/// Hosts with at most this many plain paths are kept compact and scanned; larger ones hashed.
/// A scan of 16 short entries in two or three cache lines beats two hash probes that miss.
const SMALL_PATHS: usize = 16;

/// Kind byte of a compact entry.
const EXACT: u8 = 0;
const PREFIX: u8 = 1;
/// Bytes before an entry's path: kind (1), path length (2), route (4).
const ENTRY_HEADER: usize = 7;

/// A host's name (as written: `*.example.com` for a wildcard, `""` for the catch-all) and its
/// `Exact` and `Prefix` paths, built for lookup.
///
/// Most hosts have a handful of paths. Those live in one allocation: the name, then the `Exact`
/// paths, then the `Prefix` paths longest first, each with its route. A lookup that found the
/// host reads one or two cache lines from here, where two hash maps and their boxed keys cost
/// up to seven, each a likely miss once 10,000 hosts have pushed each other out of the caches.
/// Hosts with more than 16 paths (or a name or path too long for the compact form) keep two
/// hash maps.
#[derive(Clone, Debug)]
pub struct PathTable(Repr);

#[derive(Clone, Debug)]
enum Repr {
    /// `[name length: u8][name]`, then per path
    /// `[kind: u8][length: u16 LE][route: u32 LE][path]`: exact paths first, then prefixes
    /// longest first, so the first match is the answer.
    Small(Box<[u8]>),
    Large(Box<Large>),
}

#[derive(Clone, Debug)]
struct Large {
    host: Box<str>,
    exact: FastMap<Box<str>, RouteId>,
    prefix: FastMap<Box<str>, RouteId>,
}

impl PathTable {
    /// The table of `host` with these `Exact` paths and `Prefix` paths (the latter without
    /// trailing slashes: `/` is `""`). Paths are unique within each list.
    pub fn new<'a>(
        host: &str,
        exact: impl IntoIterator<Item = (&'a str, RouteId)>,
        prefix: impl IntoIterator<Item = (&'a str, RouteId)>,
    ) -> Self {
        let mut exact: Vec<_> = exact.into_iter().collect();
        let mut prefix: Vec<_> = prefix.into_iter().collect();
        let fits = |p: &[(&str, RouteId)]| p.iter().all(|(p, _)| p.len() <= u16::MAX as usize);
        if exact.len() + prefix.len() > SMALL_PATHS
            || host.len() > u8::MAX as usize
            || !fits(&exact)
            || !fits(&prefix)
        {
            let map = |paths: Vec<(&str, RouteId)>| {
                paths.into_iter().map(|(p, id)| (Box::from(p), id)).collect()
            };
            return Self(Repr::Large(Box::new(Large {
                host: host.into(),
                exact: map(exact),
                prefix: map(prefix),
            })));
        }
        // Sorted so that equal tables are equal bytes; prefixes longest first, so that the
        // first one matching is the longest (two of the same length cannot both match).
        exact.sort_unstable();
        prefix.sort_unstable_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.cmp(b)));
        let paths: usize = exact.iter().chain(&prefix).map(|(p, _)| ENTRY_HEADER + p.len()).sum();
        let mut bytes = Vec::with_capacity(1 + host.len() + paths);
        bytes.push(host.len() as u8);
        bytes.extend_from_slice(host.as_bytes());
        for (kind, list) in [(EXACT, &exact), (PREFIX, &prefix)] {
            for (path, id) in list {
                bytes.push(kind);
                bytes.extend_from_slice(&(path.len() as u16).to_le_bytes());
                bytes.extend_from_slice(&id.to_le_bytes());
                bytes.extend_from_slice(path.as_bytes());
            }
        }
        Self(Repr::Small(bytes.into()))
    }

    /// The host as written.
    pub fn host(&self) -> &str {
        match &self.0 {
            Repr::Small(b) => {
                // Built from a `&str` by `new`: valid UTF-8, so the fallback never shows.
                std::str::from_utf8(&b[1..1 + b[0] as usize]).unwrap_or_default()
            }
            Repr::Large(l) => &l.host,
        }
    }

    /// The route of a normalised request path: an `Exact` path equal to it, else the longest
    /// `Prefix` path it is under (element-wise: `/foo` covers `/foo` and `/foo/bar`, not
    /// `/foobar`), else `None`.
    pub fn find(&self, path: &str) -> Option<RouteId> {
        self.find_in(path, true)
    }

    /// The route of an `Exact` path equal to `path`.
    pub fn find_exact(&self, path: &str) -> Option<RouteId> {
        self.find_in(path, false)
    }

    fn find_in(&self, path: &str, prefixes: bool) -> Option<RouteId> {
        let trimmed = path.trim_end_matches('/').as_bytes();
        match &self.0 {
            Repr::Small(b) => {
                let mut entries = Entries { bytes: b, at: 1 + b[0] as usize };
                entries.find_map(|(kind, p, id)| {
                    let hit = if kind == EXACT {
                        p == path.as_bytes()
                    } else {
                        prefixes && under(trimmed, p)
                    };
                    hit.then_some(id)
                })
            }
            Repr::Large(l) => {
                if let Some(&id) = l.exact.get(path) {
                    return Some(id);
                }
                if !prefixes || l.prefix.is_empty() {
                    return None;
                }
                // Probe the path's element-wise prefixes from the longest to the shortest.
                let mut candidate = path.trim_end_matches('/');
                loop {
                    if let Some(&id) = l.prefix.get(candidate) {
                        return Some(id);
                    }
                    match candidate.rfind('/') {
                        Some(i) => candidate = candidate[..i].trim_end_matches('/'),
                        None => return l.prefix.get("").copied(),
                    }
                }
            }
        }
    }

    /// Every path: whether it is `Exact`, the path (prefixes without trailing slashes), its
    /// route.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (bool, &str, RouteId)> + '_> {
        match &self.0 {
            Repr::Small(b) => {
                Box::new(Entries { bytes: b, at: 1 + b[0] as usize }.map(|(kind, p, id)| {
                    (kind == EXACT, std::str::from_utf8(p).unwrap_or_default(), id)
                }))
            }
            Repr::Large(l) => Box::new(
                l.exact
                    .iter()
                    .map(|(p, &id)| (true, &**p, id))
                    .chain(l.prefix.iter().map(|(p, &id)| (false, &**p, id))),
            ),
        }
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(b) => Entries { bytes: b, at: 1 + b[0] as usize }.count(),
            Repr::Large(l) => l.exact.len() + l.prefix.len(),
        }
    }

    /// True when it holds no path.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Renumbers every route (when its host moves into another table).
    pub fn map_routes(&mut self, f: impl Fn(RouteId) -> RouteId) {
        match &mut self.0 {
            Repr::Small(b) => {
                let mut at = 1 + b[0] as usize;
                while at < b.len() {
                    let len = u16::from_le_bytes([b[at + 1], b[at + 2]]) as usize;
                    let id = &mut b[at + 3..at + ENTRY_HEADER];
                    let new = f(u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
                    id.copy_from_slice(&new.to_le_bytes());
                    at += ENTRY_HEADER + len;
                }
            }
            Repr::Large(l) => l.exact.values_mut().chain(l.prefix.values_mut()).for_each(|id| {
                *id = f(*id);
            }),
        }
    }
}

/// True when `path` (trailing slashes trimmed) is `prefix` or below it, element-wise.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix) && path.get(prefix.len()).is_none_or(|&c| c == b'/'))
}

/// The entries of a compact table: kind, path, route.
struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u8, &'a [u8], RouteId);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        let header = b.get(self.at..self.at + ENTRY_HEADER)?;
        let len = u16::from_le_bytes([header[1], header[2]]) as usize;
        let id = u32::from_le_bytes([header[3], header[4], header[5], header[6]]);
        let start = self.at + ENTRY_HEADER;
        self.at = start + len;
        Some((header[0], &b[start..start + len], id))
    }
}

impl Serialize for PathTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut exact: Vec<(&str, RouteId)> = Vec::new();
        let mut prefix: Vec<(&str, RouteId)> = Vec::new();
        for (is_exact, path, id) in self.iter() {
            if is_exact { &mut exact } else { &mut prefix }.push((path, id));
        }
        exact.sort_unstable();
        prefix.sort_unstable();
        let mut st = s.serialize_struct("PathTable", 3)?;
        st.serialize_field("host", self.host())?;
        st.serialize_field("exact", &exact)?;
        st.serialize_field("prefix", &prefix)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup the compact form replaces, over maps: the reference it must agree with.
    fn reference(
        exact: &[(&str, RouteId)],
        prefix: &[(&str, RouteId)],
        path: &str,
    ) -> Option<RouteId> {
        if let Some((_, id)) = exact.iter().find(|(p, _)| *p == path) {
            return Some(*id);
        }
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some((_, id)) = prefix.iter().find(|(p, _)| *p == candidate) {
                return Some(*id);
            }
            match candidate.rfind('/') {
                Some(i) => candidate = candidate[..i].trim_end_matches('/'),
                None => return prefix.iter().find(|(p, _)| p.is_empty()).map(|(_, id)| *id),
            }
        }
    }

    const PATHS: [&str; 10] =
        ["", "/a", "/a/b", "/ab", "/a/b/c", "/b", "/a/", "/a/bc", "/x/y/z", "/a/b/c/d"];
    const REQUESTS: [&str; 16] = [
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/a/b/",
        "/ab",
        "/abc",
        "/a/bc",
        "/a/b/c/d/e",
        "/b/a",
        "/x/y",
        "/x/y/z/",
        "/c",
        "abc",
        "/a/b/c",
        "/x/y/zz",
    ];

    type Paths = Vec<(&'static str, RouteId)>;

    /// Every subset of [`PATHS`], as exact paths and as prefixes.
    fn tables() -> Vec<(Paths, Paths)> {
        let mut out = Vec::new();
        for set in 0u32..(1 << PATHS.len()) {
            let (mut exact, mut prefix) = (Vec::new(), Vec::new());
            for (i, p) in PATHS.iter().enumerate().filter(|(i, _)| set & (1 << i) != 0) {
                exact.push((*p, 100 + i as RouteId));
                if !p.ends_with('/') {
                    prefix.push((*p, 200 + i as RouteId));
                }
            }
            // Half the tables without exact paths, so prefixes answer alone too.
            if set % 2 == 1 {
                exact.clear();
            }
            out.push((exact, prefix));
        }
        out
    }

    #[test]
    fn compact_and_hashed_tables_agree_with_the_reference() {
        for (exact, prefix) in tables() {
            let table = PathTable::new("h.example", exact.clone(), prefix.clone());
            let small = exact.len() + prefix.len() <= SMALL_PATHS;
            assert_eq!(matches!(table.0, Repr::Small(_)), small);
            for r in REQUESTS {
                assert_eq!(
                    table.find(r),
                    reference(&exact, &prefix, r),
                    "{r} in exact {exact:?} prefix {prefix:?}"
                );
                assert_eq!(table.find_exact(r), reference(&exact, &[], r));
            }
            assert_eq!(table.len(), exact.len() + prefix.len());
            assert_eq!(table.host(), "h.example");
        }
    }

    #[test]
    fn long_names_and_paths_fall_back_to_maps() {
        let long_host = "h".repeat(300);
        let table = PathTable::new(&long_host, [], [("/a", 1)]);
        assert!(matches!(table.0, Repr::Large(_)));
        assert_eq!((table.host(), table.find("/a/b")), (long_host.as_str(), Some(1)));

        let long_path = format!("/{}", "p".repeat(70_000));
        let table = PathTable::new("h", [(long_path.as_str(), 2)], []);
        assert!(matches!(table.0, Repr::Large(_)));
        assert_eq!(table.find(&long_path), Some(2));
    }

    #[test]
    fn routes_are_renumbered_in_both_forms() {
        for n in [2, SMALL_PATHS + 1] {
            let paths: Vec<String> = (0..n).map(|i| format!("/p{i}")).collect();
            let mut table = PathTable::new("h", [("/e", 7)], paths.iter().map(|p| (p.as_str(), 1)));
            table.map_routes(|id| id + 10);
            assert_eq!((table.find("/e"), table.find("/p1/x")), (Some(17), Some(11)));
            assert!(table.iter().all(|(_, _, id)| id == 17 || id == 11));
        }
    }
}
