//! The manifests-directory source: Kubernetes objects read from YAML and JSON files.
//!
//! [`ManifestDir`] walks a directory (recursively; multi-document YAML; `List` kinds), keeps
//! the kinds Sluice uses and builds a [`Snapshot`]. On every [`ManifestDir::rescan`] only the
//! files whose metadata changed are read, and only those whose content changed are parsed
//! again; a file that no longer parses keeps its last
//! good objects, and the error (file and line) is reported by [`ManifestDir::errors`].
//! [`watch`] turns filesystem events into wake-ups for the caller's debounce loop, and keeps
//! the paths they name, so that [`ManifestDir::rescan_changes`] reads only those again.

mod dir;
#[doc(hidden)]
pub mod fuzzing;
mod parse;
mod watch;

pub use dir::{ManifestDir, ScanReport};
pub use parse::{DocError, Object, ParseError, parse_str};
pub use watch::{ChangeLog, Changes, Watch, watch};
