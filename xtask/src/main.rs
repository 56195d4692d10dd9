//! Project automation, run as `cargo xtask <command>`:
//!
//! * `cargo xtask demo`: start an introduction server and three peers as
//!   separate processes and show, step by step, that the system works.
//! * `cargo xtask bench [--quick] [--report-only] [-p PACKAGE]...`: run every
//!   benchmark and write the figures, as ratios against baselines measured
//!   in the same run, to `docs/benchmarks.md`.
//! * `cargo xtask soak [--minutes N] [--peers N] [--seed N] [--rate N]`:
//!   many peers dialing each other through two daemons while faults are
//!   injected; checks every dial's outcome and that resources come back.
//! * `cargo xtask fuzz [--minutes N] [--target NAME]... [--keep N]
//!   [--merge-only]`: run every fuzz target on the nightly toolchain and
//!   merge what adds coverage into the committed corpora.

mod bench;
mod demo;
mod fuzz;
mod procs;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         demo                      run the multi-process demonstration\n  \
         bench [--quick] [--report-only] [-p PACKAGE]...\n                            \
         run the benchmarks and write docs/benchmarks.md\n  \
         soak [--minutes N] [--peers N] [--seed N] [--rate N]\n                            \
         run the system under faults and check it recovers\n  \
         fuzz [--minutes N] [--target NAME]... [--keep N] [--merge-only]\n                            \
         run the fuzz targets (nightly, cargo-fuzz) and merge new corpus entries"
    );
    ExitCode::from(2)
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo binary that runs us (so the pinned toolchain is used).
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        return usage();
    };
    let rest: Vec<String> = args.collect();
    let result = match cmd.as_str() {
        "demo" => demo::run(&rest),
        "bench" => bench::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "soak" => soak::run(&rest),
        "-h" | "--help" | "help" => return usage(),
        other => {
            eprintln!("unknown command {other:?}");
            return usage();
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
