//! TLS in translation: which certificate answers which server name (exact, one-label wildcard,
//! the default certificate), which Ingress wins a host, unusable Secrets (reported, never
//! taking other hosts or the host's routes down), HTTPS redirects and HSTS, client
//! certificates and ciphers per host, TLS versions, ssl-passthrough, backend protocols and
//! backend TLS, and determinism.
//!
//! Fixtures: `tls-objects.yaml` (Secrets with committed PEM, valid until 2100 but one expired in
//! 2001, and the Services), `tls-hosts.yaml`, `tls-redirect.yaml`, `tls-policies.yaml`, all in
//! namespace `tls`. Snapshots are observed at a fixed `Snapshot::observed_at` (2033), so nothing
//! depends on today's date.

mod common;

use std::fmt::Write;

use common::*;
use sluice_model::{
    ClientVerify, HttpsBehaviour, KeyFormat, RealIp, Reason, RoutingTable, Settings, Severity,
    Snapshot, Target, TlsVersions, UpstreamProtocol, UpstreamTls,
};

const ALL: &[&str] = &["tls-objects", "tls-hosts", "tls-redirect", "tls-policies"];
/// When the snapshots are taken: 2033-05-18.
const NOW: i64 = 2_000_000_000;
/// The valid certificates' notAfter: 2100-01-01T00:00:00Z.
const NOT_AFTER: i64 = 4_102_444_800;
/// The expired certificate's notAfter: 2001-01-01T00:00:00Z.
const EXPIRED_AT: i64 = 978_307_200;
/// Where the `app` Service's paths go.
const APP: &str = "-> tls-app-80 [10.40.0.1:8080]";

const ECDSA_AES128: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
const ECDSA_AES256: &str = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";
const ECDSA_CHACHA: &str = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
const RSA_AES128: &str = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
const RSA_AES256: &str = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384";

/// Every fixture, observed at `now`, with extra inline manifests.
fn snapshot_at(now: Option<i64>, extra: &[&str]) -> Snapshot {
    let mut texts: Vec<String> = ALL.iter().map(|n| fixture(n)).collect();
    texts.extend(extra.iter().map(|t| t.to_string()));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut snapshot = snapshot_of(&refs);
    snapshot.observed_at = now;
    snapshot
}

fn translate_with(settings: &Settings) -> RoutingTable {
    sluice_translate::translate(&snapshot_at(Some(NOW), &[]), settings)
}

fn table() -> RoutingTable {
    translate_with(&Settings::default())
}

fn with_default_cert(secret: &str) -> Settings {
    Settings { default_ssl_certificate: Some(nn(secret)), ..Settings::default() }
}

fn with_configmap(name: &str) -> Settings {
    Settings { configmap: Some(nn(&format!("tls/{name}"))), ..Settings::default() }
}

fn passthrough_on() -> Settings {
    Settings { enable_ssl_passthrough: true, ..Settings::default() }
}

/// The Secret whose certificate answers server name `name`; `None`: the default certificate.
fn cert_for(t: &RoutingTable, name: &str) -> Option<String> {
    t.tls.cert_by_name.get(name).map(|&i| t.tls.certs[i as usize].secret.to_string())
}

/// The certificate loaded from Secret `tls/<secret>`.
fn cert<'t>(t: &'t RoutingTable, secret: &str) -> &'t sluice_model::TlsCert {
    let name = nn(&format!("tls/{secret}"));
    let found: Vec<_> = t.tls.certs.iter().filter(|c| c.secret == name).collect();
    assert_eq!(found.len(), 1, "Secret {name} loaded once: {:?}", secrets_loaded(t));
    found[0]
}

/// The Secrets of every loaded certificate, in table order.
fn secrets_loaded(t: &RoutingTable) -> Vec<String> {
    t.tls.certs.iter().map(|c| c.secret.to_string()).collect()
}

/// Every diagnostic about `object` in full (`"Error InvalidSecret: <message>"`), in table order.
fn messages(t: &RoutingTable, object: &str) -> Vec<String> {
    t.diagnostics
        .iter()
        .filter(|d| d.object.to_string() == object)
        .map(|d| format!("{:?} {}: {}", d.severity, d.reason, d.message))
        .collect()
}

/// The handshake policy of a server name.
fn handshake<'t>(t: &'t RoutingTable, name: &str) -> &'t sluice_model::HandshakePolicy {
    &t.tls.policies[t.tls.policy_for(name) as usize]
}

/// The backend a request is proxied to.
fn backend<'t>(t: &'t RoutingTable, host: &str, path: &str) -> &'t sluice_model::Backend {
    match &t.lookup(host, path).route.target {
        Target::Backend(id) => &t.backends[*id as usize],
        other => panic!("{host}{path} is not proxied: {other:?}\n{}", dump(t)),
    }
}

/// `UpstreamTls` without its fingerprint (a hash of the rest), for comparisons.
fn upstream_tls(b: &sluice_model::Backend) -> Option<UpstreamTls> {
    b.tls.as_ref().map(|t| UpstreamTls { fingerprint: 0, ..(**t).clone() })
}

/// The test CA's certificate (DER), which `www`'s tls.crt carries after the leaf.
fn test_ca(t: &RoutingTable) -> Vec<u8> {
    cert(t, "www").chain[1].clone()
}

/// The route-level redirect decision for a request: (ssl-redirect, force-ssl-redirect,
/// redirect to HTTPS, preserve trailing slash).
fn redirect(t: &RoutingTable, host: &str, path: &str) -> (bool, bool, bool, bool) {
    let r = served(t, host, path);
    let p = &r.policy.https;
    (p.ssl_redirect, p.force_ssl_redirect, r.redirect_to_https, p.preserve_trailing_slash)
}

/// A ConfigMap `tls/<name>` with `data` (values double-quoted).
fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: tls}}\ndata:"
    );
    for (k, v) in data {
        write!(yaml, "\n  {k}: {v:?}").unwrap();
    }
    yaml.push('\n');
    yaml
}

/// Every fixture plus one inline ConfigMap used as --configmap.
fn with_inline_configmap(data: &[(&str, &str)]) -> RoutingTable {
    let cm = configmap("inline", data);
    sluice_translate::translate(&snapshot_at(Some(NOW), &[&cm]), &with_configmap("inline"))
}

// --- Certificates by server name ---------------------------------------------------------

// Each listed host gets its own Secret's certificate: by exact listing (case-insensitively:
// the tls entry says A.TLS.TEST), or, for a rule host the Ingress does not list, a Secret of
// the same Ingress whose certificate covers it (b.tls.test), as ingress-nginx does.
#[test]
fn each_tls_host_gets_its_secrets_certificate() {
    let t = table();
    let rows = [
        ("www.tls.test", Some("tls/www")),
        ("a.tls.test", Some("tls/multi")),
        ("b.tls.test", Some("tls/multi")),
        ("x.wild.tls.test", Some("tls/wild")),
        ("cn-only.tls.test", Some("tls/cnonly")),
        ("nosecret.tls.test", None),
        ("unlisted.tls.test", None),
        ("no-rule.tls.test", None),
    ];
    for (host, want) in rows {
        assert_eq!(cert_for(&t, host).as_deref(), want, "{host}");
    }
    assert_no_diag(&t, "Ingress tls/sni");
    // Both hosts of `multi` share one loaded certificate.
    assert_eq!(t.tls.cert_by_name.get("a.tls.test"), t.tls.cert_by_name.get("b.tls.test"));
    let mut loaded = secrets_loaded(&t);
    loaded.sort();
    loaded.dedup();
    assert_eq!(
        loaded.len(),
        t.tls.certs.len(),
        "a Secret is loaded once: {:?}",
        secrets_loaded(&t)
    );
    // The hosts' routes are ordinary routes.
    for host in ["www.tls.test", "a.tls.test", "b.tls.test", "nosecret.tls.test"] {
        assert_eq!(route(&t, host, "/"), format!("tls/sni {APP}"), "{host}");
    }
}

