//! A decky's SSH host keys: the key types the persona's SSH server
//! generates on install (OpenSSH's `ssh-keygen -A`: ed25519, ECDSA P-256
//! and RSA; Dropbear the same since ed25519 came in 2020.79, RSA and
//! ECDSA before),
//! each derived from the installation seed and the decky's name so a
//! decky keeps its fingerprints across restarts while two deckies never
//! share one.
//!
//! RSA generation takes seconds, so keys are made once per decky, off the
//! async threads, when its ssh port opens ([`HostKeys::prefetch`]), and
//! kept in its context for its life. With a cache folder they are also
//! kept on disk (one file per decky, mode 0600, named by a hash of the
//! seed and the decky): a restart of a 10,000-decky fleet reads them back
//! instead of spending hours of a core on RSA again. A cache file that
//! cannot be read or does not hold the expected key types is made again.

use std::sync::Arc;

use chacha20::rand_core::SeedableRng;
use russh::keys::ssh_key::private::{EcdsaKeypair, Ed25519Keypair, RsaKeypair};
use russh::keys::ssh_key::EcdsaCurve;
use russh::keys::PrivateKey;

use crate::persona::{Persona, SshProduct};

/// One host key a server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
    /// RSA of this many bits.
    Rsa(usize),
}

impl KeyKind {
    fn label(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::Rsa(_) => "rsa",
        }
    }
}

/// The host keys the persona's SSH server has after a default install.
pub fn kinds_for(persona: &Persona) -> Vec<KeyKind> {
    match persona.ssh_product {
        // dropbearkey's RSA default is 2048 bits; ed25519 arrived in 2020.79.
        SshProduct::Dropbear => {
            if super::release_version(persona) >= (2020, 79) {
                vec![KeyKind::Ed25519, KeyKind::EcdsaP256, KeyKind::Rsa(2048)]
            } else {
                vec![KeyKind::EcdsaP256, KeyKind::Rsa(2048)]
            }
        }
        // ssh-keygen's RSA default went from 2048 to 3072 bits in 8.0.
        SshProduct::OpenSsh => {
            let bits = if super::release_version(persona) >= (8, 0) { 3072 } else { 2048 };
            vec![KeyKind::Ed25519, KeyKind::EcdsaP256, KeyKind::Rsa(bits)]
        }
    }
}

