//! What an Ingress asks of its requests: one typed part per annotation family, decided by
//! translation and shared (`Arc`) by the Ingress's routes. The proxy reads these in its
//! request life cycle (`sluice_proxy`'s `pipeline`), one phase per concern.
//!
//! What belongs to a backend rather than a route (how its endpoints are balanced, its canary)
//! is on [`Backend`](crate::Backend), as ingress-nginx keeps it on the upstream.

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::{Access, Blocks, Cors, HeaderRule, RateLimits, Script, Template};

/// The request-time policy of an Ingress's routes, one part per annotation family (the
/// translate crate's `annotations::*` modules fill them, over the ConfigMap's defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Body size and timeouts (`proxy-body-size`, `proxy-*-timeout`).
    pub limits: Limits,
    /// When to try another endpoint (`proxy-next-upstream*`).
    pub retry: Retry,
    /// Redirects of plain HTTP to HTTPS (`ssl-redirect`, `force-ssl-redirect`, ...).
    pub https: HttpsRedirect,
    /// A redirect instead of proxying (`permanent-redirect`, `temporal-redirect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// What the upstream request carries (`upstream-vhost`, `x-forwarded-prefix`,
    /// `proxy-set-headers`, `connection-proxy-header`, `proxy-http-version`,
    /// `proxy-request-buffering`).
    pub upstream: UpstreamRequest,
    /// Edits of the response head (`custom-headers`, `add-headers`, `hide-headers`,
    /// `proxy-redirect-*`, `proxy-cookie-*`).
    pub response: ResponseRules,
    /// Error pages from the default backend (`custom-http-errors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorPages>,
    /// A copy of each request sent elsewhere (`mirror-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// Access log switches (`enable-access-log`, ConfigMap `skip-access-log-urls`).
    pub log: LogPolicy,
    /// This Ingress's routes issue the session cookie of a sticky backend (`affinity:
    /// cookie`): ingress-nginx's cookie "locations". Routes of other Ingresses to the same
    /// backend honour an existing cookie but never set one.
    pub sets_affinity_cookie: bool,
    /// ConfigMap `block-cidrs`, `block-user-agents`, `block-referers`: refused first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<Arc<Blocks>>,
    /// `enable-cors` and its settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Arc<Cors>>,
    /// Address lists and authentication (`*-source-range`, `auth-type`, `satisfy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Arc<Access>>,
    /// Request and connection limits per client (`limit-rps`, `limit-rpm`,
    /// `limit-connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Arc<RateLimits>>,
    /// The pace of responses (`limit-rate`, `limit-rate-after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// A limit counted in memcached for every replica (`global-rate-limit*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<Arc<crate::GlobalRateLimit>>,
    /// The `if`, `return` and `rewrite` directives of the route's snippets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Arc<Script>>,
}

/// `limit-rate` and `limit-rate-after`: how fast a response is sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bandwidth {
    /// Bytes per second (`limit-rate`, in KiB/s as ingress-nginx renders it: `<N>k`).
    pub rate: u64,
    /// Bytes sent at full speed first (`limit-rate-after`, KiB).
    pub after: u64,
}

impl Default for Policy {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            retry: Retry::default(),
            https: HttpsRedirect::default(),
            redirect: None,
            upstream: UpstreamRequest::default(),
            response: ResponseRules::default(),
            errors: None,
            mirror: None,
            log: LogPolicy::default(),
            sets_affinity_cookie: false,
            block: None,
            cors: None,
            access: None,
            rate: None,
            bandwidth: None,
            global_rate_limit: None,
            script: None,
        }
    }
}

