//! Regex paths (`use-regex`, `rewrite-target`) as ingress-nginx renders them for NGINX.
//!
//! - A host in regex mode turns each non-`Exact` path into the location `~* "^<path>"`: a
//!   case-insensitive PCRE anchored at the start of the normalised request path (only the
//!   start: `^/a|/b` matches `/b` anywhere, as in NGINX). Locations are ordered longest path
//!   first (ties: path descending) and the FIRST that matches wins, not the longest match.
//! - `rewrite-target` renders `rewrite "(?i)<path>" <target> break;`: the same pattern,
//!   unanchored, replaces the whole URI with the target, where `$1`..`$9` are its capture
//!   groups; the client's query string is appended unless the target has its own (then it
//!   follows the target's, after `&`) or ends with `?` (then it is dropped).
//!
//! Patterns are compiled by the `regex` crate in byte mode without Unicode, which is closest to
//! NGINX's PCRE (no UTF mode): `.` is one byte, `\d`/`\w` and case folding are ASCII. Lookaround
//! and backreferences are not supported (a path using them is reported and dropped). Each
//! compiled pattern is capped at [`SIZE_LIMIT`] so that a hostile pattern cannot exhaust memory.

use std::fmt;
use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use crate::RouteId;

/// Largest compiled size of one path pattern (and of a host's lazy DFA cache): small paths
/// need a few KiB; a pattern like `(a{1000}){1000}` is refused instead of taking memory.
pub const SIZE_LIMIT: usize = 1 << 20;

/// Above this many regex paths a host also gets a [`RegexSet`]: one pass finds every matching
/// pattern, where trying the patterns in turn costs one search each (measured: the set wins on
/// a miss from about 5 patterns, trying in turn wins for fewer and for early hits).
const SET_THRESHOLD: usize = 4;

/// Patterns per host resolved with a stack buffer; beyond, the set's answer is allocated.
const STACK_PATTERNS: usize = 64;

fn builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false).size_limit(SIZE_LIMIT).dfa_size_limit(SIZE_LIMIT);
    b
}

/// Compiles an Ingress path as ingress-nginx's location `~* "^<path>"`; `Err` says why the
/// pattern is not a valid (or supported) regex.
pub fn location_regex(path: &str) -> Result<Regex, String> {
    builder(&format!("(?i)^{path}")).build().map_err(|e| one_line(&e.to_string()))
}

/// The regex error on one line (the crate's messages draw the pattern over several lines).
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A host's regex paths in ingress-nginx's location order, each with its route.
#[derive(Clone)]
pub struct RegexPaths {
    /// `(path as written, its location regex, route)`, in match order. The regex is shared
    /// by every host with the same path (compiled once per table), and so is its match cache,
    /// which then stays warm.
    paths: Vec<(Box<str>, Arc<Regex>, RouteId)>,
    /// Every pattern at once, for hosts with many paths (see [`SET_THRESHOLD`]).
    set: Option<RegexSet>,
}

impl RegexPaths {
    /// Orders `paths` as ingress-nginx orders locations (longest path first, then path
    /// descending) and indexes them. Each regex must come from [`location_regex`] of its path.
    pub fn new(mut paths: Vec<(String, Arc<Regex>, RouteId)>) -> Self {
        paths.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| b.0.cmp(&a.0)));
        let set = (paths.len() > SET_THRESHOLD)
            .then(|| {
                // The patterns compiled one by one, so the set only fails on its total size;
                // trying them in turn then still answers correctly.
                RegexSetBuilder::new(paths.iter().map(|(_, r, _)| r.as_str()))
                    .unicode(false)
                    .size_limit(SIZE_LIMIT * 8)
                    .dfa_size_limit(SIZE_LIMIT)
                    .build()
                    .ok()
            })
            .flatten();
        let paths = paths.into_iter().map(|(p, r, id)| (p.into_boxed_str(), r, id)).collect();
        Self { paths, set }
    }

    /// The route of the first path whose pattern matches the normalised request `path`.
    pub fn first_match(&self, path: &str) -> Option<RouteId> {
        let hay = path.as_bytes();
        let Some(set) = &self.set else {
            return self.paths.iter().find(|(_, r, _)| r.is_match(hay)).map(|&(_, _, id)| id);
        };
        let first = if set.len() <= STACK_PATTERNS {
            let mut hits = [false; STACK_PATTERNS];
            let hits = &mut hits[..set.len()];
            if !set.matches_read_at(hits, hay, 0) {
                return None;
            }
            hits.iter().position(|&h| h)
        } else {
            set.matches(hay).iter().next()
        };
        first.map(|i| self.paths[i].2)
    }

    /// Renumbers the routes: each id becomes `f(id)` (paths moved into another table).
    pub fn map_routes(&mut self, f: impl Fn(RouteId) -> RouteId) {
        for (_, _, id) in &mut self.paths {
            *id = f(*id);
        }
    }

    /// How many regex paths the host has.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when the host has none.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths as written, in match order, with their routes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, RouteId)> {
        self.paths.iter().map(|(p, _, id)| (&**p, *id))
    }
}

