//! Edits of the response head: headers set, hidden, and `Location` and `Set-Cookie` rewritten.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `custom-headers` | — | `namespace/name` (or `name`) of a ConfigMap in the Ingress's namespace: each entry a response header set on every response of the Ingress's paths, replacing the upstream's; each name must be listed in ConfigMap `global-allowed-response-headers` |
//! | `proxy-redirect-from`, `proxy-redirect-to` | `off` | a prefix of the upstream's `Location` and `Refresh` headers replaced (`http://app:8080/` to `https://example.com/`) |
//! | `proxy-cookie-domain` | `off` | `<from> <to>`: the `Domain` of the upstream's cookies rewritten |
//! | `proxy-cookie-path` | `off` | `<from> <to>`: the `Path` prefix of the upstream's cookies rewritten |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `add-headers` | — | `namespace/name` of a ConfigMap of headers set on every response (values may hold NGINX variables) |
//! | `hide-headers` | — | comma-separated upstream response headers never passed to clients |
//! | `global-allowed-response-headers` | — | comma-separated header names `custom-headers` may set |
//! | `proxy-redirect-from`, `proxy-redirect-to`, `proxy-cookie-domain`, `proxy-cookie-path` | `off` | defaults of the annotations |
//!
//! As in ingress-nginx:
//! - `custom-headers` values are literal (a `$` stays a `$`); a missing ConfigMap, an invalid
//!   entry or a name not allowed makes the Ingress's paths answer 503 (its location is denied);
//! - `add-headers` and `custom-headers` are NGINX `more_set_headers` at two levels: an Ingress
//!   with `custom-headers` gets its own headers instead of `add-headers`' (the location's list
//!   replaces the inherited one). Both apply to every response of the path, Sluice's own error
//!   pages included;
//! - `proxy-redirect-from: default` is NGINX's default rewrite of its internal upstream name,
//!   which no backend sends: the same as `off`.
//!
//! Where Sluice differs: allowed names compare case-insensitively (as header names do); a
//! `custom-headers` ConfigMap in another namespace than the Ingress's is refused (ingress-nginx
//! documents that, without checking it); `proxy-redirect-from` is a literal prefix (NGINX's
//! `~` regex form is refused and reported).

use sluice_model::{Diagnostic, NamespacedName, ObjectRef, Reason, ResponseRules};

use super::upstream_headers::headers;
use super::{Annotations, Context, Effect, Family};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "response_headers",
    annotations: &[
        ("custom-headers", Effect::Applied),
        ("proxy-cookie-domain", Effect::Applied),
        ("proxy-cookie-path", Effect::Applied),
        ("proxy-redirect-from", Effect::Applied),
        ("proxy-redirect-to", Effect::Applied),
    ],
    configmap_keys: &[
        "add-headers",
        "global-allowed-response-headers",
        "hide-headers",
        "proxy-cookie-domain",
        "proxy-cookie-path",
        "proxy-redirect-from",
        "proxy-redirect-to",
    ],
};

/// Reads the Ingress's annotations over the ConfigMap's rules. `Err` (the routes answer 503)
/// when `custom-headers` cannot be applied.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    cx: &Context<'_>,
    rules: &mut ResponseRules,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<(), String> {
    for name in ["proxy-cookie-domain", "proxy-cookie-path"] {
        if let Some(value) = a.get(name)
            && let Err(why) = set(name, value, rules)
        {
            a.report(object, name, &why, diagnostics);
        }
    }
    let (from, to) = (a.get("proxy-redirect-from"), a.get("proxy-redirect-to"));
    if from.is_some() || to.is_some() {
        let (global_from, global_to) = &cx.global.proxy_redirect;
        let (from, to) = (from.unwrap_or(global_from), to.unwrap_or(global_to));
        if let Err(why) = set_location(from, to, rules) {
            a.report(object, "proxy-redirect-from", &why, diagnostics);
        }
    }
    let Some(value) = a.get("custom-headers") else { return Ok(()) };
    let custom = custom_headers(value, &object.namespace, cx, object)
        .map_err(|why| a.invalid(object, "custom-headers", &why, diagnostics))?;
    rules.set = custom;
    Ok(())
}

