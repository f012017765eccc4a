//! The KEXINIT a decky sends: the algorithm lists (kex, host key, cipher,
//! MAC, compression, in order) of the OpenSSH (or Dropbear) release its
//! persona names, so its HASSH and every list a scanner reads are that
//! release's.
//!
//! The lists are data, written by `scripts/gen-ssh-algorithms` into
//! `algorithms.json` beside this file: measured off the real sshd (or
//! dropbear) of the Debian packages, derived with named upstream changes
//! for the rest (each entry says which). This file only turns them into russh's
//! [`Preferred`], once per release for the life of the process.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use russh::keys::Algorithm;
use russh::{cipher, compression, kex, mac, Preferred};

/// One release's entry in `algorithms.json`.
#[derive(Debug, serde::Deserialize)]
pub struct ReleaseLists {
    /// `measured` (read off the real sshd) or `derived`.
    pub source: String,
    pub provenance: String,
    /// The banner the measured sshd sent (None for derived entries).
    pub banner: Option<String>,
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub cipher: Vec<String>,
    pub mac: Vec<String>,
    pub compression: Vec<String>,
    /// Group-exchange primes from the release's `/etc/ssh/moduli`…
    #[serde(default)]
    pub gex_moduli: Vec<super::gex::Modulus>,
    /// …or the release whose primes it shares.
    #[serde(default)]
    pub gex_moduli_from: Option<String>,
}

#[derive(serde::Deserialize)]
struct Generated {
    releases: HashMap<String, ReleaseLists>,
}

static GENERATED: LazyLock<HashMap<String, ReleaseLists>> = LazyLock::new(|| {
    let doc: Generated = serde_json::from_str(include_str!("algorithms.json"))
        .expect("algorithms.json is written by scripts/gen-ssh-algorithms");
    doc.releases
});

/// The generated lists of release `id`, if it has any.
pub fn lists(id: &str) -> Option<&'static ReleaseLists> {
    GENERATED.get(id)
}

/// The group-exchange primes of release `id`.
pub fn gex_moduli(id: &str) -> &'static [super::gex::Modulus] {
    match lists(id) {
        Some(ReleaseLists { gex_moduli_from: Some(base), .. }) => lists(base).map(|l| &l.gex_moduli[..]).unwrap_or(&[]),
        Some(l) => &l.gex_moduli,
        None => &[],
    }
}

/// Every release with generated lists.
pub fn releases() -> impl Iterator<Item = (&'static str, &'static ReleaseLists)> {
    GENERATED.iter().map(|(k, v)| (k.as_str(), v))
}

/// A release's lists as russh names, with what russh cannot serve.
pub struct Resolved {
    pub preferred: Preferred,
    /// Names in the release's lists that the server cannot negotiate; they
    /// are left out of the KEXINIT (advertising them would be a lie a
    /// forced client exposes). Empty for every release the data has today;
    /// a test keeps it so.
    pub unservable: Vec<String>,
}

/// A kex list entry as russh's name: an algorithm, or one of the
/// pseudo-algorithms a server announces (strict kex, the Terrapin fix;
/// ext-info; Dropbear's kexguess2), which russh's algorithm table leaves
/// out but acts on, and never negotiates as a kex.
fn kex_name(n: &str) -> Option<kex::Name> {
    [kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER, kex::EXTENSION_SUPPORT_AS_SERVER, kex::KEXGUESS2]
        .into_iter()
        .find(|e| e.as_ref() == n)
        .or_else(|| kex::Name::try_from(n).ok())
}

fn resolve(lists: &ReleaseLists) -> Resolved {
    let mut unservable = Vec::new();
    let mut names = |list: &[String], parse: &dyn Fn(&str) -> bool| -> Vec<String> {
        list.iter()
            .filter(|n| {
                let ok = parse(n);
                if !ok {
                    unservable.push((*n).clone());
                }
                ok
            })
            .cloned()
            .collect()
    };
    let kex_names = names(&lists.kex, &|n| kex_name(n).is_some());
    let key_names = names(&lists.host_key, &|n| Algorithm::from_str(n).is_ok());
    let cipher_names = names(&lists.cipher, &|n| cipher::Name::try_from(n).is_ok());
    let mac_names = names(&lists.mac, &|n| mac::Name::try_from(n).is_ok());
    let comp_names = names(&lists.compression, &|n| compression::Name::try_from(n).is_ok());
    // The filters above kept only names that parse.
    #[allow(clippy::unwrap_used)]
    let preferred = Preferred {
        kex: Cow::Owned(kex_names.iter().map(|n| kex_name(n).unwrap()).collect()),
        key: Cow::Owned(key_names.iter().map(|n| Algorithm::from_str(n).unwrap()).collect()),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Owned(cipher_names.iter().map(|n| cipher::Name::try_from(n.as_str()).unwrap()).collect()),
        mac: Cow::Owned(mac_names.iter().map(|n| mac::Name::try_from(n.as_str()).unwrap()).collect()),
        compression: Cow::Owned(comp_names.iter().map(|n| compression::Name::try_from(n.as_str()).unwrap()).collect()),
    };
    Resolved { preferred, unservable }
}

static RESOLVED: LazyLock<HashMap<&'static str, Resolved>> =
    LazyLock::new(|| releases().map(|(id, lists)| (id, resolve(lists))).collect());

/// The resolved lists of release `id`.
pub fn resolved(id: &str) -> Option<&'static Resolved> {
    RESOLVED.get(id)
}

/// The `preferred` of the server config for a decky of release `id`.
/// Borrowed from the per-release table, so a session copies no list.
/// A release without generated lists gets russh's defaults (none does
/// today: a test keeps every persona release in the data).
pub fn preferred(id: &str) -> Preferred {
    match resolved(id) {
        Some(r) => Preferred {
            kex: Cow::Borrowed(&r.preferred.kex),
            key: Cow::Borrowed(&r.preferred.key),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Borrowed(&r.preferred.cipher),
            mac: Cow::Borrowed(&r.preferred.mac),
            compression: Cow::Borrowed(&r.preferred.compression),
        },
        None => Preferred::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persona::releases::{SshProduct, RELEASES};

    #[test]
    fn every_release_has_lists_and_the_server_can_negotiate_all_of_them() {
        assert!(RELEASES.iter().any(|r| r.ssh == SshProduct::Dropbear), "the Dropbear persona is covered");
        for r in RELEASES {
            let resolved = resolved(r.id).unwrap_or_else(|| panic!("{} has no generated lists", r.id));
            assert!(resolved.unservable.is_empty(), "{}: cannot serve {:?}", r.id, resolved.unservable);
            let l = lists(r.id).unwrap();
            assert_eq!(resolved.preferred.kex.len(), l.kex.len());
            assert_eq!(resolved.preferred.mac.len(), l.mac.len());
        }
    }

    #[test]
    fn a_measured_release_s_banner_is_the_persona_s() {
        for r in RELEASES {
            if let Some(l) = lists(r.id).filter(|l| l.source == "measured") {
                assert_eq!(
                    l.banner.as_deref(),
                    Some(r.ssh_banner),
                    "{}: the lists were measured on another package",
                    r.id
                );
            }
        }
    }
}
