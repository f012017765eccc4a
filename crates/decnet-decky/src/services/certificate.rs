//! The self-signed certificate a decky's HTTPS serves: the one its
//! release's own tooling would have made on the real host, so `openssl
//! s_client`, nmap's `ssl-cert` and the fingerprinters see an ordinary
//! admin-made certificate rather than a generator's.
//!
//! - Debian and Ubuntu: the `ssl-cert` package's snakeoil certificate
//!   (`make-ssl-cert generate-default-snakeoil`, which Apache's
//!   `default-ssl` site and nginx's `snippets/snakeoil.conf` use), made
//!   when the system was installed: CN and the one DNS SAN = `hostname
//!   -f`, ten years, `basicConstraints CA:FALSE`; OpenSSL 3 releases
//!   (Ubuntu 22.04, Debian 12) add a subject key identifier, OpenSSL 1.1
//!   ones (Ubuntu 20.04, Debian 11) do not.
//! - CentOS 7: mod_ssl's `localhost.crt`, made by its post-install script
//!   with the `SomeState`/`SomeCity` placeholder subject, a `$RANDOM`
//!   serial and one year of validity.
//! - Anything else: `openssl req -x509 -newkey rsa:2048 -days 365 -nodes
//!   -subj "/CN=<host>"` with OpenSSL 3's defaults (key identifiers,
//!   critical `CA:TRUE`).
//!
//! Every one is RSA 2048 signed with SHA-256, like the tools make them.
//! The key (and so the certificate) is derived from secret material that
//! is stable per decky, so a decky keeps its certificate across restarts;
//! the issue time comes from [`super::installed`]: a whole second at a
//! random time of day, before the persona booted.

use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::rand_core::SeedableRng;

use super::installed;
use crate::Persona;

/// A certificate and its key, both DER.
pub struct Made {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
}

/// Which tool made the certificate on the real host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Snakeoil { openssl3: bool },
    CentosModSsl,
    OpensslReq,
}

pub fn style(persona: &Persona) -> Style {
    match persona.release.as_str() {
        "ubuntu-22.04" | "debian-12" => Style::Snakeoil { openssl3: true },
        "ubuntu-20.04" | "debian-11" => Style::Snakeoil { openssl3: false },
        "centos-7" => Style::CentosModSsl,
        _ => Style::OpensslReq,
    }
}

/// The name the certificate is made for: `hostname -f` on the Linux
/// releases (the FQDN the persona's resolver would give), the bare host
/// name elsewhere.
pub fn common_name(persona: &Persona) -> String {
    match style(persona) {
        Style::OpensslReq => persona.hostname.clone(),
        _ => persona.fqdn(),
    }
}

/// The RSA 2048 key of a decky: a ChaCha20 stream seeded from `secret`
/// and the host name drives the ordinary RSA key generation.
fn key(persona: &Persona, secret: &[u8]) -> Result<rsa::PrivateKey, String> {
    let mut material = secret.to_vec();
    material.extend_from_slice(b"\0decnet-tls-key\0");
    material.extend_from_slice(persona.hostname.as_bytes());
    let seed = ring::digest::digest(&ring::digest::SHA256, &material);
    let mut rng = chacha20::ChaCha20Rng::from_seed(seed.as_ref().try_into().expect("32 bytes"));
    rsa::PrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_EMAIL_ADDRESS: &[u64] = &[1, 2, 840, 113_549, 1, 9, 1];

fn extension(oid: &[u64], critical: bool, value: Vec<u8>) -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(oid, value);
    ext.set_criticality(critical);
    ext
}

