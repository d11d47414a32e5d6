//! Snippets: `configuration-snippet`, `server-snippet`, and the ConfigMap's `http-snippet`,
//! `server-snippet` and `location-snippet`. Sluice never renders NGINX text: a snippet is
//! parsed (the `sluice-nginx-conf` crate, NGINX's own tokenizer) and a safe subset of
//! directives becomes typed policy; anything else refuses it.
//!
//! | annotation | meaning |
//! |---|---|
//! | `configuration-snippet` | directives for the Ingress's own routes (NGINX's `location`) |
//! | `server-snippet` | directives for every route of the Ingress's hosts (NGINX's `server`); on a host several Ingresses name, the oldest Ingress's that has one, as ingress-nginx |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `allow-snippet-annotations` | `false` | the annotations above are read at all |
//! | `annotations-risk-level` | `High` | snippets are `Critical`: the annotations are read only when it is `Critical` |
//! | `http-snippet` | — | directives for every route (NGINX's `http`: headers only) |
//! | `server-snippet` | — | directives for every route (every `server`) |
//! | `location-snippet` | — | directives for every route (every `location`) |
//!
//! The gates are ingress-nginx's: annotation snippets need `allow-snippet-annotations: "true"`
//! and `annotations-risk-level: Critical` (case-insensitive; any other value ranks lower);
//! without both, an Ingress carrying one is refused (its routes answer 503). The ConfigMap's
//! snippets are the administrator's and need no gate, as in ingress-nginx.
//!
//! The subset:
//! - `more_set_headers [-s 'codes'] [-t 'types'] 'Name: value'…`: response headers set,
//!   replacing the upstream's, on the statuses and content types given (all by default); an
//!   empty value removes the header;
//! - `more_clear_headers [-s …] [-t …] Name…`: response headers removed (`X-*` a prefix);
//! - `add_header Name value [always]`: a response header set on 200, 201, 204, 206, 301,
//!   302, 303, 304, 307 and 308 responses (every status with `always`);
//! - `proxy_set_header Name value`: a header of the upstream request (an empty value removes
//!   the client's);
//! - `proxy_hide_header Name`: an upstream response header not passed on;
//! - `proxy_connect_timeout`, `proxy_send_timeout`, `proxy_read_timeout` (NGINX times: `30`,
//!   `30s`, `5m`, `1h`…, rounded up to whole seconds) and `client_max_body_size` (`0`:
//!   unlimited);
//! - `return code [text]`, `return code URL` (301, 302, 303, 307, 308), `return URL` (302);
//! - `rewrite regex replacement [redirect|permanent|last|break]`, the regex on `$uri`: it
//!   redirects when the replacement starts with `http://`, `https://` or `$scheme`, or the
//!   flag is `redirect` (302) or `permanent` (301); otherwise the replacement becomes the URI
//!   sent upstream (`break`, `last`: the rewrites stop; no flag: the next ones see the new
//!   URI). `$1`…`$9` are the regex's captures; the request's query is kept (after the
//!   replacement's own) unless the replacement ends with `?`;
//! - `if (condition) { … }` with `return`, `rewrite` or a header directive
//!   inside, on a variable Sluice knows (`$http_*`, `$host`, `$request_uri`, `$scheme`,
//!   `$request_method`, …): `($var)`, `=`, `!=`, `~`, `~*`, `!~`, `!~*`.
//!
//! Values may carry the NGINX variables of [`sluice_model::Template`]; an unknown variable
//! refuses the snippet. Regexes are Rust's `regex`: a PCRE feature it lacks (look-around,
//! backreferences) refuses the snippet.
//!
//! - `deny ADDRESS;`… (then optionally `allow all;`), or `allow ADDRESS;`… `deny all;`: the
//!   address lists of `denylist-source-range` and `allowlist-source-range` (403); after an
//!   allow list the Ingress already has, they are never reached (NGINX's first match wins),
//!   and a server snippet's do not reach routes with lists of their own;
//! - in `server-snippet`, `location = /path { … }` and `location ~ regex { … }` (`~*`) that
//!   answer by themselves: `return`, `deny all` (403, after a `return`) and header
//!   directives, for the requests whose `$uri` matches, whatever Ingress path they were for
//!   (NGINX prefers exact and regex locations to the Ingress's prefix paths).
//!
//! No-ops: `server_tokens off;` (Sluice's `Server` header never names a version);
//! `proxy_set_header Upgrade …` and `proxy_set_header Connection …`, the WebSocket recipe,
//! with a warning (Sluice passes upgrades itself). Headers that frame the message
//! (`Content-Length`, `Transfer-Encoding`, `Connection`, …) are Sluice's own: a directive
//! naming one is refused, and a wildcard never matches one.
//!
//! In a `server-snippet` (annotation or ConfigMap) or `http-snippet`, `proxy_set_header`, the
//! timeouts and `client_max_body_size` are accepted with a warning and have no effect: every
//! location ingress-nginx renders sets its own, so they had none there either. `if`,
//! `return` and `rewrite` are refused in `http-snippet`, as NGINX refuses them there.
//!
//! Refused: every other directive (`set`, `auth_request`, `proxy_pass`, Lua, ModSecurity, …),
//! prefix locations and locations that would reach a backend, locations outside
//! `server-snippet`, other orders of `allow` and `deny`, `return 444`, file tests in `if`,
//! and any syntax error. A refused
//! annotation makes the Ingress's routes answer 503 (`SnippetRefused`, naming the directive
//! and its line); a refused ConfigMap snippet is reported and ignored, as before.
//!
//! Where Sluice differs: `add_header` replaces an upstream header of the same name (NGINX
//! adds a second one); header directives of every level accumulate (NGINX's `add_header` of
//! a location replaces the server's instead of adding to them); `rewrite … last` is `break`:
//! the request stays on its route rather than searching the locations again with the new
//! URI; after an internal rewrite, variables (`$uri`, `$request_uri`) keep the request's
//! values.

