//! Incremental Ingress updates give what a full translation gives. Over the combined fixtures,
//! and over the TLS fixtures, every Ingress in turn is removed, added back and has its first
//! host renamed; whenever `update_ingresses` accepts the change, its table must route every
//! observed request, report every diagnostic, and give every host the certificate, handshake
//! policy and passthrough, exactly as a full translation of the new snapshot does.

mod common;

use std::sync::Arc;

use common::*;
use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{RoutingTable, Settings, Snapshot};
use sluice_translate::{translate, unchanged, update_ingresses};

const ALL: &[&str] = &[
    "paths",
    "hosts",
    "classes",
    "merge",
    "global-default",
    "default-backends",
    "backends",
    "annotations",
    "bad-input",
    "regex",
];

fn settings() -> Settings {
    Settings {
        default_backend_service: Some(nn("sluice-system/default-http-backend")),
        configmap: Some(nn("sluice-system/sluice-config")),
        ..Settings::default()
    }
}

/// The TLS fixtures' settings: a default certificate, passthrough, HTTPS options.
fn tls_settings() -> Settings {
    Settings {
        default_ssl_certificate: Some(nn("tls/default")),
        enable_ssl_passthrough: true,
        configmap: Some(nn("tls/https")),
        ..Settings::default()
    }
}

/// What each host in force gets on the TLS side: the certificate (Secret and fingerprint),
/// handshake policy and passthrough backend, for the host's name and (for a wildcard) a name
/// under it.
fn tls_view(table: &RoutingTable) -> Vec<String> {
    let tls = &table.tls;
    let cert = |i: Option<u32>| {
        i.map(|i| &tls.certs[i as usize]).map(|c| format!("{} {:x}", c.secret, c.fingerprint))
    };
    hosts(table)
        .iter()
        .map(|h| h.replace("*.", "any."))
        .map(|name| {
            let by_name = cert(tls.cert_by_name.get(&name).copied());
            let policy = &tls.policies[tls.policy_for(&name) as usize];
            let passthrough = tls.passthrough.get(&name).map(|&b| &table.backends[b as usize].name);
            format!(
                "{name}: {by_name:?} / default {:?} / {policy:?} / {passthrough:?}",
                cert(tls.default_cert)
            )
        })
        .collect()
}

/// Checks the update from `before` (translated in full) to `after`, when it is accepted;
/// returns whether it was.
fn check(before: &Snapshot, after: &Snapshot, settings: &Settings, what: &str) -> bool {
    let previous = translate(before, settings);
    let Some(updated) = update_ingresses(&previous, before, after, settings) else {
        return false;
    };
    let full = translate(after, settings);
    assert_same(&updated, &full, what);
    assert_eq!(*updated.owned, *full.owned, "{what}: owned Ingresses differ");
    assert_eq!(tls_view(&updated), tls_view(&full), "{what}: TLS differs");
    true
}

/// Removes, adds back and renames each Ingress of `all` in turn; returns how many updates
/// were accepted, and tried.
fn every_change(all: &Snapshot, settings: &Settings) -> (usize, usize) {
    let (mut accepted, mut tried) = (0, 0);
    for i in 0..all.ingresses.len() {
        let name = format!(
            "{}/{}",
            all.ingresses[i].metadata.namespace.as_deref().unwrap_or_default(),
            all.ingresses[i].metadata.name.as_deref().unwrap_or_default()
        );
        let mut without = all.clone();
        without.ingresses.make_mut().remove(i);
        let mut renamed = all.clone();
        let mut ingress = (*renamed.ingresses[i]).clone();
        let rule = ingress.spec.as_mut().and_then(|s| s.rules.as_mut()).and_then(|r| r.first_mut());
        if let Some(rule) = rule {
            rule.host = Some(format!("renamed-{i}.updates.test"));
        }
        renamed.ingresses.make_mut()[i] = Arc::new(ingress);

        for (before, after, what) in [
            (all, &without, "removed"),
            (&without, all, "added"),
            (all, &renamed, "renamed"),
            (&renamed, all, "renamed back"),
        ] {
            tried += 1;
            accepted += usize::from(check(before, after, settings, &format!("{name} {what}")));
        }
    }
    (accepted, tried)
}

#[test]
fn ingress_updates_route_as_a_full_translation_does() {
    let (accepted, tried) = every_change(&load(ALL), &settings());
    // The fixtures are mostly about merging and conflicts, which updates refuse; enough of
    // them are alone on their hosts for the comparison to mean something.
    assert!(accepted >= 40, "only {accepted} of {tried} updates accepted");
}

