//! `sntrup761x25519-sha512@openssh.com` (and its later name
//! `sntrup761x25519-sha512`): Streamlined NTRU Prime 761 combined with
//! X25519, as OpenSSH 8.5+ offers it. Added to the vendored russh by
//! decnet (see VENDORED.md), on the pattern of `hybrid_mlkem.rs`.
//!
//! OpenSSH's construction (kexsntrup761x25519.c): the client sends its
//! sntrup761 public key followed by its X25519 key; the server answers
//! with the sntrup761 ciphertext followed by its X25519 key; the shared
//! secret is SHA-512(sntrup761 key || X25519 key), encoded as a string
//! (not an mpint) in the exchange hash, which is SHA-512.

use byteorder::{BigEndian, ByteOrder};
use curve25519_dalek::montgomery::MontgomeryPoint;
use log::debug;
use sha2::Digest;
use ssh_encoding::{Encode, Writer};

use super::{compute_keys, KexAlgorithm, KexAlgorithmImplementor, KexType, SharedSecret};
use crate::mac;
use crate::session::Exchange;
use crate::{cipher, msg, CryptoVec, Error};

const SNTRUP761_PUBLIC_KEY_SIZE: usize = sntrup761::PUBLIC_KEY_SIZE;
const SNTRUP761_CIPHERTEXT_SIZE: usize = sntrup761::CIPHERTEXT_SIZE;
const X25519_PUBLIC_KEY_SIZE: usize = 32;

pub struct Sntrup761X25519KexType {}

impl KexType for Sntrup761X25519KexType {
    fn make(&self) -> KexAlgorithm {
        Sntrup761X25519Kex {
            kem_secret: None,
            x25519_secret: None,
            k_pq: None,
            k_cl: None,
        }
        .into()
    }
}

#[doc(hidden)]
pub struct Sntrup761X25519Kex {
    kem_secret: Option<Box<sntrup761::DecapsulationKey>>,
    x25519_secret: Option<[u8; 32]>,
    k_pq: Option<sntrup761::SharedSecret>,
    k_cl: Option<MontgomeryPoint>,
}

impl std::fmt::Debug for Sntrup761X25519Kex {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Sntrup761X25519Kex {{ kem_secret: [hidden], x25519_secret: [hidden], k_pq: [hidden], k_cl: [hidden] }}",
        )
    }
}

impl KexAlgorithmImplementor for Sntrup761X25519Kex {
    fn skip_exchange(&self) -> bool {
        false
    }

    fn server_dh(&mut self, exchange: &mut Exchange, payload: &[u8]) -> Result<(), Error> {
        debug!("server_dh (sntrup761x25519)");

        if payload.first() != Some(&msg::KEX_HYBRID_INIT) {
            return Err(Error::Inconsistent);
        }

        #[allow(clippy::indexing_slicing)]
        let c_init_len = BigEndian::read_u32(&payload[1..]) as usize;

        if payload.len() < 5 + c_init_len {
            return Err(Error::Inconsistent);
        }

        if c_init_len != SNTRUP761_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }

        #[allow(clippy::indexing_slicing)]
        let c_init = &payload[5..5 + c_init_len];

        #[allow(clippy::indexing_slicing)]
        let c_pk2_bytes = &c_init[..SNTRUP761_PUBLIC_KEY_SIZE];
        #[allow(clippy::indexing_slicing)]
        let c_pk1_bytes = &c_init[SNTRUP761_PUBLIC_KEY_SIZE..];

        let c_pk2 = sntrup761::EncapsulationKey::try_from(c_pk2_bytes).map_err(|_| Error::Kex)?;

        let mut c_pk1 = MontgomeryPoint([0; 32]);
        c_pk1.0.copy_from_slice(c_pk1_bytes);

        let (s_ct2, k_pq_shared_secret) = c_pk2.encapsulate_deterministic(rand::random::<[u8; 32]>());

        let s_secret = rand::random::<[u8; 32]>();
        let s_pk1 = MontgomeryPoint::mul_base_clamped(s_secret);

