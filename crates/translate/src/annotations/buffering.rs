//! Buffering and the HTTP version towards the upstream.
//!
//! | annotation | default | Sluice |
//! |---|---|---|
//! | `proxy-request-buffering` | `on` | `on`: a request body is read whole before the upstream is contacted, and sent with a `Content-Length` (so a chunked upload reaches the backend with its length, and a slow client never holds a backend connection); `off`: streamed as it arrives |
//! | `proxy-http-version` | `1.1` | `1.0`: the upstream request is HTTP/1.0, one per connection (no keep-alive, no chunked body) |
//! | `proxy-buffering` | `off` | accepted: how NGINX holds a response in memory or on disk; Sluice streams responses either way, with the same bytes reaching the client |
//! | `proxy-buffer-size` | `4k` | accepted: NGINX's buffer for the response head; Sluice takes response heads up to 64 KiB whatever the value |
//! | `proxy-buffers-number` | `4` | accepted: NGINX's response buffers |
//! | `proxy-busy-buffers-size` | — | accepted: NGINX's buffers busy sending to the client |
//! | `proxy-max-temp-file-size` | `1024m` | accepted: NGINX's temporary files for buffered responses |
//! | `client-body-buffer-size` | `8k` | accepted: NGINX's memory for a request body before it goes to a temporary file; Sluice's HTTP/1.1 fast path carries `Content-Length` bodies up to this size (64 KiB at most) with request buffering on, the general path larger ones: the same bytes reach the backend either way |
//!
//! The ConfigMap keys of the same names set the defaults. Accepted values are still checked
//! (an NGINX size, `on`/`off`), so a typo is reported rather than silently kept.
//!
//! Where Sluice differs: request buffering holds at most [`BUFFER_LIMIT`] in memory; a larger
//! body (when `proxy-body-size` allows one) is streamed on once that much has arrived, where
//! NGINX would write it to a temporary file first.

use sluice_model::{Diagnostic, ObjectRef, UpstreamRequest};

use super::proxy::parse_size;
use super::{Annotations, Effect, Family};

/// The most of a request body held in memory by request buffering.
pub const BUFFER_LIMIT: u64 = 8 * 1024 * 1024;

const RESPONSE_BUFFERING: &str = "Sluice streams responses; the bytes the client gets are the same";
const MEMORY: &str = "NGINX memory tuning; Sluice sizes its buffers itself";
const BODY_BUFFER: &str = "NGINX's memory for a request body; Sluice's fast path carries bodies up to it (64 KiB at most), the general path larger ones, with the same bytes";

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "buffering",
    annotations: &[
        ("client-body-buffer-size", Effect::Accepted(BODY_BUFFER)),
        ("proxy-buffer-size", Effect::Accepted(MEMORY)),
        ("proxy-buffering", Effect::Accepted(RESPONSE_BUFFERING)),
        ("proxy-buffers-number", Effect::Accepted(MEMORY)),
        ("proxy-busy-buffers-size", Effect::Accepted(MEMORY)),
        ("proxy-http-version", Effect::Applied),
        ("proxy-max-temp-file-size", Effect::Accepted(RESPONSE_BUFFERING)),
        ("proxy-request-buffering", Effect::Applied),
    ],
    configmap_keys: &[
        "client-body-buffer-size",
        "proxy-buffer-size",
        "proxy-buffering",
        "proxy-buffers-number",
        "proxy-busy-buffers-size",
        "proxy-http-version",
        "proxy-max-temp-file-size",
        "proxy-request-buffering",
    ],
};

pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    upstream: &mut UpstreamRequest,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for (name, value) in a.values(FAMILY.annotations) {
        if let Some(Err(why)) = set(name, value, upstream) {
            a.report(object, name, &why, diagnostics);
        }
    }
}

/// Sets one key of this family; `None` for a key of another family.
pub(crate) fn set(
    key: &str,
    value: &str,
    upstream: &mut UpstreamRequest,
) -> Option<Result<(), String>> {
    Some(match key {
        "proxy-request-buffering" => on_off(value).map(|on| upstream.request_buffering = on),
        "proxy-http-version" => match value.trim() {
            "1.0" => {
                upstream.http10 = true;
                Ok(())
            }
            "1.1" => {
                upstream.http10 = false;
                Ok(())
            }
            _ => Err(format!("{value:?} is not 1.0 or 1.1")),
        },
        "proxy-buffering" => on_off(value).map(drop),
        "client-body-buffer-size" => {
            parse_size(value).map(|n| upstream.body_buffer_size = n.unwrap_or(0))
        }
        "proxy-buffer-size" | "proxy-busy-buffers-size" | "proxy-max-temp-file-size" => {
            parse_size(value).map(drop)
        }
        "proxy-buffers-number" => match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!("{value:?} is not a number of buffers")),
        },
        _ => return None,
    })
}

/// `on` or `off`, as NGINX flags are written.
pub fn on_off(value: &str) -> Result<bool, String> {
    match value.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{value:?} is not on or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_even_when_only_accepted() {
        let mut up = UpstreamRequest::default();
        assert_eq!(set("proxy-request-buffering", "off", &mut up), Some(Ok(())));
        assert!(!up.request_buffering);
        assert_eq!(set("proxy-http-version", "1.0", &mut up), Some(Ok(())));
        assert!(up.http10);
        assert!(set("proxy-http-version", "2", &mut up).unwrap().is_err());
        assert_eq!(up.body_buffer_size, 8 * 1024, "ingress-nginx's default");
        assert_eq!(set("client-body-buffer-size", "16k", &mut up), Some(Ok(())));
        assert_eq!(up.body_buffer_size, 16 * 1024);
        assert!(set("client-body-buffer-size", "16 k", &mut up).unwrap().is_err());
        assert_eq!(up.body_buffer_size, 16 * 1024, "an invalid value changes nothing");
        assert!(set("proxy-buffer-size", "16k", &mut up).unwrap().is_ok());
        assert!(set("proxy-buffer-size", "16 k", &mut up).unwrap().is_err());
        assert!(set("proxy-buffering", "yes", &mut up).unwrap().is_err());
        assert!(set("proxy-buffers-number", "8", &mut up).unwrap().is_ok());
        assert!(set("proxy-body-size", "1m", &mut up).is_none(), "another family's key");
    }
}