/// 32 bytes for one key of one decky.
fn key_seed(seed: &[u8], decky: &str, kind: KeyKind) -> [u8; 32] {
    let mut material = seed.to_vec();
    material.extend_from_slice(b"\0decnet-ssh-host-key\0");
    material.extend_from_slice(decky.as_bytes());
    // ed25519 keeps the derivation it always had, so deckies deployed
    // before the other key types keep their ed25519 fingerprint.
    if kind != KeyKind::Ed25519 {
        material.push(0);
        material.extend_from_slice(kind.label().as_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The `kind` host key of `decky` under `seed` (same inputs, same key).
pub fn derive(seed: &[u8], decky: &str, kind: KeyKind) -> Result<PrivateKey, String> {
    let material = key_seed(seed, decky, kind);
    let mut rng = chacha20::ChaCha20Rng::from_seed(material);
    let fail = |e: russh::keys::ssh_key::Error| format!("cannot make the {} host key of {decky}: {e}", kind.label());
    Ok(match kind {
        KeyKind::Ed25519 => PrivateKey::from(Ed25519Keypair::from_seed(&material)),
        KeyKind::EcdsaP256 => PrivateKey::from(EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP256).map_err(fail)?),
        KeyKind::Rsa(bits) => PrivateKey::from(RsaKeypair::random(&mut rng, bits).map_err(fail)?),
    })
}

/// Whether `key` is what `kind` makes (type and, for RSA, size).
fn is_kind(key: &PrivateKey, kind: KeyKind) -> bool {
    match kind {
        KeyKind::Ed25519 => key.key_data().ed25519().is_some(),
        KeyKind::EcdsaP256 => key.key_data().ecdsa().is_some_and(|k| k.curve() == EcdsaCurve::NistP256),
        KeyKind::Rsa(bits) => key.key_data().rsa().is_some_and(|k| k.key_size() as usize == bits),
    }
}

/// Where `decky`'s keys are cached under `dir`: named by a hash, so a new
/// seed never reads old keys and no decky name becomes a path.
fn cache_path(dir: &std::path::Path, seed: &[u8], decky: &str, kinds: &[KeyKind]) -> std::path::PathBuf {
    let mut material = seed.to_vec();
    material.extend_from_slice(b"\0decnet-host-key-cache\0");
    material.extend_from_slice(decky.as_bytes());
    for k in kinds {
        material.extend_from_slice(format!("\0{k:?}").as_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    let name: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.keys"))
}

const PEM_END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// The cached keys at `path`, when the file holds exactly `kinds`.
fn read_cached(path: &std::path::Path, kinds: &[KeyKind]) -> Option<Vec<PrivateKey>> {
    let text = std::fs::read_to_string(path).ok()?;
    let keys: Vec<PrivateKey> = text
        .split_inclusive(PEM_END)
        .map(str::trim)
        .filter(|pem| !pem.is_empty())
        .map(PrivateKey::from_openssh)
        .collect::<Result<_, _>>()
        .ok()?;
    (keys.len() == kinds.len() && keys.iter().zip(kinds).all(|(k, kind)| is_kind(k, *kind))).then_some(keys)
}

/// Write `keys` to `path` (mode 0600, through a temporary file so a
/// reader never sees half a file). A failure costs the cache, not the keys.
fn write_cached(path: &std::path::Path, keys: &[PrivateKey]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    for key in keys {
        text.push_str(&key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map_err(std::io::Error::other)?);
    }
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

struct Inner {
    seed: Vec<u8>,
    decky: String,
    kinds: Vec<KeyKind>,
    /// Where the keys are kept across restarts, if anywhere.
    cache: Option<std::path::PathBuf>,
    keys: tokio::sync::OnceCell<Result<Arc<Vec<PrivateKey>>, String>>,
}

impl Inner {
    /// Read the keys from the cache, or derive them (and cache them).
    fn load_or_derive(&self) -> Result<Vec<PrivateKey>, String> {
        let path = self.cache.as_deref().map(|dir| cache_path(dir, &self.seed, &self.decky, &self.kinds));
        if let Some(keys) = path.as_deref().and_then(|p| read_cached(p, &self.kinds)) {
            return Ok(keys);
        }
        let keys = self.kinds.iter().map(|k| derive(&self.seed, &self.decky, *k)).collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = path {
            if let Err(e) = write_cached(&path, &keys) {
                tracing::warn!(decky = %self.decky, path = %path.display(), "host keys not cached: {e}");
            }
        }
        Ok(keys)
    }
}

/// Background key making, one decky at a time (see [`HostKeys::prefetch`]).
static PREFETCH_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A decky's host keys, made on first need and then kept.
#[derive(Clone)]
pub struct HostKeys(Arc<Inner>);

impl HostKeys {
    pub fn new(seed: &[u8], decky: &str, persona: &Persona) -> HostKeys {
        Self::cached(seed, decky, persona, None)
    }

    /// As [`HostKeys::new`], kept in the folder `cache` across restarts.
    pub fn cached(seed: &[u8], decky: &str, persona: &Persona, cache: Option<std::path::PathBuf>) -> HostKeys {
        HostKeys(Arc::new(Inner {
            seed: seed.to_vec(),
            decky: decky.to_string(),
            kinds: kinds_for(persona),
            cache,
            keys: tokio::sync::OnceCell::new(),
        }))
    }

    /// Start making the keys in the background (no-op outside a runtime
    /// or once made), so the first client does not wait for RSA.
    pub fn prefetch(&self) {
        if self.0.keys.initialized() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn(async move {
                // One decky's keys at a time in the background: a fleet of
                // thousands opening at once must not spend every core on RSA
                // before its ports are open. A client that connects first
                // makes its decky's keys at once (`get`), without waiting.
                let _turn = PREFETCH_TURN.acquire().await;
                let _ = me.get().await;
            });
        }
    }

    /// The keys, in the order of [`kinds_for`]; made once (concurrent
    /// callers wait for the same generation).
    pub async fn get(&self) -> Result<Arc<Vec<PrivateKey>>, String> {
        let inner = self.0.clone();
        self.0
            .keys
            .get_or_init(|| async move {
                let job = inner.clone();
                tokio::task::spawn_blocking(move || job.load_or_derive())
                    .await
                    .map_err(|e| format!("host key generation of {} failed: {e}", inner.decky))
                    .and_then(|r| r.map(Arc::new))
            })
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::HashAlg;

    #[test]
    fn keys_are_stable_per_decky_and_differ_between_deckies() {
        for kind in [KeyKind::Ed25519, KeyKind::EcdsaP256, KeyKind::Rsa(2048)] {
            let a = derive(b"seed", "web-01", kind).unwrap();
            let again = derive(b"seed", "web-01", kind).unwrap();
            let other = derive(b"seed", "web-02", kind).unwrap();
            let reseeded = derive(b"seed2", "web-01", kind).unwrap();
            let fp = |k: &PrivateKey| k.public_key().fingerprint(HashAlg::Sha256).to_string();
            assert_eq!(fp(&a), fp(&again), "{kind:?}");
            assert_ne!(fp(&a), fp(&other), "{kind:?}");
            assert_ne!(fp(&a), fp(&reseeded), "{kind:?}");
        }
        let rsa = derive(b"seed", "web-01", KeyKind::Rsa(2048)).unwrap();
        assert_eq!(rsa.key_data().rsa().unwrap().key_size(), 2048);
    }

    #[tokio::test]
    async fn cached_keys_come_back_from_disk_and_a_bad_cache_file_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let persona = Persona::derive("c", None, None, 1_700_000_000)
            .with_overrides(&serde_json::json!({ "release": "centos-7" }))
            .unwrap();
        let fps = |keys: &[PrivateKey]| -> Vec<String> {
            keys.iter().map(|k| k.public_key().fingerprint(HashAlg::Sha256).to_string()).collect()
        };
        let made = HostKeys::cached(b"seed", "cache-01", &persona, Some(dir.path().into())).get().await.unwrap();
        let path = cache_path(dir.path(), b"seed", "cache-01", &kinds_for(&persona));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // What is read back is what derivation makes.
        let read = read_cached(&path, &kinds_for(&persona)).expect("the cache file reads back");
        assert_eq!(fps(&read), fps(&made));
        let derived: Vec<PrivateKey> =
            kinds_for(&persona).iter().map(|k| derive(b"seed", "cache-01", *k).unwrap()).collect();
        assert_eq!(fps(&read), fps(&derived));
        // Another seed or decky never reads this file.
        assert_ne!(path, cache_path(dir.path(), b"seed2", "cache-01", &kinds_for(&persona)));
        assert_ne!(path, cache_path(dir.path(), b"seed", "cache-02", &kinds_for(&persona)));
        // Wrong key types (a file for another release) or garbage: made again.
        std::fs::write(
            &path,
            derive(b"seed", "x", KeyKind::Ed25519).unwrap().to_openssh(Default::default()).unwrap().as_bytes(),
        )
        .unwrap();
        assert!(read_cached(&path, &kinds_for(&persona)).is_none(), "one ed25519 key is not the three kinds");
        let again = HostKeys::cached(b"seed", "cache-01", &persona, Some(dir.path().into())).get().await.unwrap();
        assert_eq!(fps(&again), fps(&made));
        assert!(read_cached(&path, &kinds_for(&persona)).is_some(), "the bad file was replaced");
        std::fs::write(&path, "not a key").unwrap();
        let again = HostKeys::cached(b"seed", "cache-01", &persona, Some(dir.path().into())).get().await.unwrap();
        assert_eq!(fps(&again), fps(&made));
    }

    #[test]
    fn each_release_gets_the_key_types_its_server_generates() {
        let persona = |release: &str| {
            Persona::derive("k", None, None, 1_700_000_000)
                .with_overrides(&serde_json::json!({ "release": release }))
                .unwrap()
        };
        let full = |bits| vec![KeyKind::Ed25519, KeyKind::EcdsaP256, KeyKind::Rsa(bits)];
        assert_eq!(kinds_for(&persona("ubuntu-22.04")), full(3072));
        assert_eq!(kinds_for(&persona("debian-12")), full(3072));
        assert_eq!(kinds_for(&persona("centos-7")), full(2048));
        assert_eq!(kinds_for(&persona("busybox-camera")), full(2048));
    }
}
