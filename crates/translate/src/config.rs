//! Global settings from the controller's ConfigMap (`--configmap`), with ingress-nginx's key
//! names and defaults. Keys not listed here are reported as not implemented.
//!
//! | key | default | |
//! |---|---|---|
//! | `proxy-body-size`, `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`, `proxy-next-upstream-tries` | `1m`, `5`, `60`, `60`, `3` | route defaults (see the `proxy` annotation family) |
//! | `ssl-redirect`, `force-ssl-redirect` | `true`, `false` | route defaults (see the `redirect` family) |
//! | `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload` | `true`, `31536000`, `true`, `false` | `Strict-Transport-Security` on HTTPS responses |
//! | `no-tls-redirect-locations` | `/.well-known/acme-challenge` | path prefixes never redirected to HTTPS (comma-separated) |
//! | `http-redirect-code` | `308` | status of HTTPS redirects: 301, 302, 307 or 308 |
//! | `use-forwarded-headers` | `false` | trust clients' `X-Forwarded-*` (behind a TLS load balancer) |
//! | `ssl-protocols` | `TLSv1.2 TLSv1.3` | TLS versions (older ones are never enabled) |
//! | `ssl-ciphers` | rustls' defaults | TLS 1.2 cipher suites (see the `ssl_cipher` family) |

use std::collections::BTreeMap;

use sluice_model::{Diagnostic, HttpsBehaviour, Kind, ObjectRef, Policy, Reason, TlsVersions};

use crate::annotations::parse_bool;
use crate::annotations::proxy::{parse_seconds, parse_size, parse_tries};

/// The global settings translation uses, after the ConfigMap is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// Defaults for every route; annotations override them per Ingress.
    pub policy: Policy,
    /// Redirects and HSTS.
    pub https: HttpsBehaviour,
    /// TLS versions offered.
    pub versions: TlsVersions,
    /// TLS 1.2 suites of hosts that set none (`None`: rustls' defaults).
    pub tls12_suites: Option<Vec<String>>,
}

/// The HSTS keys, combined into one header value at the end.
struct Hsts {
    on: bool,
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

/// Reads the ConfigMap's `data` over the defaults. Invalid values keep the default and are
/// reported; so are keys Sluice does not implement, and snippet keys, which are refused.
pub fn parse(
    object: &ObjectRef,
    data: &BTreeMap<String, String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> GlobalConfig {
    let mut config = GlobalConfig::default();
    let mut hsts = Hsts { on: true, max_age: 31_536_000, include_subdomains: true, preload: false };
    for (key, value) in data {
        let policy = &mut config.policy;
        let https = &mut config.https;
        let result = match key.as_str() {
            "proxy-body-size" => parse_size(value).map(|v| policy.max_body_size = v),
            "proxy-connect-timeout" => parse_seconds(value).map(|v| policy.connect_timeout = v),
            "proxy-read-timeout" => parse_seconds(value).map(|v| policy.read_timeout = v),
            "proxy-send-timeout" => parse_seconds(value).map(|v| policy.send_timeout = v),
            "proxy-next-upstream-tries" => {
                parse_tries(value).map(|v| policy.next_upstream_tries = v)
            }
            "ssl-redirect" => parse_bool(value).map(|v| policy.ssl_redirect = v),
            "force-ssl-redirect" => parse_bool(value).map(|v| policy.force_ssl_redirect = v),
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
                config.tls12_suites = crate::annotations::ssl_cipher::suites(
                    value,
                    object,
                    "ssl-ciphers",
                    diagnostics,
                );
                Ok(())
            }
            k if k.ends_with("-snippet") => {
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::SnippetRefused,
                    format!("{k}: raw NGINX configuration is never applied by Sluice; remove the key and use the equivalent setting"),
                ));
                continue;
            }
            k => {
                diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Reason::UnsupportedConfigMapKey,
                    format!("{k}: not implemented by Sluice; ignored"),
                ));
                continue;
            }
        };
        if let Err(why) = result {
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidConfigMapKey,
                format!("{key}: {why}; the default applies"),
            ));
        }
    }
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

/// The reference used in diagnostics about the ConfigMap `ns/name`.
pub fn object_ref(ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::ConfigMap, ns, name)
}