impl Policy {
    /// Whether the HTTP/1.1 fast path may carry this policy's requests: it runs the same life
    /// cycle, but moves bytes socket to socket, so a policy that needs a second upstream
    /// request (error pages, mirrors), a request body held back (buffering), or another
    /// protocol towards the backend is left to the general path.
    ///
    /// Every part is named here, without `..`: a family added to [`Policy`] does not compile
    /// until it says whether the fast path carries it, so a forgotten check can make a route
    /// slower, never unprotected.
    pub fn fast_path_carries(&self) -> bool {
        let Policy {
            limits: _,
            retry: _,
            https: _,
            redirect: _,
            upstream,
            response: _,
            errors,
            mirror,
            log: _,
            sets_affinity_cookie: _,
            // Decided by the life cycle, which both paths run; their answers are local.
            block: _,
            cors: _,
            access,
            rate: _,
            bandwidth,
            global_rate_limit,
            // Its answers are local, decided by the life cycle.
            script: _,
        } = self;
        let UpstreamRequest {
            vhost: _,
            forwarded_prefix: _,
            set_headers: _,
            connection: _,
            http10,
            request_buffering: _,
            body_buffer_size: _,
            keep_underscored_headers: _,
        } = upstream;
        // External authentication needs a second request (the auth service's) too.
        let external = access.as_ref().is_some_and(|a| a.external.is_some());
        // Request bodies are judged on their own (`fast_path_body_limit`): a route whose
        // bodies must stream still has its requests without a body carried here.
        // A paced response needs hyper's body, the fast path copies bytes as they come.
        // A limit counted in memcached asks it first, another request too.
        !*http10
            && errors.is_none()
            && mirror.is_none()
            && !external
            && bandwidth.is_none()
            && global_rate_limit.is_none()
    }

    /// The largest request body, declared by `Content-Length`, that the fast path may read
    /// whole into its connection buffer and send on with the upstream head, on routes of this
    /// policy; 0: none (a request with a body goes to the general path). It is
    /// `client-body-buffer-size`, what NGINX holds in memory, within [`FAST_BODY_MAX`], when
    /// the fast path carries the policy at all and the body may be held before the upstream is
    /// contacted (`proxy-request-buffering: on`, as NGINX does).
    ///
    /// Every part is named here too, without `..`: a family added to [`Policy`] does not
    /// compile until it says whether it must see or stream the body, so a forgotten check can
    /// make a route's bodies slower, never unchecked.
    pub fn fast_path_body_limit(&self) -> u64 {
        let Policy {
            // `proxy-body-size`: the fast path answers 413 as the general path does.
            limits: _,
            // The body is held whole: a retry sends it again, as the general path's held body.
            retry: _,
            // Local answers, decided before the body is read; the body is then read and
            // dropped, as for any local answer.
            https: _,
            redirect: _,
            upstream,
            response: _,
            // Error pages and mirrors (a mirror may copy the body) keep their routes off the
            // fast path altogether (`fast_path_carries`).
            errors: _,
            mirror: _,
            // Decided by the life cycle before the body is read; their answers are local.
            log: _,
            sets_affinity_cookie: _,
            block: _,
            cors: _,
            access: _,
            rate: _,
            bandwidth: _,
            global_rate_limit: _,
            script: _,
        } = self;
        let UpstreamRequest {
            vhost: _,
            forwarded_prefix: _,
            set_headers: _,
            connection: _,
            http10: _,
            request_buffering,
            body_buffer_size,
            keep_underscored_headers: _,
        } = upstream;
        // `proxy-request-buffering: off` streams a body as it arrives: hyper's way.
        if !self.fast_path_carries() || !*request_buffering {
            return 0;
        }
        (*body_buffer_size).min(FAST_BODY_MAX)
    }
}

/// The most of a request body the fast path holds, whatever `client-body-buffer-size` says:
/// the connection's buffer holds it between reads, and a larger body is better streamed by
/// the general path than copied.
pub const FAST_BODY_MAX: u64 = 64 * 1024;

