//! File commands over the session filesystem: ls, mkdir, rm, mv, cp,
//! touch, ln, chmod, chown, find, stat, file, du, tar, gzip, dd,
//! readlink, basename, dirname.

use super::{err_prefix, split_flags, Output};
use crate::shell::fs::{basename as base_of, normalize, parent, Content, FsError, Node};
use crate::shell::Shell;

fn owner_name(sh: &Shell, uid: u32) -> String {
    sh.persona.users.iter().find(|u| u.uid == uid).map(|u| u.name.clone()).unwrap_or_else(|| uid.to_string())
}

fn mode_string(node: &Node) -> String {
    let kind = match node.content {
        Content::Dir => 'd',
        Content::Symlink(_) => 'l',
        Content::Device(_) => 'c',
        _ => '-',
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (node.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if node.mode & 0o1000 != 0 {
        s.pop();
        s.push(if node.mode & 1 != 0 { 't' } else { 'T' });
    }
    s
}

/// `ls -l`'s time column: `Mon dd HH:MM` within six months, else the year.
fn ls_time(mtime: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(mtime) else { return String::new() };
    let recent = (crate::shell::now() - mtime).abs() < 183 * 86_400;
    let month = &format!("{:?}", t.month())[..3];
    if recent {
        format!("{month} {:>2} {:02}:{:02}", t.day(), t.hour(), t.minute())
    } else {
        format!("{month} {:>2}  {}", t.day(), t.year())
    }
}

/// A size as coreutils' `-h` prints it (`ls -lh`, `df -h`, `du -h`):
/// powers of 1024, rounded up, one decimal below 10.
pub(crate) fn human(size: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = size as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{size}")
    } else if (v * 10.0).ceil() / 10.0 < 10.0 {
        format!("{:.1}{}", (v * 10.0).ceil() / 10.0, UNITS[u])
    } else {
        format!("{}{}", v.ceil() as u64, UNITS[u])
    }
}

pub fn ls(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, long_flags, mut operands) = split_flags(&argv[1..]);
    let all = flags.contains('a');
    let almost = flags.contains('A') || long_flags.iter().any(|l| l == "almost-all");
    let long = flags.contains('l') || argv[0] == "ll";
    let humanize = flags.contains('h');
    let recursive = flags.contains('R');
    let one = flags.contains('1') || !sh.interactive;
    if operands.is_empty() {
        operands.push(".".into());
    }
    let mut out = String::new();
    let mut err = String::new();
    let mut dirs: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        match sh.fs.stat(&path) {
            None => err.push_str(&format!("ls: cannot access '{o}': No such file or directory\n")),
            Some(n) if n.is_dir() && !flags.contains('d') => dirs.push(o.clone()),
            Some(_) => files.push(o.clone()),
        }
    }
    let render = |sh: &Shell, names: &[(String, String)], out: &mut String, is_dir: bool| {
        if long {
            let total: u64 =
                names.iter().filter_map(|(_, p)| sh.fs.lstat(p)).map(|n| n.size().div_ceil(4096) * 4).sum();
            if is_dir {
                out.push_str(&format!("total {total}\n"));
            }
            for (name, path) in names {
                let Some(n) = sh.fs.lstat(path) else { continue };
                let size = if humanize { human(n.size()) } else { n.size().to_string() };
                let links = if n.is_dir() { 2 } else { 1 };
                let mut line = format!(
                    "{} {links} {} {} {size:>5} {} {name}",
                    mode_string(n),
                    owner_name(sh, n.uid),
                    owner_name(sh, n.gid),
                    ls_time(n.mtime)
                );
                if let Content::Symlink(t) = &n.content {
                    line.push_str(&format!(" -> {t}"));
                }
                out.push_str(&line);
                out.push('\n');
            }
        } else if one {
            for (name, _) in names {
                out.push_str(name);
                out.push('\n');
            }
        } else if !names.is_empty() {
            out.push_str(&names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("  "));
            out.push('\n');
        }
    };
    let file_entries: Vec<(String, String)> = files.iter().map(|f| (f.clone(), normalize(&sh.cwd, f))).collect();
    render(sh, &file_entries, &mut out, false);
    let mut queue: Vec<String> = dirs;
    let mut shown = 0;
    let many = queue.len() + files.len() > 1 || recursive;
    while let Some(d) = (!queue.is_empty()).then(|| queue.remove(0)) {
        shown += 1;
        if shown > 200 {
            break;
        }
        let path = normalize(&sh.cwd, &d);
        let node = sh.fs.stat(&path).cloned();
        if let Some(n) = &node {
            if !sh.may_read(n) {
                err.push_str(&format!("ls: cannot open directory '{d}': Permission denied\n"));
                continue;
            }
        }
        let mut names: Vec<(String, String)> = Vec::new();
        if all {
            names.push((".".into(), path.clone()));
            names.push(("..".into(), parent(&path).to_string()));
        }
        for name in sh.fs.list(&path).unwrap_or_default() {
            if name.starts_with('.') && !all && !almost {
                continue;
            }
            names.push((name.clone(), normalize(&path, &name)));
        }
        if many {
            if shown > 1 || !file_entries.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("{d}:\n"));
        }
        render(sh, &names, &mut out, true);
        if recursive {
            for (name, p) in &names {
                if name != "." && name != ".." && sh.fs.lstat(p).is_some_and(|n| n.is_dir()) {
                    queue.push(format!("{}/{name}", d.trim_end_matches('/')));
                }
            }
        }
    }
    let status = if err.is_empty() { 0 } else { 2 };
    Output::both(out.into_bytes(), err, status)
}

