//! Route lookups to count under valgrind: instructions and cache misses per lookup, per case,
//! with none of the noise a wall clock has on a shared machine.
//!
//! `bench/lookup-misses.sh` runs it under callgrind and prints the figures per lookup. By hand:
//!
//! ```sh
//! cargo build --release -p sluice-bench --example lookup_misses
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no --toggle-collect='*case_*' \
//!     target/release/examples/lookup_misses [ROUNDS]
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep case_
//! ```
//!
//! It translates the large synthetic snapshot, as `lookup-p99` does, allocating with mimalloc
//! as the `sluice` binary does, and looks up `lookup-p99`'s mix (`sluice_bench::lookup_mix`):
//! once through `RoutingTable::lookup` directly (a warm-up, not counted), then `ROUNDS` times
//! (default 1) in the same shuffled order through one never-inlined function per case
//! (`case_0` .. `case_7`, in the order of `CASES`), which is what `--toggle-collect` counts.
//! Each case is looked up `PER_CASE` × `ROUNDS` times; the per-lookup figures are the
//! function's inclusive counts divided by that.

use std::hint::black_box;

use sluice_bench::lookup_mix::{CASES, PER_CASE, check, requests};
use sluice_bench::{Scale, generate, settings};
use sluice_model::{RouteId, RoutingTable};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

macro_rules! cases {
    ($($name:ident = $case:literal),*) => {
        $(
            #[inline(never)]
            fn $name(table: &RoutingTable, host: &str, path: &str) -> RouteId {
                // The case number keeps the bodies apart: identical functions would be merged
                // into one, and counted as one.
                black_box($case);
                table.lookup(black_box(host), black_box(path)).id
            }
        )*
        /// One function per case, in the order of `CASES`.
        const BY_CASE: [fn(&RoutingTable, &str, &str) -> RouteId; CASES.len()] = [$($name),*];
    };
}

cases!(
    case_0 = 0,
    case_1 = 1,
    case_2 = 2,
    case_3 = 3,
    case_4 = 4,
    case_5 = 5,
    case_6 = 6,
    case_7 = 7
);

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(1, |a| a.parse().expect("ROUNDS"));
    let table = sluice_translate::translate(&generate(Scale::LARGE), &settings());
    let reqs = requests(Scale::LARGE.ingresses);
    for req in &reqs {
        check(&table, req);
    }
    // The host is copied into a buffer that stays in cache, as a proxy's freshly parsed
    // request header is: the misses counted are the table's, not the request list's.
    let mut host = String::with_capacity(256);
    for _ in 0..rounds {
        for req in &reqs {
            host.clear();
            host.push_str(&req.host);
            black_box(BY_CASE[req.case](&table, &host, req.path));
        }
    }
    println!("{} lookups per case", PER_CASE * rounds);
    for (i, name) in CASES.iter().enumerate() {
        println!("case_{i}: {name}");
    }
}
