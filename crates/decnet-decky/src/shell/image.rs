//! The persona's filesystem image: what the host has on disk before the
//! attacker arrives. Files attackers read (`/etc/*`, `/proc/*`,
//! `/sys/class/net/*`, home directories) hold contents made from the
//! persona, so `cat /proc/cpuinfo`, `lscpu` and `nproc` agree; program
//! files exist for every command the shell knows, so `which` and `ls
//! /usr/bin` agree with what runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use super::fs::{Content, Node};
use crate::persona::{OsFamily, Persona};

struct Builder {
    nodes: BTreeMap<String, Node>,
    /// The ELF header every program file starts with (the persona's machine).
    elf: Vec<u8>,
    /// When the system was installed: files of the image are this old.
    installed: i64,
}

impl Builder {
    fn dir(&mut self, path: &str, mode: u32, uid: u32) {
        self.nodes.insert(path.to_string(), Node::dir(mode, uid, self.installed));
    }
    fn file(&mut self, path: &str, text: impl Into<Vec<u8>>, mode: u32, uid: u32) {
        self.nodes.insert(path.to_string(), Node::file(text, mode, uid, self.installed));
    }
    fn dynamic(&mut self, path: &str, key: &'static str) {
        let mut n = Node::file(Vec::new(), 0o444, 0, self.installed);
        n.content = Content::Dynamic(key);
        self.nodes.insert(path.to_string(), n);
    }
    fn device(&mut self, path: &str, key: &'static str) {
        let mut n = Node::file(Vec::new(), 0o666, 0, self.installed);
        n.content = Content::Device(key);
        self.nodes.insert(path.to_string(), n);
    }
    fn link(&mut self, path: &str, target: &str) {
        let mut n = Node::file(Vec::new(), 0o777, 0, self.installed);
        n.content = Content::Symlink(target.to_string());
        self.nodes.insert(path.to_string(), n);
    }
    fn binary(&mut self, path: &str, size: u64) {
        let mut n = Node::file(self.elf.clone(), 0o755, 0, self.installed);
        n.size_hint = size;
        self.nodes.insert(path.to_string(), n);
    }
}

