//! `decnet bench` runs the separate `decnet-bench` binary with its
//! arguments (the load generator itself is tested in crates/decnet-bench).

mod support;

use support::BIN;

#[test]
fn bench_passes_every_argument_to_decnet_bench() {
    // `echo` stands in for decnet-bench: it prints what it was given.
    let out = std::process::Command::new(BIN)
        .args(["bench", "--msgs", "5", "--help", "soak", "--pid", "1"])
        .env("DECNET_BENCH_BIN", "echo")
        .output()
        .expect("run decnet bench");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "--msgs 5 --help soak --pid 1");
}

#[test]
fn missing_decnet_bench_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["bench", "--msgs", "10"])
        .env("DECNET_BENCH_BIN", dir.path().join("no-such-bench"))
        .output()
        .expect("run decnet bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs the decnet-bench binary") && stderr.contains("no-such-bench"), "{stderr}");
}
