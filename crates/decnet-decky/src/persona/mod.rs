//! A decky's persona: the one host it pretends to be.
//!
//! Every fact a service or the shell reports (banner versions, kernel,
//! hostname, hardware, users, login history, interfaces) is read from the
//! decky's [`Persona`], so no two answers contradict each other. A persona
//! is derived deterministically from the decky's name and archetype
//! ([`Persona::derive`]): the same decky gets the same persona after a
//! restart, two deckies get different ones. Any field can be overridden
//! from the fleet file ([`Persona::with_overrides`]): the derived persona
//! is turned into JSON, the operator's table is merged over it key by key,
//! and the result must still be a valid persona (unknown keys refused).
//!
//! Derivation draws each fact from its own hash of (name, archetype,
//! fact), not from one seeded RNG stream: adding a fact later never
//! changes the facts existing deckies already showed attackers.

pub mod releases;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2_shim::digest;

pub use releases::{HttpProduct, OsFamily, Release, SshProduct, RELEASES};

/// A local account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// A network interface as `ip addr` would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub address: String,
    pub prefix: u8,
    pub gateway: String,
    pub mtu: u32,
}

/// One mounted disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub device: String,
    pub mount: String,
    pub fs: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

/// One line of login history (`last`, the SSH "Last login").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRecord {
    pub user: String,
    pub tty: String,
    pub from: String,
    /// Unix seconds.
    pub at: i64,
}

/// How the decky's services treat passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicy {
    /// A source's password is accepted on its Nth attempt, N drawn per
    /// source in this range (inclusive); 0..=0 never accepts.
    pub accept_after: (u32, u32),
    /// Exact `user:password` pairs that always succeed (checked first).
    pub credentials: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub hostname: String,
    /// Domain for FQDNs and certificates (`corp.example` style).
    pub domain: String,
    pub archetype: String,
    /// Key into [`releases::RELEASES`].
    pub release: String,
    pub family: OsFamily,
    pub os_id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub kernel_release: String,
    pub kernel_version: String,
    pub machine: String,
    pub cpu_model: String,
    pub cpu_count: u32,
    pub cpu_mhz: f64,
    pub memory_kib: u64,
    pub disks: Vec<Disk>,
    /// Unix seconds of the last boot.
    pub boot_time: i64,
    pub users: Vec<User>,
    pub packages: Vec<(String, String)>,
    pub interfaces: Vec<Interface>,
    pub ssh_product: SshProduct,
    pub ssh_banner: String,
    /// Upstream release whose algorithm lists the SSH server offers.
    pub ssh_release: String,
    pub permit_root_login: String,
    pub http_product: HttpProduct,
    pub http_server: String,
    pub ftp_server: String,
    pub ftp_anonymous: bool,
    pub smtp_server: String,
    /// Whether Postfix offers SASL AUTH (after STARTTLS only). Postfix's
    /// default is off.
    #[serde(default)]
    pub smtp_auth: bool,
    /// Version strings by service (`mysql`, `redis`, `smb`…) that override
    /// what the service's own file derives from the release (see
    /// [`Persona::version_of`]). Empty unless the fleet file sets them.
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, String>,
    pub motd: String,
    pub last_logins: Vec<LoginRecord>,
    pub auth: AuthPolicy,
}

/// Why an override could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("persona override for {decky}: {message}")]
pub struct OverrideError {
    pub decky: String,
    pub message: String,
}

/// Deterministic choices for one decky: each fact hashes its own label.
struct Dice {
    seed: Vec<u8>,
}

impl Dice {
    fn new(name: &str, archetype: &str) -> Dice {
        let mut seed = b"decnet-persona\0".to_vec();
        seed.extend_from_slice(name.as_bytes());
        seed.push(0);
        seed.extend_from_slice(archetype.as_bytes());
        Dice { seed }
    }

