//! `ssl-passthrough`: TLS connections for the Ingress's hosts are not terminated but passed,
//! raw, to the backend of the rule's `/` path, else of the Ingress's defaultBackend (which
//! terminates TLS itself), chosen by the ClientHello's server name on the shared HTTPS port.
//! Needs `--enable-ssl-passthrough`; as in ingress-nginx, the Ingress's other annotations do
//! not apply to passed-through connections.

use sluice_model::{Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotation of this family.
pub const FAMILY: Family = Family {
    module: "ssl_passthrough",
    annotations: &[("ssl-passthrough", Effect::Applied)],
    configmap_keys: &[],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut on = false;
    a.apply(object, "ssl-passthrough", diagnostics, |v| parse_bool(v).map(|b| on = b));
    on
}
