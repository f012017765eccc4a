//! What an interactive SSH login prints before the first prompt, as the
//! persona's release prints it: the MOTD (Ubuntu's pam_motd adds its
//! dynamic "System information" block), then sshd's `Last login: … from
//! …` for the user, from the persona's login history. A user with no
//! history gets no Last login line, like on a real host.

use crate::persona::{Persona, SshProduct};

/// `Tue Jun  4 09:12:44 2024`, the ctime-style date sshd's lastlog prints.
fn ctime(at: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at) else { return String::new() };
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        &t.weekday().to_string()[..3],
        &t.month().to_string()[..3],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Ubuntu's landscape-sysinfo block, from the persona's disk, memory and
/// interface facts; load and process count are drawn small, like an idle
/// server's.
fn ubuntu_sysinfo(p: &Persona, now: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(now) else { return String::new() };
    let (h12, pm) = match t.hour() {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    let clock = format!("{h12:02}:{:02}:{:02} {pm}", t.minute(), t.second());
    let (wd, mon) = (&t.weekday().to_string()[..3], &t.month().to_string()[..3]);
    // 22.04's `date` (C.UTF-8) and 20.04's (en_US.UTF-8) order them differently.
    let stamp = if p.version_id == "20.04" {
        format!("{wd} {:02} {mon} {} {clock} UTC", t.day(), t.year())
    } else {
        format!("{wd} {mon} {:2} {clock} UTC {}", t.day(), t.year())
    };
    let disk = p.disks.first();
    let usage = disk
        .map(|d| {
            let pct = d.used_bytes as f64 * 100.0 / d.size_bytes.max(1) as f64;
            format!("{pct:.1}% of {:.2}GB", d.size_bytes as f64 / 1e9)
        })
        .unwrap_or_else(|| "0.0% of 0GB".into());
    // Small, stable per hour: an idle box does not jump between logins.
    let jitter = (now / 3600).unsigned_abs() % 97;
    let load = format!("{:.2}", (jitter % 23) as f64 / 100.0);
    let procs = 96 + p.cpu_count as u64 * 4 + jitter % 40;
    let memory = 8 + (jitter % 17);
    let iface = p.interfaces.first();
    let left = [
        format!("System load:  {load}"),
        format!("Usage of /:   {usage}"),
        format!("Memory usage: {memory}%"),
        "Swap usage:   0%".to_string(),
    ];
    let mut right = vec![format!("Processes:             {procs}"), "Users logged in:       0".to_string()];
    if let Some(i) = iface {
        right.push(format!("IPv4 address for {}: {}", i.name, i.address));
    }
    let width = left.iter().map(String::len).max().unwrap_or(0) + 4;
    let mut out = format!("  System information as of {stamp}\n\n");
    for (i, l) in left.iter().enumerate() {
        match right.get(i) {
            Some(r) => out.push_str(&format!("  {l:<width$}{r}\n")),
            None => out.push_str(&format!("  {l}\n")),
        }
    }
    out.push_str(
        "\n\nExpanded Security Maintenance for Applications is not enabled.\n\n0 updates can be applied immediately.\n\n\
Enable ESM Apps to receive additional future security updates.\nSee https://ubuntu.com/esm or run: sudo pro status\n\n",
    );
    out
}

/// The most recent login of `user` in the persona's history.
pub fn last_login(p: &Persona, user: &str) -> Option<String> {
    let last = p.last_logins.iter().filter(|l| l.user == user).max_by_key(|l| l.at)?;
    Some(format!("Last login: {} from {}\n", ctime(last.at), last.from))
}

/// Everything printed between authentication and the first prompt of an
/// interactive login (`\n` line ends; the caller makes them CRLF on a pty).
pub fn greeting(p: &Persona, user: &str, now: i64) -> String {
    let mut out = String::new();
    if p.os_id == "windows" {
        return out;
    }
    out.push_str(&p.motd);
    if p.os_id == "ubuntu" {
        out.push('\n');
        out.push_str(&ubuntu_sysinfo(p, now));
    } else if !p.motd.is_empty() && !p.motd.ends_with("\n\n") {
        out.push('\n');
    }
    // Dropbear on these firmwares is built without lastlog.
    if p.ssh_product == SshProduct::OpenSsh {
        if let Some(line) = last_login(p, user) {
            out.push_str(&line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persona::LoginRecord;

    fn persona(release: &str) -> Persona {
        let mut p = Persona::derive("app-01", None, None, 1_717_000_000)
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap();
        p.last_logins = vec![
            LoginRecord { user: "root".into(), tty: "pts/0".into(), from: "10.9.8.7".into(), at: 1_717_492_364 },
            LoginRecord { user: "root".into(), tty: "pts/1".into(), from: "10.9.8.1".into(), at: 1_717_000_000 },
        ];
        p
    }

    #[test]
    fn last_login_is_the_user_s_latest_in_sshd_s_format() {
        let p = persona("debian-12");
        assert_eq!(last_login(&p, "root").as_deref(), Some("Last login: Tue Jun  4 09:12:44 2024 from 10.9.8.7\n"));
        assert_eq!(last_login(&p, "nobody"), None);
        let g = greeting(&p, "root", 1_717_500_000);
        assert!(g.starts_with(&p.motd), "{g}");
        assert!(g.ends_with("\nLast login: Tue Jun  4 09:12:44 2024 from 10.9.8.7\n"), "{g}");
    }

    #[test]
    fn ubuntu_adds_its_system_information() {
        let p = persona("ubuntu-22.04");
        let g = greeting(&p, "root", 1_717_492_364);
        assert!(g.starts_with("Welcome to Ubuntu 22.04.4 LTS (GNU/Linux "), "{g}");
        assert!(g.contains("  System information as of Tue Jun  4 09:12:44 AM UTC 2024\n"), "{g}");
        let iface = &p.interfaces[0];
        assert!(g.contains(&format!("IPv4 address for {}: {}", iface.name, iface.address)), "{g}");
        assert!(g.contains("Usage of /:   "), "{g}");
        assert!(g.ends_with("sudo pro status\n\nLast login: Tue Jun  4 09:12:44 2024 from 10.9.8.7\n"), "{g}");
        let focal = greeting(&persona("ubuntu-20.04"), "root", 1_717_492_364);
        assert!(focal.contains("System information as of Tue 04 Jun 2024 09:12:44 AM UTC\n"), "{focal}");
    }
}
