//! Translation: a [`Snapshot`] of Kubernetes objects in, a [`RoutingTable`] with per-object
//! [`Diagnostic`]s out.
//!
//! [`translate`] is a pure function: no I/O, no clock, no randomness, no global state. Every
//! Ingress semantic lives here, modelled on ingress-nginx so that existing manifests behave
//! the same:
//!
//! - **Class selection** ([`class`]): `spec.ingressClassName` naming an IngressClass whose
//!   `spec.controller` is ours; else the legacy `kubernetes.io/ingress.class` annotation equal to
//!   `--ingress-class`; else, for class-less Ingresses, `--watch-ingress-without-class` or our
//!   IngressClass being the cluster's only default class. Other Ingresses are ignored entirely.
//! - **Merging**: Ingresses are taken oldest first (creationTimestamp; on a tie, ingress-nginx's
//!   order: `namespace/name` descending). Paths of every Ingress naming a host merge into that
//!   host; on a host+path collision the older Ingress keeps the path and the other gets a
//!   [`Reason::PathCollision`] diagnostic.
//! - **Defaults**: a host's unmatched requests go to the `spec.defaultBackend` of the Ingress that
//!   first defined the host, else to the global default; the global default is the oldest
//!   rule-less Ingress's `spec.defaultBackend`, else `--default-backend-service`, else a
//!   built-in 404.
//! - **Backends** ([`backends`]): Service ports by number or name, endpoints from
//!   EndpointSlices, ready endpoints only, dialled on the slice's port.
//! - **Annotations** ([`annotations`]): one module per family; unknown, unimplemented and
//!   refused annotations are reported, and a security annotation that cannot be enforced makes
//!   the Ingress's routes answer 503.
//! - **Admission** ([`admission`]): one Ingress judged against the configuration in force, as
//!   the validating webhook answers, without translating the others again.
//!
//! [`Snapshot`]: sluice_model::Snapshot
//! [`RoutingTable`]: sluice_model::RoutingTable
//! [`Diagnostic`]: sluice_model::Diagnostic
//! [`Reason::PathCollision`]: sluice_model::Reason::PathCollision

pub mod admission;
pub mod annotations;
pub mod backends;
mod build;
pub mod class;
pub mod config;
pub mod config_keys;
#[doc(hidden)]
pub mod fuzzing;
mod index;
pub mod outlier;
mod regex_mode;
mod tls;
mod update;

pub use admission::{Review, review};
pub use build::translate;
pub use update::{unchanged, update_endpoints, update_ingresses};
