//! The fake shell behind SSH and telnet logins.
//!
//! A bash (or BusyBox ash, on embedded personas) that answers from the
//! decky's [`Persona`] over a per-session filesystem ([`fs`], [`image`]):
//! command lines are parsed by brush-parser and walked by [`interp`];
//! every program is one entry in the [`commands`] registry (one file per
//! command or family). Nothing is ever executed on the host and the shell
//! opens no connection: `wget`/`curl` record the URL they were given
//! ([`ShellEvent::Download`]) and the caller decides what happens next.
//!
//! Every command line runs under an [`interp::Budget`], so loops, fork
//! bombs and endless producers end cleanly.

pub mod commands;
pub mod fs;
pub mod image;
pub mod interp;
pub mod line_editor;

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::persona::{OsFamily, Persona};
use interp::{Budget, Flow, Streams};

/// What running one command line gives.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Everything the terminal shows (stdout and stderr in order of
    /// commands), with `\n` line ends; callers on a pty turn them into CRLF.
    pub output: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `$?` after the line.
    pub status: i32,
    /// The user asked to leave (`exit`, `logout`).
    pub exit: bool,
}

/// Something the attacker did that the session should record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEvent {
    /// A URL a download tool was asked for (`wget`, `curl`, `tftp`, …),
    /// with where the tool would save it.
    Download { url: String, tool: String, path: Option<String> },
    /// A file the attacker wrote content into (`echo … > f`, `cat > f`).
    FileWritten { path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub value: String,
    pub exported: bool,
}

/// Per-session shell state.
pub struct Shell {
    pub persona: Arc<Persona>,
    pub user: String,
    pub uid: u32,
    pub cwd: String,
    pub vars: BTreeMap<String, Var>,
    pub aliases: BTreeMap<String, String>,
    pub(crate) functions: BTreeMap<String, Arc<brush_parser::ast::FunctionBody>>,
    pub positional: Vec<String>,
    pub history: Vec<String>,
    pub last_status: i32,
    pub pid: u32,
    pub fs: fs::SessionFs,
    pub events: Vec<ShellEvent>,
    /// ext4 attributes (`chattr`) the session changed, by path.
    pub(crate) attrs: BTreeMap<String, String>,
    /// Interactive (a terminal) or `ssh host cmd`; changes error prefixes.
    pub interactive: bool,
    /// The session's terminal (`pts/0`), or none for `ssh host cmd` and
    /// piped stdin: such sessions have no utmp entry, so `w` and `who`
    /// do not list them.
    pub tty: Option<String>,
    pub(crate) budget: Budget,
}

