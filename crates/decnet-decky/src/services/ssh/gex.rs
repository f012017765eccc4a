//! Diffie-Hellman group exchange as sshd answers it: the client's
//! (min, preferred, max) clamped to 2048..8192 bits, refused when
//! inconsistent, then a prime from the release's own `/etc/ssh/moduli`
//! (a few per size, kept in `algorithms.json`): the smallest size at or
//! above the preferred one, else the largest below it, one of that size
//! at random; with none in range, the built-in group sshd falls back to
//! (by the client's max). OpenSSH 7.4 to 9.2 all behave so (dh.c
//! `choose_dh`, `dh_new_group_fallback`; kexgexs.c's clamping).
//!
//! russh's own choice (its built-in RFC groups, 4096 bits for a 2048
//! request) is what a scanner such as ssh-audit would otherwise see.

use std::collections::HashMap;
use std::sync::LazyLock;

use rand::Rng;
use russh::client::GexParams;
use russh::kex::dh::groups::{DhGroup, DhGroupUInt, DH_GROUP14, DH_GROUP16, DH_GROUP18};

use super::algorithms;

/// sshd's DH_GRP_MIN and DH_GRP_MAX.
const GROUP_MIN: usize = 2048;
const GROUP_MAX: usize = 8192;

/// One modulus of a release's moduli file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Modulus {
    pub bits: usize,
    pub generator: u32,
    pub prime: String,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

/// Each release's moduli as russh groups, by size, parsed once.
static GROUPS: LazyLock<HashMap<&'static str, Vec<(usize, DhGroup)>>> = LazyLock::new(|| {
    algorithms::releases()
        .map(|(id, _)| {
            let groups = algorithms::gex_moduli(id)
                .iter()
                .map(|m| {
                    let generator: Vec<u8> =
                        m.generator.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
                    (
                        m.bits,
                        DhGroup { prime: DhGroupUInt::from(unhex(&m.prime)), generator: DhGroupUInt::from(generator) },
                    )
                })
                .collect();
            (id, groups)
        })
        .collect()
});

/// The group sshd of release `release` would send for `params`; None
/// where it refuses the request (the session then ends, as sshd's does).
pub fn choose(release: &str, params: &GexParams) -> Option<DhGroup> {
    let min = params.min_group_size().max(GROUP_MIN);
    let max = params.max_group_size().min(GROUP_MAX);
    let want = params.preferred_group_size().clamp(GROUP_MIN, GROUP_MAX);
    if max < min || want < min || max < want {
        return None;
    }
    let groups = GROUPS.get(release)?;
    let in_range = || groups.iter().filter(|(bits, _)| (min..=max).contains(bits));
    let best = in_range()
        .map(|(bits, _)| *bits)
        .filter(|bits| *bits >= want)
        .min()
        .or_else(|| in_range().map(|(bits, _)| *bits).max());
    let Some(best) = best else {
        return Some(if max < 3072 {
            DH_GROUP14.clone()
        } else if max < 6144 {
            DH_GROUP16.clone()
        } else {
            DH_GROUP18.clone()
        });
    };
    let candidates: Vec<&DhGroup> = in_range().filter(|(bits, _)| *bits == best).map(|(_, g)| g).collect();
    let pick = rand::rng().random_range(0..candidates.len());
    Some(candidates[pick].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(release: &str, min: usize, want: usize, max: usize) -> Option<usize> {
        choose(release, &GexParams::new(min, want, max).ok()?).map(|g| g.bit_size())
    }

    #[test]
    fn sizes_follow_sshd_s_choice() {
        assert_eq!(bits("debian-12", 2048, 2048, 2048), Some(2048));
        assert_eq!(bits("debian-12", 2048, 3072, 4096), Some(3072));
        assert_eq!(bits("debian-12", 2048, 2500, 8192), Some(3072));
        assert_eq!(bits("debian-12", 2048, 8192, 8192), Some(8192));
        // Above sshd's ceiling the request is clamped down.
        assert_eq!(bits("debian-12", 2048, 4096, 16384), Some(4096));
        // Nothing in range: the built-in fallback by max.
        assert_eq!(bits("debian-12", 2500, 2600, 2700), Some(2048));
    }

    #[test]
    fn the_primes_are_the_release_s_moduli() {
        let g = choose("debian-12", &GexParams::new(2048, 2048, 2048).unwrap()).unwrap();
        let hex: String = g.prime.iter().map(|b| format!("{b:02x}")).collect();
        assert!(algorithms::gex_moduli("debian-12").iter().any(|m| m.prime == hex));
    }
}
