//! `decnet bench`: runs `decnet-bench`, the load generator, with the same
//! arguments.
//!
//! The load generator lives in its own crate and binary so that `decnet`,
//! the binary every host runs, does not carry its dependencies (the
//! latency histogram) or its code. This subcommand keeps the documented
//! `decnet bench ...` spelling working: it replaces this process with
//! `decnet-bench` found next to the `decnet` binary (where `cargo build`
//! and the install step put both), else on `PATH`; `DECNET_BENCH_BIN`
//! names another one.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Arguments for decnet-bench (see `decnet bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Where `decnet-bench` is: `DECNET_BENCH_BIN`, else beside this binary, else `PATH`.
fn bench_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DECNET_BENCH_BIN") {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("decnet-bench")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("decnet-bench"),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bin = bench_binary();
    // `exec` only returns on failure.
    let err = std::process::Command::new(&bin).args(&args.args).exec();
    anyhow::bail!(
        "cannot run {}: {err}; `decnet bench` needs the decnet-bench binary \
         (cargo build --release -p decnet-bench, installed beside decnet or on PATH, or set DECNET_BENCH_BIN)",
        bin.display()
    )
}
