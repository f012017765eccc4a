//! Shell builtins and the shells themselves (`sh`, `bash`, `busybox`).

use super::{err_prefix, split_flags, Output};
use crate::shell::fs::{normalize, Content};
use crate::shell::interp::{self, Flow, Streams};
use crate::shell::{Shell, Var};

pub fn cd(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let target = match argv.get(1).map(String::as_str) {
        None | Some("~") => sh.home(),
        Some("-") => sh.var("OLDPWD").unwrap_or(&sh.cwd).to_string(),
        Some(t) => t.to_string(),
    };
    let path = normalize(&sh.cwd, &target);
    match sh.fs.stat(&path) {
        None => Output::fail(1, format!("{}: cd: {target}: No such file or directory\n", err_prefix(sh))),
        Some(n) if !n.is_dir() => Output::fail(1, format!("{}: cd: {target}: Not a directory\n", err_prefix(sh))),
        Some(n) if sh.uid != 0 && n.mode & 0o001 == 0 && !(n.uid == sh.uid && n.mode & 0o100 != 0) => {
            Output::fail(1, format!("{}: cd: {target}: Permission denied\n", err_prefix(sh)))
        }
        Some(_) => {
            let old = std::mem::replace(&mut sh.cwd, path.clone());
            sh.set_var("OLDPWD", old);
            sh.set_var("PWD", path);
            Output::status(0)
        }
    }
}

pub fn pwd(sh: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::ok(format!("{}\n", sh.cwd))
}

/// `echo [-neE] args`: bash's builtin.
pub fn echo(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let text = argv[i.min(argv.len())..].join(" ");
    let mut out = if escapes { super::text::unescape_echo(&text) } else { text.into_bytes() };
    if newline {
        out.push(b'\n');
    }
    Output::ok(out)
}

/// `printf FORMAT [ARGS]`: %s %d %x %o %c %b %%, escapes, reused format.
pub fn printf(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let Some(format) = argv.get(1) else {
        return Output::fail(2, "printf: usage: printf [-v var] format [arguments]\n");
    };
    let mut args = argv[2..].iter();
    let mut out = Vec::new();
    let fmt: Vec<char> = format.chars().collect();
    for round in 0..64 {
        let mut consumed = false;
        let mut i = 0;
        while i < fmt.len() {
            match fmt[i] {
                '\\' => {
                    let (bytes, used) = super::text::unescape_one(&fmt[i..]);
                    out.extend_from_slice(&bytes);
                    i += used;
                }
                '%' if i + 1 < fmt.len() => {
                    let mut j = i + 1;
                    while j < fmt.len() && "-+ #0123456789.".contains(fmt[j]) {
                        j += 1;
                    }
                    let spec: String = fmt[i + 1..j].iter().collect();
                    let conv = fmt.get(j).copied().unwrap_or('%');
                    let arg = if conv == '%' { None } else { args.next() };
                    consumed |= arg.is_some();
                    let a = arg.map(String::as_str).unwrap_or("");
                    let num = || a.parse::<i64>().unwrap_or(0);
                    let width: usize =
                        spec.trim_start_matches(['-', '0']).split('.').next().unwrap_or("").parse().unwrap_or(0);
                    let body = match conv {
                        '%' => "%".to_string(),
                        's' => a.to_string(),
                        'd' | 'i' => num().to_string(),
                        'x' => format!("{:x}", num()),
                        'X' => format!("{:X}", num()),
                        'o' => format!("{:o}", num()),
                        'c' => a.chars().next().map(String::from).unwrap_or_default(),
                        'b' => String::from_utf8_lossy(&super::text::unescape_echo(a)).into_owned(),
                        'f' => format!("{:.6}", a.parse::<f64>().unwrap_or(0.0)),
                        other => format!("%{other}"),
                    };
                    let padded = if spec.starts_with('-') {
                        format!("{body:<width$}")
                    } else if spec.starts_with('0') && conv != 's' {
                        format!("{body:0>width$}")
                    } else {
                        format!("{body:>width$}")
                    };
                    out.extend_from_slice(padded.as_bytes());
                    i = j + 1;
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 1;
                }
            }
        }
        if !consumed || args.len() == 0 || round == 63 {
            break;
        }
    }
    Output::ok(out)
}