pub fn mkdir(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    if operands.is_empty() {
        return Output::fail(1, "mkdir: missing operand\nTry 'mkdir --help' for more information.\n");
    }
    let mut err = String::new();
    let now = crate::shell::now();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        let chain: Vec<String> = if flags.contains('p') {
            let mut c = Vec::new();
            let mut p = path.clone();
            while p != "/" {
                c.push(p.clone());
                p = parent(&p).to_string();
            }
            c.reverse();
            c
        } else {
            vec![path.clone()]
        };
        for p in chain {
            match sh.fs.stat(&p) {
                Some(_) if p != path || flags.contains('p') => continue,
                Some(_) => {
                    err.push_str(&format!("mkdir: cannot create directory '{o}': File exists\n"));
                    continue;
                }
                None => {}
            }
            if let Err(e) = check_parent_writable(sh, &p).and_then(|_| sh.fs.put(&p, Node::dir(0o755, sh.uid, now))) {
                err.push_str(&format!("mkdir: cannot create directory '{o}': {}\n", e.message()));
                break;
            }
        }
    }
    Output::errors(err)
}

fn check_parent_writable(sh: &Shell, path: &str) -> Result<(), FsError> {
    match sh.fs.stat(parent(path)) {
        None => Err(FsError::NotFound),
        Some(n) if !n.is_dir() => Err(FsError::NotADirectory),
        Some(n) if !sh.may_write(n) => Err(FsError::PermissionDenied),
        Some(_) => Ok(()),
    }
}

pub fn rmdir(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut err = String::new();
    for o in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        let path = normalize(&sh.cwd, o);
        let r = match sh.fs.lstat(&path) {
            Some(n) if !n.is_dir() => Err(FsError::NotADirectory),
            _ => check_parent_writable(sh, &path).and_then(|_| sh.fs.remove(&path, false)),
        };
        if let Err(e) = r {
            err.push_str(&format!("rmdir: failed to remove '{o}': {}\n", e.message()));
        }
    }
    Output::errors(err)
}

pub fn rm(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let recursive = flags.contains('r') || flags.contains('R');
    let force = flags.contains('f');
    if operands.is_empty() && !force {
        return Output::fail(1, "rm: missing operand\nTry 'rm --help' for more information.\n");
    }
    let mut err = String::new();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        match sh.fs.lstat(&path) {
            None if force => {}
            None => err.push_str(&format!("rm: cannot remove '{o}': No such file or directory\n")),
            Some(n) if n.is_dir() && !recursive => err.push_str(&format!("rm: cannot remove '{o}': Is a directory\n")),
            Some(_) if path == "/" => err.push_str("rm: it is dangerous to operate recursively on '/'\nrm: use --no-preserve-root to override this failsafe\n"),
            Some(_) => {
                if let Err(e) = check_parent_writable(sh, &path).and_then(|_| sh.fs.remove(&path, recursive)) {
                    err.push_str(&format!("rm: cannot remove '{o}': {}\n", e.message()));
                }
            }
        }
    }
    Output::errors(err)
}

