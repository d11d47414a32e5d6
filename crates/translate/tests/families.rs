//! The annotation families that shape requests, sessions, balancing and hosts, as
//! ingress-nginx v1.15 applies them: redirects, headers, canary, sessions and balancing,
//! errors, upstream behaviour, mirroring, logging switches, and server aliases. For each: the
//! defaults, each annotation's effect on the table (the route's policy and flags, the
//! backend's balancing and canary), the controller ConfigMap's keys as defaults that
//! annotations override, and invalid values (the default applies, and a diagnostic names the
//! Ingress, the annotation and the value). Fixture: `families.yaml`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_model::{
    Access, Affinity, Backend, Balance, Bandwidth, Blocks, Canary, Cors, ErrorPages, ExternalAuth,
    GlobalRateLimit, HashBy, HttpsRedirect, IpList, Limits, LogPolicy, Mirror, Policy, Rate,
    RateLimits, Reason, Redirect, ResponseRules, Retry, RoutingTable, Settings, Severity, Target,
    Template, UpstreamProtocol, UpstreamRequest,
};
use sluice_translate::annotations::catalog::{self, Support};
use sluice_translate::annotations::{Effect, FAMILIES};
use sluice_translate::translate;

const PREFIX: &str = "nginx.ingress.kubernetes.io";
const APP: &str = "-> families-app-80 [10.40.0.1:8080]";
const MIB: u64 = 1024 * 1024;

/// The fixture under ingress-nginx's defaults (no controller ConfigMap).
fn plain() -> RoutingTable {
    translate_fixture("families")
}

/// `--configmap families/sluice-config`.
fn with_config() -> Settings {
    Settings { configmap: Some(nn("families/sluice-config")), ..Settings::default() }
}

/// The fixture with the controller's ConfigMap.
fn configured() -> RoutingTable {
    translate_fixtures(&["families"], &with_config())
}

/// The fixture and `extra` manifests, translated under `settings`.
fn with_extra(extra: &str, settings: &Settings) -> RoutingTable {
    translate(&snapshot_of(&[&fixture("families"), extra]), settings)
}

fn host(name: &str) -> String {
    format!("{name}.families.test")
}

fn ingress(name: &str) -> String {
    format!("Ingress families/{name}")
}

/// The backend a request is proxied to.
fn backend<'t>(t: &'t RoutingTable, host: &str, path: &str) -> &'t Backend {
    match &t.lookup(host, path).route.target {
        Target::Backend(id) => &t.backends[*id as usize],
        other => panic!("{host}{path} is not proxied: {other:?}\n{}", dump(t)),
    }
}

/// The id of the backend a request is proxied to.
fn backend_id(t: &RoutingTable, host: &str, path: &str) -> u32 {
    match &t.lookup(host, path).route.target {
        Target::Backend(id) => *id,
        other => panic!("{host}{path} is not proxied: {other:?}\n{}", dump(t)),
    }
}

/// The canary attached to the backend serving a request: its backend and rules.
fn canary_of<'t>(t: &'t RoutingTable, host: &str, path: &str) -> Option<(&'t Backend, Canary)> {
    let c = backend(t, host, path).canary.as_deref()?.clone();
    Some((&t.backends[c.backend as usize], c))
}

/// The endpoints of a backend, as `ip:port`.
fn endpoints(b: &Backend) -> Vec<String> {
    b.endpoints.iter().map(|e| e.addr.to_string()).collect()
}

/// Asserts that Ingress `name` has an `InvalidAnnotation` error naming `annotation` (with the
/// prefix) and its `value`.
#[track_caller]
fn assert_invalid(t: &RoutingTable, name: &str, annotation: &str, value: &str) {
    let d = assert_diag(
        t,
        Severity::Error,
        Reason::InvalidAnnotation,
        &ingress(name),
        &format!("{PREFIX}/{annotation}:"),
    );
    assert!(d.message.contains(value), "{annotation}: the value {value:?} is not named: {d}");
}

fn template(text: &str) -> Template {
    Template::parse(text).unwrap()
}

/// `base` with some fields changed.
fn overriding(base: &Policy, f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = base.clone();
    f(&mut p);
    p
}

/// The certificate's Secret a server name gets, if any.
fn cert_for(t: &RoutingTable, name: &str) -> Option<String> {
    t.tls.cert_by_name.get(name).map(|&i| t.tls.certs[i as usize].secret.to_string())
}

// ===== defaults =====