pub fn export(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() == 1 || argv[1] == "-p" {
        let out: String = sh
            .vars
            .iter()
            .filter(|(_, v)| v.exported)
            .map(|(k, v)| format!("declare -x {k}=\"{}\"\n", v.value.replace('"', "\\\"")))
            .collect();
        return Output::ok(out);
    }
    for a in &argv[1..] {
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Output::fail(1, format!("{}: export: `{a}': not a valid identifier\n", err_prefix(sh)));
        }
        let value = value.or_else(|| sh.var(&name).map(str::to_string)).unwrap_or_default();
        if sh.vars.len() < 256 || sh.vars.contains_key(&name) {
            sh.vars.insert(name, Var { value, exported: true });
        }
    }
    Output::status(0)
}

pub fn unset(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    for a in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        sh.vars.remove(a);
        sh.functions.remove(a);
    }
    Output::status(0)
}

pub fn alias(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() == 1 {
        return Output::ok(sh.aliases.iter().map(|(k, v)| format!("alias {k}='{v}'\n")).collect::<String>());
    }
    let mut out = Output::status(0);
    for a in &argv[1..] {
        match a.split_once('=') {
            Some((k, v)) if sh.aliases.len() < 64 || sh.aliases.contains_key(k) => {
                sh.aliases.insert(k.to_string(), v.chars().take(1024).collect());
            }
            Some(_) => {}
            None => match sh.aliases.get(a) {
                Some(v) => out.out.extend_from_slice(format!("alias {a}='{v}'\n").as_bytes()),
                None => {
                    out.err.extend_from_slice(format!("{}: alias: {a}: not found\n", err_prefix(sh)).as_bytes());
                    out.status = 1;
                }
            },
        }
    }
    out
}

pub fn unalias(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    for a in &argv[1..] {
        if a == "-a" {
            sh.aliases.clear();
        } else if sh.aliases.remove(a).is_none() {
            return Output::fail(1, format!("{}: unalias: {a}: not found\n", err_prefix(sh)));
        }
    }
    Output::status(0)
}

pub fn history(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.get(1).map(String::as_str) == Some("-c") {
        sh.history.clear();
        return Output::status(0);
    }
    let out: String = sh.history.iter().enumerate().map(|(i, l)| format!("{:>5}  {l}\n", i + 1)).collect();
    Output::ok(out)
}

pub fn exit(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let status = argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(sh.last_status);
    Output { out: Vec::new(), err: Vec::new(), status, flow: Flow::Exit }
}

pub fn true_(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::status(0)
}

pub fn false_(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output::status(1)
}

fn describe(sh: &Shell, name: &str) -> Option<String> {
    if let Some(a) = sh.aliases.get(name) {
        return Some(format!("{name} is aliased to `{a}'"));
    }
    if sh.functions.contains_key(name) {
        return Some(format!("{name} is a function"));
    }
    let entry = super::lookup(name)?;
    Some(match entry.kind {
        super::Kind::Builtin => format!("{name} is a shell builtin"),
        super::Kind::Program => format!("{name} is {}", program_path(sh, name)),
    })
}

/// Where a program's file is in this persona's image.
pub fn program_path(sh: &Shell, name: &str) -> String {
    if sh.persona.family == crate::persona::OsFamily::Embedded {
        format!("/bin/{name}")
    } else {
        format!("/usr/bin/{name}")
    }
}

pub fn type_(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut out = Output::status(0);
    for name in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        match describe(sh, name) {
            Some(d) => out.out.extend_from_slice(format!("{d}\n").as_bytes()),
            None => {
                out.err.extend_from_slice(format!("{}: type: {name}: not found\n", err_prefix(sh)).as_bytes());
                out.status = 1;
            }
        }
    }
    out
}

pub fn which(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut out = Output::status(0);
    for name in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        let path = if name.contains('/') {
            let p = normalize(&sh.cwd, name);
            sh.fs.stat(&p).map(|_| name.clone())
        } else {
            let candidate = program_path(sh, name);
            sh.fs.stat(&candidate).map(|_| candidate)
        };
        match path {
            Some(p) => out.out.extend_from_slice(format!("{p}\n").as_bytes()),
            None => out.status = 1,
        }
    }
    out
}

pub fn command(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    match argv.get(1).map(String::as_str) {
        Some("-v") | Some("-V") => {
            let mut out = Output::status(0);
            for name in &argv[2..] {
                match super::lookup(name) {
                    Some(e) if e.kind == super::Kind::Program => {
                        out.out.extend_from_slice(format!("{}\n", program_path(sh, name)).as_bytes())
                    }
                    Some(_) => out.out.extend_from_slice(format!("{name}\n").as_bytes()),
                    None => out.status = 1,
                }
            }
            out
        }
        Some(_) => super::run(sh, &argv[1..], stdin),
        None => Output::status(0),
    }
}

