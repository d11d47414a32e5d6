use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use sluice_model::{Diagnostic, ObjectRef, Reason, Snapshot};

use crate::{DocError, Object, ParseError, parse_str};

/// A directory (or a single file) of manifests, remembered file by file.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

#[derive(Debug)]
struct FileState {
    /// Length and hash of the content last read, to skip re-parsing unchanged files.
    fingerprint: (usize, u64),
    /// The objects of the last version that parsed, with their lines.
    objects: Vec<(usize, Object)>,
    /// Why the current version does not parse, if it does not.
    error: Option<ParseError>,
}

/// What one [`ManifestDir::rescan`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Manifest files found.
    pub files: usize,
    /// Files read for the first time, changed, or removed since the last scan.
    pub changed: usize,
    /// Files whose current content does not parse (their last good objects stay).
    pub failed: usize,
}

impl ScanReport {
    /// True when nothing changed since the previous scan.
    pub fn unchanged(&self) -> bool {
        self.changed == 0
    }
}

impl ManifestDir {
    /// A source for `root`, which may be a directory or one file. Nothing is read until
    /// [`rescan`](Self::rescan).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), files: BTreeMap::new() }
    }

    /// The directory or file read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the tree again, parsing only the files whose content changed. Fails only when the
    /// root itself cannot be read; a file that cannot be read or parsed is an error of that
    /// file (see [`errors`](Self::errors)).
    pub fn rescan(&mut self) -> io::Result<ScanReport> {
        let mut paths = Vec::new();
        if std::fs::metadata(&self.root)?.is_file() {
            paths.push(self.root.clone());
        } else {
            walk(&self.root, &mut paths)?;
        }
        let mut report = ScanReport { files: paths.len(), ..ScanReport::default() };
        let before = self.files.len();
        self.files.retain(|p, _| paths.binary_search(p).is_ok());
        report.changed += before - self.files.len();
        for path in paths {
            let read = std::fs::read(&path);
            let content = match read {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted between the walk and the read: gone, like a file never seen.
                    report.changed += usize::from(self.files.remove(&path).is_some());
                    continue;
                }
                Err(e) => {
                    self.record_error(&path, None, format!("cannot read: {e}"), &mut report);
                    continue;
                }
            };
            let fingerprint = fingerprint(&content);
            if let Some(state) = self.files.get(&path)
                && state.fingerprint == fingerprint
            {
                report.failed += usize::from(state.error.is_some());
                continue;
            }
            report.changed += 1;
            let parsed = match std::str::from_utf8(&content) {
                Ok(text) => parse_str(text),
                Err(e) => Err(DocError { line: None, message: format!("not UTF-8 text: {e}") }),
            };
            match parsed {
                Ok(objects) => {
                    self.files.insert(path, FileState { fingerprint, objects, error: None });
                }
                Err(DocError { line, message }) => {
                    let state = self.record_error(&path, line, message, &mut report);
                    state.fingerprint = fingerprint;
                }
            }
        }
        Ok(report)
    }

    /// Marks `path` as failing, keeping its last good objects (none if it never parsed).
    fn record_error(
        &mut self,
        path: &Path,
        line: Option<usize>,
        message: String,
        report: &mut ScanReport,
    ) -> &mut FileState {
        report.failed += 1;
        let error = ParseError { file: path.to_path_buf(), line, message };
        let state = self.files.entry(path.to_path_buf()).or_insert_with(|| FileState {
            fingerprint: (0, 0),
            objects: Vec::new(),
            error: None,
        });
        state.error = Some(error);
        state
    }

    /// Files whose current content does not parse, each with file and line.
    pub fn errors(&self) -> Vec<ParseError> {
        self.files.values().filter_map(|f| f.error.clone()).collect()
    }

    /// The objects of every file (the last good version of failing files), as a snapshot.
    /// An object defined in two files is taken from the first in path order; the others are
    /// reported.
    pub fn snapshot(&self) -> (Snapshot, Vec<Diagnostic>) {
        // Certificates are judged expired against the time the snapshot is taken.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut snapshot = Snapshot { observed_at: Some(now as i64), ..Snapshot::default() };
        let mut seen: HashMap<ObjectRef, (&Path, usize)> = HashMap::new();
        let mut diagnostics = Vec::new();
        for (path, state) in &self.files {
            for (line, object) in &state.objects {
                let key = object.object_ref();
                match seen.entry(key) {
                    Entry::Occupied(first) => {
                        let (first_path, first_line) = *first.get();
                        diagnostics.push(Diagnostic::error(
                            first.key().clone(),
                            Reason::DuplicateObject,
                            format!(
                                "defined again at {}:{line}; the definition at {}:{first_line} is used",
                                path.display(),
                                first_path.display()
                            ),
                        ));
                        continue;
                    }
                    Entry::Vacant(v) => {
                        v.insert((path, *line));
                    }
                }
                // Objects are shared with the snapshot, not copied.
                match object.clone() {
                    Object::Ingress(o) => snapshot.ingresses.push(o),
                    Object::IngressClass(o) => snapshot.ingress_classes.push(o),
                    Object::Service(o) => snapshot.services.push(o),
                    Object::EndpointSlice(o) => snapshot.endpoint_slices.push(o),
                    Object::Secret(o) => snapshot.secrets.push(o),
                    Object::ConfigMap(o) => snapshot.config_maps.push(o),
                }
            }
        }
        (snapshot, diagnostics)
    }
}