/// Copy `from` (a file or, with `recursive`, a tree) to `to`.
fn copy_tree(sh: &mut Shell, from: &str, to: &str, recursive: bool, depth: u32) -> Result<(), FsError> {
    let node = sh.fs.stat(from).cloned().ok_or(FsError::NotFound)?;
    if node.is_dir() {
        if !recursive || depth > 16 {
            return Err(FsError::IsADirectory);
        }
        sh.fs.put(to, Node { uid: sh.uid, gid: sh.uid, ..node })?;
        for child in sh.fs.list(from)? {
            copy_tree(sh, &normalize(from, &child), &normalize(to, &child), recursive, depth + 1)?;
        }
        return Ok(());
    }
    if !sh.may_read(&node) {
        return Err(FsError::PermissionDenied);
    }
    let bytes = sh.read_file(from)?;
    let mut copy = Node::file(bytes, node.mode, sh.uid, crate::shell::now());
    copy.size_hint = node.size_hint;
    sh.fs.put(to, copy)
}

fn target_path(sh: &Shell, source: &str, dest: &str) -> String {
    let d = normalize(&sh.cwd, dest);
    if sh.fs.stat(&d).is_some_and(|n| n.is_dir()) {
        normalize(&d, base_of(&normalize(&sh.cwd, source)))
    } else {
        d
    }
}

/// `SOURCE… DEST` of cp and mv, or coreutils' message when DEST is missing.
fn sources_and_destination<'a>(tool: &str, operands: &'a [String]) -> Result<(&'a [String], &'a [String]), Output> {
    if operands.len() < 2 {
        let after = operands.first().map(String::as_str).unwrap_or("");
        return Err(Output::fail(1, format!("{tool}: missing destination file operand after '{after}'\n")));
    }
    Ok(operands.split_at(operands.len() - 1))
}

pub fn cp(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let (sources, dest) = match sources_and_destination("cp", &operands) {
        Ok(split) => split,
        Err(missing) => return missing,
    };
    let mut err = String::new();
    for s in sources {
        let from = normalize(&sh.cwd, s);
        let to = target_path(sh, s, &dest[0]);
        match copy_tree(sh, &from, &to, flags.contains('r') || flags.contains('R') || flags.contains('a'), 0) {
            Ok(()) => {}
            Err(FsError::IsADirectory) => err.push_str(&format!("cp: -r not specified; omitting directory '{s}'\n")),
            Err(FsError::NotFound) => err.push_str(&format!("cp: cannot stat '{s}': No such file or directory\n")),
            Err(e) => err.push_str(&format!("cp: cannot create regular file '{}': {}\n", dest[0], e.message())),
        }
    }
    Output::errors(err)
}

pub fn mv(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (_, _, operands) = split_flags(&argv[1..]);
    let (sources, dest) = match sources_and_destination("mv", &operands) {
        Ok(split) => split,
        Err(missing) => return missing,
    };
    let mut err = String::new();
    for s in sources {
        let from = normalize(&sh.cwd, s);
        let to = target_path(sh, s, &dest[0]);
        let r = copy_tree(sh, &from, &to, true, 0).and_then(|_| sh.fs.remove(&from, true));
        if let Err(e) = r {
            let what = if e == FsError::NotFound {
                format!("cannot stat '{s}'")
            } else {
                format!("cannot move '{s}' to '{}'", dest[0])
            };
            err.push_str(&format!("mv: {what}: {}\n", e.message()));
        }
    }
    Output::errors(err)
}

pub fn touch(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (_, _, operands) = split_flags(&argv[1..]);
    if operands.is_empty() {
        return Output::fail(1, "touch: missing file operand\nTry 'touch --help' for more information.\n");
    }
    let mut err = String::new();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        let r = match sh.fs.stat(&path).cloned() {
            Some(mut n) => {
                n.mtime = crate::shell::now();
                let target = sh.fs.resolve(&path).unwrap_or(path.clone());
                sh.fs.put(&target, n)
            }
            None => check_parent_writable(sh, &path)
                .and_then(|_| sh.fs.put(&path, Node::file(Vec::new(), 0o644, sh.uid, crate::shell::now()))),
        };
        if let Err(e) = r {
            err.push_str(&format!("touch: cannot touch '{o}': {}\n", e.message()));
        }
    }
    Output::errors(err)
}

