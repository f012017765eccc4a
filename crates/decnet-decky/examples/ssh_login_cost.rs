//! Benchmark: the SSH decky's CPU per login, per login plus one shell
//! command, and memory per idle session (without a shell, and with an
//! interactive shell on a pty), with the real OpenSSH client (through
//! sshpass) as the attacker.
//!
//! `cargo run --release -p decnet-decky --example ssh_login_cost -- [release] [logins] [idle]`
//! (defaults: debian-12, 100 logins, 50 idle sessions). The clients are
//! separate processes, so the CPU and memory read from /proc/self are
//! the decky's alone. Loopback only; every loop is bounded.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use decnet_decky::listener::ServiceListener;
use decnet_decky::persona::Persona;
use decnet_decky::shell::{commands, image, Shell};
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits};

/// CPU time the decky's runtime threads (tokio's workers, where every
/// session runs) have used, in seconds: the scheduler's exact per-thread
/// runtimes (`/proc/self/task/*/schedstat`, nanoseconds), finer than the
/// 10 ms ticks of `/proc/self/stat`. The main thread, which only starts
/// the clients, is left out.
/// The password every benchmark login uses (listed in the persona).
const PASSWORD: &str = "bench-password";

fn cpu_seconds() -> f64 {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "tokio-rt-worker" {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// CPU time of the calling thread, in seconds (unaffected by other
/// processes competing for the cores, unlike wall time).
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The shell's own part of a login plus one command, without SSH: a
/// session's shell (its filesystem over the decky's image) and `uname -a`;
/// and what building the image cost each session before it was shared.
fn shell_cost(persona: &Persona) {
    const ROUNDS: usize = 2_000;
    let persona = std::sync::Arc::new(persona.clone());
    let _ = Shell::new("root", persona.clone()).run("uname -a");
    let t0 = thread_cpu_seconds();
    for _ in 0..ROUNDS {
        let mut sh = Shell::new("root", persona.clone());
        std::hint::black_box(sh.run("uname -a"));
    }
    let per_session = (thread_cpu_seconds() - t0) * 1000.0 / ROUNDS as f64;
    let t0 = thread_cpu_seconds();
    for _ in 0..ROUNDS {
        std::hint::black_box(image::build(&persona, &commands::program_names(&persona)));
    }
    let per_image = (thread_cpu_seconds() - t0) * 1000.0 / ROUNDS as f64;
    println!(
        "{}: shell per session (new shell + `uname -a`): {per_session:.4} ms CPU; building the image (once per decky now, per session before): {per_image:.4} ms CPU",
        persona.release
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ssh(port: u16, command: &[&str]) -> Command {
    let mut c = Command::new("sshpass");
    c.args(["-p", PASSWORD, "ssh", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=20", "-p", &port.to_string(), "root@127.0.0.1"])
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let release = args.get(1).cloned().unwrap_or_else(|| "debian-12".into());
    let logins: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let idle: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);

    // The blocking thread that made the host keys exits at once, so it is
    // gone before the measurement (its runtime would vanish from the sum).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .unwrap();
    let name = "bench-ssh";
    let persona = Persona::derive(name, None, None, 1_700_000_000)
        // Every login gets in at once: the policy's credentials win over the
        // per-source attempt count and the root rule.
        .with_overrides(&serde_json::json!({
            "release": release,
            "auth": { "accept_after": [1, 1], "credentials": [["root", PASSWORD]] },
        }))
        .unwrap();
    // All clients come from 127.0.0.1: lift the per-source cap (16 by
    // default) too, or most idle sessions would be refused, not measured.
    let limits = Limits { max_sessions: 2 * idle + 8, max_sessions_per_source: 2 * idle + 8, ..Limits::default() };
    shell_cost(&persona);
    let listener = rt.block_on(async {
        let ctx = DeckyContext::new(name, persona, LineSink::detached(1 << 16), limits, b"bench-seed");
        ctx.host_keys.get().await.unwrap();
        ServiceListener::open(ctx, "ssh", "127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap()
    });
    let port = listener.addr.port();

    // Warm-up: first-use tables, allocator arenas.
    for _ in 0..5 {
        assert!(ssh(port, &["true"]).status().unwrap().success(), "warm-up login failed");
    }

    // Login + exec of a command that does nothing, then of one a bot
    // really sends first: the difference is the shell's own work.
    for (what, command) in [("login (kex, auth, exec true, close)", "true"), ("login + `uname -a`", "uname -a")] {
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut ok = 0;
        for _ in 0..logins {
            if ssh(port, &[command]).status().unwrap().success() {
                ok += 1;
            }
        }
        let cpu = cpu_seconds() - cpu0;
        println!(
            "{release}: {ok}/{logins} {what} in {:.2} s: decky CPU {:.3} ms per login",
            t0.elapsed().as_secs_f64(),
            cpu * 1000.0 / logins as f64
        );
    }

    // Idle sessions: `ssh -N` (authenticated, no channel work), then, with
    // those still open, interactive shells on a pty whose stdin stays open
    // and silent. Each batch is measured on memory the process has not
    // freed before, so neither reuses the other's.
    std::thread::sleep(Duration::from_millis(500));
    let mut everyone: Vec<Child> = Vec::new();
    for (what, args) in
        [("idle sessions without a shell (ssh -N)", &["-N"][..]), ("idle shells on a pty (ssh -tt)", &["-tt"][..])]
    {
        let rss0 = rss_kib();
        let mut clients: Vec<Child> = (0..idle)
            .map(|_| {
                let mut c = ssh(port, args);
                // A pty shell keeps running while its stdin is open.
                c.stdin(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        // Sessions are idle once every client has logged in; wait a bounded while.
        std::thread::sleep(Duration::from_secs(8));
        let rss1 = rss_kib();
        // A refused or failed client has exited; only live ones count.
        let live = clients.iter_mut().map(|c| c.try_wait()).filter(|s| matches!(s, Ok(None))).count();
        println!(
            "{release}: {live}/{idle} {what}: RSS {rss0} -> {rss1} KiB, {:.1} KiB per idle session",
            (rss1.saturating_sub(rss0)) as f64 / live.max(1) as f64
        );
        everyone.extend(clients);
    }
    for c in &mut everyone {
        let _ = c.kill();
        let _ = c.wait();
    }
    rt.block_on(listener.close());
}
