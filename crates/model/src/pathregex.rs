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
use regex_syntax::hir::{Class, Hir, HirKind, Look};
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
pub fn location_regex(path: &str) -> Result<Location, String> {
    let pattern = format!("(?i)^{path}");
    let regex = builder(&pattern).build().map_err(|e| one_line(&e.to_string()))?;
    let (prefix, literal) = literal_prefix(&pattern);
    Ok(Location { regex, prefix: prefix.into(), literal })
}

/// An Ingress path compiled as a location regex ([`location_regex`]), with its literal
/// prefix.
#[derive(Clone, Debug)]
pub struct Location {
    regex: Regex,
    /// In lower case: every path the regex matches starts with it, ASCII case aside.
    prefix: Box<[u8]>,
    /// The regex matches exactly the paths that start with `prefix`, ASCII case aside.
    literal: bool,
}

impl Location {
    /// Whether the location matches a normalised request path.
    pub fn is_match(&self, path: &[u8]) -> bool {
        starts_with_ignore_case(path, &self.prefix) && (self.literal || self.regex.is_match(path))
    }

    /// The compiled regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// The literal prefix (lower case), and whether it is the whole pattern.
    pub fn prefix(&self) -> (&[u8], bool) {
        (&self.prefix, self.literal)
    }
}

