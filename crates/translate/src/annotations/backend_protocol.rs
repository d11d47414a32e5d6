//! `backend-protocol`: how Sluice speaks to the Ingress's backends.
//!
//! | value | upstream |
//! |---|---|
//! | `HTTP` (default) | HTTP/1.1 |
//! | `HTTPS` | HTTP/1.1 over TLS (see `proxy-ssl-*`) |
//! | `GRPC` | HTTP/2 in clear (h2c), trailers relayed |
//! | `GRPCS` | HTTP/2 over TLS |
//!
//! `AUTO_HTTP` and `FCGI` are not implemented: reported, and HTTP is used.

use sluice_model::{Diagnostic, ObjectRef, Reason, UpstreamProtocol};

use super::{Annotations, Effect, Family};

/// The annotation of this family.
pub const FAMILY: Family = Family {
    module: "backend_protocol",
    annotations: &[("backend-protocol", Effect::Applied)],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> UpstreamProtocol {
    let Some(value) = a.get("backend-protocol") else { return UpstreamProtocol::Http1 };
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => UpstreamProtocol::Http1,
        "HTTPS" => UpstreamProtocol::Https,
        "GRPC" => UpstreamProtocol::Grpc,
        "GRPCS" => UpstreamProtocol::Grpcs,
        v @ ("AUTO_HTTP" | "FCGI") => {
            diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::UnsupportedAnnotation,
                format!(
                    "{}/backend-protocol: {v} is not implemented by Sluice; HTTP is used",
                    a.prefix
                ),
            ));
            UpstreamProtocol::Http1
        }
        _ => {
            // As ingress-nginx: HTTP is used (the routes are served, so not `a.invalid`,
            // which says they answer 503).
            diagnostics.push(Diagnostic::error(
                object.clone(),
                Reason::InvalidAnnotation,
                format!(
                    "{}/backend-protocol: {value:?} is not HTTP, HTTPS, GRPC or GRPCS; HTTP is used",
                    a.prefix
                ),
            ));
            UpstreamProtocol::Http1
        }
    }
}
