//! The check the fuzz target `manifests` runs on each input (in `fuzz/`, with nightly), and
//! the corpus replay runs on stable: one definition of the target's invariants. Not an API:
//! hidden from the documentation, and free to change.

use crate::Object;
use crate::parse::{MAX_NODES, parse_str};

/// A manifests file's text ([`parse_str`]): it gives objects or an error, never a panic, in
/// bounded time and memory (the fuzzer's time and memory limits enforce those bounds; the
/// reader's budgets must keep hostile YAML within them); every line reported is within the
/// text; every object is named, in a namespace unless cluster-scoped; no more objects than
/// the node budget allows, whatever aliases repeat. Returns whether the text was read.
pub fn manifests(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    // YAML counts `\r\n`, `\r` and `\n` each as one line break.
    let lines = 1 + text.replace("\r\n", "\n").matches(['\n', '\r']).count();
    match parse_str(&text) {
        Ok(objects) => {
            assert!(objects.len() <= MAX_NODES, "{} objects", objects.len());
            for (line, object) in &objects {
                assert!((1..=lines).contains(line), "line {line} of {lines}");
                let r = object.object_ref();
                assert!(!r.name.is_empty(), "{r:?}");
                let cluster_scoped = matches!(object, Object::IngressClass(_));
                assert_eq!(r.namespace.is_empty(), cluster_scoped, "{r:?}");
            }
            true
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "error line {line} of {lines}: {}", e.message);
            }
            false
        }
    }
}
