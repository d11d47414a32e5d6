use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, PollWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// What changed in a watched tree since it was last asked ([`ChangeLog::take`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// Only these files and directories (written, created, renamed or removed).
    Paths(BTreeSet<PathBuf>),
    /// Anything may have: the watch lost events, could not say where, or saw a change that
    /// moves what other paths lead to (a ConfigMap volume's `..data` link swapped).
    Everything,
}

impl Changes {
    fn add(&mut self, root: &Path, event: &notify::Event) {
        let Changes::Paths(paths) = self else { return };
        let moves_links = |p: &PathBuf| {
            let below = p.strip_prefix(root).unwrap_or(p);
            below.components().any(|c| c.as_os_str().to_string_lossy().starts_with(".."))
        };
        let known_kind = !matches!(event.kind, EventKind::Any | EventKind::Other);
        if event.need_rescan()
            || !known_kind
            || event.paths.is_empty()
            || event.paths.iter().any(moves_links)
        {
            *self = Changes::Everything;
        } else {
            paths.extend(event.paths.iter().cloned());
        }
    }
}

/// Keeps a filesystem watch alive; dropping it stops the watch.
pub struct Watch {
    _watcher: Box<dyn Watcher + Send>,
    changes: ChangeLog,
}

impl Watch {
    /// Where the watch keeps what changed, for the thread that rescans.
    pub fn changes(&self) -> ChangeLog {
        self.changes.clone()
    }
}

/// What a [`Watch`] saw change, until taken.
#[derive(Clone, Debug)]
pub struct ChangeLog(Arc<Mutex<Changes>>);

impl ChangeLog {
    /// What changed since the last call (since the watch started, the first time), for
    /// [`ManifestDir::rescan_changes`](crate::ManifestDir::rescan_changes).
    pub fn take(&self) -> Changes {
        let mut changes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *changes, Changes::Paths(BTreeSet::new()))
    }
}

/// Watches `root` recursively. Each batch of filesystem events becomes at most one pending
/// wake-up on the returned channel (the channel holds one message, so bursts coalesce), and
/// its paths are kept in the watch's [`ChangeLog`]: the caller debounces, takes what changed and reads
/// only that again. Falls back to polling every second when inotify is not available (for
/// example when the watch limit is reached); each poll then asks for a full rescan.
pub fn watch(root: &Path) -> notify::Result<(Watch, mpsc::Receiver<()>)> {
    // A single file is watched through its directory: editors and `kubectl cp` replace files
    // by renaming, which would leave a watch on the old inode blind.
    let target = match root.parent() {
        Some(parent) if root.is_file() => {
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }
        }
        _ => root,
    };
    let root = target.to_path_buf();
    let (tx, rx) = mpsc::channel(1);
    let changes = ChangeLog(Arc::new(Mutex::new(Changes::Paths(BTreeSet::new()))));
    let seen = changes.0.clone();
    let handler = move |polled: bool, event: notify::Result<notify::Event>| {
        {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            match &event {
                Err(e) => {
                    tracing::warn!(error = %e, "file watch error; the next change rescans every file");
                    *seen = Changes::Everything;
                }
                Ok(event) if !changes_content(&event.kind) => return,
                Ok(_) if polled => *seen = Changes::Everything,
                Ok(event) => seen.add(&root, event),
            }
        }
        // A full channel already holds a wake-up: this event is covered by it.
        let _ = tx.try_send(());
    };
    let inotify = handler.clone();
    let watcher: Box<dyn Watcher + Send> = match notify::recommended_watcher(move |e| {
        inotify(false, e)
    }) {
        Ok(mut w) => match w.watch(target, RecursiveMode::Recursive) {
            Ok(()) => Box::new(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch with inotify; polling every second instead");
                poll(target, move |e| handler(true, e))?
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch with inotify; polling every second instead");
            poll(target, move |e| handler(true, e))?
        }
    };
    Ok((Watch { _watcher: watcher, changes }, rx))
}

/// False for the events of reading: opening a file or directory, and closing it unwritten.
/// inotify reports those too, and the rescan that a wake-up causes opens every directory (and
/// the files it reads), so without this filter each rescan woke the loop for the next one:
/// an idle Sluice rescanned its manifests once per debounce period, for ever.
fn changes_content(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

fn poll(
    root: &Path,
    handler: impl notify::EventHandler,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let config = notify::Config::default().with_poll_interval(Duration::from_secs(1));
    let mut w = PollWatcher::new(handler, config)?;
    w.watch(root, RecursiveMode::Recursive)?;
    Ok(Box::new(w))
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reading_is_not_a_change() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn the_watch_keeps_the_paths_written() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let (watch, mut rx) = watch(&root).unwrap();
        let log = watch.changes();
        // As editors and the benchmarks write: a hidden file renamed into place.
        std::fs::write(root.join(".a.yaml.tmp"), "a: 1\n").unwrap();
        std::fs::rename(root.join(".a.yaml.tmp"), root.join("a.yaml")).unwrap();
        let mut paths = BTreeSet::new();
        // Events may come in more than one batch: wait until the rename is in.
        while !paths.contains(&root.join("a.yaml")) {
            tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
            match log.take() {
                Changes::Paths(p) => paths.extend(p),
                Changes::Everything => panic!("a plain write is not Everything"),
            }
        }
        // A ConfigMap volume's update swaps a `..data` link: every file may have changed.
        std::fs::create_dir(root.join("..2026_12_02")).unwrap();
        // (The rename's own events may still come first, as paths.)
        loop {
            tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
            if log.take() == Changes::Everything {
                break;
            }
        }
    }

    #[tokio::test]
    async fn reading_the_tree_wakes_nobody() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("sub/a.yaml"), "a: 1\n").unwrap();
        let (_watch, mut rx) = watch(tmp.path()).unwrap();
        // What a rescan does: list the directories, read the files.
        let mut dir = crate::ManifestDir::new(tmp.path());
        dir.rescan().unwrap();
        std::fs::read(tmp.path().join("sub/a.yaml")).unwrap();
        // Nothing to wait for: an absence is shown by a wait, far longer than the
        // microseconds inotify takes to deliver.
        let woken = tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await;
        assert!(woken.is_err(), "woken by reads");
        // A write still wakes it.
        std::fs::write(tmp.path().join("b.yaml"), "b: 1\n").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.unwrap();
    }
}
