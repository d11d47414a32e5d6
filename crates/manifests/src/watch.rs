use std::path::Path;
use std::time::Duration;

use notify::{PollWatcher, RecursiveMode, Watcher};
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
        if let Err(e) = &event {
            tracing::warn!(error = %e, "file watch error; changes are still picked up on the next event");
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

fn poll(
    root: &Path,
    handler: impl notify::EventHandler,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let config = notify::Config::default().with_poll_interval(Duration::from_secs(1));
    let mut w = PollWatcher::new(handler, config)?;
    w.watch(root, RecursiveMode::Recursive)?;
    Ok(Box::new(w))
}
