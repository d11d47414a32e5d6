//! Translation time: `sluice_translate::translate` on synthetic snapshots of 100, 1,000 and
//! 10,000 Ingresses (see `sluice_bench` for their shape). One iteration is one whole
//! translation, from the snapshot to a routing table, including dropping that table (the control
//! loop pays for that too when the next table replaces it). Throughput is in Ingresses.
//!
//! Endpoint changes, at 10,000 Ingresses: `endpoints/update` is
//! `sluice_translate::update_endpoints` after three EndpointSlices changed (an endpoint added,
//! one removed, one gone not ready); `endpoints/apply` is what the control loop does with such
//! a change, from the new snapshot to the new table in force: the update, then
//! `Publisher::publish` (TLS side, diagnostics, metrics, the swap, dropping the old table).
//!
//! Applications, at 10,000 Ingresses: `applications/apply` is the control loop's work when one
//! application (an Ingress for a new host, its two Services and their EndpointSlices, in one
//! change, as one manifest file brings them) is deployed, then removed again, alternately: an
//! incremental update each time, then the publish.
//!
//! `cargo bench -p sluice-bench --bench translate`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sluice::control::{Applied, Publisher, next_table};
use sluice_bench::{Application, Scale, generate, settings};
use sluice_model::{LeanSlice, Origin, SliceEndpoint, Snapshot};

/// The `sluice` binary's allocator: translation is mostly allocation, so it is timed with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn translate(c: &mut Criterion) {
    let settings = settings();
    let mut group = c.benchmark_group("translate");
    for scale in [Scale::SMALL, Scale::MEDIUM, Scale::LARGE] {
        let snapshot = generate(scale);
        // Checked once, outside the timing: the benchmark measures the clean path.
        let table = sluice_translate::translate(&snapshot, &settings);
        assert!(table.diagnostics.is_empty(), "the synthetic snapshot has diagnostics");
        assert_eq!(table.host_index.counts().0, scale.ingresses);
        drop(table);

        if scale.ingresses >= 10_000 {
            // A tenth of a second or more per iteration: ten samples of a few iterations each.
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .measurement_time(Duration::from_secs(10));
        } else {
            group
                .sample_size(50)
                .sampling_mode(SamplingMode::Auto)
                .measurement_time(Duration::from_secs(5));
        }
        group.throughput(Throughput::Elements(scale.ingresses as u64));
        let id = BenchmarkId::new(
            "ingresses",
            format!("{}i_{}s_{}e", scale.ingresses, scale.services(), scale.endpoints),
        );
        group.bench_with_input(id, &snapshot, |b, snapshot| {
            b.iter(|| sluice_translate::translate(black_box(snapshot), black_box(&settings)));
        });
    }
    group.finish();
}

/// `snapshot` with `f` applied to a copy of the EndpointSlice named `name` (its namespace's
/// chunk rebuilt, the others shared, as the sources do).
fn edit(snapshot: &Snapshot, name: &str, f: impl FnOnce(&mut LeanSlice)) -> Snapshot {
    let mut next = snapshot.clone();
    assert!(next.endpoint_slices.edit(|s| s.name == name, f), "a generated slice");
    next
}

/// `snapshot` after three pods changed: one more endpoint, one less, one not ready.
fn endpoints_changed(snapshot: &Snapshot) -> Snapshot {
    let next = edit(snapshot, "svc-7-00000", |s| {
        s.endpoints.push(SliceEndpoint { addresses: vec!["192.168.0.1".into()], ready: None })
    });
    let next = edit(&next, "svc-4242-00000", |s| {
        s.endpoints.pop();
    });
    edit(&next, "svc-19999-00000", |s| {
        s.endpoints[0].ready = Some(false);
    })
}

fn endpoints(c: &mut Criterion) {
    let settings = settings();
    let scale = Scale::LARGE;
    let before = generate(scale);
    let after = endpoints_changed(&before);
    let previous = sluice_translate::translate(&before, &settings);
    let mut group = c.benchmark_group("endpoints");
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    let id = format!("{}i_{}s_{}e", scale.ingresses, scale.services(), scale.endpoints);

    // Checked once: the update applies, and rebuilds three backends.
    let updated = sluice_translate::update_endpoints(&previous, &before, &after).expect("applies");
    let rebuilt = previous.backends.iter().zip(&updated.backends);
    assert_eq!(rebuilt.filter(|(a, b)| !Arc::ptr_eq(a, b)).count(), 3);
    drop(updated);
    group.bench_function(BenchmarkId::new("update", &id), |b| {
        b.iter(|| sluice_translate::update_endpoints(&previous, black_box(&before), &after));
    });

    // The control loop: every iteration applies the other snapshot, so each one is a change.
    let mut publisher = Publisher::standalone(&settings).expect("a publisher");
    let first = publisher.publish(previous, Vec::new(), Duration::ZERO);
    let mut applied = Applied { snapshot: before.clone(), table: first };
    let snapshots = [after, before];
    group.bench_function(BenchmarkId::new("apply", &id), |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for i in 0..iters {
                // The new snapshot is available: the clock starts.
                let snapshot = snapshots[i as usize % 2].clone();
                let started = Instant::now();
                let table = next_table(Some(&applied), &snapshot, &settings);
                let table = publisher.publish(table, Vec::new(), started.elapsed());
                applied = Applied { snapshot, table };
                took += started.elapsed();
            }
            took
        });
    });
    group.finish();
}

fn applications(c: &mut Criterion) {
    let settings = settings();
    let scale = Scale::LARGE;
    let before = generate(scale);
    let after =
        Application::of(scale.ingresses).deploy(&before, &["ingress", "services", "slices"]);
    let previous = sluice_translate::translate(&before, &settings);
    let mut group = c.benchmark_group("applications");
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    let id = format!("{}i_{}s_{}e", scale.ingresses, scale.services(), scale.endpoints);
    let mut publisher = Publisher::standalone(&settings).expect("a publisher");
    let first = publisher.publish(previous, Vec::new(), Duration::ZERO);
    let mut applied = Applied { snapshot: before.clone(), table: first };
    let snapshots = [after, before];
    // Counted across criterion's calls, so that every change alternates.
    let mut changes = 0;
    group.bench_function(BenchmarkId::new("apply", &id), |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let snapshot = snapshots[changes % 2].clone();
                changes += 1;
                let started = Instant::now();
                let table = next_table(Some(&applied), &snapshot, &settings);
                // Checked on every change: a full translation would be timed otherwise.
                let dead = applied.table.referrers.dead_routes;
                assert_eq!(table.origin, Origin::Ingresses, "change {changes}, {dead} dead routes");
                let table = publisher.publish(table, Vec::new(), started.elapsed());
                applied = Applied { snapshot, table };
                took += started.elapsed();
            }
            took
        });
    });
    group.finish();
}

criterion_group!(benches, translate, endpoints, applications);
criterion_main!(benches);
