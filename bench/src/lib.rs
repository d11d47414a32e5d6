//! Synthetic clusters for Sluice's benchmarks.
//!
//! [`generate`] builds a [`Snapshot`] of k8s-openapi objects, shaped like what a source hands to
//! translation, at any [`Scale`]. The shape, for `N` Ingresses and `M` endpoints:
//!
//! - one IngressClass `sluice` with controller `sluice.dev/ingress-controller`, marked as the
//!   cluster's default; every Ingress also names it in `spec.ingressClassName`, so all are ours;
//! - Ingress `i` (`ing-{i}`, in namespace `ns-{i % 100}`, created one second after Ingress
//!   `i - 1`) has one rule for its own host [`host(i)`](host) with [`PATHS_PER_INGRESS`] paths:
//!   `/` (Prefix), `/api` (Prefix), `/api/v1/users` (Prefix) and `/healthz` (Exact). Every
//!   [`WILDCARD_EVERY`]-th Ingress also has a second rule for the wildcard host
//!   `*.{host(i)}` with the same paths, so 10,000 Ingresses give 10,000 exact hosts and 1,000
//!   wildcard hosts. Every fourth Ingress carries two ingress-nginx annotations that Sluice
//!   implements (`proxy-body-size`, `proxy-read-timeout`);
//! - every [`REGEX_EVERY`]-th Ingress, starting at [`REGEX_OFFSET`] (5, 15, 25, ...: never one
//!   with a wildcard rule), is a regex Ingress instead: `use-regex: "true"` and the paths
//!   [`REGEX_PATHS`], `/api/v[0-9]+/users/([0-9]+)` and `/static/.*\.(css|js)`
//!   (ImplementationSpecific), `/api` (Prefix, so a regex prefix on that host) and `/healthz`
//!   (Exact, which stays exact). Its host (see [`is_regex`]) is a regex host: 1,000 of the
//!   10,000 hosts at the large scale, each with three regexes, tried in the order listed;
//! - `2N` Services, two of its own per Ingress: Ingress `i` uses `svc-{2i}` and `svc-{2i+1}`,
//!   in its namespace. Each Service has one port `http` (80 -> 8080), referenced by number from
//!   `/` and `/healthz` and by name from the `/api` paths;
//! - `M` endpoints in total, spread evenly over the Services (the first `M % 2N` get one more),
//!   in EndpointSlices of at most 100 endpoints (the Kubernetes default), labelled
//!   `kubernetes.io/service-name`, port `http` 8080, with unique IPv4 addresses in 10.0.0.0/8.
//!   One endpoint in 25 is not ready (`conditions.ready: false`), so translation's readiness
//!   filter has work to do.
//!
//! The snapshot translates without a single diagnostic (a test checks it), so benchmarks
//! measure the common path, not error reporting.
//!
//! [`Scale::SMALL`], [`Scale::MEDIUM`] and [`Scale::LARGE`] are the sizes the benchmarks use:
//! 100, 1,000 and 10,000 Ingresses with twice as many Services and five times as many endpoints.
//!
//! [`manifests`] writes a snapshot as a directory of JSON manifests that `sluice serve
//! --manifests` and `sluice check` load (the `gen-manifests` binary), and [`with_local_backend`]
//! points one Ingress's Services at a real backend, for the end-to-end probes (the
//! `propagation` binary). [`tls`] gives every Ingress a certificate of its own, or the cluster
//! one default certificate, for the TLS probes.

pub mod lookup_mix;
pub mod manifests;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use sluice_model::{
    Chunk, LeanService, LeanSlice, Named, Objects, Settings, SliceEndpoint, SlicePort, Snapshot,
};

/// The IngressClass every generated Ingress names.
pub const CLASS_NAME: &str = "sluice";
/// The controller of that class: [`Settings::default`]'s `controller_class`.
pub const CONTROLLER: &str = "sluice.dev/ingress-controller";
/// Namespaces the objects are spread over.
pub const NAMESPACES: usize = 100;
/// Every this many Ingresses, one also has a wildcard rule (Ingress 0, 10, 20, ...).
pub const WILDCARD_EVERY: usize = 10;
/// Paths per rule (see [`PATHS`]).
pub const PATHS_PER_INGRESS: usize = PATHS.len();
/// The paths of every rule, with their pathType.
pub const PATHS: [(&str, &str); 4] =
    [("/", "Prefix"), ("/api", "Prefix"), ("/api/v1/users", "Prefix"), ("/healthz", "Exact")];