// An Ingress without annotations gets ingress-nginx's defaults: 1m body, 5 s connect, 60 s read
// and send, `proxy_next_upstream error timeout` with 3 tries and no time limit, ssl-redirect on
// (force off), request buffering on over HTTP/1.1, no redirect, no error pages, no mirror, the
// access log on; its backend is round robin over the endpoints, without canary; the route
// issues no session cookie, has no app-root nor fallback, and the fast path carries it.
#[test]
fn an_ingress_without_annotations_gets_ingress_nginx_defaults() {
    let t = plain();
    let p = policy(&t, &host("plain"), "/");
    assert_eq!(p, Policy::default());
    let Policy {
        limits,
        retry,
        https,
        redirect,
        upstream,
        response,
        errors,
        mirror,
        log,
        sets_affinity_cookie,
        block,
        cors,
        access,
        rate,
        bandwidth,
        global_rate_limit,
        script,
    } = p;
    assert_eq!(
        limits,
        Limits {
            max_body_size: Some(MIB),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    );
    assert_eq!(retry, Retry { on: Retry::ON_ERROR | Retry::ON_TIMEOUT, tries: 3, timeout: None });
    assert_eq!(
        https,
        HttpsRedirect {
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            port_in_redirect: false,
        }
    );
    assert_eq!(redirect, None);
    assert_eq!(
        upstream,
        UpstreamRequest {
            vhost: None,
            forwarded_prefix: None,
            set_headers: vec![],
            connection: None,
            http10: false,
            request_buffering: true,
            body_buffer_size: 8 * 1024,
            keep_underscored_headers: false,
        }
    );
    assert_eq!(response, ResponseRules::default());
    assert!(response.is_empty());
    assert_eq!(errors, None);
    assert_eq!(mirror, None);
    assert_eq!(log, LogPolicy { access_log: true, skip_urls: vec![] });
    assert!(!sets_affinity_cookie);
    assert_eq!((block, cors, access, rate, bandwidth), (None, None, None, None, None));
    assert_eq!(global_rate_limit, None);
    assert_eq!(script, None);

    let r = served(&t, &host("plain"), "/");
    assert_eq!(route(&t, &host("plain"), "/"), format!("families/plain {APP}"));
    assert_eq!((r.app_root, r.fallback, r.redirect_to_https, r.fast), (None, None, false, true));
    let b = backend(&t, &host("plain"), "/");
    assert_eq!(b.balance, Balance::RoundRobin);
    assert!(b.canary.is_none());
    assert!(!b.service_upstream);
    assert_eq!(b.protocol, UpstreamProtocol::Http1);
    assert_no_diag(&t, &ingress("plain"));
}

// ===== upstream behaviour: proxy-*, proxy-next-upstream*, buffering =====

// proxy-body-size and the timeouts; proxy-next-upstream (words separated by any spaces),
// -tries 0 (every endpoint), -timeout; `off`; request buffering off and HTTP/1.0 upstream. The
// buffer sizes NGINX tunes are accepted without a warning and change nothing, but for
// `client-body-buffer-size`, kept: it bounds the bodies the fast path carries.
#[test]
fn upstream_behaviour_annotations_set_the_policy() {
    let t = plain();
    let rows = [
        (
            "limits",
            policy_with(|p| {
                p.limits.max_body_size = Some(8 * MIB);
                p.limits.connect_timeout = Duration::from_secs(3);
                p.limits.read_timeout = Duration::from_secs(30);
                p.limits.send_timeout = Duration::from_secs(40);
            }),
        ),
        (
            "retry",
            policy_with(|p| {
                p.retry = Retry {
                    on: Retry::ON_ERROR | Retry::ON_503 | Retry::ON_429,
                    tries: u32::MAX,
                    timeout: Some(Duration::from_secs(15)),
                }
            }),
        ),
        ("retry-off", policy_with(|p| p.retry.on = 0)),
        (
            "buffering",
            policy_with(|p| {
                p.upstream.request_buffering = false;
                p.upstream.http10 = true;
                p.upstream.body_buffer_size = MIB;
            }),
        ),
    ];
    for (name, want) in rows {
        assert_eq!(policy(&t, &host(name), "/"), want, "{name}");
        assert_eq!(route(&t, &host(name), "/"), format!("families/{name} {APP}"), "{name}");
        assert_no_diag(&t, &ingress(name));
    }
}

// Invalid values keep the defaults, each reported with its annotation and value: a size with
// a unit NGINX does not know, `off` combined with a condition, negative tries, HTTP/2
// upstream, a buffering flag that is not on/off, a size with a space.
#[test]
fn invalid_upstream_values_keep_the_defaults_and_are_reported() {
    let t = plain();
    assert_eq!(policy(&t, &host("upstream-invalid"), "/"), Policy::default());
    assert_eq!(
        route(&t, &host("upstream-invalid"), "/"),
        format!("families/upstream-invalid {APP}")
    );
    for (annotation, value) in [
        ("proxy-body-size", "10mb"),
        ("proxy-next-upstream", "off"),
        ("proxy-next-upstream-tries", "-1"),
        ("proxy-http-version", "\"2\""),
        ("proxy-request-buffering", "maybe"),
        ("proxy-buffer-size", "16 k"),
    ] {
        assert_invalid(&t, "upstream-invalid", annotation, value);
    }
    assert_eq!(summary_for(&t, &ingress("upstream-invalid")), vec!["Error InvalidAnnotation"; 6]);
}

// The ConfigMap's keys are the defaults: every route without the annotation takes them, an
// annotation overrides its key, and an invalid annotation falls back to the ConfigMap's value.
// `retry-non-idempotent` adds non_idempotent to every list (ingress-nginx's
// buildNextUpstream), but `off` stays off.
#[test]
fn configmap_upstream_keys_are_defaults_that_annotations_override() {
    let t = configured();
    let cm = policy(&t, &host("plain"), "/");
    assert_eq!(
        cm.limits,
        Limits {
            max_body_size: Some(2 * MIB),
            connect_timeout: Duration::from_secs(7),
            read_timeout: Duration::from_secs(70),
            send_timeout: Duration::from_secs(80),
        }
    );
    let cm_on = Retry::ON_ERROR | Retry::ON_TIMEOUT | Retry::ON_502 | Retry::ON_NON_IDEMPOTENT;
    assert_eq!(cm.retry, Retry { on: cm_on, tries: 4, timeout: Some(Duration::from_secs(9)) });
    assert!(!cm.upstream.request_buffering);
    assert!(!cm.upstream.http10);
    assert_eq!(cm.upstream.body_buffer_size, 16 * 1024);

    let rows = [
        (
            "limits",
            overriding(&cm, |p| {
                p.upstream.request_buffering = true;
                p.limits.max_body_size = Some(8 * MIB);
                p.limits.connect_timeout = Duration::from_secs(3);
                p.limits.read_timeout = Duration::from_secs(30);
                p.limits.send_timeout = Duration::from_secs(40);
            }),
        ),
        (
            "retry",
            overriding(&cm, |p| {
                p.retry = Retry {
                    on: Retry::ON_ERROR | Retry::ON_503 | Retry::ON_429 | Retry::ON_NON_IDEMPOTENT,
                    tries: u32::MAX,
                    timeout: Some(Duration::from_secs(15)),
                }
            }),
        ),
        ("retry-off", overriding(&cm, |p| p.retry.on = 0)),
        (
            "buffering",
            overriding(&cm, |p| {
                p.upstream.http10 = true;
                p.upstream.body_buffer_size = MIB;
            }),
        ),
        ("upstream-invalid", cm.clone()),
    ];
    for (name, want) in rows {
        assert_eq!(policy(&t, &host(name), "/"), want, "{name}");
    }
    // The built-in 404 carries the ConfigMap's policy too.
    assert_eq!(policy(&t, "nowhere.test", "/"), cm);
}

// Every key of the controller's ConfigMap in the fixture belongs to a family and has a valid
// value: none is reported (not implemented, or invalid).
#[test]
fn the_configmap_keys_of_these_families_are_all_read() {
    let t = configured();
    assert_no_diag(&t, "ConfigMap families/sluice-config");
    // Without --configmap the ConfigMap is not read at all.
    let p = policy(&plain(), &host("plain"), "/");
    assert_eq!(p, Policy::default());
}

// ===== redirects =====

// permanent-redirect answers 301 with the URL as written (variables filled per request);
// permanent-redirect-code changes it; temporal-redirect (302, or its code up to 307) wins over
// permanent-redirect. The route still names its backend, and the fast path carries it.
#[test]
fn permanent_and_temporal_redirects() {
    let t = plain();
    let redirect = |name: &str| policy(&t, &host(name), "/").redirect;
    let want = |url: &str, code| Some(Redirect { location: template(url), code, relative: false });
    assert_eq!(redirect("permanent"), want("https://example.com$request_uri", 301));
    assert_eq!(redirect("permanent-code"), want("/elsewhere", 308));
    assert_eq!(redirect("temporal"), want("https://maintenance.example/", 307));
    assert_eq!(redirect("plain"), None);
    for name in ["permanent", "permanent-code", "temporal"] {
        assert_eq!(route(&t, &host(name), "/x"), format!("families/{name} {APP}"), "{name}");
        assert!(served(&t, &host(name), "/x").fast, "{name}");
    }
    assert_no_diag(&t, &ingress("permanent"));
    assert_no_diag(&t, &ingress("permanent-code"));
    assert_diag(
        &t,
        Severity::Warning,
        Reason::InvalidAnnotation,
        &ingress("temporal"),
        "permanent-redirect is ignored: temporal-redirect is set too, and wins",
    );
}

// A temporal-redirect that is not http(s) is refused (ingress-nginx's isValidURL): no
// redirect. A permanent-redirect-code out of 300..308 is 301, as ingress-nginx replaces it.
#[test]
fn invalid_redirects_are_reported() {
    let t = plain();
    assert_eq!(policy(&t, &host("redirect-invalid"), "/").redirect, None);
    assert_invalid(&t, "redirect-invalid", "temporal-redirect", "ftp://files.example/");
    assert_eq!(summary_for(&t, &ingress("redirect-invalid")), vec!["Error InvalidAnnotation"]);

    let extra = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: permanent-bad-code
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/permanent-redirect: https://ok.example/
    nginx.ingress.kubernetes.io/permanent-redirect-code: \"309\"
spec:
  ingressClassName: sluice
  rules:
    - host: permanent-bad-code.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
";
    let t = with_extra(extra, &Settings::default());
    assert_eq!(
        policy(&t, &host("permanent-bad-code"), "/").redirect,
        Some(Redirect { location: template("https://ok.example/"), code: 301, relative: false })
    );
    assert_invalid(&t, "permanent-bad-code", "permanent-redirect-code", "309");
}

// force-ssl-redirect redirects a host without TLS; preserve-trailing-slash and
// use-port-in-redirects shape that redirect. ssl-redirect (on) redirects a TLS host; the
// ConfigMap's `ssl-redirect: "false"` turns that off, not force-ssl-redirect, and an
// Ingress's `ssl-redirect: "true"` turns it on again.
#[test]
fn https_redirect_annotations() {
    let t = plain();
    let p = policy(&t, &host("force-ssl"), "/");
    assert_eq!(
        p.https,
        HttpsRedirect {
            ssl_redirect: true,
            force_ssl_redirect: true,
            preserve_trailing_slash: true,
            port_in_redirect: true,
        }
    );
    assert!(served(&t, &host("force-ssl"), "/").redirect_to_https);
    assert!(!served(&t, &host("plain"), "/").redirect_to_https, "no TLS, no force");
    assert!(served(&t, &host("shop"), "/").redirect_to_https, "a TLS host");

    let t = configured();
    assert!(!policy(&t, &host("shop"), "/").https.ssl_redirect);
    assert!(!served(&t, &host("shop"), "/").redirect_to_https, "ssl-redirect off by the ConfigMap");
    assert!(served(&t, &host("force-ssl"), "/").redirect_to_https);
    assert!(served(&t, "www.blog.families.test", "/").redirect_to_https, "ssl-redirect: true");
}

// app-root (ingress-nginx's server-level `if ($uri = /)`): every route of the host redirects
// `/` there, whichever Ingress defines it, the host's own default route included; the oldest
// Ingress of the host that sets it decides. Other hosts are untouched; a URL with a scheme is
// refused.
#[test]
fn app_root_applies_to_every_route_of_the_host() {
    let t = plain();
    let h = host("app-root");
    for path in ["/", "/api/v1", "/late", "/nope"] {
        assert_eq!(served(&t, &h, path).app_root.as_deref(), Some("/dashboard"), "{path}");
    }
    assert_eq!(owner(&t, &h, "/late"), "families/app-root-late");
    assert_eq!(rule(&t, &h, "/nope"), "default");
    assert_no_diag(&t, &ingress("app-root-late"));
    assert_eq!(served(&t, &host("plain"), "/").app_root, None);
    assert_eq!(served(&t, "nowhere.test", "/").app_root, None);
    assert_eq!(served(&t, &host("app-root-invalid"), "/").app_root, None);
    assert_invalid(&t, "app-root-invalid", "app-root", "https://example.com/app");
}

// ===== hosts: from-to-www-redirect, server-alias =====

// from-to-www-redirect goes both ways: www.<host> to <host>, and <host> to www.<host> when the
// rule's host starts with `www.`. The other name gets the host's certificate when that covers
// it (else a warning); no redirect is made for a name that is a host of its own (warning).
#[test]
fn from_to_www_redirects_both_ways() {
    let t = plain();
    assert_eq!(route(&t, "www.shop.families.test", "/any/path"), "redirect to shop.families.test");
    assert_eq!(route(&t, &host("shop"), "/"), format!("families/www {APP}"));
    assert_eq!(cert_for(&t, "www.shop.families.test").as_deref(), Some("families/shop"));
    assert!(served(&t, "www.shop.families.test", "/").fast, "a redirect is carried");
    assert_no_diag(&t, &ingress("www"));

    assert_eq!(route(&t, "blog.families.test", "/"), "redirect to www.blog.families.test");
    assert_eq!(cert_for(&t, "www.blog.families.test").as_deref(), Some("families/blog"));
    assert_eq!(cert_for(&t, "blog.families.test"), None);
    assert_diag(
        &t,
        Severity::Warning,
        Reason::InvalidSecret,
        &ingress("www-reverse"),
        "does not cover blog.families.test",
    );

    assert_eq!(route(&t, "www.skip.families.test", "/"), format!("families/www-skip-other {APP}"));
    assert_diag(
        &t,
        Severity::Warning,
        Reason::PathCollision,
        &ingress("www-skip"),
        "www.skip.families.test is a host of its own",
    );
    // Only the other name of a host that asks for it.
    assert_eq!(route(&t, "www.plain.families.test", "/"), "404");
}

// server-alias (ingress-nginx's createServers): the oldest Ingress of a host that sets aliases
// decides them; each alias serves every path of the host (newer Ingresses' too), gets the
// host's certificate when that covers it and the host's client-certificate policy. An alias
// that is another Ingress's host is dropped (warning); names are folded to lower case.
#[test]
fn server_alias_serves_the_host_under_more_names() {
    let t = plain();
    for name in ["aliased", "alias-in", "alias-out"] {
        let h = host(name);
        assert_eq!(route(&t, &h, "/"), format!("families/alias {APP}"), "{name}");
        assert_eq!(
            route(&t, &h, "/late/x"),
            "families/alias-late -> families-lb-80 [10.40.0.2:8080]",
            "{name}"
        );
    }
    assert_eq!(cert_for(&t, &host("aliased")).as_deref(), Some("families/alias"));
    assert_eq!(cert_for(&t, &host("alias-in")).as_deref(), Some("families/alias"));
    assert_eq!(cert_for(&t, &host("alias-out")), None, "not covered: the default certificate");
    let policy_of = |name: &str| t.tls.policy_for(&host(name));
    assert_ne!(policy_of("aliased"), 0, "the host asks for client certificates");
    let auth = t.tls.policies[policy_of("aliased") as usize].client_auth.as_ref().unwrap();
    assert_eq!(auth.secret, nn("families/client-ca"));
    assert_eq!(policy_of("alias-in"), policy_of("aliased"));
    assert_eq!(policy_of("alias-out"), policy_of("aliased"));

    // The newer Ingress's alias is not taken; another Ingress's host stays its own.
    assert_eq!(route(&t, &host("late-alias"), "/"), "404");
    assert_eq!(route(&t, &host("taken"), "/"), format!("families/alias-taken {APP}"));
    assert_diag(
        &t,
        Severity::Warning,
        Reason::PathCollision,
        &ingress("alias"),
        "server-alias taken.families.test",
    );
    assert_eq!(summary_for(&t, &ingress("alias")), vec!["Warning PathCollision"]);
    assert_no_diag(&t, &ingress("alias-late"));

    assert_eq!(route(&t, &host("alias-invalid"), "/"), format!("families/alias-invalid {APP}"));
    assert_invalid(&t, "alias-invalid", "server-alias", "not_a_host!");
}

// ===== headers =====

// custom-headers: the ConfigMap's entries, literal (a `$` stays), lower-case names, replace
// the ConfigMap's add-headers on the Ingress's routes (two levels of more_set_headers);
// hide-headers still applies. Other routes get add-headers, whose values are templates.
#[test]
fn custom_headers_replace_add_headers() {
    let t = configured();
    let custom = policy(&t, &host("custom-headers"), "/").response;
    assert_eq!(
        custom.set,
        vec![
            ("x-custom".to_string(), Template::literal("on $host")),
            ("x-frame-options".to_string(), Template::literal("DENY")),
        ]
    );
    assert_eq!(custom.hide, vec!["x-powered-by", "server"]);
    let plain_response = policy(&t, &host("plain"), "/").response;
    assert_eq!(plain_response.set, vec![("x-added".to_string(), template("$host"))]);
    assert_eq!(plain_response.hide, vec!["x-powered-by", "server"]);
    assert_eq!(route(&t, &host("custom-headers"), "/"), format!("families/custom-headers {APP}"));
    assert_no_diag(&t, &ingress("custom-headers"));
}

// custom-headers that cannot be applied fail closed (ingress-nginx denies the location): a
// ConfigMap that does not exist, a header global-allowed-response-headers does not list, a
// ConfigMap of another namespace. Without the controller's ConfigMap no header is allowed.
#[test]
fn custom_headers_problems_answer_503() {
    let t = configured();
    for (name, why) in [
        ("custom-headers-missing", "ConfigMap families/no-such-headers does not exist"),
        ("custom-headers-disallowed", "x-not-allowed is not listed"),
        ("custom-headers-other-ns", "another namespace"),
    ] {
        assert_eq!(route(&t, &host(name), "/"), "503", "{name}");
        assert_eq!(owner(&t, &host(name), "/"), format!("families/{name}"), "{name}");
        let d = assert_diag(&t, Severity::Error, Reason::InvalidAnnotation, &ingress(name), why);
        assert!(d.message.contains(&format!("{PREFIX}/custom-headers")), "{d}");
        assert!(d.message.contains("answer 503"), "{d}");
    }
    let t = plain();
    assert_eq!(route(&t, &host("custom-headers"), "/"), "503");
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidAnnotation,
        &ingress("custom-headers"),
        "global-allowed-response-headers",
    );
}

