//! The pick phase: which backend serves a request (the route's, its `default-backend`, its
//! canary) and in which order its endpoints are tried ([`Attempts`]), as ingress-nginx's
//! `balancer.lua` and its balancers decide.
//!
//! [`Attempts`] is the one retry loop's state, shared by both ways of carrying a request:
//! each asks it for the next endpoint and tells it how an attempt failed.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use md5::{Digest, Md5};
use sluice_model::{
    Affinity, Backend, BackendId, Balance, Canary, EwmaSlot, OutlierEvent, Outliers, Retry, Ring,
    subset, subset_count,
};
use tokio::time::Instant;

use super::{Ctx, Head, RequestVars};

/// Attempts on fresh connections after pooled ones turned out closed, per request.
pub(crate) const MAX_STALE_RETRIES: usize = 4;

/// How an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connecting failed (502), before anything was sent.
    Connect,
    /// Connecting timed out (504), before anything was sent.
    ConnectTimeout,
    /// The connection broke after the request went out, before a response head (502).
    Broken,
    /// No response head within the read timeout (504).
    Timeout,
    /// The response head was not valid HTTP (502).
    InvalidHeader,
    /// The request body exceeded `proxy-body-size` while being sent (413).
    TooLarge,
}

impl Failure {
    /// What the client gets when no other attempt follows.
    pub(crate) fn status(self) -> u16 {
        match self {
            Failure::Connect | Failure::Broken | Failure::InvalidHeader => 502,
            Failure::ConnectTimeout | Failure::Timeout => 504,
            Failure::TooLarge => 413,
        }
    }

    /// The label of `sluice_upstream_errors_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::ConnectTimeout | Failure::Timeout => "timeout",
            Failure::Broken => "broken",
            Failure::InvalidHeader => "invalid_header",
            Failure::TooLarge => "body_too_large",
        }
    }
}

/// The backend picked for a request, and its endpoints' order.
pub(crate) struct Pick {
    pub backend: BackendId,
    /// The backend is the route's canary.
    pub canary: bool,
    pub attempts: Attempts,
    /// The session cookie to set on the response.
    pub set_cookie: Option<Vec<u8>>,
    /// The backend is the route's `default-backend`, standing in for a backend without
    /// ready endpoints (the request carries ingress-nginx's `X-Code: 503` headers).
    pub substitute: bool,
}

/// Picks the backend and the endpoint order for a request to the route's backend `main`;
/// `None` when no endpoint is ready (503).
pub(super) fn pick<H: Head>(ctx: &Ctx<'_>, head: &H, main: BackendId) -> Option<Pick> {
    let backends = &ctx.table.backends;
    let route = ctx.route;
    let mut id = main;
    let mut substitute = false;
    let mut canary = false;
    if backends[main as usize].endpoints.is_empty() {
        // ingress-nginx: a location whose upstream has no endpoint is served by its
        // `default-backend` when that has some; its canary is never tried.
        let fallback = route.fallback.filter(|&f| !backends[f as usize].endpoints.is_empty())?;
        id = fallback;
        substitute = true;
    } else if let Some(c) = &backends[main as usize].canary
        && !backends[c.backend as usize].endpoints.is_empty()
        && to_canary(&backends[main as usize], &backends[c.backend as usize], c, head)
    {
        id = c.backend;
        canary = true;
    }
    let backend = &backends[id as usize];
    let mut attempts = Attempts::new(&route.policy.retry, backend.endpoints.len());
    let mut set_cookie = None;
    attempts.order = match &backend.balance {
        Balance::RoundRobin => Order::Sequence(backend.next_index()?),
        Balance::Ewma => Order::Ewma(ewma_pick(backend, 0)?),
        Balance::Hash(hash) => {
            let vars = RequestVars { head, ctx };
            let key = hash.key.to_bytes(&vars);
            match hash.subset {
                None => {
                    let ring = backend
                        .state
                        .ring
                        .get_or_init(|| Box::new(Ring::of_endpoints(&backend.endpoints)));
                    Order::Ring { first: ring.find(&key)?, key }
                }
                Some(size) => {
                    let n = backend.endpoints.len();
                    let count = subset_count(n, size as usize);
                    let ring = backend.state.ring.get_or_init(|| Box::new(Ring::of_subsets(count)));
                    Order::Subset { set: ring.find(&key)?, size: size as usize }
                }
            }
        }
        Balance::Sticky(affinity) => {
            let (order, cookie) = sticky(backend, affinity, head)?;
            if let Some(key) = cookie
                && route.policy.sets_affinity_cookie
            {
                let ua = head.header("user-agent");
                set_cookie = Some(cookie_line(backend, affinity, &key, &route.path, ctx.https, ua));
            }
            attempts.affinity = route.policy.sets_affinity_cookie;
            order
        }
    };
    Some(Pick { backend: id, canary, attempts, set_cookie, substitute })
}

