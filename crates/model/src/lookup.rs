use std::borrow::Cow;

use crate::record::{ELSEWHERE, INLINE_REGEX, MAX_NAME, REGEX, Record};
use crate::{Route, RouteId, RoutingTable};

/// The result of a lookup: the route, its id, and whether a host matched by name.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The matched route (possibly a default route).
    pub route: &'a Route,
    /// Its index in the table.
    pub id: RouteId,
}

impl RoutingTable {
    /// Finds the route for a request.
    ///
    /// `host` is the raw `Host` header (or `:authority`): the port is stripped and the name
    /// compared case-insensitively. `path` is the raw request path without the query; it is
    /// normalised as NGINX does before matching (percent-decoding, merged slashes, dot segments
    /// resolved), so `/public/../admin` matches the `/admin` rule, never `/public`.
    ///
    /// No allocation unless the path needs normalising (or the host is longer than a host name
    /// can be and has upper-case letters).
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let record = match host_name(host) {
            (name, false) => self.host_index.find(name.as_bytes()),
            // Lower-cased on the stack: host names are short.
            (name, true) if name.len() <= MAX_NAME => {
                let mut buf = [0; MAX_NAME];
                let lower = &mut buf[..name.len()];
                lower.copy_from_slice(name.as_bytes());
                lower.make_ascii_lowercase();
                self.host_index.find(lower)
            }
            (name, true) => self.host_index.find(name.to_ascii_lowercase().as_bytes()),
        };
        let path = normalize_path(path);
        let id = self.match_path(record, &path);
        Lookup { route: &self.routes[id as usize], id }
    }

    /// [`lookup`](Self::lookup) of a host [`normalize_host`] already gave: the proxy
    /// normalises once per request, for the lookup and the other phases.
    pub fn lookup_normalized(&self, host: &str, path: &str) -> Lookup<'_> {
        debug_assert_eq!(normalize_host(host), host);
        let record = self.host_index.find(host.as_bytes());
        let path = normalize_path(path);
        let id = self.match_path(record, &path);
        Lookup { route: &self.routes[id as usize], id }
    }

    /// The route of `path` on the host of `record`: an exact match, else the longest prefix
    /// (or, on a host in regex mode, which has no prefix paths, the first matching regex),
    /// else the host's default. Most hosts are matched in their record alone; only hosts with
    /// many (or very long) paths or regexes go on to their [`HostRoutes`](crate::HostRoutes).
    fn match_path(&self, record: Record<'_>, path: &str) -> RouteId {
        let found = match record.flags() {
            0 => record.find(path, true),
            INLINE_REGEX => record
                .find(path, false)
                .or_else(|| record.first_regex(path, self.host_index.locations())),
            flags => {
                let inline = if flags & ELSEWHERE == 0 { record.find(path, false) } else { None };
                inline.or_else(|| {
                    let host = &self.hosts[record.index() as usize];
                    let listed = match (flags & ELSEWHERE != 0, flags & REGEX != 0) {
                        (false, _) => None,
                        (true, false) => host.paths.find(path),
                        (true, true) => host.paths.find_exact(path),
                    };
                    listed.or_else(|| host.regex.as_ref()?.first_match(path))
                })
            }
        };
        found.unwrap_or(record.default_route())
    }
}

/// Lower-cases a host and strips its port and any trailing dot; borrows when nothing changes.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    match host_name(host) {
        (name, true) => Cow::Owned(name.to_ascii_lowercase()),
        (name, false) => Cow::Borrowed(name),
    }
}

/// A host without its port and trailing dot, and whether it has upper-case letters.
fn host_name(host: &str) -> (&str, bool) {
    // One pass without early exit, which the compiler vectorises: most hosts have neither a
    // port nor upper case, and byte-at-a-time searches for each were a third of a lookup.
    let (mut colon, mut upper) = (false, false);
    for &c in host.as_bytes() {
        colon |= c == b':';
        upper |= c.is_ascii_uppercase();
    }
    let name = if !colon {
        host
    } else if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal keeps its brackets: `[::1]:8080` -> `[::1]`.
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (name, upper && name.bytes().any(|b| b.is_ascii_uppercase()))
}

/// Normalises a request path for matching, as NGINX does before choosing a location:
/// percent-escapes decoded, repeated slashes merged, `.` and `..` segments resolved (never
/// above the root). Always absolute: a path without its leading `/` (which the proxy refuses
/// before routing, as NGINX does) gets one. Borrows when the path is already normal, which
/// is the common case.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let b = path.as_bytes();
    // Passes without early exit, which the compiler vectorises (see `normalize_host`).
    let escaped = b.iter().fold(false, |found, &c| found | (c == b'%'));
    let dot_or_slash = b.iter().zip(&b[b.len().min(1)..]).fold(false, |found, (&c, &next)| {
        found | ((c == b'/') & ((next == b'/') | (next == b'.')))
    });
    let needs_work = escaped || dot_or_slash || !path.starts_with('/');
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(b);
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing_slash =
        decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push(b'/');
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    fn hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert!(matches!(normalize_host("plain.example"), Cow::Borrowed(_)));
        assert!(matches!(normalize_host("plain.example:8080"), Cow::Borrowed(_)));
        assert!(matches!(normalize_host("plain.example:ABC"), Cow::Borrowed(_)));
        assert_eq!(
            normalize_host("a-very-long-name.with.Upper.case.example.com"),
            "a-very-long-name.with.upper.case.example.com"
        );
        assert_eq!(normalize_host("UPPER"), "upper");
        assert_eq!(normalize_host(""), "");
    }

    #[test]
    fn paths_are_normalised_like_nginx() {
        assert!(matches!(normalize_path("/a/b/c"), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/a//b"), "/a/b");
        assert_eq!(normalize_path("/public/../admin"), "/admin");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/%61lpha"), "/alpha");
        assert_eq!(normalize_path("/%2e%2e/admin"), "/admin");
        assert_eq!(normalize_path("/bad%zzescape%"), "/bad%zzescape%");
        assert_eq!(normalize_path(""), "/");
        // Found by the `normalize_path` fuzz target: the result is always absolute.
        assert_eq!(normalize_path("abc"), "/abc");
        assert_eq!(normalize_path("*"), "/*");
        assert_eq!(normalize_path("a/../.."), "/");
        assert_eq!(normalize_path("/."), "/");
        assert_eq!(
            normalize_path("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q//r"),
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r"
        );
        assert_eq!(
            normalize_path("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/%72"),
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r"
        );
        assert_eq!(
            normalize_path("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/."),
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/"
        );
        for normal in ["/", "/a.b", "/a/b.c/d", "/.well-known", "/a/.b"] {
            assert!(
                matches!(normalize_path(normal), Cow::Borrowed(_)) == !normal.contains("/."),
                "{normal}"
            );
        }
    }
}