// proxy-redirect-from/-to rewrite Location and Refresh, proxy-cookie-domain and -path rewrite
// Set-Cookie; the ConfigMap's keys are their defaults. Regexes (`~`) are refused.
#[test]
fn response_rewrites() {
    let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
    let t = plain();
    let r = policy(&t, &host("response-rewrites"), "/").response;
    assert_eq!(r.location, pair("http://app:8080/", "https://families.test/"));
    assert_eq!(r.cookie_domain, pair("app.local", "families.test"));
    assert_eq!(r.cookie_path, pair("/app", "/"));
    assert_no_diag(&t, &ingress("response-rewrites"));

    let t = configured();
    let cm = policy(&t, &host("plain"), "/").response;
    assert_eq!(cm.location, pair("http://cm:8080/", "https://cm.example/"));
    assert_eq!(cm.cookie_domain, pair("cm.local", "example.org"));
    assert_eq!(cm.cookie_path, pair("/cm", "/"));
    let r = policy(&t, &host("response-rewrites"), "/").response;
    assert_eq!(r.location, pair("http://app:8080/", "https://families.test/"));
    assert_eq!(r.cookie_domain, pair("app.local", "families.test"));
    // Invalid annotations keep the ConfigMap's.
    let r = policy(&t, &host("headers-invalid"), "/").response;
    assert_eq!((r.location, r.cookie_domain), (cm.location.clone(), cm.cookie_domain.clone()));
}

