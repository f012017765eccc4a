//! When a decky's software was installed: the one clock behind every
//! timestamp a service shows about its own files (the default page's
//! `Last-Modified` and `ETag`, the self-signed certificate's `notBefore`).
//!
//! A real host was installed some time after its release came out and
//! before it last booted, at an arbitrary second of the day, and its
//! packages went in over the following days. The times here are drawn
//! per decky from its persona (hostname and release), so they never move
//! across restarts, and are kept before the persona's boot time.

use crate::Persona;

/// Roughly when each release became available (unix seconds, UTC
/// midnight): installs are drawn in the 18 months after it.
fn released(release: &str) -> i64 {
    match release {
        "ubuntu-22.04" => 1_650_499_200,        // 2022-04-21
        "ubuntu-20.04" => 1_587_600_000,        // 2020-04-23
        "debian-11" => 1_628_899_200,           // 2021-08-14
        "debian-12" => 1_686_355_200,           // 2023-06-10
        "centos-7" => 1_404_691_200,            // 2014-07-07
        "windows-server-2019" => 1_538_438_400, // 2018-10-02
        "windows-10" => 1_437_955_200,          // 2015-07-27
        _ => 1_609_459_200,                     // 2021-01-01
    }
}

/// A stable 64-bit draw for `label` on this persona.
pub fn draw(persona: &Persona, label: &str) -> u64 {
    let mut input = b"decnet-installed\0".to_vec();
    for part in [persona.hostname.as_str(), persona.release.as_str(), label] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &input);
    u64::from_le_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// Unix seconds at which the operating system was installed.
pub fn system(persona: &Persona) -> i64 {
    let at = released(&persona.release) + (draw(persona, "os") % (540 * 86_400)) as i64;
    before_boot(persona, at, "os")
}

/// Unix seconds and microseconds at which `package` was installed (its
/// files' mtime): a few days to a month after the system.
pub fn package(persona: &Persona, package: &str) -> (i64, u32) {
    let d = draw(persona, package);
    let at = system(persona) + 3_600 + (d % (30 * 86_400)) as i64;
    (before_boot(persona, at, package), ((d >> 40) % 1_000_000) as u32)
}

/// `at`, or a day or more before boot when the drawn time would be later
/// (a persona whose clock is near its release date).
fn before_boot(persona: &Persona, at: i64, label: &str) -> i64 {
    let latest = persona.boot_time - 86_400 - (draw(persona, &format!("{label}/late")) % 86_400) as i64;
    at.min(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_are_stable_distinct_and_before_boot() {
        let now = 1_790_000_000;
        let a = Persona::derive("web-01", Some("linux-server"), None, now);
        let b = Persona::derive("web-02", Some("linux-server"), None, now);
        assert_eq!(
            package(&a, "apache2"),
            package(&Persona::derive("web-01", Some("linux-server"), None, now), "apache2")
        );
        assert_ne!(package(&a, "apache2"), package(&b, "apache2"));
        for p in [&a, &b] {
            let (at, _) = package(p, "apache2");
            assert!(system(p) < at && at < p.boot_time, "{} {at} {}", system(p), p.boot_time);
            assert!(system(p) >= released(&p.release));
        }
        // A persona booted right after its release still installed before boot.
        let early = Persona::derive("web-01", Some("linux-server"), None, released(&a.release) + 3 * 86_400);
        assert!(package(&early, "apache2").0 < early.boot_time);
    }
}