/// Every this many Ingresses, one is a regex Ingress (Ingress 5, 15, 25, ...).
pub const REGEX_EVERY: usize = 10;
/// The first regex Ingress; chosen so that no regex Ingress has a wildcard rule.
pub const REGEX_OFFSET: usize = 5;
/// The paths of a regex Ingress's rule, with their pathType, in the order they are tried.
pub const REGEX_PATHS: [(&str, &str); 4] = [
    ("/api/v[0-9]+/users/([0-9]+)", "ImplementationSpecific"),
    (r"/static/.*\.(css|js)", "ImplementationSpecific"),
    ("/api", "Prefix"),
    ("/healthz", "Exact"),
];
/// The longest Prefix path of every rule: a request under it probes the most prefixes.
pub const DEEPEST_PREFIX: &str = "/api/v1/users";
/// Endpoints per EndpointSlice at most, as the EndpointSlice controller does by default.
pub const ENDPOINTS_PER_SLICE: usize = 100;
/// One endpoint in this many is not ready.
pub const NOT_READY_EVERY: usize = 25;

/// How big a synthetic cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// Ingresses, each with its own host.
    pub ingresses: usize,
    /// Endpoints in total, over all Services.
    pub endpoints: usize,
}

impl Scale {
    /// 100 Ingresses, 200 Services, 500 endpoints.
    pub const SMALL: Scale = Scale::of(100);
    /// 1,000 Ingresses, 2,000 Services, 5,000 endpoints.
    pub const MEDIUM: Scale = Scale::of(1_000);
    /// 10,000 Ingresses, 20,000 Services, 50,000 endpoints.
    pub const LARGE: Scale = Scale::of(10_000);

    /// `ingresses` Ingresses, twice as many Services, five times as many endpoints.
    pub const fn of(ingresses: usize) -> Scale {
        Scale { ingresses, endpoints: 5 * ingresses }
    }

    /// The number of Services: two per Ingress.
    pub const fn services(&self) -> usize {
        2 * self.ingresses
    }
}

/// The exact host of Ingress `i`: `app-{i}.ns-{i % 100}.example.com`.
pub fn host(i: usize) -> String {
    format!("app-{i}.{}.example.com", namespace(i))
}

/// The wildcard host of Ingress `i` (only when `i % WILDCARD_EVERY == 0`): `*.` and [`host`].
pub fn wildcard_host(i: usize) -> String {
    format!("*.{}", host(i))
}

/// Whether Ingress `i` is a regex Ingress (its host a regex host).
pub fn is_regex(i: usize) -> bool {
    i % REGEX_EVERY == REGEX_OFFSET
}