/// The TLS fixtures, judged at a fixed time, without the Ingresses that make any table
/// translated in full from then on.
fn tls_fixtures() -> Snapshot {
    let mut all = load(&["tls-objects", "tls-hosts", "tls-redirect", "tls-policies"]);
    // Certificates are judged at a fixed time (2033): the fixtures' are valid until 2100.
    all.observed_at = Some(2_000_000_000);
    // Without the few Ingresses (backend TLS that cannot be set up) that make any table
    // translated in full from then on.
    let alone = |i: &Arc<Ingress>| {
        let one = Snapshot { ingresses: vec![i.clone()].into(), ..all.clone() };
        translate(&one, &tls_settings()).referrers.incremental
    };
    let ingresses: Vec<Arc<Ingress>> = all.ingresses.iter().filter(|i| alone(i)).cloned().collect();
    assert_eq!(all.ingresses.len() - ingresses.len(), 5, "the fixtures changed: check this test");
    all.ingresses = ingresses.into();
    all
}

#[test]
fn tls_ingress_updates_serve_as_a_full_translation_does() {
    let (accepted, tried) = every_change(&tls_fixtures(), &tls_settings());
    assert!(accepted >= 40, "only {accepted} of {tried} updates accepted");
}

// A change of an IngressClass, or of a ConfigMap translation read, is never taken as an
// Ingress update.
#[test]
fn other_kinds_are_refused() {
    let all = load(ALL);
    let settings = settings();
    let previous: RoutingTable = translate(&all, &settings);
    let mut class = all.clone();
    assert!(class.ingress_classes.make_mut().pop().is_some(), "the fixtures hold a class");
    assert!(update_ingresses(&previous, &all, &class, &settings).is_none(), "an IngressClass");
    let mut config = all.clone();
    let list = config.config_maps.make_mut();
    let count = list.len();
    list.retain(|c| c.metadata.name.as_deref() != Some("sluice-config"));
    assert!(list.len() < count, "the fixtures hold the controller's ConfigMap");
    assert!(update_ingresses(&previous, &all, &config, &settings).is_none(), "the ConfigMap");
}

// Secrets changing: with the TLS fixtures, each Secret in turn is removed, comes back, and has
// its certificate replaced by another Secret's (a rotation); whenever the update is accepted,
// it serves, and gives every host the certificate, that a full translation gives.
#[test]
fn secret_updates_serve_as_a_full_translation_does() {
    let all = tls_fixtures();
    let settings = tls_settings();
    let (mut accepted, mut tried) = (0, 0);
    let secrets: Vec<_> = all.secrets.iter().cloned().collect();
    for (i, secret) in secrets.iter().enumerate() {
        let name = format!(
            "{}/{}",
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default()
        );
        let mut without = all.clone();
        without.secrets.make_mut().remove(i);
        let mut rotated = all.clone();
        let other = &secrets[(i + 1) % secrets.len()];
        let mut renewed = (**secret).clone();
        renewed.data = other.data.clone();
        renewed.type_ = other.type_.clone();
        rotated.secrets.make_mut()[i] = Arc::new(renewed);
        for (before, after, what) in [
            (&all, &without, "removed"),
            (&without, &all, "added"),
            (&all, &rotated, "rotated"),
            (&rotated, &all, "rotated back"),
        ] {
            tried += 1;
            accepted += usize::from(check(before, after, &settings, &format!("{name} {what}")));
        }
    }
    eprintln!("{accepted} of {tried} Secret updates accepted");
    assert!(accepted >= 40, "only {accepted} of {tried} updates accepted");
}

