//! Translation time: `sluice_translate::translate` on synthetic snapshots of 100, 1,000 and
//! 10,000 Ingresses (see `sluice_bench` for their shape). One iteration is one whole
//! translation, from the snapshot to a routing table, including dropping that table (the control
//! loop pays for that too when the next table replaces it). Throughput is in Ingresses.
//!
//! `cargo bench -p sluice-bench --bench translate`

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sluice_bench::{Scale, generate, settings};

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

criterion_group!(benches, translate);
criterion_main!(benches);