impl fmt::Debug for RegexPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for RegexPaths {
    /// In match order, as `[path, route]` pairs.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.paths.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

/// One piece of a rewrite target.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    /// `$1`..`$9`: a capture group of the path's pattern (empty when it did not participate).
    Capture(usize),
}

/// A parsed `rewrite-target`: where the request path of a route is rewritten to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteTarget {
    source: Box<str>,
    path: Vec<Piece>,
    /// Text after the first `?`, if any: the new query string.
    query: Option<Vec<Piece>>,
    /// The client's query string is appended (the target does not end with `?`).
    keep_args: bool,
}

impl RewriteTarget {
    /// Parses a target as NGINX's `rewrite` replacement: `$1`..`$9` are capture groups (one
    /// digit, so `$10` is `$1` then `0`); a `?` starts the new query string; a final `?` drops
    /// the client's. Other NGINX variables (`$host`, `${…}`), absolute URLs (which NGINX turns
    /// into a redirect) and characters outside RFC 3986 are refused.
    pub fn parse(target: &str) -> Result<Self, String> {
        if target.is_empty() {
            return Err("the target is empty".into());
        }
        let lower = target.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("$scheme")
        {
            return Err(
                "a target with a scheme makes NGINX redirect, which Sluice does not do".into()
            );
        }
        if let Some(c) = target.chars().find(|&c| !uri_char(c)) {
            return Err(format!("{c:?} is not allowed in a target"));
        }
        let (body, keep_args) = match target.strip_suffix('?') {
            Some(b) => (b, false),
            None => (target, true),
        };
        let (path, query) = match body.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (body, None),
        };
        Ok(Self {
            source: target.into(),
            path: pieces(path)?,
            query: query.map(pieces).transpose()?,
            keep_args,
        })
    }

    /// The target as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Characters a target may hold: RFC 3986 unreserved, sub-delims, `:@/?%` (and `$` for
/// captures, which is a sub-delim).
fn uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c)
}

fn pieces(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some(d @ '1'..='9') => {
                if !literal.is_empty() {
                    out.push(Piece::Literal(std::mem::take(&mut literal).into()));
                }
                out.push(Piece::Capture(d as usize - '0' as usize));
            }
            Some(other) => {
                return Err(format!(
                    "only the capture groups $1 to $9 are supported, not ${other}…"
                ));
            }
            None => return Err("a target cannot end with a lone $".into()),
        }
    }
    if !literal.is_empty() {
        out.push(Piece::Literal(literal.into()));
    }
    Ok(out)
}

/// A route's `rewrite-target`: the path's pattern (unanchored, case-insensitive, as NGINX's
/// `rewrite "(?i)<path>"`) and the target. The proxy applies it with [`Rewrite::apply`].
#[derive(Clone)]
pub struct Rewrite {
    path: Box<str>,
    regex: Regex,
    target: RewriteTarget,
}

impl Rewrite {
    /// The rewrite of a route whose Ingress path is `path`; `Err` if the path is not a valid
    /// regex.
    pub fn new(path: &str, target: RewriteTarget) -> Result<Self, String> {
        let regex =
            builder(&format!("(?i){path}")).build().map_err(|e| one_line(&e.to_string()))?;
        Ok(Self { path: path.into(), regex, target })
    }

    /// The target as written.
    pub fn target(&self) -> &str {
        self.target.as_str()
    }

    /// The path and query to send upstream for a request whose normalised path is `path`
    /// (percent-decoded, as NGINX's `$uri`) and query string `query`; `None` when the pattern
    /// does not match (NGINX then leaves the URI alone).
    ///
    /// The new path is percent-escaped as NGINX escapes a rewritten URI when proxying (space,
    /// `#`, `%`, `?`, controls, non-ASCII), plus the characters an HTTP request line cannot
    /// carry; captured text in the query is escaped like an argument.
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let caps = self.regex.captures(path.as_bytes())?;
        let capture = |n: usize| caps.get(n).map_or(&b""[..], |m| m.as_bytes());
        let mut out = String::with_capacity(path.len() + self.target.source.len());
        for piece in &self.target.path {
            match piece {
                Piece::Literal(s) => escape(&mut out, s.as_bytes(), PATH_KEEP),
                Piece::Capture(n) => escape(&mut out, capture(*n), PATH_KEEP),
            }
        }
        if !out.starts_with('/') {
            // NGINX would send a request line without a leading slash; no server accepts it.
            out.insert(0, '/');
        }
        let mut args = String::new();
        for piece in self.target.query.iter().flatten() {
            match piece {
                Piece::Literal(s) => args.push_str(s),
                Piece::Capture(n) => escape(&mut args, capture(*n), ARG_KEEP),
            }
        }
        if self.target.keep_args
            && let Some(q) = query.filter(|q| !q.is_empty())
        {
            if !args.is_empty() {
                args.push('&');
            }
            args.push_str(q);
        }
        if !args.is_empty() {
            out.push('?');
            out.push_str(&args);
        }
        Some(out)
    }
}