pub fn ln(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let [target, link] = operands.as_slice() else {
        return Output::fail(1, "ln: missing file operand\nTry 'ln --help' for more information.\n");
    };
    let path = target_path(sh, target, link);
    if !flags.contains('s') {
        return match copy_tree(sh, &normalize(&sh.cwd, target), &path, false, 0) {
            Ok(()) => Output::status(0),
            Err(e) => Output::fail(1, format!("ln: failed to access '{target}': {}\n", e.message())),
        };
    }
    if sh.fs.lstat(&path).is_some() && !flags.contains('f') {
        return Output::fail(1, format!("ln: failed to create symbolic link '{link}': File exists\n"));
    }
    let mut node = Node::file(Vec::new(), 0o777, sh.uid, crate::shell::now());
    node.content = Content::Symlink(target.clone());
    match sh.fs.put(&path, node) {
        Ok(()) => Output::status(0),
        Err(e) => Output::fail(1, format!("ln: failed to create symbolic link '{link}': {}\n", e.message())),
    }
}

/// Apply a chmod mode spec (`755`, `+x`, `u+rwx,go-w`) to `mode`.
fn apply_mode(spec: &str, mode: u32) -> Option<u32> {
    if let Ok(octal) = u32::from_str_radix(spec, 8) {
        return Some(octal & 0o7777);
    }
    let mut mode = mode;
    for clause in spec.split(',') {
        let op_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(op_at);
        let (op, perms) = rest.split_at(1);
        let mut bits = 0;
        for p in perms.chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                's' | 't' | 'X' => 0,
                _ => return None,
            };
        }
        let mask = if who.is_empty() || who.contains('a') {
            0o777
        } else {
            who.chars()
                .map(|w| match w {
                    'u' => 0o700,
                    'g' => 0o070,
                    'o' => 0o007,
                    _ => 0,
                })
                .sum()
        };
        match op {
            "+" => mode |= bits & mask,
            "-" => mode &= !(bits & mask),
            _ => mode = (mode & !mask) | (bits & mask),
        }
    }
    Some(mode)
}

pub fn chmod(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let args: Vec<&String> = argv[1..].iter().filter(|a| *a != "-R" && *a != "-f" && *a != "-v").collect();
    let Some((spec, files)) = args.split_first() else {
        return Output::fail(1, "chmod: missing operand\nTry 'chmod --help' for more information.\n");
    };
    if files.is_empty() {
        return Output::fail(
            1,
            format!("chmod: missing operand after '{spec}'\nTry 'chmod --help' for more information.\n"),
        );
    }
    let mut err = String::new();
    for f in files {
        let path = normalize(&sh.cwd, f);
        let Some(mut node) = sh.fs.stat(&path).cloned() else {
            err.push_str(&format!("chmod: cannot access '{f}': No such file or directory\n"));
            continue;
        };
        if sh.uid != 0 && node.uid != sh.uid {
            err.push_str(&format!("chmod: changing permissions of '{f}': Operation not permitted\n"));
            continue;
        }
        let Some(mode) = apply_mode(spec, node.mode) else {
            return Output::fail(
                1,
                format!("chmod: invalid mode: '{spec}'\nTry 'chmod --help' for more information.\n"),
            );
        };
        node.mode = mode;
        let target = sh.fs.resolve(&path).unwrap_or(path);
        if let Err(e) = sh.fs.put(&target, node) {
            err.push_str(&format!("chmod: changing permissions of '{f}': {}\n", e.message()));
        }
    }
    Output::errors(err)
}

