//! What the host is and what runs on it: uname, hostname, id, w/who/last,
//! uptime, free, df, ps/top, nproc/lscpu/lspci, dmesg, mount, getconf,
//! date, crontab, process control, services, accounts and privilege.
//! Every number comes from the persona, so `free` equals `/proc/meminfo`
//! and `nproc` equals `/proc/cpuinfo`.

use super::{err_prefix, split_flags, Output};
use crate::persona::OsFamily;
use crate::shell::image;
use crate::shell::{now, Shell};

fn fmt_time(ts: i64, pattern: &'static [time::format_description::FormatItem<'static>]) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(pattern).ok()).unwrap_or_default()
}

const HMS: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second]");
const HM: &[time::format_description::FormatItem<'static>] = time::macros::format_description!("[hour]:[minute]");
/// A start time more than a day old, as `ps` shows it (`Nov27`).
const STIME_DAY: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[month repr:short][day]");
const LAST: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]");
const DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] UTC [year]"
);

pub fn uname(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, long, _) = split_flags(&argv[1..]);
    let p = &sh.persona;
    let all = flags.contains('a') || long.iter().any(|l| l == "all");
    let os = "GNU/Linux";
    let mut parts: Vec<&str> = Vec::new();
    if all || flags.contains('s') || flags.is_empty() {
        parts.push("Linux");
    }
    if all || flags.contains('n') {
        parts.push(&p.hostname);
    }
    if all || flags.contains('r') {
        parts.push(&p.kernel_release);
    }
    if all || flags.contains('v') {
        parts.push(&p.kernel_version);
    }
    if all || flags.contains('m') {
        parts.push(&p.machine);
    }
    if (all && p.family != OsFamily::Embedded) || flags.contains('p') {
        parts.push(if p.machine == "x86_64" { "x86_64" } else { "unknown" });
    }
    if (all && p.family != OsFamily::Embedded) || flags.contains('i') {
        parts.push(if p.machine == "x86_64" { "x86_64" } else { "unknown" });
    }
    if all || flags.contains('o') {
        parts.push(os);
    }
    Output::ok(format!("{}\n", parts.join(" ")))
}

pub fn arch(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok(format!("{}\n", sh.persona.machine))
}

pub fn hostname(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    match argv.get(1).map(String::as_str) {
        None => Output::ok(format!("{}\n", sh.persona.hostname)),
        Some("-f") | Some("--fqdn") => Output::ok(format!("{}\n", sh.persona.fqdn())),
        Some("-d") => Output::ok(format!("{}\n", sh.persona.domain)),
        Some("-i") | Some("-I") => Output::ok(format!("{} \n", sh.persona.interfaces[0].address)),
        Some(_) if sh.uid != 0 => Output::fail(1, "hostname: you must be root to change the host name\n"),
        Some(_) => Output::status(0),
    }
}

fn groups_of(sh: &Shell) -> Vec<(u32, String)> {
    let mut g = vec![(sh.uid, sh.user.clone())];
    if sh.uid >= 1000 && sh.persona.users.iter().filter(|u| u.uid >= 1000).map(|u| u.uid).min() == Some(sh.uid) {
        g.extend([(4, "adm".to_string()), (27, "sudo".to_string())]);
    }
    g
}

pub fn id(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    if let Some(u) = operands.first() {
        if sh.persona.user(u).is_none() {
            return Output::fail(1, format!("id: '{u}': no such user\n"));
        }
    }
    if flags.contains('u') {
        return Output::ok(if flags.contains('n') { format!("{}\n", sh.user) } else { format!("{}\n", sh.uid) });
    }
    if flags.contains('g') {
        return Output::ok(if flags.contains('n') { format!("{}\n", sh.user) } else { format!("{}\n", sh.uid) });
    }
    let groups: Vec<String> = groups_of(sh).iter().map(|(g, n)| format!("{g}({n})")).collect();
    Output::ok(format!("uid={u}({n}) gid={u}({n}) groups={}\n", groups.join(","), u = sh.uid, n = sh.user))
}

pub fn whoami(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok(format!("{}\n", sh.user))
}

pub fn groups(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok(format!("{}\n", groups_of(sh).into_iter().map(|(_, n)| n).collect::<Vec<_>>().join(" ")))
}

/// The attacker's own login as `who`/`w` show it.
fn own_session(sh: &Shell) -> (String, String) {
    let from = sh
        .var("SSH_CLIENT")
        .and_then(|c| c.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "10.0.0.1".into());
    (from, fmt_time(now() - 42, HM))
}

