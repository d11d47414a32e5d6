//! A host's record: everything a lookup reads about a host once its slot led there, in one run
//! of bytes in the [`HostIndex`](crate::HostIndex)'s arena.
//!
//! Layout (integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 0 | name length |
//! | 1 | flags: [`REGEX`], [`ELSEWHERE`], [`INLINE_REGEX`] |
//! | 2 | `Exact` paths inline |
//! | 3 | `Prefix` paths inline, or with [`INLINE_REGEX`] regexes inline |
//! | 4..8 | the host's index in [`RoutingTable::hosts`](crate::RoutingTable::hosts) |
//! | 8..12 | its default route |
//! | 12.. | its name as written (`*.example.com`, `""` for the catch-all) |
//!
//! then each path as `[length: u8][route: u32][path]`: the `Exact` paths, then the `Prefix`
//! paths (without trailing slashes) longest first, so that the first prefix that matches is the
//! longest (two of the same length cannot both match). A typical host (a name of 25 bytes,
//! four paths) takes about 85 bytes: two cache lines, where the host's
//! [`HostRoutes`] and its [`PathTable`](crate::PathTable) allocation were two more misses.
//!
//! A host in regex mode (which has no `Prefix` paths) with at most 4 regexes, those it tries
//! one after the other, keeps them inline after its `Exact` paths: the number of its first
//! [`Location`] in the index's list (`u32`), then each regex in match order as
//! `[prefix length: u8][literal: u8][route: u32][prefix]`, its literal prefix in lower case
//! ([`Location::prefix`]). A regex whose prefix the path does not start with is skipped without
//! reading it, and one that is only its prefix matches without running.

use std::sync::Arc;

use crate::pathregex::starts_with_ignore_case;
use crate::{HostRoutes, Location, RouteId};

/// The host is in regex mode: after its `Exact` paths, its regexes
/// ([`HostRoutes::regex`]) are tried.
pub(crate) const REGEX: u8 = 1;
/// The host's paths are not inline (more than [`INLINE_PATHS`], or one longer than 255 bytes):
/// they are matched in [`HostRoutes::paths`].
pub(crate) const ELSEWHERE: u8 = 2;
/// The host is in regex mode and its regexes are inline, after its `Exact` paths.
pub(crate) const INLINE_REGEX: u8 = 4;

/// Paths kept inline at most: a scan of 16 short entries in two or three cache lines beats
/// the hash probes of a large table that miss.
const INLINE_PATHS: usize = 16;
const HEADER: usize = 12;
/// Bytes before a path: its length (1), its route (4).
const ENTRY_HEADER: usize = 5;
/// Bytes before a regex's prefix: its length (1), literal (1), route (4).
const REGEX_HEADER: usize = 6;

/// Host names longer than this have no record: DNS names have at most 253 bytes, 255 with `*.`.
pub(crate) const MAX_NAME: usize = u8::MAX as usize;

/// The record of `host`, which is host `index` of its table; `None` when its name is longer
/// than [`MAX_NAME`]. Inline regexes' locations are appended to `locations`, which the record
/// numbers.
pub(crate) fn encode(
    index: u32,
    host: &HostRoutes,
    locations: &mut Vec<Arc<Location>>,
) -> Option<Vec<u8>> {
    let name = host.host().as_bytes();
    if name.len() > MAX_NAME {
        return None;
    }
    let mut exact: Vec<(&str, RouteId)> = Vec::new();
    let mut prefix: Vec<(&str, RouteId)> = Vec::new();
    for (is_exact, path, id) in host.paths.iter() {
        if is_exact { &mut exact } else { &mut prefix }.push((path, id));
    }
    let mut flags = 0;
    let mut regexes: Vec<(&Arc<Location>, RouteId)> = Vec::new();
    if let Some(regex) = &host.regex {
        // Lookups try no prefix path on a host in regex mode (it has none).
        prefix.clear();
        match regex.in_turn() {
            Some(in_turn) => regexes.extend(in_turn),
            None => flags |= REGEX,
        }
    }
    let fits = |p: &[u8]| p.len() <= u8::MAX as usize;
    let inline = exact.len() + prefix.len() + regexes.len() <= INLINE_PATHS
        && exact.iter().chain(&prefix).all(|(p, _)| fits(p.as_bytes()))
        && regexes.iter().all(|(l, _)| fits(l.prefix().0));
    if !inline {
        flags |= ELSEWHERE;
        exact.clear();
        prefix.clear();
    }
    if host.regex.is_some() && flags == 0 {
        flags = INLINE_REGEX;
    } else if host.regex.is_some() {
        flags |= REGEX;
        regexes.clear();
    }
    // Sorted so that equal hosts give equal bytes; prefixes longest first.
    exact.sort_unstable();
    prefix.sort_unstable_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.cmp(b)));
    let paths: usize = exact.iter().chain(&prefix).map(|(p, _)| ENTRY_HEADER + p.len()).sum();
    let mut out = Vec::with_capacity(HEADER + name.len() + paths);
    let third = if flags == INLINE_REGEX { regexes.len() } else { prefix.len() };
    out.extend_from_slice(&[name.len() as u8, flags, exact.len() as u8, third as u8]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&host.default_route.to_le_bytes());
    out.extend_from_slice(name);
    for (path, id) in exact.iter().chain(&prefix) {
        out.push(path.len() as u8);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(path.as_bytes());
    }
    if flags == INLINE_REGEX {
        let first = u32::try_from(locations.len()).expect("fewer than 2^32 locations");
        out.extend_from_slice(&first.to_le_bytes());
        for (location, id) in regexes {
            let (prefix, literal) = location.prefix();
            out.extend_from_slice(&[prefix.len() as u8, literal.into()]);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(prefix);
            locations.push(location.clone());
        }
    }
    Some(out)
}

