//! Text tools: cat, head, tail, wc, sort, uniq, cut, tr, grep, sed, awk,
//! base64, checksums, tee, rev, yes, seq, xargs — the parts of each that
//! scripts and bots use, with coreutils' messages and exit codes.

use base64::Engine as _;

use super::builtins::file_text;
use super::{split_flags, Output};
use crate::shell::fs::normalize;
use crate::shell::Shell;

/// Most bytes an endless producer (`yes`, `cat /dev/zero`) emits before
/// the budget stops it.
const ENDLESS: usize = 64 * 1024;

/// The inputs of a filter: its file operands, or stdin when there are none
/// (or for `-`). Errors are collected as coreutils prints them.
pub(crate) fn inputs(sh: &Shell, tool: &str, operands: &[String], stdin: &[u8]) -> (Vec<Vec<u8>>, String) {
    if operands.is_empty() {
        return (vec![stdin.to_vec()], String::new());
    }
    let mut data = Vec::new();
    let mut err = String::new();
    for o in operands {
        if o == "-" {
            data.push(stdin.to_vec());
            continue;
        }
        match file_text(sh, o) {
            Ok(b) => data.push(b),
            Err(e) => err.push_str(&format!("{tool}: {e}\n")),
        }
    }
    (data, err)
}

fn status_of(err: &str) -> i32 {
    i32::from(!err.is_empty())
}

pub fn cat(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let (data, err) = inputs(sh, "cat", &operands, stdin);
    let mut out: Vec<u8> = data.concat();
    if flags.contains('n') {
        let text = String::from_utf8_lossy(&out).into_owned();
        out = text.lines().enumerate().map(|(i, l)| format!("{:>6}\t{l}\n", i + 1)).collect::<String>().into_bytes();
    }
    out.truncate(ENDLESS.max(out.len().min(256 * 1024)));
    Output::both(out, err.clone(), status_of(&err))
}

fn count_arg(flags: &[String], short: &str, default: i64) -> (i64, bool) {
    // `-n 5`, `-n5`, `-5`, `-n +5` (tail: from line 5).
    let mut i = 0;
    while i < flags.len() {
        let a = &flags[i];
        if a == short {
            if let Some(v) = flags.get(i + 1) {
                return (v.trim_start_matches('+').parse().unwrap_or(default), v.starts_with('+'));
            }
        } else if let Some(v) = a.strip_prefix(short) {
            return (v.trim_start_matches('+').parse().unwrap_or(default), v.starts_with('+'));
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) {
            return (a[1..].parse().unwrap_or(default), false);
        }
        i += 1;
    }
    (default, false)
}

/// Operands of head/tail (arguments that are not `-n N` or `-N`).
fn operands_skipping_counts(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "-n" || a == "-c" {
            skip = true;
        } else if !a.starts_with('-') || a == "-" {
            out.push(a.clone());
        }
    }
    out
}

pub fn head(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (n, _) = count_arg(&argv[1..], "-n", 10);
    let (data, err) = inputs(sh, "head", &operands_skipping_counts(&argv[1..]), stdin);
    let mut out = Vec::new();
    for d in data {
        let text = String::from_utf8_lossy(&d);
        for l in text.split_inclusive('\n').take(n.max(0) as usize) {
            out.extend_from_slice(l.as_bytes());
        }
    }
    Output::both(out, err.clone(), status_of(&err))
}

pub fn tail(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (n, from_start) = count_arg(&argv[1..], "-n", 10);
    let (data, err) = inputs(sh, "tail", &operands_skipping_counts(&argv[1..]), stdin);
    let mut out = Vec::new();
    for d in data {
        let text = String::from_utf8_lossy(&d);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let start = if from_start { (n.max(1) - 1) as usize } else { lines.len().saturating_sub(n.max(0) as usize) };
        for l in lines.iter().skip(start) {
            out.extend_from_slice(l.as_bytes());
        }
    }
    Output::both(out, err.clone(), status_of(&err))
}

