use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_model::{
    Chunk, Diagnostic, LeanService, LeanSlice, Named, ObjectRef, Objects, Reason, Snapshot,
};

use crate::{Changes, DocError, Object, ParseError, parse_str};

/// A directory (or a single file) of manifests, remembered file by file.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Which objects the files define, to know without a look-up per object whether any is
    /// defined twice.
    refs: RefCounts,
    /// [`SETTLE`], except in tests.
    settle: Duration,
}

#[derive(Debug)]
struct FileState {
    /// The file's metadata when its content was last read, if it can be trusted to change
    /// with the content (see [`Stat::settled`]); a file whose metadata is unchanged is not read
    /// again.
    stat: Option<Stat>,
    /// Length and hash of the content last read, to skip re-parsing unchanged files.
    fingerprint: (usize, u64),
    /// The objects of the last version that parsed, with their lines.
    objects: Vec<(usize, Object)>,
    /// The same objects as snapshot chunks, shared by every snapshot until the file changes.
    chunks: Chunks,
    /// Why the current version does not parse, if it does not.
    error: Option<ParseError>,
}

/// What identifies one version of a file without reading it: any write changes the
/// modification and status-change times (and a rename into place, the inode), unless two
/// writes fall within one tick of the filesystem's clock, which [`Stat::settled`] guards
/// against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How long after its last change a file's metadata is trusted. Timestamps come from a coarse
/// clock (a few milliseconds per tick on Linux, up to seconds on some filesystems), so a file
/// written again within the same tick, with the same size, would look unchanged; such a
/// recently changed file is read (and hashed) on every scan until its timestamps are older
/// than this, which costs one read of the few files being edited.
const SETTLE: Duration = Duration::from_secs(2);

