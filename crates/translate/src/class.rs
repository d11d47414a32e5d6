//! Which Ingresses are ours, decided as ingress-nginx v1 decides it.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_model::Settings;

/// The legacy annotation naming a class (a controller's `--ingress-class` value).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation marking an IngressClass as the cluster's default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// True when this controller serves `ingress`.
///
/// In order, the first that applies decides:
/// 1. `spec.ingressClassName` set: ours only if it names an IngressClass whose `spec.controller`
///    is `--controller-class` (a missing class means not ours; the legacy annotation is then
///    not consulted, as in ingress-nginx);
/// 2. the `kubernetes.io/ingress.class` annotation: ours if it equals `--ingress-class`;
/// 3. no class at all: ours with `--watch-ingress-without-class`, or when exactly one
///    IngressClass is marked `is-default-class: "true"` and it is ours. (In a cluster the API
///    server's admission fills `ingressClassName` from the default class for new Ingresses; this
///    rule gives Ingresses that predate the default, and manifests read from disk, the same
///    outcome. With several default classes, admission rejects class-less Ingresses, so none
///    is adopted.)
pub fn is_ours(ingress: &Ingress, classes: &[&IngressClass], settings: &Settings) -> bool {
    let spec_class = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref());
    if let Some(name) = spec_class {
        return classes
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name) && is_our_class(c, settings));
    }
    let annotation =
        ingress.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
    if let Some(value) = annotation {
        return *value == settings.ingress_class;
    }
    if settings.watch_ingress_without_class {
        return true;
    }
    let mut defaults = classes.iter().filter(|c| is_default_class(c));
    matches!((defaults.next(), defaults.next()), (Some(only), None) if is_our_class(only, settings))
}

fn is_our_class(class: &IngressClass, settings: &Settings) -> bool {
    class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(&settings.controller_class)
}

fn is_default_class(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}