use std::sync::Arc;
use std::time::Duration;

use sluice_model::{
    Condition, Diagnostic, HeaderRule, IpList, ObjectRef, Pattern, Piece, Policy, Reason, Step,
    Template, Test, Then, Var,
};
use sluice_nginx_conf::{Directive, Word};

use super::{Annotations, Effect, Family};

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "snippet",
    annotations: &[("configuration-snippet", Effect::Applied), ("server-snippet", Effect::Applied)],
    configmap_keys: &[
        "allow-snippet-annotations",
        "annotations-risk-level",
        "http-snippet",
        "location-snippet",
        "server-snippet",
    ],
};

/// Where a snippet sits in NGINX's configuration: what it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `http-snippet`.
    Http,
    /// `server-snippet`.
    Server,
    /// `configuration-snippet`, `location-snippet`.
    Location,
}

/// What a snippet's directives become.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snippet {
    /// Response header rules, in order.
    pub rules: Vec<sluice_model::HeaderRule>,
    /// Upstream response headers hidden (lower case).
    pub hide: Vec<String>,
    /// Upstream request headers set (lower case).
    pub upstream: Vec<(String, Template)>,
    /// `proxy_connect_timeout`, `proxy_send_timeout`, `proxy_read_timeout`.
    pub timeouts: [Option<Duration>; 3],
    /// `client_max_body_size` (`Some(None)`: unlimited).
    pub body: Option<Option<u64>>,
    /// `if`, `return`, `rewrite`.
    pub steps: Vec<Step>,
    /// `deny ADDRESS;`…: client addresses refused (403).
    pub deny: IpList,
    /// `allow ADDRESS;`… `deny all;`: the only client addresses let through.
    pub allow: IpList,
    /// The `allow` and `deny` directives in order (allow?, operand, line), read at the end.
    access_rules: Vec<(bool, String, u32)>,
}

impl Snippet {
    /// Applies the snippet over `p`: after what `p` has (the ConfigMap's, the other
    /// families'), as NGINX runs outer levels' directives first.
    pub fn apply(&self, p: &mut Policy, relative: bool) {
        p.response.rules.extend(self.rules.iter().cloned());
        for h in &self.hide {
            if !p.response.hide.contains(h) {
                p.response.hide.push(h.clone());
            }
        }
        for (name, value) in &self.upstream {
            p.upstream.set_headers.retain(|(n, _)| n != name);
            p.upstream.set_headers.push((name.clone(), value.clone()));
        }
        let [connect, send, read] = self.timeouts;
        if let Some(t) = connect {
            p.limits.connect_timeout = t;
        }
        if let Some(t) = send {
            p.limits.send_timeout = t;
        }
        if let Some(t) = read {
            p.limits.read_timeout = t;
        }
        if let Some(body) = self.body {
            p.limits.max_body_size = body;
        }
        self.access(p, false);
        if !self.steps.is_empty() {
            let mut script = p.script.as_deref().cloned().unwrap_or_default();
            script.steps.extend(self.steps.iter().cloned());
            script.relative = relative;
            p.script = Some(Arc::new(script));
        }
    }

    /// Applies a server snippet over a route's policy `p`: its rules and steps come before
    /// the route's own (NGINX's server block runs before its locations).
    pub fn apply_server(&self, p: &mut Policy, relative: bool) {
        self.access(p, true);
        let rules = std::mem::take(&mut p.response.rules);
        p.response.rules = self.rules.iter().cloned().chain(rules).collect();
        for h in &self.hide {
            if !p.response.hide.contains(h) {
                p.response.hide.push(h.clone());
            }
        }
        if !self.steps.is_empty() {
            let mut script = p.script.as_deref().cloned().unwrap_or_default();
            script.steps = self.steps.iter().cloned().chain(script.steps).collect();
            script.relative = relative;
            p.script = Some(Arc::new(script));
        }
    }
}

impl Snippet {
    /// The address lists over `p`'s, as NGINX's access module runs them (first match wins):
    /// after an allow list (`allow …; deny all;` of `allowlist-source-range` or the
    /// ConfigMap's), nothing more is reached; a location with lists of its own does not
    /// inherit a server's (`server`).
    fn access(&self, p: &mut Policy, server: bool) {
        if self.deny.is_empty() && self.allow.is_empty() {
            return;
        }
        let mut access = p.access.as_deref().cloned().unwrap_or_default();
        let own = !access.deny.is_empty() || !access.allow.is_empty();
        if !access.allow.is_empty() || (server && own) {
            return;
        }
        for net in &self.deny.0 {
            if !access.deny.0.contains(net) {
                access.deny.0.push(*net);
            }
        }
        access.allow = self.allow.clone();
        p.access = Some(Arc::new(access));
    }
}

