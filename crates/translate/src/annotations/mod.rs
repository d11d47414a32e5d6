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

pub mod catalog;
pub mod proxy;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{Diagnostic, ObjectRef, Policy, Reason};

use catalog::Support;

/// What an Ingress's annotations mean for its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// Limits and timeouts for every route of the Ingress.
    pub policy: Policy,
    /// When set, every route of the Ingress answers 503 for this reason.
    pub fail_closed: Option<String>,
    /// `canary` true: the Ingress only diverts traffic of a main Ingress.
    pub canary: bool,
}

/// The annotations under one prefix.
pub(crate) struct Annotations<'a> {
    map: Option<&'a BTreeMap<String, String>>,
    prefix: &'a str,
}

impl<'a> Annotations<'a> {
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
    let mut out = IngressAnnotations { policy: defaults.clone(), fail_closed: None, canary: false };
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