/// The ELF header of the persona's programs: what `cat /bin/echo`, `dd
/// if=/bin/busybox bs=52 count=1` and `file` read. Mirai-style loaders
/// take the architecture of the binary they push from `e_machine` here,
/// so a camera must say 32-bit ARM (EABI5, hard float) and a server
/// x86-64 (a PIE, as Debian, Ubuntu and CentOS build them).
pub fn elf_header(machine: &str) -> Vec<u8> {
    let mut h = b"\x7fELF".to_vec();
    if machine.starts_with("arm") {
        h.extend([1, 1, 1, 0]); // ELFCLASS32, little endian, version 1, SYSV
        h.extend([0; 8]);
        h.extend(2u16.to_le_bytes()); // ET_EXEC
        h.extend(0x28u16.to_le_bytes()); // EM_ARM
        h.extend(1u32.to_le_bytes());
        h.extend(0x0001_0c8cu32.to_le_bytes()); // e_entry
        h.extend(52u32.to_le_bytes()); // e_phoff
        h.extend(0x000f_6a2cu32.to_le_bytes()); // e_shoff
        h.extend(0x0500_0400u32.to_le_bytes()); // EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_HARD
        for v in [52u16, 32, 9, 40, 27, 26] {
            h.extend(v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        }
    } else {
        h.extend([2, 1, 1, 0]); // ELFCLASS64, little endian, version 1, SYSV
        h.extend([0; 8]);
        h.extend(3u16.to_le_bytes()); // ET_DYN (PIE)
        h.extend(0x3eu16.to_le_bytes()); // EM_X86_64
        h.extend(1u32.to_le_bytes());
        h.extend(0x6ab0u64.to_le_bytes()); // e_entry
        h.extend(64u64.to_le_bytes()); // e_phoff
        h.extend(0x2_2e28u64.to_le_bytes()); // e_shoff
        h.extend(0u32.to_le_bytes());
        for v in [64u16, 56, 13, 64, 30, 29] {
            h.extend(v.to_le_bytes());
        }
    }
    h
}

/// A built image: every path of the host before the attacker arrives.
pub type Image = Arc<BTreeMap<String, Node>>;

/// Images built so far, one per live persona. A decky's sessions all hold
/// the same `Arc<Persona>`, so they share one image instead of building
/// ~300 entries per login (the largest part of a session's start); an
/// entry goes when its persona does.
static SHARED: Mutex<Vec<(Weak<Persona>, Image)>> = Mutex::new(Vec::new());

/// The image of `persona` with a program file for each of `programs`,
/// built on first use and shared while the persona lives. `programs` is a
/// function of the persona, so the persona alone keys the cache.
pub fn shared(persona: &Arc<Persona>, programs: impl FnOnce() -> Vec<&'static str>) -> Image {
    let mut cache = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.retain(|(owner, _)| owner.strong_count() > 0);
    if let Some((_, image)) = cache.iter().find(|(owner, _)| owner.upgrade().is_some_and(|p| Arc::ptr_eq(&p, persona)))
    {
        return image.clone();
    }
    let image = Arc::new(build(persona, &programs()));
    cache.push((Arc::downgrade(persona), image.clone()));
    image
}

/// The image of `persona`, with a program file for each of `programs`.
pub fn build(persona: &Persona, programs: &[&str]) -> BTreeMap<String, Node> {
    let installed = persona.boot_time - 86_400 * 200;
    let mut b = Builder { nodes: BTreeMap::new(), elf: elf_header(&persona.machine), installed };
    let embedded = persona.family == OsFamily::Embedded;
    for (d, mode) in [
        ("/", 0o755),
        ("/bin", 0o755),
        ("/boot", 0o755),
        ("/dev", 0o755),
        ("/etc", 0o755),
        ("/home", 0o755),
        ("/lib", 0o755),
        ("/mnt", 0o755),
        ("/opt", 0o755),
        ("/proc", 0o555),
        ("/root", 0o700),
        ("/run", 0o755),
        ("/sbin", 0o755),
        ("/srv", 0o755),
        ("/sys", 0o555),
        ("/tmp", 0o1777),
        ("/usr", 0o755),
        ("/usr/bin", 0o755),
        ("/usr/sbin", 0o755),
        ("/usr/lib", 0o755),
        ("/usr/local", 0o755),
        ("/usr/local/bin", 0o755),
        ("/usr/share", 0o755),
        ("/var", 0o755),
        ("/var/log", 0o755),
        ("/var/tmp", 0o1777),
        ("/var/www", 0o755),
        ("/var/spool", 0o755),
        ("/var/spool/cron", 0o755),
        ("/etc/ssh", 0o755),
        ("/etc/cron.d", 0o755),
        ("/sys/class", 0o755),
        ("/sys/class/net", 0o755),
        ("/proc/self", 0o555),
        ("/proc/net", 0o555),
        ("/dev/shm", 0o1777),
    ] {
        b.dir(d, mode, 0);
    }
    if !embedded && persona.os_id != "centos" {
        // Merged /usr: /bin and /sbin are links on Debian 12 / Ubuntu 20.04+.
        b.link("/bin", "usr/bin");
        b.link("/sbin", "usr/sbin");
        b.link("/lib", "usr/lib");
    }
    let bin_dir = if embedded { "/bin" } else { "/usr/bin" };
    for p in programs {
        if embedded {
            b.link(&format!("/bin/{p}"), "busybox");
        } else {
            b.binary(&format!("{bin_dir}/{p}"), 35_000 + (p.len() as u64 * 7_919) % 120_000);
        }
    }
    if embedded {
        b.binary("/bin/busybox", 1_016_472);
    }

    // /etc
    b.file("/etc/hostname", format!("{}\n", persona.hostname), 0o644, 0);
    b.file(
        "/etc/hosts",
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{fqdn}\t{host}\n\n# The following lines are desirable for IPv6 capable hosts\n::1     ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n",
            fqdn = persona.fqdn(),
            host = persona.hostname
        ),
        0o644,
        0,
    );
    b.file("/etc/os-release", os_release(persona), 0o644, 0);
    b.file("/etc/issue", persona.release_facts().issue, 0o644, 0);
    b.file("/etc/motd", persona.motd.clone(), 0o644, 0);
    b.file("/etc/passwd", passwd(persona), 0o644, 0);
    b.file("/etc/group", group(persona), 0o644, 0);
    b.file("/etc/shadow", shadow(persona), 0o640, 0);
    b.file("/etc/shells", "# /etc/shells: valid login shells\n/bin/sh\n/bin/bash\n/usr/bin/bash\n", 0o644, 0);
    b.file(
        "/etc/resolv.conf",
        format!("nameserver {}\nsearch {}\n", persona.interfaces[0].gateway, persona.domain),
        0o644,
        0,
    );
    b.file(
        "/etc/fstab",
        format!(
            "# /etc/fstab: static file system information.\n{} / {} defaults 0 1\n",
            persona.disks[0].device, persona.disks[0].fs
        ),
        0o644,
        0,
    );
    b.file(
        "/etc/crontab",
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n25 6\t* * *\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )\n",
        0o644,
        0,
    );
    b.file(
        "/etc/ssh/sshd_config",
        format!(
            "Include /etc/ssh/sshd_config.d/*.conf\n\n#PermitRootLogin {}\nKbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n",
            persona.permit_root_login
        ),
        0o644,
        0,
    );
    let iface = &persona.interfaces[0];
    b.dir(&format!("/sys/class/net/{}", iface.name), 0o755, 0);
    b.file(&format!("/sys/class/net/{}/address", iface.name), format!("{}\n", iface.mac), 0o444, 0);
    b.file(&format!("/sys/class/net/{}/mtu", iface.name), format!("{}\n", iface.mtu), 0o444, 0);
    b.file(&format!("/sys/class/net/{}/operstate", iface.name), "up\n", 0o444, 0);
    b.dir("/sys/class/net/lo", 0o755, 0);
    b.file("/sys/class/net/lo/address", "00:00:00:00:00:00\n", 0o444, 0);

    // /proc: what is fixed is rendered now, what moves when read.
    b.file("/proc/cpuinfo", cpuinfo(persona), 0o444, 0);
    b.file("/proc/meminfo", meminfo(persona), 0o444, 0);
    b.file("/proc/version", proc_version(persona), 0o444, 0);
    b.dynamic("/proc/uptime", "uptime");
    b.dynamic("/proc/loadavg", "loadavg");
    b.file("/proc/mounts", mounts(persona), 0o444, 0);
    b.file("/proc/net/dev", net_dev(persona), 0o444, 0);
    b.file("/proc/sys/kernel/hostname", format!("{}\n", persona.hostname), 0o644, 0);
    b.device("/dev/null", "null");
    b.device("/dev/zero", "zero");
    b.device("/dev/urandom", "urandom");
    b.device("/dev/random", "urandom");
    b.device("/dev/tty", "null");

    for u in &persona.users {
        if u.uid >= 1000 {
            b.nodes.insert(u.home.clone(), Node { uid: u.uid, gid: u.gid, ..Node::dir(0o750, u.uid, installed) });
            let mut rc = Node::file(BASHRC, 0o644, u.uid, installed);
            rc.gid = u.gid;
            b.nodes.insert(format!("{}/.bashrc", u.home), rc.clone());
            rc.content = Content::File(PROFILE.as_bytes().to_vec());
            b.nodes.insert(format!("{}/.profile", u.home), rc);
        }
    }
    b.file("/root/.bashrc", BASHRC, 0o644, 0);
    b.file("/root/.profile", PROFILE, 0o644, 0);
    b.file("/var/log/syslog", "", 0o640, 0);
    b.file("/var/log/auth.log", "", 0o640, 0);
    b.nodes
}