// upstream-vhost (a template), x-forwarded-prefix and connection-proxy-header shape the
// upstream request; ConfigMap proxy-set-headers and enable-underscores-in-headers apply to
// every route.
#[test]
fn upstream_request_headers() {
    let t = plain();
    let u = policy(&t, &host("upstream-headers"), "/").upstream;
    assert_eq!(u.vhost, Some(template("internal.$host")));
    assert_eq!(u.forwarded_prefix, Some(template("/shop")));
    assert_eq!(u.connection.as_deref(), Some("keep-alive"));
    assert_no_diag(&t, &ingress("upstream-headers"));

    let t = configured();
    let u = policy(&t, &host("plain"), "/").upstream;
    assert_eq!(
        u.set_headers,
        vec![
            ("x-client".to_string(), template("$remote_addr")),
            ("x-env".to_string(), template("prod")),
        ]
    );
    assert!(u.keep_underscored_headers);
    assert_eq!(policy(&t, &host("upstream-headers"), "/").upstream.set_headers, u.set_headers);
}

// Invalid header annotations keep the defaults, each reported with its value.
#[test]
fn invalid_header_annotations_are_reported() {
    let t = plain();
    let p = policy(&t, &host("headers-invalid"), "/");
    assert_eq!(p, Policy::default());
    assert_eq!(route(&t, &host("headers-invalid"), "/"), format!("families/headers-invalid {APP}"));
    for (annotation, value) in [
        ("upstream-vhost", "bad host"),
        ("x-forwarded-prefix", "no_such_variable"),
        ("connection-proxy-header", "close;"),
        ("proxy-cookie-domain", "~^(.*)$"),
        ("proxy-redirect-from", "~^http://"),
    ] {
        assert_invalid(&t, "headers-invalid", annotation, value);
    }
    assert_eq!(summary_for(&t, &ingress("headers-invalid")), vec!["Error InvalidAnnotation"; 5]);
}

// ===== errors =====

// custom-http-errors: the statuses (sorted, without repeats) answered by the default backend,
// upstream errors included unless disable-proxy-intercept-errors; the ConfigMap's list is the
// default that an Ingress's own list replaces; an invalid list keeps the default.
#[test]
fn custom_http_errors() {
    let t = plain();
    let errors = |t: &RoutingTable, name: &str| policy(t, &host(name), "/").errors;
    let pages = |codes: &[u16], intercept| {
        Some(ErrorPages { codes: codes.to_vec(), intercept_upstream: intercept })
    };
    assert_eq!(errors(&t, "errors"), pages(&[404, 500, 503], true));
    assert_eq!(errors(&t, "errors-passthrough"), pages(&[502], false));
    assert_eq!(errors(&t, "errors-invalid"), None);
    assert_eq!(errors(&t, "plain"), None);
    assert_invalid(&t, "errors-invalid", "custom-http-errors", "\"200\"");
    assert_no_diag(&t, &ingress("errors"));
    assert_no_diag(&t, &ingress("errors-passthrough"));

    let t = configured();
    assert_eq!(errors(&t, "plain"), pages(&[404, 503], true));
    assert_eq!(errors(&t, "errors"), pages(&[404, 500, 503], true));
    assert_eq!(errors(&t, "errors-passthrough"), pages(&[502], false));
    assert_eq!(errors(&t, "errors-invalid"), pages(&[404, 503], true));
}

// default-backend (getBackendServers' custom default backend): a Service of the Ingress's
// namespace, its first port, serving in place of a Service without ready endpoints. A Service
// that does not exist, or a value that is no Service name, leaves the paths as they were.
#[test]
fn default_backend_annotation() {
    let t = plain();
    let r = served(&t, &host("fallback"), "/");
    assert_eq!(route(&t, &host("fallback"), "/"), "families/fallback -> families-down-80 []");
    let fallback = &t.backends[r.fallback.expect("a fallback") as usize];
    assert_eq!(fallback.service, nn("families/errors"));
    assert_eq!(endpoints(fallback), vec!["10.40.0.20:8080"]);
    assert!(r.fast, "the fallback is HTTP/1.1 in clear");
    assert_eq!(summary_for(&t, &ingress("fallback")), vec!["Warning NoReadyEndpoints"]);

    assert_eq!(served(&t, &host("fallback-missing"), "/").fallback, None);
    assert_eq!(
        route(&t, &host("fallback-missing"), "/"),
        format!("families/fallback-missing {APP}")
    );
    assert_diag(
        &t,
        Severity::Error,
        Reason::MissingService,
        &ingress("fallback-missing"),
        "default-backend: Service families/no-such-service does not exist",
    );
    assert_eq!(served(&t, &host("fallback-invalid"), "/").fallback, None);
    assert_invalid(&t, "fallback-invalid", "default-backend", "Not_A_Service");
}

// ===== mirroring and logging switches =====

// mirror-target (a template), mirror-request-body off, mirror-host. An invalid target is
// refused, and mirror-host without a target is reported.
#[test]
fn mirror() {
    let t = plain();
    assert_eq!(
        policy(&t, &host("mirror"), "/").mirror,
        Some(Mirror {
            target: template("https://mirror.example$request_uri"),
            host: Some("mirror.internal".into()),
            request_body: false,
        })
    );
    assert_no_diag(&t, &ingress("mirror"));
    assert_eq!(policy(&t, &host("mirror-invalid"), "/").mirror, None);
    assert_invalid(&t, "mirror-invalid", "mirror-target", "ftp://mirror.example/");
    assert_invalid(&t, "mirror-invalid", "mirror-host", "no mirror-target is set");
}

// enable-access-log: false keeps the Ingress's requests out of the access log;
// enable-rewrite-log is accepted silently. The ConfigMap's skip-access-log-urls apply to every
// route; its disable-access-log wins over the annotation (NGINX's http-level `access_log off`).
#[test]
fn access_log_switches() {
    let t = plain();
    assert!(!policy(&t, &host("no-log"), "/").log.access_log);
    assert_no_diag(&t, &ingress("no-log"));
    assert!(policy(&t, &host("log-invalid"), "/").log.access_log);
    assert_invalid(&t, "log-invalid", "enable-access-log", "nope");

    let t = configured();
    let skip = vec!["/healthz".to_string(), "/ready".to_string()];
    assert_eq!(
        policy(&t, &host("plain"), "/").log,
        LogPolicy { access_log: true, skip_urls: skip.clone() }
    );
    assert_eq!(
        policy(&t, &host("no-log"), "/").log,
        LogPolicy { access_log: false, skip_urls: skip }
    );
    assert!(!policy(&t, &host("plain"), "/").log.logs("/healthz"));

    let extra = "
apiVersion: v1
kind: ConfigMap
metadata: {name: no-access-log, namespace: families}
data:
  disable-access-log: \"true\"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: log-on
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/enable-access-log: \"true\"
spec:
  ingressClassName: sluice
  rules:
    - host: log-on.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
";
    let settings =
        Settings { configmap: Some(nn("families/no-access-log")), ..Settings::default() };
    let t = with_extra(extra, &settings);
    assert!(!policy(&t, &host("log-on"), "/").log.access_log);
    assert!(!policy(&t, &host("plain"), "/").log.access_log);

    // NGINX's `map` compares ignoring case, and reads `~` entries as regular expressions,
    // which Sluice refuses (the default, no URI skipped, applies).
    assert!(!LogPolicy { access_log: true, skip_urls: vec!["/healthz".into()] }.logs("/HealthZ"));
    let extra = "
apiVersion: v1
kind: ConfigMap
metadata: {name: regex-skip, namespace: families}
data:
  skip-access-log-urls: \"/healthz, ~^/ready\"
";
    let settings = Settings { configmap: Some(nn("families/regex-skip")), ..Settings::default() };
    let t = with_extra(extra, &settings);
    assert_eq!(policy(&t, &host("plain"), "/").log, LogPolicy::default());
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidConfigMapKey,
        "ConfigMap families/regex-skip",
        "skip-access-log-urls: ~^/ready: regular expressions are not supported; the default applies",
    );
}