/// Punctuation kept as is in a rewritten path (RFC 3986 pchar and `/`).
const PATH_KEEP: &str = "-._~!$&'()*+,;=:@/";
/// Punctuation kept as is in captured text placed in the query (NGINX escapes `&`, `+`, `;`).
const ARG_KEEP: &str = "-._~!$'()*,=:@/?";

fn escape(out: &mut String, bytes: &[u8], keep: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || (b.is_ascii() && keep.as_bytes().contains(&b)) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewrite").field("path", &self.path).field("target", &self.target()).finish()
    }
}

impl PartialEq for Rewrite {
    /// Rewrites are equal when built from the same path and target.
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.target == other.target
    }
}

impl Eq for Rewrite {}

impl Serialize for Rewrite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Rewrite", 2)?;
        st.serialize_field("path", &*self.path)?;
        st.serialize_field("target", self.target())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> RegexPaths {
        RegexPaths::new(
            list.iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), Arc::new(location_regex(p).unwrap()), i as RouteId))
                .collect(),
        )
    }

    #[test]
    fn first_match_in_ingress_nginx_order_with_and_without_a_set() {
        // Route ids are the index in this list; match order is longest first.
        let few = paths(&["/", "/api", "/api/v[0-9]+"]);
        assert_eq!(few.iter().map(|(p, _)| p).collect::<Vec<_>>(), ["/api/v[0-9]+", "/api", "/"]);
        assert!(few.set.is_none());
        assert_eq!(few.first_match("/api/v2/x"), Some(2));
        assert_eq!(few.first_match("/apiary"), Some(1), "anchored at the start only");
        assert_eq!(few.first_match("/API/V2"), Some(2), "case-insensitive");
        assert_eq!(few.first_match("/other"), Some(0));

        // First match, not longest: `/a.*` (4 bytes) comes before `/abc` (4 bytes, but `/abc`
        // > `/a.*` so it is first), and the long `/x/[0-9]+/.*` before both.
        let many = paths(&["/", "/a.*", "/abc", "/x/[0-9]+/.*", "/b", "/c", "/static/.*\\.css"]);
        assert!(many.set.is_some());
        assert_eq!(many.first_match("/abc/d"), Some(2));
        assert_eq!(many.first_match("/abd"), Some(1));
        assert_eq!(many.first_match("/x/12/y"), Some(3));
        assert_eq!(many.first_match("/STATIC/a/b.CSS"), Some(6));
        assert_eq!(many.first_match("/b"), Some(4));
        assert_eq!(many.first_match("/zzz"), Some(0));
        let none = paths(&["/a", "/b", "/c", "/d", "/e"]);
        assert_eq!(none.first_match("/zzz"), None);
    }

    #[test]
    fn hostile_and_invalid_patterns_are_refused() {
        assert!(location_regex("/(a{1000}){1000}").unwrap_err().contains("size limit"));
        assert!(location_regex("/(unclosed").is_err());
        assert!(location_regex("/(?=lookahead)").is_err());
        // Non-ASCII literals still compile (matched as their UTF-8 bytes).
        assert!(location_regex("/café").unwrap().is_match("/CAFé".as_bytes()));
    }

    fn rewrite(path: &str, target: &str) -> Rewrite {
        Rewrite::new(path, RewriteTarget::parse(target).unwrap()).unwrap()
    }

    #[test]
    fn rewrites_like_nginx() {
        let r = rewrite("/something(/|$)(.*)", "/$2");
        assert_eq!(r.apply("/something/new", None).as_deref(), Some("/new"));
        assert_eq!(r.apply("/something", None).as_deref(), Some("/"));
        assert_eq!(r.apply("/SOMETHING/a/b", Some("x=1")).as_deref(), Some("/a/b?x=1"));
        assert_eq!(r.apply("/other", None), None);
        // The whole URI is replaced, not only the matched text.
        assert_eq!(rewrite("/api", "/").apply("/api/users", Some("q")).as_deref(), Some("/?q"));
        // The target's own query comes first; a final `?` drops the client's.
        let q = rewrite("/a/(.*)", "/b?id=$1");
        assert_eq!(q.apply("/a/7", Some("x=1")).as_deref(), Some("/b?id=7&x=1"));
        assert_eq!(
            rewrite("/a/(.*)", "/b/$1?").apply("/a/7", Some("x=1")).as_deref(),
            Some("/b/7")
        );
        // Captured (decoded) text is escaped again; missing groups are empty; `$10` is `$1`0.
        let e = rewrite("/a/(.*)", "/$1/$2$10");
        assert_eq!(e.apply("/a/x y%#", None).as_deref(), Some("/x%20y%25%23/x%20y%25%230"));
        assert_eq!(rewrite("/a(.*)", "$1").apply("/ab", None).as_deref(), Some("/b"));
    }

    #[test]
    fn targets_are_validated() {
        assert!(RewriteTarget::parse("/$1/x?a=b&c=$2").is_ok());
        for bad in [
            "",
            "http://x/$1",
            "https://x",
            "$scheme://$host/$1",
            "/$host",
            "/${1}",
            "/a b",
            "/a\n",
            "/$",
        ] {
            assert!(RewriteTarget::parse(bad).is_err(), "{bad:?}");
        }
    }
}