fn fingerprint(content: &[u8]) -> (usize, u64) {
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    (content.len(), h.finish())
}

/// Collects manifest files under `dir`, sorted. Skips hidden entries, and the `..data` and
/// `..<timestamp>` entries of a mounted ConfigMap (whose files are also reachable through the
/// visible symlinks, and would otherwise be read twice).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follow symlinks, as the ConfigMap volume layout needs.
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if is_manifest(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\n";

    fn svc(name: &str) -> String {
        SVC.replace("NAME", name)
    }

    fn names(dir: &ManifestDir) -> Vec<String> {
        let (snap, _) = dir.snapshot();
        snap.services.iter().map(|s| s.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn reads_recursively_and_only_reparses_changes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("a.yaml"), svc("a")).unwrap();
        std::fs::write(tmp.path().join("sub/b.yml"), svc("b")).unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::write(tmp.path().join(".hidden.yaml"), svc("hidden")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        let r = dir.rescan().unwrap();
        assert_eq!((r.files, r.changed, r.failed), (2, 2, 0));
        assert_eq!(names(&dir), ["a", "b"]);
        assert!(dir.rescan().unwrap().unchanged());
        std::fs::remove_file(tmp.path().join("sub/b.yml")).unwrap();
        assert_eq!(dir.rescan().unwrap().changed, 1);
        assert_eq!(names(&dir), ["a"]);
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_objects() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.yaml");
        std::fs::write(&file, svc("a")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: [\n").unwrap();
        let r = dir.rescan().unwrap();
        assert_eq!(r.failed, 1);
        assert_eq!(names(&dir), ["a"], "last good version keeps serving");
        let errors = dir.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, file);
        assert_eq!(errors[0].line, Some(3));
        std::fs::write(&file, svc("fixed")).unwrap();
        dir.rescan().unwrap();
        assert!(dir.errors().is_empty());
        assert_eq!(names(&dir), ["fixed"]);
    }

    #[test]
    fn a_file_broken_from_the_start_contributes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.yaml"), "kind: [").unwrap();
        std::fs::write(tmp.path().join("b.yaml"), svc("b")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        assert_eq!(dir.rescan().unwrap().failed, 1);
        assert_eq!(names(&dir), ["b"]);
    }

    #[test]
    fn duplicates_are_reported_and_the_first_file_wins() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.yaml"), svc("same")).unwrap();
        std::fs::write(tmp.path().join("b.yaml"), svc("same")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        let (snap, diags) = dir.snapshot();
        assert_eq!(snap.services.len(), 1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].reason, Reason::DuplicateObject);
        assert!(diags[0].message.contains("b.yaml:1"), "{}", diags[0].message);
    }

    #[test]
    fn a_single_file_can_be_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("one.yaml");
        std::fs::write(&file, svc("one")).unwrap();
        let mut dir = ManifestDir::new(&file);
        dir.rescan().unwrap();
        assert_eq!(names(&dir), ["one"]);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let mut dir = ManifestDir::new("/nonexistent/sluice/manifests");
        assert!(dir.rescan().is_err());
    }
}