impl Stat {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// This stat if both its times are at least `settle` (whole seconds) before `scan_started`
    /// (seconds and nanoseconds since the epoch): any later write then gets different
    /// timestamps.
    fn settled(self, scan_started: (i64, i64), settle: Duration) -> Option<Self> {
        let limit = (scan_started.0 - settle.as_secs() as i64, scan_started.1);
        (self.mtime < limit && self.ctime < limit).then_some(self)
    }
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
    /// Files whose content was read: new ones, those whose metadata changed, and those changed
    /// too recently for their metadata to be trusted. The others are known unchanged from
    /// their metadata alone.
    pub read: usize,
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
        Self {
            root: root.into(),
            files: BTreeMap::new(),
            refs: RefCounts::default(),
            settle: SETTLE,
        }
    }

    /// The directory or file read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the tree again, parsing only the files whose content changed; files whose
    /// metadata (inode, size, modification and change times) is unchanged since they were
    /// last read are not read at all. Fails only when the root itself cannot be read; a file
    /// that cannot be read or parsed is an error of that file (see [`errors`](Self::errors)).
    pub fn rescan(&mut self) -> io::Result<ScanReport> {
        let started = scan_time();
        let mut paths = Vec::new();
        let root_meta = std::fs::metadata(&self.root)?;
        if root_meta.is_file() {
            paths.push((self.root.clone(), root_meta));
        } else {
            walk(&self.root, &mut paths)?;
        }
        let mut report = ScanReport::default();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| paths.binary_search_by(|(q, _)| q.cmp(p)).is_err())
            .cloned()
            .collect();
        for path in gone {
            self.remove(&path);
            report.changed += 1;
        }
        for (path, meta) in paths {
            self.scan_file(path, &meta, started, false, &mut report);
        }
        Ok(self.finish(report))
    }

    /// Reads again only what `changes` names (files, and directories read whole), as
    /// [`rescan`](Self::rescan) would find it: the files a watch saw written, created,
    /// renamed or removed. Each named file is read even if its metadata looks unchanged (the
    /// watch saw a write, which a coarse clock may not show). [`Changes::Everything`], a root
    /// that is a single file, or a path that cannot be looked at, make a full rescan.
    pub fn rescan_changes(&mut self, changes: &Changes) -> io::Result<ScanReport> {
        let Changes::Paths(paths) = changes else { return self.rescan() };
        if std::fs::metadata(&self.root)?.is_file() {
            return self.rescan();
        }
        let started = scan_time();
        let mut report = ScanReport::default();
        for path in paths {
            let Ok(below) = path.strip_prefix(&self.root) else { return self.rescan() };
            if below.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
                continue; // hidden: never read (the watch sends `..data` swaps as Everything)
            }
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    report.changed += self.forget_under(path, &[]);
                    continue;
                }
                Err(_) => return self.rescan(),
            };
            if meta.is_dir() {
                let mut found = Vec::new();
                if walk(path, &mut found).is_err() {
                    return self.rescan();
                }
                report.changed += self.forget_under(path, &found);
                for (file, meta) in found {
                    self.scan_file(file, &meta, started, true, &mut report);
                }
            } else if is_manifest(path) {
                self.scan_file(path.clone(), &meta, started, true, &mut report);
            }
        }
        Ok(self.finish(report))
    }

    /// Forgets the known files at or below `path` that are not in `found`; how many.
    fn forget_under(&mut self, path: &Path, found: &[(PathBuf, Metadata)]) -> usize {
        let gone: Vec<PathBuf> = self
            .files
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .filter(|p| found.binary_search_by(|(q, _)| q.as_path().cmp(p)).is_err())
            .cloned()
            .collect();
        gone.iter().filter(|p| self.remove(p)).count()
    }

    /// `report` with the totals over every known file.
    fn finish(&self, mut report: ScanReport) -> ScanReport {
        report.files = self.files.len();
        report.failed = self.files.values().filter(|f| f.error.is_some()).count();
        report
    }

    /// Reads `path` again unless its metadata shows it unchanged (or `always`), and parses it
    /// if its content changed.
    fn scan_file(
        &mut self,
        path: PathBuf,
        meta: &Metadata,
        started: (i64, i64),
        always: bool,
        report: &mut ScanReport,
    ) {
        // Taken before the read: a write after it changes the metadata seen next time.
        let stat = Stat::of(meta);
        if !always && self.files.get(&path).is_some_and(|state| state.stat == Some(stat)) {
            return;
        }
        report.read += 1;
        let content = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted between the walk and the read: gone, like a file never seen.
                report.changed += usize::from(self.remove(&path));
                return;
            }
            Err(e) => {
                self.record_error(&path, None, format!("cannot read: {e}"));
                return;
            }
        };
        let stat = stat.settled(started, self.settle);
        let fingerprint = fingerprint(&content);
        if let Some(state) = self.files.get_mut(&path)
            && state.fingerprint == fingerprint
        {
            state.stat = stat;
            return;
        }
        report.changed += 1;
        let parsed = match std::str::from_utf8(&content) {
            Ok(text) => parse_str(text),
            Err(e) => Err(DocError { line: None, message: format!("not UTF-8 text: {e}") }),
        };
        match parsed {
            Ok(objects) => {
                self.refs.add(&objects);
                let chunks = Chunks::of(objects.iter().map(|(_, o)| o));
                let state = FileState { stat, fingerprint, objects, chunks, error: None };
                if let Some(old) = self.files.insert(path, state) {
                    self.refs.remove(&old.objects);
                }
            }
            Err(DocError { line, message }) => {
                let state = self.record_error(&path, line, message);
                state.fingerprint = fingerprint;
                state.stat = stat;
            }
        }
    }

    /// Forgets `path` and its objects; false if it was not known.
    fn remove(&mut self, path: &Path) -> bool {
        let Some(state) = self.files.remove(path) else { return false };
        self.refs.remove(&state.objects);
        true
    }

    /// Marks `path` as failing, keeping its last good objects (none if it never parsed).
    fn record_error(
        &mut self,
        path: &Path,
        line: Option<usize>,
        message: String,
    ) -> &mut FileState {
        let error = ParseError { file: path.to_path_buf(), line, message };
        let state = self.files.entry(path.to_path_buf()).or_insert_with(|| FileState {
            stat: None,
            fingerprint: (0, 0),
            objects: Vec::new(),
            chunks: Chunks::default(),
            error: None,
        });
        state.error = Some(error);
        state
    }

    /// Files whose current content does not parse, each with file and line.
    pub fn errors(&self) -> Vec<ParseError> {
        self.files.values().filter_map(|f| f.error.clone()).collect()
    }

    /// Every object of every file (the last good version of failing files), with its file and
    /// line, in path order; an object defined in two files is listed twice.
    pub fn objects(&self) -> impl Iterator<Item = (&Path, usize, &Object)> {
        self.files.iter().flat_map(|(path, state)| {
            state.objects.iter().map(move |(line, object)| (path.as_path(), *line, object))
        })
    }

    /// The objects of every file (the last good version of failing files), as a snapshot.
    /// An object defined in two files is taken from the first in path order; the others are
    /// reported.
    pub fn snapshot(&self) -> (Snapshot, Vec<Diagnostic>) {
        // Certificates are judged expired against the time the snapshot is taken.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.refs.repeated == 0 {
            // No object is defined twice (the usual case): every file's chunks as they are,
            // without the look-up per object that finding the first definition of each takes.
            let files = self.files.values().map(|f| &f.chunks);
            return (Chunks::snapshot(files, now), Vec::new());
        }
        let mut seen: HashMap<ObjectRef, (&Path, usize)> = HashMap::new();
        let mut diagnostics = Vec::new();
        let mut first = Vec::new();
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
                first.push(object);
            }
        }
        (Chunks::snapshot([&Chunks::of(first.into_iter())], now), diagnostics)
    }
}