    fn roll(&self, fact: &str) -> u64 {
        let mut input = self.seed.clone();
        input.push(0);
        input.extend_from_slice(fact.as_bytes());
        let d = digest(&input);
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    fn below(&self, fact: &str, n: usize) -> usize {
        (self.roll(fact) % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&self, fact: &str, items: &'a [T]) -> &'a T {
        &items[self.below(fact, items.len())]
    }

    fn range(&self, fact: &str, lo: u64, hi: u64) -> u64 {
        lo + self.roll(fact) % (hi - lo + 1)
    }
}

const CPUS: &[(&str, &[u32], f64)] = &[
    ("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", &[2, 4, 8], 2399.998),
    ("Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz", &[2, 4, 8], 2394.374),
    ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", &[4, 8, 16], 2992.968),
    ("AMD EPYC 7302P 16-Core Processor", &[2, 4, 8], 2999.998),
    ("Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", &[2, 4], 2599.998),
];

const EMBEDDED_CPUS: &[(&str, &[u32], f64)] =
    &[("ARMv7 Processor rev 5 (v7l)", &[1, 2], 0.0), ("ARMv7 Processor rev 10 (v7l)", &[1], 0.0)];

/// Memory sizes as `MemTotal` shows them (a little under the nominal GiB).
const MEMORY_KIB: &[u64] = &[2_030_464, 4_026_524, 8_145_092, 16_377_212, 32_869_836];
const EMBEDDED_MEMORY_KIB: &[u64] = &[60_524, 124_872, 251_132];

const HUMAN_USERS: &[(&str, &str)] = &[
    ("jsmith", "John Smith"),
    ("admin", "admin"),
    ("deploy", "Deploy User"),
    ("mchen", "Mei Chen"),
    ("backup", "Backup Operator"),
    ("dev", "Developer"),
    ("akumar", "Anil Kumar"),
    ("ops", "Operations"),
    ("svc_app", "Application Service"),
    ("lgarcia", "Lucia Garcia"),
];

const DOMAINS: &[&str] = &["corp.internal", "prod.lan", "office.local", "int.example.net", "dc1.internal", "infra.lan"];

/// Vendor prefixes (OUIs) a host of each kind plausibly has: hypervisor
/// NICs for servers, camera makers for embedded devices.
const SERVER_OUIS: &[[u8; 3]] = &[[0x00, 0x50, 0x56], [0x52, 0x54, 0x00], [0x00, 0x15, 0x5d], [0xbc, 0x24, 0x11]];
const EMBEDDED_OUIS: &[[u8; 3]] = &[[0x44, 0x19, 0xb6], [0xbc, 0xad, 0x28], [0x00, 0x12, 0x12], [0xe0, 0x50, 0x8b]];
const WINDOWS_OUIS: &[[u8; 3]] = &[[0x00, 0x15, 0x5d], [0x00, 0x50, 0x56], [0xf4, 0x8e, 0x38], [0x3c, 0x52, 0x82]];

impl Persona {
    /// The persona of decky `name` of `archetype`, listening on `address`
    /// (its interface shows that address). `now` (unix seconds) anchors
    /// the boot time and login history: they are stable within a week and
    /// move forward as a real host's would (a reboot every few weeks).
    pub fn derive(name: &str, archetype: Option<&str>, address: Option<IpAddr>, now: i64) -> Persona {
        let arch = archetype.unwrap_or("linux-server");
        let dice = Dice::new(name, arch);
        let release_id: &str = dice.pick::<&str>("release", releases::candidates(archetype));
        let release = releases::release(release_id).expect("candidates name known releases");
        let (kernel_release, kernel_version) = *dice.pick("kernel", release.kernels);
        let embedded = release.family == OsFamily::Embedded;
        let (cpu_model, counts, cpu_mhz) = *dice.pick("cpu", if embedded { EMBEDDED_CPUS } else { CPUS });
        let cpu_count = *dice.pick("cpu_count", counts);
        let memory_kib = *dice.pick("memory", if embedded { EMBEDDED_MEMORY_KIB } else { MEMORY_KIB });
        let domain = dice.pick("domain", DOMAINS).to_string();
        let hostname: String = name.chars().take(63).collect();

        let week = 7 * 86_400;
        let anchor = now - now.rem_euclid(week);
        let boot_time = anchor - dice.range("uptime", 3_600, 40 * 86_400) as i64;

        let users = users_for(&dice, release);
        let disks = disks_for(&dice, release);
        let interfaces = vec![interface_for(&dice, release, address)];
        let last_logins = logins_for(&dice, &users, &interfaces[0], boot_time, now);
        let packages = release_packages(release);
        let motd = motd_for(release, &hostname, kernel_release, kernel_version);
        // Half of the Linux deckies that ship both servers run the other one,
        // so the fleet is not all Apache.
        let (http_product, http_server) = match (release.apache_server, release.nginx_server) {
            (Some(a), Some(n)) if dice.below("http_swap", 2) == 1 => {
                if release.http == HttpProduct::Apache {
                    (HttpProduct::Nginx, n)
                } else {
                    (HttpProduct::Apache, a)
                }
            }
            _ => (release.http, release.http_server),
        };
        let low = dice.range("accept_low", 2, 3) as u32;
        Persona {
            hostname,
            domain,
            archetype: arch.to_string(),
            release: release.id.to_string(),
            family: release.family,
            os_id: release.os_id.to_string(),
            version_id: release.version_id.to_string(),
            pretty_name: release.pretty_name.to_string(),
            kernel_release: kernel_release.to_string(),
            kernel_version: kernel_version.to_string(),
            machine: release.machine.to_string(),
            cpu_model: cpu_model.to_string(),
            cpu_count,
            cpu_mhz,
            memory_kib,
            disks,
            boot_time,
            users,
            packages,
            interfaces,
            ssh_product: release.ssh,
            ssh_banner: release.ssh_banner.to_string(),
            ssh_release: release.ssh_release.to_string(),
            permit_root_login: release.permit_root_login.to_string(),
            http_product,
            http_server: http_server.to_string(),
            ftp_server: if release.vsftpd.is_empty() { String::new() } else { format!("vsftpd {}", release.vsftpd) },
            ftp_anonymous: false,
            smtp_server: if release.postfix.is_empty() {
                String::new()
            } else {
                format!("Postfix {}", release.postfix)
            },
            smtp_auth: false,
            versions: Default::default(),
            motd,
            last_logins,
            auth: AuthPolicy { accept_after: (low, low + dice.range("accept_span", 1, 2) as u32), credentials: vec![] },
        }
    }

    /// The version string `service` announces: the fleet file's
    /// override when set, else `derived` (each protocol file derives its
    /// own from the release, the way the distribution packages it).
    pub fn version_of(&self, service: &str, derived: impl FnOnce(&Persona) -> String) -> String {
        match self.versions.get(service) {
            Some(v) => v.clone(),
            None => derived(self),
        }
    }

    /// This persona with the operator's `overrides` (a JSON object of any
    /// persona fields) merged over it. Unknown keys and wrong types are
    /// refused, naming the decky.
    pub fn with_overrides(self, overrides: &serde_json::Value) -> Result<Persona, OverrideError> {
        let decky = self.hostname.clone();
        let fail = |message: String| OverrideError { decky: decky.clone(), message };
        if overrides.is_null() {
            return Ok(self);
        }
        let mut value = serde_json::to_value(&self).map_err(|e| fail(e.to_string()))?;
        let (serde_json::Value::Object(base), serde_json::Value::Object(over)) = (&mut value, overrides) else {
            return Err(fail("must be a table of persona fields".into()));
        };
        for (key, v) in over {
            if !base.contains_key(key) {
                return Err(fail(format!("unknown persona field {key:?}")));
            }
            // `release` switches every fact that comes from the release, so
            // an override like `release = "centos-7"` is coherent by itself.
            base.insert(key.clone(), v.clone());
        }
        if let Some(id) = over.get("release").and_then(|r| r.as_str()) {
            let release = releases::release(id).ok_or_else(|| fail(format!("unknown release {id:?}")))?;
            for (key, v) in release_facts(release) {
                if !over.contains_key(key) {
                    base.insert(key.to_string(), v);
                }
            }
            // The MOTD names the release and kernel: made again from them
            // (the merged ones, so an overridden kernel shows too).
            if !over.contains_key("motd") {
                let text = |k: &str| base.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                let (host, kernel, kernel_version) = (text("hostname"), text("kernel_release"), text("kernel_version"));
                base.insert("motd".into(), serde_json::json!(motd_for(release, &host, &kernel, &kernel_version)));
            }
        }
        serde_json::from_value(value).map_err(|e| fail(e.to_string()))
    }

    /// The release this persona claims (falls back to the first one if an
    /// override named none we know: `with_overrides` refuses that).
    pub fn release_facts(&self) -> &'static Release {
        releases::release(&self.release).unwrap_or(&RELEASES[0])
    }

    /// Seconds since boot at `now`.
    pub fn uptime(&self, now: i64) -> i64 {
        (now - self.boot_time).max(0)
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The fully qualified host name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.hostname, self.domain)
    }
}

/// The persona fields a release determines.
fn release_facts(r: &Release) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("family", json!(r.family)),
        ("os_id", json!(r.os_id)),
        ("version_id", json!(r.version_id)),
        ("pretty_name", json!(r.pretty_name)),
        ("kernel_release", json!(r.kernels[0].0)),
        ("kernel_version", json!(r.kernels[0].1)),
        ("machine", json!(r.machine)),
        ("ssh_product", json!(r.ssh)),
        ("ssh_banner", json!(r.ssh_banner)),
        ("ssh_release", json!(r.ssh_release)),
        ("permit_root_login", json!(r.permit_root_login)),
        ("http_product", json!(r.http)),
        ("http_server", json!(r.http_server)),
        ("ftp_server", json!(if r.vsftpd.is_empty() { String::new() } else { format!("vsftpd {}", r.vsftpd) })),
        ("smtp_server", json!(if r.postfix.is_empty() { String::new() } else { format!("Postfix {}", r.postfix) })),
        ("packages", json!(release_packages(r))),
    ]
}