// ===== sessions and balancing =====

// createUpstreams: the Ingress that creates a backend (the oldest naming the Service port)
// sets its load-balance and upstream-hash-by; newer Ingresses' values are not the backend's,
// and every route to the Service shares that one backend.
#[test]
fn the_oldest_ingress_naming_a_backend_decides_its_balancing() {
    let t = plain();
    let id = backend_id(&t, &host("lb-first"), "/");
    for name in ["lb-second", "lb-follower"] {
        assert_eq!(backend_id(&t, &host(name), "/"), id, "{name} shares the backend");
    }
    assert_eq!(t.backends[id as usize].balance, Balance::Ewma);
    assert_no_diag(&t, &ingress("lb-second"));
}

// balancer.lua's get_implementation: hashing wins over load-balance; the subset options make
// chashsubset.
#[test]
fn hashing_wins_over_load_balance() {
    let t = plain();
    assert_eq!(
        backend(&t, &host("hash"), "/").balance,
        Balance::Hash(Box::new(HashBy { key: template("$remote_addr"), subset: Some(5) }))
    );
    assert_no_diag(&t, &ingress("hash"));
}

// getBackendServers: the first Ingress with `affinity` makes the backend sticky and sets its
// mode; every later one with `affinity` sets the cookie again (the last one's settings win,
// whole); affinity wins over the oldest Ingress's hashing. Only the routes of Ingresses with
// affinity issue the cookie (ingress-nginx's cookie locations).
#[test]
fn affinity_is_decided_per_backend() {
    let t = plain();
    let id = backend_id(&t, &host("sticky-hash"), "/");
    for name in ["sticky-first", "sticky-last", "sticky-follower"] {
        assert_eq!(backend_id(&t, &host(name), "/"), id, "{name} shares the backend");
    }
    assert_eq!(
        t.backends[id as usize].balance,
        Balance::Sticky(Box::new(Affinity {
            persistent: true,
            name: "LAST".into(),
            path: Some("/app".into()),
            domain: Some("families.test".into()),
            samesite: Some("Lax".into()),
            conditional_samesite_none: true,
            secure: Some(true),
            max_age: None,
            expires: Some(3600),
            change_on_failure: true,
            partitioned: false,
        }))
    );
    for (name, sets) in [
        ("sticky-hash", false),
        ("sticky-first", true),
        ("sticky-last", true),
        ("sticky-follower", false),
        ("plain", false),
    ] {
        assert_eq!(policy(&t, &host(name), "/").sets_affinity_cookie, sets, "{name}");
    }
    for name in ["sticky-hash", "sticky-first", "sticky-last", "sticky-follower"] {
        assert_no_diag(&t, &ingress(name));
    }
}

// The first Ingress with affinity alone: balanced by default, cookie INGRESSCOOKIE, the rest
// unset.
#[test]
fn affinity_defaults() {
    let t = plain();
    assert_eq!(
        backend(&t, "legacy-canary.families.test", "/").balance,
        Balance::Sticky(Box::default())
    );
    let a = Affinity::default();
    assert!(!a.persistent);
    assert_eq!(a.name, "INGRESSCOOKIE");
    assert_eq!((a.path, a.domain, a.samesite, a.secure), (None, None, None, None));
}

// Invalid balancing values keep round robin, no affinity, no cookie: each reported.
#[test]
fn invalid_balancing_values_are_reported() {
    let t = plain();
    assert_eq!(backend(&t, &host("balance-invalid"), "/").balance, Balance::RoundRobin);
    assert!(!policy(&t, &host("balance-invalid"), "/").sets_affinity_cookie);
    assert_invalid(&t, "balance-invalid", "load-balance", "least_conn");
    assert_invalid(&t, "balance-invalid", "upstream-hash-by", "no_such_variable");
    assert_invalid(&t, "balance-invalid", "affinity", "\"ip\"");
    assert_eq!(summary_for(&t, &ingress("balance-invalid")), vec!["Error InvalidAnnotation"; 3]);
}

// The ConfigMap's load-balance is the default of every backend whose creating Ingress sets
// none (createUpstreams falls back to GetBackendConfiguration().LoadBalancing); an Ingress's
// own load-balance overrides it.
#[test]
fn configmap_load_balance_is_the_default() {
    let extra = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: round-robin
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/load-balance: round_robin
spec:
  ingressClassName: sluice
  rules:
    - host: round-robin.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-b, port: {number: 80}}}}]}
";
    let t = with_extra(extra, &with_config());
    assert_eq!(backend(&t, &host("plain"), "/").balance, Balance::Ewma);
    assert_eq!(backend(&t, &host("round-robin"), "/").balance, Balance::RoundRobin);
    assert!(matches!(backend(&t, &host("hash"), "/").balance, Balance::Hash(_)));
    assert!(matches!(backend(&t, &host("sticky-hash"), "/").balance, Balance::Sticky(_)));
}

// ingress-nginx keeps the affinity mode of the first Ingress that *sets* `affinity-mode`
// (getBackendServers: `if ups.SessionAffinity.AffinityMode == "" { ... = anns...Mode }`, and
// an Ingress without the annotation has the mode ""): an older Ingress with `affinity: cookie`
// and no mode leaves it to a newer one's `persistent`.
#[test]
fn affinity_mode_is_set_by_the_first_ingress_that_sets_it() {
    let extra = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mode-unset
  namespace: families
  creationTimestamp: \"2020-01-01T00:00:00Z\"
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
spec:
  ingressClassName: sluice
  rules:
    - host: mode-unset.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-b, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mode-persistent
  namespace: families
  creationTimestamp: \"2021-01-01T00:00:00Z\"
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/affinity-mode: persistent
spec:
  ingressClassName: sluice
  rules:
    - host: mode-persistent.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-b, port: {number: 80}}}}]}
";
    let t = with_extra(extra, &Settings::default());
    let Balance::Sticky(a) = &backend(&t, &host("mode-unset"), "/").balance else {
        panic!("sticky")
    };
    assert!(a.persistent, "the mode of the first Ingress that sets one: persistent");
}

// service-upstream: the backend's one endpoint is the Service's cluster IP and port; decided
// by the oldest Ingress naming the Service port (createUpstreams), so a newer Ingress neither
// adds nor removes it. A headless Service keeps its endpoints (reported).
#[test]
fn service_upstream_is_decided_per_backend() {
    let t = plain();
    for name in ["su-first", "su-second"] {
        let b = backend(&t, &host(name), "/");
        assert_eq!(endpoints(b), vec!["10.96.0.30:80"], "{name}");
        assert!(b.service_upstream, "{name}");
    }
    for name in ["su-plain", "su-late"] {
        let b = backend(&t, &host(name), "/");
        assert_eq!(endpoints(b), vec!["10.40.0.31:8080"], "{name}");
        assert!(!b.service_upstream, "{name}");
    }
    let b = backend(&t, &host("su-headless"), "/");
    assert_eq!((endpoints(b), b.service_upstream), (vec!["10.40.0.32:8080".into()], false));
    assert_diag(
        &t,
        Severity::Warning,
        Reason::InvalidAnnotation,
        &ingress("su-headless"),
        "Service families/headless has no cluster IP; its endpoints are used",
    );
    assert!(!backend(&t, &host("su-invalid"), "/").service_upstream);
    assert_invalid(&t, "su-invalid", "service-upstream", "yes");
    for name in ["su-first", "su-second", "su-plain", "su-late"] {
        assert_no_diag(&t, &ingress(name));
    }
}

// ConfigMap service-upstream is the default; an Ingress's own `false` overrides it.
#[test]
fn configmap_service_upstream_is_the_default() {
    let extra = "
apiVersion: v1
kind: ConfigMap
metadata: {name: cluster-ips, namespace: families}
data:
  service-upstream: \"true\"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pods
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/service-upstream: \"false\"
spec:
  ingressClassName: sluice
  rules:
    - host: pods.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-b, port: {number: 80}}}}]}
";
    let settings = Settings { configmap: Some(nn("families/cluster-ips")), ..Settings::default() };
    let t = with_extra(extra, &settings);
    assert_eq!(endpoints(backend(&t, &host("plain"), "/")), vec!["10.96.0.1:80"]);
    assert_eq!(endpoints(backend(&t, &host("su-plain"), "/")), vec!["10.96.0.31:80"]);
    assert_eq!(endpoints(backend(&t, &host("pods"), "/")), vec!["10.40.0.12:8080"]);
    assert_no_diag(&t, &ingress("pods"));
}

