//! Access control as typed policy (issue 12's families): who may connect (source-address
//! lists, the ConfigMap's block lists), who may sign in (basic authentication), how the two
//! combine (`satisfy`), and which other origins may read the answers (CORS). Translation
//! fills these; the proxy's access phase reads them.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;
use serde::{Serialize, Serializer};
use sluice_htpasswd::Htpasswd;

use crate::NamespacedName;

/// Who may make a request to a route: source-address lists and basic authentication,
/// combined as `satisfy` says. NGINX's access phase, in its order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    /// `denylist-source-range` (else ConfigMap `denylist-source-range`): refused (403),
    /// checked before the allow list.
    #[serde(skip_serializing_if = "IpList::is_empty")]
    pub deny: IpList,
    /// `allowlist-source-range` or `whitelist-source-range` (else the ConfigMap's
    /// `whitelist-source-range`): when not empty, every other address is refused (403).
    #[serde(skip_serializing_if = "IpList::is_empty")]
    pub allow: IpList,
    /// `auth-type: basic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// `auth-url` (or the ConfigMap's `global-auth-url`): a subrequest decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<Arc<ExternalAuth>>,
    /// `satisfy: any`: one of the address lists and the authentication suffices (NGINX's
    /// default, `all`, needs both).
    pub satisfy_any: bool,
}

impl Access {
    /// Whether nothing is checked.
    pub fn is_open(&self) -> bool {
        self.deny.is_empty()
            && self.allow.is_empty()
            && self.basic.is_none()
            && self.external.is_none()
    }

    /// What the address lists say of `ip`, as NGINX's access module answers for `deny ...;
    /// allow ...; deny all;` (first match wins): `Some(false)` refused (denied, or outside an
    /// allow list), `Some(true)` named by the allow list, `None` when no rule matches (no
    /// lists, or a deny list alone): neither yes nor no, which matters under `satisfy any`.
    pub fn lists(&self, ip: IpAddr) -> Option<bool> {
        if self.deny.contains(ip) {
            Some(false)
        } else if self.allow.is_empty() {
            None
        } else {
            Some(self.allow.contains(ip))
        }
    }
}

/// External authentication (`auth-url` and its settings): NGINX's `auth_request`, as
/// ingress-nginx configures it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalAuth {
    /// `auth-url`, with NGINX variables.
    pub url: crate::Template,
    /// `auth-method`: the subrequest's method (`GET` without it, as NGINX's subrequests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `auth-signin`, with the redirect parameter (`rd`, or `auth-signin-redirect-param`)
    /// already appended: where a 401 is redirected (302).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signin: Option<crate::Template>,
    /// `auth-response-headers`, lower case: copied from a 2xx answer to the upstream request
    /// (the client's own of these names never pass).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<String>,
    /// `auth-request-redirect`: the subrequest's `X-Auth-Request-Redirect` (else the request
    /// URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<String>,
    /// `auth-proxy-set-headers`: headers of a ConfigMap set on the subrequest, lower-case
    /// names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, crate::Template)>,
    /// `auth-always-set-cookie`: the auth service's `Set-Cookie` is passed to the client on
    /// every answer, not only successful ones.
    pub always_set_cookie: bool,
    /// `auth-cache-key`, with NGINX variables: answers are kept under it (with the host and
    /// the auth URL) for `cache_durations`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<crate::Template>,
    /// `auth-cache-duration`: for how long answers of each status are kept, NGINX's
    /// `proxy_cache_valid` (an empty status list means 200, 301 and 302).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_durations: CacheDurations,
}

/// `auth-cache-duration`: the statuses (empty: 200, 301 and 302) kept for each time.
pub type CacheDurations = Vec<(Vec<u16>, std::time::Duration)>;

/// A list of address ranges (a bare address is a range of one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpList(pub Vec<IpNet>);

impl IpList {
    /// Whether the list has no range.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a range of the list holds `ip`. An IPv4-mapped IPv6 address is read as the
    /// IPv4 address, as NGINX does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Parses NGINX's `allow`/`deny` operands as ingress-nginx reads its lists: ranges and
    /// addresses separated by commas, spaces trimmed. `Err` names the first entry that is
    /// neither (an empty entry too, as ingress-nginx refuses a trailing comma).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for entry in value.split(',').map(str::trim) {
            let net = if let Ok(net) = entry.parse::<IpNet>() {
                net.trunc()
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                IpNet::from(ip)
            } else {
                return Err(format!("{entry:?} is not an IP address or CIDR range"));
            };
            if !out.contains(&net) {
                out.push(net);
            }
        }
        Ok(Self(out))
    }
}

