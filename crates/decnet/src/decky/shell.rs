//! The fake shell behind the SSH and telnet logins: a prompt and a few
//! canned commands, enough for the first things an intruder types (who am
//! I, where am I, what is this box) to look like a real Ubuntu host.
//! Nothing is ever executed; every command is logged by the caller.

/// What running one command line gives.
pub struct Outcome {
    /// Output, with `\n` line ends (callers on a terminal turn them into CRLF).
    pub output: String,
    /// The user asked to leave (`exit`, `logout`).
    pub exit: bool,
}

/// Per-session shell state.
pub struct Shell {
    pub user: String,
    pub host: String,
    pub cwd: String,
}

impl Shell {
    pub fn new(user: &str, host: &str) -> Shell {
        let user = if user.is_empty() { "root".to_string() } else { user.chars().take(32).collect() };
        let cwd = home_of(&user);
        Shell { user, host: host.to_string(), cwd }
    }

    pub fn prompt(&self) -> String {
        let home = home_of(&self.user);
        let dir = if self.cwd == home { "~".to_string() } else { self.cwd.clone() };
        let sigil = if self.user == "root" { '#' } else { '$' };
        format!("{}@{}:{}{} ", self.user, self.host, dir, sigil)
    }

    /// Run one command line (`;`-separated commands are run in turn).
    pub fn run(&mut self, line: &str) -> Outcome {
        let mut output = String::new();
        // `&&` and `||` run in turn like `;`: every canned command "succeeds".
        let sequence = line.replace("&&", ";").replace("||", ";");
        for part in sequence.split(';') {
            let mut stages = part.split('|').map(str::trim);
            let first = stages.next().unwrap_or("");
            if first.is_empty() {
                continue;
            }
            let (mut out, exit) = self.one(first);
            for stage in stages {
                out = filter(stage, &out);
            }
            output.push_str(&out);
            if exit {
                return Outcome { output, exit: true };
            }
        }
        Outcome { output, exit: false }
    }

    fn one(&mut self, cmd: &str) -> (String, bool) {
        let mut words = cmd.split_whitespace();
        let program = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let uid = if self.user == "root" { 0 } else { 1000 };
        let out = match program {
            "exit" | "logout" => return (String::new(), true),
            "pwd" => format!("{}\n", self.cwd),
            "whoami" => format!("{}\n", self.user),
            "id" => format!("uid={uid}({u}) gid={uid}({u}) groups={uid}({u})\n", u = self.user),
            "hostname" => format!("{}\n", self.host),
            "uname" => {
                if args.contains(&"-a") {
                    format!(
                        "Linux {} 5.15.0-91-generic #101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023 x86_64 x86_64 x86_64 GNU/Linux\n",
                        self.host
                    )
                } else {
                    "Linux\n".to_string()
                }
            }
            "ls" => {
                if self.cwd == "/" || args.contains(&"/") {
                    "bin  boot  dev  etc  home  lib  lib64  media  mnt  opt  proc  root  run  sbin  srv  sys  tmp  usr  var\n"
                        .to_string()
                } else {
                    "backup.tar.gz  notes.txt\n".to_string()
                }
            }
            "cd" => {
                self.cwd = match args.first() {
                    None | Some(&"~") => home_of(&self.user),
                    Some(p) if p.starts_with('/') => p.chars().take(256).collect(),
                    Some(p) => {
                        let base = self.cwd.trim_end_matches('/');
                        format!("{base}/{}", p.chars().take(256).collect::<String>())
                    }
                };
                String::new()
            }
            "cat" => match args.first() {
                Some(&"/etc/passwd") => PASSWD.to_string(),
                Some(&"/etc/hostname") => format!("{}\n", self.host),
                Some(&"/etc/issue") => "Ubuntu 22.04.3 LTS \\n \\l\n\n".to_string(),
                Some(&"notes.txt") => "remember to rotate the db password\n".to_string(),
                Some(f) => format!("cat: {f}: Permission denied\n"),
                None => String::new(),
            },
            "echo" => format!("{}\n", args.join(" ")),
            "w" | "who" => format!("{}    pts/0        2023-12-01 09:12 (10.0.0.5)\n", self.user),
            _ => format!("-bash: {}: command not found\n", program.chars().take(64).collect::<String>()),
        };
        (out, false)
    }
}

/// The few pipe stages intruders use to trim output; others pass it through.
fn filter(stage: &str, input: &str) -> String {
    let words: Vec<&str> = stage.split_whitespace().collect();
    let lines = input.lines();
    let keep = |out: Vec<&str>| out.iter().map(|l| format!("{l}\n")).collect::<String>();
    match words.as_slice() {
        ["head", rest @ ..] | ["tail", rest @ ..] => {
            let n = match rest {
                ["-n", n] => n.parse().unwrap_or(10),
                [n] => n.trim_start_matches('-').parse().unwrap_or(10),
                _ => 10,
            };
            let all: Vec<&str> = lines.collect();
            if words[0] == "head" {
                keep(all.into_iter().take(n).collect())
            } else {
                keep(all[all.len().saturating_sub(n)..].to_vec())
            }
        }
        ["grep", pattern, ..] => keep(lines.filter(|l| l.contains(pattern.trim_matches('"'))).collect()),
        ["wc", "-l"] => format!("{}\n", lines.count()),
        _ => input.to_string(),
    }
}

fn home_of(user: &str) -> String {
    if user == "root" {
        "/root".to_string()
    } else {
        format!("/home/{user}")
    }
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
sshd:x:105:65534::/run/sshd:/usr/sbin/nologin
ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_commands_answer_like_a_host() {
        let mut sh = Shell::new("root", "web-01");
        assert_eq!(sh.prompt(), "root@web-01:~# ");
        assert_eq!(sh.run("whoami").output, "root\n");
        assert!(sh.run("uname -a").output.starts_with("Linux web-01 "));
        assert!(sh.run("cat /etc/passwd").output.starts_with("root:x:0:0"));
        assert!(sh.run("nmap").output.contains("command not found"));
        sh.run("cd /tmp");
        assert_eq!(sh.run("pwd").output, "/tmp\n");
        assert!(sh.run("id; exit").exit);
        assert_eq!(sh.run("cat /etc/passwd | head -n 1").output, "root:x:0:0:root:/root:/bin/bash\n");
        assert_eq!(sh.run("cat /etc/passwd | grep sshd | wc -l").output, "1\n");
        assert_eq!(sh.run("whoami && hostname").output, "root\nweb-01\n");
    }
}