// ===== canary =====

// mergeAlternativeBackends: a canary's backend is attached to the main backend of each rule of
// another Ingress with the same host, path and pathType, even when the canary is older; every
// route to that backend (another host's too) may divert to it. The canary's own hosts create
// nothing; its rules that match nothing are reported.
#[test]
fn a_canary_attaches_to_the_main_backend_of_the_same_host_path_and_path_type() {
    let t = plain();
    let h = host("canary");
    assert_eq!(route(&t, &h, "/"), "families/stable-main -> families-stable-80 [10.40.0.5:8080]");
    for (host, path) in [(h.as_str(), "/"), (&h, "/exact"), (&host("stable-follower"), "/follow")] {
        let (b, _) = canary_of(&t, host, path).unwrap_or_else(|| panic!("{host}{path}"));
        assert_eq!(b.name, "families-canary-a-80", "{host}{path}");
        assert_eq!(endpoints(b), vec!["10.40.0.11:8080"]);
    }
    assert!(canary_of(&t, &h, "/other").is_none(), "another backend");
    assert!(canary_of(&t, &host("plain"), "/").is_none());
    assert_eq!(route(&t, &host("nowhere"), "/"), "404", "a canary's host creates nothing");
    for name in ["canary-a", "canary-b", "canary-self"] {
        let n = nn(&format!("families/{name}"));
        assert!(t.routes.iter().all(|r| r.ingress.as_deref() != Some(&n)), "{name} owns no route");
    }
    assert_eq!(summary_for(&t, &ingress("canary-a")), vec!["Warning UnmatchedCanary"; 3]);
    for unmatched in [
        "canary.families.test/ (Exact)",
        "canary.families.test/other (Exact)",
        "nowhere.families.test/ (Prefix)",
    ] {
        assert_diag(
            &t,
            Severity::Warning,
            Reason::UnmatchedCanary,
            &ingress("canary-a"),
            unmatched,
        );
    }
    assert_no_diag(&t, &ingress("stable-main"));
    assert_no_diag(&t, &ingress("stable-follower"));
}

// The canary's rules, as balancer.lua reads them: header (always/never, or the value, or the
// pattern), cookie, weight; a canary-weight-total of 100 or less counts as 100.
#[test]
fn canary_rules_are_read() {
    let t = plain();
    let (_, c) = canary_of(&t, &host("canary"), "/").expect("a canary");
    assert_eq!(c.header.as_deref(), Some("X-Canary"));
    assert_eq!(c.header_value.as_deref(), Some("yes-please"));
    assert_eq!(c.header_pattern.as_ref().map(|p| p.source.as_str()), Some("^y.*"));
    assert_eq!(c.cookie.as_deref(), Some("use_canary"));
    assert_eq!((c.weight, c.weight_total), (30, 100));
    assert!(c.sticky, "affinity-canary-behavior defaults to sticky");
    let (_, c) = canary_of(&t, "legacy-canary.families.test", "/").expect("a canary");
    assert_eq!((c.header, c.cookie.as_deref(), c.weight), (None, Some("canary"), 0));
}

// Invalid canary rules keep their defaults (weight 0, no header, no pattern) and are
// reported; a canary-weight-total above 100 is kept (balancer.lua).
#[test]
fn invalid_canary_rules_are_reported() {
    let extra = "
apiVersion: v1
kind: Service
metadata: {name: ci, namespace: families}
spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ci-1, namespace: families, labels: {kubernetes.io/service-name: ci}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [\"10.40.0.50\"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ci-main, namespace: families}
spec:
  ingressClassName: sluice
  rules:
    - host: canary-invalid.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: ci, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: canary-invalid
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/canary: \"true\"
    nginx.ingress.kubernetes.io/canary-weight: ten
    nginx.ingress.kubernetes.io/canary-weight-total: \"1000\"
    nginx.ingress.kubernetes.io/canary-by-header: \"X Bad\"
    nginx.ingress.kubernetes.io/canary-by-header-pattern: \"(\"
spec:
  ingressClassName: sluice
  rules:
    - host: canary-invalid.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-b, port: {number: 80}}}}]}
";
    let t = with_extra(extra, &Settings::default());
    let h = host("canary-invalid");
    assert_eq!(route(&t, &h, "/"), "families/ci-main -> families-ci-80 [10.40.0.50:8080]");
    let (b, c) = canary_of(&t, &h, "/").expect("a canary");
    assert_eq!(b.name, "families-canary-b-80");
    assert_eq!((c.weight, c.weight_total), (0, 1000));
    assert_eq!(c.header, None);
    // An invalid pattern is kept, without a regex: a request with the header then stays on
    // the main backend, as ingress-nginx's balancer does when the regex does not compile.
    let pattern = c.header_pattern.expect("the invalid pattern is kept");
    assert!(pattern.regex.is_none() && pattern.source == "(", "{pattern:?}");
    assert_invalid(&t, "canary-invalid", "canary-weight", "ten");
    assert_invalid(&t, "canary-invalid", "canary-by-header", "X Bad");
    assert_invalid(&t, "canary-invalid", "canary-by-header-pattern", "regex");
    assert_eq!(summary_for(&t, &ingress("canary-invalid")), vec!["Error InvalidAnnotation"; 3]);
}

// balancer.lua uses the first alternative backend only: of two canaries for one main backend,
// the oldest diverts; the other is reported.
#[test]
fn only_the_oldest_canary_of_a_backend_diverts() {
    let t = plain();
    let (b, c) = canary_of(&t, &host("canary"), "/").unwrap();
    assert_eq!((b.name.as_str(), c.weight), ("families-canary-a-80", 30));
    assert_eq!(summary_for(&t, &ingress("canary-b")), vec!["Warning PathCollision"]);
    assert_diag(
        &t,
        Severity::Warning,
        Reason::PathCollision,
        &ingress("canary-b"),
        "already has canary families-canary-a-80",
    );
}

// A canary naming the main Ingress's own Service diverts nothing (mergeAlternativeBackends:
// "alternative upstream ... is primary upstream in Other Ingress").
#[test]
fn a_canary_of_the_mains_own_service_diverts_nothing() {
    let t = plain();
    assert!(canary_of(&t, &host("canary"), "/other").is_none());
    assert_eq!(route(&t, &host("canary"), "/other"), format!("families/stable-main {APP}"));
    assert_eq!(summary_for(&t, &ingress("canary-self")), vec!["Error InvalidBackend"]);
    assert_diag(
        &t,
        Severity::Error,
        Reason::InvalidBackend,
        &ingress("canary-self"),
        "its Service is the main Ingress's own",
    );
}

// Canary rules without `canary: "true"` are "configured but not enabled" (the canary parser's
// error): reported, and the Ingress is an ordinary one.
#[test]
fn canary_rules_without_canary_are_reported_and_ignored() {
    let t = plain();
    assert_eq!(route(&t, &host("not-canary"), "/"), format!("families/not-canary {APP}"));
    assert!(canary_of(&t, &host("not-canary"), "/").is_none());
    assert_invalid(&t, "not-canary", "canary", "configured but canary is not");
    assert_eq!(summary_for(&t, &ingress("not-canary")), vec!["Error InvalidAnnotation"]);
}

// mergeAlternativeBackend: unless affinity-canary-behavior is `legacy`, the main backend's
// session affinity is copied to the canary's backend (the canary's own `affinity` shapes
// nothing: its upstream is NoServer); with `legacy` the canary's backend has none.
#[test]
fn a_sticky_canary_takes_the_main_backends_affinity_legacy_does_not() {
    let t = plain();
    let main = Balance::Sticky(Box::new(Affinity { name: "MAIN".into(), ..Affinity::default() }));
    let h = "sticky-canary.families.test";
    assert_eq!(backend(&t, h, "/").balance, main);
    let (b, c) = canary_of(&t, h, "/").expect("a canary");
    assert_eq!((b.name.as_str(), c.sticky), ("families-canary-sticky-80", true));
    assert_eq!(b.balance, main, "the main backend's affinity, not the canary's own cookie");

    let h = "legacy-canary.families.test";
    assert_eq!(backend(&t, h, "/").balance, Balance::Sticky(Box::default()));
    let (b, c) = canary_of(&t, h, "/").expect("a canary");
    assert_eq!((b.name.as_str(), c.sticky), ("families-canary-legacy-80", false));
    assert_eq!(b.balance, Balance::RoundRobin);
    for name in ["sticky-main", "sticky-canary", "legacy-main", "legacy-canary"] {
        assert_no_diag(&t, &ingress(name));
    }
}

