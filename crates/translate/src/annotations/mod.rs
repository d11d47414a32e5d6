//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`, prefix set by
//! `--annotations-prefix`), one module per family, like ingress-nginx's
//! `internal/ingress/annotations/*`. Each family parses and validates its annotations and
//! documents where Sluice differs.
//!
//! Every annotation under the prefix gets a definite fate (see [`catalog`]):
//! - implemented: parsed by its family; an invalid value keeps the default and is reported;
//! - not implemented yet: reported as a warning and ignored;
//! - a security annotation Sluice cannot enforce yet (authentication, client certificates,
//!   source-address lists): the Ingress's routes answer 503 rather than serve unprotected;
//! - a snippet (raw NGINX configuration): read by [`snippet`] into typed policy when the
//!   ConfigMap allows it and it stays within the safe subset; otherwise refused, and the
//!   Ingress's routes answer 503, because a snippet may have carried access rules that
//!   Sluice cannot see;
//! - unknown to ingress-nginx too (a typo?): reported as a warning.

pub mod affinity;
pub mod alias;
pub mod app_root;
pub mod auth_tls;
pub mod backend_protocol;
pub mod basic_auth;
pub mod block;
pub mod buffering;
pub mod canary;
pub mod catalog;
pub mod connections;
pub mod cors;
pub mod custom_errors;
pub mod default_backend;
pub mod external_auth;
pub mod global_rate_limit;
pub mod http2;
pub mod ip_lists;
pub mod load_balance;
pub mod log;
pub mod mirror;
pub mod next_upstream;
pub mod proxy;
pub mod proxy_ssl;
pub mod rate_limit;
pub mod real_ip;
pub mod redirect;
pub mod response_headers;
pub mod rewrite;
pub mod service_upstream;
pub mod snippet;
pub mod ssl_cipher;
pub mod ssl_passthrough;
pub mod ssl_redirect;
pub mod upstream_headers;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{Diagnostic, NamespacedName, ObjectRef, Policy, Reason, UpstreamProtocol};

use crate::config::GlobalConfig;
use catalog::Support;

/// What Sluice does with an annotation that a family reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Applied as ingress-nginx applies it (differences in the family's doc).
    Applied,
    /// Read and validated, with no effect a client or backend can see: NGINX memory tuning
    /// that Sluice has no use for. The note says why.
    Accepted(&'static str),
}

/// An annotation family: one module, the annotations and ConfigMap keys it reads. These
/// lists are the catalogue's source of truth for what is implemented ([`catalog::support`]).
#[derive(Debug)]
pub struct Family {
    /// The module.
    pub module: &'static str,
    /// The annotations it reads (without the prefix), and what it does with each.
    pub annotations: &'static [(&'static str, Effect)],
    /// The keys of the controller's ConfigMap it reads.
    pub configmap_keys: &'static [&'static str],
}

/// Every family.
pub const FAMILIES: &[&Family] = &[
    &affinity::FAMILY,
    &alias::FAMILY,
    &app_root::FAMILY,
    &auth_tls::FAMILY,
    &backend_protocol::FAMILY,
    &basic_auth::FAMILY,
    &block::FAMILY,
    &buffering::FAMILY,
    &canary::FAMILY,
    &connections::FAMILY,
    &cors::FAMILY,
    &custom_errors::FAMILY,
    &default_backend::FAMILY,
    &external_auth::FAMILY,
    &global_rate_limit::FAMILY,
    &http2::FAMILY,
    &ip_lists::FAMILY,
    &load_balance::FAMILY,
    &log::FAMILY,
    &mirror::FAMILY,
    &next_upstream::FAMILY,
    &proxy::FAMILY,
    &proxy_ssl::FAMILY,
    &rate_limit::FAMILY,
    &real_ip::FAMILY,
    &redirect::FAMILY,
    &response_headers::FAMILY,
    &rewrite::FAMILY,
    &service_upstream::FAMILY,
    &snippet::FAMILY,
    &ssl_cipher::FAMILY,
    &ssl_passthrough::FAMILY,
    &ssl_redirect::FAMILY,
    &upstream_headers::FAMILY,
];

/// The family that reads annotation `name`, and what it does with it.
pub fn family_of(name: &str) -> Option<(&'static Family, Effect)> {
    FAMILIES.iter().find_map(|f| {
        f.annotations.iter().find(|(n, _)| *n == name).map(|&(_, effect)| (*f, effect))
    })
}

