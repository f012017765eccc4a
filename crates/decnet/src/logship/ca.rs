//! A tiny certificate authority for log shipping: one CA per deployment,
//! one certificate per host (client and server use), files under
//! `$DECNET_HOME/ca`, private keys mode 0600.
//!
//! The CA key never leaves the master; `decnet ca issue NAME` writes
//! `NAME.pem` + `NAME.key` to copy to that host. The listener trusts only
//! this CA, so a certificate from any other CA fails the handshake.
//!
//! Certificates carry a real validity window (the CA ten years by default,
//! a host a year; see `--days`), starting [`CLOCK_SKEW`] in the past so a
//! host whose clock lags a little accepts a fresh certificate.
//! `decnet ca revoke NAME` adds NAME's current certificate to `revoked.json`
//! (the record: name, serial, when) and re-signs `crl.pem` from it, a
//! standard X.509 CRL the listener checks every handshake against.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
/// The revocation list the listener reads (X.509 CRL, PEM).
pub const CRL: &str = "crl.pem";
/// What `ca revoke` has revoked, the source `crl.pem` is signed from.
pub const REVOKED: &str = "revoked.json";

/// Default lifetime of the CA certificate.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default lifetime of a host certificate (`ca issue --days`).
pub const DEFAULT_DAYS: u32 = 365;
/// How far in the past a certificate's validity starts: clocks of the
/// hosts differ by seconds to minutes, and a certificate "not yet valid"
/// on a sensor whose clock lags would stop shipping for no good reason.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The validity window of a certificate issued now for `days`.
fn validity(days: u32) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let now = OffsetDateTime::now_utc();
    Ok((now - CLOCK_SKEW, now + Duration::days(days.into())))
}

/// A random positive 16-byte serial: a certificate re-issued under the
/// same name gets a new serial, so revoking the old one spares the new.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte, so DER keeps all 16
    SerialNumber::from_slice(&bytes)
}

/// `$DECNET_HOME/ca`.
pub fn default_dir() -> PathBuf {
    crate::home::decnet_home().join("ca")
}

/// Certificate names become file names and CNs: keep them boring.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "ca"
}

fn write_file(path: &Path, data: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    // `mode` only applies on creation; make an existing file private too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// Create the CA in `dir`. Refuses to replace an existing one: every host
/// certificate issued by it would stop working.
pub fn init(dir: &Path, name: &str, days: u32) -> anyhow::Result<PathBuf> {
    let (not_before, not_after) = validity(days)?;
    let key_path = dir.join(CA_KEY);
    if key_path.exists() {
        bail!("a CA already exists in {} (remove it first to start over)", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key)?;
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&dir.join(CA_CERT), &cert.pem(), 0o644)?;
    Ok(dir.join(CA_CERT))
}

/// The CA in `dir`: its key, and a certificate with its name, key and
/// key usages to sign with.
fn load_ca(dir: &Path) -> anyhow::Result<(rcgen::Certificate, KeyPair, OffsetDateTime)> {
    let ca_key_pem = std::fs::read_to_string(dir.join(CA_KEY))
        .with_context(|| format!("no CA in {} (run `decnet ca init` first)", dir.display()))?;
    let ca_cert_pem = std::fs::read_to_string(dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("the CA key is unreadable")?;
    // Re-signing the CA's own parameters gives an issuer with the same
    // name and key, which is all a signature chain looks at.
    let params = CertificateParams::from_ca_cert_pem(&ca_cert_pem).context("the CA certificate is unreadable")?;
    let expires = params.not_after;
    Ok((params.self_signed(&ca_key)?, ca_key, expires))
}

/// Issue `name`'s certificate (CN = `name`, SANs = `name` plus `sans`,
/// usable as TLS client and server, valid `days` from now but never past
/// the CA's own expiry) signed by the CA in `dir`.
pub fn issue(dir: &Path, name: &str, sans: &[String], days: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !valid_name(name) {
        bail!("certificate name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (and not \"ca\")");
    }
    let (not_before, mut not_after) = validity(days)?;
    let (ca, ca_key, ca_expires) = load_ca(dir)?;
    if not_after > ca_expires {
        eprintln!("note: the CA expires {ca_expires}; {name}'s certificate ends then too");
        not_after = ca_expires;
    }
    let mut names = vec![name.to_owned()];
    names.extend(sans.iter().filter(|s| !s.is_empty()).cloned());
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &cert.pem(), 0o644)?;
    Ok((cert_path, key_path))
}

/// One revoked certificate in `revoked.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    pub name: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The serial number of the certificate in `pem`, lowercase hex.
pub fn serial_of(pem: &str) -> anyhow::Result<String> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().context("no certificate")??;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).context("unparsable certificate")?;
    Ok(hex(cert.raw_serial()))
}

