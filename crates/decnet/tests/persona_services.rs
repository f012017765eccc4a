//! One decky, one host: what its SSH banner, its shell, its web server,
//! its TLS certificate and its mail banner say agree with each other and
//! with the real release its persona names (issue 21). Each decky runs
//! ssh, http, https and smtp on a loopback address of its own; the clients
//! are the real ones (raw TCP for banners, OpenSSH with sshpass, curl,
//! openssl s_client).
//!
//! The release facts below (which OpenSSH, Apache, nginx, Postfix and
//! kernel each release ships) are written from the distributions'
//! packages, not read from the persona code, so a persona that drifts
//! from its release fails here.

use std::process::Stdio;
use std::time::Duration;

use decnet::decky::Persona;
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use regex::Regex;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const OFFSET: u16 = 10_000;
const PASSWORD: &str = "same-facts";

/// What a real host of each release shows, as patterns.
struct ReleaseFacts {
    release: &'static str,
    /// `/etc/os-release` ID and VERSION_ID.
    os_id: &'static str,
    version_id: &'static str,
    /// The SSH identification line of the release's openssh-server.
    ssh_banner: &'static str,
    /// `Server:` of the release's apache2/httpd and nginx packages, each
    /// with a line of its default page (None: not checked, see centos-7).
    apache: (&'static str, Option<&'static str>),
    nginx: (&'static str, Option<&'static str>),
    /// `uname -r` of the release's kernel packages.
    kernel: &'static str,
    /// The distribution's mark in Postfix's banner.
    smtp_banner: &'static str,
}

const RELEASES: &[ReleaseFacts] = &[
    ReleaseFacts {
        release: "ubuntu-22.04",
        os_id: "ubuntu",
        version_id: "22.04",
        ssh_banner: r"^SSH-2\.0-OpenSSH_8\.9p1 Ubuntu-3ubuntu0\.\d+$",
        apache: (r"^Apache/2\.4\.52 \(Ubuntu\)$", Some("<title>Apache2 Ubuntu Default Page: It works</title>")),
        nginx: (r"^nginx/1\.18\.0 \(Ubuntu\)$", Some("<title>Welcome to nginx!</title>")),
        kernel: r"^5\.15\.0-\d+-generic$",
        smtp_banner: r"^220 (\S+) ESMTP Postfix \(Ubuntu\)\r\n$",
    },
    ReleaseFacts {
        release: "debian-12",
        os_id: "debian",
        version_id: "12",
        ssh_banner: r"^SSH-2\.0-OpenSSH_9\.2p1 Debian-2\+deb12u\d+$",
        apache: (r"^Apache/2\.4\.6\d \(Debian\)$", Some("<title>Apache2 Debian Default Page: It works</title>")),
        nginx: (r"^nginx/1\.22\.1$", Some("<title>Welcome to nginx!</title>")),
        kernel: r"^6\.1\.0-\d+-amd64$",
        smtp_banner: r"^220 (\S+) ESMTP Postfix \(Debian/GNU\)\r\n$",
    },
    ReleaseFacts {
        release: "centos-7",
        os_id: "centos",
        version_id: "7",
        ssh_banner: r"^SSH-2\.0-OpenSSH_7\.4$",
        // CentOS 7's httpd answers `/` with 403 and the CentOS test page
        // (welcome.conf), EPEL's nginx with Red Hat's test page; the
        // deckies serve Debian's and upstream's pages instead, for want of
        // pages generated from the real RPMs. Known gap: only the Server
        // header is checked for this release.
        apache: (r"^Apache/2\.4\.6 \(CentOS\)$", None),
        nginx: (r"^nginx/1\.20\.1$", None),
        kernel: r"^3\.10\.0-\d+(\.\d+)*\.el7\.x86_64$",
        smtp_banner: r"^220 (\S+) ESMTP Postfix\r\n$",
    },
];

