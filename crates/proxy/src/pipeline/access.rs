//! The access phases: the ConfigMap's block lists (first of all), CORS preflights, and who
//! may make the request (address lists and basic authentication, combined as `satisfy`
//! says), in NGINX's order. Each answers the request itself or lets it through.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use sluice_model::{Access, Cors};

use super::{Ctx, Head, RequestVars};

/// Whether the ConfigMap's block lists refuse the request (403).
pub(super) fn blocked<H: Head>(ctx: &Ctx<'_>, head: &H) -> bool {
    let Some(blocks) = &ctx.route.policy.block else { return false };
    let ip = (!blocks.cidrs.is_empty()).then(|| ctx.client_addr());
    blocks.refuses(ip, head.header("user-agent"), head.header("referer"))
}

/// Whether the request is a CORS preflight Sluice answers (204): an `OPTIONS` from an
/// allowed origin. ingress-nginx does not look at `Access-Control-Request-Method`.
pub(super) fn preflight<H: Head>(cors: &Cors, head: &H) -> bool {
    head.method() == "OPTIONS" && cors.allow_origin(head.header("origin")).is_some()
}

/// What the access phase decided, before any external authentication.
pub(crate) enum Verdict {
    /// Let through.
    Pass,
    /// Refused with this status (403 for the address lists, 401 for credentials).
    Refuse(u16),
    /// Ask the auth service (`auth-url`); `refused` is what the other checks said under
    /// `satisfy any` (401 or 403), `None` when they said nothing against the request.
    Ask { refused: Option<u16> },
}

/// The access phase, NGINX's: the address lists, then basic authentication, then the
/// external one. Under `satisfy all` (the default) the first refusal answers; under
/// `satisfy any` one yes suffices ([`Access::lists`]: only an allow list says yes), and
/// when none comes, 401 wins over 403.
pub(super) fn check<H: Head>(access: &Access, ctx: &Ctx<'_>, head: &H) -> Verdict {
    let lists = access.lists(ctx.client_addr());
    let external = access.external.is_some();
    if !access.satisfy_any {
        if lists == Some(false) {
            return Verdict::Refuse(403);
        }
        if let Some(basic) = &access.basic
            && !signed_in(basic, head)
        {
            return Verdict::Refuse(401);
        }
        return if external { Verdict::Ask { refused: None } } else { Verdict::Pass };
    }
    if lists == Some(true) {
        return Verdict::Pass;
    }
    let basic = access.basic.as_ref().map(|b| signed_in(b, head));
    if basic == Some(true) {
        return Verdict::Pass;
    }
    let refused = match (basic, lists) {
        (Some(false), _) => Some(401),
        (_, Some(false)) => Some(403),
        _ => None,
    };
    match (external, refused) {
        (true, refused) => Verdict::Ask { refused },
        (false, Some(status)) => Verdict::Refuse(status),
        (false, None) => Verdict::Pass,
    }
}

fn signed_in<H: Head>(basic: &sluice_model::BasicAuth, head: &H) -> bool {
    credentials(head).is_some_and(|(user, password)| basic.users.verify(&user, &password))
}

/// The subrequest to the auth service, as ingress-nginx's internal auth location makes it.
#[derive(Debug)]
pub(crate) struct AuthRequest {
    /// `auth-url`, variables filled in.
    pub url: String,
    pub method: http::Method,
    /// Every header to send, names lower case (the client's, then those Sluice sets).
    pub headers: Vec<(String, Vec<u8>)>,
    /// `auth-cache-key`: the key the answer is kept under (host, auth URL, rendered key),
    /// and for how long per status.
    pub cache: Option<(String, sluice_model::CacheDurations)>,
}

/// The auth service's answer: its status (500 when it could not be asked), and its
/// headers, names lower case.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuthOutcome {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl AuthOutcome {
    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Calls `f` with each value of header `name`.
    pub(crate) fn each(&self, name: &str, mut f: impl FnMut(&[u8])) {
        self.headers.iter().filter(|(n, _)| n == name).for_each(|(_, v)| f(v));
    }
}