/// Lines kept in `history`.
const MAX_HISTORY: usize = 500;
/// Events kept per session (each is also logged when it happens).
const MAX_EVENTS: usize = 256;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Shell {
    /// A login shell for `user` on the decky of `persona`. An unknown user
    /// is given a home and uid as a freshly added account would have.
    pub fn new(user: &str, persona: Arc<Persona>) -> Shell {
        let user: String = if user.is_empty() { "root".into() } else { user.chars().take(32).collect() };
        let (uid, home, shell_path) = match persona.user(&user) {
            Some(u) => (u.uid, u.home.clone(), u.shell.clone()),
            // An account the persona lacks gets the next free uid, as
            // `useradd` would have given it.
            None => {
                let uid = persona
                    .users
                    .iter()
                    .map(|u| u.uid)
                    .filter(|u| *u >= 1000 && *u < 60_000)
                    .max()
                    .map_or(1000, |u| u + 1);
                (uid, format!("/home/{user}"), "/bin/bash".to_string())
            }
        };
        let image = image::shared(&persona, || commands::program_names(&persona));
        let mut fs = fs::SessionFs::new(image, fs::FsLimits::default());
        if fs.stat(&home).is_none() {
            let _ = fs.put(&home, fs::Node::dir(0o750, uid, persona.boot_time));
        }
        let pid = 2_000 + (now() % 30_000) as u32;
        let mut sh = Shell {
            persona,
            user: user.clone(),
            uid,
            cwd: home.clone(),
            vars: BTreeMap::new(),
            aliases: BTreeMap::new(),
            functions: BTreeMap::new(),
            positional: Vec::new(),
            history: Vec::new(),
            last_status: 0,
            pid,
            fs,
            events: Vec::new(),
            attrs: BTreeMap::new(),
            interactive: true,
            tty: Some("pts/0".into()),
            budget: Budget::default(),
        };
        let path = if uid == 0 {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        } else {
            "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
        };
        for (k, v) in [
            ("HOME", home.as_str()),
            ("USER", user.as_str()),
            ("LOGNAME", user.as_str()),
            ("SHELL", shell_path.as_str()),
            ("PATH", path),
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm-256color"),
            ("PWD", home.as_str()),
            ("HOSTNAME", sh.persona.hostname.clone().as_str()),
        ] {
            sh.vars.insert(k.into(), Var { value: v.into(), exported: true });
        }
        sh.vars.insert("PS1".into(), Var { value: "\\u@\\h:\\w\\$ ".into(), exported: false });
        if sh.persona.family != OsFamily::Embedded {
            for (k, v) in [
                ("ls", "ls --color=auto"),
                ("ll", "ls -alF"),
                ("la", "ls -A"),
                ("l", "ls -CF"),
                ("grep", "grep --color=auto"),
            ] {
                sh.aliases.insert(k.into(), v.into());
            }
        }
        sh
    }

    /// What sshd puts in the environment of a session from `peer` to
    /// `local`: `SSH_CLIENT`, `SSH_CONNECTION`, and `SSH_TTY` with a
    /// terminal, so `echo $SSH_CLIENT`, `w` and `who` name the client's
    /// real address (the same one `last` will show).
    pub fn set_ssh_connection(&mut self, peer: std::net::SocketAddr, local: std::net::SocketAddr, pty: bool) {
        let client = format!("{} {} {}", peer.ip(), peer.port(), local.port());
        let connection = format!("{} {} {} {}", peer.ip(), peer.port(), local.ip(), local.port());
        self.vars.insert("SSH_CLIENT".into(), Var { value: client, exported: true });
        self.vars.insert("SSH_CONNECTION".into(), Var { value: connection, exported: true });
        if pty {
            self.vars.insert("SSH_TTY".into(), Var { value: "/dev/pts/0".into(), exported: true });
            self.tty = Some("pts/0".into());
        } else {
            self.tty = None;
        }
    }

    pub fn host(&self) -> &str {
        &self.persona.hostname
    }

    pub fn home(&self) -> String {
        self.var("HOME").unwrap_or("/").to_string()
    }

    /// The prompt: `user@host:~$ ` for bash, `host# ` style for BusyBox.
    pub fn prompt(&self) -> String {
        let home = self.home();
        let dir = if self.cwd == home {
            "~".to_string()
        } else if let Some(rest) = self.cwd.strip_prefix(&format!("{home}/")) {
            format!("~/{rest}")
        } else {
            self.cwd.clone()
        };
        let sigil = if self.uid == 0 { '#' } else { '$' };
        match self.persona.family {
            OsFamily::Embedded => format!("{}@{}:{}{} ", self.user, self.host(), dir, sigil),
            _ if self.persona.os_id == "centos" => {
                let base = if dir == "~" { "~".to_string() } else { fs::basename(&self.cwd).to_string() };
                let base = if base.is_empty() { "/".to_string() } else { base };
                format!("[{}@{} {}]{} ", self.user, self.host(), base, sigil)
            }
            _ => format!("{}@{}:{}{} ", self.user, self.host(), dir, sigil),
        }
    }

    /// Run one command line.
    pub fn run(&mut self, line: &str) -> Outcome {
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.trim().is_empty() && self.history.len() < MAX_HISTORY {
            self.history.push(line.chars().take(4096).collect());
        }
        self.budget = Budget::default();
        let mut io = Streams::default();
        let flow = match interp::parse(line) {
            Ok(program) => self.run_program(&program, &mut io),
            Err(msg) => {
                let prefix = commands::err_prefix(self);
                io.err.extend_from_slice(format!("{prefix}: {msg}\n").as_bytes());
                self.last_status = 2;
                Flow::Normal
            }
        };
        if flow == Flow::Exhausted {
            self.last_status = interp::KILLED;
            io.err.extend_from_slice(b"Killed\n");
        }
        let limit = Budget::default().output;
        io.out.truncate(limit);
        io.err.truncate(limit);
        let mut output = String::from_utf8_lossy(&io.out).into_owned();
        output.push_str(&String::from_utf8_lossy(&io.err));
        Outcome { output, stdout: io.out, stderr: io.err, status: self.last_status, exit: flow == Flow::Exit }
    }

    /// Record a file the attacker put content into.
    pub(crate) fn note_written(&mut self, path: &str) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(ShellEvent::FileWritten { path: path.to_string() });
        }
    }

    /// Record a download request.
    pub(crate) fn note_download(&mut self, tool: &str, url: &str, path: Option<String>) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(ShellEvent::Download {
                url: url.chars().take(2048).collect(),
                tool: tool.to_string(),
                path,
            });
        }
    }

    /// Take the events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<ShellEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether this user may read `node` (root reads everything).
    pub(crate) fn may_read(&self, node: &fs::Node) -> bool {
        self.uid == 0 || node.mode & 0o004 != 0 || (node.uid == self.uid && node.mode & 0o400 != 0)
    }

    /// Whether this user may write `node`.
    pub(crate) fn may_write(&self, node: &fs::Node) -> bool {
        self.uid == 0 || node.mode & 0o002 != 0 || (node.uid == self.uid && node.mode & 0o200 != 0)
    }

    /// The bytes of the file at `path` (absolute), as this user may read them.
    pub(crate) fn read_file(&self, path: &str) -> Result<Vec<u8>, fs::FsError> {
        let node = self.fs.stat(path).ok_or(fs::FsError::NotFound)?;
        if node.is_dir() {
            return Err(fs::FsError::IsADirectory);
        }
        if !self.may_read(node) {
            return Err(fs::FsError::PermissionDenied);
        }
        Ok(match &node.content {
            fs::Content::File(b) => b.clone(),
            fs::Content::Dynamic(key) => self.dynamic(key).into_bytes(),
            fs::Content::Device("zero") => vec![0; 64 * 1024],
            fs::Content::Device("urandom") => {
                (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
            }
            _ => Vec::new(),
        })
    }

    /// Contents of files that change while the host runs.
    fn dynamic(&self, key: &str) -> String {
        let now = now();
        match key {
            "uptime" => {
                let up = self.persona.uptime(now) as f64;
                format!("{up:.2} {:.2}\n", up * self.persona.cpu_count as f64 * 0.97)
            }
            "loadavg" => format!(
                "0.{:02} 0.{:02} 0.{:02} 1/{} {}\n",
                now % 40,
                now % 30 + 3,
                now % 20 + 5,
                180 + now % 40,
                self.pid
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests;