/// A record, read in place: the bytes from its start (they may run on past its end).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a>(pub(crate) &'a [u8]);

impl<'a> Record<'a> {
    /// The host's name as written.
    pub(crate) fn name(self) -> &'a [u8] {
        &self.0[HEADER..HEADER + self.0[0] as usize]
    }

    /// [`REGEX`] and [`ELSEWHERE`].
    pub(crate) fn flags(self) -> u8 {
        self.0[1]
    }

    /// The host's index in the table's `hosts`.
    pub(crate) fn index(self) -> u32 {
        u32_at(self.0, 4)
    }

    /// Where requests go that match no path of the host.
    pub(crate) fn default_route(self) -> RouteId {
        u32_at(self.0, 8)
    }

    /// The route of the inline path a normalised request `path` matches: an `Exact` path equal
    /// to it, else (with `prefixes`) the longest `Prefix` path it is under, element-wise.
    pub(crate) fn find(self, path: &str, prefixes: bool) -> Option<RouteId> {
        let b = self.0;
        let path = path.as_bytes();
        let mut at = HEADER + b[0] as usize;
        for _ in 0..b[2] {
            let len = b[at] as usize;
            if &b[at + ENTRY_HEADER..at + ENTRY_HEADER + len] == path {
                return Some(u32_at(b, at + 1));
            }
            at += ENTRY_HEADER + len;
        }
        if !prefixes {
            return None;
        }
        let trimmed = trim_end_slashes(path);
        for _ in 0..b[3] {
            let len = b[at] as usize;
            if under(trimmed, &b[at + ENTRY_HEADER..at + ENTRY_HEADER + len]) {
                return Some(u32_at(b, at + 1));
            }
            at += ENTRY_HEADER + len;
        }
        None
    }

    /// On a host with [`INLINE_REGEX`], the route of the first regex that matches a normalised
    /// request `path`; `locations` is the list the record numbers its regexes in.
    pub(crate) fn first_regex(self, path: &str, locations: &[Arc<Location>]) -> Option<RouteId> {
        let b = self.0;
        let path = path.as_bytes();
        let mut at = self.regexes_at();
        let first = u32_at(b, at) as usize;
        at += 4;
        for i in 0..b[3] as usize {
            let len = b[at] as usize;
            let prefix = &b[at + REGEX_HEADER..at + REGEX_HEADER + len];
            if starts_with_ignore_case(path, prefix)
                && (b[at + 1] != 0 || locations[first + i].regex().is_match(path))
            {
                return Some(u32_at(b, at + 2));
            }
            at += REGEX_HEADER + len;
        }
        None
    }

    /// Where the inline regexes start: past the `Exact` paths.
    fn regexes_at(self) -> usize {
        let b = self.0;
        let mut at = HEADER + b[0] as usize;
        for _ in 0..b[2] {
            at += ENTRY_HEADER + b[at] as usize;
        }
        at
    }

    /// The record's length in bytes.
    #[cfg(test)]
    pub(crate) fn len(self) -> usize {
        let b = self.0;
        if self.flags() == INLINE_REGEX {
            let mut at = self.regexes_at() + 4;
            for _ in 0..b[3] {
                at += REGEX_HEADER + b[at] as usize;
            }
            return at;
        }
        let mut at = HEADER + b[0] as usize;
        for _ in 0..b[2] as usize + b[3] as usize {
            at += ENTRY_HEADER + b[at] as usize;
        }
        at
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A path without its trailing slashes: `/a/` is under the prefix `/a`, and `/` under `""`.
fn trim_end_slashes(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
    &path[..end]
}

/// True when `path` (trailing slashes trimmed) is `prefix` or below it, element-wise.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix) && path.get(prefix.len()).is_none_or(|&c| c == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PathTable, RegexPaths, location_regex};

    fn host(name: &str, exact: &[(&str, RouteId)], prefix: &[(&str, RouteId)]) -> HostRoutes {
        HostRoutes {
            paths: PathTable::new(name, exact.iter().copied(), prefix.iter().copied()),
            regex: None,
            default_route: 9,
        }
    }

    #[test]
    fn records_agree_with_the_path_table() {
        let exact = [("/healthz", 1), ("/a/", 2)];
        let prefix = [("", 3), ("/a", 4), ("/a/b", 5), ("/ab", 6), ("/x/y/z", 7)];
        let h = host("h.example", &exact, &prefix);
        let bytes = encode(42, &h, &mut Vec::new()).unwrap();
        let r = Record(&bytes);
        assert_eq!((r.name(), r.flags(), r.index()), (&b"h.example"[..], 0, 42));
        assert_eq!((r.default_route(), r.len()), (9, bytes.len()));
        for path in
            ["/", "/healthz", "/healthz/", "/a", "/a/", "/a//", "/a/b/c", "/abc", "/ab/", "/x/y"]
        {
            assert_eq!(r.find(path, true), h.paths.find(path), "{path}");
            assert_eq!(r.find(path, false), h.paths.find_exact(path), "{path}");
        }
    }

    #[test]
    fn many_or_long_paths_stay_in_the_host() {
        let paths: Vec<String> = (0..=INLINE_PATHS).map(|i| format!("/p{i}")).collect();
        let many: Vec<(&str, RouteId)> = paths.iter().map(|p| (p.as_str(), 1)).collect();
        let long = format!("/{}", "p".repeat(255));
        for h in [host("h", &[], &many), host("h", &[(&long, 1)], &[])] {
            let bytes = encode(0, &h, &mut Vec::new()).unwrap();
            let r = Record(&bytes);
            assert_eq!((r.flags(), r.name(), r.len()), (ELSEWHERE, &b"h"[..], HEADER + 1));
            assert_eq!(r.find("/p1", true), None);
        }
        let bytes = encode(0, &host("h", &many[..16], &[]), &mut Vec::new()).unwrap();
        assert_eq!(Record(&bytes).flags(), 0);
        assert!(encode(0, &host(&"h".repeat(256), &[], &[]), &mut Vec::new()).is_none());
    }

    fn regex_host(exact: &[(&str, RouteId)], regexes: &[&str]) -> HostRoutes {
        let list = regexes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), Arc::new(location_regex(p).unwrap()), 10 + i as u32))
            .collect();
        HostRoutes {
            paths: PathTable::new("r.example", exact.iter().copied(), []),
            regex: Some(Box::new(RegexPaths::new(list))),
            default_route: 9,
        }
    }

    /// Up to 4 regexes are inline, in ingress-nginx's order (longest first), and answer as the
    /// host's [`RegexPaths`] do; more go through the host's set.
    #[test]
    fn regexes_are_inline_in_match_order() {
        let patterns = ["/api/v[0-9]+/users/([0-9]+)", r"/static/.*\.(css|js)", "/api", "/"];
        let h = regex_host(&[("/healthz", 1)], &patterns);
        let mut locations = vec![Arc::new(location_regex("/other").unwrap())];
        let bytes = encode(3, &h, &mut locations).unwrap();
        let r = Record(&bytes);
        assert_eq!((r.flags(), r.len(), locations.len()), (INLINE_REGEX, bytes.len(), 5));
        let regex = h.regex.as_ref().unwrap();
        for path in ["/api/v2/users/42", "/API/V2/USERS/7", "/api/orders", "/static/a.CSS", "/x"] {
            assert_eq!(r.find(path, false), None, "{path}");
            assert_eq!(r.first_regex(path, &locations), regex.first_match(path), "{path}");
        }
        assert_eq!(r.first_regex("/api", &locations), Some(12), "`/api` alone is a literal");
        assert_eq!(r.find("/healthz", false), Some(1));

        let five = regex_host(&[], &["/a", "/b", "/c", "/d", "/e"]);
        let bytes = encode(3, &five, &mut locations).unwrap();
        assert_eq!(Record(&bytes).flags(), REGEX, "five regexes go through a set");
        assert_eq!(locations.len(), 5, "none added");
        let long = format!("/{}", "p".repeat(300));
        let bytes = encode(3, &regex_host(&[], &[&long]), &mut locations).unwrap();
        assert_eq!(Record(&bytes).flags(), REGEX | ELSEWHERE, "a prefix too long to be inline");
    }
}
