//! The HTTPS redirect family: `ssl-redirect`, `force-ssl-redirect`, `preserve-trailing-slash`,
//! `use-port-in-redirects`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `ssl-redirect` | `true` (ConfigMap `ssl-redirect`) | plain-HTTP requests to a host with TLS get a redirect to HTTPS |
//! | `force-ssl-redirect` | `false` (ConfigMap `force-ssl-redirect`) | redirect even when the host has no TLS (TLS ended by a load balancer) |
//! | `preserve-trailing-slash` | `false` | keep a trailing `/` in the redirect (NGINX strips it) |
//! | `use-port-in-redirects` | `false` | name the HTTPS port (`--https-port`) in the redirect |
//!
//! The redirect is a 308 (ConfigMap `http-redirect-code`) to `https://host/uri`, without the
//! port the client used, as ingress-nginx builds it; with `use-port-in-redirects`,
//! `https://host:<https-port>/uri`. Paths under
//! ConfigMap `no-tls-redirect-locations` (default `/.well-known/acme-challenge`, so that
//! cert-manager's HTTP-01 challenges work) are never redirected. With ConfigMap
//! `use-forwarded-headers`, a request with `X-Forwarded-Proto: https` counts as HTTPS.

use sluice_model::{Diagnostic, HttpsRedirect, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations and ConfigMap keys of this family. The ConfigMap's `hsts*` keys are here
/// too: HSTS is what HTTPS responses tell browsers about the same redirect.
pub const FAMILY: Family = Family {
    module: "ssl_redirect",
    annotations: &[
        ("force-ssl-redirect", Effect::Applied),
        ("preserve-trailing-slash", Effect::Applied),
        ("ssl-redirect", Effect::Applied),
        ("use-port-in-redirects", Effect::Applied),
    ],
    configmap_keys: &[
        "force-ssl-redirect",
        "hsts",
        "hsts-include-subdomains",
        "hsts-max-age",
        "hsts-preload",
        "http-redirect-code",
        "no-tls-redirect-locations",
        "ssl-redirect",
        "use-forwarded-headers",
    ],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    https: &mut HttpsRedirect,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for (name, value) in a.values(FAMILY.annotations) {
        let result = parse_bool(value).map(|b| match name {
            "ssl-redirect" => https.ssl_redirect = b,
            "force-ssl-redirect" => https.force_ssl_redirect = b,
            "preserve-trailing-slash" => https.preserve_trailing_slash = b,
            _ => https.port_in_redirect = b,
        });
        if let Err(why) = result {
            a.report(object, name, &why, diagnostics);
        }
    }
}
