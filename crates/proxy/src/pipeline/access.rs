//! The access phases: the ConfigMap's block lists (first of all), CORS preflights, and who
//! may make the request (address lists and basic authentication, combined as `satisfy`
//! says), in NGINX's order. Each answers the request itself or lets it through.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use sluice_model::{Access, Cors};

use super::{Ctx, Head};

/// The client's address as the lists see it (the real-IP address).
pub(super) fn client_addr(ctx: &Ctx<'_>) -> Option<IpAddr> {
    Some(ctx.client_addr())
}

/// Whether the ConfigMap's block lists refuse the request (403).
pub(super) fn blocked<H: Head>(ctx: &Ctx<'_>, head: &H) -> bool {
    let Some(blocks) = &ctx.route.policy.block else { return false };
    let ip = if blocks.cidrs.is_empty() { None } else { client_addr(ctx) };
    blocks.refuses(ip, head.header("user-agent"), head.header("referer"))
}

/// Whether the request is a CORS preflight Sluice answers (204): an `OPTIONS` from an
/// allowed origin. ingress-nginx does not look at `Access-Control-Request-Method`.
pub(super) fn preflight<H: Head>(cors: &Cors, head: &H) -> bool {
    head.method() == "OPTIONS" && cors.allow_origin(head.header("origin")).is_some()
}

/// The access phase: `Err` with the status refusing the request (403 for the address lists,
/// 401 for missing or wrong credentials).
pub(super) fn check<H: Head>(access: &Access, ctx: &Ctx<'_>, head: &H) -> Result<(), u16> {
    let lists = !(access.deny.is_empty() && access.allow.is_empty());
    let admitted = !lists || access.admits(client_addr(ctx));
    let signed_in = access.basic.as_ref().map(|basic| {
        credentials(head).is_some_and(|(user, password)| basic.users.verify(&user, &password))
    });
    if access.satisfy_any {
        // NGINX's `satisfy any`: one handler's yes suffices; lists that are not set say
        // neither yes nor no. When none says yes, 401 wins over 403.
        if (lists && admitted) || signed_in == Some(true) {
            return Ok(());
        }
        return match (signed_in, lists) {
            (Some(false), _) => Err(401),
            (None, true) => Err(403),
            (None, false) => Ok(()),
            (Some(true), _) => unreachable!("handled above"),
        };
    }
    if !admitted {
        return Err(403);
    }
    match signed_in {
        Some(false) => Err(401),
        _ => Ok(()),
    }
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