/// The lists of a snippet's `allow` and `deny` directives, when their order is one the lists
/// express: addresses denied (then, optionally, `allow all`), or addresses allowed then
/// `deny all`.
fn access_lists(rules: &[(bool, String, u32)]) -> Result<(IpList, IpList), String> {
    let Some(&(_, _, first_line)) = rules.first() else {
        return Ok(Default::default());
    };
    let list = |entries: &[(bool, String, u32)]| -> Result<IpList, String> {
        let mut nets = IpList::default();
        for (_, operand, line) in entries {
            let one = IpList::parse(operand).map_err(|e| format!("line {line}: {e}"))?;
            for net in one.0 {
                if !nets.0.contains(&net) {
                    nets.0.push(net);
                }
            }
        }
        Ok(nets)
    };
    let all = |r: &(bool, String, u32), allow: bool| r.0 == allow && r.1 == "all";
    match rules {
        [rest @ .., last] if all(last, false) && rest.iter().all(|r| r.0 && r.1 != "all") => {
            if rest.is_empty() {
                return Err(format!(
                    "line {first_line}: deny all alone refuses every request; use return 403"
                ));
            }
            Ok((IpList::default(), list(rest)?))
        }
        [rest @ .., last] if all(last, true) && rest.iter().all(|r| !r.0 && r.1 != "all") => {
            Ok((list(rest)?, IpList::default()))
        }
        _ if rules.iter().all(|r| !r.0 && r.1 != "all") => Ok((list(rules)?, IpList::default())),
        _ => Err(format!(
            "line {first_line}: allow and deny in an order Sluice's address lists do not express \
             (addresses denied, or addresses allowed then deny all)"
        )),
    }
}

/// Whether the ConfigMap lets annotation snippets be read: `allow-snippet-annotations` and
/// `annotations-risk-level: Critical`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// `allow-snippet-annotations`.
    pub allow: bool,
    /// `annotations-risk-level` is `Critical`.
    pub critical: bool,
}

impl Gates {
    /// Both open.
    pub fn open(&self) -> bool {
        self.allow && self.critical
    }

    /// What keeps them closed, for the diagnostic.
    fn closed_by(&self) -> String {
        let mut keys = Vec::new();
        if !self.allow {
            keys.push("allow-snippet-annotations: \"true\"");
        }
        if !self.critical {
            keys.push("annotations-risk-level: Critical");
        }
        keys.join(" and ")
    }
}

/// Reads ConfigMap key `key` of this family into `gates`, or the ConfigMap snippet into
/// `out` (its warnings in `notes`). `None` for another key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    gates: &mut Gates,
    policy: &mut Policy,
    relative: bool,
    notes: &mut Vec<String>,
) -> Option<Result<(), String>> {
    let level = match key {
        "allow-snippet-annotations" => {
            return Some(super::parse_bool(value).map(|b| gates.allow = b));
        }
        "annotations-risk-level" => {
            // ingress-nginx's `StringRiskToRisk`: case-insensitive, anything unknown is Low.
            gates.critical = value.trim().eq_ignore_ascii_case("critical");
            return Some(Ok(()));
        }
        "http-snippet" => Level::Http,
        "server-snippet" => Level::Server,
        "location-snippet" => Level::Location,
        _ => return None,
    };
    Some(read(value, level, notes).map(|s| s.apply(policy, relative)))
}

/// What an Ingress's snippet annotations give: refusal reason (the routes answer 503), its
/// server snippet (for the hosts), over `p` its configuration snippet.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    gates: Gates,
    relative: bool,
    p: &mut Policy,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Arc<Snippet>>, String> {
    let (config, server) = (a.get("configuration-snippet"), a.get("server-snippet"));
    let mut refused = None;
    let mut server_snippet = None;
    for (name, value, level) in [
        ("server-snippet", server, Level::Server),
        ("configuration-snippet", config, Level::Location),
    ] {
        let Some(value) = value else { continue };
        let why = if !gates.open() {
            format!(
                "{}/{name} holds NGINX configuration, which the controller's ConfigMap does not \
                 allow (set {} to have Sluice read its safe subset); the Ingress's routes \
                 answer 503 until the annotation is removed",
                a.prefix,
                gates.closed_by()
            )
        } else {
            let mut notes = Vec::new();
            match read(value, level, &mut notes) {
                Ok(snippet) => {
                    for note in notes {
                        d.push(Diagnostic::warning(
                            object.clone(),
                            Reason::UnsupportedFeature,
                            format!("{}/{name}: {note}", a.prefix),
                        ));
                    }
                    if level == Level::Server {
                        server_snippet = Some(Arc::new(snippet));
                    } else {
                        snippet.apply(p, relative);
                    }
                    continue;
                }
                Err(why) => format!(
                    "{}/{name}: {why}; the Ingress's routes answer 503 until the snippet is \
                     changed",
                    a.prefix
                ),
            }
        };
        d.push(Diagnostic::error(object.clone(), Reason::SnippetRefused, why.clone()));
        refused.get_or_insert(why);
    }
    match refused {
        Some(why) => Err(why),
        None => Ok(server_snippet),
    }
}

/// Parses a snippet at `level` into its typed policy; `Err` names the first directive
/// outside the subset, or the syntax error, with its line. Directives accepted without effect
/// are noted in `notes`.
pub fn read(text: &str, level: Level, notes: &mut Vec<String>) -> Result<Snippet, String> {
    let tree = sluice_nginx_conf::parse(text).map_err(|e| {
        // A Lua block is Lua, not NGINX syntax: say what it is rather than where it broke.
        match text.lines().position(|l| l.contains("_by_lua_block")) {
            Some(i) => format!("line {}: Lua blocks are not supported", i + 1),
            None => format!("{e} (NGINX syntax)"),
        }
    })?;
    let mut out = Snippet::default();
    for d in &tree {
        directive(d, level, None, &mut out, notes).map_err(|why| at(d, why))?;
    }
    (out.deny, out.allow) = access_lists(&std::mem::take(&mut out.access_rules))?;
    Ok(out)
}