impl IpList {
    /// A list as ingress-nginx reads its ConfigMap keys: empty entries (a trailing comma, an
    /// empty value) are dropped rather than refused; any other entry must parse.
    pub fn parse_lenient(value: &str) -> Result<Self, String> {
        let entries: Vec<&str> =
            value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Ok(Self::default());
        }
        Self::parse(&entries.join(","))
    }
}

impl Serialize for IpList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// `auth-type: basic`: users of an htpasswd Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BasicAuth {
    /// `auth-realm`, sent in `WWW-Authenticate`.
    pub realm: String,
    /// The Secret the users come from.
    pub secret: NamespacedName,
    /// The users, parsed once; hashes never serialised.
    #[serde(serialize_with = "user_count")]
    pub users: Arc<Htpasswd>,
}

fn user_count<S: Serializer>(users: &Arc<Htpasswd>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} user(s)", users.len()))
}

/// `enable-cors` and the `cors-*` settings, with ingress-nginx's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cors {
    /// `cors-allow-origin`: `None` for `*` (every origin, answered `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// `cors-allow-credentials` (true).
    pub credentials: bool,
    /// `cors-allow-methods`, as written.
    pub methods: String,
    /// `cors-allow-headers`, as written.
    pub headers: String,
    /// `cors-expose-headers`, as written (empty: not sent).
    pub expose: String,
    /// `cors-max-age` in seconds.
    pub max_age: u64,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            origins: None,
            credentials: true,
            methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".into(),
            headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization".into(),
            expose: String::new(),
            max_age: 1_728_000,
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` a request with `origin` gets, or `None` when its
    /// origin is not allowed (no CORS header then, and a preflight goes to the backend).
    /// With `*`, every request gets `*`, with or without an `Origin`, as ingress-nginx does.
    pub fn allow_origin<'a>(&self, origin: Option<&'a [u8]>) -> Option<&'a [u8]> {
        let Some(list) = &self.origins else { return Some(b"*") };
        let origin = origin?;
        list.iter().any(|pattern| origin_matches(pattern.as_bytes(), origin)).then_some(origin)
    }
}

/// Whether `origin` matches `pattern` (`scheme://host[:port]`, where a `*` stands for one DNS
/// label), case-insensitively and whole: ingress-nginx's regex is anchored at the end only;
/// Sluice anchors both ends, so that no origin it did not list is reflected.
fn origin_matches(pattern: &[u8], origin: &[u8]) -> bool {
    match pattern.iter().position(|&c| c == b'*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some(star) => {
            let (prefix, suffix) = (&pattern[..star], &pattern[star + 1..]);
            origin.len() > prefix.len() + suffix.len()
                && origin[..prefix.len()].eq_ignore_ascii_case(prefix)
                && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && origin[prefix.len()..origin.len() - suffix.len()]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
    }
}

/// ConfigMap `block-cidrs`, `block-user-agents` and `block-referers`: requests refused (403)
/// on every host, before anything else is decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Blocks {
    /// `block-cidrs`.
    #[serde(skip_serializing_if = "IpList::is_empty")]
    pub cidrs: IpList,
    /// `block-user-agents`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<MapKey>,
    /// `block-referers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referers: Vec<MapKey>,
}

impl Blocks {
    /// Whether a request from `ip` with `user_agent` and `referer` is refused.
    pub fn refuses(
        &self,
        ip: Option<IpAddr>,
        user_agent: Option<&[u8]>,
        referer: Option<&[u8]>,
    ) -> bool {
        let hit = |keys: &[MapKey], v: Option<&[u8]>| {
            keys.iter().any(|k| k.matches(v.unwrap_or_default()))
        };
        ip.is_some_and(|ip| self.cidrs.contains(ip))
            || hit(&self.user_agents, user_agent)
            || hit(&self.referers, referer)
    }
}

/// A key of an NGINX `map`: a string (the whole value, case-insensitively), `~regex`
/// (case-sensitive) or `~*regex` (case-insensitive), unanchored unless the regex says so.
#[derive(Clone, Debug)]
pub struct MapKey {
    /// As written in the ConfigMap.
    pub source: String,
    regex: Option<Regex>,
}

