//! External authentication: `auth-url` and its settings, NGINX's `auth_request` as
//! ingress-nginx configures it; and the ConfigMap's `global-auth-url`, which applies to every
//! Ingress that sets no `auth-url` of its own and does not opt out (`enable-global-auth`).
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `auth-url` | — | the URL (NGINX variables allowed) of the auth service, asked before each request |
//! | `auth-method` | `GET` | the method of that subrequest |
//! | `auth-signin` | — | where a 401 of the auth service redirects the client (302), with the original URL in `rd` |
//! | `auth-signin-redirect-param` | `rd` | the name of that parameter |
//! | `auth-response-headers` | — | headers of the auth service's 2xx answer passed to the backend (the client's own of these names never are) |
//! | `auth-request-redirect` | — | `X-Auth-Request-Redirect` of the subrequest (else the request URI) |
//! | `auth-proxy-set-headers` | — | a ConfigMap (`name` or `namespace/name`, the Ingress's namespace) of headers set on the subrequest |
//! | `auth-cache-key` | — | NGINX variables (`$remote_user$http_authorization`): the auth service's answers are kept under this key (with the host and the auth URL), and a request with the same key is not asked again while they last |
//! | `auth-cache-duration` | `200 202 401 5m` | for how long, per status: comma-separated `[status ...] time` (`ms`, `s`, `m`, `h`, `d`), NGINX's `proxy_cache_valid` |
//! | `auth-always-set-cookie` | `false` | pass the auth service's `Set-Cookie` on every answer, errors included (else on successful ones only) |
//! | `enable-global-auth` | `true` | `false`: the ConfigMap's `global-auth-url` does not apply to this Ingress |
//! | `auth-keepalive`, `auth-keepalive-requests`, `auth-keepalive-timeout`, `auth-keepalive-share-vars` | — | accepted: connection reuse towards the auth service, no visible effect |
//!
//! | ConfigMap key | meaning |
//! |---|---|
//! | `global-auth-url`, `global-auth-method`, `global-auth-signin`, `global-auth-signin-redirect-param`, `global-auth-response-headers`, `global-auth-request-redirect`, `global-auth-always-set-cookie`, `global-auth-cache-key`, `global-auth-cache-duration` | the same, for every Ingress |
//!
//! The cache is per replica and in memory (NGINX's is on each replica's disk): a cached
//! answer is reused by every worker until its time is up; at most 10,000 answers are kept.
//!
//! The subrequest carries the client's headers (not its body) and what ingress-nginx adds:
//! `Host` (the auth URL's), `X-Original-URL`, `X-Original-Method`, `X-Sent-From:
//! nginx-ingress-controller`, `X-Real-IP`, `X-Forwarded-For`, `X-Auth-Request-Redirect`,
//! `X-Request-ID` (and, with `auth-method`, `X-Original-URI` and `X-Scheme`). A 2xx answer
//! lets the request through; 401 and 403 go back to the client (401 as a redirect to
//! `auth-signin` when set); any other answer, a timeout or an unreachable service answers
//! 500, never the protected content. An `auth-url` that does not parse, an invalid method,
//! response header name or `auth-proxy-set-headers` ConfigMap make the routes answer 503.

use std::sync::Arc;

use sluice_model::{Diagnostic, ExternalAuth, NamespacedName, ObjectRef, Template};

use super::{Annotations, Context, Effect, Family, parse_bool};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "external_auth",
    annotations: &[
        ("auth-always-set-cookie", Effect::Applied),
        ("auth-cache-duration", Effect::Applied),
        ("auth-cache-key", Effect::Applied),
        ("auth-keepalive", Effect::Accepted(KEEPALIVE)),
        ("auth-keepalive-requests", Effect::Accepted(KEEPALIVE)),
        ("auth-keepalive-share-vars", Effect::Accepted(KEEPALIVE)),
        ("auth-keepalive-timeout", Effect::Accepted(KEEPALIVE)),
        ("auth-method", Effect::Applied),
        ("auth-proxy-set-headers", Effect::Applied),
        ("auth-request-redirect", Effect::Applied),
        ("auth-response-headers", Effect::Applied),
        ("auth-signin", Effect::Applied),
        ("auth-signin-redirect-param", Effect::Applied),
        ("auth-url", Effect::Applied),
        ("enable-global-auth", Effect::Applied),
    ],
    configmap_keys: &[
        "global-auth-always-set-cookie",
        "global-auth-cache-duration",
        "global-auth-cache-key",
        "global-auth-method",
        "global-auth-request-redirect",
        "global-auth-response-headers",
        "global-auth-signin",
        "global-auth-signin-redirect-param",
        "global-auth-url",
    ],
};