async fn discard_collector() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// The first line a server sends on `port`.
async fn banner(ip: &str, port: u16) -> String {
    let mut s = TcpStream::connect((ip, port + OFFSET)).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(120), s.read(&mut b)).await.expect("a banner").unwrap();
        assert!(n > 0, "closed before its banner: {got:?}");
        got.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn tool(cmd: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("timeout")
        .arg("30")
        .arg(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn line_after<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {text}")).trim_matches('"')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decky_gives_the_same_facts_through_ssh_http_tls_and_smtp() {
    let services: Vec<String> = ["ssh", "http", "https", "smtp"].iter().map(|s| s.to_string()).collect();
    let mut o = NativeOptions::new(discard_collector().await, b"persona services seed".to_vec());
    o.port_offset = OFFSET;
    let mut deckies = Vec::new();
    for (i, facts) in RELEASES.iter().enumerate() {
        // Two deckies per release, so both of its web servers are likely
        // met; the persona decides which one each runs.
        for j in 0..2 {
            let name = format!("facts-{}-{j}", facts.os_id);
            let ip = format!("127.1.142.{}", 1 + i * 2 + j);
            let overrides = serde_json::json!({
                "release": facts.release,
                "auth": { "accept_after": [0, 0], "credentials": [["root", PASSWORD]] },
            });
            o.personas.insert(name.clone(), overrides.clone());
            o.addresses.insert(name.clone(), ip.parse().unwrap());
            let persona = Persona::derive(&name, None, None, 0).with_overrides(&overrides).unwrap();
            deckies.push((facts, name, ip, persona));
        }
    }
    let driver = NativeDriver::live(o, None);
    for (_, name, _, _) in &deckies {
        driver.apply(&Change { project: "fleet", decky: name, services: &services, fleet: &[] }).await.unwrap();
    }

    for (facts, name, ip, persona) in &deckies {
        let what = format!("{name} ({})", facts.release);
        // SSH: the banner on a raw connection.
        let ssh_banner = banner(ip, 22).await;
        let ssh_banner = ssh_banner.trim_end();
        assert!(Regex::new(facts.ssh_banner).unwrap().is_match(ssh_banner), "{what}: banner {ssh_banner:?}");
        assert_eq!(ssh_banner, persona.ssh_banner);

        // The shell over `ssh host cmd`.
        let shell = tool(
            "sshpass",
            &[
                "-p",
                PASSWORD,
                "ssh",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "PubkeyAuthentication=no",
                "-p",
                &(22 + OFFSET).to_string(),
                &format!("root@{ip}"),
                "cat /etc/os-release; uname -a; hostname; hostname -f",
            ],
        )
        .await;
        assert_eq!(line_after(&shell, "ID="), facts.os_id, "{what}: {shell}");
        assert_eq!(line_after(&shell, "VERSION_ID="), facts.version_id, "{what}: {shell}");
        assert_eq!(line_after(&shell, "PRETTY_NAME="), persona.pretty_name);
        let lines: Vec<&str> = shell.lines().collect();
        let (uname, hostname, fqdn) = (lines[lines.len() - 3], lines[lines.len() - 2], lines[lines.len() - 1]);
        let uname: Vec<&str> = uname.split_whitespace().collect();
        assert_eq!(uname[0], "Linux");
        assert_eq!(uname[1], hostname, "{what}: uname -n = hostname");
        assert!(Regex::new(facts.kernel).unwrap().is_match(uname[2]), "{what}: kernel {}", uname[2]);
        assert_eq!(hostname, persona.hostname);
        assert_eq!(fqdn, format!("{}.{}", persona.hostname, persona.domain));
        // The SSH package is the distribution's own: Ubuntu's and Debian's
        // banners carry their name, and os-release agrees.
        match facts.os_id {
            "ubuntu" => assert!(ssh_banner.contains(" Ubuntu-")),
            "debian" => assert!(ssh_banner.contains(" Debian-")),
            _ => assert!(!ssh_banner.contains(' '), "Red Hat's sshd adds no comment"),
        }

        // HTTP: the Server header and the default page of the same release.
        let http = tool("curl", &["-s", "-i", &format!("http://{ip}:{}/", 80 + OFFSET)]).await;
        let server = http
            .lines()
            .find_map(|l| l.strip_prefix("Server: "))
            .unwrap_or_else(|| panic!("{what}: no Server in {http}"))
            .trim_end();
        assert_eq!(server, persona.http_server, "{what}");
        let (pattern, page) = if server.starts_with("Apache") { facts.apache } else { facts.nginx };
        assert!(Regex::new(pattern).unwrap().is_match(server), "{what}: Server {server:?} is not the release's");
        if let Some(page) = page {
            assert!(http.contains(page), "{what}: the default page of {server}: {http}");
        }
        assert!(!http.contains(name.as_str()), "{what}: nothing over http names the decky");

        // TLS: the certificate names the host the shell says it is.
        let cert = tool(
            "sh",
            &[
                "-c",
                &format!(
                    "openssl s_client -connect {ip}:{} </dev/null 2>/dev/null | openssl x509 -noout -subject -nameopt sep_multiline,utf8",
                    443 + OFFSET
                ),
            ],
        )
        .await;
        let cn = cert.lines().find_map(|l| l.trim().strip_prefix("CN=")).unwrap_or_else(|| panic!("{what}: {cert}"));
        assert!(cn == fqdn || cn == hostname, "{what}: certificate CN {cn:?}, host {hostname} / {fqdn}");

        // SMTP: Postfix's banner names the FQDN and the distribution.
        let smtp = banner(ip, 25).await;
        let m = Regex::new(facts.smtp_banner).unwrap().captures(&smtp).unwrap_or_else(|| panic!("{what}: {smtp:?}"));
        assert_eq!(&m[1], fqdn, "{what}: Postfix's myhostname is the host's FQDN");
    }
    driver.shutdown().await;
}