/// The packages a release ships (its base set and its SSH server).
fn release_packages(release: &Release) -> Vec<(String, String)> {
    let mut packages: Vec<(String, String)> =
        release.packages.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    if release.ssh == SshProduct::OpenSsh && release.family == OsFamily::Linux {
        packages.push(("openssh-server".into(), release.ssh_release.into()));
    }
    packages
}

fn users_for(dice: &Dice, release: &Release) -> Vec<User> {
    let shell = release.shell.to_string();
    let user = |name: &str, uid: u32, gecos: &str, home: &str, shell: &str| User {
        name: name.into(),
        uid,
        gid: uid,
        gecos: gecos.into(),
        home: home.into(),
        shell: shell.into(),
    };
    let mut users = vec![user("root", 0, "root", "/root", &shell)];
    match release.family {
        OsFamily::Embedded => return users,
        OsFamily::Windows => {
            return vec![
                user(
                    "Administrator",
                    500,
                    "Built-in account for administering the computer/domain",
                    "C:\\Users\\Administrator",
                    "",
                ),
                user("Guest", 501, "Built-in account for guest access", "", ""),
            ]
        }
        OsFamily::Linux => {}
    }
    let nologin = if release.os_id == "centos" { "/sbin/nologin" } else { "/usr/sbin/nologin" };
    for (name, uid, home) in [("daemon", 1, "/usr/sbin"), ("bin", 2, "/bin"), ("sys", 3, "/dev")] {
        users.push(user(name, uid, name, home, nologin));
    }
    users.push(user("www-data", 33, "www-data", "/var/www", nologin));
    users.push(user("sshd", if release.os_id == "centos" { 74 } else { 110 }, "", "/run/sshd", nologin));
    // CentOS 7, Debian and Ubuntu all give the first login account uid 1000.
    let first_uid = 1000;
    let count = 1 + dice.below("human_count", 3);
    let start = dice.below("human_start", HUMAN_USERS.len());
    for i in 0..count {
        let (name, gecos) = HUMAN_USERS[(start + i * 3) % HUMAN_USERS.len()];
        let gecos = format!("{gecos},,,");
        users.push(user(name, first_uid + i as u32, &gecos, &format!("/home/{name}"), &shell));
    }
    users
}

