//! From Ingress backends to endpoints, and every way a backend can fail. Fixture:
//! `backends.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Severity, Target};

const HOST: &str = "shop.backends.test";
const SHOP: &str = "Ingress backends/shop";
/// web's ready endpoints on port http: 10.3.0.1 (ready), 10.3.0.3 (no conditions) and
/// 10.3.0.4 (conditions without `ready`, second slice); 10.3.0.2 and 10.3.0.5 are not ready.
const WEB_HTTP: &str = "[10.3.0.1:8080, 10.3.0.3:8080, 10.3.0.4:8080]";

fn table() -> RoutingTable {
    translate_fixture("backends")
}

// Service ports by number and by name; the slice port matched by the Service port's name and
// its NUMBER dialled (80 -> 8080, 9090 -> 9090 on the right slice port, whatever the slice's
// port order); ready:false excluded, ready absent counted; two slices merged.
#[test]
fn service_ports_resolve_to_ready_slice_endpoints() {
    let t = table();
    let rows = [
        ("/", format!("backends/shop -> backends-web-80 {WEB_HTTP}")),
        ("/by-name", format!("backends/shop -> backends-web-http {WEB_HTTP}")),
        (
            "/metrics",
            "backends/shop -> backends-web-9090 [10.3.0.1:9090, 10.3.0.3:9090, 10.3.0.4:9090]"
                .into(),
        ),
        ("/plain", "backends/shop -> backends-plain-80 [10.3.1.1:5678]".into()),
    ];
    for (path, want) in rows {
        assert_eq!(route(&t, HOST, path), want, "{path}");
    }
}

// Backends are named namespace-service-port (the port as the Ingress wrote it) and shared by
// every path, and every Ingress, using the same Service port.
#[test]
fn backends_are_named_and_shared() {
    let t = table();
    let id = |host: &str, path: &str| match t.lookup(host, path).route.target {
        Target::Backend(id) => id,
        ref other => panic!("{host}{path}: {other:?}"),
    };
    assert_eq!(id(HOST, "/"), id(HOST, "/shared"));
    assert_eq!(id(HOST, "/"), id("admin.backends.test", "/"));
    assert_ne!(id(HOST, "/"), id(HOST, "/by-name"));
    let mut names: Vec<&str> = t.backends.iter().map(|b| b.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "backends-idle-80",
            "backends-lonely-80",
            "backends-plain-80",
            "backends-web-80",
            "backends-web-9090",
            "backends-web-http",
        ]
    );
    let web = &t.backends[id(HOST, "/") as usize];
    assert_eq!((web.service.to_string(), web.port.as_str()), ("backends/web".to_string(), "80"));
}

// No ready endpoint: the route still targets the backend (with no endpoints) and a
// NoReadyEndpoints warning is raised. Slices of another Service (by label, whatever their
// name) or of another namespace are never used.
#[test]
fn no_ready_endpoint_is_an_empty_backend_and_a_warning() {
    let t = table();
    assert_eq!(route(&t, HOST, "/idle"), "backends/shop -> backends-idle-80 []");
    assert_eq!(route(&t, HOST, "/lonely"), "backends/shop -> backends-lonely-80 []");
    assert_diag(&t, Severity::Warning, Reason::NoReadyEndpoints, SHOP, "backends/idle port 80");
    assert_diag(&t, Severity::Warning, Reason::NoReadyEndpoints, SHOP, "backends/lonely port 80");
}

// Backends that cannot be served answer 503 with a specific error each: missing Service,
// missing port (by number and by name), ExternalName Service, resource backend.
#[test]
fn unservable_backends_answer_503_with_an_error() {
    let t = table();
    let rows = [
        ("/nope", Reason::MissingService, "backends/nope does not exist"),
        ("/bad-port", Reason::MissingServicePort, "has no port 8443"),
        ("/bad-port-name", Reason::MissingServicePort, "has no port grpc"),
        ("/external", Reason::UnsupportedService, "ExternalName"),
        ("/bucket", Reason::UnsupportedBackend, "StorageBucket/static-assets"),
    ];
    for (path, reason, needle) in rows {
        assert_eq!(route(&t, HOST, path), "503", "{path}");
        assert_eq!(owner(&t, HOST, path), "backends/shop", "{path}");
        assert_diag(&t, Severity::Error, reason, SHOP, needle);
    }
}

// The fixture's complete diagnostics: the failures above and nothing else (the healthy paths
// and the admin Ingress are clean).
#[test]
fn backends_fixture_diagnostics_are_exact() {
    let t = table();
    assert_eq!(
        summary(&t),
        vec![
            "Error UnsupportedBackend Ingress backends/shop",
            "Error MissingService Ingress backends/shop",
            "Error MissingServicePort Ingress backends/shop",
            "Error MissingServicePort Ingress backends/shop",
            "Error UnsupportedService Ingress backends/shop",
            "Warning NoReadyEndpoints Ingress backends/shop",
            "Warning NoReadyEndpoints Ingress backends/shop",
        ],
        "{}",
        dump(&t)
    );
}
