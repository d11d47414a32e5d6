//! Sluice's binary, as a library so that integration tests can start its parts in-process:
//! the command line ([`cli`]), `serve` ([`serve`], [`control`], [`admin`], [`webhook`]), `check`
//! ([`check`], [`report`]), the echo backend ([`echo`]) and the quickstart ([`quickstart`]); and the
//! `kubectl-sluice` plugin ([`plugin`]).

pub mod admin;
pub mod alloc;
pub mod certs;
pub mod check;
pub mod cli;
pub mod control;
pub mod echo;
mod kube_mode;
pub mod migrate;
pub mod plugin;
pub mod process_metrics;
pub mod quickstart;
pub mod report;
pub mod serve;
pub mod webhook;
pub mod webhook_cert;