/// What the auth service's answer means: through on 2xx; 401 and 403 refuse (under `satisfy
/// any`, 401 wins over the other checks' 403); anything else is an error, 500, never the
/// protected content.
pub(super) fn conclude(outcome: &AuthOutcome, refused: Option<u16>) -> Result<(), u16> {
    match outcome.status {
        200..=299 => Ok(()),
        401 => Err(401),
        403 if refused == Some(401) => Err(401),
        403 => Err(403),
        _ => Err(500),
    }
}

/// Headers of the client's never sent to the auth service: framing, hop-by-hop, and those
/// the subrequest sets.
const NOT_TO_AUTH: [&str; 17] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-original-url",
    "x-original-method",
    "x-sent-from",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-auth-request-redirect",
    "x-request-id",
];

/// The subrequest for `external`, from the request `head`.
pub(super) fn auth_request<H: Head>(
    external: &sluice_model::ExternalAuth,
    ctx: &Ctx<'_>,
    head: &H,
) -> AuthRequest {
    let vars = RequestVars { head, ctx };
    let url = String::from_utf8_lossy(&external.url.to_bytes(&vars)).into_owned();
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let extra_names = ["x-original-uri", "x-scheme"];
    head.each_header(|name, value| {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        let set_here = NOT_TO_AUTH.contains(&lower.as_str())
            || (external.method.is_some() && extra_names.contains(&lower.as_str()))
            || external.set_headers.iter().any(|(n, _)| *n == lower);
        if !set_here {
            headers.push((lower, value.to_vec()));
        }
        true
    });
    let scheme = if ctx.conn.tls.is_some() { "https" } else { "http" };
    let mut set = |name: &str, value: Vec<u8>| headers.push((name.to_string(), value));
    // `Host` is the auth URL's: the sender fills it in from the URL.
    set("x-original-url", format!("{scheme}://{}{}", ctx.host_header, head.target()).into_bytes());
    set("x-original-method", head.method().as_bytes().to_vec());
    set("x-sent-from", b"nginx-ingress-controller".to_vec());
    set("x-real-ip", ctx.client_ip().to_vec());
    set("x-forwarded-for", ctx.client_ip().to_vec());
    let redirect = external.request_redirect.as_deref().unwrap_or(head.target());
    set("x-auth-request-redirect", redirect.as_bytes().to_vec());
    set("x-request-id", ctx.request_id.as_bytes().to_vec());
    if external.method.is_some() {
        set("x-original-uri", head.target().as_bytes().to_vec());
        set("x-scheme", if ctx.https { b"https".to_vec() } else { b"http".to_vec() });
    }
    for (name, template) in &external.set_headers {
        let value = template.to_bytes(&vars);
        if !value.is_empty() {
            set(name, value);
        }
    }
    let method = external
        .method
        .as_deref()
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(http::Method::GET);
    let cache = external.cache_key.as_ref().map(|key| {
        let key = String::from_utf8_lossy(&key.to_bytes(&vars)).into_owned();
        (format!("{}\n{url}\n{key}", ctx.host), external.cache_durations.clone())
    });
    AuthRequest { url, method, headers, cache }
}

/// NGINX's base64 decoding of credentials: padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The user and password of a `Basic` `Authorization` header, as NGINX reads them: the scheme
/// in any case, the user up to the first `:`, which must not be empty.
fn credentials<H: Head>(head: &H) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = head.header("authorization")?;
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = LENIENT.decode(rest.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&c| c == b':')?;
    (colon > 0).then(|| (decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// `WWW-Authenticate` of a 401 for `realm`.
pub(super) fn challenge(realm: &str) -> Vec<u8> {
    format!("Basic realm=\"{realm}\"").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;

    #[test]
    fn lenient_base64_reads_unpadded_credentials() {
        let padded = general_purpose::STANDARD.encode("foo:bar");
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(LENIENT.decode(unpadded).unwrap(), b"foo:bar");
        assert_eq!(LENIENT.decode(&padded).unwrap(), b"foo:bar");
    }
}