/// What an Ingress's annotations mean for its routes, its hosts and its backends.
#[derive(Clone, Debug, PartialEq)]
pub struct IngressAnnotations {
    /// The request-time policy of every route of the Ingress: the ConfigMap's, shared,
    /// unless an annotation changes it.
    pub policy: Arc<Policy>,
    /// When set, every route of the Ingress answers 503 for this reason.
    pub fail_closed: Option<String>,
    /// `canary: "true"` and its rules: the Ingress only diverts traffic of a main Ingress.
    pub canary: Option<canary::CanaryRules>,
    /// How the Ingress's backends are balanced, for the backends it is first to name.
    pub balance: load_balance::Balancing,
    /// `affinity: cookie` and its settings.
    pub affinity: Option<affinity::CookieAffinity>,
    /// `affinity-mode`, when set (`true`: persistent), with or without `affinity`.
    pub affinity_mode: Option<bool>,
    /// `service-upstream`: its backends are the Services' cluster IPs.
    pub service_upstream: bool,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub default_backend: Option<String>,
    /// `app-root`.
    pub app_root: Option<String>,
    /// `from-to-www-redirect`.
    pub from_to_www: bool,
    /// `server-alias`.
    pub aliases: Vec<String>,
    /// Client certificates for the Ingress's hosts (`auth-tls-*`); `Err` when asked for but
    /// unusable (the hosts fail closed).
    pub auth_tls: Result<Option<auth_tls::AuthTls>, String>,
    /// `ssl-ciphers` for the Ingress's hosts.
    pub ssl_ciphers: Option<Vec<String>>,
    /// `ssl-passthrough`.
    pub ssl_passthrough: bool,
    /// `backend-protocol`.
    pub backend_protocol: UpstreamProtocol,
    /// `proxy-ssl-*`.
    pub proxy_ssl: proxy_ssl::ProxySsl,
    /// `use-regex`, `rewrite-target`.
    pub rewrite: rewrite::Rewrite,
    /// `server-snippet`, read: for every route of the Ingress's hosts (the oldest Ingress's).
    pub server_snippet: Option<Arc<snippet::Snippet>>,
}

impl IngressAnnotations {
    /// Whether the Ingress sets anything that belongs to a backend rather than to its own
    /// routes (how endpoints are balanced, cluster IPs, a default backend): what another
    /// Ingress naming the same Service sees too.
    pub fn touches_backends(&self, global: &GlobalConfig) -> bool {
        self.shapes_backends(global) || self.default_backend.is_some()
    }

    /// Whether the Ingress sets how its backends are balanced or reached: what decides the
    /// backend of a Service port that other Ingresses name too.
    pub fn shapes_backends(&self, global: &GlobalConfig) -> bool {
        self.balance != load_balance::Balancing::default()
            || self.affinity.is_some()
            || self.affinity_mode.is_some()
            || self.service_upstream != global.service_upstream
    }
}

/// How the message of an annotation's diagnostic ends when the annotation fails closed: the
/// Ingress's routes answer 503 (admission refuses such Ingresses).
pub(crate) const FAIL_CLOSED: &str = "; the routes answer 503";

/// The annotations under one prefix.
pub(crate) struct Annotations<'a> {
    map: Option<&'a BTreeMap<String, String>>,
    prefix: &'a str,
}

impl<'a> Annotations<'a> {
    /// The value of annotation `name` (without the prefix).
    fn get(&self, name: &str) -> Option<&'a str> {
        let map = self.map?;
        // Avoid formatting a key per lookup: annotations are few, scan them.
        map.iter()
            .find(|(k, _)| {
                k.len() == self.prefix.len() + 1 + name.len()
                    && k.starts_with(self.prefix)
                    && k.as_bytes()[self.prefix.len()] == b'/'
                    && k.ends_with(name)
            })
            .map(|(_, v)| v.as_str())
    }

    /// The annotations of `names` that are set, with their values.
    fn values<'n>(
        &'n self,
        names: &'n [(&'static str, Effect)],
    ) -> impl Iterator<Item = (&'static str, &'a str)> + 'n {
        names.iter().filter_map(|&(name, _)| Some((name, self.get(name)?)))
    }

    /// Reports an invalid value of annotation `name`: the default applies.
    fn report(&self, object: &ObjectRef, name: &str, why: &str, diagnostics: &mut Vec<Diagnostic>) {
        diagnostics.push(Diagnostic::error(
            object.clone(),
            Reason::InvalidAnnotation,
            format!("{}/{name}: {why}; the default applies", self.prefix),
        ));
    }

    /// Applies annotation `name` with `f`; an error is reported as an invalid value (the
    /// default then applies).
    fn apply(
        &self,
        object: &ObjectRef,
        name: &str,
        diagnostics: &mut Vec<Diagnostic>,
        f: impl FnOnce(&str) -> Result<(), String>,
    ) {
        if let Some(value) = self.get(name)
            && let Err(why) = f(value)
        {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidAnnotation,
                format!("{}/{name}: {why}; the default applies", self.prefix),
            ));
        }
    }

    /// Reports an invalid value of a security annotation, which the caller fails closed on;
    /// returns the reason its routes answer 503.
    fn invalid(
        &self,
        object: &ObjectRef,
        name: &str,
        why: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> String {
        let reason = format!("{}/{name}: {why}", self.prefix);
        diagnostics.push(Diagnostic::error(
            object.clone(),
            Reason::InvalidAnnotation,
            format!("{reason}{FAIL_CLOSED}"),
        ));
        reason
    }
}

