//! Every fuzz target's committed corpus (`fuzz/corpus/<target>/`), replayed on stable through
//! the same check the target runs under `cargo fuzz` (each crate's hidden `fuzzing` module), so
//! that the test command covers the parsers' invariants where nightly is missing. The corpora
//! hold hand-written seeds, what `scripts/fuzz --merge` kept, and every finding.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Runs `check` on every file of the target's corpus; a failure names the file. Returns the
/// check's results, which must be at least `min` (a corpus that went missing fails).
fn replay<T>(target: &str, min: usize, check: impl Fn(&[u8]) -> T) -> Vec<T> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let results: Vec<T> = files
        .iter()
        .map(|file| {
            let data = fs::read(file).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .unwrap_or_else(|_| panic!("{target}: the check failed on {}", file.display()))
        })
        .collect();
    assert!(results.len() >= min, "{target}: {} inputs, expected at least {min}", results.len());
    results
}

/// Replays a check that tells whether the input was accepted; the corpus must hold inputs
/// accepted and inputs refused, at least `min` of each, so that both sides stay covered.
fn replay_both(target: &str, min: usize, check: impl Fn(&[u8]) -> bool) {
    let accepted = replay(target, 2 * min, check);
    let yes = accepted.iter().filter(|&&a| a).count();
    let no = accepted.len() - yes;
    assert!(yes >= min && no >= min, "{target}: {yes} inputs accepted, {no} refused");
}

#[test]
fn nginx_conf() {
    replay_both("nginx_conf", 2, sluice_nginx_conf::fuzzing::nginx_conf);
}

#[test]
fn manifests() {
    replay_both("manifests", 3, sluice_manifests::fuzzing::manifests);
}

#[test]
fn annotations() {
    replay("annotations", 10, sluice_translate::fuzzing::annotations);
}

/// Accepted: heads the fast path carries.
#[test]
fn request_head() {
    replay_both("request_head", 2, sluice_proxy::fuzzing::request_head);
}

/// Accepted: paths normalisation changed.
#[test]
fn normalize_path() {
    replay_both("normalize_path", 2, sluice_model::fuzzing::normalize_path);
}

/// Accepted: patterns that compiled.
#[test]
fn regex_path() {
    replay_both("regex_path", 2, sluice_model::fuzzing::regex_path);
}

#[test]
fn client_hello() {
    replay_both("client_hello", 2, sluice_proxy::fuzzing::client_hello);
}

#[test]
fn proxy_header() {
    replay_both("proxy_header", 3, sluice_proxy::fuzzing::proxy_header);
}
