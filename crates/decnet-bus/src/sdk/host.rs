//! Which host this process speaks for.
//!
//! Once buses are federated (SPEC §9) one control plane sees the workers of
//! many hosts, and two hosts may run a worker of the same name. Heartbeats
//! therefore carry `host`, the registry keys rows by (host, worker), and a
//! stop intent names the host whose worker must obey. The id is
//! `DECNET_HOST_ID` when set (several simulated hosts on one machine share
//! a hostname), else the kernel's hostname.

/// Overrides the host id every worker and daemon of this process reports.
pub const HOST_ID_ENV: &str = "DECNET_HOST_ID";

/// Longest accepted host id: a DNS name fits.
pub const MAX_HOST_ID_LEN: usize = 253;

/// Whether `id` can name a host: 1..=253 chars of `[A-Za-z0-9._-]`. Host
/// ids travel in NATS headers and JSON from other hosts, so anything that
/// could smuggle whitespace, control characters or markup is refused.
pub fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_HOST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// This process's host id: `DECNET_HOST_ID`, else the hostname, else
/// `localhost`. An invalid `DECNET_HOST_ID` is ignored with a warning
/// rather than failing a worker over a label.
pub fn host_id() -> String {
    if let Ok(raw) = std::env::var(HOST_ID_ENV) {
        let id = raw.trim();
        if valid_host_id(id) {
            return id.to_owned();
        }
        if !id.is_empty() {
            tracing::warn!(value = %raw, "{HOST_ID_ENV} is not a valid host id ([A-Za-z0-9._-], at most 253); using the hostname");
        }
    }
    hostname().unwrap_or_else(|| "localhost".to_owned())
}

/// The kernel's hostname (Linux: /proc; elsewhere /etc/hostname).
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        let name = text.trim();
        valid_host_id(name).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_rules() {
        assert!(valid_host_id("sensor-1.example.org"));
        assert!(valid_host_id("a_b"));
        assert!(!valid_host_id(""));
        assert!(!valid_host_id("has space"));
        assert!(!valid_host_id("new\nline"));
        assert!(!valid_host_id("<script>"));
        assert!(!valid_host_id(&"a".repeat(254)));
        assert!(valid_host_id(&"a".repeat(253)));
    }

    #[test]
    fn hostname_is_a_valid_id_when_present() {
        if let Some(name) = hostname() {
            assert!(valid_host_id(&name), "{name}");
        }
        assert!(valid_host_id(&host_id()));
    }
}
