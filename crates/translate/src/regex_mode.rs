//! Hosts in regex mode while the table is built: which hosts they are, their regex paths
//! (compiled once per translation), and each route's rewrite. The semantics are documented in
//! [`crate::annotations::rewrite`]; this module only keeps `build.rs`'s part small.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_model::{
    Diagnostic, Location, PathMatch, Reason, RegexPaths, Rewrite, RouteId, location_regex,
};

use crate::annotations::rewrite;
use crate::build::Current;

/// One host's regex paths: `(path, location, route)` in the order added, and the paths taken.
type HostPaths = (Vec<(String, Arc<Location>, RouteId)>, HashMap<String, RouteId>);

/// Regex hosts and their paths so far.
#[derive(Default)]
pub(crate) struct RegexMode {
    /// Hosts as written (lower case; `""` for rules without a host).
    hosts: HashSet<String>,
    /// Per host index.
    paths: HashMap<u32, HostPaths>,
    /// Every pattern compiled so far, by path: hosts often share paths (one chart deployed per
    /// tenant), and compiling is what regex paths cost a translation.
    compiled: HashMap<String, Result<Arc<Location>, String>>,
}

impl RegexMode {
    /// The regex hosts of `ingresses` (this controller's, in any order).
    pub(crate) fn new(ingresses: &[&Ingress], prefix: &str) -> Self {
        Self { hosts: rewrite::regex_hosts(ingresses, prefix), ..Self::default() }
    }

    /// How `raw` matches on `host`: `Ok(Some(location))` for a regex path, `Ok(None)` for a path
    /// matched as usual (any path on other hosts; `Exact` paths everywhere), `Err(())` when the
    /// path is not a valid regex (reported; the caller drops it).
    pub(crate) fn location(
        &mut self,
        cur: &Current,
        host: &str,
        raw: &str,
        path_match: PathMatch,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Result<Option<Arc<Location>>, ()> {
        if path_match == PathMatch::Exact || !self.hosts.contains(host) {
            return Ok(None);
        }
        let shown = if host.is_empty() { "(any host)" } else { host };
        let compiled = match self.compiled.get(raw) {
            Some(c) => c.clone(),
            None => {
                let c = location_regex(raw).map(Arc::new);
                self.compiled.insert(raw.to_string(), c.clone());
                c
            }
        };
        match compiled {
            Ok(regex) => {
                if path_match == PathMatch::Prefix && !plain(raw) {
                    diagnostics.push(Diagnostic::warning(
                        cur.object.clone(),
                        Reason::InvalidPath,
                        format!(
                            "path {raw:?} (Prefix) on regex host {shown} holds regex characters: \
                             served as a regex, but ingress-nginx 1.12+ rejects such an Ingress \
                             (strict-validate-path-type); use pathType ImplementationSpecific"
                        ),
                    ));
                }
                Ok(Some(regex))
            }
            Err(why) => {
                diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::InvalidPath,
                    format!(
                        "path {raw:?} on host {shown} is not a valid regex ({why}); rule ignored \
                         (the host's paths are regexes: use-regex or rewrite-target is set on \
                         one of its Ingresses)"
                    ),
                ));
                Err(())
            }
        }
    }

    /// Adds a regex path to host `host_idx` as route `id`, unless the same path is already
    /// there: then returns the route that has it.
    pub(crate) fn insert(
        &mut self,
        host_idx: u32,
        raw: &str,
        regex: Arc<Location>,
        id: RouteId,
    ) -> Option<RouteId> {
        let (list, taken) = self.paths.entry(host_idx).or_default();
        if let Some(&winner) = taken.get(raw) {
            return Some(winner);
        }
        taken.insert(raw.to_string(), id);
        list.push((raw.to_string(), regex, id));
        None
    }

    /// The route of regex path `raw` on host `host_idx`, if one has it.
    pub(crate) fn route_of(&self, host_idx: u32, raw: &str) -> Option<RouteId> {
        self.paths.get(&host_idx)?.1.get(raw).copied()
    }

    /// The rewrite of the current Ingress's path `raw`, if it has one. A path that is not a
    /// valid regex (an `Exact` one, as others were checked already) is reported and not
    /// rewritten.
    pub(crate) fn rewrite(
        cur: &Current,
        raw: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Rewrite>> {
        let ann = &cur.annotations.rewrite;
        if !ann.rewrites(raw) {
            return None;
        }
        let target = ann.target.clone()?;
        match Rewrite::new(raw, target) {
            Ok(r) => Some(Arc::new(r)),
            Err(why) => {
                diagnostics.push(Diagnostic::error(
                    cur.object.clone(),
                    Reason::InvalidPath,
                    format!(
                        "path {raw:?} is not a valid regex ({why}), so rewrite-target cannot \
                         apply to it; forwarded unchanged"
                    ),
                ));
                None
            }
        }
    }

    /// Gives each regex host its paths, in ingress-nginx's order.
    pub(crate) fn finish(self, hosts: &mut [crate::build::HostDraft]) {
        for (idx, (list, _)) in self.paths {
            hosts[idx as usize].regex = Some(Box::new(RegexPaths::new(list)));
        }
        // A regex host whose paths were all Exact or invalid keeps `regex: None`: nothing
        // to match but its exact paths and default.
    }
}

/// True for a path ingress-nginx's `strict-validate-path-type` accepts with `Prefix`.
fn plain(path: &str) -> bool {
    path.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
}
