//! Every program the fake shell knows, in one registry table.
//!
//! A command is a plain function from the shell state, its arguments and
//! its standard input to an [`Output`]. One file holds one command or one
//! family of related commands; adding a command is writing the function
//! and adding its line to [`REGISTRY`]. The image gets a program file for
//! every name here, so `which`, `ls /usr/bin` and running it agree.

pub mod attrs;
pub mod awk;
pub mod builtins;
pub mod files;
pub mod net;
pub mod packages;
pub mod system;
pub mod test;
pub mod text;

use super::interp::Flow;
use super::Shell;

/// What a command gives back.
#[derive(Debug)]
pub struct Output {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub status: i32,
    pub flow: Flow,
}

impl Output {
    pub fn ok(out: impl Into<Vec<u8>>) -> Output {
        Output { out: out.into(), err: Vec::new(), status: 0, flow: Flow::Normal }
    }
    pub fn status(status: i32) -> Output {
        Output { out: Vec::new(), err: Vec::new(), status, flow: Flow::Normal }
    }
    /// An error message on stderr with an exit status.
    pub fn fail(status: i32, err: impl Into<String>) -> Output {
        Output { out: Vec::new(), err: err.into().into_bytes(), status, flow: Flow::Normal }
    }
    /// The error messages collected while doing a command's work: status
    /// 1 when there are any, as coreutils exits after partial failures.
    pub fn errors(err: String) -> Output {
        let status = i32::from(!err.is_empty());
        Output { out: Vec::new(), err: err.into_bytes(), status, flow: Flow::Normal }
    }
    /// Output on both streams.
    pub fn both(out: Vec<u8>, err: String, status: i32) -> Output {
        Output { out, err: err.into_bytes(), status, flow: Flow::Normal }
    }
}

/// A command's implementation: the shell, argv (argv[0] is the name as
/// typed) and standard input.
pub type Command = fn(&mut Shell, &[String], &[u8]) -> Output;

/// Where a program lives in the image (`/usr/bin` unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A shell builtin: no file on disk.
    Builtin,
    Program,
}

pub struct Entry {
    pub name: &'static str,
    pub kind: Kind,
    pub run: Command,
}

const fn b(name: &'static str, run: Command) -> Entry {
    Entry { name, kind: Kind::Builtin, run }
}
const fn p(name: &'static str, run: Command) -> Entry {
    Entry { name, kind: Kind::Program, run }
}