fn uptime_text(sh: &Shell) -> String {
    let up = sh.persona.uptime(now());
    let (days, hours, mins) = (up / 86_400, (up % 86_400) / 3600, (up % 3600) / 60);
    let span = if days > 0 { format!("{days} days, {hours:>2}:{mins:02}") } else { format!("{hours:>2}:{mins:02}") };
    let load = String::from_utf8_lossy(&sh.read_file("/proc/loadavg").unwrap_or_default()).into_owned();
    let l: Vec<&str> = load.split_whitespace().collect();
    format!(
        " {} up {span},  {},  load average: {}, {}, {}",
        fmt_time(now(), HMS),
        if sh.tty.is_some() { "1 user" } else { "0 users" },
        l.first().unwrap_or(&"0.00"),
        l.get(1).unwrap_or(&"0.00"),
        l.get(2).unwrap_or(&"0.00")
    )
}

pub fn uptime(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.get(1).map(String::as_str) == Some("-p") {
        let up = sh.persona.uptime(now());
        return Output::ok(format!(
            "up {} days, {} hours, {} minutes\n",
            up / 86_400,
            (up % 86_400) / 3600,
            (up % 3600) / 60
        ));
    }
    if argv.get(1).map(String::as_str) == Some("-s") {
        const FULL: &[time::format_description::FormatItem<'static>] =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        return Output::ok(format!("{}\n", fmt_time(sh.persona.boot_time, FULL)));
    }
    Output::ok(format!("{}\n", uptime_text(sh)))
}

pub fn w(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let (from, at) = own_session(sh);
    let mut out = format!("{}\nUSER     TTY      FROM             LOGIN@   IDLE   JCPU   PCPU WHAT\n", uptime_text(sh));
    if let Some(tty) = &sh.tty {
        out.push_str(&format!("{:<8} {tty:<8} {from:<16} {at}    0.00s  0.02s  0.00s w\n", sh.user));
    }
    Output::ok(out)
}

pub fn who(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let (from, _) = own_session(sh);
    const WHO: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    let Some(tty) = &sh.tty else { return Output::status(0) };
    Output::ok(format!("{:<8} {tty:<12} {} ({from})\n", sh.user, fmt_time(now() - 42, WHO)))
}

pub fn last(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let mut out = String::new();
    for l in &sh.persona.last_logins {
        let dur = 600 + l.at % 7_000;
        out.push_str(&format!(
            "{:<8} {:<12} {:<16} {} - {}  ({:02}:{:02})\n",
            l.user,
            l.tty,
            l.from,
            fmt_time(l.at, LAST),
            fmt_time(l.at + dur, HM),
            dur / 3600,
            (dur % 3600) / 60
        ));
    }
    out.push_str(&format!(
        "reboot   system boot  {:<16} {}   still running\n\nwtmp begins {}\n",
        sh.persona.kernel_release,
        fmt_time(sh.persona.boot_time, LAST),
        fmt_time(sh.persona.boot_time - 86_400 * 60, DATE)
    ));
    Output::ok(out)
}

/// `free` from the same numbers as `/proc/meminfo`.
pub fn free(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, long, _) = split_flags(&argv[1..]);
    let info = String::from_utf8_lossy(image::meminfo(&sh.persona).as_bytes()).into_owned();
    let get = |k: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (total, free, avail, buffers, cached, shared, swap) = (
        get("MemTotal:"),
        get("MemFree:"),
        get("MemAvailable:"),
        get("Buffers:"),
        get("Cached:"),
        get("Shmem:"),
        get("SwapTotal:"),
    );
    let used = total - free - buffers - cached;
    // procps-ng 3.3.10 (CentOS 7) prints `G`/`M` and its columns one to
    // the left; 3.3.12+ (Debian, Ubuntu) the binary `Gi`/`Mi`.
    let old_procps = sh.persona.release == "centos-7";
    let unit = |u: &str| if old_procps { u.to_string() } else { format!("{u}i") };
    let scale = |kib: u64| -> String {
        if flags.contains('h') || long.iter().any(|l| l == "human") {
            let g = kib as f64 / 1024.0 / 1024.0;
            if kib == 0 {
                // procps prints an empty quantity as bytes.
                "0B".to_string()
            } else if g >= 1.0 {
                format!("{g:.1}{}", unit("G"))
            } else {
                format!("{}{}", kib / 1024, unit("M"))
            }
        } else if flags.contains('m') {
            (kib / 1024).to_string()
        } else if flags.contains('g') {
            (kib / 1024 / 1024).to_string()
        } else {
            kib.to_string()
        }
    };
    let text = format!(
        "               total        used        free      shared  buff/cache   available\nMem:    {:>12}{:>12}{:>12}{:>12}{:>12}{:>12}\nSwap:   {:>12}{:>12}{:>12}\n",
        scale(total),
        scale(used),
        scale(free),
        scale(shared),
        scale(buffers + cached),
        scale(avail),
        scale(swap),
        scale(0),
        scale(swap)
    );
    Output::ok(if old_procps { text.lines().map(|l| format!("{}\n", l.replacen(' ', "", 1))).collect() } else { text })
}

