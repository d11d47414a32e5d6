//! From an Ingress's service backend to a Sluice backend: the Service port, and the ready
//! endpoints of that port from the Service's EndpointSlices.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::networking::v1::IngressServiceBackend;
use sluice_model::{Endpoint, LeanServicePort, LeanSlice, SliceEndpoint};

use crate::index::Index;

/// A resolved backend, before it gets an id in the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The Service port as the Ingress named it: a number or a name.
    pub port: String,
    /// Ready endpoints, sorted and without duplicates.
    pub endpoints: Vec<Endpoint>,
}

/// Why a service backend cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// No such Service in the Ingress's namespace.
    MissingService,
    /// The Service has no port with that number or name.
    MissingPort(String),
    /// The Ingress names no port.
    NoPort,
    /// An ExternalName Service (not supported yet).
    ExternalName,
}

/// The port as written in the Ingress, for names and messages.
pub fn port_label(backend: &IngressServiceBackend) -> String {
    match &backend.port {
        Some(p) => match (&p.name, p.number) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(n)) => n.to_string(),
            _ => String::new(),
        },
        None => String::new(),
    }
}

/// Resolves `backend` in namespace `ns`.
///
/// The Service port is found by number (`spec.ports[].port`) or by name; its EndpointSlices
/// are those labelled `kubernetes.io/service-name: <service>`; in each, the slice port whose
/// name equals the Service port's name (both empty for a single unnamed port) gives the port
/// number dialled. Endpoints whose `ready` condition is false are left out (unset means
/// ready, as the API documents); FQDN addresses are not dialled.
pub(crate) fn resolve(
    index: &Index<'_>,
    ns: &str,
    backend: &IngressServiceBackend,
) -> Result<Resolved, Unresolved> {
    let service = index.service(ns, &backend.name).ok_or(Unresolved::MissingService)?;
    if service.service_type.as_deref() == Some("ExternalName") {
        return Err(Unresolved::ExternalName);
    }
    let port = port_label(backend);
    if port.is_empty() {
        return Err(Unresolved::NoPort);
    }
    let wanted = backend.port.as_ref();
    let service_port = service
        .ports
        .iter()
        .find(|p| match wanted.and_then(|w| w.name.as_deref()).filter(|n| !n.is_empty()) {
            Some(name) => p.name.as_deref() == Some(name),
            None => Some(p.port) == wanted.and_then(|w| w.number),
        })
        .ok_or_else(|| Unresolved::MissingPort(port.clone()))?;
    let endpoints = ready_endpoints(index, ns, &backend.name, service_port);
    Ok(Resolved { port, endpoints })
}

/// The ready endpoints of one Service port, from its EndpointSlices.
pub(crate) fn ready_endpoints(
    index: &Index<'_>,
    ns: &str,
    service: &str,
    service_port: &LeanServicePort,
) -> Vec<Endpoint> {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    // Each slice's port number for this Service port, if it has one.
    let port_of = |slice: &LeanSlice| {
        if slice.address_type == "FQDN" {
            return None;
        }
        let number = slice.ports.iter().find_map(|p| {
            (p.name.as_deref().unwrap_or_default() == port_name).then_some(p.port).flatten()
        });
        u16::try_from(number?).ok()
    };
    let ready = |ep: &&SliceEndpoint| ep.ready.unwrap_or(true);
    let slices = index.slices(ns, service);
    // Sized exactly: tables keep these lists, one per backend.
    let count: usize = slices
        .iter()
        .filter(|s| port_of(s).is_some())
        .flat_map(|s| s.endpoints.iter().filter(ready))
        .map(|ep| ep.addresses.len())
        .sum();
    let mut endpoints = Vec::with_capacity(count);
    for slice in slices {
        let Some(number) = port_of(slice) else { continue };
        for ep in slice.endpoints.iter().filter(ready) {
            for address in &ep.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    endpoints.push(Endpoint { addr: SocketAddr::new(ip, number) });
                }
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    endpoints
}
