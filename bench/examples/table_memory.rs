//! Memory and time of one full translation at a scale: prints the resident set size before
//! and after building the table (the snapshot stays alive, as in the controller), and the
//! time taken. Also a small binary to profile translation under valgrind.
//!
//! `cargo run --release -p sluice-bench --example table_memory -- [ingresses] [rounds] [updates]`
//!
//! With `updates`, each round after the first is an endpoint-only update (one EndpointSlice
//! changed, then changed back) instead of a full translation: how the table in force
//! evolves as pods come and go.
//!
//! Under `valgrind --tool=dhat`, the bytes still live "at t-end" are the table's alone: the
//! snapshot is dropped and the table leaked before exit, on purpose.

use std::time::Instant;

use sluice_bench::{Scale, generate, settings};

/// The process's resident set size in KiB, from /proc (Linux only; 0 elsewhere).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ingresses = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let updates = args.next().as_deref() == Some("updates");
    let snapshot = generate(Scale::of(ingresses));
    // The same snapshot with the first slice's last endpoint gone.
    let mut other = snapshot.clone();
    other.endpoint_slices.edit(
        |_| true,
        |slice| {
            slice.endpoints.pop();
        },
    );
    let snapshots = [&other, &snapshot];
    let settings = settings();
    let before = rss_kib();
    let mut table: Option<sluice_model::RoutingTable> = None;
    for round in 0..rounds {
        let started = Instant::now();
        // The previous table is dropped only once the next one exists, as when publishing.
        let next = match &table {
            Some(previous) if updates => {
                let (before, after) = (snapshots[(round + 1) % 2], snapshots[round % 2]);
                sluice_translate::update_endpoints(previous, before, after).expect("an update")
            }
            _ => sluice_translate::translate(snapshots[round % 2], &settings),
        };
        let took = started.elapsed();
        table = Some(next);
        if rounds <= 20 {
            println!("translate: {:.1} ms", took.as_secs_f64() * 1e3);
        }
    }
    let after = rss_kib();
    let table = table.expect("at least one round");
    println!(
        "{} routes, {} backends; RSS {} MiB with the snapshot, {} MiB with the table (+{} MiB)",
        table.routes.len(),
        table.backends.len(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) / 1024
    );
    drop((snapshot, other));
    std::mem::forget(table);
}
