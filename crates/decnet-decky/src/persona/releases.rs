//! Facts about the real releases a persona can claim: distribution
//! identity, kernel builds, and the exact version strings of the servers
//! that release ships. Every string here is what the real package prints
//! or sends (a banner, a `Server:` header, `/etc/os-release`); the
//! provenance of each release is noted beside it. Algorithm lists and
//! default pages, which are long, come from generators instead (see
//! `scripts/gen-*` and the files they write next to the protocols).

/// The family a release belongs to, as a network scanner would classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsFamily {
    Linux,
    Embedded,
    Windows,
}

/// Which HTTP server software a release ships by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpProduct {
    Apache,
    Nginx,
    Lighttpd,
    Iis,
}

/// The SSH server software a release ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SshProduct {
    OpenSsh,
    Dropbear,
}

/// One release a persona can claim.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    /// Stable key used in fleet files (`release = "debian-12"`).
    pub id: &'static str,
    pub family: OsFamily,
    /// `/etc/os-release` fields.
    pub os_id: &'static str,
    pub version_id: &'static str,
    pub pretty_name: &'static str,
    pub version_codename: &'static str,
    /// `/etc/issue` (with its `\n \l` escapes, as shipped).
    pub issue: &'static str,
    /// Kernel builds this release really ran: (`uname -r`, `uname -v`).
    pub kernels: &'static [(&'static str, &'static str)],
    pub machine: &'static str,
    pub ssh: SshProduct,
    /// The SSH identification string exactly as the server sends it (without CRLF).
    pub ssh_banner: &'static str,
    /// The OpenSSH (or Dropbear) upstream release whose algorithm lists the server offers.
    pub ssh_release: &'static str,
    /// `PermitRootLogin` as the release's sshd_config ships it.
    pub permit_root_login: &'static str,
    pub http: HttpProduct,
    /// The `Server:` header of the default HTTP server.
    pub http_server: &'static str,
    /// The Apache `Server:` header when an admin installs Apache instead (None: not packaged).
    pub apache_server: Option<&'static str>,
    /// The nginx `Server:` header when an admin installs nginx instead.
    pub nginx_server: Option<&'static str>,
    pub vsftpd: &'static str,
    /// `mail_version` of the release's Postfix.
    pub postfix: &'static str,
    pub shell: &'static str,
    /// Base packages (name, version) beyond the servers above.
    pub packages: &'static [(&'static str, &'static str)],
}

