//! `kubectl-sluice`: the kubectl plugin (`kubectl sluice ...` once on `PATH`). See
//! `kubectl sluice --help` and [`sluice::plugin`].

fn main() -> std::process::ExitCode {
    sluice::plugin::main()
}
