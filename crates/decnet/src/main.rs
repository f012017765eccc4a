fn main() -> std::process::ExitCode {
    return_large_allocations_to_the_kernel();
    // The config file's keys become the flags' defaults before clap parses.
    let cli = match decnet::config::parse_cli(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    decnet::cli::run(cli)
}

/// Every password check allocates argon2's ~19 MiB of blocks on a blocking
/// thread. glibc raises its mmap threshold to the size of each freed mmap'd
/// chunk, so after the first check those blocks came from per-thread heap
/// arenas and stayed there: 200 wrong-password logins left the API at
/// ~500 MiB RSS for good (`decnet-bench soak-api`). A fixed threshold turns
/// off that adjustment: allocations of 1 MiB and more are always mmap'd
/// and go back to the kernel when freed. Small allocations are unaffected.
fn return_large_allocations_to_the_kernel() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
