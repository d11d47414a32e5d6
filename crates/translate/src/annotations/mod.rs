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
//! - a snippet (raw NGINX configuration): refused, never applied; the Ingress's routes answer
//!   503, because a snippet may have carried access rules that Sluice cannot see;
//! - unknown to ingress-nginx too (a typo?): reported as a warning.

pub mod auth_tls;
pub mod backend_protocol;
pub mod catalog;
pub mod proxy;
pub mod proxy_ssl;
pub mod redirect;
pub mod rewrite;
pub mod ssl_cipher;
pub mod ssl_passthrough;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{Diagnostic, NamespacedName, ObjectRef, Policy, Reason, UpstreamProtocol};

use catalog::Support;

/// What an Ingress's annotations mean for its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// Limits, timeouts and redirects for every route of the Ingress.
    pub policy: Policy,
    /// When set, every route of the Ingress answers 503 for this reason.
    pub fail_closed: Option<String>,
    /// `canary` true: the Ingress only diverts traffic of a main Ingress.
    pub canary: bool,
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
}

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
            format!("{reason}; the routes answer 503"),
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

/// Parses `ingress`'s annotations under `prefix` over the global `defaults`.
pub fn parse(
    ingress: &Ingress,
    object: &ObjectRef,
    prefix: &str,
    defaults: &Policy,
    diagnostics: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    let map = ingress.metadata.annotations.as_ref();
    let annotations = Annotations { map, prefix };
    let mut out = IngressAnnotations {
        policy: defaults.clone(),
        fail_closed: None,
        canary: false,
        auth_tls: Ok(None),
        ssl_ciphers: None,
        ssl_passthrough: false,
        backend_protocol: UpstreamProtocol::Http1,
        proxy_ssl: proxy_ssl::ProxySsl::default(),
        rewrite: rewrite::Rewrite::default(),
    };
    let names = map
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.strip_prefix('/')?, v)));
    for (name, value) in names {
        match catalog::support(name) {
            Some(Support::Implemented) => {}
            Some(Support::Pending) => {
                if name == "canary" {
                    match parse_bool(value) {
                        Ok(v) => out.canary = v,
                        Err(why) => diagnostics.push(Diagnostic::error(
                            object.clone(),
                            Reason::InvalidAnnotation,
                            format!("{prefix}/{name}: {why}; the default (false) applies"),
                        )),
                    }
                }
                diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Reason::UnsupportedAnnotation,
                    format!("{prefix}/{name} is not implemented by Sluice yet; ignored"),
                ));
            }
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
    proxy::parse(&annotations, object, &mut out.policy, diagnostics);
    redirect::parse(&annotations, object, &mut out.policy, diagnostics);
    out.rewrite = rewrite::parse(&annotations, object, diagnostics);
    out.auth_tls = auth_tls::parse(&annotations, object, diagnostics);
    out.ssl_ciphers = ssl_cipher::parse(&annotations, object, diagnostics);
    out.ssl_passthrough = ssl_passthrough::parse(&annotations, object, diagnostics);
    out.backend_protocol = backend_protocol::parse(&annotations, object, diagnostics);
    match proxy_ssl::parse(&annotations, object, diagnostics) {
        Ok(p) => out.proxy_ssl = p,
        Err(why) => {
            out.fail_closed.get_or_insert(why);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::parse_bool;

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
