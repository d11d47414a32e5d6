//! `sluice check`: what a directory of manifests would serve, and what is wrong with it.

use std::process::ExitCode;

use sluice_manifests::ManifestDir;

use crate::cli::CheckArgs;
use crate::control::table_for;
use crate::report::ConfigView;

/// Prints the routing table and diagnostics. Exit status: 0 when nothing is rejected, 1 when
/// an object is rejected or a file does not parse, 2 when the directory cannot be read.
pub fn run(args: &CheckArgs) -> ExitCode {
    let mut dir = ManifestDir::new(&args.dir);
    if let Err(e) = dir.rescan() {
        eprintln!("error: cannot read manifests from {}: {e}", args.dir.display());
        return ExitCode::from(2);
    }
    let (table, _) = table_for(&dir, &args.class.settings());
    let errors: Vec<String> = dir.errors().iter().map(ToString::to_string).collect();
    let view = ConfigView::new(&table, &errors);
    if args.json {
        match serde_json::to_string_pretty(&view) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", view.to_text());
    }
    if view.has_rejections() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
