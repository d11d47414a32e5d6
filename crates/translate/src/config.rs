//! Global settings from the controller's ConfigMap (`--configmap`), with ingress-nginx's key
//! names and defaults. Each key is read by the annotation family it belongs to (their
//! `FAMILY.configmap_keys`, listed in the README); keys no family reads are reported as not
//! implemented, and `*-snippet` keys are refused. Sluice's own keys (`sluice-*`,
//! [`crate::config_keys::SLUICE_KEYS`]) are read by their modules ([`crate::outlier`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_model::{
    Blocks, Diagnostic, HttpsBehaviour, Kind, ObjectRef, Policy, Reason, TlsVersions,
};

use crate::annotations::load_balance::Balancing;
use crate::annotations::{ConfigMaps, buffering, connections};
use crate::annotations::{
    FAMILIES, basic_auth, block, custom_errors, external_auth, global_rate_limit, http2, ip_lists,
    load_balance, log, next_upstream, parse_bool, proxy, rate_limit, real_ip, response_headers,
    service_upstream, snippet, ssl_cipher, upstream_headers,
};

/// The global settings translation uses, after the ConfigMap is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    /// Defaults for every route; annotations override them per Ingress. Shared by the
    /// routes of every Ingress whose annotations change none of it.
    pub policy: Arc<Policy>,
    /// Redirects and HSTS.
    pub https: HttpsBehaviour,
    /// TLS versions offered.
    pub versions: TlsVersions,
    /// TLS 1.2 suites of hosts that set none (`None`: rustls' defaults).
    pub tls12_suites: Option<Vec<String>>,
    /// `load-balance`, `upstream-hash-by*`: defaults of every backend.
    pub balancing: Balancing,
    /// `service-upstream`.
    pub service_upstream: bool,
    /// `relative-redirects`.
    pub relative_redirects: bool,
    /// `global-allowed-response-headers`: what `custom-headers` may set.
    pub allowed_response_headers: Vec<String>,
    /// `proxy-redirect-from` and `-to`, as written (the annotations' defaults).
    pub proxy_redirect: (String, String),
    /// `disable-proxy-intercept-errors`.
    pub(crate) disable_intercept: bool,
    /// `enable-underscores-in-headers` and `ignore-invalid-headers`.
    pub(crate) underscores: (bool, bool),
    /// A security key (address or block lists) that cannot be applied: every Ingress's
    /// routes answer 503 for this reason.
    pub fail_closed: Option<String>,
    /// `no-auth-locations`: Ingress paths with these prefixes ask for no authentication.
    pub no_auth_locations: Vec<String>,
    /// `limit-req-status-code` and `limit-conn-status-code`.
    pub(crate) limit_status: (u16, u16),
    /// `enable-real-ip`.
    pub(crate) enable_real_ip: bool,
    /// `limit-rate` and `limit-rate-after`, in bytes.
    pub(crate) bandwidth: (u64, u64),
    /// `global-rate-limit-memcached-*` and `global-rate-limit-status-code`.
    pub(crate) memcached: global_rate_limit::Memcached,
    /// `global-auth-url` and its settings: every Ingress's external authentication unless it
    /// sets its own or opts out (`enable-global-auth`).
    pub global_auth: Option<Arc<sluice_model::ExternalAuth>>,
    /// `allow-snippet-annotations` and `annotations-risk-level`: whether annotation
    /// snippets are read.
    pub snippet_gates: snippet::Gates,
    /// Sluice's own `sluice-outlier-*`: when endpoints are ejected for failing.
    pub outlier: crate::outlier::OutlierKeys,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            policy: Arc::default(),
            https: HttpsBehaviour::default(),
            versions: TlsVersions::default(),
            tls12_suites: None,
            balancing: Balancing::default(),
            service_upstream: false,
            relative_redirects: false,
            allowed_response_headers: Vec::new(),
            proxy_redirect: ("off".into(), "off".into()),
            disable_intercept: false,
            underscores: (false, true),
            fail_closed: None,
            no_auth_locations: vec!["/.well-known/acme-challenge".into()],
            limit_status: (503, 503),
            enable_real_ip: false,
            bandwidth: (0, 0),
            memcached: global_rate_limit::Memcached::default(),
            global_auth: None,
            snippet_gates: snippet::Gates::default(),
            outlier: crate::outlier::OutlierKeys::default(),
        }
    }
}