/// A Secret reference, `name` or `namespace/name`, in `namespace` (the Ingress's): a Secret in
/// another namespace is refused, as ingress-nginx does by default.
fn secret_ref(value: &str, namespace: &str) -> Result<NamespacedName, String> {
    let value = value.trim();
    let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
    if name.is_empty() || name.contains('/') {
        return Err(format!("{value:?} is not a Secret name or namespace/name"));
    }
    if ns != namespace {
        return Err(format!(
            "{value:?} is in another namespace than the Ingress, which is not allowed"
        ));
    }
    Ok(NamespacedName::new(ns, name))
}

/// What the families need besides the annotations: the global settings (defaults, the
/// response headers `custom-headers` may set) and the ConfigMaps of the snapshot.
pub struct Context<'a> {
    /// The ConfigMap's settings.
    pub global: &'a GlobalConfig,
    /// Looks up a ConfigMap's data by namespace and name.
    pub config_map: &'a ConfigMaps<'a>,
    /// Looks up a Secret by namespace and name.
    pub secret: &'a Secrets<'a>,
}

/// Looks up a Secret by namespace and name.
pub type Secrets<'a> = dyn Fn(&str, &str) -> Option<&'a k8s_openapi::api::core::v1::Secret> + 'a;

/// Looks up a ConfigMap's data by namespace and name.
pub type ConfigMaps<'a> = dyn Fn(&str, &str) -> Option<&'a BTreeMap<String, String>> + 'a;

/// Parses `ingress`'s annotations under `prefix`, over the global settings of `cx`.
pub fn parse(
    ingress: &Ingress,
    object: &ObjectRef,
    prefix: &str,
    cx: &Context<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    let map = ingress.metadata.annotations.as_ref();
    let a = Annotations { map, prefix };
    let mut out = IngressAnnotations {
        policy: cx.global.policy.clone(),
        fail_closed: cx.global.fail_closed.clone(),
        canary: None,
        balance: load_balance::Balancing::default(),
        affinity: None,
        affinity_mode: None,
        service_upstream: cx.global.service_upstream,
        default_backend: None,
        app_root: None,
        from_to_www: false,
        aliases: Vec::new(),
        auth_tls: Ok(None),
        ssl_ciphers: None,
        ssl_passthrough: false,
        backend_protocol: UpstreamProtocol::Http1,
        proxy_ssl: proxy_ssl::ProxySsl::default(),
        rewrite: rewrite::Rewrite::default(),
        server_snippet: None,
    };
    let names =
        map.into_iter().flatten().filter_map(|(k, _)| k.strip_prefix(prefix)?.strip_prefix('/'));
    if names.clone().next().is_none() {
        // Most Ingresses carry none: every family would keep the defaults (the `families`
        // test checks that it does).
        return out;
    }
    for name in names {
        match catalog::support(name) {
            Some(Support::Implemented | Support::Accepted(_)) => {}
            Some(Support::Pending) => diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::UnsupportedAnnotation,
                format!("{prefix}/{name} is not implemented by Sluice yet; ignored"),
            )),
            Some(Support::Enforced) => {
                let why = format!(
                    "{prefix}/{name} cannot be enforced by this version of Sluice; \
                     the Ingress's routes answer 503 instead of serving unprotected"
                );
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::UnenforceableAnnotation,
                    why.clone(),
                ));
                out.fail_closed.get_or_insert(why);
            }
            Some(Support::Snippet) => {
                let why = format!(
                    "{prefix}/{name} holds raw NGINX configuration, which Sluice never applies; \
                     the Ingress's routes answer 503 until the annotation is removed (use the \
                     equivalent annotations instead)"
                );
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::SnippetRefused,
                    why.clone(),
                ));
                out.fail_closed.get_or_insert(why);
            }
            Some(Support::Removed(note)) => diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::UnsupportedAnnotation,
                format!("{prefix}/{name} was removed from ingress-nginx ({note}); ignored"),
            )),
            None => diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::UnknownAnnotation,
                format!("{prefix}/{name} is not an ingress-nginx annotation; ignored"),
            )),
        }
    }
    families(&a, object, cx, &mut out, diagnostics);
    out
}

