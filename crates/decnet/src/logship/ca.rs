//! A tiny certificate authority for log shipping: one CA per deployment,
//! one certificate per host (client and server use), files under
//! `$DECNET_HOME/ca`, private keys mode 0600.
//!
//! The CA key never leaves the master; `decnet ca issue NAME` writes
//! `NAME.pem` + `NAME.key` to copy to that host. The listener trusts only
//! this CA, so a certificate from any other CA fails the handshake.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

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
pub fn init(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
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
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key)?;
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&dir.join(CA_CERT), &cert.pem(), 0o644)?;
    Ok(dir.join(CA_CERT))
}

/// Issue `name`'s certificate (CN = `name`, SANs = `name` plus `sans`,
/// usable as TLS client and server) signed by the CA in `dir`.
pub fn issue(dir: &Path, name: &str, sans: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !valid_name(name) {
        bail!("certificate name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (and not \"ca\")");
    }
    let ca_key_pem = std::fs::read_to_string(dir.join(CA_KEY))
        .with_context(|| format!("no CA in {} (run `decnet ca init` first)", dir.display()))?;
    let ca_cert_pem = std::fs::read_to_string(dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("the CA key is unreadable")?;
    // Re-signing the CA's own parameters gives an issuer with the same
    // name and key, which is all a signature chain looks at.
    let ca = CertificateParams::from_ca_cert_pem(&ca_cert_pem)
        .context("the CA certificate is unreadable")?
        .self_signed(&ca_key)?;
    let mut names = vec![name.to_owned()];
    names.extend(sans.iter().filter(|s| !s.is_empty()).cloned());
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_issue_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init(&ca, "decnet test CA").unwrap();
        assert!(init(&ca, "again").unwrap_err().to_string().contains("already exists"));
        let (cert, key) = issue(&ca, "sensor-1", &["127.0.0.1".into()]).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(ca.join(CA_KEY)).unwrap().permissions().mode() & 0o777, 0o600);
        let pem = std::fs::read_to_string(cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(super::super::tls::common_name(&der).as_deref(), Some("sensor-1"));
        assert!(issue(&ca, "../evil", &[]).is_err());
        assert!(issue(&dir.path().join("none"), "x", &[]).unwrap_err().to_string().contains("ca init"));
    }
}
