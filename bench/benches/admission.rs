//! Admission answer time: what the validating webhook does per Ingress, at 10,000 Ingresses
//! (the large synthetic snapshot, see `sluice_bench`), against the table translated from it.
//!
//! - `review/*`: `sluice_translate::review`, the decision alone;
//! - `answer/*`: `sluice::webhook::respond`, the whole answer from the AdmissionReview's JSON
//!   to the response's JSON (parsing, the decision, the diagnostics' text, serialising), as the
//!   HTTPS server runs it per request.
//!
//! Cases: a new Ingress for a new host that is admitted without a warning; one that takes a
//! host and path an older Ingress owns (refused); one with a snippet (refused); an update of
//! an Ingress in force that changes nothing. Each is checked to get the verdict its name says
//! before it is timed.
//!
//! `cargo bench -p sluice-bench --bench admission`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use sluice::control::{Applied, InForce};
use sluice::webhook::{WebhookState, respond};
use sluice_bench::{Scale, generate, host, namespace, services_of, settings};

/// The `sluice` binary's allocator, as everywhere in the benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An Ingress `name` in the namespace of generated Ingress `i`, for `host`, with the four
/// paths every generated Ingress has, to Ingress `i`'s Services.
fn ingress(name: &str, i: usize, host: &str, annotations: serde_json::Value) -> Ingress {
    let [svc, api] = services_of(i);
    let path = |p: &str, t: &str, s: &str, port: serde_json::Value| json!({"path": p, "pathType": t, "backend": {"service": {"name": s, "port": port}}});
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace(i), "annotations": annotations,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "sluice", "rules": [{"host": host, "http": {"paths": [
            path("/", "Prefix", &svc, json!({"number": 80})),
            path("/api", "Prefix", &api, json!({"name": "http"})),
            path("/api/v1/users", "Prefix", &api, json!({"name": "http"})),
            path("/healthz", "Exact", &svc, json!({"number": 80})),
        ]}}]},
    }))
    .expect("an Ingress")
}

/// An AdmissionReview v1 of `object` (and `old`, for an UPDATE).
fn review_json(object: &Ingress, old: Option<&Ingress>) -> Vec<u8> {
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": object.metadata.namespace, "name": object.metadata.name,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object, "oldObject": old,
        },
    }))
    .unwrap()
}

fn admission(c: &mut Criterion) {
    let settings = settings();
    let snapshot = generate(Scale::LARGE);
    let table = Arc::new(sluice_translate::translate(&snapshot, &settings));
    let in_force = InForce::default();
    in_force.store(Some(Arc::new(Applied { snapshot: snapshot.clone(), table: table.clone() })));
    let state = WebhookState::new(settings.clone(), in_force);

    let existing = snapshot
        .ingresses
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some("ing-4242"))
        .expect("Ingress 4242")
        .as_ref()
        .clone();
    let size = json!({"nginx.ingress.kubernetes.io/proxy-body-size": "8m"});
    let snippet = json!({"nginx.ingress.kubernetes.io/server-snippet": "return 200;"});
    // (name, the Ingress, its old version, admitted)
    let cases: Vec<(&str, Ingress, Option<Ingress>, bool)> = vec![
        ("create_admitted", ingress("new", 7, "new-app.example.com", size), None, true),
        ("create_collision_refused", ingress("late", 4242, &host(4242), json!({})), None, false),
        ("create_snippet_refused", ingress("snip", 7, "snip.example.com", snippet), None, false),
        ("update_unchanged", existing.clone(), Some(existing), true),
    ];

    let mut group = c.benchmark_group("admission");
    for (name, ingress, old, admitted) in &cases {
        let r = sluice_translate::review(&snapshot, &table, &settings, ingress, old.as_ref());
        assert!(r.ours, "{name}");
        assert_eq!(r.allowed(), *admitted, "{name}: {:?}", r.diagnostics);
        if *admitted {
            assert!(r.diagnostics.is_empty(), "{name}: {:?}", r.diagnostics);
        }
        let body = review_json(ingress, old.as_ref());
        let answer: serde_json::Value = serde_json::from_slice(&respond(&state, &body)).unwrap();
        assert_eq!(answer["response"]["allowed"], json!(*admitted), "{name}: {answer}");

        group.bench_function(format!("review/{name}"), |b| {
            b.iter(|| {
                sluice_translate::review(
                    black_box(&snapshot),
                    &table,
                    &settings,
                    black_box(ingress),
                    old.as_ref(),
                )
            })
        });
        group.bench_function(format!("answer/{name}"), |b| {
            b.iter(|| respond(&state, black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
