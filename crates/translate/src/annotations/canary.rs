//! Canary releases: `canary: "true"` on a second Ingress for the same host and path sends part
//! of the main Ingress's traffic to the canary's Service.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `canary` | `false` | the Ingress is a canary: it owns no host or path of its own |
//! | `canary-by-header` | — | a request header: `always` sends to the canary, `never` keeps it off; other values fall through to the next rule |
//! | `canary-by-header-value` | — | the value of that header that sends to the canary (instead of `always`); another value falls through |
//! | `canary-by-header-pattern` | — | a regex on that header's value (ignored when `-value` is set) |
//! | `canary-by-cookie` | — | a cookie: `always` or `never`, as the header |
//! | `canary-weight` | `0` | requests in `canary-weight-total` sent to the canary, at random |
//! | `canary-weight-total` | `100` | the total weight (a total below 100 counts as 100) |
//!
//! As ingress-nginx decides it (`controller.go` `mergeAlternativeBackends`, `balancer.lua`):
//! - the canary's backend is attached to the **main backend** of every rule of another Ingress
//!   with the same host, path and pathType, so every route to that backend (whatever its host)
//!   may divert to the canary; the canary's hosts and TLS sections create nothing;
//! - precedence is header, then cookie, then weight; a request pinned by a session cookie of
//!   the main or the canary backend stays where it is (see `affinity-canary-behavior`);
//! - only the first canary attached to a backend (oldest Ingress first) diverts traffic; later
//!   ones are reported and ignored;
//! - the canary shares the main Ingress's annotations (its own are ignored but for `canary*`,
//!   `load-balance`, `upstream-hash-by*` and the affinity ones, which shape its backend);
//! - a canary whose Service has no ready endpoint, or which matches no main rule, diverts
//!   nothing: the main Ingress keeps serving. A main backend without ready endpoints answers
//!   503 even if its canary has some, as in ingress-nginx;
//! - a canary-only key without `canary: "true"` makes the whole configuration invalid
//!   ("configured but not enabled"): the Ingress is then an ordinary Ingress.
//!
//! Where Sluice differs: `canary-by-header-pattern` is a Rust `regex` (no lookaround or
//! backreferences); an invalid pattern is reported at translation (ingress-nginx logs an
//! error per request), and, as in ingress-nginx, a request carrying the header then stays on
//! the main backend, whatever its cookie or the weight.

use sluice_model::{CanaryPattern, Diagnostic, ObjectRef, Reason};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "canary",
    annotations: &[
        ("canary", Effect::Applied),
        ("canary-by-cookie", Effect::Applied),
        ("canary-by-header", Effect::Applied),
        ("canary-by-header-pattern", Effect::Applied),
        ("canary-by-header-value", Effect::Applied),
        ("canary-weight", Effect::Applied),
        ("canary-weight-total", Effect::Applied),
    ],
    configmap_keys: &[],
};

/// A canary Ingress's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryRules {
    /// `canary-by-header`.
    pub header: Option<String>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`.
    pub header_pattern: Option<CanaryPattern>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
    /// `canary-weight`.
    pub weight: u32,
    /// `canary-weight-total`, at least 100.
    pub weight_total: u32,
    /// `affinity-canary-behavior: sticky` (see the affinity family).
    pub sticky: bool,
}

/// Whether `ingress` is a canary (`canary` true under `prefix`), without reading the rest.
pub fn is_canary(ingress: &k8s_openapi::api::networking::v1::Ingress, prefix: &str) -> bool {
    let a = Annotations { map: ingress.metadata.annotations.as_ref(), prefix };
    a.get("canary").is_some_and(|v| parse_bool(v) == Ok(true))
}

/// The canary rules when the Ingress is a canary.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<CanaryRules> {
    let mut enabled = false;
    a.apply(object, "canary", diagnostics, |v| parse_bool(v).map(|b| enabled = b));
    let mut rules = CanaryRules {
        header: None,
        header_value: None,
        header_pattern: None,
        cookie: None,
        weight: 0,
        weight_total: 100,
        sticky: true,
    };
    let basic = |v: &str| -> Result<Option<String>, String> {
        let v = v.trim();
        if v.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._~/:".contains(&c)) {
            Ok((!v.is_empty()).then(|| v.to_string()))
        } else {
            Err(format!("{v:?} may only hold letters, digits and -._~/:"))
        }
    };
    a.apply(object, "canary-by-header", diagnostics, |v| basic(v).map(|h| rules.header = h));
    a.apply(object, "canary-by-header-value", diagnostics, |v| {
        basic(v).map(|h| rules.header_value = h)
    });
    a.apply(object, "canary-by-cookie", diagnostics, |v| basic(v).map(|c| rules.cookie = c));
    if let Some(v) = a.get("canary-by-header-pattern").map(str::trim).filter(|v| !v.is_empty()) {
        let regex = match regex::Regex::new(v) {
            Ok(re) => Some(re),
            Err(e) => {
                // As ingress-nginx, whose `ngx.re.match` fails per request: a request with the
                // header stays on the main backend.
                diagnostics.push(Diagnostic::error(
                    object.clone(),
                    Reason::InvalidAnnotation,
                    format!(
                        "{}/canary-by-header-pattern: {v:?} is not a valid regex ({e}); \
                         requests with the header stay on the main Ingress's backend",
                        a.prefix
                    ),
                ));
                None
            }
        };
        rules.header_pattern = Some(CanaryPattern { regex, source: v.to_string() });
    }
    a.apply(object, "canary-weight", diagnostics, |v| match v.trim().parse::<i64>() {
        Ok(n) => {
            rules.weight = n.clamp(0, u32::MAX as i64) as u32;
            Ok(())
        }
        Err(_) => Err(format!("{v:?} is not a whole number")),
    });
    a.apply(object, "canary-weight-total", diagnostics, |v| match v.trim().parse::<i64>() {
        Ok(n) => {
            // As balancer.lua: a total of 100 or less is 100.
            rules.weight_total = n.clamp(100, u32::MAX as i64) as u32;
            Ok(())
        }
        Err(_) => Err(format!("{v:?} is not a whole number")),
    });
    let configured = rules.weight > 0
        || rules.header.is_some()
        || rules.header_value.is_some()
        || rules.cookie.is_some()
        || rules.header_pattern.is_some();
    if !enabled {
        if configured {
            a.report(
                object,
                "canary",
                "canary rules are configured but canary is not \"true\"; they are ignored",
                diagnostics,
            );
        }
        return None;
    }
    Some(rules)
}