/// What `ca revoke` has revoked so far (none when the file is missing).
pub fn revoked(dir: &Path) -> anyhow::Result<Vec<Revoked>> {
    let path = dir.join(REVOKED);
    match std::fs::read(&path) {
        Ok(data) => {
            serde_json::from_slice(&data).with_context(|| format!("{} is not a revocation record", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Revoke `name`'s certificate (the `NAME.pem` in `dir`): record it and
/// re-sign `crl.pem`. Revoking the same certificate twice changes nothing;
/// returns whether it was newly revoked.
pub fn revoke(dir: &Path, name: &str) -> anyhow::Result<bool> {
    if !valid_name(name) {
        bail!("certificate name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (and not \"ca\")");
    }
    let cert_path = dir.join(format!("{name}.pem"));
    let pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("no certificate {} (issued with `decnet ca issue {name}`?)", cert_path.display()))?;
    let serial = serial_of(&pem)?;
    let mut list = revoked(dir)?;
    let fresh = !list.iter().any(|r| r.serial == serial);
    if fresh {
        list.push(Revoked { name: name.to_owned(), serial, revoked_at: OffsetDateTime::now_utc().unix_timestamp() });
    }
    write_crl(dir, &list)?;
    write_file(&dir.join(REVOKED), &serde_json::to_string_pretty(&list)?, 0o644)?;
    Ok(fresh)
}

/// Sign `crl.pem` listing `list`, written to a temporary file and renamed
/// so a listener re-reading it never sees half a list.
fn write_crl(dir: &Path, list: &[Revoked]) -> anyhow::Result<()> {
    let (ca, ca_key, _) = load_ca(dir)?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::new();
    for r in list {
        let bytes = (0..r.serial.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(r.serial.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .with_context(|| format!("bad serial {:?} in {REVOKED}", r.serial))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
            reason_code: Some(RevocationReason::Unspecified),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - CLOCK_SKEW,
        // The listener does not enforce next_update (rustls' default), so a
        // list stays in force until replaced; a year is what a strict
        // relying party would accept.
        next_update: now + Duration::days(DEFAULT_DAYS.into()),
        crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca, &ca_key).context("cannot sign the revocation list")?;
    let tmp = dir.join(format!("{CRL}.tmp"));
    write_file(&tmp, &crl.pem()?, 0o644)?;
    std::fs::rename(&tmp, dir.join(CRL)).with_context(|| format!("cannot replace {}", dir.join(CRL).display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_issue_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init(&ca, "decnet test CA", DEFAULT_CA_DAYS).unwrap();
        assert!(init(&ca, "again", DEFAULT_CA_DAYS).unwrap_err().to_string().contains("already exists"));
        let (cert, key) = issue(&ca, "sensor-1", &["127.0.0.1".into()], DEFAULT_DAYS).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(ca.join(CA_KEY)).unwrap().permissions().mode() & 0o777, 0o600);
        let pem = std::fs::read_to_string(cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(super::super::tls::common_name(&der).as_deref(), Some("sensor-1"));
        assert!(issue(&ca, "../evil", &[], DEFAULT_DAYS).is_err());
        assert!(issue(&dir.path().join("none"), "x", &[], DEFAULT_DAYS).unwrap_err().to_string().contains("ca init"));
    }

    /// (not before, not after) of the certificate at `path`, Unix seconds.
    fn window(path: &Path) -> (i64, i64) {
        let pem = std::fs::read_to_string(path).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp())
    }

    #[test]
    fn validity_is_days_from_now_with_a_small_skew_and_never_past_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        init(&ca, "decnet test CA", 100).unwrap();
        let (ca_from, ca_to) = window(&ca.join(CA_CERT));
        let skew = CLOCK_SKEW.whole_seconds();
        assert!((now - skew - 5..=now - skew + 5).contains(&ca_from), "CA not before {ca_from}, now {now}");
        assert!((now + 100 * 86400 - 5..=now + 100 * 86400 + 5).contains(&ca_to), "CA not after {ca_to}");
        let (cert, _) = issue(&ca, "sensor-1", &[], 30).unwrap();
        let (from, to) = window(&cert);
        assert!((now - skew - 5..=now - skew + 5).contains(&from), "not before {from}, now {now}");
        assert!((now + 30 * 86400 - 5..=now + 30 * 86400 + 5).contains(&to), "not after {to}, now {now}");
        // Longer than the CA lives: cut to the CA's end.
        let (cert, _) = issue(&ca, "sensor-2", &[], 1000).unwrap();
        assert_eq!(window(&cert).1, ca_to);
        assert!(issue(&ca, "sensor-3", &[], 0).unwrap_err().to_string().contains("--days"));
    }

    #[test]
    fn revoke_lists_the_current_serial_once_in_a_signed_crl() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init(&ca, "decnet test CA", DEFAULT_CA_DAYS).unwrap();
        let (cert, _) = issue(&ca, "sensor-1", &[], DEFAULT_DAYS).unwrap();
        let serial = serial_of(&std::fs::read_to_string(&cert).unwrap()).unwrap();
        assert!(revoke(&ca, "sensor-1").unwrap());
        assert!(!revoke(&ca, "sensor-1").unwrap(), "a second revoke of the same certificate is a no-op");
        assert!(revoke(&ca, "nobody").unwrap_err().to_string().contains("ca issue nobody"));
        let pem = std::fs::read(ca.join(CRL)).unwrap();
        let der = rustls_pemfile::crls(&mut pem.as_slice()).next().unwrap().unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).unwrap();
        let listed: Vec<String> = crl.iter_revoked_certificates().map(|r| hex(r.raw_serial())).collect();
        assert_eq!(listed, vec![serial]);
        // Re-issued under the same name: a new serial, not revoked.
        let (cert, _) = issue(&ca, "sensor-1", &[], DEFAULT_DAYS).unwrap();
        assert_ne!(serial_of(&std::fs::read_to_string(&cert).unwrap()).unwrap(), revoked(&ca).unwrap()[0].serial);
    }
}