/// ingress-nginx's `route_to_alternative_balancer`: a session pinned to either backend stays
/// there; then the header, the cookie, the weight.
fn to_canary<H: Head>(main: &Backend, alternative: &Backend, c: &Canary, head: &H) -> bool {
    if affinitized(main, head) {
        return false;
    }
    if affinitized(alternative, head) {
        return true;
    }
    if let Some(name) = &c.header
        && let Some(value) = head.nginx_header(name)
    {
        if let Some(wanted) = &c.header_value {
            if value == wanted.as_bytes() {
                return true;
            }
        } else if let Some(pattern) = &c.header_pattern {
            match &pattern.regex {
                Some(re) if std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)) => {
                    return true;
                }
                Some(_) => {}
                // A pattern that cannot run keeps the request on the main backend
                // (`balancer.lua` returns false on `ngx.re.match`'s error).
                None => return false,
            }
        } else if value == b"always" {
            return true;
        } else if value == b"never" {
            return false;
        }
    }
    if let Some(name) = &c.cookie
        && let Some(value) = head.cookie(name)
    {
        match value {
            b"always" => return true,
            b"never" => return false,
            _ => {}
        }
    }
    // `math.random(total) <= weight`: 1..=total.
    fastrand::u32(1..=c.weight_total.max(1)) <= c.weight
}

/// Whether the request carries a session cookie of `backend` (sticky backends only).
fn affinitized<H: Head>(backend: &Backend, head: &H) -> bool {
    let Balance::Sticky(affinity) = &backend.balance else { return false };
    let Some(value) = head.cookie(&affinity.name) else { return false };
    let (_, key) = keys(backend);
    value.splitn(2, |&c| c == b'|').nth(1) == Some(key.as_bytes())
}

/// The endpoints' keys in persistent cookies, and the backend's key, as ingress-nginx makes
/// them (`md5(name .. "ip:port")`, `md5(md5(name) .. name)`).
fn keys(backend: &Backend) -> &sluice_model::CookieKeys {
    backend.state.cookie_keys.get_or_init(|| {
        let endpoints = backend
            .endpoints
            .iter()
            .map(|e| md5_hex(format!("{}{}", backend.name, e.addr).as_bytes()).into_boxed_str())
            .collect();
        let inner = md5_hex(backend.name.as_bytes());
        let own = md5_hex(format!("{inner}{}", backend.name).as_bytes()).into_boxed_str();
        Box::new((endpoints, own))
    })
}

