//! The service catalogue: every service a decky may run.
//!
//! Shared by topology validation (an unknown service is refused at the API
//! edge, before anything is queued) and the mutator (which draws services
//! from it). Kept as plain data so other modules can extend this file
//! without touching the lookups.
//!
//! Archetypes are named pools of services that make a decky look like one
//! kind of host; the mutator draws a decky's next services from its pool.

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

use rand::seq::IndexedRandom;
use rand::Rng;

/// A named pool of services to draw a decky's shape from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archetype {
    pub name: &'static str,
    pub description: &'static str,
    pub services: &'static [&'static str],
}

/// The built-in archetypes. Pools are plausible for the kind of host, so a
/// rotated decky still looks like the same sort of machine to an attacker.
pub const ARCHETYPES: &[Archetype] = &[
    Archetype {
        name: "linux-server",
        description: "general-purpose Linux server",
        services: &["ssh", "http", "https", "ftp", "smtp", "dns", "snmp"],
    },
    Archetype {
        name: "windows-workstation",
        description: "Windows desktop on a corporate LAN",
        services: &["smb", "rdp", "vnc", "llmnr", "http"],
    },
    Archetype {
        name: "windows-server",
        description: "Windows domain server",
        services: &["smb", "rdp", "ldap", "dns", "mssql", "http", "https"],
    },
    Archetype {
        name: "database-host",
        description: "database server",
        services: &["ssh", "mysql", "mssql", "postgres", "redis", "mongodb", "elasticsearch"],
    },
    Archetype {
        name: "mail-server",
        description: "mail relay and mailbox server",
        services: &["ssh", "smtp", "imap", "pop3", "dns"],
    },
    Archetype {
        name: "iot-device",
        description: "embedded device, camera or PLC",
        services: &["telnet", "http", "tftp", "snmp", "mqtt", "conpot", "sip"],
    },
    Archetype {
        name: "container-host",
        description: "container or Kubernetes node",
        services: &["ssh", "docker_api", "k8s", "http", "https", "redis"],
    },
];

/// The archetype called `name`, if any.
pub fn archetype(name: &str) -> Option<&'static Archetype> {
    ARCHETYPES.iter().find(|a| a.name == name)
}

/// Most services one draw puts on a decky.
pub const MAX_DRAWN: usize = 3;

/// Draw 1–3 distinct services from `pool` (the whole catalogue when `pool`
/// is empty), different as a set from `current` whenever the pool allows
/// that. The result is sorted so equal sets compare and print equally.
pub fn draw_services<R: Rng + ?Sized>(pool: &[&str], current: &[String], rng: &mut R) -> Vec<String> {
    let pool: Vec<&str> = {
        let mut p: Vec<&str> = if pool.is_empty() { SERVICES.to_vec() } else { pool.to_vec() };
        p.sort_unstable();
        p.dedup();
        p
    };
    let count = rng.random_range(1..=pool.len().min(MAX_DRAWN));
    let mut drawn: Vec<String> = pool.choose_multiple(rng, count).map(|s| s.to_string()).collect();
    drawn.sort();

    let mut current_sorted: Vec<String> = current.to_vec();
    current_sorted.sort();
    current_sorted.dedup();
    if drawn == current_sorted {
        // Change the set without redrawing (no retry loop): bring in a pool
        // service not currently exposed, or, when the pool is all exposed,
        // drop one. Only a one-service pool equal to `current` stays put.
        let outside: Vec<&str> = pool.iter().copied().filter(|s| !current_sorted.iter().any(|c| c == s)).collect();
        if let Some(newcomer) = outside.choose(rng) {
            let replaced = rng.random_range(0..drawn.len());
            drawn[replaced] = newcomer.to_string();
        } else if drawn.len() > 1 {
            let removed = rng.random_range(0..drawn.len());
            drawn.remove(removed);
        }
        drawn.sort();
    }
    drawn
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

    #[test]
    fn archetype_pools_only_name_catalogue_services() {
        for a in ARCHETYPES {
            for s in a.services {
                assert!(is_known_service(s), "{} names unknown service {s}", a.name);
            }
        }
    }

    #[test]
    fn draw_is_one_to_three_distinct_pool_services_and_differs_from_current() {
        let mut rng = rand::rng();
        let pool = archetype("database-host").unwrap().services;
        let mut current: Vec<String> = vec!["ssh".into()];
        for _ in 0..500 {
            let next = draw_services(pool, &current, &mut rng);
            assert!((1..=3).contains(&next.len()), "{next:?}");
            assert!(next.iter().all(|s| pool.contains(&s.as_str())));
            let mut dedup = next.clone();
            dedup.dedup();
            assert_eq!(dedup, next);
            assert_ne!(next, current);
            current = next;
        }
    }

    #[test]
    fn small_pools_still_change_when_they_can() {
        let mut rng = rand::rng();
        // Pool fully exposed: the draw must drop one.
        let current = vec!["http".to_string(), "ssh".to_string()];
        for _ in 0..100 {
            let next = draw_services(&["ssh", "http"], &current, &mut rng);
            assert_ne!(next, current);
        }
        // A one-service pool cannot change; it keeps its only service.
        let next = draw_services(&["ssh"], &["ssh".to_string()], &mut rng);
        assert_eq!(next, vec!["ssh".to_string()]);
    }

    #[test]
    fn empty_pool_draws_from_the_catalogue() {
        let mut rng = rand::rng();
        let next = draw_services(&[], &[], &mut rng);
        assert!(next.iter().all(|s| is_known_service(s)));
    }
}
