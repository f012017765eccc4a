//! UMAC (RFC 4418) as OpenSSH uses it: `umac-64@openssh.com`,
//! `umac-128@openssh.com` and their `-etm` forms. Added to the vendored
//! russh by decnet (see VENDORED.md): every OpenSSH release offers these
//! MACs, so a server that claims to be OpenSSH must negotiate them.
//!
//! Written from the RFC's pseudocode and checked against its test
//! vectors (Appendix, with the published errata for 'a' * 2^25). The
//! SSH binding is OpenSSH's: a 16-byte key, and the packet sequence
//! number as an 8-byte big-endian nonce; the MAC covers the packet alone
//! (the sequence number is not prepended as it is for HMAC).
//!
//! The subkeys are derived once per key (a little over 1 KiB of AES
//! output); each tag then costs NH over the message and one AES block.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use subtle::ConstantTimeEq;

use super::{Mac, MacAlgorithm};

/// Bytes of message one L1 (NH) key covers.
const L1_CHUNK: usize = 1024;
/// NH works on 32-byte blocks; a chunk's tail is zero-padded to one.
const NH_BLOCK: usize = 32;
/// POLY64 handles this many bytes of L1 output (2^14 NH outputs, 16 MiB
/// of message) before POLY128 takes over. RFC 4418's text reads as 2^17
/// bits; its errata and every interoperable implementation use bytes,
/// and the errata test vector for 'a' * 2^25 only passes that way.
const POLY64_BYTES: usize = 1 << 17;

const P36: u64 = (1 << 36) - 5;
const P64: u64 = 0xffff_ffff_ffff_ffc5; // 2^64 - 59
const P128: u128 = u128::MAX - 158; // 2^128 - 159
const MASK64: u64 = 0x01ff_ffff_01ff_ffff;
const MASK128: u128 = 0x01ff_ffff_01ff_ffff_01ff_ffff_01ff_ffff;

/// The algorithm entry in russh's MAC table: `streams` is the tag length
/// in 32-bit words (2 for UMAC-64, 4 for UMAC-128).
pub struct UmacAlgorithm {
    pub(crate) streams: usize,
    pub(crate) etm: bool,
}

impl MacAlgorithm for UmacAlgorithm {
    fn key_len(&self) -> usize {
        16
    }

    fn make_mac(&self, key: &[u8]) -> Box<dyn Mac + Send> {
        let mut k = [0u8; 16];
        k.copy_from_slice(&key[..16]);
        Box::new(SshUmac {
            umac: Umac::new(&k, self.streams),
            etm: self.etm,
        })
    }
}

struct SshUmac {
    umac: Umac,
    etm: bool,
}

impl Mac for SshUmac {
    fn mac_len(&self) -> usize {
        self.umac.tag_len()
    }

    fn is_etm(&self) -> bool {
        self.etm
    }

    fn compute(&self, sequence_number: u32, payload: &[u8], output: &mut [u8]) {
        let nonce = u64::from(sequence_number).to_be_bytes();
        self.umac.tag(&nonce, payload, output);
    }

    fn verify(&self, sequence_number: u32, payload: &[u8], mac: &[u8]) -> bool {
        let mut expected = [0u8; 16];
        let n = self.umac.tag_len();
        self.compute(sequence_number, payload, &mut expected[..n]);
        mac.len() == n && bool::from(expected[..n].ct_eq(mac))
    }
}

/// One UMAC key with its derived subkeys.
pub(crate) struct Umac {
    streams: usize,
    /// L1 (NH) key as 32-bit words: 256 words plus 4 more per extra stream.
    nh_key: Vec<u32>,
    poly64_key: [u64; 4],
    poly128_key: [u128; 4],
    l3_key1: [[u64; 8]; 4],
    l3_key2: [u32; 4],
    pdf: Aes128,
}