/// Where the ConfigMap's values come from: the ConfigMap itself (for diagnostics) and the
/// other ConfigMaps its keys name (`add-headers`, `proxy-set-headers`).
pub(crate) struct Source<'a> {
    /// The ConfigMap.
    pub object: &'a ObjectRef,
    /// Looks up a ConfigMap's data by namespace and name.
    pub config_map: &'a ConfigMaps<'a>,
}

/// Keys whose value protects: one that cannot be read fails every route closed.
const SECURITY_KEYS: &[&str] = &[
    "whitelist-source-range",
    "denylist-source-range",
    "block-cidrs",
    "block-user-agents",
    "block-referers",
    "proxy-real-ip-cidr",
];

/// The HSTS keys, combined into one header value at the end.
struct Hsts {
    on: bool,
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

/// Reads the ConfigMap's `data` over the defaults. Invalid values keep the default and are
/// reported; so are keys Sluice does not implement, and snippet keys, which are refused.
/// `config_map` reads the other ConfigMaps some keys name.
pub fn parse<'a>(
    object: &'a ObjectRef,
    data: &BTreeMap<String, String>,
    config_map: &'a ConfigMaps<'a>,
    diagnostics: &mut Vec<Diagnostic>,
) -> GlobalConfig {
    let mut config = GlobalConfig::default();
    let source = Source { object, config_map };
    let mut hsts = Hsts { on: true, max_age: 31_536_000, include_subdomains: true, preload: false };
    let global_auth = |k: &str| data.get(&format!("global-auth-{k}")).map(String::as_str);
    for (key, value) in data {
        if key.starts_with("global-auth-") && !key.ends_with("-snippet") {
            // Read together below, once every key is known.
            if external_auth::FAMILY.configmap_keys.contains(&key.as_str()) {
                continue;
            }
        }
        if let Some(result) = crate::outlier::set(key, value, &mut config.outlier) {
            // Sluice's own keys: a bad value is worth a warning (nothing is less safe).
            if let Err(why) = result {
                diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Reason::InvalidConfigMapKey,
                    format!("{key}: {why}; the default applies"),
                ));
            }
            continue;
        }
        let result = family_key(key, value, &mut config, &mut hsts, &source, diagnostics);
        match result {
            Some(Ok(())) => {}
            Some(Err(why)) if SECURITY_KEYS.contains(&key.as_str()) => {
                let why = format!("ConfigMap {object}: {key}: {why}");
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::InvalidConfigMapKey,
                    format!(
                        "{key}: {why}; every Ingress's routes answer 503 until it is fixed, \
                         rather than serve without the list"
                    ),
                ));
                config.fail_closed.get_or_insert(why);
            }
            Some(Err(why)) if key.ends_with("-snippet") => diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::SnippetRefused,
                format!("{key}: {why}; the snippet is ignored"),
            )),
            Some(Err(why)) => diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidConfigMapKey,
                format!("{key}: {why}; the default applies"),
            )),
            None => unread_key(object, key, diagnostics),
        }
    }
    let (from, to) = config.proxy_redirect.clone();
    if let Err(why) =
        response_headers::set_location(&from, &to, &mut Arc::make_mut(&mut config.policy).response)
    {
        diagnostics.push(Diagnostic::error(
            object.clone(),
            Reason::InvalidConfigMapKey,
            format!("proxy-redirect-from: {why}; the default applies"),
        ));
    }
    if let Some(url) = global_auth("url").filter(|u| !u.trim().is_empty()) {
        let spec = external_auth::Spec {
            url,
            method: global_auth("method"),
            signin: global_auth("signin"),
            redirect_param: global_auth("signin-redirect-param"),
            response_headers: global_auth("response-headers"),
            request_redirect: global_auth("request-redirect"),
            always_set_cookie: global_auth("always-set-cookie"),
            cache_key: global_auth("cache-key"),
            cache_duration: global_auth("cache-duration"),
        };
        match external_auth::build(&spec, Vec::new()) {
            Ok(auth) => {
                // In the ConfigMap's policy, which Ingresses without annotations share; an
                // Ingress's own `auth-url` or `enable-global-auth: "false"` replace it.
                let auth = Arc::new(auth);
                let policy = Arc::make_mut(&mut config.policy);
                let mut access = policy.access.as_deref().cloned().unwrap_or_default();
                access.external = Some(auth.clone());
                policy.access = Some(Arc::new(access));
                config.global_auth = Some(auth);
            }
            Err((name, why)) => {
                let why = format!("ConfigMap {object}: global-{name}: {why}");
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::InvalidConfigMapKey,
                    format!("{why}; every Ingress's routes answer 503 until it is fixed"),
                ));
                config.fail_closed.get_or_insert(why);
            }
        }
    }
    // The ConfigMap snippets' redirects follow `relative-redirects`, read in any order.
    let relative = config.relative_redirects;
    if let Some(script) = &mut Arc::make_mut(&mut config.policy).script {
        Arc::make_mut(script).relative = relative;
    }
    let (rate, after) = config.bandwidth;
    if rate > 0 {
        Arc::make_mut(&mut config.policy).bandwidth = Some(sluice_model::Bandwidth { rate, after });
    }
    config.https.real_ip.from_header = config.https.use_forwarded_headers || config.enable_real_ip;
    let (underscores, ignore_invalid) = config.underscores;
    Arc::make_mut(&mut config.policy).upstream.keep_underscored_headers =
        underscores || !ignore_invalid;
    config.https.hsts = hsts.on.then(|| {
        let mut v = format!("max-age={}", hsts.max_age);
        if hsts.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if hsts.preload {
            v.push_str("; preload");
        }
        v
    });
    config
}