pub fn wc(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let (data, err) = inputs(sh, "wc", &operands, stdin);
    let mut out = String::new();
    let (mut tl, mut tw, mut tc) = (0, 0, 0);
    let columns = if flags.is_empty() { 3 } else { flags.chars().filter(|c| "lwcm".contains(*c)).count() };
    // GNU wc pads columns to the width of the largest count it may print:
    // the total byte count's digits for files, 7 for a pipe; one column
    // alone is not padded.
    let total_bytes: usize = data.iter().map(Vec::len).sum();
    let width = if columns <= 1 {
        0
    } else if operands.is_empty() {
        7
    } else {
        total_bytes.to_string().len()
    };
    let show = |l: usize, w: usize, c: usize, name: &str| -> String {
        let mut cols = Vec::new();
        let all = flags.is_empty();
        if all || flags.contains('l') {
            cols.push(l);
        }
        if all || flags.contains('w') {
            cols.push(w);
        }
        if all || flags.contains('c') || flags.contains('m') {
            cols.push(c);
        }
        let mut s = cols.iter().map(|v| format!("{v:>width$}")).collect::<Vec<_>>().join(" ");
        if !name.is_empty() {
            s.push(' ');
            s.push_str(name);
        }
        s.push('\n');
        s
    };
    for (i, d) in data.iter().enumerate() {
        let text = String::from_utf8_lossy(d);
        let (l, w, c) = (d.iter().filter(|b| **b == b'\n').count(), text.split_whitespace().count(), d.len());
        tl += l;
        tw += w;
        tc += c;
        out.push_str(&show(l, w, c, operands.get(i).map(String::as_str).unwrap_or("")));
    }
    if operands.len() > 1 {
        out.push_str(&show(tl, tw, tc, "total"));
    }
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

fn lines_of(data: &[Vec<u8>]) -> Vec<String> {
    data.iter().flat_map(|d| String::from_utf8_lossy(d).lines().map(str::to_string).collect::<Vec<_>>()).collect()
}

pub fn sort(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let (data, err) = inputs(sh, "sort", &operands, stdin);
    let mut lines = lines_of(&data);
    if flags.contains('n') {
        lines.sort_by(|a, b| {
            let num = |s: &str| {
                s.trim()
                    .split(|c: char| !c.is_ascii_digit() && c != '-')
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            num(a).cmp(&num(b)).then(a.cmp(b))
        });
    } else {
        lines.sort();
    }
    if flags.contains('r') {
        lines.reverse();
    }
    if flags.contains('u') {
        lines.dedup();
    }
    let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

pub fn uniq(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let (data, err) = inputs(sh, "uniq", &operands, stdin);
    let mut groups: Vec<(usize, String)> = Vec::new();
    for l in lines_of(&data) {
        match groups.last_mut() {
            Some((n, last)) if *last == l => *n += 1,
            _ => groups.push((1, l)),
        }
    }
    let out: String = groups
        .iter()
        .filter(|(n, _)| !flags.contains('d') || *n > 1)
        .map(|(n, l)| if flags.contains('c') { format!("{n:>7} {l}\n") } else { format!("{l}\n") })
        .collect();
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

/// `N`, `N-M`, `N-`, `-M`, comma-separated (1-based) as a predicate.
fn ranges(spec: &str) -> impl Fn(usize) -> bool {
    let parts: Vec<(usize, usize)> = spec
        .split(',')
        .filter_map(|r| {
            let (a, b) = match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(1), b.parse().unwrap_or(usize::MAX)),
                None => {
                    let n = r.parse().ok()?;
                    (n, n)
                }
            };
            Some((a, b))
        })
        .collect();
    move |i| parts.iter().any(|(a, b)| i >= *a && i <= *b)
}

pub fn cut(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let mut delim = '\t';
    let mut fields = None;
    let mut chars = None;
    let mut operands = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        let value = |i: &mut usize, prefix: &str| -> String {
            if a.len() > prefix.len() {
                a[prefix.len()..].to_string()
            } else {
                *i += 1;
                argv.get(*i).cloned().unwrap_or_default()
            }
        };
        if a.starts_with("-d") {
            delim = value(&mut i, "-d").chars().next().unwrap_or('\t');
        } else if a.starts_with("-f") {
            fields = Some(value(&mut i, "-f"));
        } else if a.starts_with("-c") || a.starts_with("-b") {
            chars = Some(value(&mut i, "-c"));
        } else {
            operands.push(a.clone());
        }
        i += 1;
    }
    if fields.is_none() && chars.is_none() {
        return Output::fail(
            1,
            "cut: you must specify a list of bytes, characters, or fields\nTry 'cut --help' for more information.\n",
        );
    }
    let (data, err) = inputs(sh, "cut", &operands, stdin);
    let mut out = String::new();
    for l in lines_of(&data) {
        if let Some(f) = &fields {
            let keep = ranges(f);
            if !l.contains(delim) {
                out.push_str(&l);
            } else {
                let picked: Vec<&str> =
                    l.split(delim).enumerate().filter(|(i, _)| keep(i + 1)).map(|(_, s)| s).collect();
                out.push_str(&picked.join(&delim.to_string()));
            }
        } else if let Some(c) = &chars {
            let keep = ranges(c);
            out.extend(l.chars().enumerate().filter(|(i, _)| keep(i + 1)).map(|(_, c)| c));
        }
        out.push('\n');
    }
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

fn expand_set(spec: &str) -> Vec<char> {
    let named = match spec {
        "[:lower:]" => Some(('a'..='z').collect()),
        "[:upper:]" => Some(('A'..='Z').collect()),
        "[:digit:]" => Some(('0'..='9').collect()),
        "[:space:]" => Some(vec![' ', '\t', '\n', '\r']),
        _ => None,
    };
    if let Some(n) = named {
        return n;
    }
    let raw = String::from_utf8_lossy(&unescape_echo(spec)).chars().collect::<Vec<char>>();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if i + 2 < raw.len() && raw[i + 1] == '-' && raw[i] <= raw[i + 2] {
            out.extend(raw[i]..=raw[i + 2]);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
        if out.len() > 1024 {
            break;
        }
    }
    out
}

pub fn tr(_: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let Some(from) = operands.first() else {
        return Output::fail(1, "tr: missing operand\nTry 'tr --help' for more information.\n");
    };
    let from = expand_set(from);
    let text = String::from_utf8_lossy(stdin);
    let out: String = if flags.contains('d') {
        text.chars().filter(|c| !from.contains(c)).collect()
    } else {
        let Some(to) = operands.get(1) else {
            return Output::fail(
                1,
                format!("tr: missing operand after '{}'\nTwo strings must be given when translating.\n", operands[0]),
            );
        };
        let to = expand_set(to);
        let mut result: String = text
            .chars()
            .map(|c| match from.iter().position(|f| *f == c) {
                Some(i) => *to.get(i).or(to.last()).unwrap_or(&c),
                None => c,
            })
            .collect();
        if flags.contains('s') {
            let mut squeezed = String::with_capacity(result.len());
            for c in result.chars() {
                if !(squeezed.ends_with(c) && to.contains(&c)) {
                    squeezed.push(c);
                }
            }
            result = squeezed;
        }
        result
    };
    Output::ok(out)
}

/// A grep pattern: fixed string, or a small regex subset (`^`, `$`, `.`,
/// `.*`, alternation with `\|` or `-E |`) matched without backtracking blowup.
fn line_matches(pattern: &str, line: &str, ignore_case: bool, extended: bool) -> bool {
    let (p, l) = if ignore_case {
        (pattern.to_lowercase(), line.to_lowercase())
    } else {
        (pattern.to_string(), line.to_string())
    };
    let alternatives: Vec<&str> = if extended { p.split('|').collect() } else { p.split("\\|").collect() };
    alternatives.iter().any(|alt| {
        let (anchored_start, alt) = match alt.strip_prefix('^') {
            Some(a) => (true, a),
            None => (false, *alt),
        };
        let (anchored_end, alt) = match alt.strip_suffix('$') {
            Some(a) => (true, a),
            None => (false, alt),
        };
        let glob = alt.replace(".*", "*").replace('.', "?");
        let glob = format!("{}{glob}{}", if anchored_start { "" } else { "*" }, if anchored_end { "" } else { "*" });
        crate::shell::interp::glob_match(&glob, &l)
    })
}

pub fn grep(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let mut flags = String::new();
    let mut patterns = Vec::new();
    let mut operands = Vec::new();
    // `-m N`: stop after N matching lines (per file).
    let mut max_count: Option<usize> = None;
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "-e" {
            i += 1;
            patterns.extend(argv.get(i).cloned());
        } else if let Some(n) = a.strip_prefix("-m").or_else(|| a.strip_prefix("--max-count=")) {
            let n = if n.is_empty() {
                i += 1;
                argv.get(i).cloned().unwrap_or_default()
            } else {
                n.to_string()
            };
            match n.parse::<usize>() {
                Ok(n) => max_count = Some(n),
                Err(_) => return Output::fail(2, "grep: invalid max count\n"),
            }
        } else if a.starts_with("--") {
            if a == "--color=auto" || a.starts_with("--color") {
            } else {
                flags.push_str(match a.as_str() {
                    "--invert-match" => "v",
                    "--ignore-case" => "i",
                    "--count" => "c",
                    _ => "",
                });
            }
        } else if a.starts_with('-') && a.len() > 1 {
            flags.push_str(&a[1..]);
        } else if patterns.is_empty() {
            patterns.push(a.clone());
        } else {
            operands.push(a.clone());
        }
        i += 1;
    }
    if argv[0] == "egrep" {
        flags.push('E');
    }
    let Some(_) = patterns.first() else {
        return Output::fail(
            2,
            "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n",
        );
    };
    let (data, err) = inputs(sh, "grep", &operands, stdin);
    let many = operands.len() > 1;
    let mut out = String::new();
    let mut total = 0;
    for (idx, d) in data.iter().enumerate() {
        let text = String::from_utf8_lossy(d);
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            if max_count.is_some_and(|m| count >= m) {
                break;
            }
            let hit = patterns.iter().any(|p| line_matches(p, line, flags.contains('i'), flags.contains('E')));
            if hit != flags.contains('v') {
                count += 1;
                if !flags.contains('c') && !flags.contains('q') && !flags.contains('l') {
                    if many {
                        out.push_str(&format!("{}:", operands[idx]));
                    }
                    if flags.contains('n') {
                        out.push_str(&format!("{}:", n + 1));
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if flags.contains('c') {
            if many {
                out.push_str(&format!("{}:", operands[idx]));
            }
            out.push_str(&format!("{count}\n"));
        }
        if flags.contains('l') && count > 0 {
            out.push_str(&format!("{}\n", operands.get(idx).map(String::as_str).unwrap_or("(standard input)")));
        }
        total += count;
    }
    if flags.contains('q') {
        out.clear();
    }
    let status = if !err.is_empty() && total == 0 { 2 } else { i32::from(total == 0) };
    Output::both(out.into_bytes(), err, status)
}

/// `sed`: `s/a/b/[g]`, `-n '/pat/p'`, `Nd`, `/pat/d`, `-i` in place.
pub fn sed(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let mut operands = operands.into_iter();
    let Some(script) = operands.next() else {
        return Output::fail(1, "Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...\n");
    };
    let files: Vec<String> = operands.collect();
    let (data, err) = inputs(sh, "sed", &files, stdin);
    let quiet = flags.contains('n');
    let apply = |text: &str| -> String {
        let mut out = String::new();
        for (n, line) in text.lines().enumerate() {
            let mut line = line.to_string();
            let mut print = !quiet;
            let mut deleted = false;
            for cmd in script.split(';').map(str::trim) {
                if let Some(rest) = cmd.strip_prefix('s').filter(|r| !r.is_empty()) {
                    let d = rest.chars().next().unwrap_or('/');
                    let parts: Vec<&str> = rest[d.len_utf8()..].splitn(3, d).collect();
                    if parts.len() >= 2 {
                        let global = parts.get(2).is_some_and(|f| f.contains('g'));
                        line = if parts[0].is_empty() {
                            line
                        } else if global {
                            line.replace(parts[0], parts[1])
                        } else {
                            line.replacen(parts[0], parts[1], 1)
                        };
                    }
                } else if let Some(pat) = cmd.strip_prefix('/').and_then(|c| c.rsplit_once('/')) {
                    if line_matches(pat.0, &line, false, false) {
                        match pat.1 {
                            "d" => deleted = true,
                            "p" => print = true,
                            _ => {}
                        }
                    }
                } else if let Some(num) = cmd.strip_suffix('d').and_then(|c| c.parse::<usize>().ok()) {
                    deleted |= num == n + 1;
                } else if let Some(num) = cmd.strip_suffix('p').and_then(|c| c.parse::<usize>().ok()) {
                    print |= num == n + 1;
                }
            }
            if print && !deleted {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    };
    if flags.contains('i') {
        for f in &files {
            if let Ok(bytes) = file_text(sh, f) {
                let path = normalize(&sh.cwd, f);
                let _ = sh.write_file(&path, apply(&String::from_utf8_lossy(&bytes)).into_bytes(), false);
            }
        }
        return Output::both(Vec::new(), err.clone(), status_of(&err));
    }
    let out: String = data.iter().map(|d| apply(&String::from_utf8_lossy(d))).collect();
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

pub fn base64(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, long, operands) = split_flags(&argv[1..]);
    let (data, err) = inputs(sh, "base64", &operands, stdin);
    let input = data.concat();
    if flags.contains('d') || long.iter().any(|l| l == "decode") {
        let cleaned: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        return match base64::engine::general_purpose::STANDARD.decode(&cleaned) {
            Ok(bytes) => Output::ok(bytes),
            Err(_) => Output::fail(1, "base64: invalid input\n"),
        };
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&input);
    let mut out = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

fn digest_tool(sh: &Shell, tool: &str, argv: &[String], stdin: &[u8], hash: fn(&[u8]) -> String) -> Output {
    let (_, _, operands) = split_flags(&argv[1..]);
    let mut out = String::new();
    let mut err = String::new();
    if operands.is_empty() {
        out.push_str(&format!("{}  -\n", hash(stdin)));
    }
    for o in &operands {
        match file_text(sh, o) {
            Ok(b) => out.push_str(&format!("{}  {o}\n", hash(&b))),
            Err(e) => err.push_str(&format!("{tool}: {e}\n")),
        }
    }
    Output::both(out.into_bytes(), err.clone(), status_of(&err))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn md5sum(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    digest_tool(sh, "md5sum", argv, stdin, |b| hex(&md5(b)))
}

pub fn sha256sum(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    digest_tool(sh, "sha256sum", argv, stdin, |b| hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref()))
}

pub fn sha1sum(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    digest_tool(sh, "sha1sum", argv, stdin, |b| {
        hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b).as_ref())
    })
}

fn md5(input: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(input).into()
}

pub fn tee(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let (flags, _, operands) = split_flags(&argv[1..]);
    let mut err = String::new();
    for o in &operands {
        let path = normalize(&sh.cwd, o);
        if let Err(e) = sh.write_file(&path, stdin.to_vec(), flags.contains('a')) {
            err.push_str(&format!("tee: {o}: {}\n", e.message()));
        }
    }
    Output::both(stdin.to_vec(), err.clone(), status_of(&err))
}

pub fn rev(_: &mut Shell, _: &[String], stdin: &[u8]) -> Output {
    let out: String =
        String::from_utf8_lossy(stdin).lines().map(|l| format!("{}\n", l.chars().rev().collect::<String>())).collect();
    Output::ok(out)
}

/// `yes`: endless on a real host; here it stops at a bound, as if the
/// reader went away.
pub fn yes(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let word = if argv.len() > 1 { argv[1..].join(" ") } else { "y".into() };
    let line = format!("{word}\n");
    let mut out = String::with_capacity(ENDLESS);
    while out.len() + line.len() <= ENDLESS {
        out.push_str(&line);
    }
    Output { out: out.into_bytes(), err: Vec::new(), status: 141, flow: crate::shell::interp::Flow::Normal }
}

pub fn seq(_: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let nums: Vec<i64> = argv[1..].iter().filter_map(|a| a.parse().ok()).collect();
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, s, l] => (*f, *s, *l),
        _ => return Output::fail(1, "seq: missing operand\nTry 'seq --help' for more information.\n"),
    };
    if step == 0 {
        return Output::fail(1, "seq: invalid Zero increment value: '0'\n");
    }
    let mut out = String::new();
    let mut v = first;
    while (step > 0 && v <= last) || (step < 0 && v >= last) {
        out.push_str(&format!("{v}\n"));
        if out.len() > ENDLESS {
            break;
        }
        v += step;
    }
    Output::ok(out)
}

pub fn xargs(sh: &mut Shell, argv: &[String], stdin: &[u8]) -> Output {
    let mut command: Vec<String> = argv[1..].iter().filter(|a| !a.starts_with('-')).cloned().collect();
    if command.is_empty() {
        command.push("echo".into());
    }
    command.extend(String::from_utf8_lossy(stdin).split_whitespace().take(1024).map(str::to_string));
    super::run(sh, &command, &[])
}

/// Backslash escapes as `echo -e` interprets them (`\c` stops output).
pub fn unescape_echo(text: &str) -> Vec<u8> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            if chars.get(i + 1) == Some(&'c') {
                break;
            }
            let (bytes, used) = unescape_one(&chars[i..]);
            out.extend_from_slice(&bytes);
            i += used;
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(chars[i].encode_utf8(&mut buf).as_bytes());
            i += 1;
        }
    }
    out
}