/// The certificate `persona`'s host would serve, with a key derived from
/// `secret`.
pub fn make(persona: &Persona, secret: &[u8]) -> Result<Made, String> {
    let key = key(persona, secret)?;
    let key_pkcs8 = key.to_pkcs8_der().map_err(|e| e.to_string())?.as_bytes().to_vec();
    let public_pkcs1 = key.to_public_key().to_pkcs1_der().map_err(|e| e.to_string())?;
    // OpenSSL's key identifier: SHA-1 of the subjectPublicKey bits.
    let key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, public_pkcs1.as_bytes());
    let key_id = key_id.as_ref().to_vec();

    let cn = common_name(persona);
    let style = style(persona);
    let mut params = rcgen::CertificateParams::default();
    // Extensions are written by hand, in OpenSSL's order and encoding;
    // rcgen's own (SAN, basic constraints) would differ.
    params.is_ca = rcgen::IsCa::NoCa;
    params.subject_alt_names = Vec::new();
    let mut dn = rcgen::DistinguishedName::new();
    let (issued, days) = match style {
        Style::Snakeoil { openssl3 } => {
            dn.push(rcgen::DnType::CommonName, cn.as_str());
            // basicConstraints CA:FALSE is an empty SEQUENCE (FALSE is the default).
            params.custom_extensions.push(extension(OID_BASIC_CONSTRAINTS, false, der(0x30, &[])));
            params.custom_extensions.push(extension(OID_SUBJECT_ALT_NAME, false, der(0x30, &der(0x82, cn.as_bytes()))));
            if openssl3 {
                params.custom_extensions.push(extension(OID_SUBJECT_KEY_ID, false, der(0x04, &key_id)));
            }
            (installed::system(persona), 3_650)
        }
        Style::CentosModSsl => {
            let printable =
                |s: &str| rcgen::DnValue::PrintableString(s.try_into().expect("placeholder subjects are printable"));
            dn.push(rcgen::DnType::CountryName, printable("--"));
            dn.push(rcgen::DnType::StateOrProvinceName, "SomeState");
            dn.push(rcgen::DnType::LocalityName, "SomeCity");
            dn.push(rcgen::DnType::OrganizationName, "SomeOrganization");
            dn.push(rcgen::DnType::OrganizationalUnitName, "SomeOrganizationalUnit");
            dn.push(rcgen::DnType::CommonName, cn.as_str());
            let email = format!("root@{cn}");
            if let Ok(ia5) = email.as_str().try_into() {
                dn.push(rcgen::DnType::CustomDnType(OID_EMAIL_ADDRESS.to_vec()), rcgen::DnValue::Ia5String(ia5));
            }
            // CentOS's openssl.cnf [v3_req].
            params.custom_extensions.push(extension(OID_BASIC_CONSTRAINTS, false, der(0x30, &[])));
            // nonRepudiation, digitalSignature, keyEncipherment.
            params.custom_extensions.push(extension(OID_KEY_USAGE, false, der(0x03, &[0x05, 0xe0])));
            (installed::package(persona, "mod_ssl").0, 365)
        }
        Style::OpensslReq => {
            dn.push(rcgen::DnType::CommonName, cn.as_str());
            params.custom_extensions.push(extension(OID_SUBJECT_KEY_ID, false, der(0x04, &key_id)));
            params.custom_extensions.push(extension(OID_AUTHORITY_KEY_ID, false, der(0x30, &der(0x80, &key_id))));
            params.custom_extensions.push(extension(OID_BASIC_CONSTRAINTS, true, der(0x30, &[0x01, 0x01, 0xff])));
            (installed::package(persona, "https-certificate").0, 365)
        }
    };
    params.distinguished_name = dn;
    let not_before = time::OffsetDateTime::from_unix_timestamp(issued).map_err(|e| e.to_string())?;
    params.not_before = not_before;
    params.not_after = not_before + time::Duration::days(days);
    params.serial_number = Some(serial(persona, style));

    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(key_pkcs8.clone()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| e.to_string())?;
    let cert = params.self_signed(&signer).map_err(|e| e.to_string())?;
    Ok(Made { cert_der: cert.der().to_vec(), key_pkcs8 })
}

/// OpenSSL draws 159 random bits for a serial; mod_ssl's script passes
/// the shell's `$RANDOM` (0–32767).
fn serial(persona: &Persona, style: Style) -> rcgen::SerialNumber {
    let mut bytes = Vec::with_capacity(20);
    for i in 0..3 {
        bytes.extend_from_slice(&installed::draw(persona, &format!("serial{i}")).to_be_bytes());
    }
    match style {
        Style::CentosModSsl => {
            let n = (installed::draw(persona, "serial-random") % 32_768) as u16;
            rcgen::SerialNumber::from_slice(&n.to_be_bytes())
        }
        _ => {
            bytes.truncate(20);
            bytes[0] &= 0x7f;
            rcgen::SerialNumber::from_slice(&bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_stable_per_secret_and_decky() {
        let persona = Persona::derive("web-01", Some("linux-server"), None, 1_790_000_000);
        let started = std::time::Instant::now();
        let a = make(&persona, b"installation secret").unwrap();
        eprintln!("RSA 2048 key and certificate made in {:?}", started.elapsed());
        let again = make(&persona, b"installation secret").unwrap();
        assert_eq!((a.cert_der.clone(), a.key_pkcs8.clone()), (again.cert_der, again.key_pkcs8));
        let other_secret = make(&persona, b"another installation").unwrap();
        assert_ne!(a.key_pkcs8, other_secret.key_pkcs8);
        let other = Persona::derive("web-02", Some("linux-server"), None, 1_790_000_000);
        assert_ne!(a.key_pkcs8, make(&other, b"installation secret").unwrap().key_pkcs8);
        assert!(a.cert_der.windows(persona.fqdn().len()).any(|w| w == persona.fqdn().as_bytes()));
    }
}