/// Reports a key no family reads, by its fate in [`config_keys`](crate::config_keys): NGINX
/// tuning is accepted silently, the rest is reported.
fn unread_key(object: &ObjectRef, key: &str, diagnostics: &mut Vec<Diagnostic>) {
    use crate::config_keys::{KeySupport, support};
    let (reason, message) = match support(key) {
        Some(KeySupport::Accepted(_) | KeySupport::Implemented) => return,
        Some(KeySupport::Snippet) => {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::SnippetRefused,
                format!("{key}: raw NGINX configuration is never applied by Sluice; remove the key and use the equivalent setting"),
            ));
            return;
        }
        Some(KeySupport::Pending) => {
            (Reason::UnsupportedConfigMapKey, format!("{key}: not implemented by Sluice; ignored"))
        }
        Some(KeySupport::Removed(note)) => (
            Reason::UnsupportedConfigMapKey,
            format!("{key}: removed from ingress-nginx ({note}); ignored"),
        ),
        None if key.ends_with("-snippet") => {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::SnippetRefused,
                format!("{key}: raw NGINX configuration is never applied by Sluice; remove the key and use the equivalent setting"),
            ));
            return;
        }
        None => (
            Reason::UnsupportedConfigMapKey,
            format!("{key}: not an ingress-nginx ConfigMap key (a typo?); ignored"),
        ),
    };
    diagnostics.push(Diagnostic::warning(object.clone(), reason, message));
}