impl MapKey {
    /// Parses one key; `Err` for a regex that does not compile.
    pub fn parse(key: &str) -> Result<Self, String> {
        // NGINX map keys escape spaces with `\`.
        let source = key.to_string();
        let regex = if let Some(re) = key.strip_prefix("~*") {
            Some(format!("(?i){re}"))
        } else {
            key.strip_prefix('~').map(str::to_string)
        };
        let regex = regex
            .map(|re| Regex::new(&re).map_err(|e| format!("{key:?} is not a valid regex: {e}")))
            .transpose()?;
        Ok(Self { source, regex })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match &self.regex {
            Some(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
            None => {
                let key = self.source.replace("\\ ", " ");
                !value.is_empty() && key.as_bytes().eq_ignore_ascii_case(value)
            }
        }
    }
}

impl PartialEq for MapKey {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for MapKey {}

impl Serialize for MapKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_first_then_allow_then_deny_all() {
        // ingress-nginx's e2e `ipdenylist.go`, second case.
        let access = Access {
            deny: IpList::parse("18.1.0.0/16, 56.0.0.0/8").unwrap(),
            allow: IpList::parse("18.0.0.0/8, 55.0.0.0/8").unwrap(),
            ..Access::default()
        };
        assert_eq!(access.lists(ip("18.1.0.1")), Some(false));
        assert_eq!(access.lists(ip("10.10.10.10")), Some(false));
        assert_eq!(access.lists(ip("18.4.0.1")), Some(true));
        assert_eq!(access.lists(ip("55.55.55.55")), Some(true));
        assert_eq!(access.lists(ip("::ffff:55.1.2.3")), Some(true));
        let deny_only = Access { deny: IpList::parse("56.0.0.1").unwrap(), ..Access::default() };
        assert_eq!(deny_only.lists(ip("56.0.0.1")), Some(false));
        assert_eq!(deny_only.lists(ip("56.0.0.2")), None, "no rule matches: neither yes nor no");
        assert_eq!(Access::default().lists(ip("56.0.0.2")), None);
    }

    #[test]
    fn lists_parse_as_ingress_nginx_reads_them() {
        let list = IpList::parse(" 10.0.0.1/8 , 2001:db8::1, 10.0.0.0/8").unwrap();
        assert_eq!(serde_json::to_string(&list).unwrap(), r#"["10.0.0.0/8","2001:db8::1/128"]"#);
        for bad in ["ww", "10.0.0.0/8,", "", "10.0.0.0/33"] {
            assert!(IpList::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            IpList::parse_lenient(" , 10.0.0.1/8,").unwrap(),
            IpList::parse("10.0.0.0/8").unwrap()
        );
        assert!(IpList::parse_lenient("").unwrap().is_empty());
        assert!(IpList::parse_lenient("10.0.0.0/8, ww").is_err());
    }

    #[test]
    fn origins_match_whole_and_one_label_per_star() {
        let cors = Cors {
            origins: Some(vec![
                "http://origin.cors.com:8080".into(),
                "http://*.origin.com:8080".into(),
                "test://localhost".into(),
            ]),
            ..Cors::default()
        };
        let allowed = |o: &str| cors.allow_origin(Some(o.as_bytes())).is_some();
        assert!(allowed("http://origin.cors.com:8080"));
        assert!(allowed("HTTP://Origin.Cors.com:8080"));
        assert!(allowed("http://abc.origin.com:8080"));
        assert!(allowed("http://a-b.origin.com:8080"));
        assert!(!allowed("http://origin.com:8080"));
        assert!(!allowed("http://a.b.origin.com:8080"));
        assert!(!allowed("http://abc.origin.com"));
        assert!(!allowed("http://origin.cors.com"));
        assert!(!allowed("xtest://localhost"));
        assert!(cors.allow_origin(None).is_none());
        let any = Cors::default();
        assert_eq!(any.allow_origin(None), Some(&b"*"[..]));
    }

    #[test]
    fn map_keys_follow_nginx() {
        let exact = MapKey::parse("qwerty").unwrap();
        assert!(exact.matches(b"QWERTY"));
        assert!(!exact.matches(b"qwerty123"));
        let re = MapKey::parse(r"~*example\.com").unwrap();
        assert!(re.matches(b"https://EXAMPLE.com/page"));
        let cs = MapKey::parse("~AlphaBot").unwrap();
        assert!(cs.matches(b"x AlphaBot/1"));
        assert!(!cs.matches(b"alphabot"));
        let spaced = MapKey::parse(r"~*chrome\/68\.0\.3440\.106\ safari\/537\.36").unwrap();
        assert!(spaced.matches(b"Mozilla/5.0 Chrome/68.0.3440.106 Safari/537.36"));
        assert!(MapKey::parse("~(").is_err());
    }
}
