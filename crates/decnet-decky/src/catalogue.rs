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
    "mdns",
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
        services: &["telnet", "http", "tftp", "snmp", "mqtt", "conpot", "sip", "mdns"],
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

/// Most services a rotation leaves on a decky.
pub const MAX_SERVICES: usize = 4;

/// The services a decky may draw: its archetype's pool (the whole
/// catalogue without one) restricted to those `servable` accepts (the
/// native driver passes "decnet serves it natively", so a rotation never
/// opens a port nothing answers on). Sorted, without duplicates.
pub fn servable_pool(pool: &[&'static str], servable: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut p: Vec<&'static str> = if pool.is_empty() { SERVICES.to_vec() } else { pool.to_vec() };
    p.retain(|s| servable(s));
    p.sort_unstable();
    p.dedup();
    p
}

/// A new decky's first services: two or three from `pool` (fewer when the
/// pool is smaller). Empty only when the pool is.
pub fn initial_services<R: Rng + ?Sized>(pool: &[&str], rng: &mut R) -> Vec<String> {
    if pool.is_empty() {
        return Vec::new();
    }
    let count = rng.random_range(2..=3).min(pool.len());
    let mut drawn: Vec<String> = pool.choose_multiple(rng, count).map(|s| s.to_string()).collect();
    drawn.sort();
    drawn
}

/// The next shape of a decky exposing `current`: one small step inside
/// `pool`, never the whole shape at once (a host whose every port changes
/// between two scans is not a host). Services outside the pool (no longer
/// servable) are dropped first, and that is the step; otherwise one of:
/// swap one service for one the decky does not expose, add one (below
/// [`MAX_SERVICES`]), or remove one (never the last). The result is never
/// empty while the pool is not, and differs from `current` whenever the
/// pool allows. Sorted.
pub fn rotate_services<R: Rng + ?Sized>(pool: &[&str], current: &[String], rng: &mut R) -> Vec<String> {
    let mut next: Vec<String> = current.iter().filter(|s| pool.contains(&s.as_str())).cloned().collect();
    next.sort();
    next.dedup();
    if next.is_empty() {
        return initial_services(pool, rng);
    }
    if next.len() != current.len() {
        return next;
    }
    let outside: Vec<&str> = pool.iter().copied().filter(|s| !next.iter().any(|c| c == s)).collect();
    #[derive(Clone, Copy)]
    enum Step {
        Swap,
        Add,
        Remove,
    }
    let mut steps: Vec<Step> = Vec::with_capacity(4);
    if !outside.is_empty() {
        steps.extend([Step::Swap, Step::Swap]); // swapping is the usual step
        if next.len() < MAX_SERVICES {
            steps.push(Step::Add);
        }
    }
    if next.len() > 1 {
        steps.push(Step::Remove);
    }
    match steps.choose(rng) {
        Some(Step::Swap) => {
            let i = rng.random_range(0..next.len());
            next[i] = outside.choose(rng).expect("swap needs an outside service").to_string();
        }
        Some(Step::Add) => next.push(outside.choose(rng).expect("add needs an outside service").to_string()),
        Some(Step::Remove) => {
            let i = rng.random_range(0..next.len());
            next.remove(i);
        }
        None => {} // a one-service pool already exposed: nothing can change
    }
    next.sort();
    next
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

    fn changed(a: &[String], b: &[String]) -> usize {
        a.iter().filter(|s| !b.contains(s)).count() + b.iter().filter(|s| !a.contains(s)).count()
    }

    #[test]
    fn rotation_takes_one_small_step_inside_the_pool() {
        let mut rng = rand::rng();
        let pool = servable_pool(archetype("linux-server").unwrap().services, |s| s != "dns");
        let mut current = initial_services(&pool, &mut rng);
        assert!((2..=3).contains(&current.len()));
        for _ in 0..500 {
            let next = rotate_services(&pool, &current, &mut rng);
            assert!(!next.is_empty() && next.len() <= MAX_SERVICES, "{next:?}");
            assert!(next.iter().all(|s| pool.contains(&s.as_str())), "{next:?}");
            assert_ne!(next, current);
            // A swap changes two entries, an add or a remove one.
            assert!((1..=2).contains(&changed(&next, &current)), "{current:?} -> {next:?}");
            current = next;
        }
    }

    #[test]
    fn unservable_services_are_dropped_and_the_decky_never_goes_dark() {
        let mut rng = rand::rng();
        let pool = vec!["http", "ssh"];
        // Only unservable services: a fresh servable shape instead of nothing.
        let next = rotate_services(&pool, &["mysql".to_string(), "smb".to_string()], &mut rng);
        assert!(!next.is_empty() && next.iter().all(|s| pool.contains(&s.as_str())));
        // Some unservable: just those go.
        let next = rotate_services(&pool, &["mysql".to_string(), "ssh".to_string()], &mut rng);
        assert_eq!(next, vec!["ssh".to_string()]);
        // A one-service pool stays put rather than emptying the decky.
        assert_eq!(rotate_services(&["http"], &["http".to_string()], &mut rng), vec!["http".to_string()]);
        assert!(rotate_services(&[], &["http".to_string()], &mut rng).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_rotation_keeps_a_servable_nonempty_shape(
            pool_mask in 1u32..(1 << 27),
            current_mask in 0u32..(1 << 27),
            seed in proptest::prelude::any::<u64>(),
        ) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let pool: Vec<&str> =
                SERVICES.iter().enumerate().filter(|(i, _)| pool_mask & (1 << i) != 0).map(|(_, s)| *s).collect();
            let current: Vec<String> = SERVICES
                .iter()
                .enumerate()
                .filter(|(i, _)| current_mask & (1 << i) != 0)
                .map(|(_, s)| s.to_string())
                .collect();
            let next = rotate_services(&pool, &current, &mut rng);
            proptest::prop_assert!(!next.is_empty());
            proptest::prop_assert!(next.iter().all(|s| pool.contains(&s.as_str())));
        }
    }

    #[test]
    fn empty_pool_means_the_whole_servable_catalogue() {
        let pool = servable_pool(&[], |_| true);
        assert_eq!(pool.len(), SERVICES.len());
        let served = servable_pool(&[], |s| s == "ssh" || s == "http");
        assert_eq!(served, vec!["http", "ssh"]);
    }
}