pub fn df(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, _) = split_flags(&argv[1..]);
    let h = flags.contains('h');
    let size = |b: u64| -> String {
        if h {
            super::files::human(b)
        } else {
            (b / 1024).to_string()
        }
    };
    let mut out = if h {
        "Filesystem      Size  Used Avail Use% Mounted on\n".to_string()
    } else {
        "Filesystem     1K-blocks    Used Available Use% Mounted on\n".to_string()
    };
    let tmpfs = sh.persona.memory_kib * 1024 / 10;
    let mut rows: Vec<(String, u64, u64, String)> =
        sh.persona.disks.iter().map(|d| (d.device.clone(), d.size_bytes, d.used_bytes, d.mount.clone())).collect();
    if sh.persona.family != OsFamily::Embedded {
        rows.insert(0, ("tmpfs".into(), tmpfs, 1_400_000, "/run".into()));
        rows.push(("tmpfs".into(), tmpfs * 5, 0, "/dev/shm".into()));
    }
    for (dev, total, used, mount) in rows {
        let avail = total.saturating_sub(used);
        let pct = if total == 0 { 0 } else { (used * 100).div_ceil(total) };
        if h {
            out.push_str(&format!(
                "{dev:<15} {:>4} {:>5} {:>5} {pct:>3}% {mount}\n",
                size(total),
                size(used),
                size(avail)
            ));
        } else {
            out.push_str(&format!(
                "{dev:<14} {:>10} {:>8} {:>9} {pct:>3}% {mount}\n",
                size(total),
                size(used),
                size(avail)
            ));
        }
    }
    Output::ok(out)
}