/// Every release a persona can claim. Debian 12 is the machine this is
/// developed on: its versions are what `apt-cache policy` gives there.
/// The others are the last security updates of each release's packages
/// as published in their changelogs.
pub const RELEASES: &[Release] = &[
    Release {
        id: "ubuntu-22.04",
        family: OsFamily::Linux,
        os_id: "ubuntu",
        version_id: "22.04",
        pretty_name: "Ubuntu 22.04.4 LTS",
        version_codename: "jammy",
        issue: "Ubuntu 22.04.4 LTS \\n \\l\n\n",
        kernels: &[
            ("5.15.0-105-generic", "#115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024"),
            ("5.15.0-107-generic", "#117-Ubuntu SMP Fri Apr 26 12:26:49 UTC 2024"),
            ("5.15.0-112-generic", "#122-Ubuntu SMP Thu May 23 07:48:21 UTC 2024"),
        ],
        machine: "x86_64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",
        ssh_release: "8.9p1",
        permit_root_login: "prohibit-password",
        http: HttpProduct::Apache,
        http_server: "Apache/2.4.52 (Ubuntu)",
        apache_server: Some("Apache/2.4.52 (Ubuntu)"),
        nginx_server: Some("nginx/1.18.0 (Ubuntu)"),
        vsftpd: "3.0.5",
        postfix: "3.6.4",
        shell: "/bin/bash",
        packages: &[
            ("bash", "5.1-6ubuntu1.1"),
            ("coreutils", "8.32-4.1ubuntu1.2"),
            ("python3", "3.10.6-1~22.04"),
            ("perl", "5.34.0-3ubuntu1.3"),
            ("curl", "7.81.0-1ubuntu1.16"),
            ("wget", "1.21.2-2ubuntu1.1"),
            ("systemd", "249.11-0ubuntu3.12"),
            ("openssl", "3.0.2-0ubuntu1.15"),
        ],
    },
    Release {
        id: "ubuntu-20.04",
        family: OsFamily::Linux,
        os_id: "ubuntu",
        version_id: "20.04",
        pretty_name: "Ubuntu 20.04.6 LTS",
        version_codename: "focal",
        issue: "Ubuntu 20.04.6 LTS \\n \\l\n\n",
        kernels: &[
            ("5.4.0-182-generic", "#202-Ubuntu SMP Fri Apr 26 12:29:36 UTC 2024"),
            ("5.4.0-186-generic", "#206-Ubuntu SMP Fri Apr 26 12:31:10 UTC 2024"),
        ],
        machine: "x86_64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11",
        ssh_release: "8.2p1",
        permit_root_login: "prohibit-password",
        http: HttpProduct::Nginx,
        http_server: "nginx/1.18.0 (Ubuntu)",
        apache_server: Some("Apache/2.4.41 (Ubuntu)"),
        nginx_server: Some("nginx/1.18.0 (Ubuntu)"),
        vsftpd: "3.0.3",
        postfix: "3.4.13",
        shell: "/bin/bash",
        packages: &[
            ("bash", "5.0-6ubuntu1.2"),
            ("coreutils", "8.30-3ubuntu2"),
            ("python3", "3.8.2-0ubuntu2"),
            ("perl", "5.30.0-9ubuntu0.5"),
            ("curl", "7.68.0-1ubuntu2.22"),
            ("wget", "1.20.3-1ubuntu2.1"),
            ("systemd", "245.4-4ubuntu3.23"),
            ("openssl", "1.1.1f-1ubuntu2.22"),
        ],
    },
    Release {
        id: "debian-11",
        family: OsFamily::Linux,
        os_id: "debian",
        version_id: "11",
        pretty_name: "Debian GNU/Linux 11 (bullseye)",
        version_codename: "bullseye",
        issue: "Debian GNU/Linux 11 \\n \\l\n\n",
        kernels: &[
            ("5.10.0-28-amd64", "#1 SMP Debian 5.10.209-2 (2024-01-31)"),
            ("5.10.0-29-amd64", "#1 SMP Debian 5.10.216-1 (2024-05-03)"),
        ],
        machine: "x86_64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u7",
        ssh_release: "8.4p1",
        permit_root_login: "prohibit-password",
        http: HttpProduct::Apache,
        http_server: "Apache/2.4.62 (Debian)",
        apache_server: Some("Apache/2.4.62 (Debian)"),
        nginx_server: Some("nginx/1.18.0"),
        vsftpd: "3.0.3",
        postfix: "3.5.25",
        shell: "/bin/bash",
        packages: &[
            ("bash", "5.1-2+deb11u1"),
            ("coreutils", "8.32-4+b1"),
            ("python3", "3.9.2-3"),
            ("perl", "5.32.1-4+deb11u3"),
            ("curl", "7.74.0-1.3+deb11u12"),
            ("wget", "1.21-1+deb11u1"),
            ("systemd", "247.3-7+deb11u5"),
            ("openssl", "1.1.1w-0+deb11u1"),
        ],
    },
    Release {
        id: "debian-12",
        family: OsFamily::Linux,
        os_id: "debian",
        version_id: "12",
        pretty_name: "Debian GNU/Linux 12 (bookworm)",
        version_codename: "bookworm",
        issue: "Debian GNU/Linux 12 \\n \\l\n\n",
        kernels: &[
            ("6.1.0-21-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 (2024-05-03)"),
            ("6.1.0-23-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.99-1 (2024-07-15)"),
        ],
        machine: "x86_64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10",
        ssh_release: "9.2p1",
        permit_root_login: "prohibit-password",
        http: HttpProduct::Nginx,
        http_server: "nginx/1.22.1",
        apache_server: Some("Apache/2.4.62 (Debian)"),
        nginx_server: Some("nginx/1.22.1"),
        vsftpd: "3.0.3",
        postfix: "3.7.11",
        shell: "/bin/bash",
        packages: &[
            ("bash", "5.2.15-2+b7"),
            ("coreutils", "9.1-1"),
            ("python3", "3.11.2-1+b1"),
            ("perl", "5.36.0-7+deb12u1"),
            ("curl", "7.88.1-10+deb12u7"),
            ("wget", "1.21.3-1+b2"),
            ("systemd", "252.26-1~deb12u2"),
            ("openssl", "3.0.14-1~deb12u2"),
        ],
    },
    Release {
        id: "centos-7",
        family: OsFamily::Linux,
        os_id: "centos",
        version_id: "7",
        pretty_name: "CentOS Linux 7 (Core)",
        version_codename: "",
        issue: "\\S\nKernel \\r on an \\m\n\n",
        kernels: &[
            ("3.10.0-1160.118.1.el7.x86_64", "#1 SMP Wed Apr 24 16:01:50 UTC 2024"),
            ("3.10.0-1160.119.1.el7.x86_64", "#1 SMP Tue Jun 4 14:43:51 UTC 2024"),
        ],
        machine: "x86_64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_7.4",
        ssh_release: "7.4p1",
        permit_root_login: "yes",
        http: HttpProduct::Apache,
        http_server: "Apache/2.4.6 (CentOS)",
        apache_server: Some("Apache/2.4.6 (CentOS)"),
        nginx_server: Some("nginx/1.20.1"),
        vsftpd: "3.0.2",
        postfix: "2.10.1",
        shell: "/bin/bash",
        packages: &[
            ("bash", "4.2.46-35.el7_9"),
            ("coreutils", "8.22-24.el7_9.2"),
            ("python", "2.7.5-94.el7_9"),
            ("perl", "5.16.3-299.el7_9"),
            ("curl", "7.29.0-59.el7_9.2"),
            ("wget", "1.14-18.el7_6.1"),
            ("systemd", "219-78.el7_9.9"),
            ("openssl", "1.0.2k-26.el7_9"),
        ],
    },
    Release {
        id: "busybox-camera",
        family: OsFamily::Embedded,
        os_id: "busybox",
        version_id: "1.31.1",
        pretty_name: "BusyBox v1.31.1",
        version_codename: "",
        issue: "",
        kernels: &[
            // Firmware builds after Dropbear 2022.83's release (Nov 2022).
            ("3.10.14", "#1 PREEMPT Thu Mar 16 17:14:06 CST 2023"),
            ("4.9.37", "#2 SMP PREEMPT Fri Jul 7 10:11:48 CST 2023"),
        ],
        machine: "armv7l",
        ssh: SshProduct::Dropbear,
        // The release whose lists scripts/gen-ssh-algorithms measured (Debian
        // 12's dropbear-bin); no 2019.78 package is left to measure.
        ssh_banner: "SSH-2.0-dropbear_2022.83",
        ssh_release: "2022.83",
        permit_root_login: "yes",
        http: HttpProduct::Lighttpd,
        http_server: "lighttpd/1.4.55",
        apache_server: None,
        nginx_server: None,
        vsftpd: "",
        postfix: "",
        shell: "/bin/sh",
        packages: &[("busybox", "1.31.1"), ("dropbear", "2022.83"), ("lighttpd", "1.4.55")],
    },
    Release {
        id: "windows-server-2019",
        family: OsFamily::Windows,
        os_id: "windows",
        version_id: "10.0.17763",
        pretty_name: "Windows Server 2019 Standard",
        version_codename: "",
        issue: "",
        kernels: &[("10.0.17763", "Build 17763")],
        machine: "AMD64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_for_Windows_7.7",
        ssh_release: "7.7p1",
        permit_root_login: "no",
        http: HttpProduct::Iis,
        http_server: "Microsoft-IIS/10.0",
        apache_server: None,
        nginx_server: None,
        vsftpd: "",
        postfix: "",
        shell: "cmd.exe",
        packages: &[],
    },
    Release {
        id: "windows-10",
        family: OsFamily::Windows,
        os_id: "windows",
        version_id: "10.0.19045",
        pretty_name: "Windows 10 Pro",
        version_codename: "",
        issue: "",
        kernels: &[("10.0.19045", "Build 19045")],
        machine: "AMD64",
        ssh: SshProduct::OpenSsh,
        ssh_banner: "SSH-2.0-OpenSSH_for_Windows_8.1",
        ssh_release: "8.1p1",
        permit_root_login: "no",
        http: HttpProduct::Iis,
        http_server: "Microsoft-IIS/10.0",
        apache_server: None,
        nginx_server: None,
        vsftpd: "",
        postfix: "",
        shell: "cmd.exe",
        packages: &[],
    },
];

/// The release called `id`.
pub fn release(id: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.id == id)
}

/// The releases an archetype's deckies are drawn from, most likely first.
/// Different archetypes lead with different releases so two deckies of
/// different kinds rarely claim the same system.
pub fn candidates(archetype: Option<&str>) -> &'static [&'static str] {
    match archetype.unwrap_or("") {
        "iot-device" => &["busybox-camera"],
        "windows-workstation" => &["windows-10"],
        "windows-server" => &["windows-server-2019"],
        "database-host" => &["debian-11", "centos-7", "ubuntu-20.04"],
        "mail-server" => &["debian-12", "centos-7", "debian-11"],
        "container-host" => &["ubuntu-22.04", "debian-12"],
        _ => &["ubuntu-22.04", "ubuntu-20.04", "debian-12"],
    }
}