/// RFC 4418 KDF: AES-128 in counter mode, block i (from 1) encrypts
/// `uint2str(index, 8) || uint2str(i, 8)`.
fn kdf(cipher: &Aes128, index: u64, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&index.to_be_bytes());
        block[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let mut block = block.into();
        cipher.encrypt_block(&mut block);
        let block: [u8; 16] = block.into();
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Umac {
    pub(crate) fn new(key: &[u8; 16], streams: usize) -> Self {
        assert!((1..=4).contains(&streams));
        let cipher = Aes128::new(&(*key).into());

        let mut pdf_key = [0u8; 16];
        kdf(&cipher, 0, &mut pdf_key);
        let pdf = Aes128::new(&pdf_key.into());

        let mut l1 = vec![0u8; L1_CHUNK + 16 * (streams - 1)];
        kdf(&cipher, 1, &mut l1);
        let nh_key = l1
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();

        let mut l2 = [0u8; 24 * 4];
        kdf(&cipher, 2, &mut l2[..24 * streams]);
        let mut poly64_key = [0u64; 4];
        let mut poly128_key = [0u128; 4];
        for i in 0..streams {
            let k = &l2[24 * i..24 * i + 24];
            poly64_key[i] = be_u64(&k[..8]) & MASK64;
            poly128_key[i] = ((u128::from(be_u64(&k[8..16])) << 64) | u128::from(be_u64(&k[16..24]))) & MASK128;
        }

        let mut l3a = [0u8; 64 * 4];
        kdf(&cipher, 3, &mut l3a[..64 * streams]);
        let mut l3_key1 = [[0u64; 8]; 4];
        for i in 0..streams {
            for j in 0..8 {
                l3_key1[i][j] = be_u64(&l3a[64 * i + 8 * j..]) % P36;
            }
        }

        let mut l3b = [0u8; 4 * 4];
        kdf(&cipher, 4, &mut l3b[..4 * streams]);
        let mut l3_key2 = [0u32; 4];
        for i in 0..streams {
            l3_key2[i] = u32::from_be_bytes([l3b[4 * i], l3b[4 * i + 1], l3b[4 * i + 2], l3b[4 * i + 3]]);
        }

        Umac {
            streams,
            nh_key,
            poly64_key,
            poly128_key,
            l3_key1,
            l3_key2,
            pdf,
        }
    }

    pub(crate) fn tag_len(&self) -> usize {
        4 * self.streams
    }

    /// `UMAC(K, M, Nonce)` into `out` (`tag_len()` bytes); the nonce is 1 to 16 bytes.
    pub(crate) fn tag(&self, nonce: &[u8], message: &[u8], out: &mut [u8]) {
        let n = self.tag_len();
        let pad = self.pdf(nonce);
        for s in 0..self.streams {
            let h = self.uhash_stream(s, message);
            out[4 * s..4 * s + 4].copy_from_slice(&h.to_be_bytes());
        }
        for (o, p) in out[..n].iter_mut().zip(pad.iter()) {
            *o ^= p;
        }
    }

    /// RFC 4418 PDF: the pad, `tag_len()` bytes (returned in a 16-byte array).
    fn pdf(&self, nonce: &[u8]) -> [u8; 16] {
        let n = self.tag_len();
        let mut block = [0u8; 16];
        block[..nonce.len()].copy_from_slice(nonce);
        let mut index = 0;
        if n == 4 || n == 8 {
            // Nonces differing only in their low bits share one AES block.
            let last = nonce.len() - 1;
            let modulus = (16 / n) as u8;
            index = (nonce[last] % modulus) as usize;
            block[last] ^= index as u8;
        }
        let mut b = block.into();
        self.pdf.encrypt_block(&mut b);
        let t: [u8; 16] = b.into();
        let mut pad = [0u8; 16];
        pad[..n].copy_from_slice(&t[index * n..index * n + n]);
        pad
    }

    /// One 32-bit word of UHASH: L1 (NH), L2 (POLY) and L3 for stream `s`.
    fn uhash_stream(&self, s: usize, message: &[u8]) -> u32 {
        let key = &self.nh_key[4 * s..4 * s + L1_CHUNK / 4];
        let b: u128 = if message.len() <= L1_CHUNK {
            u128::from(l1_chunk(key, message))
        } else {
            self.l2(s, message.chunks(L1_CHUNK).map(|c| l1_chunk(key, c)))
        };
        self.l3(s, b)
    }

    /// RFC 4418 L2-HASH over the L1 outputs: POLY64 for the first 2^14
    /// bytes of them, POLY128 for the rest (messages over 16 MiB).
    fn l2(&self, s: usize, l1: impl Iterator<Item = u64>) -> u128 {
        let k64 = self.poly64_key[s];
        let mut y: u64 = 1;
        let mut l1 = l1.peekable();
        for _ in 0..POLY64_BYTES / 8 {
            match l1.next() {
                Some(m) => y = poly64_step(k64, y, m),
                None => return u128::from(y),
            }
        }
        if l1.peek().is_none() {
            return u128::from(y);
        }
        // The rest goes through POLY128 in 16-byte words: first y itself
        // (below 2^64, so never in the marker range), then the remaining L1
        // outputs in pairs, ended by 0x80 and zero padding.
        let k128 = self.poly128_key[s];
        let mut pending: Option<u64> = None;
        let mut acc128 = poly128_step(k128, 1, u128::from(y));
        for m in l1 {
            match pending.take() {
                None => pending = Some(m),
                Some(hi) => acc128 = poly128_step(k128, acc128, (u128::from(hi) << 64) | u128::from(m)),
            }
        }
        let last = match pending {
            Some(hi) => (u128::from(hi) << 64) | (0x80u128 << 56),
            None => 0x80u128 << 120,
        };
        poly128_step(k128, acc128, last)
    }

    /// RFC 4418 L3-HASH: an inner product of B's eight 16-bit words mod
    /// 2^36 - 5, truncated to 32 bits and masked.
    fn l3(&self, s: usize, b: u128) -> u32 {
        let mut y: u64 = 0;
        for j in 0..8 {
            let m = ((b >> (112 - 16 * j)) & 0xffff) as u64;
            y = (y + m * self.l3_key1[s][j]) % P36;
        }
        (y as u32) ^ self.l3_key2[s]
    }
}

/// L1-HASH of one chunk of at most 1024 bytes: NH over the zero-padded
/// chunk (an empty one pads to a whole block) plus its length in bits.
fn l1_chunk(key: &[u32], chunk: &[u8]) -> u64 {
    let mut y: u64 = 0;
    let mut blocks = chunk.chunks_exact(NH_BLOCK);
    let mut k = 0;
    for block in &mut blocks {
        y = y.wrapping_add(nh_block(&key[k..k + 8], block));
        k += 8;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() || chunk.is_empty() {
        let mut padded = [0u8; NH_BLOCK];
        padded[..tail.len()].copy_from_slice(tail);
        y = y.wrapping_add(nh_block(&key[k..k + 8], &padded));
    }
    y.wrapping_add(8 * chunk.len() as u64)
}

/// NH of one 32-byte block: message words little-endian, key words as derived.
fn nh_block(key: &[u32], block: &[u8]) -> u64 {
    let m = |i: usize| u32::from_le_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
    let mut y: u64 = 0;
    for j in 0..4 {
        let a = u64::from(m(j).wrapping_add(key[j]));
        let b = u64::from(m(j + 4).wrapping_add(key[j + 4]));
        y = y.wrapping_add(a.wrapping_mul(b));
    }
    y
}

fn poly64_step(k: u64, y: u64, m: u64) -> u64 {
    let mul = |y: u64, m: u64| ((u128::from(k) * u128::from(y) + u128::from(m)) % u128::from(P64)) as u64;
    // Words in the top 2^32 values are sent as a marker and the word less the offset.
    if m >= 0xffff_ffff_0000_0000 {
        let y = mul(y, P64 - 1);
        mul(y, m - 59)
    } else {
        mul(y, m)
    }
}

fn poly128_step(k: u128, y: u128, m: u128) -> u128 {
    if m >= u128::MAX - ((1u128 << 96) - 1) {
        let y = add_mod128(mul_mod128(k, y), P128 - 1);
        add_mod128(mul_mod128(k, y), m - 159)
    } else {
        add_mod128(mul_mod128(k, y), m % P128)
    }
}

fn add_mod128(a: u128, b: u128) -> u128 {
    // a, b < p: a + b < 2p, which may overflow 2^128.
    let (s, carry) = a.overflowing_add(b);
    if carry {
        // s + 2^128 ≡ s + 159 (mod p), and s < p here.
        s + 159
    } else if s >= P128 {
        s - P128
    } else {
        s
    }
}

/// a * b mod 2^128 - 159, with 2^128 ≡ 159.
fn mul_mod128(a: u128, b: u128) -> u128 {
    let (a1, a0) = (a >> 64, a & u128::from(u64::MAX));
    let (b1, b0) = (b >> 64, b & u128::from(u64::MAX));
    let lo = a0 * b0;
    let mid1 = a0 * b1;
    let mid2 = a1 * b0;
    let hi = a1 * b1;
    // The 256-bit product is hi*2^128 + (mid1 + mid2)*2^64 + lo.
    let (mid, mid_carry) = mid1.overflowing_add(mid2);
    let (low, c1) = lo.overflowing_add(mid << 64);
    let high = hi + (mid >> 64) + (u128::from(mid_carry) << 64) + u128::from(c1);
    // Fold: high*2^128 ≡ high*159; high < 2^128, so high*159 < 2^136.
    let (h1, h0) = (high >> 64, high & u128::from(u64::MAX));
    let f0 = h0 * 159; // < 2^72
    let f1 = h1 * 159; // < 2^72, weight 2^64
    let mut r = low % P128;
    r = add_mod128(r, f0 % P128);
    // f1 * 2^64 = (f1 >> 64) * 2^128 + (f1 mod 2^64) * 2^64
    r = add_mod128(r, ((f1 & u128::from(u64::MAX)) << 64) % P128);
    r = add_mod128(r, ((f1 >> 64) * 159) % P128);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn check(message: &[u8], tag64: &str, tag128: &str) {
        for (streams, want) in [(2, tag64), (4, tag128)] {
            let umac = Umac::new(b"abcdefghijklmnop", streams);
            let mut out = [0u8; 16];
            umac.tag(b"bcdefghi", message, &mut out[..4 * streams]);
            assert_eq!(out[..4 * streams].to_vec(), hex(want), "streams {streams}, {} bytes", message.len());
        }
    }

    // RFC 4418 Appendix: key "abcdefghijklmnop", nonce "bcdefghi".
    #[test]
    fn rfc4418_vectors() {
        check(b"", "6E155FAD26900BE1", "32FEDB100C79AD58F07FF7643CC60465");
        check(&[b'a'; 3], "44B5CB542F220104", "185E4FE905CBA7BD85E4C2DC3D117D8D");
        check(&[b'a'; 1 << 10], "26BF2F5D60118BD9", "7A54ABE04AF82D60FB298C3CBD195BCB");
        check(&[b'a'; 1 << 15], "27F8EF643B0D118D", "7B136BD911E4B734286EF2BE501F2C3C");
        check(&vec![b'a'; 1 << 20], "A4477E87E9F55853", "F8ACFA3AC31CFEEA047F7B115B03BEF5");
        check(b"abc", "D4D7B9F6BD4FBFCF", "883C3D4B97A61976FFCF232308CBA5A5");
        check(&b"abc".repeat(500), "D4CF26DDEFD5C01A", "8824A260C53C66A36C9260A62CB83AA1");
    }


    #[test]
    fn ssh_binding_verifies_its_own_tag_and_rejects_a_changed_packet() {
        let alg = UmacAlgorithm { streams: 2, etm: false };
        let mac = alg.make_mac(&[7u8; 16]);
        let mut tag = [0u8; 8];
        mac.compute(5, b"packet", &mut tag);
        assert!(mac.verify(5, b"packet", &tag));
        assert!(!mac.verify(6, b"packet", &tag));
        assert!(!mac.verify(5, b"packes", &tag));
    }
}