// A canary creates no location, so its use-regex does not put the host in regex mode: the
// main Ingress's paths stay prefixes (`/OTHER` is not `/other`).
#[test]
fn canaries_never_put_a_host_in_regex_mode() {
    let t = plain();
    let h = host("canary");
    let draft = t.live_hosts().find(|x| x.host() == h).expect("the host");
    assert!(draft.regex.is_none(), "no regex mode");
    assert_eq!(rule(&t, &h, "/OTHER"), "Prefix /");
    assert_eq!(rule(&t, &h, "/other/x"), "Prefix /other");
}

// ingress-nginx merges a canary rule `/` (Prefix) into the host's default location too when
// the main Ingress's spec.defaultBackend serves it (canMergeBackend only excludes the global
// default upstream): the host's unmatched requests may divert to the canary.
#[test]
fn a_canary_for_root_attaches_to_the_main_ingresses_default_backend() {
    let extra = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: default-main, namespace: families}
spec:
  ingressClassName: sluice
  defaultBackend: {service: {name: canary-b, port: {number: 80}}}
  rules:
    - host: default-main.families.test
      http: {paths: [{path: /api, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: default-canary
  namespace: families
  annotations:
    nginx.ingress.kubernetes.io/canary: \"true\"
    nginx.ingress.kubernetes.io/canary-weight: \"50\"
spec:
  ingressClassName: sluice
  rules:
    - host: default-main.families.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: canary-legacy, port: {number: 80}}}}]}
";
    let t = with_extra(extra, &Settings::default());
    let h = host("default-main");
    assert_eq!(
        route(&t, &h, "/x"),
        "families/default-main -> families-canary-b-80 [10.40.0.12:8080]"
    );
    let (b, c) = canary_of(&t, &h, "/x").expect("the default backend's canary");
    assert_eq!((b.name.as_str(), c.weight), ("families-canary-legacy-80", 50));
    assert_no_diag(&t, &ingress("default-canary"));
}

// ===== the fast path =====

// Route::fast, translation's verdict: false where the general path is needed (custom-http-errors,
// a mirror, HTTP/1.0 upstream, a backend not HTTP/1.1 in clear), true otherwise, redirects and
// local answers (503, the www redirect) included.
#[test]
fn fast_path_verdicts() {
    let t = plain();
    let rows = [
        (host("plain"), true),
        (host("permanent"), true),
        (host("app-root"), true),
        (host("custom-headers-missing"), true),
        ("www.shop.families.test".to_string(), true),
        (host("fallback"), true),
        (host("canary"), true),
        (host("sticky-first"), true),
        (host("su-first"), true),
        (host("no-log"), true),
        (host("upstream-headers"), true),
        (host("errors"), false),
        (host("errors-passthrough"), false),
        (host("mirror"), false),
        (host("buffering"), false),
        (host("grpc"), false),
    ];
    for (h, fast) in rows {
        assert_eq!(served(&t, &h, "/").fast, fast, "{h}");
    }
    // The ConfigMap's custom-http-errors reach every route.
    let t = configured();
    assert!(!served(&t, &host("plain"), "/").fast);
}

// Every route's verdict is its policy's and its backends' (target, canary, fallback): none is
// forgotten, in either table.
#[test]
fn every_route_is_judged_by_its_policy_and_all_its_backends() {
    let mut some = (false, false);
    for t in [plain(), configured()] {
        let backends: Vec<Arc<Backend>> = t.backends.iter().cloned().collect();
        for r in t.routes.iter() {
            let http1 = r
                .backends(&backends)
                .all(|b| backends[b as usize].protocol == UpstreamProtocol::Http1);
            let want = r.policy.fast_path_carries() && http1;
            assert_eq!(r.fast, want, "{}{} ({:?})", r.host, r.path, r.ingress);
            let body = if r.fast { r.policy.fast_path_body_limit() } else { 0 };
            assert_eq!(r.fast_body, body, "{}{} ({:?})", r.host, r.path, r.ingress);
            if r.fast { some.0 = true } else { some.1 = true }
        }
    }
    assert!(some.0 && some.1, "both verdicts are met: {some:?}");
}

// Policy::fast_path_carries over every part of a Policy, each set away from its default: only
// error pages, a mirror and HTTP/1.0 upstream need the general path. The destructuring names
// every field, so that a new family does not compile here until its row is written.
#[test]
fn fast_path_carries_is_decided_for_every_policy_part() {
    let Policy {
        limits: _,
        retry: _,
        https: _,
        redirect: _,
        upstream:
            UpstreamRequest {
                vhost: _,
                forwarded_prefix: _,
                set_headers: _,
                connection: _,
                http10: _,
                request_buffering: _,
                body_buffer_size: _,
                keep_underscored_headers: _,
            },
        response: _,
        errors: _,
        mirror: _,
        log: _,
        sets_affinity_cookie: _,
        block: _,
        cors: _,
        access: _,
        rate: _,
        bandwidth: _,
        global_rate_limit: _,
        script: _,
    } = Policy::default();
    type Edit = fn(&mut Policy);
    let rows: [(&str, Edit, bool); 25] = [
        // Snippets' `if`/`return`/`rewrite`: decided by the life cycle, answers local.
        (
            "script",
            |p| {
                p.script = Some(Arc::new(sluice_model::Script {
                    steps: vec![sluice_model::Step::Return { code: 403, text: None }],
                    relative: false,
                }))
            },
            true,
        ),
        ("limits", |p| p.limits.max_body_size = None, true),
        ("retry", |p| p.retry.on = Retry::ON_502, true),
        ("https", |p| p.https.force_ssl_redirect = true, true),
        (
            "redirect",
            |p| {
                p.redirect = Some(Redirect { location: template("/x"), code: 301, relative: false })
            },
            true,
        ),
        ("upstream.vhost", |p| p.upstream.vhost = Some(template("$host")), true),
        ("upstream.forwarded_prefix", |p| p.upstream.forwarded_prefix = Some(template("/p")), true),
        (
            "upstream.set_headers",
            |p| p.upstream.set_headers = vec![("x".into(), template("1"))],
            true,
        ),
        ("upstream.connection", |p| p.upstream.connection = Some("close".into()), true),
        ("upstream.http10", |p| p.upstream.http10 = true, false),
        ("upstream.request_buffering", |p| p.upstream.request_buffering = false, true),
        ("upstream.body_buffer_size", |p| p.upstream.body_buffer_size = 0, true),
        ("upstream.keep_underscored_headers", |p| p.upstream.keep_underscored_headers = true, true),
        ("response", |p| p.response.set = vec![("x".into(), Template::literal("1"))], true),
        (
            "errors",
            |p| p.errors = Some(ErrorPages { codes: vec![503], intercept_upstream: false }),
            false,
        ),
        (
            "mirror",
            |p| {
                p.mirror =
                    Some(Mirror { target: template("http://m/"), host: None, request_body: true })
            },
            false,
        ),
        ("log", |p| p.log.access_log = false, true),
        ("sets_affinity_cookie", |p| p.sets_affinity_cookie = true, true),
        // The access phases run in the life cycle both paths share; their answers are local.
        (
            "block",
            |p| {
                p.block = Some(Arc::new(Blocks {
                    cidrs: IpList::parse("10.0.0.0/8").unwrap(),
                    ..Blocks::default()
                }))
            },
            true,
        ),
        ("cors", |p| p.cors = Some(Arc::new(Cors::default())), true),
        // A paced response needs hyper's body.
        ("bandwidth", |p| p.bandwidth = Some(Bandwidth { rate: 1024, after: 0 }), false),
        // memcached is asked first: another request.
        (
            "global_rate_limit",
            |p| {
                p.global_rate_limit = Some(Arc::new(GlobalRateLimit {
                    namespace: "ns/ing".into(),
                    limit: 10,
                    window_secs: 60,
                    key: template("$remote_addr"),
                    ignored: IpList::default(),
                    status: 429,
                    memcached: ("memcached".into(), 11211),
                    connect_timeout_ms: 50,
                }))
            },
            false,
        ),
        (
            "rate",
            |p| {
                p.rate = Some(Arc::new(RateLimits {
                    zone: "ns/ing".into(),
                    rps: Some(Rate::per_second(1, 5)),
                    rpm: None,
                    connections: 0,
                    allowlist: IpList::default(),
                    req_status: 503,
                    conn_status: 503,
                    state: Default::default(),
                }))
            },
            true,
        ),
        // External authentication asks another service first: the general path.
        (
            "access.external",
            |p| {
                p.access = Some(Arc::new(Access {
                    external: Some(Arc::new(ExternalAuth {
                        url: template("http://auth/check"),
                        method: None,
                        signin: None,
                        response_headers: vec![],
                        request_redirect: None,
                        set_headers: vec![],
                        always_set_cookie: false,
                        cache_key: None,
                        cache_durations: vec![],
                    })),
                    ..Access::default()
                }))
            },
            false,
        ),
        (
            "access",
            |p| {
                p.access = Some(Arc::new(Access {
                    allow: IpList::parse("10.0.0.0/8").unwrap(),
                    ..Access::default()
                }))
            },
            true,
        ),
    ];
    assert!(Policy::default().fast_path_carries());
    for (part, edit, carried) in rows {
        let p = policy_with(edit);
        assert_ne!(p, Policy::default(), "{part}: the edit changes the policy");
        assert_eq!(p.fast_path_carries(), carried, "{part}");
    }
}