/// Every command, builtins first.
pub static REGISTRY: &[Entry] = &[
    b("cd", builtins::cd),
    b("pwd", builtins::pwd),
    b("echo", builtins::echo),
    b("printf", builtins::printf),
    b("export", builtins::export),
    b("unset", builtins::unset),
    b("alias", builtins::alias),
    b("unalias", builtins::unalias),
    b("history", builtins::history),
    b("exit", builtins::exit),
    b("logout", builtins::exit),
    b("true", builtins::true_),
    b(":", builtins::true_),
    b("false", builtins::false_),
    b("test", test::test),
    b("[", test::test),
    b("type", builtins::type_),
    b("command", builtins::command),
    b("set", builtins::set),
    b("source", builtins::source),
    b(".", builtins::source),
    b("eval", builtins::eval),
    b("exec", builtins::exec),
    b("return", builtins::return_),
    b("break", builtins::break_),
    b("continue", builtins::continue_),
    b("shift", builtins::shift),
    b("umask", builtins::umask),
    b("ulimit", builtins::ulimit),
    b("read", builtins::read),
    b("jobs", builtins::true_),
    b("wait", builtins::true_),
    b("hash", builtins::true_),
    b("kill", system::kill),
    p("which", builtins::which),
    p("env", system::env),
    p("printenv", system::env),
    p("sleep", system::sleep),
    p("nohup", system::nohup),
    p("timeout", system::nohup),
    p("uname", system::uname),
    p("hostname", system::hostname),
    p("id", system::id),
    p("whoami", system::whoami),
    p("groups", system::groups),
    p("w", system::w),
    p("who", system::who),
    p("last", system::last),
    p("uptime", system::uptime),
    p("free", system::free),
    p("df", system::df),
    p("ps", system::ps),
    p("top", system::top),
    p("nproc", system::nproc),
    p("lscpu", system::lscpu),
    p("lspci", system::lspci),
    p("dmesg", system::dmesg),
    p("mount", system::mount),
    p("getconf", system::getconf),
    p("arch", system::arch),
    p("date", system::date),
    p("crontab", system::crontab),
    p("pkill", system::pkill),
    p("killall", system::pkill),
    p("systemctl", system::systemctl),
    p("service", system::service),
    p("sudo", system::sudo),
    p("su", system::su),
    p("passwd", system::passwd),
    p("chpasswd", system::chpasswd),
    p("useradd", system::useradd),
    p("adduser", system::useradd),
    p("usermod", system::true_program),
    p("lsb_release", system::lsb_release),
    p("locale", system::locale),
    p("cat", text::cat),
    p("head", text::head),
    p("tail", text::tail),
    p("wc", text::wc),
    p("sort", text::sort),
    p("uniq", text::uniq),
    p("cut", text::cut),
    p("tr", text::tr),
    p("grep", text::grep),
    p("egrep", text::grep),
    p("sed", text::sed),
    p("awk", awk::awk),
    p("base64", text::base64),
    p("md5sum", text::md5sum),
    p("sha256sum", text::sha256sum),
    p("sha1sum", text::sha1sum),
    p("tee", text::tee),
    p("rev", text::rev),
    p("yes", text::yes),
    p("seq", text::seq),
    p("xargs", text::xargs),
    p("ls", files::ls),
    p("dir", files::ls),
    p("mkdir", files::mkdir),
    p("rmdir", files::rmdir),
    p("rm", files::rm),
    p("mv", files::mv),
    p("cp", files::cp),
    p("touch", files::touch),
    p("ln", files::ln),
    p("chmod", files::chmod),
    p("chown", files::chown),
    p("chgrp", files::chown),
    p("chattr", attrs::chattr),
    p("lsattr", attrs::lsattr),
    p("find", files::find),
    p("stat", files::stat),
    p("file", files::file),
    p("du", files::du),
    p("tar", files::tar),
    p("gzip", files::gzip),
    p("gunzip", files::gzip),
    p("dd", files::dd),
    p("readlink", files::readlink),
    p("realpath", files::readlink),
    p("basename", files::basename),
    p("dirname", files::dirname),
    p("ifconfig", net::ifconfig),
    p("ip", net::ip),
    p("netstat", net::netstat),
    p("ss", net::ss),
    p("ping", net::ping),
    p("wget", net::wget),
    p("curl", net::curl),
    p("tftp", net::tftp),
    p("ftpget", net::ftpget),
    p("nc", net::nc),
    p("netcat", net::nc),
    p("apt", packages::apt),
    p("apt-get", packages::apt),
    p("yum", packages::yum),
    p("dpkg", packages::dpkg),
    p("rpm", packages::rpm),
    p("python", packages::python),
    p("python3", packages::python),
    p("perl", packages::perl),
    p("sh", builtins::sh),
    p("bash", builtins::sh),
    p("busybox", builtins::busybox),
];

/// Whether a host of this persona has the program at all (a CentOS box
/// has no apt, a camera no systemctl): absent programs have no file in
/// the image and are "command not found", so `which` and running agree.
pub fn available(persona: &crate::persona::Persona, name: &str) -> bool {
    use crate::persona::OsFamily;
    let debian_like = matches!(persona.os_id.as_str(), "ubuntu" | "debian");
    let has_package = |p: &str| persona.packages.iter().any(|(n, _)| n == p);
    match name {
        "apt" | "apt-get" | "dpkg" | "lsb_release" => debian_like,
        "yum" | "rpm" => persona.os_id == "centos",
        "python3" => has_package("python3"),
        "python" => has_package("python"),
        "perl" => has_package("perl"),
        "systemctl" | "service" | "lspci" | "lscpu" | "getconf" | "locale" => persona.family == OsFamily::Linux,
        _ if persona.family == OsFamily::Embedded => builtins::busybox_has(name) || name == "busybox",
        "busybox" => false,
        _ => true,
    }
}