fn at(d: &Directive, why: String) -> String {
    if why.starts_with("line ") { why } else { format!("line {}: {}: {why}", d.line, d.name) }
}

/// One directive (inside `if (when)` when `when` is set).
fn directive(
    d: &Directive,
    level: Level,
    when: Option<&Condition>,
    out: &mut Snippet,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let name = d.name.as_str();
    if name == "location" && level == Level::Server && when.is_none() {
        return location(d, out);
    }
    if d.block.is_some() && name != "if" {
        return Err(match name {
            "location" => "location blocks are read only in server-snippet".into(),
            _ => "not in the subset Sluice reads".into(),
        });
    }
    let args = d.args.as_slice();
    let server_wide = level != Level::Location;
    match name {
        "more_set_headers" | "more_clear_headers" => {
            let set = name == "more_set_headers";
            let ((statuses, types), specs) = headers_more_options(args)?;
            if specs.is_empty() {
                return Err("names no header".into());
            }
            for spec in specs {
                let (hname, value) = if set {
                    let (n, v) = spec
                        .split_once(':')
                        .ok_or_else(|| format!("{spec:?} is not \"Name: value\""))?;
                    let v = v.trim_start();
                    let value = (!v.is_empty()).then(|| template(v)).transpose()?;
                    (n.trim(), value)
                } else {
                    (spec.split(':').next().unwrap_or_default().trim(), None)
                };
                let (hname, wildcard) = match hname.strip_suffix('*') {
                    Some(prefix) if !set => (prefix, true),
                    _ => (hname, false),
                };
                header_name(hname, wildcard)?;
                out.rules.push(HeaderRule {
                    name: hname.to_ascii_lowercase(),
                    wildcard,
                    value,
                    statuses: statuses.clone(),
                    content_types: types.clone(),
                    when: when.cloned(),
                });
            }
        }
        "add_header" => {
            let always = match args {
                [_, _] => false,
                [_, _, a] if a.value == "always" => true,
                _ => return Err("takes a name, a value and optionally \"always\"".into()),
            };
            header_name(&args[0].value, false)?;
            // NGINX adds nothing for an empty value.
            if !args[1].value.is_empty() {
                out.rules.push(HeaderRule {
                    name: args[0].value.to_ascii_lowercase(),
                    wildcard: false,
                    value: Some(template(&args[1].value)?),
                    statuses: if always {
                        Vec::new()
                    } else {
                        HeaderRule::ADD_HEADER_STATUSES.to_vec()
                    },
                    content_types: Vec::new(),
                    when: when.cloned(),
                });
            }
        }
        "proxy_hide_header" if when.is_none() => {
            let [h] = args else { return Err("takes one header name".into()) };
            header_name(&h.value, false)?;
            out.hide.push(h.value.to_ascii_lowercase());
        }
        "proxy_set_header" if when.is_none() => {
            let [h, v] = args else { return Err("takes a name and a value".into()) };
            if ["upgrade", "connection"].iter().any(|n| h.value.eq_ignore_ascii_case(n)) {
                // The WebSocket recipe (`Upgrade $http_upgrade`, `Connection "upgrade"`):
                // Sluice passes upgrades itself, and owns the connection's headers.
                notes.push(format!(
                    "line {}: proxy_set_header {}: no effect, Sluice passes upgrades (WebSocket) \
                     itself",
                    d.line, h.value
                ));
                return Ok(());
            }
            header_name(&h.value, false)?;
            let value = template(&v.value)?;
            if server_wide {
                notes.push(no_effect(d));
            } else {
                out.upstream.push((h.value.to_ascii_lowercase(), value));
            }
        }
        "proxy_connect_timeout" | "proxy_send_timeout" | "proxy_read_timeout"
            if when.is_none() =>
        {
            let [v] = args else { return Err("takes one time".into()) };
            let t = time(&v.value)?;
            if server_wide {
                notes.push(no_effect(d));
            } else {
                let i = match name {
                    "proxy_connect_timeout" => 0,
                    "proxy_send_timeout" => 1,
                    _ => 2,
                };
                out.timeouts[i] = Some(t);
            }
        }
        "client_max_body_size" if when.is_none() => {
            let [v] = args else { return Err("takes one size".into()) };
            let size = super::proxy::parse_size(&v.value)?;
            if server_wide {
                notes.push(no_effect(d));
            } else {
                out.body = Some(size);
            }
        }
        "allow" | "deny" if when.is_none() => {
            let [operand] = args else { return Err("takes one address, range or all".into()) };
            out.access_rules.push((name == "allow", operand.value.clone(), d.line));
        }
        "server_tokens" if when.is_none() => match args {
            [v] if v.value == "off" => {}
            _ => return Err("only \"server_tokens off\" is read (a no-op: Sluice's Server header names no version)".into()),
        },
        "return" | "rewrite" | "if" if level == Level::Http => {
            return Err("is not allowed in http-snippet (NGINX's http block)".into());
        }
        "return" => {
            let step = return_step(args)?;
            push_step(out, when, step);
        }
        "rewrite" => {
            let step = rewrite_step(args)?;
            push_step(out, when, step);
        }
        "if" if when.is_none() => {
            let Some(block) = &d.block else { return Err("needs a block".into()) };
            let condition = condition(args)?;
            let mut inner = Snippet::default();
            for inside in block {
                if !matches!(
                    inside.name.as_str(),
                    "return" | "rewrite" | "more_set_headers" | "more_clear_headers" | "add_header"
                ) {
                    return Err(at(
                        inside,
                        "only return, rewrite and header directives are read inside if".into(),
                    ));
                }
                directive(inside, level, Some(&condition), &mut inner, notes)
                    .map_err(|why| at(inside, why))?;
            }
            out.rules.extend(inner.rules);
            out.steps.extend(inner.steps);
        }
        _ => return Err("not in the subset Sluice reads".into()),
    }
    Ok(())
}