const KEEPALIVE: &str = "connection reuse towards the auth service; Sluice's choice, not visible";

/// The annotation values of one auth configuration (an Ingress's or the ConfigMap's).
pub(crate) struct Spec<'a> {
    pub url: &'a str,
    pub method: Option<&'a str>,
    pub signin: Option<&'a str>,
    pub redirect_param: Option<&'a str>,
    pub response_headers: Option<&'a str>,
    pub request_redirect: Option<&'a str>,
    pub always_set_cookie: Option<&'a str>,
    pub cache_key: Option<&'a str>,
    pub cache_duration: Option<&'a str>,
}

/// Builds the configuration from `spec`; `Err` names the setting that cannot be applied.
/// `set_headers` are those of `auth-proxy-set-headers`.
pub(crate) fn build(
    spec: &Spec<'_>,
    set_headers: Vec<(String, Template)>,
) -> Result<ExternalAuth, (&'static str, String)> {
    let url = spec.url.trim();
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let host = url.split_once("://").map(|(_, r)| r.split(['/', '?']).next().unwrap_or_default());
    if !scheme_ok || host.is_none_or(|h| h.is_empty() || h.contains("..")) {
        return Err(("auth-url", format!("{url:?} is not an http or https URL with a host")));
    }
    let url = Template::parse(url).map_err(|e| ("auth-url", e))?;
    let method = match spec.method.map(str::trim) {
        None | Some("") => None,
        Some(
            m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "CONNECT" | "OPTIONS"
            | "TRACE"),
        ) => Some(m.to_string()),
        Some(m) => return Err(("auth-method", format!("{m:?} is not an HTTP method"))),
    };
    let signin = match spec.signin.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let param =
                spec.redirect_param.map(str::trim).filter(|p| !p.is_empty()).unwrap_or("rd");
            Some(Template::parse(&signin_url(s, param)).map_err(|e| ("auth-signin", e))?)
        }
    };
    let mut response_headers = Vec::new();
    for h in spec.response_headers.unwrap_or_default().split(',').map(str::trim) {
        if h.is_empty() {
            continue;
        }
        if !h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return Err(("auth-response-headers", format!("{h:?} is not a header name")));
        }
        response_headers.push(h.to_ascii_lowercase());
    }
    let always_set_cookie = match spec.always_set_cookie {
        None => false,
        Some(v) => parse_bool(v).map_err(|e| ("auth-always-set-cookie", e))?,
    };
    let cache_key = match spec.cache_key.map(str::trim).filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(Template::parse(k).map_err(|e| ("auth-cache-key", e))?),
    };
    let cache_durations = cache_durations(spec.cache_duration.unwrap_or_default())
        .map_err(|e| ("auth-cache-duration", e))?;
    Ok(ExternalAuth {
        cache_key,
        cache_durations,
        url,
        method,
        signin,
        response_headers,
        request_redirect: spec
            .request_redirect
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from),
        set_headers,
        always_set_cookie,
    })
}

/// `auth-cache-duration`: comma-separated `[status ...] time [time ...]` entries (NGINX's
/// `proxy_cache_valid`); empty: ingress-nginx's default `200 202 401 5m`.
fn cache_durations(value: &str) -> Result<Vec<(Vec<u16>, std::time::Duration)>, String> {
    let value = if value.trim().is_empty() { "200 202 401 5m" } else { value };
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut codes = Vec::new();
        let mut time = std::time::Duration::ZERO;
        let mut timed = false;
        for word in entry.split_whitespace() {
            if word.len() == 3 && word.bytes().all(|c| c.is_ascii_digit()) && !timed {
                codes.push(word.parse().expect("three digits"));
                continue;
            }
            let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &word[digits.len()..];
            let n: u64 =
                digits.parse().map_err(|_| format!("{entry:?}: {word:?} is not a time"))?;
            let ms = match unit {
                "ms" => 1,
                "s" | "" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "M" => 30 * 86_400_000,
                "y" => 365 * 86_400_000,
                _ => return Err(format!("{entry:?}: {word:?} is not a time")),
            };
            time += std::time::Duration::from_millis(n * ms);
            timed = true;
        }
        if !timed {
            return Err(format!("{entry:?} has no time"));
        }
        out.push((codes, time));
    }
    Ok(out)
}