/// Body size and timeouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest request body accepted (`proxy-body-size`); `None` means unlimited (`0`).
    pub max_body_size: Option<u64>,
    /// Time to establish an upstream connection (`proxy-connect-timeout`).
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// Longest wait between two reads from the upstream (`proxy-read-timeout`).
    #[serde(serialize_with = "secs")]
    pub read_timeout: Duration,
    /// Longest wait between two writes to the upstream (`proxy-send-timeout`).
    #[serde(serialize_with = "secs")]
    pub send_timeout: Duration,
}

impl Default for Limits {
    /// 1m body, 5 s connect, 60 s read and send.
    fn default() -> Self {
        Self {
            max_body_size: Some(1024 * 1024),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// When a failed attempt is tried again on another endpoint (NGINX's `proxy_next_upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// The conditions (`proxy-next-upstream`), as [`Retry`]'s `ON_*` bits; 0 is `off`.
    pub on: u16,
    /// Attempts in all, on different endpoints (`proxy-next-upstream-tries`; `u32::MAX` for
    /// `0`, every endpoint).
    pub tries: u32,
    /// Time after which no other endpoint is tried (`proxy-next-upstream-timeout`; `None` for
    /// `0`, no limit).
    #[serde(serialize_with = "opt_secs")]
    pub timeout: Option<Duration>,
}

impl Retry {
    /// `error`: connecting failed, or the connection broke before a response head.
    pub const ON_ERROR: u16 = 1;
    /// `timeout`: connecting or waiting for the response head timed out.
    pub const ON_TIMEOUT: u16 = 1 << 1;
    /// `invalid_header`: the upstream's response head was not valid.
    pub const ON_INVALID_HEADER: u16 = 1 << 2;
    /// `http_500`.
    pub const ON_500: u16 = 1 << 3;
    /// `http_502`.
    pub const ON_502: u16 = 1 << 4;
    /// `http_503`.
    pub const ON_503: u16 = 1 << 5;
    /// `http_504`.
    pub const ON_504: u16 = 1 << 6;
    /// `http_403`.
    pub const ON_403: u16 = 1 << 7;
    /// `http_404`.
    pub const ON_404: u16 = 1 << 8;
    /// `http_429`.
    pub const ON_429: u16 = 1 << 9;
    /// `non_idempotent`: retry POST, LOCK and PATCH too.
    pub const ON_NON_IDEMPOTENT: u16 = 1 << 10;

    /// Whether a response with `status` is tried again elsewhere.
    pub fn on_status(&self, status: u16) -> bool {
        let bit = match status {
            500 => Self::ON_500,
            502 => Self::ON_502,
            503 => Self::ON_503,
            504 => Self::ON_504,
            403 => Self::ON_403,
            404 => Self::ON_404,
            429 => Self::ON_429,
            _ => return false,
        };
        self.on & bit != 0
    }

    /// Whether some response status is tried again elsewhere.
    pub fn on_any_status(&self) -> bool {
        self.on
            & (Self::ON_500
                | Self::ON_502
                | Self::ON_503
                | Self::ON_504
                | Self::ON_403
                | Self::ON_404
                | Self::ON_429)
            != 0
    }
}

impl Default for Retry {
    /// `error timeout`, 3 tries, no time limit.
    fn default() -> Self {
        Self { on: Self::ON_ERROR | Self::ON_TIMEOUT, tries: 3, timeout: None }
    }
}

/// Redirects of plain HTTP to HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HttpsRedirect {
    /// `ssl-redirect`: redirect plain-HTTP requests to HTTPS when the host has TLS.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect them even when it has not.
    pub force_ssl_redirect: bool,
    /// Keep a trailing slash in that redirect (`preserve-trailing-slash`).
    pub preserve_trailing_slash: bool,
    /// Name the HTTPS port in that redirect (`use-port-in-redirects`); else no port, as
    /// clients then use 443.
    pub port_in_redirect: bool,
}

impl Default for HttpsRedirect {
    fn default() -> Self {
        Self {
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            port_in_redirect: false,
        }
    }
}

/// A redirect answered instead of proxying (`temporal-redirect` wins over
/// `permanent-redirect`, as in ingress-nginx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// The `Location`, with NGINX variables (`https://example.com$request_uri`).
    pub location: Template,
    /// 3xx.
    pub code: u16,
    /// `relative-redirects`: a location starting with `/` is sent as it is.
    pub relative: bool,
}