/// Each family's annotations, over the defaults in `out`.
fn families(
    a: &Annotations<'_>,
    object: &ObjectRef,
    cx: &Context<'_>,
    out: &mut IngressAnnotations,
    d: &mut Vec<Diagnostic>,
) {
    let p = Arc::make_mut(&mut out.policy);
    proxy::parse(a, object, &mut p.limits, d);
    next_upstream::parse(a, object, &mut p.retry, d);
    ssl_redirect::parse(a, object, &mut p.https, d);
    p.redirect = redirect::parse(a, object, cx.global.relative_redirects, d);
    out.from_to_www = redirect::from_to_www(a, object, d);
    buffering::parse(a, object, &mut p.upstream, d);
    upstream_headers::parse(a, object, &mut p.upstream, d);
    if let Err(why) = response_headers::parse(a, object, cx, &mut p.response, d) {
        out.fail_closed.get_or_insert(why);
    }
    p.errors = custom_errors::parse(a, object, p.errors.take(), d);
    p.mirror = mirror::parse(a, object, d);
    log::parse(a, object, &mut p.log, d);
    if let Err(why) = access(a, object, cx, p, d) {
        out.fail_closed.get_or_insert(why);
    }
    rate_limit::bandwidth(a, object, &mut p.bandwidth, d);
    match global_rate_limit::parse(a, object, cx.global, d) {
        Ok(limit) => p.global_rate_limit = limit,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
    match rate_limit::parse(a, object, zone_name(object), cx.global, d) {
        Ok(rate) => p.rate = rate,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
    match cors::parse(a, object, d) {
        Ok(cors) => p.cors = cors,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
    out.canary = canary::parse(a, object, d).map(|mut c| {
        c.sticky = affinity::canary_sticky(a, object, d);
        c
    });
    out.balance = load_balance::parse(a, object, d);
    out.affinity_mode = affinity::mode(a, object, d);
    out.affinity = affinity::parse(a, object, d).map(|mut c| {
        c.persistent = out.affinity_mode.unwrap_or(false);
        c
    });
    p.sets_affinity_cookie = out.affinity.is_some();
    let relative = cx.global.relative_redirects;
    match snippet::parse(a, object, cx.global.snippet_gates, relative, p, d) {
        Ok(server) => out.server_snippet = server,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
    out.service_upstream = service_upstream::parse(a, object, out.service_upstream, d);
    out.default_backend = default_backend::parse(a, object, d);
    out.app_root = app_root::parse(a, object, d);
    out.aliases = alias::parse(a, object, d);
    out.rewrite = rewrite::parse(a, object, d);
    out.auth_tls = auth_tls::parse(a, object, d);
    out.ssl_ciphers = ssl_cipher::parse(a, object, d);
    out.ssl_passthrough = ssl_passthrough::parse(a, object, d);
    out.backend_protocol = backend_protocol::parse(a, object, d);
    match proxy_ssl::parse(a, object, d) {
        Ok(ssl) => out.proxy_ssl = ssl,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
}

/// The name of an Ingress's limit zone: its namespace and name (ingress-nginx adds the UID,
/// which the manifests source may not have).
fn zone_name(object: &ObjectRef) -> String {
    format!("{}/{}", object.namespace, object.name)
}

/// The access phase's policy: address lists over the ConfigMap's, basic authentication and
/// `satisfy`. `Err` when protection is asked for and cannot be given.
fn access(
    a: &Annotations<'_>,
    object: &ObjectRef,
    cx: &Context<'_>,
    p: &mut Policy,
    d: &mut Vec<Diagnostic>,
) -> Result<(), String> {
    let mut access = p.access.as_deref().cloned().unwrap_or_default();
    let lists = ip_lists::parse(a, object, &mut access, d);
    let basic = basic_auth::parse(a, object, cx, d);
    let external = external_auth::parse(a, object, cx, d);
    access.satisfy_any = basic_auth::satisfy_any(a, object, d);
    lists?;
    access.basic = basic?;
    access.external = external?;
    let open = access.is_open();
    let same = p.access.as_deref().map_or(open, |old| *old == access);
    if !same {
        p.access = (!open).then(|| Arc::new(access));
    }
    Ok(())
}

/// A boolean as ingress-nginx reads one (Go's `strconv.ParseBool`): `1`, `t`, `T`, `TRUE`,
/// `true`, `True`, and their false counterparts.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{value:?} is not a boolean (true or false)")),
    }
}

/// A whole number within `range`, or an error naming what was expected (`what`: "a whole
/// number", "a status", ...) and the range.
pub fn parse_in_range<T>(
    value: &str,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match value.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("{value:?} is not {what} from {} to {}", range.start(), range.end())),
    }
}

/// A time as NGINX reads one (`ngx_parse_time`): numbers with units `ms`, `s`, `m`, `h`,
/// `d`, `w`, `M` (30 days) or `y` (365 days), optionally separated by spaces (`1h30m`,
/// `1h 30m`); a bare number is seconds. Zero is a time; callers that need a positive one say
/// so.
pub fn parse_time(value: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{value:?} is not a time (such as 30s, 500ms, 5m or 1h30m)");
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms: u64 = match &rest[..unit] {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total_ms = n.checked_mul(ms).and_then(|t| total_ms.checked_add(t)).ok_or_else(bad)?;
        rest = rest[unit..].trim_start();
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_range_and_nginx_times() {
        assert_eq!(parse_in_range::<u16>(" 429 ", 400..=599, "a status"), Ok(429));
        for bad in ["399", "600", "-1", "4e2", ""] {
            let e = parse_in_range::<u16>(bad, 400..=599, "a status").unwrap_err();
            assert_eq!(e, format!("{bad:?} is not a status from 400 to 599"));
        }
        let secs = std::time::Duration::from_secs;
        assert_eq!(parse_time("1h 30m"), Ok(secs(5400)));
        assert_eq!(parse_time("1m30s"), Ok(secs(90)));
        assert_eq!(parse_time("0"), Ok(secs(0)));
        assert_eq!(parse_time("2w"), Ok(secs(14 * 86_400)));
        for bad in ["", "s", "1x", "-5", "1.5s", "99999999999999999y"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    // `parse` skips the families of an Ingress without annotations under the prefix: each
    // family, run over no annotation, must leave the defaults as they are, under the default
    // settings and under a ConfigMap that sets every family's keys.
    #[test]
    fn families_keep_the_defaults_without_annotations() {
        let object = ObjectRef::new(sluice_model::Kind::ConfigMap, "ns", "config");
        let data: BTreeMap<String, String> = [
            ("proxy-body-size", "8m"),
            ("proxy-next-upstream", "error http_502"),
            ("ssl-redirect", "false"),
            ("relative-redirects", "true"),
            ("proxy-request-buffering", "off"),
            ("add-headers", "ns/add"),
            ("custom-http-errors", "404,503"),
            ("skip-access-log-urls", "/healthz"),
            ("load-balance", "ewma"),
            ("service-upstream", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let add: BTreeMap<String, String> = [("X-A".to_string(), "1".to_string())].into();
        let config_map = |_: &str, name: &str| (name == "add").then_some(&add);
        let configured = crate::config::parse(&object, &data, &config_map, &mut Vec::new());
        assert_ne!(configured, GlobalConfig::default());
        let ingress = Ingress::default();
        let globals = [GlobalConfig::default(), configured];
        for global in &globals {
            let cx = Context { global, config_map: &config_map, secret: &|_, _| None };
            let mut diagnostics = Vec::new();
            let skipped =
                parse(&ingress, &object, "nginx.ingress.kubernetes.io", &cx, &mut diagnostics);
            let mut all = skipped.clone();
            let a = Annotations { map: None, prefix: "nginx.ingress.kubernetes.io" };
            families(&a, &object, &cx, &mut all, &mut diagnostics);
            assert_eq!(all, skipped);
            assert!(diagnostics.is_empty(), "{diagnostics:?}");
        }
    }

    #[test]
    fn booleans_follow_go_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["yes", "tRUE", "", " true"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }
}
