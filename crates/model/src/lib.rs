//! Sluice's shared vocabulary, with no I/O.
//!
//! The pipeline is `source -> Snapshot -> translate -> RoutingTable -> proxy`. This crate holds
//! the data that crosses those arrows:
//!
//! - [`Snapshot`]: the Kubernetes objects a source observed (the same types whichever source
//!   filled it: the API server or a directory of manifests), without the fields routing never
//!   reads ([`LeanSlice`], [`LeanService`], [`slim_metadata`]);
//! - [`Settings`]: the controller's own flags that change how objects are read;
//! - [`RoutingTable`]: what the proxy serves, built for lookup ([`RoutingTable::lookup`]);
//! - [`Diagnostic`]: what translation found wrong, per object.

mod access;
mod balance;
mod connections;
mod diagnostics;
#[doc(hidden)]
pub mod fuzzing;
mod hostindex;
mod hostmap;
mod http2;
mod lean;
mod lookup;
mod names;
mod outlier;
mod pathregex;
mod pathtable;
mod policy;
mod ratelimit;
mod realip;
mod record;
mod script;
mod settings;
mod shared;
mod snapshot;
mod table;
mod template;
mod tls;

pub use access::{Access, BasicAuth, Blocks, CacheDurations, Cors, ExternalAuth, IpList, MapKey};
pub use balance::{EwmaSlot, Ring, address_bytes, subset, subset_count};
pub use connections::{ConnectionLimits, HeaderBuffers, UpstreamKeepalive};
pub use diagnostics::{Diagnostic, Reason, Severity};
pub use hostindex::HostIndex;
pub use hostmap::{FastMap, HostMap};
pub use http2::Http2Settings;
pub use lean::{
    LeanService, LeanServicePort, LeanSlice, SERVICE_NAME_LABEL, SliceEndpoint, SlicePort,
    slim_metadata,
};
pub use lookup::{Lookup, normalize_host, normalize_path};
pub use names::{Kind, NamespacedName, ObjectRef};
pub use outlier::{OutlierEvent, OutlierPolicy, OutlierSlot, Outliers};
pub use pathregex::{Location, RegexPaths, Rewrite, RewriteTarget, location_regex};
pub use pathtable::PathTable;
pub use policy::{
    Affinity, Balance, Bandwidth, Canary, CanaryPattern, ErrorPages, FAST_BODY_MAX, HashBy,
    HttpsRedirect, Limits, LogPolicy, Mirror, Policy, Redirect, ResponseRules, Retry,
    UpstreamRequest,
};
pub use ratelimit::{GlobalRateLimit, Permit, Rate, RateLimits, Refused, Zone};
pub use realip::RealIp;
pub use script::{Condition, HeaderRule, Outcome, Pattern, Piece, Script, Step, Test, Then};
pub use settings::Settings;
pub use shared::{ChunkVec, SharedVec};
pub use snapshot::{Chunk, Named, Objects, Snapshot};
pub use table::{
    Backend, BackendId, BalanceState, CookieKeys, Endpoint, HostRoutes, Origin, PathMatch,
    Referrers, Route, RouteId, RoutingTable, Target,
};
pub use template::{Part, Template, Var, Vars};
pub use tls::{
    ClientAuth, ClientVerify, HandshakePolicy, HttpsBehaviour, KeyFormat, PrivateKey, Tls, TlsCert,
    TlsVersions, UpstreamProtocol, UpstreamTls,
};
