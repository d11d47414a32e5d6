//! The request mix of the lookup tail benchmark (`lookup-p99`), shared with the example that
//! counts its instructions and cache misses under valgrind (`lookup_misses`), so that both
//! look up the same requests.
//!
//! The mix is spread over many hosts of the large table (so the caches see different hosts, as
//! a proxy does): exact hosts with a deep prefix and with an Exact path, wildcard hosts, regex
//! hosts whose first regex matches, whose last regex matches, and where none does (the host's
//! 404), hosts with upper case and a port, and unknown hosts (the table's 404).

use sluice_model::{PathMatch, RoutingTable, Target};

use crate::{REGEX_PATHS, host, is_regex, wildcard_host};

/// Requests per case in one round.
pub const PER_CASE: usize = 2_000;

/// The cases, in the order of [`Request::case`].
pub const CASES: [&str; 8] = [
    "exact host, deep prefix",
    "exact host, Exact path",
    "wildcard host",
    "regex host, first regex",
    "regex host, last regex",
    "regex host, no match (404)",
    "host with upper case and port",
    "unknown host (404)",
];

/// What a request must find: a path of its host, or a 404.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// The route of this path (as written) on the request's host.
    Path(&'static str),
    /// A built-in 404 (a default route).
    NotFound,
}

/// One request of the mix.
#[derive(Clone, Debug)]
pub struct Request {
    /// Its case: an index in [`CASES`].
    pub case: usize,
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: &'static str,
    /// The route's host, checked with `expect`.
    pub route_host: Option<String>,
    /// Where it must land.
    pub expect: Expect,
}

/// A deterministic pseudo-random sequence (an LCG), so every run times the same requests.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// [`PER_CASE`] requests of each case over a table of `ingresses` Ingresses
/// ([`generate`](crate::generate)), shuffled, so consecutive lookups go to different hosts and
/// cases. The same every time.
pub fn requests(ingresses: usize) -> Vec<Request> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    let pick = |rng: &mut Lcg, want_regex: bool, step: usize| loop {
        let i = rng.below(ingresses / step) * step;
        let i = if want_regex { i + 5 } else { i };
        if i < ingresses && is_regex(i) == want_regex {
            return i;
        }
    };
    for _ in 0..PER_CASE {
        let i = pick(&mut rng, false, 1);
        let r = pick(&mut rng, true, 10);
        let w = pick(&mut rng, false, 10);
        let rows = [
            (
                host(i),
                "/api/v1/users/42/profile/settings",
                Some(host(i)),
                Expect::Path("/api/v1/users"),
            ),
            (host(i), "/healthz", Some(host(i)), Expect::Path("/healthz")),
            (
                format!("tenant-7.{}", host(w)),
                "/api/orders/17",
                Some(wildcard_host(w)),
                Expect::Path("/api"),
            ),
            (host(r), "/api/v2/users/42", Some(host(r)), Expect::Path(REGEX_PATHS[0].0)),
            (host(r), "/api/orders/17", Some(host(r)), Expect::Path("/api")),
            (host(r), "/index.html", None, Expect::NotFound),
            (
                format!("{}:8080", host(i).to_ascii_uppercase()),
                "/api/v1/users/42",
                Some(host(i)),
                Expect::Path("/api/v1/users"),
            ),
            (format!("unknown-{i}.example.org"), "/index.html", None, Expect::NotFound),
        ];
        for (case, (h, path, route_host, expect)) in rows.into_iter().enumerate() {
            out.push(Request { case, host: h, path, route_host, expect });
        }
    }
    // Shuffle (Fisher-Yates), so consecutive lookups go to different hosts and cases.
    for k in (1..out.len()).rev() {
        out.swap(k, rng.below(k + 1));
    }
    out
}

/// Panics unless `req` lands on `table` where its case says.
pub fn check(table: &RoutingTable, req: &Request) {
    let route = table.lookup(&req.host, req.path).route;
    match req.expect {
        Expect::Path(p) => {
            assert_eq!(route.path, p, "{} {}{}", CASES[req.case], req.host, req.path);
            assert_eq!(Some(&*route.host), req.route_host.as_deref(), "{}", CASES[req.case]);
        }
        Expect::NotFound => assert!(
            route.path_match == PathMatch::Default
                && matches!(route.target, Target::Respond { status: 404, .. }),
            "{} {}{}: {route:?}",
            CASES[req.case],
            req.host,
            req.path
        ),
    }
}
