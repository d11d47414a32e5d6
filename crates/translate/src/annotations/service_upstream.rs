//! `service-upstream`: proxy to the Service's cluster IP instead of its endpoints.
//!
//! As in ingress-nginx: the backend has one endpoint, `<clusterIP>:<service port>`, and
//! Kubernetes (kube-proxy) picks the pod, so session affinity, hashing and retries on other
//! endpoints have nothing to choose from; endpoint changes do not touch it. It belongs to the
//! backend, decided by the oldest Ingress naming the Service port (ConfigMap
//! `service-upstream` sets the default). A Service without a cluster IP (headless) is reported
//! and its endpoints are used, as ingress-nginx falls back to them.

use sluice_model::{Diagnostic, ObjectRef};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotation and ConfigMap key of this family.
pub const FAMILY: Family = Family {
    module: "service_upstream",
    annotations: &[("service-upstream", Effect::Applied)],
    configmap_keys: &["service-upstream"],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    default: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut on = default;
    a.apply(object, "service-upstream", diagnostics, |v| parse_bool(v).map(|b| on = b));
    on
}