/// ingress-nginx's `buildAuthSignURL`: the sign-in URL with the redirect parameter added,
/// unless it already has it.
fn signin_url(url: &str, param: &str) -> String {
    let rd = "$pass_access_scheme://$http_host$escaped_request_uri";
    match url.split_once('?') {
        None => format!("{url}?{param}={rd}"),
        Some((_, "")) => format!("{url}{param}={rd}"),
        Some((_, q)) => {
            let has = q
                .split('&')
                .any(|kv| kv.split('=').next() == Some(param) && kv.len() > param.len() + 1);
            if has { url.to_string() } else { format!("{url}&{param}={rd}") }
        }
    }
}

/// The Ingress's external authentication: its own `auth-url`, else the global one unless it
/// opts out; `Ok(None)` without either. `Err` (the routes fail closed) when it cannot be
/// applied.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    cx: &Context<'_>,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Arc<ExternalAuth>>, String> {
    let Some(url) = a.get("auth-url") else {
        let mut global = true;
        a.apply(object, "enable-global-auth", d, |v| parse_bool(v).map(|b| global = b));
        return Ok(if global { cx.global.global_auth.clone() } else { None });
    };
    let set_headers = match a.get("auth-proxy-set-headers").map(str::trim).filter(|v| !v.is_empty())
    {
        None => Vec::new(),
        Some(v) => proxy_set_headers(v, &object.namespace, cx)
            .map_err(|e| a.invalid(object, "auth-proxy-set-headers", &e, d))?,
    };
    let spec = Spec {
        url,
        method: a.get("auth-method"),
        signin: a.get("auth-signin"),
        redirect_param: a.get("auth-signin-redirect-param"),
        response_headers: a.get("auth-response-headers"),
        request_redirect: a.get("auth-request-redirect"),
        always_set_cookie: a.get("auth-always-set-cookie"),
        cache_key: a.get("auth-cache-key"),
        cache_duration: a.get("auth-cache-duration"),
    };
    let auth = build(&spec, set_headers).map_err(|(name, why)| a.invalid(object, name, &why, d))?;
    for name in ["auth-keepalive", "auth-keepalive-requests", "auth-keepalive-timeout"] {
        a.apply(object, name, d, |v| {
            v.trim().parse::<i64>().map(drop).map_err(|_| format!("{v:?} is not a whole number"))
        });
    }
    a.apply(object, "auth-keepalive-share-vars", d, |v| parse_bool(v).map(drop));
    Ok(Some(Arc::new(auth)))
}

/// The headers of the `auth-proxy-set-headers` ConfigMap `value`, in `namespace` only.
fn proxy_set_headers(
    value: &str,
    namespace: &str,
    cx: &Context<'_>,
) -> Result<Vec<(String, Template)>, String> {
    let name =
        NamespacedName::parse(value).unwrap_or_else(|_| NamespacedName::new(namespace, value));
    if name.namespace != namespace {
        return Err(format!(
            "{value:?} is in another namespace than the Ingress, which is not allowed"
        ));
    }
    let data = (cx.config_map)(&name.namespace, &name.name)
        .ok_or_else(|| format!("ConfigMap {name} does not exist"))?;
    let mut out = Vec::new();
    for (k, v) in data {
        if !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return Err(format!("ConfigMap {name}: {k:?} is not a header name"));
        }
        out.push((
            k.to_ascii_lowercase(),
            Template::parse(v).map_err(|e| format!("ConfigMap {name}: {k}: {e}"))?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_urls_get_the_redirect_parameter_as_ingress_nginx_builds_them() {
        let rd = "$pass_access_scheme://$http_host$escaped_request_uri";
        assert_eq!(signin_url("https://a/start", "rd"), format!("https://a/start?rd={rd}"));
        assert_eq!(signin_url("https://a/start?x=1", "rd"), format!("https://a/start?x=1&rd={rd}"));
        assert_eq!(signin_url("https://a/start?rd=/home", "rd"), "https://a/start?rd=/home");
        assert_eq!(signin_url("https://a/start", "orig"), format!("https://a/start?orig={rd}"));
    }

    #[test]
    fn cache_durations_read_as_proxy_cache_valid() {
        use std::time::Duration;
        let min = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(cache_durations("").unwrap(), vec![(vec![200, 202, 401], min(5))]);
        assert_eq!(
            cache_durations("200 202 10m, 401 1h 30m").unwrap(),
            vec![(vec![200, 202], min(10)), (vec![401], min(90))]
        );
        assert_eq!(cache_durations("30s").unwrap(), vec![(vec![], Duration::from_secs(30))]);
        assert!(cache_durations("200").is_err());
        assert!(cache_durations("200 5x").is_err());
    }
}