/// The processes the host runs (from its persona's services) plus the
/// attacker's own shell.
fn processes(sh: &Shell) -> Vec<(u32, &'static str, String)> {
    let p = &sh.persona;
    let mut list: Vec<(u32, &'static str, String)> = vec![(1, "root", "/sbin/init".into())];
    if p.family == OsFamily::Embedded {
        list.extend([
            (412, "root", "/bin/telnetd".into()),
            (418, "root", "/usr/sbin/dropbear -R".into()),
            (431, "root", "/usr/sbin/lighttpd -f /etc/lighttpd.conf".into()),
            (455, "root", "/bin/ipcam_app".into()),
        ]);
    } else {
        list.extend([
            (2, "root", "[kthreadd]".into()),
            (354, "root", "/lib/systemd/systemd-journald".into()),
            (390, "root", "/lib/systemd/systemd-udevd".into()),
            (612, "root", "/usr/sbin/cron -f".into()),
            (640, "root", "/usr/sbin/rsyslogd -n -iNONE".into()),
            (702, "root", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups".into()),
        ]);
        if p.http_server.starts_with("Apache") {
            list.push((815, "root", "/usr/sbin/apache2 -k start".into()));
            list.push((818, "www-data", "/usr/sbin/apache2 -k start".into()));
        } else if p.http_server.starts_with("nginx") {
            list.push((815, "root", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;".into()));
            list.push((816, "www-data", "nginx: worker process".into()));
        }
    }
    let login_shell = if p.family == OsFamily::Embedded { "-sh" } else { "-bash" };
    list.push((sh.pid, if sh.uid == 0 { "root" } else { "user" }, login_shell.into()));
    list
}

/// The name the kernel gives a process (`ps -e`, `top`): its program's
/// basename, `systemd` for a systemd host's `/sbin/init`, a kernel
/// thread's name without brackets, a daemon's before its `:` title.
fn comm(sh: &Shell, cmd: &str) -> String {
    if cmd == "/sbin/init" && sh.persona.family == OsFamily::Linux {
        return "systemd".into();
    }
    let first = cmd.split_whitespace().next().unwrap_or("");
    let first = first.trim_start_matches('[').trim_end_matches(']').trim_end_matches(':').trim_start_matches('-');
    first.rsplit('/').next().unwrap_or("").to_string()
}

/// `ps` in its three families of output: BSD `u` (`aux`), System V full
/// (`-ef`, `-f`), and the plain `PID TTY TIME CMD` (`-e`, `ax`, none).
/// BusyBox's `ps`: one layout whatever the options (`aux` included),
/// every process, VSZ in KiB, the state, the command line.
fn busybox_ps(sh: &Shell) -> Output {
    let mut out = String::from("  PID USER       VSZ STAT COMMAND\n");
    let mut list = processes(sh);
    list.push((sh.pid + 31, "user", "ps".into()));
    for (pid, user, cmd) in list {
        let user = if user == "user" { sh.user.as_str() } else { user };
        let cmd = if pid == 1 { "init".to_string() } else { cmd };
        let state = if pid == sh.pid + 31 { "R" } else { "S" };
        out.push_str(&format!("{pid:>5} {user:<8.8} {:>5} {state:<4} {cmd}\n", 1_100 + pid * 7 % 900));
    }
    Output::ok(out)
}

pub fn ps(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.family == OsFamily::Embedded {
        return busybox_ps(sh);
    }
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let dashed: String = args.iter().filter_map(|a| a.strip_prefix('-')).collect();
    let bsd: String = args.iter().filter(|a| !a.starts_with('-')).copied().collect();
    let every = dashed.contains('e') || dashed.contains('A') || bsd.contains('a') || bsd.contains('x');
    let mut out = String::new();
    let mut list: Vec<(u32, u32, String, String, &str)> = Vec::new();
    let shell_user = sh.user.clone();
    for (pid, user, cmd) in processes(sh) {
        let user = if user == "user" { shell_user.clone() } else { user.to_string() };
        let tty = if pid == sh.pid { "pts/0" } else { "?" };
        let ppid = match pid {
            1 | 2 => 0,
            _ if pid == sh.pid => 702,
            _ if cmd.contains("kthread") => 2,
            _ => 1,
        };
        list.push((pid, ppid, user, cmd, tty));
    }
    let typed = argv.join(" ");
    list.push((sh.pid + 31, sh.pid, shell_user.clone(), typed.clone(), "pts/0"));
    if !every {
        list.retain(|(_, _, _, _, tty)| *tty == "pts/0");
    }
    let started = |pid: u32| if pid >= sh.pid { now() - 60 } else { sh.persona.boot_time };
    if bsd.contains('u') {
        out.push_str("USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND\n");
        for (pid, _, user, cmd, tty) in &list {
            let stat = if *pid == sh.pid + 31 { "R+" } else { "Ss" };
            let start = started(*pid);
            let start = if now() - start < 86_400 { fmt_time(start, HM) } else { fmt_time(start, STIME_DAY) };
            out.push_str(&format!(
                "{user:<10} {pid:>6}  0.{}  0.{} {:>6} {:>5} {tty:<8} {stat:<4} {start:>5}   0:00 {cmd}\n",
                pid % 10,
                pid % 7,
                20_000 + pid * 13 % 200_000,
                3_000 + pid * 7 % 30_000,
            ));
        }
    } else if dashed.contains('f') {
        out.push_str("UID          PID    PPID  C STIME TTY          TIME CMD\n");
        for (pid, ppid, user, cmd, tty) in &list {
            let start = started(*pid);
            let stime = if now() - start < 86_400 { fmt_time(start, HM) } else { fmt_time(start, STIME_DAY) };
            out.push_str(&format!("{user:<8} {pid:>7} {ppid:>7}  0 {stime:<5} {tty:<8} 00:00:00 {cmd}\n"));
        }
    } else {
        out.push_str("    PID TTY          TIME CMD\n");
        for (pid, _, _, cmd, tty) in &list {
            out.push_str(&format!("{pid:>7} {tty:<8} 00:00:00 {}\n", comm(sh, cmd)));
        }
    }
    Output::ok(out)
}

pub fn top(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let mem = sh.persona.memory_kib as f64 / 1024.0;
    let mut out = format!(
        "top - {}\nTasks: {} total,   1 running, {} sleeping,   0 stopped,   0 zombie\n%Cpu(s):  0.7 us,  0.3 sy,  0.0 ni, 98.9 id,  0.0 wa,  0.0 hi,  0.1 si,  0.0 st\nMiB Mem : {mem:>8.1} total, {:>8.1} free, {:>8.1} used, {:>8.1} buff/cache\nMiB Swap:   2048.0 total,   2048.0 free,      0.0 used. {:>8.1} avail Mem\n\n    PID USER      PR  NI    VIRT    RES    SHR S  %CPU  %MEM     TIME+ COMMAND\n",
        uptime_text(sh).trim_start(),
        processes(sh).len() + 90,
        processes(sh).len() + 89,
        mem * 0.23,
        mem * 0.43,
        mem * 0.34,
        mem * 0.61
    );
    for (pid, user, cmd) in processes(sh) {
        let user = if user == "user" { sh.user.clone() } else { user.to_string() };
        let name = comm(sh, &cmd);
        out.push_str(&format!(
            "{pid:>7} {user:<8}  20   0  {:>6}  {:>5}  {:>5} S   0.0   0.{}   0:0{}.{:02} {name}\n",
            20_000 + pid * 13 % 200_000,
            3_000 + pid * 7 % 30_000,
            2_000 + pid % 9_000,
            pid % 9,
            pid % 10,
            pid % 60
        ));
    }
    Output::ok(out)
}

pub fn nproc(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok(format!("{}\n", sh.persona.cpu_count))
}

pub fn lscpu(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let p = &sh.persona;
    if p.family == OsFamily::Embedded {
        return Output::ok(format!(
            "Architecture:        armv7l\nByte Order:          Little Endian\nCPU(s):              {n}\nOn-line CPU(s) list: 0{}\nThread(s) per core:  1\nCore(s) per socket:  {n}\nSocket(s):           1\nVendor ID:           ARM\nModel name:          {}\n",
            if p.cpu_count > 1 { format!("-{}", p.cpu_count - 1) } else { String::new() },
            p.cpu_model,
            n = p.cpu_count
        ));
    }
    let vendor = if p.cpu_model.contains("AMD") { "AuthenticAMD" } else { "GenuineIntel" };
    Output::ok(format!(
        "Architecture:                    x86_64\nCPU op-mode(s):                  32-bit, 64-bit\nAddress sizes:                   46 bits physical, 48 bits virtual\nByte Order:                      Little Endian\nCPU(s):                          {n}\nOn-line CPU(s) list:             0-{}\nVendor ID:                       {vendor}\nModel name:                      {}\nCPU family:                      6\nModel:                           85\nThread(s) per core:              1\nCore(s) per socket:              {n}\nSocket(s):                       1\nStepping:                        7\nBogoMIPS:                        {:.2}\nHypervisor vendor:               KVM\nVirtualization type:             full\nL1d cache:                       {} KiB ({n} instances)\nL2 cache:                        {} MiB ({n} instances)\n",
        p.cpu_count - 1,
        p.cpu_model,
        p.cpu_mhz * 2.0,
        32 * p.cpu_count,
        p.cpu_count,
        n = p.cpu_count
    ))
}

pub fn lspci(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    if sh.persona.family == OsFamily::Embedded {
        return Output::fail(1, "-sh: lspci: not found\n");
    }
    Output::ok("00:00.0 Host bridge: Intel Corporation 440FX - 82441FX PMC [Natoma] (rev 02)\n00:01.0 ISA bridge: Intel Corporation 82371SB PIIX3 ISA [Natoma/Triton II]\n00:01.1 IDE interface: Intel Corporation 82371SB PIIX3 IDE [Natoma/Triton II]\n00:02.0 VGA compatible controller: Device 1234:1111 (rev 02)\n00:03.0 Ethernet controller: Red Hat, Inc. Virtio network device\n00:05.0 SCSI storage controller: Red Hat, Inc. Virtio SCSI\n")
}

pub fn dmesg(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    if sh.uid != 0 && sh.persona.os_id != "centos" {
        return Output::fail(1, "dmesg: read kernel buffer failed: Operation not permitted\n");
    }
    let p = &sh.persona;
    Output::ok(format!(
        "[    0.000000] {}[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-{} root={} ro quiet\n[    0.004000] DMI: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.0 04/01/2014\n[    0.004000] Hypervisor detected: KVM\n[    0.012000] Memory: {}K/{}K available\n[    1.204116] virtio_net virtio0 {}: renamed from eth0\n[    3.118820] EXT4-fs ({}): mounted filesystem with ordered data mode. Quota mode: none.\n",
        image::proc_version(p),
        p.kernel_release,
        p.disks[0].device,
        p.memory_kib * 97 / 100,
        p.memory_kib,
        p.interfaces[0].name,
        p.disks[0].device.trim_start_matches("/dev/")
    ))
}

pub fn mount(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() > 1 {
        return Output::fail(32, "mount: only root can use \"--options\" option\n");
    }
    let mounts = String::from_utf8_lossy(&sh.read_file("/proc/mounts").unwrap_or_default()).into_owned();
    let out: String = mounts
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} on {} type {} ({})\n", f[0], f[1], f[2], f[3])
        })
        .collect();
    Output::ok(out)
}

pub fn getconf(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    match argv.get(1).map(String::as_str) {
        Some("LONG_BIT") => Output::ok(if sh.persona.machine == "x86_64" { "64\n" } else { "32\n" }),
        Some("_NPROCESSORS_ONLN") | Some("_NPROCESSORS_CONF") => Output::ok(format!("{}\n", sh.persona.cpu_count)),
        Some("PAGESIZE") | Some("PAGE_SIZE") => Output::ok("4096\n"),
        Some("CLK_TCK") => Output::ok("100\n"),
        Some(other) => Output::fail(1, format!("getconf: Unrecognized variable '{other}'\n")),
        None => Output::fail(
            1,
            "Usage: getconf [-v specification] variable_name [pathname]\n       getconf -a [pathname]\n",
        ),
    }
}

pub fn date(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    match argv.get(1).map(String::as_str) {
        Some("+%s") => Output::ok(format!("{}\n", now())),
        Some(f) if f.starts_with('+') => {
            let t = time::OffsetDateTime::from_unix_timestamp(now()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let text = f[1..]
                .replace("%Y", &t.year().to_string())
                .replace("%m", &format!("{:02}", t.month() as u8))
                .replace("%d", &format!("{:02}", t.day()))
                .replace("%H", &format!("{:02}", t.hour()))
                .replace("%M", &format!("{:02}", t.minute()))
                .replace("%S", &format!("{:02}", t.second()))
                .replace("%s", &now().to_string());
            Output::ok(format!("{text}\n"))
        }
        _ => Output::ok(format!("{}\n", fmt_time(now(), DATE))),
    }
}

pub fn env(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    if argv.len() > 1 && argv[0] == "env" && !argv[1].contains('=') && !argv[1].starts_with('-') {
        return super::run(sh, &argv[1..], stdin);
    }
    if argv[0] == "printenv" && argv.len() > 1 {
        return match sh.var(&argv[1]) {
            Some(v) => Output::ok(format!("{v}\n")),
            None => Output::status(1),
        };
    }
    let out: String = sh.vars.iter().filter(|(_, v)| v.exported).map(|(k, v)| format!("{k}={}\n", v.value)).collect();
    Output::ok(out)
}

pub fn sleep(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    // No real waiting: a sleeping command must not hold the session's task.
    match argv.get(1) {
        None => Output::fail(1, "sleep: missing operand\nTry 'sleep --help' for more information.\n"),
        Some(s) if s.trim_end_matches(['s', 'm', 'h']).parse::<f64>().is_err() => {
            Output::fail(1, format!("sleep: invalid time interval '{s}'\nTry 'sleep --help' for more information.\n"))
        }
        Some(_) => Output::status(0),
    }
}

pub fn nohup(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let args: Vec<String> = argv[1..]
        .iter()
        .skip_while(|a| argv[0] == "timeout" && (a.starts_with('-') || a.parse::<f64>().is_ok()))
        .cloned()
        .collect();
    if args.is_empty() {
        return Output::fail(125, format!("{}: missing operand\n", argv[0]));
    }
    let mut out = super::run(sh, &args, stdin);
    if argv[0] == "nohup" && !out.out.is_empty() {
        let path = crate::shell::fs::normalize(&sh.cwd, "nohup.out");
        let bytes = std::mem::take(&mut out.out);
        let _ = sh.write_file(&path, bytes, true);
        out.err.splice(0..0, b"nohup: ignoring input and appending output to 'nohup.out'\n".iter().copied());
    }
    out
}

pub fn kill(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let pids: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if pids.is_empty() {
        return Output::fail(
            2,
            "kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ... or kill -l [sigspec]\n",
        );
    }
    let known: Vec<u32> = processes(sh).iter().map(|(p, _, _)| *p).collect();
    let mut err = String::new();
    for p in pids {
        match p.parse::<u32>() {
            Ok(pid) if known.contains(&pid) && sh.uid != 0 => {
                err.push_str(&format!("{}: kill: ({pid}) - Operation not permitted\n", err_prefix(sh)))
            }
            Ok(pid) if known.contains(&pid) => {}
            _ => err.push_str(&format!("{}: kill: ({p}) - No such process\n", err_prefix(sh))),
        }
    }
    Output::errors(err)
}

pub fn pkill(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() < 2 {
        return Output::fail(
            2,
            format!("{}: no matching criteria specified\nTry `{} --help' for more information.\n", argv[0], argv[0]),
        );
    }
    Output::status(1)
}

pub fn crontab(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let path = format!("/var/spool/cron/crontabs/{}", sh.user);
    match argv.get(1).map(String::as_str) {
        Some("-l") => match sh.fs.stat(&path) {
            Some(_) => Output::ok(sh.read_file(&path).unwrap_or_default()),
            None => Output::fail(1, format!("no crontab for {}\n", sh.user)),
        },
        Some("-r") => {
            let _ = sh.fs.remove(&path, false);
            Output::status(0)
        }
        Some(file) if file != "-" && !file.starts_with('-') => {
            let bytes = match super::builtins::file_text(sh, file) {
                Ok(b) => b,
                Err(e) => return Output::fail(1, format!("{e}\n")),
            };
            install_crontab(sh, &path, bytes)
        }
        _ => install_crontab(sh, &path, stdin.to_vec()),
    }
}

fn install_crontab(sh: &mut Shell, path: &str, bytes: Vec<u8>) -> Output {
    let now = now();
    let _ = sh.fs.put("/var/spool/cron/crontabs", crate::shell::fs::Node::dir(0o1730, 0, now));
    match sh.write_file(path, bytes, false) {
        Ok(()) => Output::status(0),
        Err(e) => Output::fail(1, format!("crontab: {}\n", e.message())),
    }
}

pub fn systemctl(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.persona.family == OsFamily::Embedded || sh.persona.os_id == "busybox" {
        return Output::fail(127, "-sh: systemctl: not found\n");
    }
    let action = argv.get(1).map(String::as_str).unwrap_or("list-units");
    let unit = argv.get(2).cloned().unwrap_or_default();
    match action {
        "status" => {
            let known = ["ssh", "sshd", "cron", "rsyslog", "apache2", "nginx"].iter().any(|u| unit.trim_end_matches(".service") == *u);
            if known {
                Output::ok(format!(
                    "● {unit}.service\n     Loaded: loaded (/lib/systemd/system/{unit}.service; enabled; vendor preset: enabled)\n     Active: active (running) since {}; {} days ago\n",
                    fmt_time(sh.persona.boot_time, DATE),
                    sh.persona.uptime(now()) / 86_400
                ))
            } else {
                Output::fail(4, format!("Unit {unit}.service could not be found.\n"))
            }
        }
        "start" | "stop" | "restart" | "enable" | "disable" | "daemon-reload" if sh.uid != 0 => Output::fail(
            1,
            "==== AUTHENTICATING FOR org.freedesktop.systemd1.manage-units ===\nAuthentication is required to manage system services or units.\nFailed to start unit: Access denied\n",
        ),
        "start" | "stop" | "restart" | "enable" | "disable" | "daemon-reload" | "mask" => Output::status(0),
        _ => Output::ok("  UNIT                     LOAD   ACTIVE SUB     DESCRIPTION\n  cron.service             loaded active running Regular background program processing daemon\n  ssh.service              loaded active running OpenBSD Secure Shell server\n  rsyslog.service          loaded active running System Logging Service\n"),
    }
}

pub fn service(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    match (argv.get(1), argv.get(2)) {
        (Some(unit), Some(action)) => {
            let args = vec!["systemctl".to_string(), action.clone(), unit.clone()];
            systemctl(sh, &args, stdin)
        }
        _ => Output::fail(
            1,
            "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]\n",
        ),
    }
}

pub fn sudo(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let args: Vec<String> = argv[1..].iter().skip_while(|a| a.starts_with('-')).cloned().collect();
    if sh.uid == 0 {
        return if args.is_empty() && argv.get(1).map(String::as_str) == Some("-l") {
            Output::ok(sudo_list(sh))
        } else if args.is_empty() {
            Output::fail(1, "usage: sudo -h | -K | -k | -V\n")
        } else {
            super::run(sh, &args, stdin)
        };
    }
    // The account's password is not known to the attacker's script: sudo
    // asks, gets nothing from a non-terminal, and gives up as real sudo does.
    Output::fail(1, format!("[sudo] password for {}: \nsudo: a password is required\n", sh.user))
}

/// `sudo -l` for root: the Defaults of the release's shipped sudoers
/// and root's own `ALL` rule.
fn sudo_list(sh: &Shell) -> String {
    let p = &sh.persona;
    let defaults = match p.release.as_str() {
        "ubuntu-22.04" => "env_reset, mail_badpass,\n    secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin\\:/snap/bin,\n    use_pty",
        "ubuntu-20.04" => "env_reset, mail_badpass,\n    secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin\\:/snap/bin",
        "debian-12" => "env_reset, mail_badpass,\n    secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin,\n    use_pty",
        "centos-7" => "!visiblepw, always_set_home, match_group_by_gid,\n    always_query_group_plugin, env_reset, secure_path=/sbin\\:/bin\\:/usr/sbin\\:/usr/bin",
        _ => "env_reset, mail_badpass,\n    secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin",
    };
    // Red Hat's sudoers says `root ALL=(ALL) ALL`, Debian's `(ALL:ALL)`.
    let rule = if p.os_id == "centos" { "(ALL) ALL" } else { "(ALL : ALL) ALL" };
    format!(
        "Matching Defaults entries for root on {h}:\n    {defaults}\n\nUser root may run the following commands on {h}:\n    {rule}\n",
        h = p.hostname
    )
}

pub fn su(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    let _ = sh;
    Output::fail(1, "Password: \nsu: Authentication failure\n")
}

pub fn passwd(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    if argv.iter().any(|a| a == "--stdin") || !stdin.is_empty() {
        return Output::ok(format!(
            "Changing password for user {}.\npasswd: all authentication tokens updated successfully.\n",
            sh.user
        ));
    }
    Output::fail(
        10,
        format!("Changing password for {}.\nCurrent password: \npasswd: Authentication token manipulation error\npasswd: password unchanged\n", sh.user),
    )
}

pub fn chpasswd(sh: &mut Shell, _: &[String], stdin: &[u8]) -> Output {
    if sh.uid != 0 {
        return Output::fail(
            1,
            "chpasswd: (user root) pam_chauthtok() failed, error:\nAuthentication token manipulation error\n",
        );
    }
    let _ = stdin;
    Output::status(0)
}

pub fn useradd(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if sh.uid != 0 {
        return Output::fail(
            1,
            format!("{}: Permission denied.\n{}: cannot lock /etc/passwd; try again later.\n", argv[0], argv[0]),
        );
    }
    let Some(name) = argv[1..].iter().rfind(|a| !a.starts_with('-')) else {
        return Output::fail(2, format!("Usage: {} [options] LOGIN\n", argv[0]));
    };
    let line = format!("{name}:x:1005:1005::/home/{name}:/bin/sh\n");
    let _ = sh.write_file("/etc/passwd", line.into_bytes(), true);
    Output::status(0)
}

pub fn true_program(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::status(0)
}

pub fn lsb_release(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let p = &sh.persona;
    if p.os_id == "centos" || p.family != OsFamily::Linux {
        return Output::fail(127, "-bash: lsb_release: command not found\n");
    }
    let id = if p.os_id == "ubuntu" { "Ubuntu" } else { "Debian" };
    let codename = p.release_facts().version_codename;
    let (flags, _, _) = split_flags(&argv[1..]);
    let mut out = String::new();
    if flags.contains('a') || flags.contains('i') {
        out.push_str(&format!("Distributor ID:\t{id}\n"));
    }
    if flags.contains('a') || flags.contains('d') {
        out.push_str(&format!("Description:\t{}\n", p.pretty_name));
    }
    if flags.contains('a') || flags.contains('r') {
        out.push_str(&format!("Release:\t{}\n", p.version_id));
    }
    if flags.contains('a') || flags.contains('c') {
        out.push_str(&format!("Codename:\t{codename}\n"));
    }
    Output::both(
        out.into_bytes(),
        if flags.contains('a') { "No LSB modules are available.\n".into() } else { String::new() },
        0,
    )
}

pub fn locale(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok("LANG=C.UTF-8\nLANGUAGE=\nLC_CTYPE=\"C.UTF-8\"\nLC_ALL=\n")
}
