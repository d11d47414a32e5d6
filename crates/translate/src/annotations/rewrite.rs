//! The rewrite family: `use-regex`, `rewrite-target`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `use-regex` | `false` | the paths of every Ingress of the Ingress's hosts are regexes |
//! | `rewrite-target` | — | the path sent upstream, with `$1`..`$9` from the path's regex; also makes the hosts regex hosts |
//!
//! What ingress-nginx does (v1.15, `internal/ingress/controller/template/template.go`,
//! `controller.go`), and Sluice with it:
//! - **Host-wide**: `enforceRegexModifier` turns every location of a server into a regex as soon
//!   as one location has `use-regex` or needs a rewrite (`needsRewrite`: a target that differs
//!   from the location's path), whichever Ingress defines the other paths. `buildLocation` then
//!   renders each path as `location ~* "^<path>"`: case-insensitive, anchored at the start only.
//!   A `Prefix` `/foo` therefore also matches `/foobar` on such a host. Rules without a host
//!   (the catch-all) are a host like any other here.
//! - **Order**: locations are sorted by path length, longest first (ties: path descending,
//!   `controller.go`), and NGINX takes the FIRST regex location that matches, not the longest.
//! - **Rewrite**: `rewrite "(?i)<path>" <target> break;` (see [`sluice_model::Rewrite`]):
//!   `$1`..`$9` are the path's capture groups; the client's query string is kept unless the
//!   target has its own `?` (then appended after `&`) or ends with `?`. A target equal to the
//!   path rewrites nothing and does not switch the host to regex mode.
//!
//! Where Sluice differs, on purpose:
//! - `Exact` paths stay exact (case-sensitive, and tried before the regexes). ingress-nginx
//!   renders them as regex prefixes too (`~* "^/admin"` matches `/admin/x`), an open bug
//!   (kubernetes/ingress-nginx#10618, #8208) that no one relies on deliberately.
//! - A `Prefix` path from an Ingress without either annotation is one regex `^<path>`;
//!   ingress-nginx splits it into `^<path>/` and `^<path>` (`updateServerLocations`), which
//!   match the same requests but can sit at two places in the order.
//! - Patterns are Rust `regex` syntax, compiled without Unicode (close to NGINX's PCRE: byte-wise
//!   `.`, ASCII classes and case folding); lookaround and backreferences are not supported. An
//!   invalid pattern is an error on its Ingress and only that path is dropped (NGINX would
//!   refuse the whole configuration).
//! - ingress-nginx v1.12+ rejects at admission an Ingress whose `Exact` or `Prefix` paths hold
//!   characters other than letters, digits, `.`, `_`, `-`, `/` (`strict-validate-path-type`);
//!   Sluice serves such a `Prefix` path on a regex host as a regex and warns.
//! - Its annotation validator limits targets to letters, digits and `-._~/:$`; Sluice also
//!   accepts a query (`?`, `&`, `=`, …), refuses NGINX variables other than `$1`..`$9` and
//!   targets with a scheme (NGINX turns those into redirects), reported as invalid values: the
//!   annotation is then ignored entirely. Rewrites apply to an Ingress's paths, not to its
//!   `spec.defaultBackend`.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{Diagnostic, ObjectRef, RewriteTarget};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "rewrite",
    annotations: &[("rewrite-target", Effect::Applied), ("use-regex", Effect::Applied)],
    configmap_keys: &[],
};

/// What an Ingress's rewrite annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `use-regex`: the Ingress's hosts are in regex mode.
    pub use_regex: bool,
    /// `rewrite-target`, when valid.
    pub target: Option<RewriteTarget>,
}

impl Rewrite {
    /// Whether a path of this Ingress needs rewriting (ingress-nginx's `needsRewrite`).
    pub fn rewrites(&self, path: &str) -> bool {
        self.target.as_ref().is_some_and(|t| t.as_str() != path)
    }
}

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Rewrite {
    let mut out = Rewrite::default();
    a.apply(object, "use-regex", diagnostics, |v| parse_bool(v).map(|b| out.use_regex = b));
    a.apply(object, "rewrite-target", diagnostics, |v| {
        target(v).map(|t| out.target = t).map_err(|why| format!("{v:?}: {why}"))
    });
    out
}

/// An empty target is no target, as in ingress-nginx.
fn target(value: &str) -> Result<Option<RewriteTarget>, String> {
    if value.is_empty() { Ok(None) } else { RewriteTarget::parse(value).map(Some) }
}

/// The hosts (lower case, `""` for rules without a host) in regex mode, from the annotations
/// of `ingresses` (those this controller serves). Read before any path is added, because one
/// Ingress's annotations change how every other Ingress's paths on its hosts match and
/// collide. Invalid values count as absent, as [`parse`] then ignores them (and reports them).
pub(crate) fn regex_hosts(ingresses: &[&Ingress], prefix: &str) -> HashSet<String> {
    let mut hosts = HashSet::new();
    for ingress in ingresses {
        let map = ingress.metadata.annotations.as_ref();
        let a = Annotations { map, prefix };
        let flag = |name| a.get(name).map(parse_bool) == Some(Ok(true));
        // A canary Ingress is ignored entirely (see `build.rs`).
        if flag("canary") {
            continue;
        }
        let use_regex = flag("use-regex");
        let target = a.get("rewrite-target").and_then(|v| target(v).ok().flatten());
        if !use_regex && target.is_none() {
            continue;
        }
        let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or_default();
        for rule in rules {
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice()).unwrap_or_default();
            let rewrites = target.as_ref().is_some_and(|t| {
                paths.iter().any(|p| p.path.as_deref().unwrap_or_default() != t.as_str())
            });
            if use_regex || rewrites {
                hosts.insert(rule.host.as_deref().unwrap_or_default().to_ascii_lowercase());
            }
        }
    }
    hosts
}