pub fn set(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() == 1 {
        return Output::ok(sh.vars.iter().map(|(k, v)| format!("{k}={}\n", v.value)).collect::<String>());
    }
    // `set -- a b` sets the positional parameters; option flags are accepted.
    if let Some(i) = argv.iter().position(|a| a == "--") {
        sh.positional = argv[i + 1..].to_vec();
    }
    Output::status(0)
}

/// Run the program in `text` as if typed, in this shell (`source`, `eval`,
/// scripts), sharing the caller's budget.
fn run_text(sh: &mut Shell, text: &str, stdin: &[u8]) -> Output {
    let program = match interp::parse(text) {
        Ok(p) => p,
        Err(msg) => return Output::fail(2, format!("{}: {msg}\n", err_prefix(sh))),
    };
    let mut io = Streams { stdin: stdin.to_vec(), ..Default::default() };
    let flow = sh.run_program(&program, &mut io);
    let flow = if flow == Flow::Return { Flow::Normal } else { flow };
    Output { out: io.out, err: io.err, status: sh.last_status, flow }
}

pub fn source(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let Some(file) = argv.get(1) else {
        return Output::fail(2, format!("{}: source: filename argument required\n", err_prefix(sh)));
    };
    let path = normalize(&sh.cwd, file);
    match sh.read_file(&path) {
        Ok(bytes) => run_text(sh, &String::from_utf8_lossy(&bytes), stdin),
        Err(e) => Output::fail(1, format!("{}: {file}: {}\n", err_prefix(sh), e.message())),
    }
}

pub fn eval(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    run_text(sh, &argv[1..].join(" "), stdin)
}

pub fn exec(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    if argv.len() < 2 {
        return Output::status(0);
    }
    let mut out = super::run(sh, &argv[1..], stdin);
    out.flow = Flow::Exit;
    out
}

pub fn return_(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let status = argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(sh.last_status);
    Output { out: Vec::new(), err: Vec::new(), status, flow: Flow::Return }
}

pub fn break_(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output { out: Vec::new(), err: Vec::new(), status: 0, flow: Flow::Break }
}

pub fn continue_(_: &mut Shell, _: &[String], _: &[u8]) -> Output {
    Output { out: Vec::new(), err: Vec::new(), status: 0, flow: Flow::Continue }
}

pub fn shift(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let n: usize = argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    if n > sh.positional.len() {
        return Output::status(1);
    }
    sh.positional.drain(..n);
    Output::status(0)
}

pub fn umask(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    if argv.len() == 1 {
        Output::ok("0022\n")
    } else {
        Output::status(0)
    }
}

pub fn ulimit(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    match argv.get(1).map(String::as_str) {
        Some("-n") if argv.len() == 2 => Output::ok("1024\n"),
        Some("-a") => Output::ok("core file size          (blocks, -c) 0\ndata seg size           (kbytes, -d) unlimited\nfile size               (blocks, -f) unlimited\nopen files                      (-n) 1024\nstack size              (kbytes, -s) 8192\ncpu time               (seconds, -t) unlimited\nmax user processes              (-u) 15402\nvirtual memory          (kbytes, -v) unlimited\n"),
        None => Output::ok("unlimited\n"),
        _ => Output::status(0),
    }
}

pub fn read(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let names: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let text = String::from_utf8_lossy(stdin);
    let Some(line) = text.lines().next() else { return Output::status(1) };
    let mut words = line.split_whitespace();
    for (i, name) in names.iter().enumerate() {
        let value = if i + 1 == names.len() {
            words.by_ref().collect::<Vec<_>>().join(" ")
        } else {
            words.next().unwrap_or("").to_string()
        };
        sh.set_var(name, value);
    }
    if names.is_empty() {
        sh.set_var("REPLY", line.to_string());
    }
    Output::status(0)
}

