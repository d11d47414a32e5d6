//! What the upstream request carries besides the forwarding headers.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `upstream-vhost` | the client's `Host` | the `Host` header sent upstream (NGINX variables allowed: `$host`, `$http_x_site`) |
//! | `x-forwarded-prefix` | — | an `X-Forwarded-Prefix` header with this value (variables allowed); empty sets none |
//! | `connection-proxy-header` | — | the `Connection` header sent upstream (`keep-alive`, `close`); WebSocket upgrades keep `upgrade` |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `proxy-set-headers` | — | `namespace/name` of a ConfigMap of headers set on every upstream request (values may hold NGINX variables); watched like every ConfigMap |
//! | `enable-underscores-in-headers` | `false` | pass request headers whose names hold `_`; NGINX drops them by default |
//! | `ignore-invalid-headers` | `true` | `false` passes such headers too |
//!
//! As in ingress-nginx, `proxy-set-headers` replaces a header Sluice sets itself when it names
//! the same one, a missing ConfigMap is reported and nothing is set, and an entry whose name
//! is not a header name, or whose value has a variable Sluice does not know, is reported and
//! left out. As NGINX's `proxy_set_header`, a value that comes out empty for a request (`""`,
//! or a variable with no value) sends no header, and the client's header of that name is
//! still not passed.

use std::collections::BTreeMap;

use sluice_model::{Diagnostic, NamespacedName, ObjectRef, Reason, Template, UpstreamRequest};

use super::{Annotations, Effect, Family, parse_bool};
use crate::config::{GlobalConfig, Source};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "upstream_headers",
    annotations: &[
        ("connection-proxy-header", Effect::Applied),
        ("upstream-vhost", Effect::Applied),
        ("x-forwarded-prefix", Effect::Applied),
    ],
    configmap_keys: &[
        "enable-underscores-in-headers",
        "ignore-invalid-headers",
        "proxy-set-headers",
    ],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    upstream: &mut UpstreamRequest,
    diagnostics: &mut Vec<Diagnostic>,
) {
    a.apply(object, "upstream-vhost", diagnostics, |v| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(format!("{v:?} is not a host name"));
        }
        upstream.vhost = Some(Template::parse(v)?);
        Ok(())
    });
    a.apply(object, "x-forwarded-prefix", diagnostics, |v| {
        if !header_value(v) {
            return Err(format!("{v:?} is not a header value"));
        }
        // An empty value sets nothing: ingress-nginx's template writes no `proxy_set_header`
        // for it (its e2e test: no header reaches the backend), so a client's own
        // X-Forwarded-Prefix passes as any other header.
        if v.trim().is_empty() {
            return Ok(());
        }
        upstream.forwarded_prefix = Some(Template::parse(v.trim())?);
        Ok(())
    });
    a.apply(object, "connection-proxy-header", diagnostics, |v| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_, ".contains(&c)) {
            return Err(format!("{v:?} is not a Connection header value"));
        }
        upstream.connection = Some(v.to_string());
        Ok(())
    });
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    cfg: &mut GlobalConfig,
    source: &Source<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Result<(), String>> {
    Some(match key {
        "enable-underscores-in-headers" => parse_bool(value).map(|b| cfg.underscores.0 = b),
        "ignore-invalid-headers" => parse_bool(value).map(|b| cfg.underscores.1 = b),
        "proxy-set-headers" => NamespacedName::parse(value.trim()).map(|name| {
            match (source.config_map)(&name.namespace, &name.name) {
                Some(data) => {
                    std::sync::Arc::make_mut(&mut cfg.policy).upstream.set_headers =
                        headers(data, source.object, key, diagnostics, true);
                }
                None => diagnostics.push(Diagnostic::error(
                    source.object.clone(),
                    Reason::InvalidConfigMapKey,
                    format!("{key}: ConfigMap {name} does not exist; no header is set"),
                )),
            }
        }),
        _ => return None,
    })
}

/// True for a header value: visible ASCII and spaces.
pub(crate) fn header_value(v: &str) -> bool {
    v.bytes().all(|c| c == b' ' || c == b'\t' || c.is_ascii_graphic())
}

/// True for a header name (an RFC 9110 token).
pub(crate) fn header_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// The entries of a ConfigMap of headers, names lower case: those that are not a header name
/// and value (with variables, when `variables`) are reported and left out.
pub(crate) fn headers(
    data: &BTreeMap<String, String>,
    object: &ObjectRef,
    key: &str,
    diagnostics: &mut Vec<Diagnostic>,
    variables: bool,
) -> Vec<(String, Template)> {
    let mut out = Vec::with_capacity(data.len());
    for (name, value) in data {
        let parsed = if !header_name(name) {
            Err(format!("{name:?} is not a header name"))
        } else if !header_value(value) {
            Err(format!("the value of {name} has characters a header cannot carry"))
        } else if variables {
            Template::parse(value.trim())
        } else {
            Ok(Template::literal(value.trim()))
        };
        match parsed {
            Ok(t) => out.push((name.to_ascii_lowercase(), t)),
            Err(why) => diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidConfigMapKey,
                format!("{key}: {why}; this header is left out"),
            )),
        }
    }
    out
}
