//! Route lookup latency percentiles on the large table (issue 5, target 5: p99 under 1 µs with
//! 10,000 hosts and regex paths present).
//!
//! `cargo run --release -p sluice-bench --bin lookup-p99 [-- ROUNDS]`
//!
//! It translates the large synthetic snapshot (10,000 Ingresses, 1,000 of them regex hosts;
//! see `sluice_bench`), then prepares a realistic mix of requests spread over many hosts (so
//! the caches see different hosts, as a proxy does; see `sluice_bench::lookup_mix`): exact
//! hosts with a deep prefix and with an Exact path, wildcard hosts, regex hosts whose first
//! regex matches, whose last regex matches, and where none does (the host's 404), hosts with
//! upper case and a port, and unknown hosts (the table's 404). Each request is checked to land
//! where its case says. It allocates with mimalloc, as the `sluice` binary does.
//!
//! **Method.** Every lookup is timed on its own: `Instant::now()` before and after, minus the
//! cost of the two clock reads themselves (the median of 100,000 back-to-back pairs, measured
//! first and printed), clamped at zero. Per-lookup timing is what a tail percentile needs:
//! timing batches would average the slow lookups away. The clock reads' own jitter (a few ns)
//! stays in the figures, so they slightly overstate the lookup. The mix is run `ROUNDS` times
//! (default 20) in a shuffled order, after one untimed warm-up round.
//!
//! It prints a Markdown table (per case and overall: samples, p50, p99, p99.9, max, in ns) and,
//! last, one machine-readable line: `lookup_p99_ns=<overall p99>`.

use std::hint::black_box;
use std::time::Instant;

use sluice_bench::lookup_mix::{CASES, PER_CASE, check, requests};
use sluice_bench::{Scale, generate, settings};

// The `sluice` binary's allocator: where the table's parts lie in memory, and so how many
// cache lines and pages a lookup touches, depends on it; timed with another, the lookup would
// not be the one the proxy runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The median cost of two back-to-back clock reads, in ns.
fn clock_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..100_000)
        .map(|_| {
            let t0 = Instant::now();
            let t1 = Instant::now();
            (t1 - t0).as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(20, |a| a.parse().expect("ROUNDS"));
    let started = Instant::now();
    let table = sluice_translate::translate(&generate(Scale::LARGE), &settings());
    let regex_hosts = table.hosts.iter().filter(|h| h.regex.is_some()).count();
    eprintln!(
        "table: {} hosts ({} wildcard, {regex_hosts} regex), {} routes, built in {:?}",
        table.host_index.counts().0,
        table.host_index.counts().1,
        table.routes.len(),
        started.elapsed()
    );
    let reqs = requests(Scale::LARGE.ingresses);
    for req in &reqs {
        check(&table, req);
    }
    let overhead = clock_overhead();

    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(PER_CASE * rounds); CASES.len()];
    for round in 0..=rounds {
        for req in &reqs {
            let t0 = Instant::now();
            let id = table.lookup(black_box(&req.host), black_box(req.path)).id;
            let t1 = Instant::now();
            black_box(id);
            if round > 0 {
                samples[req.case].push(((t1 - t0).as_nanos() as u64).saturating_sub(overhead));
            }
        }
    }

    let mut all: Vec<u64> = samples.iter().flatten().copied().collect();
    all.sort_unstable();
    println!(
        "Lookup latency, {} lookups over {} cases on 10,000 hosts ({regex_hosts} regex), ns per \
         lookup (clock overhead of {overhead} ns subtracted):\n",
        all.len(),
        CASES.len()
    );
    println!("| case | lookups | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, s: &[u64]| {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            s.len(),
            percentile(s, 50.0),
            percentile(s, 99.0),
            percentile(s, 99.9),
            s[s.len() - 1]
        )
    };
    for (name, s) in CASES.iter().zip(&mut samples) {
        s.sort_unstable();
        row(name, s);
    }
    row("**all**", &all);
    println!("\nlookup_p99_ns={}", percentile(&all, 99.0));
}
