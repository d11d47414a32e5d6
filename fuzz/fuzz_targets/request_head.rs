//! The HTTP/1 fast path's request head: see `sluice_proxy::fuzzing::request_head`.
//! The check is shared with the stable corpus replay (crates/sluice/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_proxy::fuzzing::request_head(data);
});
