//! The limits phase: `limit-rps`, `limit-rpm` and `limit-connections` per client address,
//! counted in the route's zone ([`sluice_model::Zone`], NGINX's arithmetic). Zones are kept
//! by the process ([`Zones`]) so that their counters outlive configuration changes, as
//! NGINX's shared memory zones outlive a reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_model::{Permit, RateLimits, Refused, RoutingTable, Zone};

use super::Ctx;
use crate::Shared;

/// Admits the request under `limits`, or gives the status refusing it. An allow-listed
/// client is neither limited nor counted.
pub(super) fn admit(
    limits: &RateLimits,
    ctx: &Ctx<'_>,
    shared: &Shared,
) -> Result<Option<Permit>, u16> {
    let client = ctx.client_addr();
    if limits.allowlist.contains(client) {
        return Ok(None);
    }
    let zone = limits.state.get_or_init(|| shared.zones.zone(&limits.zone));
    zone.admit(limits, client, shared.zones.now_ms()).map_err(|refused| match refused {
        Refused::Rate => limits.req_status,
        Refused::Connections => limits.conn_status,
    })
}

/// A `global-rate-limit` question for memcached: the limit and the request's key.
pub(crate) struct GlobalCheck {
    pub limit: std::sync::Arc<sluice_model::GlobalRateLimit>,
    /// `global-rate-limit-key`, filled in (`$remote_addr` when it comes out empty).
    pub key: String,
}

/// The question for this request, or `None` for a client of `global-rate-limit-ignored-cidrs`.
pub(super) fn global_check<H: super::Head>(
    limit: &std::sync::Arc<sluice_model::GlobalRateLimit>,
    ctx: &Ctx<'_>,
    head: &H,
) -> Option<GlobalCheck> {
    if limit.ignored.contains(ctx.client_addr()) {
        return None;
    }
    let vars = super::RequestVars { head, ctx };
    let mut key = String::from_utf8_lossy(&limit.key.to_bytes(&vars)).into_owned();
    if key.is_empty() {
        key = String::from_utf8_lossy(ctx.client_ip()).into_owned();
    }
    Some(GlobalCheck { limit: limit.clone(), key })
}

/// The limit zones of the process, by name.
pub(crate) struct Zones {
    by_name: Mutex<HashMap<String, Arc<Zone>>>,
    epoch: Instant,
}

impl Zones {
    pub(crate) fn new() -> Self {
        Self { by_name: Mutex::default(), epoch: Instant::now() }
    }

    /// Milliseconds since the process started: the zones' clock.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The zone `name`, made when first asked for.
    fn zone(&self, name: &str) -> Arc<Zone> {
        let mut zones = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        zones.entry(name.to_string()).or_default().clone()
    }

    /// Attaches its zone to every limit of `table`, and forgets the zones no route names any
    /// more. Run after a table is published, off the request path: a request that comes
    /// first attaches its zone itself ([`admit`]), so the walk over every route (1 ms at
    /// 44,000 routes) does not delay a new table. The walk holds no lock; the lock is held
    /// only to attach what it found.
    pub(crate) fn attach(&self, table: &RoutingTable) {
        let mut found: Vec<&Arc<RateLimits>> = Vec::new();
        let mut last_policy: *const sluice_model::Policy = std::ptr::null();
        for route in table.routes.iter() {
            // Consecutive routes of an Ingress share its policy: comparing the pointer, held
            // in the route, saves reading the policy (a cache miss each).
            if std::ptr::eq(Arc::as_ptr(&route.policy), last_policy) {
                continue;
            }
            last_policy = Arc::as_ptr(&route.policy);
            found.extend(&route.policy.rate);
        }
        let mut zones = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut used = std::collections::HashSet::new();
        for limits in found {
            let zone = zones.entry(limits.zone.clone()).or_default();
            let _ = limits.state.set(zone.clone());
            used.insert(limits.zone.clone());
        }
        zones.retain(|name, _| used.contains(name));
    }
}