// What translation reads from a Secret: the chain leaf first (www: leaf + CA), the leaf's names
// (its SANs; without SANs its CN), its notAfter, and the key in any PEM encoding (PKCS#8,
// SEC1, PKCS#1), from stringData or base64 data.
#[test]
fn certificates_are_read_from_stringdata_and_data_in_every_key_encoding() {
    let t = translate_with(&with_default_cert("tls/default"));
    let rows = [
        ("www", vec!["www.tls.test"], 2, KeyFormat::Pkcs8),
        ("wild", vec!["*.wild.tls.test"], 1, KeyFormat::Sec1),
        ("multi", vec!["a.tls.test", "b.tls.test"], 1, KeyFormat::Pkcs8),
        ("cnonly", vec!["cn-only.tls.test"], 1, KeyFormat::Pkcs1),
        ("default", vec!["default.tls.test"], 1, KeyFormat::Pkcs8),
    ];
    for (secret, names, chain, format) in rows {
        let c = cert(&t, secret);
        assert_eq!(c.names, names, "{secret}");
        assert_eq!(c.chain.len(), chain, "{secret}");
        assert_eq!(c.key.format, format, "{secret}");
        assert_eq!(c.not_after, NOT_AFTER, "{secret}");
        assert!(!c.key.der.is_empty(), "{secret}");
    }
    // The chain's second certificate is the CA, not a second leaf: the names are the leaf's.
    assert_ne!(cert(&t, "www").chain[0], test_ca(&t));
    // Distinct contents, distinct fingerprints (the proxy reloads a key only when it changes).
    let mut prints: Vec<u64> = t.tls.certs.iter().map(|c| c.fingerprint).collect();
    prints.sort();
    prints.dedup();
    assert_eq!(prints.len(), t.tls.certs.len());
}

// A one-label wildcard certificate answers `x.wild.tls.test` but neither two labels down nor
// the parent name itself, both in the SNI map and when checking that a Secret covers a host:
// `deep.x.wild.tls.test` and `wild.tls.test` listed with the wildcard Secret are reported.
#[test]
fn a_wildcard_covers_exactly_one_label() {
    let t = table();
    assert_eq!(cert_for(&t, "anything.wild.tls.test").as_deref(), Some("tls/wild"));
    assert_eq!(cert_for(&t, "x.wild.tls.test").as_deref(), Some("tls/wild"));
    assert_eq!(cert_for(&t, "a.b.wild.tls.test"), None);
    assert_eq!(cert_for(&t, "deep.x.wild.tls.test"), None);
    assert_eq!(cert_for(&t, "wild.tls.test"), None);
    let mut names: Vec<String> = t.tls.cert_by_name.iter().map(|(h, _)| h.into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "*.wild.tls.test",
            "a.tls.test",
            "b.tls.test",
            "cn-only.tls.test",
            "other.tls.test",
            "www.tls.test",
            "x.wild.tls.test"
        ]
    );
    assert_eq!(
        messages(&t, "Ingress tls/wildcard"),
        [
            "Error InvalidSecret: TLS for deep.x.wild.tls.test: Secret tls/wild is for \
             *.wild.tls.test only, not deep.x.wild.tls.test; the default certificate is used",
            "Error InvalidSecret: TLS for wild.tls.test: Secret tls/wild is for *.wild.tls.test \
             only, not wild.tls.test; the default certificate is used",
        ]
    );
    for (host, path) in
        [("x.wild.tls.test", "/x"), ("deep.x.wild.tls.test", "/"), ("wild.tls.test", "/")]
    {
        assert_eq!(route(&t, host, path), format!("tls/wildcard {APP}"), "{host}");
    }
    assert_eq!(route(&t, "anything.wild.tls.test", "/"), format!("tls/sni {APP}"));
}

// --default-ssl-certificate: when usable, it is the default certificate (hosts without a
// certificate of their own, unknown names); without the flag there is none (the proxy then
// uses its generated one) and the Secret is not even read.
#[test]
fn default_ssl_certificate_is_the_default_when_usable() {
    let t = translate_with(&with_default_cert("tls/default"));
    let id = t.tls.default_cert.expect("a default certificate");
    assert_eq!(t.tls.certs[id as usize].secret, nn("tls/default"));
    assert_no_diag(&t, "Secret tls/default");
    // Hosts without their own certificate are not mapped: they get the default.
    assert_eq!(cert_for(&t, "nosecret.tls.test"), None);
    assert_eq!(cert_for(&t, "www.tls.test").as_deref(), Some("tls/www"));

    let t = table();
    assert_eq!(t.tls.default_cert, None);
    assert!(!secrets_loaded(&t).contains(&"tls/default".to_string()));
}

// A missing or unusable --default-ssl-certificate is reported on the Secret, the generated
// certificate stays the default, and every host's own certificate is unaffected.
#[test]
fn default_ssl_certificate_missing_or_invalid_is_reported() {
    let rows = [
        (
            "tls/absent",
            "Error MissingSecret: --default-ssl-certificate: Secret tls/absent does not exist; \
             Sluice's own generated certificate is used",
        ),
        (
            "tls/expired",
            "Error InvalidSecret: --default-ssl-certificate: Secret tls/expired its certificate \
             expired on Jan  1 00:00:00 2001 +00:00; Sluice's own generated certificate is used",
        ),
        (
            "tls/badpem",
            "Error InvalidSecret: --default-ssl-certificate: Secret tls/badpem tls.crt: not PEM \
             certificates (base64 decode error: InvalidCharacter(33)); Sluice's own generated \
             certificate is used",
        ),
    ];
    for (secret, message) in rows {
        let t = translate_with(&with_default_cert(secret));
        assert_eq!(t.tls.default_cert, None, "{secret}");
        assert_eq!(messages(&t, &format!("Secret {secret}")), [message]);
        assert_eq!(cert_for(&t, "www.tls.test").as_deref(), Some("tls/www"), "{secret}");
        assert_eq!(cert_for(&t, "a.tls.test").as_deref(), Some("tls/multi"), "{secret}");
    }
}

// The same Secret as --default-ssl-certificate and as a host's Secret is loaded once.
#[test]
fn default_certificate_shared_with_a_host_is_loaded_once() {
    let ingress = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: uses-default, namespace: tls}
spec:
  ingressClassName: sluice
  tls: [{hosts: [default.tls.test], secretName: default}]
  rules:
    - host: default.tls.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
";
    let t = sluice_translate::translate(
        &snapshot_at(Some(NOW), &[ingress]),
        &with_default_cert("tls/default"),
    );
    assert_eq!(t.tls.cert_by_name.get("default.tls.test").copied(), t.tls.default_cert);
    assert!(t.tls.default_cert.is_some());
    assert_eq!(cert(&t, "default").names, ["default.tls.test"]);
    assert_no_diag(&t, "Ingress tls/uses-default");
}

// --- Which Ingress gives a host its certificate ------------------------------------------