pub fn chown(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let args: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let Some((owner, files)) = args.split_first() else {
        return Output::fail(1, format!("{}: missing operand\n", argv[0]));
    };
    let name = owner.split([':', '.']).next().unwrap_or("");
    let uid = sh.persona.user(name).map(|u| u.uid).or_else(|| name.parse().ok());
    let Some(uid) = uid else {
        return Output::fail(1, format!("{}: invalid user: '{owner}'\n", argv[0]));
    };
    let mut err = String::new();
    for f in files {
        let path = normalize(&sh.cwd, f);
        match sh.fs.stat(&path).cloned() {
            None => err.push_str(&format!("{}: cannot access '{f}': No such file or directory\n", argv[0])),
            Some(_) if sh.uid != 0 => {
                err.push_str(&format!("{}: changing ownership of '{f}': Operation not permitted\n", argv[0]))
            }
            Some(mut n) => {
                n.uid = uid;
                n.gid = uid;
                let _ = sh.fs.put(&sh.fs.resolve(&path).unwrap_or(path), n);
            }
        }
    }
    Output::errors(err)
}

pub fn find(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut roots = Vec::new();
    let mut name: Option<String> = None;
    let mut kind: Option<char> = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-name" | "-iname" => {
                i += 1;
                name = argv.get(i).cloned();
            }
            "-type" => {
                i += 1;
                kind = argv.get(i).and_then(|t| t.chars().next());
            }
            a if a.starts_with('-') => {
                // -perm, -user, -exec …: take their argument and ignore them.
                if matches!(a, "-perm" | "-user" | "-size" | "-mtime" | "-maxdepth" | "-newer") {
                    i += 1;
                }
                if a == "-exec" {
                    while i < argv.len() && argv[i] != ";" && argv[i] != "+" {
                        i += 1;
                    }
                }
            }
            a => roots.push(a.to_string()),
        }
        i += 1;
    }
    if roots.is_empty() {
        roots.push(".".into());
    }
    let mut out = String::new();
    let mut err = String::new();
    let mut visited = 0;
    for root in roots {
        let mut stack = vec![(root.clone(), normalize(&sh.cwd, &root))];
        if sh.fs.stat(&stack[0].1).is_none() {
            err.push_str(&format!("find: '{root}': No such file or directory\n"));
            continue;
        }
        while let Some((shown, path)) = stack.pop() {
            visited += 1;
            if visited > 5_000 {
                break;
            }
            let Some(node) = sh.fs.lstat(&path).cloned() else { continue };
            let name_ok = name.as_deref().is_none_or(|n| crate::shell::interp::glob_match(n, base_of(&path)));
            let kind_ok = match kind {
                Some('d') => node.is_dir(),
                Some('f') => matches!(node.content, Content::File(_) | Content::Dynamic(_)),
                Some('l') => matches!(node.content, Content::Symlink(_)),
                _ => true,
            };
            if name_ok && kind_ok {
                out.push_str(&shown);
                out.push('\n');
            }
            if node.is_dir() {
                if !sh.may_read(&node) {
                    err.push_str(&format!("find: '{shown}': Permission denied\n"));
                    continue;
                }
                let mut children = sh.fs.list(&path).unwrap_or_default();
                children.reverse();
                for c in children {
                    stack.push((format!("{}/{c}", shown.trim_end_matches('/')), normalize(&path, &c)));
                }
            }
        }
    }
    Output::both(out.into_bytes(), err.clone(), i32::from(!err.is_empty()))
}

pub fn stat(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut out = String::new();
    let mut err = String::new();
    for f in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        let path = normalize(&sh.cwd, f);
        let Some(n) = sh.fs.lstat(&path) else {
            err.push_str(&format!("stat: cannot statx '{f}': No such file or directory\n"));
            continue;
        };
        let kind = match n.content {
            Content::Dir => "directory",
            Content::Symlink(_) => "symbolic link",
            Content::Device(_) => "character special file",
            _ if n.size() == 0 => "regular empty file",
            _ => "regular file",
        };
        let when = time::OffsetDateTime::from_unix_timestamp(n.mtime)
            .map(|t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000000000 +0000",
                    t.year(),
                    t.month() as u8,
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  File: {f}\n  Size: {:<15} Blocks: {:<10} IO Block: 4096   {kind}\nDevice: 803h/2051d\tInode: {:<11} Links: 1\nAccess: ({:04o}/{})  Uid: ({:>5}/{:>8})   Gid: ({:>5}/{:>8})\nAccess: {when}\nModify: {when}\nChange: {when}\n Birth: -\n",
            n.size(),
            n.size().div_ceil(512),
            path.bytes().fold(131_073u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 2_000_000,
            n.mode,
            mode_string(n),
            n.uid,
            owner_name(sh, n.uid),
            n.gid,
            owner_name(sh, n.gid)
        ));
    }
    Output::both(out.into_bytes(), err.clone(), i32::from(!err.is_empty()))
}

