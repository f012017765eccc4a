//! Noise filter: host daemons whose lines reach the collector (a syslog
//! relay forwarding everything, a container's own sshd) but say nothing
//! about attackers. They stay in the raw ingest log, which is the full
//! record, and are left out of the parsed stream, the database and the bus,
//! where they would bury the honeypot events.

use std::collections::HashSet;

/// Default noise APP-NAMEs. Note the honeypot services are named by
/// protocol (`ssh`, `http`), so `sshd` here never hides a decky's events.
pub const DEFAULT_NOISE_APPS: &[&str] = &[
    "sshd",
    "sshd-session",
    "pam_unix",
    "cron",
    "crond",
    "anacron",
    "systemd",
    "systemd-logind",
    "systemd-journald",
    "systemd-resolved",
    "systemd-networkd",
    "systemd-timesyncd",
    "kernel",
    "rsyslogd",
    "dbus-daemon",
    "polkitd",
    "dhclient",
    "NetworkManager",
];

/// APP-NAMEs to drop from the parsed stream, compared without case.
#[derive(Debug, Clone)]
pub struct NoiseFilter {
    apps: HashSet<String>,
}

impl NoiseFilter {
    pub fn new<S: AsRef<str>>(apps: impl IntoIterator<Item = S>) -> Self {
        let apps = apps.into_iter().map(|a| a.as_ref().trim().to_ascii_lowercase()).filter(|a| !a.is_empty()).collect();
        NoiseFilter { apps }
    }

    pub fn is_noise(&self, app: &str) -> bool {
        // Most lines are not noise; skip the lowercase copy when the set is empty.
        !self.apps.is_empty() && self.apps.contains(&app.to_ascii_lowercase())
    }
}

impl Default for NoiseFilter {
    fn default() -> Self {
        NoiseFilter::new(DEFAULT_NOISE_APPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_drop_host_daemons_not_honeypots() {
        let f = NoiseFilter::default();
        for app in ["sshd", "pam_unix", "CRON", "cron", "systemd", "kernel"] {
            assert!(f.is_noise(app), "{app}");
        }
        for app in ["ssh", "http", "telnet", "ftp", "smtp", "mutator", "systemd-foo"] {
            assert!(!f.is_noise(app), "{app}");
        }
    }

    #[test]
    fn the_list_is_configurable() {
        let f = NoiseFilter::new(["nginx", " Kernel "]);
        assert!(f.is_noise("nginx") && f.is_noise("kernel"));
        assert!(!f.is_noise("sshd"));
        assert!(!NoiseFilter::new(Vec::<String>::new()).is_noise("sshd"));
    }
}