/// A `location` of a server snippet that answers by itself: `location = /path` or
/// `location ~ regex` (`~*`), holding `return`, `deny all` and header directives. It becomes
/// an `if` on `$uri`: NGINX picks an exact location, and a matching regex one, over the
/// Ingress's prefix paths, and such a location never reaches a backend.
fn location(d: &Directive, out: &mut Snippet) -> Result<(), String> {
    let Some(block) = &d.block else { return Err("needs a block".into()) };
    let test = match d.args.as_slice() {
        [op, path] if op.value == "=" => {
            Test::Equals { text: Template::literal(&path.value), negate: false }
        }
        [op, re] if op.value == "~" => {
            Test::Matches { pattern: pattern(&re.value, false)?, negate: false }
        }
        [op, re] if op.value == "~*" => {
            Test::Matches { pattern: pattern(&re.value, true)?, negate: false }
        }
        _ => {
            return Err("only exact (=) and regex (~, ~*) locations are read; a prefix location \
                        would compete with the Ingress's paths"
                .into());
        }
    };
    let when = Condition { var: Var::Uri, test };
    let mut inner = Snippet::default();
    let (mut answers, mut deny_all) = (false, false);
    for inside in block {
        match inside.name.as_str() {
            "deny" if matches!(inside.args.as_slice(), [a] if a.value == "all") => deny_all = true,
            "return" => {
                answers = true;
                inner.steps.push(return_step(&inside.args).map_err(|why| at(inside, why))?);
            }
            "more_set_headers" | "more_clear_headers" | "add_header" | "server_tokens" => {
                directive(inside, Level::Location, Some(&when), &mut inner, &mut Vec::new())
                    .map_err(|why| at(inside, why))?;
            }
            _ => {
                return Err(at(
                    inside,
                    "only return, deny all and header directives are read inside a location".into(),
                ));
            }
        }
    }
    if !answers && !deny_all {
        return Err("a location that reaches a backend is not supported (Ingress paths are \
                    Sluice's locations); it must answer with return or deny all"
            .into());
    }
    // The rewrite phase (`return`) runs before the access phase (`deny`).
    if deny_all {
        inner.steps.push(Step::Return { code: 403, text: None });
    }
    out.rules.extend(inner.rules);
    out.steps.push(Step::If { when, then: inner.steps });
    Ok(())
}

fn no_effect(d: &Directive) -> String {
    format!(
        "line {}: {} in a server or http snippet has no effect (every location sets its own, \
         in ingress-nginx too); use configuration-snippet or the annotation",
        d.line, d.name
    )
}

/// Steps inside an `if` are grouped under it (one `If` per directive keeps their order).
fn push_step(out: &mut Snippet, when: Option<&Condition>, step: Step) {
    match when {
        Some(c) => out.steps.push(Step::If { when: c.clone(), then: vec![step] }),
        None => out.steps.push(step),
    }
}

/// headers-more's filters: the statuses of `-s` and the content types of `-t`.
type Filters = (Vec<u16>, Vec<String>);

/// headers-more's options (`-s 'codes'`, `-t 'types'`) and the header specs.
fn headers_more_options(args: &[Word]) -> Result<(Filters, Vec<&str>), String> {
    let (mut statuses, mut types, mut specs) = (Vec::new(), Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.value.as_str() {
            "-s" => {
                let v = it.next().ok_or("-s needs status codes")?;
                for code in v.value.split_whitespace() {
                    let c: u16 = code
                        .parse()
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .ok_or_else(|| format!("-s: {code:?} is not a status code"))?;
                    statuses.push(c);
                }
            }
            "-t" => {
                let v = it.next().ok_or("-t needs content types")?;
                types.extend(v.value.split_whitespace().map(|t| t.to_ascii_lowercase()));
            }
            o if o.starts_with('-') && !a.quoted => {
                return Err(format!("option {o} is not supported"));
            }
            _ => specs.push(a.value.as_str()),
        }
    }
    Ok(((statuses, types), specs))
}

/// A header name (a token; `wildcard`: the prefix of one, possibly empty), not one that
/// frames the message (Sluice's own: a wrong `Content-Length` would desynchronise peers).
fn header_name(name: &str, wildcard: bool) -> Result<(), String> {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if (name.is_empty() && !wildcard) || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if !wildcard && HeaderRule::FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err(format!("{name} frames the message; Sluice sets it itself"));
    }
    Ok(())
}

/// A value with NGINX variables.
fn template(value: &str) -> Result<Template, String> {
    Template::parse(value)
}

/// An NGINX time (`30`, `30s`, `500ms`, `5m`, `1h`, `1d`, `1m30s`), rounded up to seconds.
fn time(value: &str) -> Result<Duration, String> {
    let t = super::parse_time(value)?;
    if t.is_zero() {
        return Err(format!("{value:?}: a timeout of 0 is not allowed"));
    }
    Ok(Duration::from_secs(t.as_millis().div_ceil(1000) as u64))
}