/// What the upstream request carries beyond the forwarding headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamRequest {
    /// `upstream-vhost`: the `Host` sent upstream instead of the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<Template>,
    /// `x-forwarded-prefix`: an `X-Forwarded-Prefix` header with this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_prefix: Option<Template>,
    /// ConfigMap `proxy-set-headers`: headers set on every upstream request (lower-case
    /// names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, Template)>,
    /// `connection-proxy-header`: the `Connection` header sent upstream (not for upgrades).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// `proxy-http-version: "1.0"`: HTTP/1.0 upstream, one request per connection.
    pub http10: bool,
    /// `proxy-request-buffering` (on by default): a request body is read whole (up to a
    /// bound) before the upstream is contacted.
    pub request_buffering: bool,
    /// `client-body-buffer-size` (8k by default): what NGINX holds of a request body in
    /// memory before it spools the rest to a temporary file. Sluice's fast path carries bodies
    /// up to this size ([`Policy::fast_path_body_limit`]); larger ones are the general path's.
    pub body_buffer_size: u64,
    /// Pass request headers whose names hold `_` (ConfigMap `enable-underscores-in-headers`,
    /// or `ignore-invalid-headers: "false"`); NGINX drops them by default.
    pub keep_underscored_headers: bool,
}

impl Default for UpstreamRequest {
    fn default() -> Self {
        Self {
            vhost: None,
            forwarded_prefix: None,
            set_headers: Vec::new(),
            connection: None,
            http10: false,
            request_buffering: true,
            body_buffer_size: 8 * 1024,
            keep_underscored_headers: false,
        }
    }
}

/// Edits of the response head, in ingress-nginx's order: hidden headers removed, `Location`
/// and `Set-Cookie` rewritten, then headers set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseRules {
    /// Headers set on every response (`custom-headers`, ConfigMap `add-headers`), lower-case
    /// names, replacing the upstream's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, Template)>,
    /// Upstream response headers never passed on (ConfigMap `hide-headers`), lower case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
    /// `proxy-redirect-from`/`-to`: a prefix of `Location` and `Refresh` replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<(String, String)>,
    /// `proxy-cookie-domain`: a `Set-Cookie` domain replaced (`from`, `to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<(String, String)>,
    /// `proxy-cookie-path`: a `Set-Cookie` path prefix replaced (`from`, `to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_path: Option<(String, String)>,
    /// Snippets' header directives, in order, after the edits above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HeaderRule>,
}

impl ResponseRules {
    /// True when there is nothing to edit.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.hide.is_empty()
            && self.location.is_none()
            && self.cookie_domain.is_none()
            && self.cookie_path.is_none()
            && self.rules.is_empty()
    }
}

/// Error responses answered by the default backend instead (`custom-http-errors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorPages {
    /// The statuses intercepted, sorted.
    pub codes: Vec<u16>,
    /// Intercept upstream responses too (off with `disable-proxy-intercept-errors`); Sluice's
    /// own error answers are always intercepted.
    pub intercept_upstream: bool,
}

/// A copy of each request sent to another URL, its answer ignored (`mirror-target`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mirror {
    /// The URL, with NGINX variables (`https://mirror.example$request_uri`).
    pub target: Template,
    /// `mirror-host`: the `Host` of the copy (else the target's host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `mirror-request-body` (on): the copy carries the request body.
    pub request_body: bool,
}

/// Access log switches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogPolicy {
    /// `enable-access-log` (and ConfigMap `disable-access-log`).
    pub access_log: bool,
    /// ConfigMap `skip-access-log-urls`: request URIs (path and query) not logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_urls: Vec<String>,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self { access_log: true, skip_urls: Vec::new() }
    }
}