        let k_cl = c_pk1.mul_clamped(s_secret);
        if k_cl.0 == [0u8; 32] {
            debug!("client sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        }

        exchange.server_ephemeral.clear();
        exchange
            .server_ephemeral
            .extend_from_slice(s_ct2.as_ref());
        exchange.server_ephemeral.extend_from_slice(&s_pk1.0);

        self.k_pq = Some(k_pq_shared_secret);
        self.k_cl = Some(k_cl);

        Ok(())
    }

    fn client_dh(
        &mut self,
        client_ephemeral: &mut Vec<u8>,
        writer: &mut impl Writer,
    ) -> Result<(), Error> {
        let (kem_pk, kem_sk) = sntrup761::generate_key_from_seed(rand::random::<[u8; 32]>());

        let x25519_secret = rand::random::<[u8; 32]>();
        let x25519_pk = MontgomeryPoint::mul_base_clamped(x25519_secret);

        client_ephemeral.clear();
        client_ephemeral.extend(kem_pk.as_ref());
        client_ephemeral.extend(&x25519_pk.0);

        msg::KEX_HYBRID_INIT.encode(writer)?;
        let mut c_init = Vec::<u8>::new();
        c_init.extend(kem_pk.as_ref());
        c_init.extend(&x25519_pk.0);
        c_init.as_slice().encode(writer)?;

        self.kem_secret = Some(Box::new(kem_sk));
        self.x25519_secret = Some(x25519_secret);

        Ok(())
    }

    fn compute_shared_secret(&mut self, remote_pubkey_: &[u8]) -> Result<(), Error> {
        if remote_pubkey_.len() != SNTRUP761_CIPHERTEXT_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }

        #[allow(clippy::indexing_slicing)]
        let s_ct2_bytes = &remote_pubkey_[..SNTRUP761_CIPHERTEXT_SIZE];
        #[allow(clippy::indexing_slicing)]
        let s_pk1_bytes = &remote_pubkey_[SNTRUP761_CIPHERTEXT_SIZE..];

        let s_ct2 = sntrup761::Ciphertext::try_from(s_ct2_bytes).map_err(|_| Error::KexInit)?;

        let kem_secret = self.kem_secret.take().ok_or(Error::KexInit)?;
        let k_pq_shared_secret = kem_secret.decapsulate(&s_ct2);
        let mut s_pk1 = MontgomeryPoint([0; 32]);
        s_pk1.0.copy_from_slice(s_pk1_bytes);

        let x25519_secret = self.x25519_secret.take().ok_or(Error::KexInit)?;
        let k_cl = s_pk1.mul_clamped(x25519_secret);
        if k_cl.0 == [0u8; 32] {
            debug!("server sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        }

        self.k_pq = Some(k_pq_shared_secret);
        self.k_cl = Some(k_cl);

        Ok(())
    }

    fn shared_secret_bytes(&self) -> Option<&[u8]> {
        // For hybrid KEX, the shared secret is a combination of ML-KEM and X25519.
        // The actual combined secret is computed during compute_keys.
        // We return the X25519 portion as that's what's directly available.
        // Users needing the full hybrid secret should use compute_keys.
        self.k_cl.as_ref().map(|k| k.0.as_slice())
    }

    fn compute_exchange_hash(
        &self,
        key: &[u8],
        exchange: &Exchange,
        buffer: &mut CryptoVec,
    ) -> Result<Vec<u8>, Error> {
        buffer.clear();
        exchange.client_id.encode(buffer)?;
        exchange.server_id.encode(buffer)?;
        exchange.client_kex_init.encode(buffer)?;
        exchange.server_kex_init.encode(buffer)?;

        buffer.extend(key);

        exchange.client_ephemeral.encode(buffer)?;
        exchange.server_ephemeral.encode(buffer)?;

        let k_pq = self.k_pq.as_ref().ok_or(Error::KexInit)?;
        let k_cl = self.k_cl.as_ref().ok_or(Error::KexInit)?;

        let mut combined = Vec::new();
        combined.extend_from_slice(k_pq.as_ref());
        combined.extend_from_slice(&k_cl.0);

        let mut hasher = sha2::Sha512::new();
        hasher.update(&combined);
        let k = hasher.finalize();

        (*k).encode(buffer)?;

        let mut hasher = sha2::Sha512::new();
        hasher.update(&buffer);

        Ok(hasher.finalize().to_vec())
    }

    fn compute_keys(
        &self,
        session_id: &[u8],
        exchange_hash: &[u8],
        cipher: cipher::Name,
        remote_to_local_mac: mac::Name,
        local_to_remote_mac: mac::Name,
        is_server: bool,
    ) -> Result<super::cipher::CipherPair, Error> {
        let k_pq = self.k_pq.as_ref().ok_or(Error::KexInit)?;
        let k_cl = self.k_cl.as_ref().ok_or(Error::KexInit)?;

        let mut combined = Vec::new();
        combined.extend_from_slice(k_pq.as_ref());
        combined.extend_from_slice(&k_cl.0);

        let mut hasher = sha2::Sha512::new();
        hasher.update(&combined);
        let k = hasher.finalize();

        let shared_secret = SharedSecret::from_string(&k)?;

        compute_keys::<sha2::Sha512>(
            Some(&shared_secret),
            session_id,
            exchange_hash,
            cipher,
            remote_to_local_mac,
            local_to_remote_mac,
            is_server,
        )
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Sntrup761X25519Kex {
        Sntrup761X25519Kex {
            kem_secret: None,
            x25519_secret: None,
            k_pq: None,
            k_cl: None,
        }
    }

    #[test]
    fn client_and_server_agree_on_both_secrets_and_the_wire_sizes_are_openssh_s() {
        let (mut client, mut server) = (fresh(), fresh());
        let mut client_ephemeral = Vec::new();
        let mut init = Vec::new();
        client.client_dh(&mut client_ephemeral, &mut init).unwrap();
        assert_eq!(client_ephemeral.len(), 1158 + 32);
        let mut exchange = Exchange::default();
        server.server_dh(&mut exchange, &init).unwrap();
        assert_eq!(exchange.server_ephemeral.len(), 1039 + 32);
        client.compute_shared_secret(&exchange.server_ephemeral).unwrap();
        assert!(client.k_pq == server.k_pq);
        assert_eq!(client.k_cl.unwrap().0, server.k_cl.unwrap().0);
    }

    #[test]
    fn a_client_message_of_the_wrong_size_is_refused() {
        let mut server = fresh();
        let mut init = vec![msg::KEX_HYBRID_INIT];
        init.extend_from_slice(&(100u32).to_be_bytes());
        init.extend_from_slice(&[1u8; 100]);
        assert!(server.server_dh(&mut Exchange::default(), &init).is_err());
    }
}