/// `return code [text]`, `return URL`.
fn return_step(args: &[Word]) -> Result<Step, String> {
    let code = |w: &Word| -> Result<u16, String> {
        match w.value.parse::<u16>() {
            Ok(444) => Err("444 (close the connection) is not supported".into()),
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("{:?} is not a status code", w.value)),
        }
    };
    match args {
        [w] if w.value.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Step::Return { code: code(w)?, text: None })
        }
        [url] if is_redirect_url(&url.value) => {
            Ok(Step::Return { code: 302, text: Some(template(&url.value)?) })
        }
        [c, text] => Ok(Step::Return { code: code(c)?, text: Some(template(&text.value)?) }),
        _ => Err("takes a status code and optionally a text or URL, or a URL".into()),
    }
}

fn is_redirect_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("$scheme")
}

/// A regex of `rewrite` or `if`, with Rust's regex crate.
fn pattern(source: &str, case_insensitive: bool) -> Result<Pattern, String> {
    let full = if case_insensitive { format!("(?i){source}") } else { source.to_string() };
    regex::Regex::new(&full).map(|regex| Pattern { regex }).map_err(|e| {
        let lacks = source.contains("(?=")
            || source.contains("(?!")
            || source.contains("(?<=")
            || source.contains("(?<!")
            || source.bytes().zip(source.bytes().skip(1)).any(|(a, b)| a == b'\\' && b.is_ascii_digit() && b != b'0');
        if lacks {
            format!("regex {source:?} uses look-around or a backreference, PCRE features Rust's regex lacks")
        } else {
            format!("regex {source:?} is not valid: {}", e.to_string().lines().last().unwrap_or(""))
        }
    })
}

/// `rewrite regex replacement [flag]`.
fn rewrite_step(args: &[Word]) -> Result<Step, String> {
    let (re, replacement, flag) = match args {
        [re, r] => (re, r, None),
        [re, r, f] => (re, r, Some(f.value.as_str())),
        _ => return Err("takes a regex, a replacement and optionally a flag".into()),
    };
    let then = match flag {
        Some("permanent") => Then::Redirect(301),
        Some("redirect") => Then::Redirect(302),
        // NGINX: a replacement that is a URL redirects whatever the flag.
        _ if is_redirect_url(&replacement.value) => Then::Redirect(302),
        Some("last" | "break") => Then::Stop,
        None => Then::Continue,
        Some(f) => return Err(format!("{f:?} is not a flag (last, break, redirect, permanent)")),
    };
    let pattern = pattern(&re.value, false)?;
    let mut text = replacement.value.as_str();
    let append_args = match text.strip_suffix('?') {
        Some(t) => {
            text = t;
            false
        }
        None => true,
    };
    Ok(Step::Rewrite { pattern, replacement: pieces(text)?, then, append_args })
}

/// A replacement's text, variables and `$1`..`$9` captures.
fn pieces(text: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut literal = String::new();
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let (digit, len) = match after.as_bytes() {
            [d, ..] if d.is_ascii_digit() => (Some(d - b'0'), 1),
            [b'{', d, b'}', ..] if d.is_ascii_digit() => (Some(d - b'0'), 3),
            _ => (None, 0),
        };
        match digit {
            Some(n) => {
                literal.push_str(&rest[..i]);
                if !literal.is_empty() {
                    out.push(Piece::Text(template(&std::mem::take(&mut literal))?));
                }
                out.push(Piece::Capture(n as usize));
                rest = &after[len..];
            }
            None => {
                literal.push_str(&rest[..=i]);
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Text(template(&literal)?));
    }
    Ok(out)
}