fn disks_for(dice: &Dice, release: &Release) -> Vec<Disk> {
    const GIB: u64 = 1 << 30;
    match release.family {
        OsFamily::Embedded => vec![Disk {
            device: "/dev/mtdblock3".into(),
            mount: "/".into(),
            fs: "squashfs".into(),
            size_bytes: 7 * 1024 * 1024,
            used_bytes: 7 * 1024 * 1024,
        }],
        _ => {
            let size = *dice.pick("disk", &[40u64, 80, 120, 250, 500]) * GIB;
            let used = size / 100 * dice.range("disk_used", 12, 71);
            let (device, fs) =
                if release.os_id == "centos" { ("/dev/mapper/centos-root", "xfs") } else { ("/dev/sda1", "ext4") };
            vec![Disk { device: device.into(), mount: "/".into(), fs: fs.into(), size_bytes: size, used_bytes: used }]
        }
    }
}

fn interface_for(dice: &Dice, release: &Release, address: Option<IpAddr>) -> Interface {
    let ouis = match release.family {
        OsFamily::Embedded => EMBEDDED_OUIS,
        OsFamily::Windows => WINDOWS_OUIS,
        OsFamily::Linux => SERVER_OUIS,
    };
    let oui = dice.pick("oui", ouis);
    let tail = dice.roll("mac").to_le_bytes();
    let mac = format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", oui[0], oui[1], oui[2], tail[0], tail[1], tail[2]);
    let name = match (release.family, release.os_id) {
        (OsFamily::Embedded, _) => "eth0",
        (OsFamily::Windows, _) => "Ethernet0",
        (_, "ubuntu") => *dice.pick("ifname", &["ens18", "ens160", "eth0"]),
        (_, "debian") => *dice.pick("ifname", &["ens18", "enp0s3", "eth0"]),
        _ => *dice.pick("ifname", &["eth0", "ens192"]),
    };
    // The decky's real address when it has one on a LAN; loopback deckies
    // claim a private address derived from their name instead, since no
    // real host has its service address on `lo`.
    let (address, prefix, gateway) = match address {
        Some(IpAddr::V4(a)) if !a.is_loopback() => {
            let o = a.octets();
            (a.to_string(), 24, format!("{}.{}.{}.1", o[0], o[1], o[2]))
        }
        _ => {
            let third = dice.range("subnet", 1, 254);
            let host = dice.range("host", 10, 250);
            (format!("10.20.{third}.{host}"), 24, format!("10.20.{third}.1"))
        }
    };
    Interface { name: name.into(), mac, address, prefix, gateway, mtu: 1500 }
}

