//! Route lookup: `RoutingTable::lookup(host, path)` on the table translated from the large
//! synthetic snapshot (10,000 Ingresses: 10,000 exact hosts, 1,000 of them regex hosts, and
//! 1,000 wildcard hosts, four paths each; see `sluice_bench`). One iteration is one lookup, as the proxy does once per
//! request. Each case is checked to land where its name says before it is timed.
//!
//! `cargo bench -p sluice-bench --bench lookup`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_bench::{
    DEEPEST_PREFIX, REGEX_PATHS, Scale, generate, host, is_regex, settings, wildcard_host,
};
use sluice_model::{PathMatch, RoutingTable, Target};

// The `sluice` binary's allocator: where the table's parts lie in memory, and so how many
// cache lines and pages a lookup touches, depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A lookup case: what is looked up, and what it must find.
struct Case {
    name: &'static str,
    host: String,
    path: &'static str,
    /// The route's host and path, or `None` for the built-in 404.
    expect: Option<(String, &'static str)>,
}

fn cases() -> Vec<Case> {
    let i = 4_242;
    let r = 4_245;
    assert!(is_regex(r) && !is_regex(i));
    vec![
        Case {
            // Exact host, then four prefix probes (`/api/v1/users/42/profile/settings` down to
            // `/api/v1/users`) before the longest prefix matches.
            name: "exact_host_deep_prefix",
            host: host(i),
            path: "/api/v1/users/42/profile/settings",
            expect: Some((host(i), DEEPEST_PREFIX)),
        },
        Case {
            // An `Exact` path: one map probe.
            name: "exact_host_exact_path",
            host: host(i),
            path: "/healthz",
            expect: Some((host(i), "/healthz")),
        },
        Case {
            // Misses the exact hosts, then hits `*.app-4240...` on its parent domain.
            name: "wildcard_host",
            host: format!("tenant-7.{}", host(4_240)),
            path: "/api/orders/17",
            expect: Some((wildcard_host(4_240), "/api")),
        },
        Case {
            // No exact host, no wildcard parent: the catch-all's built-in 404.
            name: "miss_404",
            host: "unknown.example.org".into(),
            path: "/index.html",
            expect: None,
        },
        Case {
            // Upper case and a port: the host is lower-cased into a new string (allocates).
            name: "host_upper_case_and_port",
            host: format!("{}:8080", host(i).to_ascii_uppercase()),
            path: "/api/v1/users/42",
            expect: Some((host(i), DEEPEST_PREFIX)),
        },
        Case {
            // A dot segment: the path is normalised into a new string (allocates) to `/b`,
            // which falls back to the `/` prefix.
            name: "path_normalisation",
            host: host(i),
            path: "/a/../b",
            expect: Some((host(i), "/")),
        },
        Case {
            // A regex host: its first regex matches (one regex search).
            name: "regex_host_first_regex",
            host: host(r),
            path: "/api/v2/users/42",
            expect: Some((host(r), REGEX_PATHS[0].0)),
        },
        Case {
            // The third regex (`^/api`) matches after the first two fail.
            name: "regex_host_third_regex",
            host: host(r),
            path: "/api/orders/17",
            expect: Some((host(r), "/api")),
        },
        Case {
            // No regex matches: all three tried, then the host's default (the 404).
            name: "regex_host_miss",
            host: host(r),
            path: "/index.html",
            expect: None,
        },
        Case {
            // An Exact path on a regex host: one map probe, no regex.
            name: "regex_host_exact_path",
            host: host(r),
            path: "/healthz",
            expect: Some((host(r), "/healthz")),
        },
    ]
}

fn check(table: &RoutingTable, case: &Case) {
    let found = table.lookup(&case.host, case.path).route;
    match &case.expect {
        Some((host, path)) => {
            assert_eq!((&*found.host, found.path.as_str()), (host.as_str(), *path), "{}", case.name)
        }
        None => assert!(
            found.path_match == PathMatch::Default
                && matches!(found.target, Target::Respond { status: 404, .. }),
            "{}: {found:?}",
            case.name
        ),
    }
}

fn lookup(c: &mut Criterion) {
    let table = sluice_translate::translate(&generate(Scale::LARGE), &settings());
    assert_eq!(table.host_index.counts().0, 10_000);
    let mut group = c.benchmark_group("lookup_10k_hosts");
    for case in cases() {
        check(&table, &case);
        group.bench_function(case.name, |b| {
            b.iter(|| table.lookup(black_box(&case.host), black_box(case.path)).id);
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