const BASHRC: &str = "# ~/.bashrc: executed by bash(1) for non-login shells.\n\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n\nHISTCONTROL=ignoreboth\nshopt -s histappend\nHISTSIZE=1000\nHISTFILESIZE=2000\nalias ls='ls --color=auto'\nalias ll='ls -alF'\nalias la='ls -A'\nalias l='ls -CF'\n";
const PROFILE: &str = "# ~/.profile: executed by the command interpreter for login shells.\n\nif [ -n \"$BASH_VERSION\" ]; then\n    if [ -f \"$HOME/.bashrc\" ]; then\n\t. \"$HOME/.bashrc\"\n    fi\nfi\n\nif [ -d \"$HOME/bin\" ] ; then\n    PATH=\"$HOME/bin:$PATH\"\nfi\n";

/// `/proc/version`: the kernel with the build host and toolchain its
/// distribution really builds it with (dmesg's first line says the same).
pub fn proc_version(p: &Persona) -> String {
    let built_by = match p.release.as_str() {
        "ubuntu-22.04" => format!(
            "buildd@lcy02-amd64-{:03}) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38",
            p.boot_time % 120
        ),
        "ubuntu-20.04" => format!(
            "buildd@lcy02-amd64-{:03}) (gcc (Ubuntu 9.4.0-1ubuntu1~20.04.2) 9.4.0, GNU ld (GNU Binutils for Ubuntu) 2.34",
            p.boot_time % 120
        ),
        "debian-12" => {
            "debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40"
                .to_string()
        }
        "debian-11" => "debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2".to_string(),
        "centos-7" => "mockbuild@kbuilder.bsys.centos.org) (gcc version 4.8.5 20150623 (Red Hat 4.8.5-44) (GCC) ".to_string(),
        _ => "root@buildhost) (gcc version 6.4.0 (Buildroot 2018.02.8) ".to_string(),
    };
    format!("Linux version {} ({built_by}) {}\n", p.kernel_release, p.kernel_version)
}