/// `sh`/`bash`: `-c 'cmd'`, `sh file`, or a script on stdin.
pub fn sh(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    if flags.contains('c') {
        let Some(text) = operands.first() else {
            return Output::fail(2, format!("{}: -c: option requires an argument\n", argv[0]));
        };
        let saved = std::mem::replace(&mut sh.positional, operands[1..].to_vec());
        let out = run_text(sh, text, stdin);
        sh.positional = saved;
        return Output { flow: if out.flow == Flow::Exhausted { Flow::Exhausted } else { Flow::Normal }, ..out };
    }
    if let Some(file) = operands.first() {
        let path = normalize(&sh.cwd, file);
        return match sh.fs.stat(&path) {
            Some(_) => run_script(sh, &path, &operands[1..]),
            None => Output::fail(127, format!("{}: {file}: No such file or directory\n", argv[0])),
        };
    }
    if stdin.is_empty() {
        return Output::status(0);
    }
    let out = run_text(sh, &String::from_utf8_lossy(stdin), &[]);
    Output { flow: if out.flow == Flow::Exhausted { Flow::Exhausted } else { Flow::Normal }, ..out }
}

/// Run the file at `path` as a shell script with `args` as `$1…`.
pub fn run_script(sh: &mut Shell, path: &str, args: &[String]) -> Output {
    let bytes = match sh.read_file(path) {
        Ok(b) => b,
        Err(e) => return Output::fail(126, format!("{}: {path}: {}\n", err_prefix(sh), e.message())),
    };
    if bytes.starts_with(b"\x7fELF") {
        // An uploaded binary: a real host would run it; here it "crashes"
        // the way a binary for the wrong architecture does.
        return Output::fail(
            126,
            format!("{}: {path}: cannot execute binary file: Exec format error\n", err_prefix(sh)),
        );
    }
    let saved = std::mem::replace(&mut sh.positional, args.to_vec());
    let out = run_text(sh, &String::from_utf8_lossy(&bytes), &[]);
    sh.positional = saved;
    Output { flow: if out.flow == Flow::Exhausted { Flow::Exhausted } else { Flow::Normal }, ..out }
}

/// The applets this persona's BusyBox was built with.
const BUSYBOX_APPLETS: &[&str] = &[
    "ash", "cat", "chmod", "cp", "date", "dd", "df", "dmesg", "echo", "false", "free", "ftpget", "grep", "head",
    "hostname", "id", "ifconfig", "kill", "ln", "ls", "mkdir", "mount", "mv", "nc", "netstat", "ping", "ps", "pwd",
    "rm", "sed", "sh", "sleep", "tail", "telnet", "tftp", "top", "touch", "true", "uname", "uptime", "wc", "wget",
    "whoami", "tr", "cut", "sort", "uniq", "awk", "md5sum", "base64", "which", "env", "test", "[", "login", "passwd",
    "reboot",
];

/// Whether BusyBox has an applet (or the shell a builtin) called `name`.
pub fn busybox_has(name: &str) -> bool {
    BUSYBOX_APPLETS.contains(&name) || super::lookup(name).is_some_and(|e| e.kind == super::Kind::Builtin)
}

/// `busybox APPLET args`, and bare `busybox` listing its applets.
pub fn busybox(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let version = "BusyBox v1.31.1 (2021-03-11 17:08:44 CST) multi-call binary.";
    let Some(applet) = argv.get(1) else {
        let mut list: Vec<&str> = BUSYBOX_APPLETS.to_vec();
        list.sort_unstable();
        return Output::ok(format!(
            "{version}\nBusyBox is copyrighted by many authors between 1998-2015.\nLicensed under GPLv2. See source distribution for detailed\ncopyright notices.\n\nUsage: busybox [function [arguments]...]\n   or: busybox --list[-full]\n   or: function [arguments]...\n\nCurrently defined functions:\n\t{}\n",
            list.join(", ")
        ));
    };
    if !BUSYBOX_APPLETS.contains(&applet.as_str()) || super::lookup(applet).is_none() {
        // Mirai-family bots probe with `/bin/busybox ECCHI`: the real
        // answer is this line and status 127.
        return Output::fail(127, format!("{applet}: applet not found\n"));
    }
    super::run(sh, &argv[1..], stdin)
}

/// The contents of a file as text, for commands that read operands.
pub fn file_text(sh: &Shell, name: &str) -> Result<Vec<u8>, String> {
    let path = normalize(&sh.cwd, name);
    match sh.fs.stat(&path).map(|n| &n.content) {
        Some(Content::Dir) => Err(format!("{name}: Is a directory")),
        _ => sh.read_file(&path).map_err(|e| format!("{name}: {}", e.message())),
    }
}
