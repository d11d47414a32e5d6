//! `default-backend`: a Service of the Ingress's namespace that serves the Ingress's paths
//! while their own Service has no ready endpoint, and answers their `custom-http-errors`.
//!
//! As in ingress-nginx (`getBackendServers`): the Service's first port is used; it only takes
//! over when it has ready endpoints itself, and requests it serves in place of a Service
//! without endpoints carry `X-Code: 503` and the `X-Namespace`, `X-Ingress-Name`,
//! `X-Service-Name`, `X-Service-Port`, `X-Format` and `X-Request-ID` headers. A path whose own
//! Service (or port) does not exist is served by it too: ingress-nginx makes an upstream
//! without endpoints of it (its `default_backend` e2e test). A default-backend Service that
//! does not exist is reported, and the paths answer as without the annotation.

use sluice_model::{Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family};

/// The annotation of this family.
pub const FAMILY: Family = Family {
    module: "default_backend",
    annotations: &[("default-backend", Effect::Applied)],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    let mut service = None;
    a.apply(object, "default-backend", diagnostics, |v| {
        let v = v.trim();
        // A DNS-1035 label, as Service names are.
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if !ok {
            return Err(format!("{v:?} is not a Service name of the Ingress's namespace"));
        }
        service = Some(v.to_string());
        Ok(())
    });
    service
}