/// One key, read by the family that lists it; `None` when no family does.
fn family_key(
    key: &str,
    value: &str,
    config: &mut GlobalConfig,
    hsts: &mut Hsts,
    source: &Source<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Result<(), String>> {
    let listed = FAMILIES.iter().any(|f| f.configmap_keys.contains(&key));
    if !listed {
        return None;
    }
    let policy = Arc::make_mut(&mut config.policy);
    let https = &mut config.https;
    let known = proxy::set(key, value, &mut policy.limits)
        .or_else(|| next_upstream::set(key, value, &mut policy.retry))
        .or_else(|| buffering::set(key, value, &mut policy.upstream))
        .or_else(|| log::configmap(key, value, &mut policy.log))
        .or_else(|| ssl_redirect(key, value, &mut policy.https, https, hsts));
    if known.is_some() {
        return known;
    }
    let known = upstream_headers::configmap(key, value, config, source, diagnostics)
        .or_else(|| response_headers::configmap(key, value, config, source, diagnostics))
        .or_else(|| custom_errors::configmap(key, value, config))
        .or_else(|| connections::configmap(key, value, &mut config.https.connections))
        .or_else(|| load_balance::configmap(key, value, config))
        .or_else(|| access_keys(key, value, config))
        .or_else(|| rate_limit::configmap(key, value, config))
        .or_else(|| global_rate_limit::configmap(key, value, &mut config.memcached))
        .or_else(|| http2::configmap(key, value, &mut config.https.http2))
        .or_else(|| {
            real_ip::configmap(key, value, &mut config.https.real_ip, &mut config.enable_real_ip)
        })
        .or_else(|| match key {
            "service-upstream" => Some(parse_bool(value).map(|b| config.service_upstream = b)),
            "relative-redirects" => Some(parse_bool(value).map(|b| config.relative_redirects = b)),
            "keep-alive" => Some(match value.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => {
                    config.https.keep_alive = std::time::Duration::from_secs(secs);
                    Ok(())
                }
                _ => Err(format!("{value:?} is not a positive whole number of seconds")),
            }),
            _ => None,
        })
        .or_else(|| tls(key, value, config, source.object, diagnostics))
        .or_else(|| {
            let mut notes = Vec::new();
            let policy = Arc::make_mut(&mut config.policy);
            let gates = &mut config.snippet_gates;
            let known = snippet::configmap(key, value, gates, policy, false, &mut notes);
            for note in notes {
                diagnostics.push(Diagnostic::warning(
                    source.object.clone(),
                    Reason::UnsupportedFeature,
                    format!("{key}: {note}"),
                ));
            }
            known
        });
    debug_assert!(known.is_some(), "{key} is listed by a family but read by none");
    debug_assert!(service_upstream::FAMILY.configmap_keys.contains(&"service-upstream"));
    known
}

/// The keys of the access families (`ip_lists`, `block`, `basic_auth`).
fn access_keys(key: &str, value: &str, config: &mut GlobalConfig) -> Option<Result<(), String>> {
    if key == "no-auth-locations" {
        config.no_auth_locations = basic_auth::no_auth_locations(value);
        return Some(Ok(()));
    }
    let policy = Arc::make_mut(&mut config.policy);
    let mut access = policy.access.as_deref().cloned().unwrap_or_default();
    let mut blocks = policy.block.as_deref().cloned().unwrap_or_default();
    let result = ip_lists::configmap(key, value, &mut access)
        .or_else(|| block::configmap(key, value, &mut blocks))?;
    policy.access = (!access.is_open()).then(|| Arc::new(access));
    policy.block = (blocks != Blocks::default()).then(|| Arc::new(blocks));
    Some(result)
}

