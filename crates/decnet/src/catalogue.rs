//! The service catalogue: every service a decky may run.
//!
//! Shared by topology validation (an unknown service is refused at the API
//! edge, before anything is queued) and the mutator (which draws services
//! from it). Kept as plain data so other modules can extend this file
//! without touching the lookups.

/// Every service name a decky may run, in catalogue order.
pub const SERVICES: &[&str] = &[
    "ssh",
    "telnet",
    "http",
    "https",
    "ftp",
    "tftp",
    "smb",
    "rdp",
    "vnc",
    "mysql",
    "mssql",
    "postgres",
    "redis",
    "mongodb",
    "elasticsearch",
    "ldap",
    "smtp",
    "imap",
    "pop3",
    "dns",
    "snmp",
    "sip",
    "mqtt",
    "k8s",
    "docker_api",
    "conpot",
    "llmnr",
];

/// Whether `name` is in [`SERVICES`] (exact, case-sensitive match).
pub fn is_known_service(name: &str) -> bool {
    SERVICES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_services() {
        assert!(is_known_service("ssh"));
        assert!(is_known_service("docker_api"));
        assert!(!is_known_service("SSH"));
        assert!(!is_known_service("gopher"));
        assert!(!is_known_service(""));
    }
}