/// The names of programs that have a file in this persona's image.
pub fn program_names(persona: &crate::persona::Persona) -> Vec<&'static str> {
    REGISTRY.iter().filter(|e| e.kind == Kind::Program && available(persona, e.name)).map(|e| e.name).collect()
}

/// The command called `name`, by its last path component (`/bin/ls` → ls).
pub fn lookup(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// Run argv: a path to a file is checked against the filesystem (and run
/// as a script when it holds one), a bare name is looked up in the table.
pub fn run(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let typed = argv[0].as_str();
    let embedded = sh.persona.family == crate::persona::OsFamily::Embedded;
    if typed.contains('/') {
        let path = super::fs::normalize(&sh.cwd, typed);
        let Some(node) = sh.fs.stat(&path).cloned() else {
            return Output::fail(127, format!("{}: {typed}: No such file or directory\n", err_prefix(sh)));
        };
        if node.is_dir() {
            return Output::fail(126, format!("{}: {typed}: Is a directory\n", err_prefix(sh)));
        }
        let name = super::fs::basename(&path).to_string();
        // A program from the image runs as itself; an attacker's file runs
        // as a script if it is executable.
        if let (Some(entry), super::fs::Content::File(b)) = (lookup(&name), &node.content) {
            if b.starts_with(b"\x7fELF") || matches!(node.content, super::fs::Content::Symlink(_)) {
                return (entry.run)(sh, argv, stdin);
            }
        }
        if let (Some(entry), super::fs::Content::Symlink(_)) =
            (lookup(&name), &sh.fs.lstat(&path).map(|n| n.content.clone()).unwrap_or(super::fs::Content::Dir))
        {
            return (entry.run)(sh, argv, stdin);
        }
        if node.mode & 0o111 == 0 {
            return Output::fail(126, format!("{}: {typed}: Permission denied\n", err_prefix(sh)));
        }
        return builtins::run_script(sh, &path, &argv[1..]);
    }
    match lookup(typed) {
        Some(entry) if entry.kind == Kind::Builtin || available(&sh.persona, typed) => (entry.run)(sh, argv, stdin),
        _ => {
            if embedded {
                Output::fail(127, format!("-sh: {typed}: not found\n"))
            } else if sh.interactive && sh.persona.os_id == "ubuntu" {
                // Ubuntu's command-not-found handler prints without the prefix.
                Output::fail(127, format!("{typed}: command not found\n"))
            } else if sh.interactive {
                Output::fail(127, format!("-bash: {typed}: command not found\n"))
            } else {
                Output::fail(127, format!("{}: {typed}: command not found\n", err_prefix(sh)))
            }
        }
    }
}

/// What bash puts before its own error messages: `-bash` for a login
/// shell; for `ssh host cmd` (`bash -c`) bash 5.1 adds the line number,
/// which 5.0 and 5.2 do not.
pub fn err_prefix(sh: &Shell) -> &'static str {
    let bash_5_1 = sh.persona.packages.iter().any(|(n, v)| n == "bash" && v.starts_with("5.1"));
    if sh.persona.family == crate::persona::OsFamily::Embedded {
        "-sh"
    } else if sh.interactive {
        "-bash"
    } else if bash_5_1 {
        "bash: line 1"
    } else {
        "bash"
    }
}

/// Split `args` into (flags as chars, operands), the getopt way most
/// coreutils accept: `-la` is `l` and `a`, `--` ends options, `--long`
/// flags are returned whole in the second list's companion.
pub fn split_flags(args: &[String]) -> (String, Vec<String>, Vec<String>) {
    let mut short = String::new();
    let mut long = Vec::new();
    let mut operands = Vec::new();
    let mut done = false;
    for a in args {
        if done || a == "-" || !a.starts_with('-') {
            operands.push(a.clone());
        } else if a == "--" {
            done = true;
        } else if let Some(l) = a.strip_prefix("--") {
            long.push(l.to_string());
        } else {
            short.push_str(&a[1..]);
        }
    }
    (short, long, operands)
}