// Services and EndpointSlices changing, alone or with an Ingress: each Service of the
// fixtures in turn is removed (with its EndpointSlices, then alone), has its ports renamed, and
// comes back; whenever the update is accepted, it serves what a full translation serves.
#[test]
fn service_updates_route_as_a_full_translation_does() {
    let all = load(ALL);
    let settings = settings();
    let (mut accepted, mut tried) = (0, 0);
    for i in 0..all.services.len() {
        let svc = all.services[i].clone();
        let name = format!("{}/{}", svc.namespace, svc.name);
        let mut without = all.clone();
        without.services.make_mut().remove(i);
        let mut with_slices = without.clone();
        with_slices.endpoint_slices.make_mut().retain(|s| {
            s.namespace != svc.namespace || s.service.as_deref() != Some(svc.name.as_str())
        });
        let mut renamed = all.clone();
        let mut ports = (*svc).clone();
        ports.ports.iter_mut().for_each(|p| p.name = Some(format!("renamed-{}", p.port)));
        renamed.services.make_mut()[i] = Arc::new(ports);
        // And an Ingress removed in the same change (the first one naming another Service).
        let mut both = with_slices.clone();
        both.ingresses.make_mut().pop();
        for (before, after, what) in [
            (&all, &without, "removed"),
            (&without, &all, "added"),
            (&all, &with_slices, "removed with its slices"),
            (&with_slices, &all, "added with its slices"),
            (&all, &renamed, "ports renamed"),
            (&renamed, &all, "ports renamed back"),
            (&all, &both, "removed with an Ingress"),
            (&both, &all, "added with an Ingress"),
        ] {
            tried += 1;
            accepted += usize::from(check(before, after, &settings, &format!("{name} {what}")));
        }
    }
    eprintln!("{accepted} of {tried} Service updates accepted");
    assert!(accepted >= 50, "only {accepted} of {tried} updates accepted");
}

// The same objects (the very ones, or new copies of them: a file parsed again) are no change;
// an object of any kind added, removed or changed is one (for ConfigMaps, one translation
// read), and so is the time passing a certificate's expiry.
#[test]
fn nothing_changed_is_told_apart_from_any_change() {
    let mut before =
        load(&["tls-objects", "tls-hosts", "tls-redirect", "classes", "global-default"]);
    before.observed_at = Some(2_000_000_000);
    let settings = tls_settings();
    let previous = translate(&before, &settings);
    assert!(unchanged(&previous, &before, &before.clone()));
    let mut copies = before.clone();
    copies.ingresses = before.ingresses.iter().map(|i| Arc::new((**i).clone())).collect();
    copies.secrets = before.secrets.iter().map(|s| Arc::new((**s).clone())).collect();
    assert!(unchanged(&previous, &before, &copies), "copies of the same objects");
    let mut later = before.clone();
    later.observed_at = Some(2_000_000_060);
    assert!(unchanged(&previous, &before, &later), "a minute later, every certificate valid");

    type Edit = fn(&mut Snapshot) -> bool;
    let edits: [(&str, Edit); 6] = [
        ("Ingress", |s| s.ingresses.make_mut().pop().is_some()),
        ("IngressClass", |s| s.ingress_classes.make_mut().pop().is_some()),
        ("Service", |s| s.services.make_mut().pop().is_some()),
        ("EndpointSlice", |s| s.endpoint_slices.make_mut().pop().is_some()),
        ("Secret", |s| s.secrets.make_mut().pop().is_some()),
        // The controller's ConfigMap, which translation read.
        ("ConfigMap", |s| {
            let list = s.config_maps.make_mut();
            let before = list.len();
            list.retain(|c| c.metadata.name.as_deref() != Some("https"));
            list.len() < before
        }),
    ];
    for (what, edit) in edits {
        let mut after = before.clone();
        assert!(edit(&mut after), "the fixtures hold no {what}: check this test");
        assert!(!unchanged(&previous, &before, &after), "a removed {what} is a change");
    }
    // A ConfigMap translation never read (another controller's, say) changes nothing.
    let mut unread = before.clone();
    let list = unread.config_maps.make_mut();
    let count = list.len();
    list.retain(|c| c.metadata.name.as_deref() != Some("hsts-off"));
    assert!(list.len() < count, "the fixtures hold ConfigMap tls/hsts-off: check this test");
    assert!(unchanged(&previous, &before, &unread), "an unread ConfigMap removed");
    let mut changed = before.clone();
    let mut ingress = (*changed.ingresses.make_mut()[0]).clone();
    ingress.metadata.labels = Some([("new".to_string(), "label".to_string())].into());
    changed.ingresses.make_mut()[0] = Arc::new(ingress);
    assert!(!unchanged(&previous, &before, &changed), "an Ingress's labels changed");

    let first_expiry = previous.tls.certs.iter().map(|c| c.not_after).min();
    let mut expired = before.clone();
    expired.observed_at = Some(first_expiry.expect("the fixtures hold certificates") + 1);
    assert!(!unchanged(&previous, &before, &expired), "a certificate expired in between");
}