/// The keys of the HTTPS redirect family (`ssl_redirect`), HSTS included.
fn ssl_redirect(
    key: &str,
    value: &str,
    redirect: &mut sluice_model::HttpsRedirect,
    https: &mut HttpsBehaviour,
    hsts: &mut Hsts,
) -> Option<Result<(), String>> {
    Some(match key {
        "ssl-redirect" => parse_bool(value).map(|v| redirect.ssl_redirect = v),
        "force-ssl-redirect" => parse_bool(value).map(|v| redirect.force_ssl_redirect = v),
        "hsts" => parse_bool(value).map(|v| hsts.on = v),
        "hsts-max-age" => value
            .trim()
            .parse::<u64>()
            .map(|v| hsts.max_age = v)
            .map_err(|_| format!("{value:?} is not a whole number of seconds")),
        "hsts-include-subdomains" => parse_bool(value).map(|v| hsts.include_subdomains = v),
        "hsts-preload" => parse_bool(value).map(|v| hsts.preload = v),
        "no-tls-redirect-locations" => {
            https.no_redirect_prefixes = value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        }
        "http-redirect-code" => match value.trim().parse::<u16>() {
            Ok(code @ (301 | 302 | 307 | 308)) => {
                https.redirect_code = code;
                Ok(())
            }
            _ => Err(format!("{value:?} is not 301, 302, 307 or 308")),
        },
        "use-forwarded-headers" => parse_bool(value).map(|v| https.use_forwarded_headers = v),
        _ => return None,
    })
}

/// The keys of the `ssl_cipher` family.
fn tls(
    key: &str,
    value: &str,
    config: &mut GlobalConfig,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Result<(), String>> {
    Some(match key {
        "ssl-protocols" => {
            let (versions, unsupported) = crate::tls::map_protocols(value);
            if !unsupported.is_empty() {
                diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Reason::UnsupportedConfigMapKey,
                    format!(
                        "ssl-protocols: {} never enabled by Sluice (only TLSv1.2 and TLSv1.3)",
                        unsupported.join(", ")
                    ),
                ));
            }
            if versions.tls12 || versions.tls13 {
                config.versions = versions;
                Ok(())
            } else {
                Err(format!("{value:?} names neither TLSv1.2 nor TLSv1.3"))
            }
        }
        "ssl-ciphers" => {
            config.tls12_suites = ssl_cipher::suites(value, object, "ssl-ciphers", diagnostics);
            Ok(())
        }
        _ => return None,
    })
}

