//! Real probe targets for the fingerprint tests, all on loopback: a
//! rustls TLS server with an rcgen certificate (whose certificate can be
//! swapped, to make a fingerprint rotate), an OpenSSH sshd on a free high
//! port with a throw-away host key, and helpers for child processes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const BIN: &str = env!("CARGO_BIN_EXE_decnet");

/// A self-signed certificate for `cn` with SANs; returns (DER, key DER).
pub fn certificate(cn: &str, sans: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn server_config(cert: &(Vec<u8>, Vec<u8>)) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.0.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.1.clone())),
        )
        .unwrap();
    Arc::new(config)
}

/// A TLS server on loopback that answers every handshake and hangs up.
pub struct TlsServer {
    pub addrs: Vec<SocketAddr>,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TlsServer {
    /// Listen on `ips` (same port on each) with `cert`.
    pub async fn start(ips: &[&str], cert: &(Vec<u8>, Vec<u8>)) -> TlsServer {
        let config = Arc::new(Mutex::new(server_config(cert)));
        let first = tokio::net::TcpListener::bind((ips[0], 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            listeners.push(tokio::net::TcpListener::bind((*ip, port)).await.unwrap());
        }
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                let config = config.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else { return };
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.lock().unwrap().clone());
                        tokio::spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            if let Ok(Ok(mut tls)) =
                                tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await
                            {
                                let _ = tls.shutdown().await;
                            }
                        });
                    }
                })
            })
            .collect();
        TlsServer { addrs, config, tasks }
    }

    pub fn port(&self) -> u16 {
        self.addrs[0].port()
    }

    /// Serve `cert` from now on.
    pub fn swap_certificate(&self, cert: &(Vec<u8>, Vec<u8>)) {
        *self.config.lock().unwrap() = server_config(cert);
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A child stopped with SIGTERM (then killed) when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// OpenSSH's sshd on 127.0.0.1:`port` with a fresh ed25519 host key in `dir`.
pub fn start_sshd(dir: &Path) -> (Daemon, u16) {
    start_sshd_on(dir, "127.0.0.1")
}

/// OpenSSH's sshd on `ip`:`port` (a loopback address).
pub fn start_sshd_on(dir: &Path, ip: &str) -> (Daemon, u16) {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(sshd.exists(), "/usr/sbin/sshd missing: install openssh-server (scripts/test.sh does)");
    let key = dir.join("host_ed25519");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(st.success(), "ssh-keygen failed");
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress {ip}\nHostKey {}\nPidFile {}\nUsePAM no\nStrictModes no\n",
            key.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).stderr(log).spawn().unwrap();
    let daemon = Daemon(child);
    wait_for("sshd to listen", Duration::from_secs(10), || std::net::TcpStream::connect((ip, port)).is_ok());
    (daemon, port)
}

pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

/// Can this process open a raw socket (CAP_NET_RAW)?
pub fn have_net_raw() -> bool {
    // SAFETY: plain socket(2)/close(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
        true
    } else {
        false
    }
}