pub fn file(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut out = String::new();
    for f in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        let path = normalize(&sh.cwd, f);
        let desc = match sh.fs.lstat(&path).map(|n| n.content.clone()) {
            None => format!("cannot open `{f}' (No such file or directory)"),
            Some(Content::Dir) => "directory".into(),
            Some(Content::Symlink(t)) => format!("symbolic link to {t}"),
            Some(Content::Device(_)) => "character special (1/3)".into(),
            Some(Content::Dynamic(_)) => "empty".into(),
            Some(Content::File(b)) => describe_bytes(&b, sh.persona.machine.as_str()),
        };
        out.push_str(&format!("{f}: {desc}\n"));
    }
    Output::ok(out)
}

/// What `file` says of some bytes, by their magic.
pub fn describe_bytes(b: &[u8], machine: &str) -> String {
    if b.starts_with(b"\x7fELF") {
        if machine.starts_with("arm") {
            "ELF 32-bit LSB executable, ARM, EABI5 version 1 (SYSV), dynamically linked, interpreter /lib/ld-linux.so.3, stripped".into()
        } else {
            "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), dynamically linked, interpreter /lib64/ld-linux-x86-64.so.2, stripped".into()
        }
    } else if b.is_empty() {
        "empty".into()
    } else if b.starts_with(b"#!") {
        let interp = String::from_utf8_lossy(&b[2..b.len().min(64)]).lines().next().unwrap_or("").trim().to_string();
        format!("{} script, ASCII text executable", interp.rsplit('/').next().unwrap_or("sh"))
    } else if b.starts_with(&[0x1f, 0x8b]) {
        "gzip compressed data".into()
    } else if b.starts_with(b"PK\x03\x04") {
        "Zip archive data".into()
    } else if std::str::from_utf8(b).is_ok() {
        "ASCII text".into()
    } else {
        "data".into()
    }
}

pub fn du(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, mut operands) = split_flags(&argv[1..]);
    if operands.is_empty() {
        operands.push(".".into());
    }
    let mut out = String::new();
    for o in operands {
        let path = normalize(&sh.cwd, &o);
        let size = sh.fs.stat(&path).map(|n| n.size()).unwrap_or(0).div_ceil(1024) + 4;
        let shown = if flags.contains('h') { human(size * 1024) } else { size.to_string() };
        out.push_str(&format!("{shown}\t{o}\n"));
    }
    Output::ok(out)
}

pub fn tar(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let flags = if flags.is_empty() { argv.get(1).cloned().unwrap_or_default() } else { flags };
    if flags.contains('x') || flags.contains('t') {
        let Some(archive) = operands.iter().find(|o| o.contains(".tar") || o.ends_with(".tgz")).or(operands.first())
        else {
            return Output::fail(2, "tar: Refusing to read archive contents from terminal (missing -f option?)\ntar: Error is not recoverable: exiting now\n");
        };
        return match file_text(sh, archive) {
            Ok(_) => Output::fail(2, "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors\n"),
            Err(_) => Output::fail(2, format!("tar: {archive}: Cannot open: No such file or directory\ntar: Error is not recoverable: exiting now\n")),
        };
    }
    if flags.contains('c') {
        let Some(archive) = operands.first() else {
            return Output::fail(2, "tar: Cowardly refusing to create an empty archive\n");
        };
        let path = normalize(&sh.cwd, archive);
        let _ = sh.write_file(&path, vec![0x1f, 0x8b, 8, 0], false);
        return Output::status(0);
    }
    Output::fail(2, "tar: You must specify one of the '-Acdtrux', '--delete' or '--test-label' options\nTry 'tar --help' or 'tar --usage' for more information.\n")
}

fn file_text(sh: &Shell, name: &str) -> Result<Vec<u8>, String> {
    super::builtins::file_text(sh, name)
}

