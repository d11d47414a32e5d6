//! Where unmatched requests go: the built-in 404, --default-backend-service, and
//! spec.defaultBackend. Fixtures: `global-default.yaml`, `default-backends.yaml`.

mod common;

use common::*;
use sluice_model::{Reason, RoutingTable, Settings, Severity};

fn with_default_service(name: &str) -> Settings {
    Settings { default_backend_service: Some(nn(name)), ..Settings::default() }
}

/// Requests no rule of global-default.yaml claims: an undeclared host, a declared host's
/// unmatched path, and the matched path for contrast.
const UNMATCHED: [(&str, &str); 3] =
    [("nowhere.example.org", "/"), ("shop.example.com", "/checkout"), ("SHOP.example.com:80", "/")];
const CART: &str = "shop/shop -> shop-cart-http [10.7.0.1:3000]";

// Without --default-backend-service, unmatched requests get the built-in 404.
#[test]
fn unmatched_requests_get_404_by_default() {
    let t = translate_fixture("global-default");
    for (host, path) in UNMATCHED {
        assert_eq!(route(&t, host, path), "404", "{host}{path}");
        assert_eq!(owner(&t, host, path), "(default)");
    }
    assert_eq!(route(&t, "shop.example.com", "/cart/items"), CART);
    assert_eq!(summary(&t), Vec::<String>::new(), "{}", dump(&t));
}

// --default-backend-service: unmatched requests go to the Service's FIRST port (http, 80),
// dialled on the slice's port for that name (8080), ready endpoints only.
#[test]
fn default_backend_service_serves_unmatched_requests() {
    let settings = with_default_service("sluice-system/default-http-backend");
    let t = translate_fixtures(&["global-default"], &settings);
    let want =
        "(default) -> sluice-system-default-http-backend-http [10.9.0.1:8080, 10.9.0.2:8080]";
    for (host, path) in UNMATCHED {
        assert_eq!(route(&t, host, path), want, "{host}{path}");
    }
    assert_eq!(route(&t, "shop.example.com", "/cart"), CART);
    assert_eq!(summary(&t), Vec::<String>::new(), "{}", dump(&t));
}

// --default-backend-service naming a missing Service: unmatched requests answer 503 and the
// Service (not an Ingress) gets a MissingService error. Matched requests are unaffected.
#[test]
fn missing_default_backend_service_answers_503() {
    let t = translate_fixtures(&["global-default"], &with_default_service("sluice-system/missing"));
    for (host, path) in UNMATCHED {
        assert_eq!(route(&t, host, path), "503", "{host}{path}");
    }
    assert_eq!(route(&t, "shop.example.com", "/cart"), CART);
    assert_eq!(summary(&t), vec!["Error MissingService Service sluice-system/missing"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::MissingService,
        "Service sluice-system/missing",
        "--default-backend-service",
    );
}

fn defaults_table() -> RoutingTable {
    translate_fixture("default-backends")
}

const CATCHALL_OLD: &str = "defaults/catch-all -> defaults-catchall-old-80 [10.8.0.1:8080]";
const SITE_DEFAULT: &str = "defaults/site -> defaults-site-default-http [10.8.0.4:8080]";
const LATE_DEFAULT: &str = "defaults/late -> defaults-late-default-80 [10.8.0.5:8080]";

// An Ingress with only spec.defaultBackend is the catch-all: it serves every host no rule
// declares. The oldest such Ingress wins; the newer one gets a PathCollision error.
#[test]
fn ruleless_ingress_is_the_catch_all_and_the_oldest_wins() {
    let t = defaults_table();
    for host in ["unknown.example.org", "", "192.0.2.1:8080"] {
        assert_eq!(route(&t, host, "/any/path"), CATCHALL_OLD, "{host:?}");
    }
    assert_eq!(summary_for(&t, "Ingress defaults/catch-all-2"), vec!["Error PathCollision"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::PathCollision,
        "Ingress defaults/catch-all-2",
        "older Ingress defaults/catch-all",
    );
    assert_no_diag(&t, "Ingress defaults/catch-all");
}

// The catch-all Ingress wins over --default-backend-service for undeclared hosts, as in
// ingress-nginx (the flag remains the default of declared hosts without a defaultBackend).
#[test]
fn catch_all_ingress_takes_precedence_over_the_flag() {
    let mut snapshot = load(&["default-backends", "global-default"]);
    snapshot.ingresses.make_mut().retain(|i| i.metadata.namespace.as_deref() != Some("shop"));
    let settings = with_default_service("sluice-system/default-http-backend");
    let t = sluice_translate::translate(&snapshot, &settings);
    assert_eq!(route(&t, "unknown.example.org", "/"), CATCHALL_OLD);
    assert_eq!(
        route(&t, "plain.defaults.test", "/elsewhere"),
        "(default) -> sluice-system-default-http-backend-http [10.9.0.1:8080, 10.9.0.2:8080]"
    );
}

// An Ingress with rules and a defaultBackend: the defaultBackend serves unmatched paths of the
// hosts it is FIRST to define (site.defaults.test for site; late.defaults.test for late) and
// not those of a host an older Ingress defined first (late's on site.defaults.test).
#[test]
fn rules_with_default_backend_serve_hosts_they_define_first() {
    let t = defaults_table();
    let rows = [
        ("site.defaults.test", "/app/x", "defaults/site -> defaults-web-80 [10.8.0.3:8080]"),
        ("site.defaults.test", "/late", "defaults/late -> defaults-web-80 [10.8.0.3:8080]"),
        ("site.defaults.test", "/unmatched", SITE_DEFAULT),
        ("site.defaults.test", "/", SITE_DEFAULT),
        ("late.defaults.test", "/x", "defaults/late -> defaults-web-80 [10.8.0.3:8080]"),
        ("late.defaults.test", "/unmatched", LATE_DEFAULT),
    ];
    for (host, path, want) in rows {
        assert_eq!(route(&t, host, path), want, "{host}{path}");
    }
    assert_no_diag(&t, "Ingress defaults/site");
    assert_no_diag(&t, "Ingress defaults/late");
}

// A declared host whose Ingresses have no defaultBackend keeps the global default (the 404),
// not the catch-all Ingress's backend.
#[test]
fn declared_host_without_default_backend_keeps_the_global_default() {
    let t = defaults_table();
    assert_eq!(
        route(&t, "plain.defaults.test", "/only/x"),
        "defaults/plain -> defaults-web-80 [10.8.0.3:8080]"
    );
    assert_eq!(route(&t, "plain.defaults.test", "/elsewhere"), "404");
    assert_eq!(owner(&t, "plain.defaults.test", "/elsewhere"), "(default)");
}

// An Ingress with neither rules nor a defaultBackend is reported as InvalidBackend and changes
// nothing.
#[test]
fn ingress_without_rules_or_default_backend_is_invalid() {
    let t = defaults_table();
    assert_eq!(summary_for(&t, "Ingress defaults/empty"), vec!["Error InvalidBackend"]);
    assert_diag(&t, Severity::Error, Reason::InvalidBackend, "Ingress defaults/empty", "neither");
    assert!(t.routes.iter().all(|r| r.ingress.as_deref() != Some(&nn("defaults/empty"))));
    // The fixture's only other diagnostic is the catch-all collision.
    assert_eq!(
        summary(&t),
        vec![
            "Error PathCollision Ingress defaults/catch-all-2",
            "Error InvalidBackend Ingress defaults/empty"
        ],
        "{}",
        dump(&t)
    );
}
