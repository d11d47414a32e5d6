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

use sluice_model::{Diagnostic, ObjectRef, Policy};

use super::{Annotations, parse_bool};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    policy: &mut Policy,
    diagnostics: &mut Vec<Diagnostic>,
) {
    a.apply(object, "ssl-redirect", diagnostics, |v| {
        parse_bool(v).map(|b| policy.ssl_redirect = b)
    });
    a.apply(object, "force-ssl-redirect", diagnostics, |v| {
        parse_bool(v).map(|b| policy.force_ssl_redirect = b)
    });
    a.apply(object, "preserve-trailing-slash", diagnostics, |v| {
        parse_bool(v).map(|b| policy.preserve_trailing_slash = b)
    });
    a.apply(object, "use-port-in-redirects", diagnostics, |v| {
        parse_bool(v).map(|b| policy.port_in_redirect = b)
    });
}