/// Objects by kind, as snapshot chunks.
#[derive(Debug, Default)]
struct Chunks {
    ingresses: Option<Chunk<Ingress>>,
    ingress_classes: Option<Chunk<IngressClass>>,
    services: Option<Chunk<LeanService>>,
    endpoint_slices: Option<Chunk<LeanSlice>>,
    secrets: Option<Chunk<Secret>>,
    config_maps: Option<Chunk<ConfigMap>>,
}

impl Chunks {
    /// `objects` sorted by kind (shared, not copied).
    fn of<'a>(objects: impl Iterator<Item = &'a Object>) -> Self {
        let (mut ingresses, mut classes, mut services) = (Vec::new(), Vec::new(), Vec::new());
        let (mut slices, mut secrets, mut config_maps) = (Vec::new(), Vec::new(), Vec::new());
        for object in objects {
            match object.clone() {
                Object::Ingress(o) => ingresses.push(o),
                Object::IngressClass(o) => classes.push(o),
                Object::Service(o) => services.push(o),
                Object::EndpointSlice(o) => slices.push(o),
                Object::Secret(o) => secrets.push(o),
                Object::ConfigMap(o) => config_maps.push(o),
            }
        }
        fn chunk<T: Named>(objects: Vec<Arc<T>>) -> Option<Chunk<T>> {
            (!objects.is_empty()).then(|| Chunk::new(objects))
        }
        Self {
            ingresses: chunk(ingresses),
            ingress_classes: chunk(classes),
            services: chunk(services),
            endpoint_slices: chunk(slices),
            secrets: chunk(secrets),
            config_maps: chunk(config_maps),
        }
    }

    /// A snapshot of these chunks, taken at `now` (seconds since the epoch).
    fn snapshot<'a>(files: impl IntoIterator<Item = &'a Chunks> + Clone, now: u64) -> Snapshot {
        fn all<'a, T: 'a>(
            files: impl IntoIterator<Item = &'a Chunks>,
            kind: impl Fn(&'a Chunks) -> &'a Option<Chunk<T>>,
        ) -> Objects<T> {
            Objects::from_chunks(files.into_iter().filter_map(|f| kind(f).clone()))
        }
        Snapshot {
            ingresses: all(files.clone(), |f| &f.ingresses),
            ingress_classes: all(files.clone(), |f| &f.ingress_classes),
            services: all(files.clone(), |f| &f.services),
            endpoint_slices: all(files.clone(), |f| &f.endpoint_slices),
            secrets: all(files.clone(), |f| &f.secrets),
            config_maps: all(files, |f| &f.config_maps),
            observed_at: Some(now as i64),
        }
    }
}

