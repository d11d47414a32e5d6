//! The checks the fuzz targets `normalize_path` and `regex_path` run on each input (in
//! `fuzz/`, with nightly), and the corpus replay runs on stable: one definition of each
//! target's invariants. Not an API: hidden from the documentation, and free to change.

use crate::pathregex::{Rewrite, RewriteTarget, location_regex};

/// Request path normalisation ([`crate::normalize_path`]) on `data` read as text: the result is
/// absolute, holds no empty, `.` or `..` segment (a final slash aside), and is its own
/// normal form when it holds no `%` (a decoded `%25` may start a new escape, which a second
/// pass would decode again, as NGINX would not: it decodes once). Returns whether the path
/// changed.
pub fn normalize_path(data: &[u8]) -> bool {
    let path = String::from_utf8_lossy(data);
    let once = crate::normalize_path(&path);
    assert!(once.starts_with('/'), "{path:?} normalised to {once:?}");
    let inner = once[1..].strip_suffix('/').unwrap_or(&once[1..]);
    if !inner.is_empty() {
        for segment in inner.split('/') {
            assert!(!matches!(segment, "" | "." | ".."), "{path:?} normalised to {once:?}");
        }
    }
    if !once.contains('%') {
        let twice = crate::normalize_path(&once);
        assert_eq!(twice, once, "normalising {path:?} twice");
    }
    once != path
}

/// Regex paths ([`location_regex`], [`Rewrite`]). The input's first line is an Ingress path,
/// its second a `rewrite-target`, the rest request paths. The path compiles or fails with a
/// one-line message; a compiled location answers as its regex does (its literal prefix never
/// turns away a path the regex matches); a rewrite gives a path a request line can carry.
/// Returns whether the path compiled.
pub fn regex_path(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let requests: Vec<&str> = lines.collect();

    let location = match location_regex(path) {
        Ok(location) => location,
        Err(why) => {
            assert!(!why.is_empty() && !why.contains('\n'), "{path:?}: {why:?}");
            return false;
        }
    };
    let (prefix, literal) = location.prefix();
    assert!(!literal || location.regex().is_match(prefix), "{path:?}: literal prefix {prefix:?}");
    for request in &requests {
        let hay = request.as_bytes();
        assert_eq!(
            location.is_match(hay),
            location.regex().is_match(hay),
            "{path:?} on {request:?}"
        );
    }

    let target = match RewriteTarget::parse(target) {
        Ok(target) => target,
        Err(why) => {
            assert!(!why.is_empty(), "{target:?}");
            return true;
        }
    };
    let rewrite = match Rewrite::new(path, target) {
        Ok(rewrite) => rewrite,
        // The location compiled; the same pattern unanchored can still exceed the size limit.
        Err(why) => {
            assert!(!why.is_empty() && !why.contains('\n'), "{path:?}: {why:?}");
            return true;
        }
    };
    for request in &requests {
        for query in [None, Some("a=1&b")] {
            let Some(uri) = rewrite.apply(request, query) else { continue };
            assert!(
                uri.starts_with('/'),
                "{path:?} -> {:?} on {request:?}: {uri:?}",
                rewrite.target()
            );
            assert!(
                uri.bytes().all(|b| b.is_ascii_graphic() && b != b'#'),
                "{path:?} -> {:?} on {request:?}: {uri:?} is not a request target",
                rewrite.target()
            );
        }
    }
    true
}