impl LogPolicy {
    /// Whether a request to `uri` (path and query as sent) is written to the access log.
    pub fn logs(&self, uri: &str) -> bool {
        self.access_log && !self.skip_urls.iter().any(|u| u.eq_ignore_ascii_case(uri))
    }
}

/// How a backend's endpoints are chosen (ingress-nginx's balancer of an upstream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Balance {
    /// `load-balance: round_robin` (the default).
    #[default]
    RoundRobin,
    /// `load-balance: ewma`: the lower of two random endpoints' decaying response times.
    Ewma,
    /// `upstream-hash-by`: consistent hashing of a key. (The large variants are boxed:
    /// every backend carries a `Balance`, few of them these.)
    Hash(Box<HashBy>),
    /// `affinity: cookie`: a session cookie pins clients to an endpoint.
    Sticky(Box<Affinity>),
}

/// `upstream-hash-by` and its subset options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HashBy {
    /// The key, with NGINX variables (`$request_uri`, `$http_x_user`).
    pub key: Template,
    /// `upstream-hash-by-subset`: keys map to a group of this many endpoints, one of them at
    /// random per request (`upstream-hash-by-subset-size`, 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<u32>,
}

/// Cookie affinity (`affinity: cookie`, `affinity-mode`, `session-cookie-*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affinity {
    /// `affinity-mode: persistent` (else `balanced`).
    pub persistent: bool,
    /// `session-cookie-name` (`INGRESSCOOKIE`).
    pub name: String,
    /// `session-cookie-path`; else the path of the Ingress rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `session-cookie-domain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `session-cookie-samesite`: `None`, `Lax` or `Strict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samesite: Option<String>,
    /// `session-cookie-conditional-samesite-none`: no `SameSite=None` for browsers that
    /// mishandle it.
    pub conditional_samesite_none: bool,
    /// `session-cookie-secure: "true"`: always `Secure`; `None`: `Secure` on HTTPS requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// `session-cookie-max-age`, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// `session-cookie-expires`, seconds from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// `session-cookie-change-on-failure`: a failed attempt re-pins the client.
    pub change_on_failure: bool,
    /// `session-cookie-partitioned`: the cookie is `Partitioned`.
    pub partitioned: bool,
}

impl Default for Affinity {
    fn default() -> Self {
        Self {
            persistent: false,
            name: "INGRESSCOOKIE".into(),
            path: None,
            domain: None,
            samesite: None,
            conditional_samesite_none: false,
            secure: None,
            max_age: None,
            expires: None,
            change_on_failure: false,
            partitioned: false,
        }
    }
}

/// A canary backend attached to a main backend (ingress-nginx's alternative backend and its
/// traffic shaping policy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Canary {
    /// The canary's backend (an index in the table's backends).
    pub backend: crate::BackendId,
    /// `canary-by-header`: the header that decides (`always`/`never`, or the value below).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `canary-by-header-value`: the value of `header` that sends to the canary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: a regex on the value of `header` (ignored when a value is
    /// set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_pattern: Option<CanaryPattern>,
    /// `canary-by-cookie`: the cookie that decides (`always`/`never`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// `canary-weight`: requests in `weight_total` sent to the canary.
    pub weight: u32,
    /// `canary-weight-total` (100; a smaller total counts as 100, as in ingress-nginx).
    pub weight_total: u32,
    /// `affinity-canary-behavior: sticky` (the default): the canary has the main backend's
    /// affinity, so its clients stay on it.
    pub sticky: bool,
}

/// A `canary-by-header-pattern`: compiled, or `None` when it is not a valid regex (as in
/// ingress-nginx, a request carrying the header then stays on the main backend).
#[derive(Clone, Debug)]
pub struct CanaryPattern {
    /// The compiled pattern.
    pub regex: Option<regex::Regex>,
    /// The pattern as written.
    pub source: String,
}

impl PartialEq for CanaryPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for CanaryPattern {}

impl Serialize for CanaryPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