fn os_release(p: &Persona) -> String {
    match p.os_id.as_str() {
        "ubuntu" => format!(
            "PRETTY_NAME=\"{}\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"{}\"\nVERSION=\"{} ({})\"\nVERSION_CODENAME={}\nID=ubuntu\nID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\nSUPPORT_URL=\"https://help.ubuntu.com/\"\nBUG_REPORT_URL=\"https://bugs.launchpad.net/ubuntu/\"\nPRIVACY_POLICY_URL=\"https://www.ubuntu.com/legal/terms-and-policies/privacy-policy\"\nUBUNTU_CODENAME={}\n",
            p.pretty_name,
            p.version_id,
            p.pretty_name.trim_start_matches("Ubuntu "),
            codename_title(p),
            p.release_facts().version_codename,
            p.release_facts().version_codename
        ),
        "debian" => format!(
            "PRETTY_NAME=\"{}\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"{}\"\nVERSION=\"{} ({})\"\nVERSION_CODENAME={}\nID=debian\nHOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n",
            p.pretty_name,
            p.version_id,
            p.version_id,
            p.release_facts().version_codename,
            p.release_facts().version_codename
        ),
        "centos" => "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\nANSI_COLOR=\"0;31\"\nCPE_NAME=\"cpe:/o:centos:centos:7\"\nHOME_URL=\"https://www.centos.org/\"\nBUG_REPORT_URL=\"https://bugs.centos.org/\"\n".to_string(),
        _ => format!("NAME=\"{}\"\nID={}\nVERSION_ID={}\nPRETTY_NAME=\"{}\"\n", p.pretty_name, p.os_id, p.version_id, p.pretty_name),
    }
}

fn codename_title(p: &Persona) -> &'static str {
    match p.release_facts().version_codename {
        "jammy" => "Jammy Jellyfish",
        "focal" => "Focal Fossa",
        _ => "",
    }
}

/// `/etc/passwd` from the persona's users.
pub fn passwd(p: &Persona) -> String {
    p.users.iter().map(|u| format!("{}:x:{}:{}:{}:{}:{}\n", u.name, u.uid, u.gid, u.gecos, u.home, u.shell)).collect()
}

fn group(p: &Persona) -> String {
    let mut out = String::from("root:x:0:\n");
    let sudo_members: Vec<&str> = p.users.iter().filter(|u| u.uid >= 1000).map(|u| u.name.as_str()).take(1).collect();
    for u in p.users.iter().filter(|u| u.uid != 0) {
        out.push_str(&format!("{}:x:{}:\n", u.name, u.gid));
    }
    out.push_str(&format!("sudo:x:27:{}\n", sudo_members.join(",")));
    out
}

fn shadow(p: &Persona) -> String {
    p.users
        .iter()
        .map(|u| {
            let hash = if u.uid == 0 || u.uid >= 1000 { "$6$rounds=5000$" } else { "*" };
            let hash = if hash == "*" { "*".to_string() } else { format!("{hash}{}", &u.name.len().to_string()) };
            format!("{}:{}:19{:03}:0:99999:7:::\n", u.name, if u.uid >= 1000 { "!" } else { &hash }, u.uid % 1000)
        })
        .collect()
}

/// `/proc/cpuinfo`: one block per CPU, as the kernel prints it.
pub fn cpuinfo(p: &Persona) -> String {
    let mut out = String::new();
    if p.family == OsFamily::Embedded {
        for i in 0..p.cpu_count {
            out.push_str(&format!(
                "processor\t: {i}\nmodel name\t: {}\nBogoMIPS\t: 48.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xc07\nCPU revision\t: 5\n\n",
                p.cpu_model
            ));
        }
        out.push_str("Hardware\t: Generic DT based system\nRevision\t: 0000\nSerial\t\t: 0000000000000000\n");
        return out;
    }
    let vendor = if p.cpu_model.contains("AMD") { "AuthenticAMD" } else { "GenuineIntel" };
    for i in 0..p.cpu_count {
        out.push_str(&format!(
            "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: {}\nstepping\t: 7\nmicrocode\t: 0x5003604\ncpu MHz\t\t: {:.3}\ncache size\t: 36608 KB\nphysical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 22\nwp\t\t: yes\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch invpcid_single ssbd ibrs ibpb stibp fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves arat pku ospke md_clear arch_capabilities\nbogomips\t: {:.2}\nclflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n",
            p.cpu_model,
            p.cpu_mhz,
            p.cpu_mhz * 2.0,
            n = p.cpu_count
        ));
    }
    out
}