/// The headers of a `custom-headers` ConfigMap, each allowed by the ConfigMap's
/// `global-allowed-response-headers`.
fn custom_headers(
    value: &str,
    namespace: &str,
    cx: &Context<'_>,
    object: &ObjectRef,
) -> Result<Vec<(String, sluice_model::Template)>, String> {
    let value = value.trim();
    let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
    if name.is_empty() || name.contains('/') {
        return Err(format!("{value:?} is not a ConfigMap name or namespace/name"));
    }
    if ns != namespace {
        return Err(format!("ConfigMap {ns}/{name} is in another namespace than the Ingress"));
    }
    let data =
        (cx.config_map)(ns, name).ok_or_else(|| format!("ConfigMap {ns}/{name} does not exist"))?;
    let mut problems = Vec::new();
    let set = headers(data, object, "custom-headers", &mut problems, false);
    if let Some(first) = problems.first() {
        return Err(first.message.trim_start_matches("custom-headers: ").to_string());
    }
    let allowed = &cx.global.allowed_response_headers;
    for (header, _) in &set {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(header)) {
            return Err(format!(
                "header {header} is not listed in the ConfigMap's global-allowed-response-headers"
            ));
        }
    }
    Ok(set)
}

/// Sets one key shared by the annotations and the ConfigMap; `None` for another key.
pub(crate) fn set(key: &str, value: &str, rules: &mut ResponseRules) -> Result<(), String> {
    match key {
        "proxy-cookie-domain" => pair(value).map(|p| rules.cookie_domain = p),
        "proxy-cookie-path" => pair(value).map(|p| rules.cookie_path = p),
        _ => Ok(()),
    }
}

/// `off`, or `<from> <to>`.
fn pair(value: &str) -> Result<Option<(String, String)>, String> {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["off"] => Ok(None),
        [from, to] if !from.starts_with('~') => Ok(Some((from.to_string(), to.to_string()))),
        [from, _] => Err(format!("{from:?}: regular expressions are not supported")),
        _ => Err(format!("{value:?} is not \"off\" nor \"<from> <to>\"")),
    }
}

/// `proxy-redirect-from` and `-to` together.
pub(crate) fn set_location(from: &str, to: &str, rules: &mut ResponseRules) -> Result<(), String> {
    let from = from.trim();
    let to = to.trim();
    rules.location = match (from, to) {
        ("off" | "default", _) | (_, "off") => None,
        (f, _) if f.starts_with('~') => {
            return Err(format!("{f:?}: regular expressions are not supported"));
        }
        (f, t) if !f.is_empty() && f.bytes().chain(t.bytes()).all(|c| c.is_ascii_graphic()) => {
            Some((f.to_string(), t.to_string()))
        }
        _ => return Err(format!("{from:?} to {to:?} is not a URL prefix and its replacement")),
    };
    Ok(())
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    cfg: &mut crate::config::GlobalConfig,
    source: &crate::config::Source<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Result<(), String>> {
    let rules = &mut std::sync::Arc::make_mut(&mut cfg.policy).response;
    Some(match key {
        "add-headers" => NamespacedName::parse(value.trim()).map(|name| {
            match (source.config_map)(&name.namespace, &name.name) {
                Some(data) => rules.set = headers(data, source.object, key, diagnostics, true),
                None => missing(source.object, key, &name, diagnostics),
            }
        }),
        "hide-headers" => {
            rules.hide = list(value).map(|h| h.to_ascii_lowercase()).collect();
            Ok(())
        }
        "global-allowed-response-headers" => {
            cfg.allowed_response_headers = list(value).map(str::to_string).collect();
            Ok(())
        }
        // Checked once both are read, in `config::parse`.
        "proxy-redirect-from" => {
            cfg.proxy_redirect.0 = value.trim().to_string();
            Ok(())
        }
        "proxy-redirect-to" => {
            cfg.proxy_redirect.1 = value.trim().to_string();
            Ok(())
        }
        "proxy-cookie-domain" | "proxy-cookie-path" => set(key, value, rules),
        _ => return None,
    })
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn missing(object: &ObjectRef, key: &str, name: &NamespacedName, d: &mut Vec<Diagnostic>) {
    d.push(Diagnostic::error(
        object.clone(),
        Reason::InvalidConfigMapKey,
        format!("{key}: ConfigMap {name} does not exist; no header is set"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_prefixes() {
        assert_eq!(pair("off"), Ok(None));
        assert_eq!(pair("a.local example.com"), Ok(Some(("a.local".into(), "example.com".into()))));
        assert!(pair("~x y").is_err());
        assert!(pair("one").is_err());
        let mut r = ResponseRules::default();
        set_location("http://app:8080/", "https://example.com/", &mut r).unwrap();
        assert_eq!(r.location, Some(("http://app:8080/".into(), "https://example.com/".into())));
        set_location("default", "x", &mut r).unwrap();
        assert_eq!(r.location, None);
    }
}