/// True when `path` starts with `prefix` (lower case), ASCII case aside: how `(?i)` without
/// Unicode compares letters.
pub(crate) fn starts_with_ignore_case(path: &[u8], prefix: &[u8]) -> bool {
    path.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// What every match of `pattern` (a location regex, `(?i)^...`) starts with, in lower case, and
/// whether the pattern is that literal alone. Read from the parsed pattern: after the start
/// anchor, the literal bytes and ASCII letters in either case (how `(?i)` spells a letter) up to
/// the first anything else (a class, a repetition, a group). Any doubt gives an empty prefix,
/// which every path starts with: the regex then decides alone.
fn literal_prefix(pattern: &str) -> (Vec<u8>, bool) {
    let parsed =
        regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(pattern);
    let Ok(hir) = parsed else { return (Vec::new(), false) };
    let parts: &[Hir] = match hir.kind() {
        HirKind::Concat(parts) => parts,
        _ => std::slice::from_ref(&hir),
    };
    let mut parts = parts.iter().peekable();
    // Not anchored at the start (a top-level alternation, `^/a|/b`, anchors only its first
    // branch): no prefix.
    if !matches!(parts.next().map(Hir::kind), Some(HirKind::Look(Look::Start))) {
        return (Vec::new(), false);
    }
    while parts.next_if(|h| matches!(h.kind(), HirKind::Look(Look::Start))).is_some() {}
    let mut prefix = Vec::new();
    // A letter matched in one case only (`(?-i)`) is compared in any case here, which lets
    // more paths through to the regex, never fewer; but then the prefix is not the pattern.
    let mut folded = true;
    for part in parts.by_ref() {
        match part.kind() {
            HirKind::Literal(lit) => {
                folded &= !lit.0.iter().any(u8::is_ascii_alphabetic);
                prefix.extend(lit.0.iter().map(u8::to_ascii_lowercase));
            }
            HirKind::Class(Class::Bytes(class)) => match class.ranges() {
                [upper, lower]
                    if upper.start() == upper.end()
                        && lower.start() == lower.end()
                        && upper.start().is_ascii_uppercase()
                        && upper.start().to_ascii_lowercase() == lower.start() =>
                {
                    prefix.push(lower.start())
                }
                _ => return (prefix, false),
            },
            _ => return (prefix, false),
        }
    }
    (prefix, folded)
}

/// The regex error on one line (the crate's messages draw the pattern over several lines).
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A host's regex paths in ingress-nginx's location order, each with its route.
#[derive(Clone)]
pub struct RegexPaths {
    /// `(path as written, its location, route)`, in match order. The location is shared by
    /// every host with the same path (compiled once per table), and so is its regex's match
    /// cache, which then stays warm.
    paths: Vec<(Box<str>, Arc<Location>, RouteId)>,
    /// Every pattern at once, for hosts with many paths (see [`SET_THRESHOLD`]).
    set: Option<RegexSet>,
}

impl RegexPaths {
    /// Orders `paths` as ingress-nginx orders locations (longest path first, then path
    /// descending) and indexes them. Each location must come from [`location_regex`] of its
    /// path.
    pub fn new(mut paths: Vec<(String, Arc<Location>, RouteId)>) -> Self {
        paths.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| b.0.cmp(&a.0)));
        let set = (paths.len() > SET_THRESHOLD)
            .then(|| {
                // The patterns compiled one by one, so the set only fails on its total size;
                // trying them in turn then still answers correctly.
                RegexSetBuilder::new(paths.iter().map(|(_, l, _)| l.regex.as_str()))
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
            return self.paths.iter().find(|(_, l, _)| l.is_match(hay)).map(|&(_, _, id)| id);
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

    /// The locations in match order, with their routes, when they are tried one after the
    /// other (no [`RegexSet`]).
    pub(crate) fn in_turn(&self) -> Option<impl Iterator<Item = (&Arc<Location>, RouteId)>> {
        self.set.is_none().then(|| self.paths.iter().map(|(_, l, id)| (l, *id)))
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
    fn literal_prefixes_are_read_from_the_pattern() {
        let prefix = |p: &str| {
            let (prefix, literal) = literal_prefix(&format!("(?i)^{p}"));
            (String::from_utf8(prefix).unwrap(), literal)
        };
        let yes = |s: &str| (s.to_string(), true);
        let no = |s: &str| (s.to_string(), false);
        assert_eq!(prefix("/api/v[0-9]+/users/([0-9]+)"), no("/api/v"));
        assert_eq!(prefix(r"/static/.*\.(css|js)"), no("/static/"));
        assert_eq!(prefix("/API"), yes("/api"));
        assert_eq!(prefix(""), yes(""));
        assert_eq!(prefix("/"), yes("/"));
        assert_eq!(prefix(r"/a\.b-c_d~e"), yes("/a.b-c_d~e"));
        assert_eq!(prefix("/café"), yes("/café"));
        assert_eq!(prefix("/api/v+"), no("/api/"), "a repeated letter is not in the prefix");
        assert_eq!(prefix("/api/v?"), no("/api/"));
        assert_eq!(prefix("/api/v{0,2}"), no("/api/"));
        assert_eq!(prefix("/a$"), no("/a"), "an end anchor is not a literal");
        assert_eq!(prefix("^/a"), yes("/a"), "a second start anchor changes nothing");
        assert_eq!(prefix("/a|/b"), no(""), "only the first branch is anchored");
        assert_eq!(prefix("(/a|/b)"), no(""));
        assert_eq!(prefix("/x(/a|/b)"), no("/x"));
        assert_eq!(prefix("/[a]b"), yes("/ab"), "a one-letter class is that letter");
        assert_eq!(prefix("/(?-i)AB/c"), no("/ab/c"), "compared in any case, not the pattern");
        assert_eq!(prefix("/(?-i:x)y"), no("/xy"));
        assert_eq!(prefix(r"/\d"), no("/"));
        assert_eq!(prefix(r"/a\b"), no("/a"));
        assert_eq!(prefix("(?x)/a b"), yes("/ab"), "flags as the regex reads them");
        assert_eq!(prefix("/(unclosed"), no(""));
    }

    /// Over patterns of every kind and paths near them, a location answers as its regex does:
    /// the prefix turns away no path the regex matches, and a literal pattern needs no regex.
    #[test]
    fn locations_match_as_their_regex_does() {
        let patterns = [
            "",
            "/",
            "/api",
            "/api/",
            "/api/v[0-9]+/users/([0-9]+)",
            r"/static/.*\.(css|js)",
            "/a|/b",
            "/a$",
            "/(?-i)AbC",
            "/ab(?-i:C)d",
            "/Ab+c",
            "/ab?c",
            "/ab*",
            "/(a|b)c",
            r"/x\.y",
            "/café",
            "^/Z",
            "/[Aa]pi",
            "/.*",
            "(?m)/a$",
            r"/a\b",
        ];
        let stems = ["", "/", "/a", "/A", "/ab", "/aB", "/abc", "/AbC", "/abd", "/ac", "/bc", "/b"];
        let more = ["/api", "/API/V2/users/7", "/api/v/users/1", "/static/x.CSS", "/static/x.cs"];
        let tails = ["", "/", "x", "/x", "$", ".", "c", "C", "d"];
        let mut paths: Vec<String> = Vec::new();
        for stem in stems.iter().chain(&more).chain(&["/x.y", "/xzy", "/CAFé", "/CAFÉ", "/z"]) {
            for tail in tails {
                paths.push(format!("{stem}{tail}"));
                paths.push(format!("/q{stem}{tail}"));
            }
        }
        for p in patterns {
            let location = location_regex(p).unwrap();
            let regex = builder(&format!("(?i)^{p}")).build().unwrap();
            for path in &paths {
                let hay = path.as_bytes();
                assert_eq!(location.is_match(hay), regex.is_match(hay), "{p:?} on {path:?}");
            }
        }
    }

    #[test]
    fn hostile_and_invalid_patterns_are_refused() {
        assert!(location_regex("/(a{1000}){1000}").unwrap_err().contains("size limit"));
        assert!(location_regex("/(unclosed").is_err());
        assert!(location_regex("/(?=lookahead)").is_err());
        // Non-ASCII literals still compile (matched as their UTF-8 bytes).
        assert!(location_regex("/café").unwrap().is_match("/CAFé".as_bytes()));
        assert!(!location_regex("/café").unwrap().is_match("/CAFÉ".as_bytes()), "ASCII folding");
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