/// One escape at the start of `chars` (which begins with `\`): its bytes
/// and how many characters it used.
pub fn unescape_one(chars: &[char]) -> (Vec<u8>, usize) {
    let Some(&c) = chars.get(1) else { return (vec![b'\\'], 1) };
    let simple = |b: u8| (vec![b], 2);
    match c {
        'n' => simple(b'\n'),
        't' => simple(b'\t'),
        'r' => simple(b'\r'),
        'a' => simple(7),
        'b' => simple(8),
        'e' | 'E' => simple(0x1b),
        'f' => simple(12),
        'v' => simple(11),
        '\\' => simple(b'\\'),
        'x' => {
            let digits: String = chars[2..].iter().take(2).take_while(|c| c.is_ascii_hexdigit()).collect();
            match u8::from_str_radix(&digits, 16) {
                Ok(v) => (vec![v], 2 + digits.len()),
                Err(_) => (b"\\x".to_vec(), 2),
            }
        }
        '0'..='7' => {
            let start = if c == '0' { 2 } else { 1 };
            let digits: String = chars[start..].iter().take(3).take_while(|c| c.is_digit(8)).collect();
            let v = u32::from_str_radix(if digits.is_empty() { "0" } else { &digits }, 8).unwrap_or(0);
            (vec![v as u8], start + digits.len())
        }
        other => {
            let mut v = vec![b'\\'];
            let mut buf = [0u8; 4];
            v.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            (v, 2)
        }
    }
}

/// `$'…'` quoting.
pub fn unescape_c(text: &str) -> String {
    String::from_utf8_lossy(&unescape_echo(&text.replace("\\c", "\\\\c"))).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321_test_suite() {
        assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(&md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(&md5(b"message digest")), "f96b697d7cb7938d525a2f31aaf161d0");
        assert_eq!(
            hex(&md5(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890")),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn escapes_decode_like_echo_e() {
        assert_eq!(unescape_echo("a\\tb\\x41\\0101\\n"), b"a\tbAA\n");
        assert_eq!(unescape_echo("stop\\chere"), b"stop");
    }
}