/// The namespace of Ingress `i` (and of Services `2i` and `2i + 1`).
pub fn namespace(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

/// The settings the snapshot is made for: Sluice's defaults.
pub fn settings() -> Settings {
    Settings::default()
}

/// Builds the snapshot for `scale`; the same `scale` always gives the same objects. Each
/// kind comes in a chunk per namespace, as the manifests source hands over the files
/// [`manifests::write`] makes (and as the Kubernetes source buckets its stores).
pub fn generate(scale: Scale) -> Snapshot {
    let services = scale.services();
    fn per_namespace<T>() -> Vec<Vec<Arc<T>>> {
        (0..NAMESPACES).map(|_| Vec::new()).collect()
    }
    fn chunks<T: Named>(lists: Vec<Vec<Arc<T>>>) -> Objects<T> {
        Objects::from_chunks(lists.into_iter().map(Chunk::new))
    }
    let (mut ingresses, mut svcs, mut slices) = (per_namespace(), per_namespace(), per_namespace());
    for i in 0..scale.ingresses {
        ingresses[i % NAMESPACES].push(Arc::new(ingress(i)));
    }
    for j in 0..services {
        svcs[(j / 2) % NAMESPACES].push(Arc::new(LeanService::from(service(j))));
    }
    let base = scale.endpoints.checked_div(services).unwrap_or(0);
    let extra = scale.endpoints.checked_rem(services).unwrap_or(0);
    let mut next_endpoint = 0;
    for j in 0..services {
        let count = base + usize::from(j < extra);
        let mut chunk = 0;
        while chunk * ENDPOINTS_PER_SLICE < count {
            let size = ENDPOINTS_PER_SLICE.min(count - chunk * ENDPOINTS_PER_SLICE);
            let slice = endpoint_slice(j, chunk, next_endpoint..next_endpoint + size);
            slices[(j / 2) % NAMESPACES].push(Arc::new(LeanSlice::from(slice)));
            next_endpoint += size;
            chunk += 1;
        }
    }
    Snapshot {
        ingress_classes: vec![Arc::new(ingress_class())].into(),
        ingresses: chunks(ingresses),
        services: chunks(svcs),
        endpoint_slices: chunks(slices),
        ..Snapshot::default()
    }
}

/// One application as `kubectl apply` of its manifest writes it: Ingress `ing-{i}` for its
/// own host, its two Services and their EndpointSlices, as [`generate`] makes them for a
/// cluster of more than `i` Ingresses. Added to a cluster of `i` Ingresses, it is a new
/// application on a new host (its endpoint addresses may repeat others').
#[derive(Clone, Debug)]
pub struct Application {
    /// The Ingress.
    pub ingress: Arc<Ingress>,
    /// Its two Services.
    pub services: Vec<Arc<LeanService>>,
    /// Their EndpointSlices.
    pub slices: Vec<Arc<LeanSlice>>,
}

impl Application {
    /// Application `i`.
    pub fn of(i: usize) -> Self {
        let services: Vec<Arc<LeanService>> =
            [2 * i, 2 * i + 1].map(|j| Arc::new(LeanService::from(service(j)))).into();
        // Two endpoints each, as the smallest Services of the generated clusters have.
        let slices = [2 * i, 2 * i + 1]
            .map(|j| Arc::new(LeanSlice::from(endpoint_slice(j, 0, 2 * j..2 * j + 2))))
            .into();
        Self { ingress: Arc::new(ingress(i)), services, slices }
    }

    /// `snapshot` with the parts of the application `parts` names: `"ingress"`, `"services"`,
    /// `"slices"`, each kind's in a chunk of its own, as a source hands over a new file (the
    /// other chunks shared).
    pub fn deploy(&self, snapshot: &Snapshot, parts: &[&str]) -> Snapshot {
        fn add<T: Named>(list: &mut Objects<T>, objects: &[Arc<T>]) {
            let chunks = list.chunks().iter().cloned();
            *list = Objects::from_chunks(chunks.chain([Chunk::new(objects.to_vec())]));
        }
        let mut after = snapshot.clone();
        if parts.contains(&"ingress") {
            add(&mut after.ingresses, std::slice::from_ref(&self.ingress));
        }
        if parts.contains(&"services") {
            add(&mut after.services, &self.services);
        }
        if parts.contains(&"slices") {
            add(&mut after.endpoint_slices, &self.slices);
        }
        after
    }

    /// `snapshot` without the parts of the application `parts` names (the chunks that held
    /// none of them shared).
    pub fn undeploy(&self, snapshot: &Snapshot, parts: &[&str]) -> Snapshot {
        fn remove<T: Named>(list: &mut Objects<T>, objects: &[Arc<T>]) {
            let ours = |o: &Arc<T>| objects.iter().any(|a| Arc::ptr_eq(a, o));
            let chunks = list.chunks().iter().filter_map(|c| {
                if !c.objects().iter().any(ours) {
                    return Some(c.clone());
                }
                let rest: Vec<Arc<T>> = c.objects().iter().filter(|o| !ours(o)).cloned().collect();
                (!rest.is_empty()).then(|| Chunk::new(rest))
            });
            *list = Objects::from_chunks(chunks.collect::<Vec<_>>());
        }
        let mut after = snapshot.clone();
        if parts.contains(&"ingress") {
            remove(&mut after.ingresses, std::slice::from_ref(&self.ingress));
        }
        if parts.contains(&"services") {
            remove(&mut after.services, &self.services);
        }
        if parts.contains(&"slices") {
            remove(&mut after.endpoint_slices, &self.slices);
        }
        after
    }
}

/// The Service names of Ingress `i`: `svc-{2i}` (for `/` and `/healthz`) and `svc-{2i+1}` (for
/// the `/api` paths), in [`namespace(i)`](namespace).
pub fn services_of(i: usize) -> [String; 2] {
    [service_name(2 * i), service_name(2 * i + 1)]
}

/// Points both Services of Ingress `i` at one real backend `addr`: their EndpointSlices are
/// replaced by one slice with a single ready endpoint at `addr`, so that requests for
/// [`host(i)`](host) reach a process that answers.
/// The snapshot then has the endpoints of those two Services fewer (2 or 3 each), plus two.
pub fn with_local_backend(snapshot: &mut Snapshot, i: usize, addr: SocketAddrV4) {
    let ns = namespace(i);
    let names = services_of(i);
    let ours = |namespace: &str, name: &str| -> bool { namespace == ns && name_in(name, &names) };
    snapshot
        .endpoint_slices
        .make_mut()
        .retain(|s| !ours(&s.namespace, s.service.as_deref().unwrap_or_default()));
    let mut local = Vec::new();
    for service in &snapshot.services {
        let name = service.name.clone();
        if !ours(&service.namespace, &name) {
            continue;
        }
        local.push(Arc::new(LeanSlice {
            namespace: ns.clone(),
            name: format!("{name}-local"),
            service: Some(name),
            address_type: "IPv4".into(),
            endpoints: vec![SliceEndpoint {
                addresses: vec![addr.ip().to_string()],
                ready: Some(true),
            }],
            ports: vec![SlicePort {
                name: Some("http".into()),
                port: Some(i32::from(addr.port())),
            }],
        }));
    }
    snapshot.endpoint_slices.make_mut().extend(local);
}

fn name_in(name: &str, names: &[String]) -> bool {
    names.iter().any(|n| n == name)
}

fn meta(namespace: Option<String>, name: String) -> ObjectMeta {
    ObjectMeta { namespace, name: Some(name), ..ObjectMeta::default() }
}

fn ingress_class() -> IngressClass {
    let mut metadata = meta(None, CLASS_NAME.into());
    metadata.annotations = Some(BTreeMap::from([(
        "ingressclass.kubernetes.io/is-default-class".to_string(),
        "true".to_string(),
    )]));
    IngressClass {
        metadata,
        spec: Some(IngressClassSpec { controller: Some(CONTROLLER.into()), ..Default::default() }),
    }
}

fn service_name(j: usize) -> String {
    format!("svc-{j}")
}

fn ingress(i: usize) -> Ingress {
    let ns = namespace(i);
    let mut metadata = meta(Some(ns.clone()), format!("ing-{i}"));
    // One second apart, in a fixed year: translation orders Ingresses by age.
    let created = Timestamp::from_second(1_767_225_600 + i as i64).expect("a valid timestamp");
    metadata.creation_timestamp = Some(Time(created));
    let mut annotations = BTreeMap::new();
    if i.is_multiple_of(4) {
        annotations.extend([
            ("nginx.ingress.kubernetes.io/proxy-body-size".to_string(), "8m".to_string()),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout".to_string(), "120".to_string()),
        ]);
    }
    if is_regex(i) {
        annotations.insert("nginx.ingress.kubernetes.io/use-regex".into(), "true".into());
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let first = service_name(2 * i);
    let second = service_name(2 * i + 1);
    let paths: Vec<HTTPIngressPath> = if is_regex(i) { &REGEX_PATHS } else { &PATHS }
        .iter()
        .map(|&(path, path_type)| {
            // `/api...` goes to the second Service by port name, the rest to the first by
            // number: both ways of naming a port are resolved.
            let (name, port) = if path.starts_with("/api") {
                (&second, ServiceBackendPort { name: Some("http".into()), number: None })
            } else {
                (&first, ServiceBackendPort { name: None, number: Some(80) })
            };
            HTTPIngressPath {
                path: Some(path.into()),
                path_type: path_type.into(),
                backend: IngressBackend {
                    service: Some(IngressServiceBackend { name: name.clone(), port: Some(port) }),
                    resource: None,
                },
            }
        })
        .collect();
    let rule = |host: String| IngressRule {
        host: Some(host),
        http: Some(HTTPIngressRuleValue { paths: paths.clone() }),
    };
    let mut rules = vec![rule(host(i))];
    if i.is_multiple_of(WILDCARD_EVERY) {
        rules.push(rule(wildcard_host(i)));
    }
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(CLASS_NAME.into()),
            rules: Some(rules),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

fn service(j: usize) -> Service {
    Service {
        metadata: meta(Some(namespace(j / 2)), service_name(j)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            selector: Some(BTreeMap::from([("app".to_string(), service_name(j))])),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn endpoint_slice(j: usize, chunk: usize, numbers: std::ops::Range<usize>) -> EndpointSlice {
    let mut metadata = meta(Some(namespace(j / 2)), format!("{}-{chunk:05}", service_name(j)));
    metadata.labels =
        Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), service_name(j))]));
    let endpoints = numbers
        .map(|k| {
            // 10.0.0.1, 10.0.0.2, ...: unique for up to 2^24 - 2 endpoints.
            let n = k + 1;
            let address = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
            Endpoint {
                addresses: vec![address],
                conditions: Some(EndpointConditions {
                    ready: Some(k % NOT_READY_EVERY != NOT_READY_EVERY - 1),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use sluice_model::{PathMatch, Target};

    use super::*;

    #[test]
    fn counts_follow_the_scale() {
        let s = generate(Scale::MEDIUM);
        assert_eq!(s.ingresses.len(), 1_000);
        assert_eq!(s.services.len(), 2_000);
        assert_eq!(s.ingress_classes.len(), 1);
        let endpoints: usize = s.endpoint_slices.iter().map(|e| e.endpoints.len()).sum();
        assert_eq!(endpoints, 5_000);
        // Uneven spread: 9 endpoints over 4 Services is 3, 2, 2, 2.
        let s = generate(Scale { ingresses: 2, endpoints: 9 });
        let sizes: Vec<_> = s.endpoint_slices.iter().map(|e| e.endpoints.len()).collect();
        assert_eq!(sizes, [3, 2, 2, 2]);
        // Slices hold 100 endpoints at most: 450 over 2 Services is 100, 100, 25 each.
        let s = generate(Scale { ingresses: 1, endpoints: 450 });
        let sizes: Vec<_> = s.endpoint_slices.iter().map(|e| e.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 25, 100, 100, 25]);
    }

    #[test]
    fn translates_cleanly_and_routes_as_documented() {
        let table = sluice_translate::translate(&generate(Scale::MEDIUM), &settings());
        assert!(table.diagnostics.is_empty(), "{:#?}", &table.diagnostics[..3]);
        assert_eq!(table.host_index.counts().0, 1_000);
        assert_eq!(table.host_index.counts().1, 1_000 / WILDCARD_EVERY);
        // Two backends per Ingress, with 2 or 3 endpoints each, 4% not ready.
        assert_eq!(table.backends.len(), 2_000);
        let ready: usize = table.backends.iter().map(|b| b.endpoints.len()).sum();
        assert_eq!(ready, 5_000 - 5_000 / NOT_READY_EVERY);

        let deep = table.lookup(&host(7), "/api/v1/users/42/profile");
        assert_eq!(deep.route.path, DEEPEST_PREFIX);
        assert_eq!(&*deep.route.host, host(7));
        let Target::Backend(b) = deep.route.target else { panic!("{:?}", deep.route.target) };
        assert_eq!(table.backends[b as usize].service.name, "svc-15");

        let exact = table.lookup(&host(7), "/healthz");
        assert_eq!(exact.route.path_match, PathMatch::Exact);

        let wild = table.lookup(&format!("x.{}", host(10)), "/api/x");
        assert_eq!(&*wild.route.host, wildcard_host(10));
        assert_eq!(wild.route.path, "/api");

        let miss = table.lookup("nowhere.example.org", "/");
        assert!(matches!(miss.route.target, Target::Respond { status: 404, .. }));

        // Regex hosts: first matching regex in order, Exact first, else the host's 404.
        assert!(is_regex(15) && !is_regex(10) && !is_regex(7));
        assert_eq!(table.hosts.iter().filter(|h| h.regex.is_some()).count(), 1_000 / REGEX_EVERY);
        let regex = |path| table.lookup(&host(15), path).route;
        assert_eq!(regex("/api/V2/users/42").path, REGEX_PATHS[0].0);
        assert_eq!(regex("/static/css/site.css").path, REGEX_PATHS[1].0);
        assert_eq!(regex("/api/v2/orders").path, "/api");
        assert_eq!(regex("/apiary").path, "/api");
        assert_eq!(regex("/healthz").path_match, PathMatch::Exact);
        assert!(matches!(regex("/index.html").target, Target::Respond { status: 404, .. }));
    }
}