pub fn gzip(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let decompress = flags.contains('d') || argv[0] == "gunzip";
    let mut err = String::new();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        if sh.fs.stat(&path).is_none() {
            err.push_str(&format!("gzip: {o}: No such file or directory\n"));
        } else if decompress {
            err.push_str(&format!("gzip: {o}: not in gzip format\n"));
        } else {
            let bytes = sh.read_file(&path).unwrap_or_default();
            let mut gz = vec![0x1f, 0x8b, 8, 0];
            gz.extend_from_slice(&bytes[..bytes.len().min(64)]);
            let _ = sh.write_file(&format!("{path}.gz"), gz, false);
            let _ = sh.fs.remove(&path, false);
        }
    }
    Output::errors(err)
}

pub fn dd(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let mut input = None;
    let mut output = None;
    let (mut bs, mut count) = (512u64, None::<u64>);
    for a in &argv[1..] {
        if let Some((k, v)) = a.split_once('=') {
            let num = |v: &str| -> u64 {
                let (n, mul) = match v.chars().last() {
                    Some('K') | Some('k') => (&v[..v.len() - 1], 1024),
                    Some('M') => (&v[..v.len() - 1], 1024 * 1024),
                    _ => (v, 1),
                };
                n.parse::<u64>().unwrap_or(0).saturating_mul(mul)
            };
            match k {
                "if" => input = Some(v.to_string()),
                "of" => output = Some(v.to_string()),
                "bs" => bs = num(v).max(1),
                "count" => count = Some(num(v)),
                _ => {}
            }
        }
    }
    let data = match &input {
        Some(f) => match sh.read_file(&normalize(&sh.cwd, f)) {
            Ok(b) => b,
            Err(e) => return Output::fail(1, format!("dd: failed to open '{f}': {}\n", e.message())),
        },
        None => stdin.to_vec(),
    };
    let want = count.map(|c| c.saturating_mul(bs)).unwrap_or(data.len() as u64).min(16 * 1024 * 1024);
    let mut bytes = data;
    if (bytes.len() as u64) < want && input.as_deref().is_some_and(|i| i == "/dev/zero" || i == "/dev/urandom") {
        bytes = bytes.repeat((want as usize).div_ceil(bytes.len().max(1)).min(256));
    }
    bytes.truncate(want as usize);
    let n = bytes.len() as u64;
    let records = n.div_ceil(bs);
    let report = format!(
        "{records}+0 records in\n{records}+0 records out\n{n} bytes ({}) copied, 0.00{} s, {} MB/s\n",
        human(n),
        1 + n % 9,
        100 + n % 400
    );
    match output {
        Some(f) => {
            let path = normalize(&sh.cwd, &f);
            match sh.write_file(&path, bytes, false) {
                Ok(()) => Output::fail(0, report),
                Err(e) => Output::fail(1, format!("dd: failed to open '{f}': {}\n", e.message())),
            }
        }
        None => Output::both(bytes, report, 0),
    }
}

pub fn readlink(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let mut out = String::new();
    for o in operands {
        let path = normalize(&sh.cwd, &o);
        if flags.contains('f') || argv[0] == "realpath" {
            out.push_str(&sh.fs.resolve(&path).unwrap_or(path));
            out.push('\n');
        } else if let Some(Content::Symlink(t)) = sh.fs.lstat(&path).map(|n| &n.content) {
            out.push_str(t);
            out.push('\n');
        } else {
            return Output::status(1);
        }
    }
    Output::ok(out)
}

pub fn basename(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    match argv.get(1) {
        Some(p) => {
            let mut b = base_of(p.trim_end_matches('/')).to_string();
            if let Some(suffix) = argv.get(2) {
                if b != *suffix {
                    b = b.strip_suffix(suffix.as_str()).unwrap_or(&b).to_string();
                }
            }
            Output::ok(format!("{b}\n"))
        }
        None => Output::fail(1, "basename: missing operand\nTry 'basename --help' for more information.\n"),
    }
}

pub fn dirname(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let _ = err_prefix(sh);
    match argv.get(1) {
        Some(p) if p.contains('/') => {
            let trimmed = p.trim_end_matches('/');
            let d = match trimmed.rfind('/') {
                Some(0) => "/",
                Some(i) => &trimmed[..i],
                None => ".",
            };
            Output::ok(format!("{d}\n"))
        }
        Some(_) => Output::ok(".\n"),
        None => Output::fail(1, "dirname: missing operand\nTry 'dirname --help' for more information.\n"),
    }
}