fn md5_hex(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The endpoint a session cookie pins, else a new one; with the key to set when new.
fn sticky<H: Head>(
    backend: &Backend,
    affinity: &Affinity,
    head: &H,
) -> Option<(Order, Option<Vec<u8>>)> {
    let n = backend.endpoints.len();
    if n == 0 {
        return None;
    }
    let pinned = head
        .cookie(&affinity.name)
        .and_then(|v| v.split(|&c| c == b'|').next())
        .filter(|k| !k.is_empty())
        .and_then(|key| find_key(backend, affinity, key));
    if let Some(idx) = pinned {
        let order = if affinity.change_on_failure {
            Order::Repin { first: idx }
        } else {
            Order::Pinned(idx)
        };
        return Some((order, None));
    }
    let (idx, key) = new_key(backend, affinity, 0)?;
    // A request without a usable cookie is pinned again on each try, with or without
    // `session-cookie-change-on-failure`: `sticky.lua` finds no endpoint in the request's
    // cookie on the retry either, so it picks a new one away from the failed ones (and sets
    // the cookie again). Pinning the first draw for every try would fail a new client whose
    // first draw is a dead endpoint.
    Some((Order::Repin { first: idx }, Some(key)))
}

/// The endpoint of a cookie's key, if it is still there.
fn find_key(backend: &Backend, affinity: &Affinity, key: &[u8]) -> Option<usize> {
    if affinity.persistent {
        keys(backend).0.iter().position(|k| k.as_bytes() == key)
    } else {
        ring(backend).find(key)
    }
}

fn ring(backend: &Backend) -> &Ring {
    backend.state.ring.get_or_init(|| Box::new(Ring::of_endpoints(&backend.endpoints)))
}

/// A new pin, avoiding the endpoints of `tried` (a bit per endpoint index): the endpoint and
/// its cookie key. Balanced mode draws random keys, placed on the ring (ingress-nginx gives
/// up after 20 draws); persistent mode draws a random endpoint.
fn new_key(backend: &Backend, affinity: &Affinity, tried: u64) -> Option<(usize, Vec<u8>)> {
    let n = backend.endpoints.len();
    let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
    if affinity.persistent {
        let candidates: Vec<usize> = (0..n).filter(|&i| untried(i)).collect();
        let idx = *candidates.get(fastrand::usize(..candidates.len().max(1)))?;
        return Some((idx, keys(backend).0[idx].as_bytes().to_vec()));
    }
    let ring = ring(backend);
    for _ in 0..20 {
        let key = format!("{:032x}", fastrand::u128(..)).into_bytes();
        let idx = ring.find(&key)?;
        if untried(idx) {
            return Some((idx, key));
        }
    }
    None
}

/// The `Set-Cookie` value pinning to `key`, as `balancer/sticky.lua` sets it, for a route of
/// path `route_path` (the default cookie path), a request over HTTPS or not, from
/// `user_agent`.
fn cookie_line(
    backend: &Backend,
    affinity: &Affinity,
    key: &[u8],
    route_path: &str,
    https: bool,
    user_agent: Option<&[u8]>,
) -> Vec<u8> {
    use std::fmt::Write;
    let mut line = String::with_capacity(128);
    let _ = write!(line, "{}={}|{}", affinity.name, String::from_utf8_lossy(key), keys(backend).1);
    if let Some(secs) = affinity.expires {
        let at = time::OffsetDateTime::now_utc() + Duration::from_secs(secs);
        let format = time::macros::format_description!(
            "[weekday repr:short], [day]-[month repr:short]-[year] [hour]:[minute]:[second] GMT"
        );
        if let Ok(text) = at.format(&format) {
            let _ = write!(line, "; Expires={text}");
        }
    }
    if let Some(secs) = affinity.max_age {
        let _ = write!(line, "; Max-Age={secs}");
    }
    if let Some(domain) = &affinity.domain {
        let _ = write!(line, "; Domain={domain}");
    }
    let path = match (&affinity.path, route_path) {
        (Some(p), _) => p.as_str(),
        (None, "") => "/",
        (None, p) => p,
    };
    let _ = write!(line, "; Path={path}");
    if affinity.secure.unwrap_or(https) {
        line.push_str("; Secure");
    }
    line.push_str("; HttpOnly");
    if let Some(samesite) = &affinity.samesite {
        let incompatible = affinity.conditional_samesite_none
            && samesite == "None"
            && user_agent.is_some_and(samesite_none_incompatible);
        if !incompatible {
            let _ = write!(line, "; SameSite={samesite}");
        }
    }
    if affinity.partitioned {
        line.push_str("; Partitioned");
    }
    line.into_bytes()
}

/// The browsers that reject `SameSite=None` cookies (ingress-nginx's `same_site.lua`, after
/// Chromium's list).
fn samesite_none_incompatible(user_agent: &[u8]) -> bool {
    let ua = String::from_utf8_lossy(user_agent);
    ua.contains("Chrome/4")
        || ua.contains("Chrome/5")
        || ua.contains("Chrome/6")
        || ua.contains("CPU iPhone OS 12")
        || ua.contains("iPad; CPU OS 12")
        || (ua.contains("Macintosh")
            && ua.contains("Intel Mac OS X 10_14")
            && ua.contains("Safari")
            && !ua.contains("Chrome"))
}

/// A response that counts against its endpoint: 502, 503, 504, when the backend's policy
/// says so (`sluice-outlier-gateway-responses`, Envoy's gateway failures).
fn gateway_failure(backend: &Backend, status: u16) -> bool {
    backend.outlier.gateway_responses && matches!(status, 502..=504)
}

/// Whether endpoint `idx` of `backend` is ejected now; an ejection that ran its time ends
/// here. Only a load for a backend with no endpoint ejected.
fn ejected(backend: &Backend, idx: usize) -> bool {
    let Some(outliers) = backend.state.outliers.get() else { return false };
    if outliers.ejected() == 0 {
        return false;
    }
    let (skipped, event) = outliers.skipped(idx, now_micros());
    if let Some(event) = event {
        report(backend, idx, event);
    }
    skipped
}

/// Logs an ejection or its end, and counts ejections (`sluice_upstream_ejections_total`).
fn report(backend: &Backend, idx: usize, event: OutlierEvent) {
    let Some(endpoint) = backend.endpoints.get(idx).map(|e| e.addr) else { return };
    match event {
        OutlierEvent::Ejected { ejection, times } => {
            tracing::warn!(
                backend = %backend.name,
                %endpoint,
                seconds = ejection.as_secs_f64(),
                times,
                failures = backend.outlier.consecutive_failures,
                "endpoint ejected after failing in a row; skipped until its ejection ends"
            );
            crate::metrics::ejection(backend);
        }
        OutlierEvent::Returned => {
            tracing::info!(backend = %backend.name, %endpoint, "endpoint ejection ended; tried again");
        }
    }
}

/// Microseconds on the proxy's clock, for response-time averages and ejections.
fn now_micros() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// EWMA's choice: the lower-scored of two random endpoints not tried yet (`tried`: a bit per
/// endpoint index), as ingress-nginx's `ewma.lua` (peak EWMA, "power of two choices").
fn ewma_pick(backend: &Backend, tried: u64) -> Option<usize> {
    let n = backend.endpoints.len();
    if n == 0 {
        return None;
    }
    let slots = ewma_slots(backend);
    let now = now_micros();
    let untried: Vec<usize> = (0..n).filter(|&i| i >= 64 || tried & (1 << i) == 0).collect();
    let pool: Vec<usize> = if untried.is_empty() { (0..n).collect() } else { untried };
    if pool.len() == 1 {
        return Some(pool[0]);
    }
    let a = fastrand::usize(..pool.len());
    let mut b = fastrand::usize(..pool.len() - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (pool[a], pool[b]);
    Some(if slots[b].score(now) < slots[a].score(now) { b } else { a })
}

fn ewma_slots(backend: &Backend) -> &[EwmaSlot] {
    backend
        .state
        .ewma
        .get_or_init(|| (0..backend.endpoints.len()).map(|_| EwmaSlot::unobserved()).collect())
}

/// The order endpoints are tried in.
#[derive(Debug)]
enum Order {
    /// Round robin: from the first, then the next ones.
    Sequence(usize),
    /// EWMA: the first, then a new choice among those not tried.
    Ewma(usize),
    /// Consistent hashing: the key's endpoint, then the next ones on the ring.
    Ring { first: usize, key: Vec<u8> },
    /// Hashing to a subset: a random endpoint of the subset each time.
    Subset { set: usize, size: usize },
    /// A session cookie's endpoint, every time (as ingress-nginx without
    /// `session-cookie-change-on-failure`).
    Pinned(usize),
    /// A session cookie's endpoint, then new pins (`session-cookie-change-on-failure`); or a
    /// new session's first pin, then new pins.
    Repin { first: usize },
}

/// The endpoints a request tries and when it goes on to the next: NGINX's
/// `proxy_next_upstream`, `-tries` and `-timeout`, with the balancer's order.
#[derive(Debug)]
pub(crate) struct Attempts {
    order: Order,
    retry: Retry,
    /// Attempts allowed in all.
    tries: usize,
    /// Attempts made (fresh connections after a stale pooled one do not count).
    made: usize,
    /// Endpoints passed over for being ejected (`sluice-outlier-*`).
    skipped: usize,
    stale: usize,
    /// The endpoint of the current attempt (an index in the backend's endpoints).
    current: Option<usize>,
    /// A bit per endpoint tried (the first 64).
    tried: u64,
    /// When the first attempt started.
    started: Option<Instant>,
    /// The route issues session cookies: a re-pin sets a new one.
    affinity: bool,
    /// The cookie key of a re-pin, once the first endpoint failed.
    repinned: Option<Vec<u8>>,
}

impl Attempts {
    fn new(retry: &Retry, endpoints: usize) -> Self {
        let tries =
            if retry.on == 0 { 1 } else { (retry.tries as usize).clamp(1, endpoints.max(1)) };
        Self {
            order: Order::Sequence(0),
            retry: *retry,
            tries,
            made: 0,
            skipped: 0,
            stale: 0,
            current: None,
            tried: 0,
            started: None,
            affinity: false,
            repinned: None,
        }
    }

    /// The attempts of an error page request to `backend` (`custom-http-errors`): its own
    /// balancer's order, NGINX's default retries.
    pub(crate) fn for_error_page(backend: &Backend) -> Self {
        let mut a = Attempts::new(&Retry::default(), backend.endpoints.len());
        a.order = Order::Sequence(backend.next_index().unwrap_or(0));
        a
    }

    /// The next endpoint to try, or `None` when no attempt is left (the tries are used, or
    /// `proxy-next-upstream-timeout` has passed since the first).
    pub(crate) fn next(&mut self, backend: &Backend) -> Option<SocketAddr> {
        let n = backend.endpoints.len();
        if n == 0 || self.made >= self.tries {
            return None;
        }
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        if self.made > 0
            && let Some(limit) = self.retry.timeout
            && now.saturating_duration_since(started) >= limit
        {
            return None;
        }
        // Ejected endpoints are passed over as if tried, at most once each. When the order
        // runs out before a first attempt (only ejected endpoints, as when others went away
        // meanwhile), the first of them is tried after all: a request always has one.
        let mut passed_over = None;
        let idx = loop {
            let Some(idx) = self.candidate(backend, n) else {
                break passed_over.filter(|_| self.made == 0)?;
            };
            // A session pinned without `session-cookie-change-on-failure` stays pinned.
            let pinned = matches!(self.order, Order::Pinned(_));
            if !pinned && self.skipped < n && ejected(backend, idx) {
                self.skipped += 1;
                passed_over.get_or_insert(idx);
                if idx < 64 {
                    self.tried |= 1 << idx;
                }
                continue;
            }
            break idx;
        };
        self.made += 1;
        self.current = Some(idx);
        if idx < 64 {
            self.tried |= 1 << idx;
        }
        backend.endpoints.get(idx).map(|e| e.addr)
    }

    /// The endpoint the order gives next, counting endpoints passed over.
    fn candidate(&mut self, backend: &Backend, n: usize) -> Option<usize> {
        let t = self.made + self.skipped;
        if t >= n && !matches!(self.order, Order::Pinned(_)) {
            // Every endpoint was tried or passed over.
            return None;
        }
        Some(match &self.order {
            Order::Sequence(first) => (first + t) % n,
            Order::Ewma(first) if t == 0 => *first,
            Order::Ewma(_) => ewma_pick(backend, self.tried)?,
            Order::Ring { first, .. } if t == 0 => *first,
            Order::Ring { key, .. } => ring(backend).walk(key).nth(t)?,
            Order::Subset { set, size } => {
                let members: Vec<usize> = subset(n, *size, *set).collect();
                let fresh: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| i >= 64 || self.tried & (1 << i) == 0)
                    .collect();
                let pool = if fresh.is_empty() { &members } else { &fresh };
                pool[fastrand::usize(..pool.len())]
            }
            Order::Pinned(idx) => *idx,
            Order::Repin { first } if t == 0 => *first,
            Order::Repin { .. } => {
                let Balance::Sticky(affinity) = &backend.balance else { return None };
                let (idx, key) = new_key(backend, affinity, self.tried)?;
                self.repinned = self.affinity.then_some(key);
                idx
            }
        })
    }

    /// A pooled connection turned out closed before the request was read: whether to try the
    /// same endpoint again on a fresh connection (not counted as an attempt).
    pub(crate) fn stale_again(&mut self) -> bool {
        self.stale += 1;
        self.stale <= MAX_STALE_RETRIES
    }

    /// Whether a failure of the current attempt goes on to another endpoint. `resendable`:
    /// the request can be sent again (no body, or a body held whole); a request that was
    /// not sent at all (connecting failed) always can. The failure counts against the
    /// endpoint (`sluice-outlier-*`), but for a body too large, which is the client's.
    pub(crate) fn retries(
        &self,
        backend: &Backend,
        failure: Failure,
        method: &str,
        resendable: bool,
    ) -> bool {
        if failure != Failure::TooLarge {
            self.outcome(backend, false);
        }
        let on = self.retry.on;
        let bit = match failure {
            Failure::Connect => return on & Retry::ON_ERROR != 0,
            Failure::ConnectTimeout => return on & Retry::ON_TIMEOUT != 0,
            Failure::Broken => Retry::ON_ERROR,
            Failure::Timeout => Retry::ON_TIMEOUT,
            Failure::InvalidHeader => Retry::ON_INVALID_HEADER,
            Failure::TooLarge => return false,
        };
        on & bit != 0 && self.sent_again(method, resendable)
    }

    /// Whether a response with `status` is dropped for another endpoint (`http_5xx` and the
    /// like), when another attempt is left. A dropped response counts for or against the
    /// endpoint as [`Attempts::answered`] says.
    pub(crate) fn retries_status(
        &self,
        backend: &Backend,
        status: u16,
        method: &str,
        resendable: bool,
    ) -> bool {
        let again =
            self.retry.on_status(status) && self.sent_again(method, resendable) && self.left();
        if again {
            self.outcome(backend, !gateway_failure(backend, status));
        }
        again
    }

    /// Whether an attempt is left.
    pub(crate) fn left(&self) -> bool {
        self.made < self.tries
    }

    /// A request that reached an upstream goes to another only when it can be sent again,
    /// and, for POST, LOCK and PATCH, with `non_idempotent`.
    fn sent_again(&self, method: &str, resendable: bool) -> bool {
        let idempotent = !matches!(method, "POST" | "LOCK" | "PATCH");
        resendable && (idempotent || self.retry.on & Retry::ON_NON_IDEMPOTENT != 0)
    }

    /// The current attempt got a response head of `status` after `elapsed`: the
    /// response-time average (EWMA) learns it, and the endpoint's record (with
    /// `sluice-outlier-gateway-responses`, a 502, 503 or 504 counts as a failure).
    pub(crate) fn answered(&self, backend: &Backend, status: u16, elapsed: Duration) {
        if let (Balance::Ewma, Some(idx)) = (&backend.balance, self.current)
            && let Some(slot) = ewma_slots(backend).get(idx)
        {
            slot.observe(elapsed.as_micros() as f64, now_micros());
        }
        self.outcome(backend, !gateway_failure(backend, status));
    }

    /// Tells the current endpoint's record how its attempt went. A backend whose endpoints
    /// never failed has no record: a success costs it one load.
    fn outcome(&self, backend: &Backend, ok: bool) {
        let Some(idx) = self.current else { return };
        if ok {
            if let Some(outliers) = backend.state.outliers.get() {
                outliers.succeeded(idx, now_micros(), &backend.outlier);
            }
            return;
        }
        if !backend.outlier.enabled() {
            return;
        }
        let outliers =
            backend.state.outliers.get_or_init(|| Outliers::new(backend.endpoints.len()));
        if let Some(event) = outliers.failed(idx, now_micros(), &backend.outlier) {
            report(backend, idx, event);
        }
    }

    /// A new session cookie key when a failed pinned endpoint was replaced by another
    /// (`session-cookie-change-on-failure`, or a new session's first pin).
    pub(crate) fn repinned(&self) -> Option<&[u8]> {
        self.repinned.as_deref()
    }
}

/// The `Set-Cookie` value for a re-pinned session (see [`Attempts::repinned`]), for a
/// route of path `route_path`.
pub(crate) fn repin_cookie(
    backend: &Backend,
    key: &[u8],
    route_path: &str,
    https: bool,
    user_agent: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let Balance::Sticky(affinity) = &backend.balance else { return None };
    Some(cookie_line(backend, affinity, key, route_path, https, user_agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{Endpoint, NamespacedName};

    fn backend(n: usize, balance: Balance) -> Backend {
        let endpoints = (0..n)
            .map(|i| Endpoint { addr: format!("10.0.0.{}:80", i + 1).parse().unwrap() })
            .collect();
        let mut b = Backend::new(
            "default-app-80".into(),
            NamespacedName::new("default", "app"),
            "80".into(),
            endpoints,
        );
        b.balance = balance;
        b
    }

    #[test]
    fn keys_are_ingress_nginx_s() {
        let b = backend(1, Balance::RoundRobin);
        let (endpoints, own) = keys(&b);
        assert_eq!(
            &**own,
            md5_hex(format!("{}default-app-80", md5_hex(b"default-app-80")).as_bytes())
        );
        assert_eq!(&*endpoints[0], md5_hex(b"default-app-8010.0.0.1:80"));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn retries_follow_the_conditions() {
        let b = backend(3, Balance::RoundRobin);
        let mut a = Attempts::new(&Retry::default(), 3);
        a.order = Order::Sequence(1);
        let first = a.next(&b).unwrap();
        assert_eq!(first, b.endpoints[1].addr);
        assert!(a.retries(&b, Failure::Connect, "POST", false), "nothing was sent");
        assert!(a.retries(&b, Failure::Broken, "GET", true));
        assert!(!a.retries(&b, Failure::Broken, "POST", true), "non_idempotent is off");
        assert!(!a.retries(&b, Failure::Broken, "GET", false), "the body cannot be sent again");
        assert!(!a.retries(&b, Failure::InvalidHeader, "GET", true), "not in the default list");
        assert!(!a.retries_status(&b, 502, "GET", true), "http_502 is not in the default list");
        assert_eq!(a.next(&b), Some(b.endpoints[2].addr));
        assert_eq!(a.next(&b), Some(b.endpoints[0].addr));
        assert_eq!(a.next(&b), None, "three tries");
        let off = Retry { on: 0, ..Retry::default() };
        let mut a = Attempts::new(&off, 3);
        assert!(a.next(&b).is_some());
        assert!(a.next(&b).is_none(), "off: one attempt");
    }

    fn attempts_from(first: usize) -> Attempts {
        let mut a = Attempts::new(&Retry::default(), 3);
        a.order = Order::Sequence(first);
        a
    }

    #[test]
    fn ejected_endpoints_are_passed_over_and_one_always_stays() {
        let mut b = backend(3, Balance::RoundRobin);
        b.outlier = sluice_model::OutlierPolicy {
            consecutive_failures: 2,
            max_ejection_percent: 100,
            ..Default::default()
        };
        assert!(b.state.outliers.get().is_none(), "no record before a failure");
        for _ in 0..2 {
            let mut a = attempts_from(1);
            assert_eq!(a.next(&b), Some(b.endpoints[1].addr));
            assert!(a.retries(&b, Failure::Connect, "GET", true));
        }
        // Endpoint 1 is ejected: a request starting there goes to 2, and its retries to 0
        // and no further.
        let mut a = attempts_from(1);
        assert_eq!(a.next(&b), Some(b.endpoints[2].addr));
        assert!(a.retries(&b, Failure::Broken, "GET", true));
        assert_eq!(a.next(&b), Some(b.endpoints[0].addr));
        assert_eq!(a.next(&b), None, "the ejected endpoint is not retried");
        // A success breaks endpoint 2's run.
        let mut a = attempts_from(2);
        assert_eq!(a.next(&b), Some(b.endpoints[2].addr));
        a.answered(&b, 200, Duration::ZERO);
        let mut a = attempts_from(2);
        a.next(&b);
        assert!(a.retries(&b, Failure::Connect, "GET", true));
        let mut a = attempts_from(2);
        assert_eq!(a.next(&b), Some(b.endpoints[2].addr), "one failure after a success");
        assert!(a.retries(&b, Failure::Connect, "GET", true));
        // Now 1 and 2 are ejected; 0 never is, whatever it does.
        for _ in 0..5 {
            let mut a = attempts_from(1);
            assert_eq!(a.next(&b), Some(b.endpoints[0].addr));
            assert!(a.retries(&b, Failure::Connect, "GET", true));
        }
        assert_eq!(b.state.outliers.get().unwrap().ejected(), 2);
        // A 503 is an answer, unless the policy counts gateway responses.
        let mut a = attempts_from(0);
        a.next(&b);
        a.answered(&b, 503, Duration::ZERO);
        // A pinned session stays on its endpoint, ejected or not.
        let mut a = attempts_from(0);
        a.order = Order::Pinned(1);
        assert_eq!(a.next(&b), Some(b.endpoints[1].addr));
    }

    #[test]
    fn off_keeps_no_record() {
        let mut b = backend(2, Balance::RoundRobin);
        b.outlier = sluice_model::OutlierPolicy::OFF;
        for _ in 0..10 {
            let mut a = attempts_from(0);
            assert_eq!(a.next(&b), Some(b.endpoints[0].addr));
            a.retries(&b, Failure::Connect, "GET", true);
        }
        assert!(b.state.outliers.get().is_none());
    }

    #[test]
    fn the_ewma_choice_prefers_the_faster_endpoint() {
        let b = backend(2, Balance::Ewma);
        let slots = ewma_slots(&b);
        let now = now_micros();
        slots[0].observe(50_000.0, now);
        slots[1].observe(1_000.0, now);
        for _ in 0..20 {
            assert_eq!(ewma_pick(&b, 0), Some(1));
        }
        assert_eq!(ewma_pick(&b, 0b10), Some(0), "the other when the faster was tried");
    }

    #[test]
    fn samesite_none_is_dropped_for_old_browsers_only() {
        assert!(samesite_none_incompatible(
            b"Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X)"
        ));
        assert!(samesite_none_incompatible(b"Mozilla/5.0 Chrome/51.0.2704.103 Safari/537.36"));
        assert!(!samesite_none_incompatible(b"Mozilla/5.0 Chrome/120.0 Safari/537.36"));
    }
}