/// `/proc/meminfo` from the persona's memory (the rest in proportion).
pub fn meminfo(p: &Persona) -> String {
    let total = p.memory_kib;
    let free = total * 23 / 100;
    let available = total * 61 / 100;
    let buffers = total * 3 / 100;
    let cached = total * 31 / 100;
    let swap = if p.family == OsFamily::Embedded { 0 } else { 2_097_148 };
    format!(
        "MemTotal:       {total:>8} kB\nMemFree:        {free:>8} kB\nMemAvailable:   {available:>8} kB\nBuffers:        {buffers:>8} kB\nCached:         {cached:>8} kB\nSwapCached:            0 kB\nActive:         {:>8} kB\nInactive:       {:>8} kB\nSwapTotal:      {swap:>8} kB\nSwapFree:       {swap:>8} kB\nDirty:               124 kB\nShmem:          {:>8} kB\n",
        total * 35 / 100,
        total * 22 / 100,
        total / 100
    )
}

fn mounts(p: &Persona) -> String {
    let d = &p.disks[0];
    format!(
        "{} {} {} rw,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\nsysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\ntmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size={}k,mode=755 0 0\n",
        d.device,
        d.mount,
        d.fs,
        p.memory_kib / 10
    )
}

fn net_dev(p: &Persona) -> String {
    let i = &p.interfaces[0];
    let rx = (p.boot_time as u64 % 9_000_000) * 1_337;
    format!(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  123456     1234    0    0    0     0          0         0   123456     1234    0    0    0     0       0          0\n{:>6}: {rx} {}    0    0    0     0          0         0 {} {}    0    0    0     0       0          0\n",
        i.name,
        rx / 900,
        rx / 3,
        rx / 2_700
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_files_start_with_a_real_elf_header_for_the_persona_s_machine() {
        for (machine, class, e_machine, len) in [("armv7l", 1u8, 0x28u16, 52usize), ("x86_64", 2, 0x3e, 64)] {
            let h = elf_header(machine);
            assert_eq!(h.len(), len, "e_ehsize bytes");
            assert_eq!(&h[..4], b"\x7fELF");
            assert_eq!((h[4], h[5]), (class, 1), "{machine}: class and little endian");
            assert_eq!(u16::from_le_bytes([h[18], h[19]]), e_machine, "{machine}: e_machine");
            let ehsize =
                if class == 1 { u16::from_le_bytes([h[40], h[41]]) } else { u16::from_le_bytes([h[52], h[53]]) };
            assert_eq!(ehsize as usize, len);
        }
        let camera = Persona::derive("cam", Some("iot-device"), None, 0);
        let image = build(&camera, &["echo"]);
        let Content::File(bytes) = &image["/bin/busybox"].content else { panic!("busybox is a file") };
        assert_eq!(bytes[..], elf_header("armv7l")[..]);
    }

    #[test]
    fn a_persona_s_sessions_share_one_image_and_it_goes_with_the_persona() {
        let persona = Arc::new(Persona::derive("img-share", None, None, 0));
        let mut builds = 0;
        let first = shared(&persona, || {
            builds += 1;
            vec!["ls"]
        });
        let second = shared(&persona, || {
            builds += 1;
            vec!["ls"]
        });
        assert!(Arc::ptr_eq(&first, &second), "built once, shared");
        assert_eq!(builds, 1);
        // Another decky (even with equal facts) has an image of its own.
        let other = Arc::new((*persona).clone());
        assert!(!Arc::ptr_eq(&first, &shared(&other, || vec!["ls"])));
        let gone = Arc::downgrade(&persona);
        drop(persona);
        drop(other);
        let _ = shared(&Arc::new(Persona::derive("img-share-2", None, None, 0)), Vec::new);
        let cache = SHARED.lock().unwrap();
        assert!(cache.iter().all(|(owner, _)| !owner.ptr_eq(&gone)), "a dropped persona's image is released");
    }
}