/// Two Ingresses on shared.tls.test, each with its own path and its own Secret for the host.
fn shared_pair(first: (&str, &str, &str), second: (&str, &str, &str)) -> RoutingTable {
    let ingress = |(name, created, secret): (&str, &str, &str)| {
        format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: tls, creationTimestamp: \"{created}\"}}
spec:
  ingressClassName: sluice
  tls: [{{hosts: [shared.tls.test], secretName: {secret}}}]
  rules:
    - host: shared.tls.test
      http: {{paths: [{{path: /{name}, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}
"
        )
    };
    let (a, b) = (ingress(first), ingress(second));
    sluice_translate::translate(&snapshot_at(Some(NOW), &[&a, &b]), &Settings::default())
}

// Two Ingresses give shared.tls.test different Secrets: the older Ingress's wins, whichever
// order they are listed in; the other is silently not used (as in ingress-nginx), and both
// Ingresses' paths are served.
#[test]
fn the_oldest_ingress_gives_a_host_its_certificate() {
    let old = "2023-01-01T00:00:00Z";
    let new = "2024-01-01T00:00:00Z";
    for (first, second, want) in [
        (("one", old, "shared-old"), ("two", new, "shared-new"), "tls/shared-old"),
        (("one", new, "shared-old"), ("two", old, "shared-new"), "tls/shared-new"),
    ] {
        for t in [shared_pair(first, second), shared_pair(second, first)] {
            assert_eq!(cert_for(&t, "shared.tls.test").as_deref(), Some(want));
            assert_eq!(route(&t, "shared.tls.test", "/one"), format!("tls/one {APP}"));
            assert_eq!(route(&t, "shared.tls.test", "/two"), format!("tls/two {APP}"));
            assert_no_diag(&t, "Ingress tls/one");
            assert_no_diag(&t, "Ingress tls/two");
        }
    }
}

// On equal creationTimestamps, ingress-nginx's order decides: `namespace/name` descending, so
// tls/tie-b is "older" than tls/tie-a.
#[test]
fn on_equal_timestamps_the_greater_name_gives_the_certificate() {
    let at = "2024-01-01T00:00:00Z";
    let t = shared_pair(("tie-a", at, "shared-old"), ("tie-b", at, "shared-new"));
    assert_eq!(cert_for(&t, "shared.tls.test").as_deref(), Some("tls/shared-new"));
    let t = shared_pair(("tie-b", at, "shared-old"), ("tie-a", at, "shared-new"));
    assert_eq!(cert_for(&t, "shared.tls.test").as_deref(), Some("tls/shared-old"));
}

// An older Ingress of the host without any TLS section does not claim the host: a newer
// Ingress's Secret applies (ingress-nginx skips Ingresses without spec.tls).
#[test]
fn an_older_ingress_without_tls_does_not_block_a_newer_certificate() {
    let older = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: older, namespace: tls, creationTimestamp: \"2020-01-01T00:00:00Z\"}
spec:
  ingressClassName: sluice
  rules:
    - host: shared.tls.test
      http: {paths: [{path: /older, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
";
    let newer = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: newer, namespace: tls, creationTimestamp: \"2024-01-01T00:00:00Z\"}
spec:
  ingressClassName: sluice
  tls: [{hosts: [shared.tls.test], secretName: shared-new}]
  rules:
    - host: shared.tls.test
      http: {paths: [{path: /newer, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
";
    let t =
        sluice_translate::translate(&snapshot_at(Some(NOW), &[older, newer]), &Settings::default());
    assert_eq!(cert_for(&t, "shared.tls.test").as_deref(), Some("tls/shared-new"));
    // The host has TLS, so the older Ingress's path redirects too (see the redirect tests).
    assert!(served(&t, "shared.tls.test", "/older").redirect_to_https);
}

// --- Unusable Secrets ----------------------------------------------------------------------

// Every way a host's Secret can be unusable is an error naming the Ingress, the host and the
// Secret; that host falls back to the default certificate (here --default-ssl-certificate),
// keeps its TLS (so its redirect) and its routes; the good host of the same Ingress
// (cn-only.tls.test) and every other host keep their certificates.
#[test]
fn unusable_secrets_are_reported_and_the_host_falls_back_to_the_default() {
    let t = translate_with(&with_default_cert("tls/default"));
    let fallback = "; the default certificate is used";
    let rows = [
        ("missing.tls.test", "MissingSecret", "Secret tls/does-not-exist does not exist"),
        (
            "badpem.tls.test",
            "InvalidSecret",
            "Secret tls/badpem tls.crt: not PEM certificates (base64 decode error: \
             InvalidCharacter(33))",
        ),
        ("notpem.tls.test", "InvalidSecret", "Secret tls/notpem tls.crt: no certificate in it"),
        (
            "notx509.tls.test",
            "InvalidSecret",
            "Secret tls/notx509 tls.crt: certificate 1 does not parse (Parsing Error: \
             Der(UnexpectedTag { expected: Some(Tag(16)), actual: Tag(0) }))",
        ),
        ("nokey.tls.test", "InvalidSecret", "Secret tls/nokey has no tls.key"),
        (
            "expired.tls.test",
            "InvalidSecret",
            "Secret tls/expired its certificate expired on Jan  1 00:00:00 2001 +00:00",
        ),
        (
            "wrong.tls.test",
            "InvalidSecret",
            "Secret tls/other is for other.tls.test only, not wrong.tls.test",
        ),
        (
            "*.other.tls.test",
            "InvalidSecret",
            "Secret tls/other is for other.tls.test only, not *.other.tls.test",
        ),
    ];
    let mut want: Vec<String> = rows
        .iter()
        .map(|(host, reason, why)| format!("Error {reason}: TLS for {host}: {why}{fallback}"))
        .collect();
    let mut got = messages(&t, "Ingress tls/broken");
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}", dump(&t));
    for (host, _, _) in rows {
        assert_eq!(cert_for(&t, host), None, "{host}: the default certificate");
        let request_host = host.replace('*', "any");
        assert_eq!(route(&t, &request_host, "/"), format!("tls/broken {APP}"), "{host}");
        assert!(served(&t, &request_host, "/").redirect_to_https, "{host} still has TLS");
    }
    assert_eq!(cert_for(&t, "cn-only.tls.test").as_deref(), Some("tls/cnonly"));
    assert_eq!(cert_for(&t, "www.tls.test").as_deref(), Some("tls/www"));
    assert!(t.tls.default_cert.is_some());
    // An unusable Secret is not loaded, and the diagnostic is the Ingress's, not the Secret's.
    for secret in ["tls/badpem", "tls/notpem", "tls/notx509", "tls/nokey", "tls/expired"] {
        assert!(!secrets_loaded(&t).contains(&secret.to_string()), "{secret}");
        assert_no_diag(&t, &format!("Secret {secret}"));
    }
}

// A key that does not match its certificate is not detected by translation, which only
// parses (it has no crypto): the proxy checks each key against its certificate when it loads
// a table, and reports InvalidSecret there (crates/proxy/src/tls/mod.rs, CertStore::build).
#[test]
fn a_key_that_does_not_match_its_certificate_is_left_to_the_proxy() {
    let t = table();
    assert_eq!(cert_for(&t, "other.tls.test").as_deref(), Some("tls/mismatch"));
    assert!(!messages(&t, "Ingress tls/broken").iter().any(|m| m.contains("mismatch")));
    assert_no_diag(&t, "Secret tls/mismatch");
    // Its key is the wild certificate's key (PKCS#8 here, SEC1 there), not other's.
    assert_ne!(cert(&t, "mismatch").key.der, cert(&t, "other").key.der);
    assert_eq!(cert(&t, "mismatch").chain, cert(&t, "other").chain);
}

// Expiry is judged against Snapshot::observed_at only: unknown time accepts every
// certificate; notAfter itself is still valid, one second later is expired; the certificates
// valid until 2100 expire then too.
#[test]
fn expiry_is_judged_against_observed_at() {
    let at = |now: Option<i64>| {
        sluice_translate::translate(&snapshot_at(now, &[]), &Settings::default())
    };
    for now in [None, Some(EXPIRED_AT)] {
        let t = at(now);
        assert_eq!(cert_for(&t, "expired.tls.test").as_deref(), Some("tls/expired"), "{now:?}");
        assert_eq!(cert(&t, "expired").not_after, EXPIRED_AT);
    }
    let t = at(Some(EXPIRED_AT + 1));
    assert_eq!(cert_for(&t, "expired.tls.test"), None);
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidSecret,
        "Ingress tls/broken",
        "TLS for expired.tls.test: Secret tls/expired its certificate expired on Jan  1 00:00:00 \
         2001 +00:00; the default certificate is used",
    );
    let t = at(Some(NOT_AFTER));
    assert_eq!(cert_for(&t, "www.tls.test").as_deref(), Some("tls/www"));
    let t = at(Some(NOT_AFTER + 1));
    assert_eq!(cert_for(&t, "www.tls.test"), None);
    assert!(t.tls.cert_by_name.is_empty(), "every certificate has expired");
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidSecret,
        "Ingress tls/sni",
        "TLS for www.tls.test: Secret tls/www its certificate expired on Jan  1 00:00:00 2100 \
         +00:00; the default certificate is used",
    );
}

// --- HTTPS redirects and HSTS -------------------------------------------------------------

fn host(name: &str) -> String {
    format!("{name}.redirect.test")
}

// ssl-redirect (default true) redirects only hosts with TLS, a tls entry without secretName
// included; ssl-redirect "false" turns it off; force-ssl-redirect redirects without TLS and
// beats ssl-redirect "false"; preserve-trailing-slash is carried. TLS is per host: an
// Ingress without TLS on a host another Ingress lists redirects too.
#[test]
fn ssl_redirect_applies_to_hosts_with_tls() {
    let t = table();
    let rows = [
        (host("tls-default"), "/", (true, false, true, false)),
        (host("plain"), "/", (true, false, false, false)),
        (host("tls-off"), "/", (false, false, false, false)),
        (host("force"), "/", (true, true, true, false)),
        (host("force-over-off"), "/", (false, true, true, false)),
        (host("slash"), "/", (true, false, true, true)),
        (host("shared"), "/plain", (true, false, true, false)),
        (host("shared"), "/tls", (true, false, true, false)),
        ("www.tls.test".to_string(), "/", (true, false, true, false)),
        ("nosecret.tls.test".to_string(), "/", (true, false, true, false)),
        ("missing.tls.test".to_string(), "/", (true, false, true, false)),
        ("anything.wild.tls.test".to_string(), "/", (true, false, true, false)),
    ];
    for (h, path, want) in rows {
        assert_eq!(redirect(&t, &h, path), want, "{h}{path}");
    }
    assert_eq!(owner(&t, &host("shared"), "/plain"), "tls/shared-plain");
    for name in ["tls-default", "plain", "tls-off", "force", "force-over-off", "slash"] {
        assert_no_diag(&t, &format!("Ingress tls/{name}"));
        assert_eq!(route(&t, &host(name), "/"), format!("tls/{name} {APP}"));
    }
}

// Invalid redirect annotations are reported and keep the defaults.
#[test]
fn invalid_redirect_annotations_keep_the_defaults() {
    let t = table();
    assert_eq!(redirect(&t, &host("invalid"), "/"), (true, false, true, false));
    assert_eq!(
        messages(&t, "Ingress tls/invalid"),
        [
            "Error InvalidAnnotation: nginx.ingress.kubernetes.io/force-ssl-redirect: \"maybe\" \
             is not a boolean (true or false); the default applies",
            "Error InvalidAnnotation: nginx.ingress.kubernetes.io/preserve-trailing-slash: \"on\" \
             is not a boolean (true or false); the default applies",
            "Error InvalidAnnotation: nginx.ingress.kubernetes.io/ssl-redirect: \"yes\" is not a \
             boolean (true or false); the default applies",
        ]
    );
}

// ConfigMap ssl-redirect / force-ssl-redirect set the defaults; annotations override them; an
// invalid annotation falls back to the ConfigMap's value.
#[test]
fn configmap_redirect_defaults_are_overridden_by_annotations() {
    let t = translate_with(&with_configmap("ssl-redirect-off"));
    let rows = [
        ("tls-default", (false, false, false, false)),
        ("tls-on", (true, false, true, false)),
        ("plain", (false, false, false, false)),
        ("force", (false, true, true, false)),
        ("invalid", (false, false, false, false)),
    ];
    for (name, want) in rows {
        assert_eq!(redirect(&t, &host(name), "/"), want, "ssl-redirect-off: {name}");
    }
    assert_no_diag(&t, "ConfigMap tls/ssl-redirect-off");

    let t = translate_with(&with_configmap("force-ssl-redirect-on"));
    let rows = [
        ("plain", (true, true, true, false)),
        ("force-off", (true, false, false, false)),
        ("tls-off", (false, true, true, false)),
        ("tls-default", (true, true, true, false)),
    ];
    for (name, want) in rows {
        assert_eq!(redirect(&t, &host(name), "/"), want, "force-ssl-redirect-on: {name}");
    }
    assert_no_diag(&t, "ConfigMap tls/force-ssl-redirect-on");
}

// ingress-nginx's defaults: HSTS on (max-age 31536000, includeSubDomains, no preload), ACME
// challenges exempt from redirects, 308, client X-Forwarded-* not trusted.
#[test]
fn https_behaviour_defaults_are_ingress_nginx_s() {
    let t = table();
    let want = HttpsBehaviour {
        hsts: Some("max-age=31536000; includeSubDomains".into()),
        no_redirect_prefixes: vec!["/.well-known/acme-challenge".into()],
        redirect_code: 308,
        use_forwarded_headers: false,
        real_ip: RealIp::default(),
        keep_alive: std::time::Duration::from_secs(75),
        connections: Default::default(),
        http2: sluice_model::Http2Settings {
            enabled: true,
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            send_timeout: std::time::Duration::from_secs(60),
        },
    };
    assert_eq!(t.https, want);
    assert!(!want.real_ip.from_header && !want.real_ip.proxy_protocol);
    assert_eq!(HttpsBehaviour::default(), want);
}

// The ConfigMap's HTTPS keys: redirect code, exempt locations (comma-separated, trimmed, empty
// items dropped; an empty value exempts nothing), forwarded headers, and the HSTS header built
// from its four keys (hsts "false" sends none).
#[test]
fn https_configmap_keys_shape_redirects_and_hsts() {
    let t = translate_with(&with_configmap("https"));
    assert_eq!(
        t.https,
        HttpsBehaviour {
            hsts: Some("max-age=600; preload".into()),
            no_redirect_prefixes: vec!["/.well-known/acme-challenge".into(), "/healthz".into()],
            redirect_code: 301,
            use_forwarded_headers: true,
            // `use-forwarded-headers` reads the client's address from X-Forwarded-For.
            real_ip: RealIp { from_header: true, ..RealIp::default() },
            keep_alive: std::time::Duration::from_secs(75),
            connections: Default::default(),
            http2: sluice_model::Http2Settings::default(),
        }
    );
    assert_no_diag(&t, "ConfigMap tls/https");

    let t = translate_with(&with_configmap("hsts-off"));
    assert_eq!(
        t.https,
        HttpsBehaviour {
            hsts: None,
            no_redirect_prefixes: vec![],
            redirect_code: 308,
            use_forwarded_headers: false,
            real_ip: RealIp::default(),
            keep_alive: std::time::Duration::from_secs(75),
            connections: Default::default(),
            http2: sluice_model::Http2Settings::default(),
        }
    );
    assert_no_diag(&t, "ConfigMap tls/hsts-off");
}

// http-redirect-code accepts 301, 302, 307 and 308 only; anything else is reported and 308
// stays.
#[test]
fn http_redirect_code_accepts_301_302_307_308_only() {
    for code in ["301", "302", "307", "308", " 307 "] {
        let t = with_inline_configmap(&[("http-redirect-code", code)]);
        assert_eq!(t.https.redirect_code.to_string(), code.trim(), "{code:?}");
        assert_no_diag(&t, "ConfigMap tls/inline");
    }
    for code in ["303", "200", "300", "abc", ""] {
        let t = with_inline_configmap(&[("http-redirect-code", code)]);
        assert_eq!(t.https.redirect_code, 308, "{code:?}");
        assert_eq!(
            messages(&t, "ConfigMap tls/inline"),
            [format!(
                "Error InvalidConfigMapKey: http-redirect-code: {code:?} is not 301, 302, 307 or \
                 308; the default applies"
            )]
        );
    }
}

// Invalid values of the HTTPS keys are each reported; every default stays.
#[test]
fn invalid_https_configmap_values_keep_the_defaults() {
    let t = translate_with(&with_configmap("https-invalid"));
    assert_eq!(t.https, HttpsBehaviour::default());
    assert_eq!(redirect(&t, &host("tls-default"), "/"), (true, false, true, false));
    assert_eq!(redirect(&t, &host("plain"), "/"), (true, false, false, false));
    let not_bool = "is not a boolean (true or false); the default applies";
    assert_eq!(
        messages(&t, "ConfigMap tls/https-invalid"),
        [
            format!("Error InvalidConfigMapKey: force-ssl-redirect: \"on\" {not_bool}"),
            format!("Error InvalidConfigMapKey: hsts-include-subdomains: \"yes\" {not_bool}"),
            "Error InvalidConfigMapKey: hsts-max-age: \"1y\" is not a whole number of seconds; \
             the default applies"
                .to_string(),
            format!("Error InvalidConfigMapKey: hsts-preload: \"Y\" {not_bool}"),
            format!("Error InvalidConfigMapKey: hsts: \"maybe\" {not_bool}"),
            "Error InvalidConfigMapKey: http-redirect-code: \"303\" is not 301, 302, 307 or 308; \
             the default applies"
                .to_string(),
            format!("Error InvalidConfigMapKey: ssl-redirect: \"nope\" {not_bool}"),
            format!("Error InvalidConfigMapKey: use-forwarded-headers: \"yes\" {not_bool}"),
        ]
    );
}

// In ingress-nginx a TLS host's unmatched paths are its `/` location, which has the Ingress's
// annotations and the host's certificate: plain-HTTP requests to them are redirected like any
// other path (lua `redirect_to_https` checks only the location's ssl_redirect and whether a
// certificate is configured for the host).
#[test]
fn a_tls_hosts_unmatched_paths_redirect_too() {
    let t = table();
    assert_eq!(owner(&t, &host("own-default"), "/other"), "tls/own-default");
    assert!(served(&t, &host("own-default"), "/only").redirect_to_https);
    assert!(served(&t, &host("own-default"), "/other").redirect_to_https, "defaultBackend");
    assert!(served(&t, &host("no-root"), "/other").redirect_to_https, "built-in 404");
}

// In ingress-nginx, a rule host of an Ingress that has a TLS section but does not list the host
// (and no Secret of it covers the host) gets the default certificate, so it counts as a TLS host
// and plain-HTTP requests are redirected (controller.go createServers: extractTLSSecretName
// returns "" -> servers[host].SSLCert = default certificate; its docs: "redirects to HTTPS if
// TLS is enabled for that ingress").
#[test]
fn rule_hosts_an_ingress_with_tls_does_not_list_still_count_as_tls_hosts() {
    let t = table();
    assert!(served(&t, &host("listed"), "/").redirect_to_https);
    assert!(served(&t, &host("unlisted"), "/").redirect_to_https);
    assert_eq!(cert_for(&t, &host("unlisted")), None);
}

// --- Client certificates and ciphers, per host ----------------------------------------------

fn phost(name: &str) -> String {
    format!("{name}.policy.test")
}

// auth-tls-* give the host a handshake policy: the CA from the Secret's ca.crt, the verify
// mode (on by default, off, optional, optional_no_ca), the depth (1 by default) and whether
// the certificate is passed upstream (false by default). Hosts asking for nothing use policy 0.
#[test]
fn client_certificate_settings_make_a_host_policy() {
    let t = table();
    let ca = test_ca(&t);
    let rows = [
        ("mtls", ClientVerify::Optional, 2, true),
        ("mtls-defaults", ClientVerify::On, 1, false),
        ("mtls-off", ClientVerify::Off, 1, false),
        ("mtls-optional-no-ca", ClientVerify::OptionalNoCa, 1, false),
    ];
    for (name, verify, depth, pass) in rows {
        let p = handshake(&t, &phost(name));
        let auth = p.client_auth.as_ref().unwrap_or_else(|| panic!("{name}: no client auth"));
        assert_eq!(auth.secret, nn("tls/client-ca"), "{name}");
        assert_eq!(auth.ca, std::slice::from_ref(&ca), "{name}");
        assert_eq!(
            (auth.verify, auth.depth, auth.pass_certificate),
            (verify, depth, pass),
            "{name}"
        );
        assert_eq!(p.tls12_suites, None, "{name}");
        assert_no_diag(&t, &format!("Ingress tls/{name}"));
        assert_eq!(route(&t, &phost(name), "/x"), format!("tls/{name} {APP}"));
    }
    assert_eq!(t.tls.policy_for("www.tls.test"), 0);
    assert_eq!(t.tls.policy_for("unknown.test"), 0);
    assert_eq!(t.tls.policies[0], sluice_model::HandshakePolicy::default());
    // Equal policies are shared: mtls-defaults and pass (same CA, same defaults).
    assert_eq!(t.tls.policy_for(&phost("mtls-defaults")), t.tls.policy_for(&phost("pass")));
}

// Client certificates are per host: the oldest Ingress of the host that sets them decides for
// every path of the host, a newer one's settings (verify off) are not used, its paths served.
#[test]
fn the_oldest_ingress_of_a_host_decides_its_client_certificates() {
    let t = table();
    let auth = handshake(&t, &phost("mtls")).client_auth.clone().expect("client auth");
    assert_eq!(auth.verify, ClientVerify::Optional);
    assert_eq!(route(&t, &phost("mtls"), "/newer"), format!("tls/mtls-newer {APP}"));
    assert_no_diag(&t, "Ingress tls/mtls-newer");
}

// Client-certificate settings that cannot be applied fail the host closed: every path and the
// host's unmatched paths answer 503, with an error naming the Ingress.
#[test]
fn unusable_client_certificate_settings_fail_the_host_closed() {
    let t = table();
    let unverified = "the host answers 503 rather than serve unverified clients";
    let routes_503 = "the routes answer 503";
    let a = "nginx.ingress.kubernetes.io";
    let rows = [
        (
            "mtls-missing",
            format!(
                "Error MissingSecret: client certificates for mtls-missing.policy.test: Secret \
                 tls/does-not-exist does not exist; {unverified}"
            ),
        ),
        (
            "mtls-bad-ca",
            format!(
                "Error InvalidSecret: client certificates for mtls-bad-ca.policy.test: Secret \
                 tls/bad-ca ca.crt: no certificate in it; {unverified}"
            ),
        ),
        (
            "mtls-no-ca",
            format!(
                "Error InvalidSecret: client certificates for mtls-no-ca.policy.test: Secret \
                 tls/no-ca has no ca.crt; {unverified}"
            ),
        ),
        (
            "mtls-bad-verify",
            format!(
                "Error InvalidAnnotation: {a}/auth-tls-verify-client: \"required\" is not on, \
                 optional, optional_no_ca or off; {routes_503}"
            ),
        ),
        (
            "mtls-bad-depth",
            format!(
                "Error InvalidAnnotation: {a}/auth-tls-verify-depth: \"deep\" is not a whole \
                 number from 0 to 255; {routes_503}"
            ),
        ),
        (
            "mtls-bad-pass",
            format!(
                "Error InvalidAnnotation: {a}/auth-tls-pass-certificate-to-upstream: \"yes\" is \
                 not a boolean (true or false); {routes_503}"
            ),
        ),
        (
            "mtls-cross-ns",
            format!(
                "Error InvalidAnnotation: {a}/auth-tls-secret: \"other/client-ca\" is in another \
                 namespace than the Ingress, which is not allowed; {routes_503}"
            ),
        ),
    ];
    for (name, message) in rows {
        assert_eq!(messages(&t, &format!("Ingress tls/{name}")), [message], "{name}");
        for path in ["/", "/x", "/unmatched"] {
            assert_eq!(route(&t, &phost(name), path), "503", "{name}{path}");
        }
        assert_eq!(t.tls.policy_for(&phost(name)), 0, "{name}");
    }
}

// An older Ingress that asks for client certificates it cannot have fails the host closed for
// every Ingress of the host, even a newer one with a usable CA (stricter than ingress-nginx,
// where the newer Ingress's CA would apply to the host and only the older one's paths answer
// 503).
#[test]
fn a_failing_older_ingress_fails_the_host_for_newer_ones() {
    let t = table();
    assert_eq!(route(&t, &phost("failed"), "/a"), "503");
    assert_eq!(route(&t, &phost("failed"), "/b"), "503");
    assert_eq!(summary_for(&t, "Ingress tls/failed-first"), ["Error MissingSecret"]);
    assert_no_diag(&t, "Ingress tls/good-second");
}

// ssl-ciphers maps OpenSSL names onto rustls TLS 1.2 suites in the list's order, without
// duplicates; TLS 1.3 names need nothing; names rustls lacks (CBC, DHE, keywords) are reported
// and left out, never replaced by weaker ones. A list with nothing usable keeps the defaults.
#[test]
fn ssl_ciphers_map_to_rustls_suites_per_host() {
    let t = table();
    let p = handshake(&t, &phost("ciphers"));
    assert_eq!(p.tls12_suites, Some(vec![RSA_AES128.to_string(), ECDSA_AES256.to_string()]));
    assert_eq!(p.client_auth, None);
    assert_eq!(
        messages(&t, "Ingress tls/ciphers"),
        ["Warning UnsupportedAnnotation: nginx.ingress.kubernetes.io/ssl-ciphers: AES128-SHA, \
          !aNULL not offered by Sluice, left out"]
    );
    assert_eq!(t.tls.policy_for(&phost("ciphers-none")), 0);
    assert_eq!(
        messages(&t, "Ingress tls/ciphers-none"),
        ["Error InvalidAnnotation: nginx.ingress.kubernetes.io/ssl-ciphers: no cipher in \
          \"AES128-SHA:DHE-RSA-AES256-SHA\" is offered by Sluice (ECDHE with AES-GCM or \
          CHACHA20-POLY1305); the defaults apply"]
    );
    assert_eq!(route(&t, &phost("ciphers-none"), "/"), format!("tls/ciphers-none {APP}"));
    let p = handshake(&t, &phost("ciphers-mtls"));
    assert_eq!(p.tls12_suites, Some(vec![ECDSA_CHACHA.to_string()]));
    assert_eq!(p.client_auth.as_ref().map(|a| a.verify), Some(ClientVerify::On));
}

// ingress-nginx decides a host's ciphers and its client certificates separately (each by the
// first Ingress of the host that sets it): an older Ingress setting only ssl-ciphers must not
// drop a newer Ingress's auth-tls-secret -- that would serve the host without the client
// certificates it asks for.
#[test]
fn ciphers_and_client_certificates_from_different_ingresses_combine() {
    let t = table();
    let p = handshake(&t, &phost("mixed"));
    assert_eq!(p.tls12_suites, Some(vec![ECDSA_AES128.to_string()]));
    let auth = p.client_auth.as_ref().expect("the newer Ingress's client certificates");
    assert_eq!((auth.secret.clone(), auth.verify), (nn("tls/client-ca"), ClientVerify::On));
    assert_eq!(route(&t, &phost("mixed"), "/c"), format!("tls/mixed-ciphers {APP}"));
    assert_eq!(route(&t, &phost("mixed"), "/m"), format!("tls/mixed-mtls {APP}"));
}

// ConfigMap ssl-ciphers sets the default policy's suites, and those of hosts that ask only for
// client certificates; a host's own ssl-ciphers wins. Names left out are reported on the
// ConfigMap as a ConfigMap key.
#[test]
fn configmap_ssl_ciphers_are_the_default_suites() {
    let t = with_inline_configmap(&[("ssl-ciphers", "ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA")]);
    let global = Some(vec![RSA_AES256.to_string()]);
    assert_eq!(t.tls.policies[0].tls12_suites, global);
    assert_eq!(handshake(&t, &phost("mtls-defaults")).tls12_suites, global);
    assert_eq!(handshake(&t, "www.tls.test").tls12_suites, global);
    assert_eq!(
        handshake(&t, &phost("ciphers")).tls12_suites,
        Some(vec![RSA_AES128.to_string(), ECDSA_AES256.to_string()])
    );
    assert_eq!(
        messages(&t, "ConfigMap tls/inline"),
        [
            "Warning UnsupportedConfigMapKey: ssl-ciphers: AES128-SHA not offered by Sluice, left out"
        ]
    );

    let t = with_inline_configmap(&[("ssl-ciphers", "AES128-SHA:DES-CBC3-SHA")]);
    assert_eq!(t.tls.policies[0].tls12_suites, None);
    assert_eq!(
        messages(&t, "ConfigMap tls/inline"),
        ["Error InvalidConfigMapKey: ssl-ciphers: no cipher in \"AES128-SHA:DES-CBC3-SHA\" is \
          offered by Sluice (ECDHE with AES-GCM or CHACHA20-POLY1305); the defaults apply"]
    );
}

// ssl-protocols keeps only TLSv1.2 and TLSv1.3: older names are reported and never enabled;
// a list naming neither (only TLSv1, say) is an error and the defaults (1.2 and 1.3) stay,
// rather than enabling TLS 1.0 or nothing at all.
#[test]
fn ssl_protocols_offer_only_tls12_and_tls13() {
    let both = TlsVersions { tls12: true, tls13: true };
    assert_eq!(table().tls.versions, both);
    let never = |names: &str| {
        format!(
            "Warning UnsupportedConfigMapKey: ssl-protocols: {names} never enabled by Sluice \
             (only TLSv1.2 and TLSv1.3)"
        )
    };
    let rows: [(&str, TlsVersions, Vec<String>); 5] = [
        ("TLSv1.3", TlsVersions { tls12: false, tls13: true }, vec![]),
        ("TLSv1.2", TlsVersions { tls12: true, tls13: false }, vec![]),
        ("TLSv1.2 TLSv1.3", both, vec![]),
        ("TLSv1 TLSv1.2", TlsVersions { tls12: true, tls13: false }, vec![never("TLSv1")]),
        (
            "TLSv1 TLSv1.1",
            both,
            vec![
                "Error InvalidConfigMapKey: ssl-protocols: \"TLSv1 TLSv1.1\" names neither \
                 TLSv1.2 nor TLSv1.3; the default applies"
                    .to_string(),
                never("TLSv1, TLSv1.1"),
            ],
        ),
    ];
    for (value, versions, diagnostics) in rows {
        let t = with_inline_configmap(&[("ssl-protocols", value)]);
        assert_eq!(t.tls.versions, versions, "{value}");
        assert_eq!(messages(&t, "ConfigMap tls/inline"), diagnostics, "{value}");
    }
}

// --- ssl-passthrough -------------------------------------------------------------------------

// Without --enable-ssl-passthrough the annotation is a warning and TLS is terminated by
// Sluice: no passthrough host, the routes served as usual.
#[test]
fn passthrough_without_the_flag_is_terminated_and_reported() {
    let t = table();
    assert!(t.tls.passthrough.is_empty());
    for (name, h) in [
        ("pass", "pass"),
        ("pass-newer", "pass"),
        ("pass-default", "pass-default"),
        ("pass-paths", "pass-paths"),
        ("pass-no-root", "pass-no-root"),
    ] {
        assert_eq!(
            messages(&t, &format!("Ingress tls/{name}")),
            [format!(
                "Warning UnsupportedFeature: ssl-passthrough needs --enable-ssl-passthrough; TLS \
                 for {} is terminated by Sluice",
                phost(h)
            )],
            "{name}"
        );
    }
    assert_eq!(route(&t, &phost("pass"), "/"), "tls/pass -> tls-secure-443 [10.40.0.2:8443]");
}

// With the flag, a passthrough host maps to a backend with the Service's endpoints: that of
// the rule's `/` path (not its first path), else the Ingress's defaultBackend; without either,
// ingress-nginx ignores passthrough, and Sluice reports it. A newer Ingress passing the same
// host through loses, with an error.
#[test]
fn passthrough_maps_the_host_to_the_backend_of_its_root() {
    let t = translate_with(&passthrough_on());
    let mut got: Vec<(String, String, Vec<String>)> = t
        .tls
        .passthrough
        .iter()
        .map(|(h, &id)| {
            let b = &t.backends[id as usize];
            (
                h.into_owned(),
                b.name.clone(),
                b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            )
        })
        .collect();
    got.sort();
    let secure = |h: &str| (phost(h), "tls-secure-443".to_string(), vec!["10.40.0.2:8443".into()]);
    assert_eq!(got, [secure("pass-default"), secure("pass-paths"), secure("pass")]);
    assert_eq!(t.tls.passthrough.get("other.policy.test"), None);
    assert_eq!(
        messages(&t, "Ingress tls/pass-no-root"),
        ["Warning InvalidBackend: ssl-passthrough for pass-no-root.policy.test: no `/` path nor \
          defaultBackend to pass connections to; TLS for pass-no-root.policy.test is terminated \
          by Sluice"]
    );
    assert_eq!(
        messages(&t, "Ingress tls/pass-newer"),
        ["Error PathCollision: ssl-passthrough for pass.policy.test is already set by an older \
          Ingress; this one is ignored"]
    );
    assert_no_diag(&t, "Ingress tls/pass");
    assert_no_diag(&t, "Ingress tls/pass-paths");
    assert_no_diag(&t, "Ingress tls/pass-default");
}

// A passthrough Ingress's other annotations never reach passed-through connections (the
// proxy splices them before any handshake or request): the passthrough target is the plain
// Service backend. They still apply to the host's plain-HTTP requests, as on ingress-nginx's
// port-80 server (here proxy-body-size), and its auth-tls makes a host policy that spliced
// connections never use.
#[test]
fn passthrough_ignores_the_ingresses_other_annotations() {
    let t = translate_with(&passthrough_on());
    let id = *t.tls.passthrough.get(&phost("pass")).expect("pass is passed through");
    let b = &t.backends[id as usize];
    assert_eq!((b.protocol, b.tls.is_none()), (UpstreamProtocol::Http1, true));
    assert_eq!(policy(&t, &phost("pass"), "/").limits.max_body_size, Some(8 * 1024 * 1024));
    assert_eq!(route(&t, &phost("pass"), "/"), "tls/pass -> tls-secure-443 [10.40.0.2:8443]");
    assert!(handshake(&t, &phost("pass")).client_auth.is_some());
}

// --- Backend protocols and backend TLS ------------------------------------------------------

/// The default backend TLS of `secure`: no Secret, no verification, the Service's name.
fn default_upstream_tls() -> UpstreamTls {
    UpstreamTls { depth: 1, name: "secure.tls.svc".into(), ..UpstreamTls::default() }
}

// backend-protocol: HTTPS and GRPCS speak TLS to the backend (no verification by default,
// the Service's internal name), GRPC speaks h2c; the value is case-insensitive and trimmed.
// Invalid values are reported and HTTP is used, as in ingress-nginx (the routes are served);
// AUTO_HTTP is not implemented (warning, HTTP).
#[test]
fn backend_protocol_sets_how_backends_are_spoken_to() {
    let t = table();
    let rows = [
        ("bp-https", "tls-secure-443-https", UpstreamProtocol::Https, Some(default_upstream_tls())),
        (
            "bp-https-lower",
            "tls-secure-443-https",
            UpstreamProtocol::Https,
            Some(default_upstream_tls()),
        ),
        ("bp-grpc", "tls-app-80-grpc", UpstreamProtocol::Grpc, None),
        ("bp-grpcs", "tls-secure-443-grpcs", UpstreamProtocol::Grpcs, Some(default_upstream_tls())),
        ("bp-invalid", "tls-app-80", UpstreamProtocol::Http1, None),
        ("bp-auto", "tls-app-80", UpstreamProtocol::Http1, None),
    ];
    for (name, backend_name, protocol, tls) in rows {
        let b = backend(&t, &phost(name), "/");
        assert_eq!((b.name.as_str(), b.protocol), (backend_name, protocol), "{name}");
        assert_eq!(upstream_tls(b), tls, "{name}");
        assert_eq!(owner(&t, &phost(name), "/"), format!("tls/{name}"));
    }
    // One backend per Service port and way of reaching it.
    assert!(std::ptr::eq(
        backend(&t, &phost("bp-https"), "/"),
        backend(&t, &phost("bp-https-lower"), "/")
    ));
    for name in ["bp-https", "bp-https-lower", "bp-grpc", "bp-grpcs"] {
        assert_no_diag(&t, &format!("Ingress tls/{name}"));
    }
    assert_eq!(
        messages(&t, "Ingress tls/bp-invalid"),
        ["Error InvalidAnnotation: nginx.ingress.kubernetes.io/backend-protocol: \"SPDY\" is not \
          HTTP, HTTPS, GRPC or GRPCS; HTTP is used"]
    );
    assert_eq!(
        messages(&t, "Ingress tls/bp-auto"),
        ["Warning UnsupportedAnnotation: nginx.ingress.kubernetes.io/backend-protocol: AUTO_HTTP \
          is not implemented by Sluice; HTTP is used"]
    );
}

// proxy-ssl-* reach the backend: ca.crt to verify with, the client pair to present, verify,
// depth, the name (lower-cased) and whether it is sent as SNI; on/off and booleans both work.
#[test]
fn proxy_ssl_settings_reach_the_backend() {
    let t = table();
    let ca = test_ca(&t);
    let www = cert(&t, "www");
    let b = backend(&t, &phost("pssl-full"), "/");
    let tls = upstream_tls(b).expect("backend TLS");
    assert_eq!(tls.secret, Some(nn("tls/proxy-client")));
    assert_eq!(tls.ca, std::slice::from_ref(&ca));
    assert_eq!(tls.client_chain, [www.chain[0].clone()]);
    assert_eq!(tls.client_key.as_ref().map(|k| k.format), Some(KeyFormat::Pkcs8));
    assert_eq!(tls.client_key.as_ref().map(|k| &k.der), Some(&www.key.der));
    assert_eq!(
        (tls.verify, tls.depth, tls.name.as_str(), tls.send_sni),
        (true, 3, "backend.internal", true)
    );
    assert_no_diag(&t, "Ingress tls/pssl-full");

    let b = backend(&t, &phost("pssl-ca-only"), "/");
    assert_eq!(b.protocol, UpstreamProtocol::Grpcs);
    assert_eq!(
        upstream_tls(b),
        Some(UpstreamTls {
            secret: Some(nn("tls/proxy-ca-only")),
            ca: vec![ca.clone()],
            verify: true,
            ..default_upstream_tls()
        })
    );

    // A kubernetes.io/tls Secret without ca.crt: a client certificate (its whole chain), no
    // verification.
    let tls = upstream_tls(backend(&t, &phost("pssl-client-only"), "/")).expect("backend TLS");
    assert_eq!(tls.client_chain, www.chain);
    assert!(tls.ca.is_empty() && !tls.verify);
    // Each distinct setting is its own backend, with its own fingerprint.
    let prints: std::collections::HashSet<u64> = ["bp-https", "pssl-full", "pssl-client-only"]
        .iter()
        .map(|n| backend(&t, &phost(n), "/").tls.as_ref().unwrap().fingerprint)
        .collect();
    assert_eq!(prints.len(), 3);
}

// Verification asked for but impossible (missing Secret, no ca.crt, no Secret at all, or an
// invalid proxy-ssl-verify) fails the paths closed rather than talk to an unverified backend.
#[test]
fn impossible_backend_verification_fails_closed() {
    let t = table();
    let rows = [
        (
            "pssl-missing-verify",
            "Error MissingSecret: proxy-ssl-secret tls/does-not-exist does not exist; the paths \
             answer 503",
        ),
        (
            "pssl-verify-no-secret",
            "Error InvalidAnnotation: proxy-ssl-verify is on but proxy-ssl-secret gives no ca.crt \
             to verify with; the paths answer 503",
        ),
        (
            "pssl-verify-no-ca",
            "Error InvalidAnnotation: proxy-ssl-verify is on but proxy-ssl-secret gives no ca.crt \
             to verify with; the paths answer 503",
        ),
        (
            "pssl-bad-verify",
            "Error InvalidAnnotation: nginx.ingress.kubernetes.io/proxy-ssl-verify: \"strict\" is \
             not on or off; the routes answer 503",
        ),
    ];
    for (name, message) in rows {
        assert_eq!(messages(&t, &format!("Ingress tls/{name}")), [message], "{name}");
        assert_eq!(route(&t, &phost(name), "/"), "503", "{name}");
    }
}

// Invalid values that do not matter without verification are reported, the defaults apply and
// the paths are served.
#[test]
fn invalid_proxy_ssl_values_without_verification_keep_the_defaults() {
    let t = table();
    assert_eq!(
        upstream_tls(backend(&t, &phost("pssl-bad-values"), "/")),
        Some(default_upstream_tls())
    );
    let a = "nginx.ingress.kubernetes.io";
    assert_eq!(
        messages(&t, "Ingress tls/pssl-bad-values"),
        [
            format!(
                "Error InvalidAnnotation: {a}/proxy-ssl-name: \"bad name\" is not a host name; \
                 the default applies"
            ),
            format!(
                "Error InvalidAnnotation: {a}/proxy-ssl-server-name: \"yes please\" is not on or \
                 off; the default applies"
            ),
            format!(
                "Error InvalidAnnotation: {a}/proxy-ssl-verify-depth: \"zero\" is not a whole \
                 number from 0 to 255; the default applies"
            ),
        ]
    );
}

// ingress-nginx denies the locations (503) whenever proxy-ssl-secret cannot be obtained,
// whatever proxy-ssl-verify says (proxyssl/main.go: GetAuthCertificate error ->
// LocationDenied).
#[test]
fn an_unusable_proxy_ssl_secret_fails_closed_without_verification_too() {
    let t = table();
    assert_eq!(route(&t, &phost("pssl-missing"), "/"), "503");
    assert_eq!(route(&t, &phost("pssl-half"), "/"), "503");
    // Cross-namespace: ingress-nginx denies it too ("cross namespace secrets are not supported").
    assert_eq!(route(&t, &phost("pssl-bad-secret"), "/"), "503");
    let a = "nginx.ingress.kubernetes.io";
    assert_eq!(
        messages(&t, "Ingress tls/pssl-bad-secret"),
        [format!(
            "Error InvalidAnnotation: {a}/proxy-ssl-secret: \"other/client-ca\" is in another \
             namespace than the Ingress, which is not allowed; the routes answer 503"
        )]
    );
}

// --- Determinism ----------------------------------------------------------------------------

/// Everything TLS-related in a table (and its routes and backends), in a canonical text:
/// host maps sorted, key material included.
fn canonical(t: &RoutingTable) -> String {
    let mut out = String::new();
    for c in &t.tls.certs {
        let key = (&c.key.der, c.key.format);
        writeln!(
            out,
            "cert {} {:?} {} {} {:?} {key:?}",
            c.secret, c.names, c.not_after, c.fingerprint, c.chain
        )
        .unwrap();
    }
    let sorted = |m: &sluice_model::HostMap<u32>| {
        let mut v: Vec<(String, u32)> = m.iter().map(|(h, &v)| (h.into_owned(), v)).collect();
        v.sort();
        v
    };
    writeln!(out, "by name {:?}", sorted(&t.tls.cert_by_name)).unwrap();
    writeln!(out, "default {:?}", t.tls.default_cert).unwrap();
    writeln!(out, "policies {:?}", t.tls.policies).unwrap();
    writeln!(out, "policy by name {:?}", sorted(&t.tls.policy_by_name)).unwrap();
    writeln!(out, "passthrough {:?}", sorted(&t.tls.passthrough)).unwrap();
    writeln!(out, "versions {:?} https {:?}", t.tls.versions, t.https).unwrap();
    for b in &t.backends {
        writeln!(
            out,
            "backend {} {} {:?} {:?} {:?}",
            b.name, b.port, b.endpoints, b.protocol, b.tls
        )
        .unwrap();
    }
    for r in t.routes.iter() {
        writeln!(out, "route {r:?}").unwrap();
    }
    for h in t.hosts.iter() {
        let mut paths: Vec<_> = h.paths.iter().collect();
        paths.sort();
        writeln!(out, "host {:?} {paths:?} {}", h.host(), h.default_route).unwrap();
    }
    writeln!(out, "{:#?}", t.diagnostics).unwrap();
    out
}

// The same TLS snapshot translated twice, or with every object list shuffled, gives the same
// certificates, maps, policies, passthrough hosts, backends, routes and diagnostics.
#[test]
fn translating_the_same_tls_snapshot_is_deterministic() {
    let settings = Settings {
        default_ssl_certificate: Some(nn("tls/default")),
        enable_ssl_passthrough: true,
        configmap: Some(nn("tls/https")),
        ..Settings::default()
    };
    let snapshot = snapshot_at(Some(NOW), &[]);
    let base = canonical(&sluice_translate::translate(&snapshot, &settings));
    assert!(base.len() > 10_000, "the canonical form covers a rich table");
    assert_eq!(canonical(&sluice_translate::translate(&snapshot, &settings)), base, "twice");
    for seed in [3, 17, 2024] {
        let shuffled = shuffled_snapshot(&snapshot, seed);
        let other = canonical(&sluice_translate::translate(&shuffled, &settings));
        assert!(other == base, "seed {seed}: the tables differ");
    }
}

// Every diagnostic the TLS fixtures produce, with passthrough on and a default certificate:
// nothing unexpected is reported (each is checked in full by the tests above).
#[test]
fn the_tls_fixtures_report_exactly_these_diagnostics() {
    let settings = Settings {
        default_ssl_certificate: Some(nn("tls/default")),
        enable_ssl_passthrough: true,
        ..Settings::default()
    };
    let t = translate_with(&settings);
    assert_eq!(
        summary(&t),
        [
            "Error InvalidAnnotation Ingress tls/bp-invalid",
            "Error MissingSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidSecret Ingress tls/broken",
            "Error InvalidAnnotation Ingress tls/ciphers-none",
            "Error MissingSecret Ingress tls/failed-first",
            "Error InvalidAnnotation Ingress tls/invalid",
            "Error InvalidAnnotation Ingress tls/invalid",
            "Error InvalidAnnotation Ingress tls/invalid",
            "Error InvalidSecret Ingress tls/mtls-bad-ca",
            "Error InvalidAnnotation Ingress tls/mtls-bad-depth",
            "Error InvalidAnnotation Ingress tls/mtls-bad-pass",
            "Error InvalidAnnotation Ingress tls/mtls-bad-verify",
            "Error InvalidAnnotation Ingress tls/mtls-cross-ns",
            "Error MissingSecret Ingress tls/mtls-missing",
            "Error InvalidSecret Ingress tls/mtls-no-ca",
            "Error PathCollision Ingress tls/pass-newer",
            "Error InvalidAnnotation Ingress tls/pssl-bad-secret",
            "Error InvalidAnnotation Ingress tls/pssl-bad-values",
            "Error InvalidAnnotation Ingress tls/pssl-bad-values",
            "Error InvalidAnnotation Ingress tls/pssl-bad-values",
            "Error InvalidAnnotation Ingress tls/pssl-bad-verify",
            "Error InvalidSecret Ingress tls/pssl-half",
            "Error MissingSecret Ingress tls/pssl-missing",
            "Error MissingSecret Ingress tls/pssl-missing-verify",
            "Error InvalidAnnotation Ingress tls/pssl-verify-no-ca",
            "Error InvalidAnnotation Ingress tls/pssl-verify-no-secret",
            "Error InvalidSecret Ingress tls/wildcard",
            "Error InvalidSecret Ingress tls/wildcard",
            "Warning UnsupportedAnnotation Ingress tls/bp-auto",
            "Warning UnsupportedAnnotation Ingress tls/ciphers",
            "Warning InvalidBackend Ingress tls/pass-no-root",
        ],
        "{}",
        dump(&t)
    );
}
