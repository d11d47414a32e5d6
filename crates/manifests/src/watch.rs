use std::path::Path;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, PollWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Keeps a filesystem watch alive; dropping it stops the watch.
pub struct Watch {
    _watcher: Box<dyn Watcher + Send>,
}

/// Watches `root` recursively. Each batch of filesystem events becomes at most one pending
/// wake-up on the returned channel (the channel holds one message, so bursts coalesce); the
/// caller debounces and calls [`ManifestDir::rescan`](crate::ManifestDir::rescan), which finds
/// out what changed by itself. Falls back to polling every second when inotify is not
/// available (for example when the watch limit is reached).
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
    let root = target;
    let (tx, rx) = mpsc::channel(1);
    let handler = move |event: notify::Result<notify::Event>| {
        match &event {
            Err(e) => {
                tracing::warn!(error = %e, "file watch error; changes are still picked up on the next event");
            }
            Ok(event) if !changes_content(&event.kind) => return,
            Ok(_) => {}
        }
        // A full channel already holds a wake-up: this event is covered by it.
        let _ = tx.try_send(());
    };
    let watcher: Box<dyn Watcher + Send> = match notify::recommended_watcher(handler.clone()) {
        Ok(mut w) => match w.watch(root, RecursiveMode::Recursive) {
            Ok(()) => Box::new(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch with inotify; polling every second instead");
                poll(root, handler)?
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch with inotify; polling every second instead");
            poll(root, handler)?
        }
    };
    Ok((Watch { _watcher: watcher }, rx))
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