// Policy::fast_path_body_limit: `client-body-buffer-size` (8k by default) within 64 KiB, and
// no body at all where bodies must stream (`proxy-request-buffering: off`) or the fast path
// does not carry the policy; routes take their policy's verdict.
#[test]
fn fast_path_bodies_follow_the_body_buffer_and_request_buffering() {
    type Edit = fn(&mut Policy);
    let rows: [(&str, Edit, u64); 6] = [
        ("default", |_| {}, 8 * 1024),
        ("16k", |p| p.upstream.body_buffer_size = 16 * 1024, 16 * 1024),
        ("1m", |p| p.upstream.body_buffer_size = MIB, sluice_model::FAST_BODY_MAX),
        ("0", |p| p.upstream.body_buffer_size = 0, 0),
        ("buffering off", |p| p.upstream.request_buffering = false, 0),
        ("http10", |p| p.upstream.http10 = true, 0),
    ];
    for (name, edit, limit) in rows {
        assert_eq!(policy_with(edit).fast_path_body_limit(), limit, "{name}");
    }
    assert_eq!(sluice_model::FAST_BODY_MAX, 64 * 1024);

    // Routes take their policy's verdict: ingress-nginx's default, or none for a route the
    // fast path does not carry (HTTP/1.0 upstream, however large its body buffer).
    let t = plain();
    assert_eq!(served(&t, &host("plain"), "/").fast_body, 8 * 1024);
    assert_eq!(policy(&t, &host("buffering"), "/").upstream.body_buffer_size, MIB);
    assert_eq!(served(&t, &host("buffering"), "/").fast_body, 0);
}

// ===== the catalogue =====

/// The annotations of this change's families, by family as the issue lists them.
const ISSUE_FAMILIES: &[(&str, &[&str])] = &[
    (
        "redirects",
        &[
            "permanent-redirect",
            "permanent-redirect-code",
            "temporal-redirect",
            "temporal-redirect-code",
            "from-to-www-redirect",
            "app-root",
            "ssl-redirect",
            "force-ssl-redirect",
            "preserve-trailing-slash",
            "use-port-in-redirects",
        ],
    ),
    (
        "headers",
        &[
            "custom-headers",
            "upstream-vhost",
            "x-forwarded-prefix",
            "connection-proxy-header",
            "proxy-redirect-from",
            "proxy-redirect-to",
            "proxy-cookie-domain",
            "proxy-cookie-path",
        ],
    ),
    (
        "canary",
        &[
            "canary",
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
            "canary-by-cookie",
            "canary-weight",
            "canary-weight-total",
        ],
    ),
    (
        "sessions and balancing",
        &[
            "affinity",
            "affinity-mode",
            "affinity-canary-behavior",
            "session-cookie-name",
            "session-cookie-path",
            "session-cookie-domain",
            "session-cookie-samesite",
            "session-cookie-conditional-samesite-none",
            "session-cookie-secure",
            "session-cookie-max-age",
            "session-cookie-expires",
            "session-cookie-change-on-failure",
            "load-balance",
            "upstream-hash-by",
            "upstream-hash-by-subset",
            "upstream-hash-by-subset-size",
        ],
    ),
    ("errors", &["custom-http-errors", "disable-proxy-intercept-errors", "default-backend"]),
    (
        "upstream behaviour",
        &[
            "proxy-body-size",
            "proxy-connect-timeout",
            "proxy-read-timeout",
            "proxy-send-timeout",
            "proxy-next-upstream",
            "proxy-next-upstream-tries",
            "proxy-next-upstream-timeout",
            "proxy-request-buffering",
            "proxy-http-version",
            "proxy-buffering",
            "proxy-buffer-size",
            "proxy-buffers-number",
            "proxy-max-temp-file-size",
            "client-body-buffer-size",
            "service-upstream",
        ],
    ),
    ("hosts", &["server-alias"]),
    ("mirroring", &["mirror-target", "mirror-host", "mirror-request-body"]),
    ("logging switches", &["enable-access-log", "enable-rewrite-log"]),
];

// Every annotation a family reads is implemented (or accepted, with the family's note), in
// the catalogue as in the family's list.
#[test]
fn every_family_annotation_is_implemented_or_accepted() {
    let mut count = 0;
    for family in FAMILIES {
        for &(name, effect) in family.annotations {
            let want = match effect {
                Effect::Applied => Support::Implemented,
                Effect::Accepted(note) => Support::Accepted(note),
            };
            assert_eq!(catalog::support(name), Some(want), "{} {name}", family.module);
            count += 1;
        }
    }
    assert!(count >= 80, "{count} annotations read by families");
}

// None of this change's families is left pending: each of their annotations is read by a
// family, implemented or accepted.
#[test]
fn none_of_the_issue_families_is_left_pending() {
    for (family, names) in ISSUE_FAMILIES {
        for name in *names {
            let support = catalog::support(name);
            assert!(
                matches!(support, Some(Support::Implemented | Support::Accepted(_))),
                "{family}: {name} is {support:?}"
            );
            assert!(
                sluice_translate::annotations::family_of(name).is_some(),
                "{family}: {name} is read by no family"
            );
        }
    }
}

// ingress-nginx v1.15 also has `relative-redirects` (Redirect, annotations-risk.md; NGINX's
// `absolute_redirect off`) and `proxy-busy-buffers-size` (Proxy): Sluice calls them unknown to
// ingress-nginx ("a typo?") instead of implementing or accepting them.
#[test]
fn the_v1_15_redirect_and_buffer_annotations_are_known() {
    for name in ["relative-redirects", "proxy-busy-buffers-size"] {
        let support = catalog::support(name);
        assert!(
            matches!(support, Some(Support::Implemented | Support::Accepted(_))),
            "{name} is {support:?}"
        );
    }
}

// An Ingress carrying every annotation of these families (whatever their values) gets no
// "not implemented" nor "unknown" warning.
#[test]
fn an_ingress_with_every_issue_annotation_gets_no_unsupported_warning() {
    let mut annotations = String::new();
    for (_, names) in ISSUE_FAMILIES {
        for name in *names {
            annotations.push_str(&format!("    {PREFIX}/{name}: \"1\"\n"));
        }
    }
    let extra = format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: everything
  namespace: families
  annotations:
{annotations}spec:
  ingressClassName: sluice
  rules:
    - host: everything.families.test
      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}
"
    );
    let t = with_extra(&extra, &Settings::default());
    let found = summary_for(&t, &ingress("everything"));
    assert!(!found.is_empty(), "values such as \"1\" are invalid for some: {found:?}");
    assert!(
        found
            .iter()
            .all(|d| !d.contains("UnsupportedAnnotation") && !d.contains("UnknownAnnotation")),
        "{found:?}\n{}",
        dump(&t)
    );
}