fn logins_for(dice: &Dice, users: &[User], iface: &Interface, boot: i64, now: i64) -> Vec<LoginRecord> {
    let mut humans: Vec<&User> = users.iter().filter(|u| u.uid >= 1000 || u.uid == 0).collect();
    if humans.is_empty() {
        humans = users.iter().collect();
    }
    let net = iface.gateway.rsplit_once('.').map(|(n, _)| n.to_string()).unwrap_or_else(|| "10.0.0".into());
    let count = 3 + dice.below("login_count", 6);
    let mut at = now.min(boot + 86_400 * 30);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        at -= dice.range(&format!("login_gap{i}"), 1_800, 3 * 86_400) as i64;
        let user = dice.pick(&format!("login_user{i}"), &humans);
        let from = format!("{net}.{}", dice.range(&format!("login_from{i}"), 20, 240));
        out.push(LoginRecord { user: user.name.clone(), tty: format!("pts/{}", i % 3), from, at });
    }
    out
}

fn motd_for(release: &Release, hostname: &str, kernel: &str, kernel_version: &str) -> String {
    match release.os_id {
        "ubuntu" => format!(
            "Welcome to {} (GNU/Linux {kernel} {})\n\n * Documentation:  https://help.ubuntu.com\n * Management:     https://landscape.canonical.com\n * Support:        https://ubuntu.com/pro\n",
            release.pretty_name, release.machine
        ),
        "debian" => format!(
            "Linux {hostname} {kernel} {kernel_version} {}\n\nThe programs included with the Debian GNU/Linux system are free software;\nthe exact distribution terms for each program are described in the\nindividual files in /usr/share/doc/*/copyright.\n\nDebian GNU/Linux comes with ABSOLUTELY NO WARRANTY, to the extent\npermitted by applicable law.\n",
            release.machine
        ),
        "busybox" => format!("\n\nBusyBox {} built-in shell (ash)\n\n", release.pretty_name.trim_start_matches("BusyBox ")),
        _ => String::new(),
    }
}

/// SHA-256 through ring (already a dependency for SSH).
mod sha2_shim {
    pub fn digest(input: &[u8]) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, input);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

#[cfg(test)]
mod tests;
