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
//! kept in its context for its life.

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

struct Inner {
    seed: Vec<u8>,
    decky: String,
    kinds: Vec<KeyKind>,
    keys: tokio::sync::OnceCell<Result<Arc<Vec<PrivateKey>>, String>>,
}

/// Background key making, one decky at a time (see [`HostKeys::prefetch`]).
static PREFETCH_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A decky's host keys, made on first need and then kept.
#[derive(Clone)]
pub struct HostKeys(Arc<Inner>);

impl HostKeys {
    pub fn new(seed: &[u8], decky: &str, persona: &Persona) -> HostKeys {
        HostKeys(Arc::new(Inner {
            seed: seed.to_vec(),
            decky: decky.to_string(),
            kinds: kinds_for(persona),
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
                tokio::task::spawn_blocking(move || {
                    job.kinds.iter().map(|k| derive(&job.seed, &job.decky, *k)).collect::<Result<Vec<_>, _>>()
                })
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