/// The condition of an `if`: its words without the parentheses.
fn condition(args: &[Word]) -> Result<Condition, String> {
    let mut words: Vec<(String, bool)> = args.iter().map(|w| (w.value.clone(), w.quoted)).collect();
    match words.first_mut() {
        Some((first, false)) if first.starts_with('(') => {
            first.remove(0);
            if first.is_empty() {
                words.remove(0);
            }
        }
        _ => return Err("the condition must be in parentheses".into()),
    }
    match words.last_mut() {
        Some((last, false)) if last.ends_with(')') => {
            last.pop();
            if last.is_empty() {
                words.pop();
            }
        }
        _ => return Err("the condition must be in parentheses".into()),
    }
    if words.first().is_some_and(|(w, _)| w.starts_with('-') || w.starts_with("!-")) {
        return Err("file tests (-f, -d, -e, -x) are not supported".into());
    }
    let var = |w: &str| -> Result<Var, String> {
        let name = w.strip_prefix('$').ok_or_else(|| {
            format!("{w:?}: only tests of a variable are supported (file tests are not)")
        })?;
        let name = name.strip_prefix('{').and_then(|n| n.strip_suffix('}')).unwrap_or(name);
        Var::parse(name).ok_or_else(|| format!("${name} is not an NGINX variable Sluice knows"))
    };
    match words.as_slice() {
        [(v, _)] => Ok(Condition { var: var(v)?, test: Test::Set }),
        [(v, _), (op, _), (operand, _)] => {
            let var = var(v)?;
            let test = match op.as_str() {
                "=" => Test::Equals { text: template(operand)?, negate: false },
                "!=" => Test::Equals { text: template(operand)?, negate: true },
                "~" => Test::Matches { pattern: pattern(operand, false)?, negate: false },
                "~*" => Test::Matches { pattern: pattern(operand, true)?, negate: false },
                "!~" => Test::Matches { pattern: pattern(operand, false)?, negate: true },
                "!~*" => Test::Matches { pattern: pattern(operand, true)?, negate: true },
                _ => return Err(format!("{op:?} is not an operator of if")),
            };
            Ok(Condition { var, test })
        }
        _ => Err("the condition is not \"($var)\" or \"($var op value)\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Snippet {
        read(text, Level::Location, &mut Vec::new()).unwrap()
    }

    fn err(text: &str) -> String {
        read(text, Level::Location, &mut Vec::new()).unwrap_err()
    }

    #[test]
    fn more_set_headers_with_filters() {
        let s = ok("more_set_headers -s '404 500' -t 'text/html' 'X-A: $host' \"X-B: 1\";\n\
                    more_set_headers 'X-Empty:';");
        assert_eq!(s.rules.len(), 3);
        assert_eq!(s.rules[0].name, "x-a");
        assert_eq!(s.rules[0].statuses, vec![404, 500]);
        assert_eq!(s.rules[0].content_types, vec!["text/html"]);
        assert_eq!(s.rules[0].value.as_ref().unwrap().to_string(), "${host}");
        assert_eq!(s.rules[1].name, "x-b");
        assert!(s.rules[2].value.is_none(), "an empty value removes the header");
        assert!(err("more_set_headers 'NoColon';").contains("line 1: more_set_headers"));
        assert!(err("more_set_headers -x 'A: b';").contains("option -x"));
        assert!(err("more_set_headers 'Content-Length: 0';").contains("frames the message"));
        assert!(err("more_clear_headers Transfer-Encoding;").contains("frames the message"));
        assert!(err("add_header Connection close;").contains("frames the message"));
        let mut notes = Vec::new();
        let s = read(
            "proxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection upgrade;",
            Level::Location,
            &mut notes,
        )
        .unwrap();
        assert!(s.upstream.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(err("proxy_set_header Content-Length '';").contains("frames the message"));
    }

    #[test]
    fn more_clear_headers_with_wildcards() {
        let s = ok("more_clear_headers Server 'X-Debug-*';");
        assert_eq!((s.rules[0].name.as_str(), s.rules[0].wildcard), ("server", false));
        assert_eq!((s.rules[1].name.as_str(), s.rules[1].wildcard), ("x-debug-", true));
        assert!(s.rules.iter().all(|r| r.value.is_none()));
    }

    #[test]
    fn add_header_applies_to_success_statuses_unless_always() {
        let s = ok("add_header X-A 1;\nadd_header X-B 2 always;\nadd_header X-C '';");
        assert_eq!(s.rules.len(), 2, "an empty add_header adds nothing");
        assert_eq!(s.rules[0].statuses, HeaderRule::ADD_HEADER_STATUSES);
        assert!(s.rules[1].statuses.is_empty());
        assert!(err("add_header X-A 1 sometimes;").contains("line 1: add_header"));
    }

    #[test]
    fn upstream_headers_hidden_headers_timeouts_and_body_size() {
        let s = ok("proxy_set_header X-Real-IP $remote_addr;\nproxy_hide_header X-Powered-By;\n\
                    proxy_read_timeout 5m;\nproxy_send_timeout 30;\nproxy_connect_timeout 1500ms;\n\
                    client_max_body_size 0;");
        assert_eq!(s.upstream[0].0, "x-real-ip");
        assert_eq!(s.hide, vec!["x-powered-by"]);
        assert_eq!(
            s.timeouts,
            [
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(30)),
                Some(Duration::from_secs(300))
            ]
        );
        assert_eq!(s.body, Some(None));
        assert_eq!(ok("client_max_body_size 10m;").body, Some(Some(10 << 20)));
        assert!(err("proxy_read_timeout forever;").contains("line 1: proxy_read_timeout"));
        assert_eq!(time("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn server_level_upstream_settings_have_no_effect() {
        let mut notes = Vec::new();
        let s =
            read("proxy_read_timeout 300;\nadd_header A b;", Level::Server, &mut notes).unwrap();
        assert_eq!(s.timeouts, [None; 3]);
        assert_eq!(s.rules.len(), 1);
        assert!(notes[0].starts_with("line 1: proxy_read_timeout"), "{notes:?}");
        let e = read("return 403;", Level::Http, &mut Vec::new()).unwrap_err();
        assert!(e.contains("http-snippet"), "{e}");
    }

    #[test]
    fn server_snippet_locations_that_answer() {
        let server = |text: &str| read(text, Level::Server, &mut Vec::new());
        let s = server(
            "location = /.well-known/carddav {\n  return 301 https://$host/dav;\n}\n\
             location ~* ^/(ping|ready) {\n  deny all;\n  return 404;\n}\n\
             location ~ ^/private/ {\n  add_header X-Private 1 always;\n  deny all;\n}",
        )
        .unwrap();
        assert_eq!(s.steps.len(), 3);
        let Step::If { when, then } = &s.steps[1] else { panic!() };
        assert_eq!(when.var, Var::Uri);
        assert_eq!(then[0], Step::Return { code: 404, text: None }, "return before deny");
        let Step::If { then, .. } = &s.steps[2] else { panic!() };
        assert_eq!(then, &[Step::Return { code: 403, text: None }]);
        assert!(s.rules[0].when.is_some());
        let e = server("location /x { return 403; }").unwrap_err();
        assert!(e.starts_with("line 1: location: only exact"), "{e}");
        let e = server("location = /x {\n  proxy_pass http://x;\n}").unwrap_err();
        assert!(e.starts_with("line 2: proxy_pass: only return"), "{e}");
        let e = server("location = /robots.txt { access_log off; }").unwrap_err();
        assert!(e.contains("access_log"), "{e}");
        let e = server("location = /x { add_header A b; }").unwrap_err();
        assert!(e.contains("reaches a backend"), "{e}");
    }

    #[test]
    fn allow_and_deny_become_address_lists() {
        let s = ok("deny 192.0.2.1;\ndeny 198.51.100.0/24;");
        assert_eq!(s.deny, IpList::parse("192.0.2.1,198.51.100.0/24").unwrap());
        assert!(s.allow.is_empty());
        let s = ok("deny 192.0.2.1;\nallow all;");
        assert_eq!(s.deny.0.len(), 1);
        let s = ok("allow 10.0.0.0/8;\nallow 192.0.2.7;\ndeny all;");
        assert_eq!(s.allow, IpList::parse("10.0.0.0/8,192.0.2.7").unwrap());
        assert!(s.deny.is_empty());
        let e = err("allow 10.0.0.0/8;\ndeny 10.1.0.0/16;\ndeny all;");
        assert!(e.starts_with("line 1: allow and deny in an order"), "{e}");
        assert!(err("deny all;").contains("return 403"));
        let e = err("deny 1.2.3.4;\ndeny nonsense;");
        assert!(e.starts_with("line 2: \"nonsense\""), "{e}");
        let mut p = Policy::default();
        s.apply(&mut p, false);
        assert_eq!(p.access.as_ref().unwrap().allow, s.allow);
        let deny = ok("deny 192.0.2.9;");
        deny.apply(&mut p, false);
        assert!(p.access.as_ref().unwrap().deny.is_empty(), "after an allow list, unreached");
        let mut q = Policy::default();
        ok("deny 192.0.2.9;").apply_server(&mut q, false);
        assert_eq!(q.access.as_ref().unwrap().deny.0.len(), 1);
    }

    #[test]
    fn return_forms() {
        assert_eq!(ok("return 403;").steps, vec![Step::Return { code: 403, text: None }]);
        let s = ok("return 200 'ok';");
        assert!(
            matches!(&s.steps[0], Step::Return { code: 200, text: Some(t) } if t.as_literal() == Some("ok"))
        );
        let s = ok("return https://example.com$request_uri;");
        assert!(matches!(&s.steps[0], Step::Return { code: 302, .. }));
        let s = ok("return 301 https://$host$request_uri;");
        assert!(matches!(&s.steps[0], Step::Return { code: 301, .. }));
        assert!(err("return 444;").contains("444"));
        assert!(err("return 200 $no_such_var;").contains("$no_such_var"));
    }

    #[test]
    fn rewrite_redirects_or_rewrites_the_uri() {
        let s = ok("rewrite ^/old/(.*)$ /new/$1 permanent;");
        let Step::Rewrite { then, replacement, append_args, .. } = &s.steps[0] else { panic!() };
        assert_eq!(*then, Then::Redirect(301));
        assert!(append_args);
        assert_eq!(replacement[1], Piece::Capture(1));
        let s = ok("rewrite ^ https://$host$request_uri? last;");
        let Step::Rewrite { then, append_args, .. } = &s.steps[0] else { panic!() };
        assert_eq!((*then, *append_args), (Then::Redirect(302), false));
        for (flag, then) in [("last", Then::Stop), ("break", Then::Stop), ("", Then::Continue)] {
            let s = ok(&format!("rewrite ^/a /b {flag};"));
            assert!(matches!(&s.steps[0], Step::Rewrite { then: t, .. } if *t == then), "{flag}");
        }
        let e = err("\nrewrite ^/a /b sideways;");
        assert!(e.starts_with("line 2: rewrite: \"sideways\" is not a flag"), "{e}");
        let e = err("rewrite ^/(?!api) /x redirect;");
        assert!(e.contains("look-around"), "{e}");
        let e = err("rewrite ^/(a)\\1 /x redirect;");
        assert!(e.contains("backreference"), "{e}");
    }

    #[test]
    fn if_conditions() {
        let s = ok(
            "if ($http_x_forwarded_proto != 'https') {\n  return 301 https://$host$request_uri;\n}",
        );
        let Step::If { when, then } = &s.steps[0] else { panic!() };
        assert_eq!(when.var, Var::Http("x_forwarded_proto".into()));
        assert!(matches!(when.test, Test::Equals { negate: true, .. }));
        assert_eq!(then.len(), 1);
        let s = ok("if ($http_user_agent ~* (bot|crawler)) { return 403; }");
        let Step::If { when, .. } = &s.steps[0] else { panic!() };
        assert!(
            matches!(&when.test, Test::Matches { negate: false, pattern } if pattern.regex.is_match("GoogleBOT"))
        );
        let s = ok("if ($http_x_debug) { add_header X-Debug on always; }");
        assert!(s.steps.is_empty());
        assert!(s.rules[0].when.is_some());
        let e = err("if (-f $request_filename) { return 403; }");
        assert!(e.contains("file tests"), "{e}");
        let e = err("if ($nope = 1) { return 403; }");
        assert!(e.contains("$nope"), "{e}");
        let e = err("if ($host = a) {\n  set $x 1;\n}");
        assert!(e.starts_with("line 2: set:"), "{e}");
    }

    #[test]
    fn refusals_name_the_directive_and_line() {
        let e = err("add_header A b;\n\nlocation = /x { return 403; }");
        assert!(e.starts_with("line 3: location: location blocks are read only in server"), "{e}");
        let e = err("more_set_headers 'A: b';\nauth_request /auth;");
        assert_eq!(e, "line 2: auth_request: not in the subset Sluice reads");
        let e = err("add_header A b;\n}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("NGINX syntax"), "{e}");
        assert!(ok("server_tokens off;").rules.is_empty());
        let e = err("a b;\naccess_by_lua_block {\n  if x then y() end\n}");
        assert_eq!(e, "line 2: Lua blocks are not supported");
    }
}