/// How many of the files' objects have each reference (by [`Object::ref_hash`]), kept up to
/// date file by file as they change. Two objects with one hash are most likely one object
/// defined twice; a hash collision between distinct objects only sends
/// [`ManifestDir::snapshot`] down its slower, exact path.
#[derive(Debug, Default)]
struct RefCounts {
    counts: HashMap<u64, u32>,
    /// Hashes counted more than once.
    repeated: usize,
}

impl RefCounts {
    fn add(&mut self, objects: &[(usize, Object)]) {
        for (_, object) in objects {
            let count = self.counts.entry(object.ref_hash()).or_default();
            *count += 1;
            self.repeated += usize::from(*count == 2);
        }
    }

    fn remove(&mut self, objects: &[(usize, Object)]) {
        for (_, object) in objects {
            let Entry::Occupied(mut count) = self.counts.entry(object.ref_hash()) else {
                unreachable!("every object removed was added");
            };
            *count.get_mut() -= 1;
            match *count.get() {
                0 => {
                    count.remove();
                }
                1 => self.repeated -= 1,
                _ => {}
            }
        }
    }
}

/// Now, as (seconds, nanoseconds) since the epoch: what [`Stat::settled`] compares with.
fn scan_time() -> (i64, i64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now.as_secs() as i64, i64::from(now.subsec_nanos()))
}

fn fingerprint(content: &[u8]) -> (usize, u64) {
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    (content.len(), h.finish())
}

