//! NGINX configuration syntax (snippets): see `sluice_nginx_conf::fuzzing::nginx_conf`.
//! The check is shared with the stable corpus replay (crates/sluice/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_nginx_conf::fuzzing::nginx_conf(data);
});