/// The reference used in diagnostics about the ConfigMap `ns/name`.
pub fn object_ref(ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::ConfigMap, ns, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a family lists is read by this module (a value of the wrong shape is an
    /// invalid value, never "not implemented"), and a key none lists is not.
    #[test]
    fn every_listed_key_is_read() {
        let object = object_ref("ingress", "config");
        let none = |_: &str, _: &str| None;
        for family in FAMILIES {
            for key in family.configmap_keys {
                let data = BTreeMap::from([(key.to_string(), "\u{1}not a value".to_string())]);
                let mut diagnostics = Vec::new();
                parse(&object, &data, &none, &mut diagnostics);
                assert!(
                    diagnostics.iter().all(|d| !d.message.contains("not implemented by Sluice")),
                    "{key} ({}): {diagnostics:?}",
                    family.module
                );
            }
        }
        let data = BTreeMap::from([("no-such-key".to_string(), "1".to_string())]);
        let mut diagnostics = Vec::new();
        parse(&object, &data, &none, &mut diagnostics);
        assert_eq!(diagnostics[0].reason, Reason::UnsupportedConfigMapKey);
        assert!(diagnostics[0].message.contains("not an ingress-nginx ConfigMap key"));
    }

    /// The connection keys land in the table-wide HTTPS behaviour; a bad one is an invalid
    /// value naming the key, and its default stays.
    #[test]
    fn connection_keys_are_read() {
        let object = object_ref("ingress", "config");
        let none = |_: &str, _: &str| None;
        let data = BTreeMap::from(
            [
                ("client-header-timeout", "5"),
                ("client-body-timeout", "7"),
                ("keep-alive-requests", "3"),
                ("large-client-header-buffers", "2 1k"),
                ("max-worker-connections", "0"),
                ("max-worker-open-files", "4000"),
                ("upstream-keepalive-connections", "8"),
                ("upstream-keepalive-timeout", "9"),
                ("upstream-keepalive-requests", "10"),
                ("upstream-keepalive-time", "1h30m"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut diagnostics = Vec::new();
        let config = parse(&object, &data, &none, &mut diagnostics);
        assert_eq!(diagnostics, []);
        let c = config.https.connections;
        assert_eq!(c.client_header_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.client_body_timeout, std::time::Duration::from_secs(7));
        assert_eq!(c.keep_alive_requests, 3);
        assert_eq!((c.header_buffers.number, c.header_buffers.size), (2, 1024));
        assert_eq!(c.worker_connections(1 << 20), 3000);
        assert_eq!(c.upstream.connections, 8);
        assert_eq!(c.upstream.timeout, std::time::Duration::from_secs(9));
        assert_eq!(c.upstream.requests, 10);
        assert_eq!(c.upstream.time, std::time::Duration::from_secs(5400));

        let data = BTreeMap::from([("keep-alive-requests".to_string(), "lots".to_string())]);
        let mut diagnostics = Vec::new();
        let config = parse(&object, &data, &none, &mut diagnostics);
        assert_eq!(config.https.connections, sluice_model::ConnectionLimits::default());
        assert_eq!(diagnostics[0].reason, Reason::InvalidConfigMapKey);
        assert!(diagnostics[0].message.starts_with("keep-alive-requests:"), "{diagnostics:?}");
        assert!(diagnostics[0].message.contains("the default applies"));
    }

    /// Keys no family reads get their catalogued fate: NGINX tuning silently, the others with
    /// a warning saying which.
    #[test]
    fn unread_keys_follow_the_catalogue() {
        let object = object_ref("ingress", "config");
        let none = |_: &str, _: &str| None;
        let report = |key: &str| {
            let data = BTreeMap::from([(key.to_string(), "4".to_string())]);
            let mut diagnostics = Vec::new();
            parse(&object, &data, &none, &mut diagnostics);
            diagnostics
        };
        assert_eq!(report("worker-processes"), []);
        assert_eq!(report("server-name-hash-max-size"), []);
        let removed = report("jaeger-collector-host");
        assert!(removed[0].message.contains("removed from ingress-nginx"), "{removed:?}");
        let pending = report("use-gzip");
        assert!(pending[0].message.contains("not implemented by Sluice"), "{pending:?}");
        assert_eq!(report("main-snippet")[0].reason, Reason::SnippetRefused);
    }

    /// Sluice's own outlier keys are read, never reported as unknown; a bad value is a
    /// warning on the ConfigMap and keeps the default.
    #[test]
    fn sluice_outlier_keys_are_read_and_bad_values_warned() {
        let object = object_ref("ingress", "config");
        let none = |_: &str, _: &str| None;
        let data = BTreeMap::from([
            ("sluice-outlier-consecutive-failures".to_string(), "2".to_string()),
            ("sluice-outlier-max-ejection-percent".to_string(), "200".to_string()),
        ]);
        let mut diagnostics = Vec::new();
        let config = parse(&object, &data, &none, &mut diagnostics);
        assert_eq!(config.outlier.policy().consecutive_failures, 2);
        assert_eq!(config.outlier.policy().max_ejection_percent, 10);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let d = &diagnostics[0];
        assert_eq!(d.severity, sluice_model::Severity::Warning);
        assert_eq!(d.object, object);
        assert!(d.message.starts_with("sluice-outlier-max-ejection-percent: \"200\""), "{d:?}");
        let off = BTreeMap::from([("sluice-outlier-detection".to_string(), "false".to_string())]);
        let mut diagnostics = Vec::new();
        assert!(!parse(&object, &off, &none, &mut diagnostics).outlier.policy().enabled());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
    }
}