/// Collects manifest files under `dir`, sorted. Skips hidden entries, and the `..data` and
/// `..<timestamp>` entries of a mounted ConfigMap (whose files are also reachable through the
/// visible symlinks, and would otherwise be read twice).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, Metadata)>) -> io::Result<()> {
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
                out.push((path, meta));
            }
        }
    }
    out.sort_by(|(a, _), (b, _)| a.cmp(b));
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
        snap.services.iter().map(|s| s.name.clone()).collect()
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
    fn snapshots_share_the_chunks_of_unchanged_files() {
        let tmp = tempfile::tempdir().unwrap();
        let many = format!("{}---\n{}", svc("a1"), svc("a2"));
        std::fs::write(tmp.path().join("a.yaml"), many).unwrap();
        std::fs::write(tmp.path().join("b.yaml"), svc("b")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        let (first, _) = dir.snapshot();
        let chunks = first.services.chunks();
        assert_eq!(chunks.len(), 2, "a chunk per file");
        assert_eq!(chunks[0].namespace(), Some("default"), "one namespace per file: known");
        std::fs::write(tmp.path().join("b.yaml"), svc("c")).unwrap();
        dir.rescan().unwrap();
        let (second, _) = dir.snapshot();
        let (a, b) = (&second.services.chunks()[0], &second.services.chunks()[1]);
        assert!(Chunk::ptr_eq(a, &chunks[0]), "a.yaml did not change: its chunk is shared");
        assert!(!Chunk::ptr_eq(b, &chunks[1]));
        assert_eq!(names(&dir), ["a1", "a2", "c"]);
        assert!(first.ingresses.is_empty() && first.ingresses.chunks().is_empty());
    }

    #[test]
    fn named_changes_are_read_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("a.yaml"), svc("a")).unwrap();
        std::fs::write(root.join("sub/b.yaml"), svc("b")).unwrap();
        let mut dir = trusting(root);
        dir.rescan().unwrap();
        let paths = |list: &[&str]| Changes::Paths(list.iter().map(|p| root.join(p)).collect());

        // Both change; only the one named is read: the watch names every file written.
        std::fs::write(root.join("a.yaml"), svc("a2")).unwrap();
        std::fs::write(root.join("sub/b.yaml"), svc("b2")).unwrap();
        let r = dir.rescan_changes(&paths(&["sub/b.yaml"])).unwrap();
        assert_eq!((r.files, r.read, r.changed), (2, 1, 1));
        assert_eq!(names(&dir), ["a", "b2"]);
        // Named again unchanged: read (a write may not show in coarse timestamps), not parsed.
        let r = dir.rescan_changes(&paths(&["sub/b.yaml"])).unwrap();
        assert_eq!((r.read, r.changed), (1, 0));

        // A directory created with files, one removed: read whole, forgotten whole.
        std::fs::create_dir_all(root.join("new/deep")).unwrap();
        std::fs::write(root.join("new/deep/c.yaml"), svc("c")).unwrap();
        std::fs::write(root.join("new/.hidden.yaml"), svc("hidden")).unwrap();
        std::fs::remove_dir_all(root.join("sub")).unwrap();
        let r = dir.rescan_changes(&paths(&["new", "sub", ".tmp.yaml"])).unwrap();
        assert_eq!((r.files, r.changed), (2, 2), "{r:?}");
        assert_eq!(names(&dir), ["a", "c"]);

        // Everything, or a path outside the tree: a full rescan, which finds a.yaml's change.
        let outside = tmp.path().parent().unwrap().join("elsewhere.yaml");
        let r = dir.rescan_changes(&Changes::Paths([outside].into()));
        assert_eq!(r.unwrap().changed, 1);
        assert_eq!(names(&dir), ["a2", "c"]);
        std::fs::write(root.join("a.yaml"), svc("a3")).unwrap();
        assert_eq!(dir.rescan_changes(&Changes::Everything).unwrap().changed, 1);
        assert_eq!(names(&dir), ["a3", "c"]);
    }

    /// A directory whose files' metadata is trusted as soon as it is older than the scan.
    fn trusting(root: &Path) -> ManifestDir {
        ManifestDir { settle: Duration::ZERO, ..ManifestDir::new(root) }
    }

    /// Returns once a file written now gets a later change time than `file`'s (timestamps
    /// come from a clock that ticks every few milliseconds).
    fn wait_for_next_tick(dir: &Path, file: &Path) {
        let ctime = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.ctime(), m.ctime_nsec())
        };
        let before = ctime(file);
        let probe = dir.join("tick.txt");
        for _ in 0..1_000_000 {
            std::fs::write(&probe, "").unwrap();
            if ctime(&probe) > before {
                return;
            }
            std::thread::yield_now();
        }
        panic!("the filesystem clock did not move");
    }

    #[test]
    fn files_with_unchanged_metadata_are_not_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.yaml"), svc("a")).unwrap();
        std::fs::write(tmp.path().join("b.yaml"), svc("b")).unwrap();
        let mut dir = trusting(tmp.path());
        assert_eq!(dir.rescan().unwrap().read, 2);
        let r = dir.rescan().unwrap();
        assert_eq!((r.read, r.changed), (0, 0));
        std::fs::write(tmp.path().join("a.yaml"), svc("longer")).unwrap();
        let r = dir.rescan().unwrap();
        assert_eq!((r.read, r.changed), (1, 1));
        assert_eq!(names(&dir), ["longer", "b"]);
        // Replaced by a rename with the same content: read (new inode), but not reparsed.
        std::fs::write(tmp.path().join(".b.tmp"), svc("b")).unwrap();
        std::fs::rename(tmp.path().join(".b.tmp"), tmp.path().join("b.yaml")).unwrap();
        let r = dir.rescan().unwrap();
        assert_eq!((r.read, r.changed), (1, 0));
    }

    #[test]
    fn a_file_written_back_with_its_old_timestamp_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.yaml");
        std::fs::write(&file, svc("a")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let mut dir = trusting(tmp.path());
        dir.rescan().unwrap();
        // As a copy that preserves times would: same size and modification time. The change
        // time (which no one can set) still moves, once the filesystem's clock has.
        wait_for_next_tick(tmp.path(), &file);
        std::fs::write(&file, svc("b")).unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let r = dir.rescan().unwrap();
        assert_eq!((r.read, r.changed), (1, 1));
        assert_eq!(names(&dir), ["b"]);
    }

    #[test]
    fn recently_written_files_are_read_until_their_times_settle() {
        // Two writes within one tick of the filesystem clock, with the same size, leave the
        // metadata unchanged: a file written within `SETTLE` of a scan is read again next
        // time, whatever its metadata says.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.yaml");
        std::fs::write(&file, svc("a")).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        let r = dir.rescan().unwrap();
        assert_eq!((r.read, r.changed), (1, 0), "read again, found unchanged");
        std::fs::write(&file, svc("b")).unwrap();
        assert_eq!(dir.rescan().unwrap().changed, 1);
        assert_eq!(names(&dir), ["b"]);
    }

    #[test]
    fn settled_needs_both_times_older_than_the_margin() {
        let stat = |m: i64, c: i64| Stat { dev: 1, ino: 2, len: 3, mtime: (m, 5), ctime: (c, 5) };
        let now = (1_000, 10);
        let settle = Duration::from_secs(2);
        assert_eq!(stat(997, 997).settled(now, settle), Some(stat(997, 997)));
        assert_eq!(stat(998, 998).settled(now, settle), Some(stat(998, 998)), "5 ns < 10 ns");
        assert_eq!(stat(999, 997).settled(now, settle), None, "modified too recently");
        assert_eq!(stat(997, 999).settled(now, settle), None, "changed too recently");
        assert_eq!(stat(2_000, 997).settled(now, settle), None, "modified in the future");
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
    fn duplicates_are_tracked_as_files_change() {
        let tmp = tempfile::tempdir().unwrap();
        let two = format!("{}---\n{}", svc("x"), svc("x"));
        std::fs::write(tmp.path().join("a.yaml"), &two).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        assert_eq!(dir.refs.repeated, 1, "twice in one file");
        assert_eq!(dir.snapshot().1.len(), 1);
        std::fs::write(tmp.path().join("a.yaml"), svc("x")).unwrap();
        std::fs::write(tmp.path().join("b.yaml"), svc("x")).unwrap();
        dir.rescan().unwrap();
        assert_eq!(dir.refs.repeated, 1, "once in each of two files");
        std::fs::write(tmp.path().join("b.yaml"), svc("other")).unwrap();
        dir.rescan().unwrap();
        assert_eq!(dir.refs.repeated, 0);
        let (snap, diags) = dir.snapshot();
        assert!(diags.is_empty());
        assert_eq!(snap.services.len(), 2);
        // A broken file keeps its objects, and so its references.
        std::fs::write(tmp.path().join("b.yaml"), svc("x")).unwrap();
        dir.rescan().unwrap();
        std::fs::write(tmp.path().join("a.yaml"), "kind: [").unwrap();
        dir.rescan().unwrap();
        assert_eq!(dir.refs.repeated, 1);
        assert_eq!(dir.snapshot().1.len(), 1);
        std::fs::remove_file(tmp.path().join("a.yaml")).unwrap();
        dir.rescan().unwrap();
        assert_eq!((dir.refs.repeated, dir.refs.counts.len()), (0, 1));
        assert_eq!(names(&dir), ["x"]);
        assert!(dir.snapshot().1.is_empty());
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
