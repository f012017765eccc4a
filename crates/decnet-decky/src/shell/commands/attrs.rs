//! ext4 file attributes: `chattr` and `lsattr` (e2fsprogs). Droppers run
//! `chattr -ia ~/.ssh` before planting a key and `chattr +i` after, to
//! keep competitors out; the flags they set persist for the session and
//! `lsattr` shows them in e2fsprogs' 22-column layout.

use super::{split_flags, Output};
use crate::shell::fs::normalize;
use crate::shell::Shell;

/// e2fsprogs' flag letters in `lsattr`'s column order (i is the 5th
/// column, e the 15th, as `lsattr` prints on ext4).
const COLUMNS: &str = "suSDiadAcEjItTeCxFNPVm";
/// Every file of the ext4 root carries the extents flag.
const DEFAULT: &str = "e";
const USAGE: &str = "Usage: chattr [-RVf] [-+=aAcCdDeijPsStTuFx] [-p project] [-v version] files...\n";
/// Paths with flags changed by the session (bounded like the overlay).
const MAX_TRACKED: usize = 512;

fn flags_of(sh: &Shell, path: &str) -> String {
    sh.attrs.get(path).cloned().unwrap_or_else(|| DEFAULT.to_string())
}

pub fn chattr(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let mut mode: Option<(char, String)> = None;
    let mut files = Vec::new();
    for a in &argv[1..] {
        match a.chars().next() {
            Some(op @ ('+' | '-' | '=')) if mode.is_none() || files.is_empty() => {
                let letters: String = a[1..].to_string();
                if letters.chars().any(|c| !COLUMNS.contains(c)) {
                    return Output::fail(1, USAGE);
                }
                mode = Some((op, letters));
            }
            _ => files.push(a.clone()),
        }
    }
    let (Some((op, letters)), false) = (mode, files.is_empty()) else {
        return Output::fail(1, USAGE);
    };
    let mut err = String::new();
    for f in files {
        let path = normalize(&sh.cwd, &f);
        let Some(node) = sh.fs.stat(&path) else {
            err.push_str(&format!("chattr: No such file or directory while trying to stat {f}\n"));
            continue;
        };
        // Only root may set i/a; the owner may change the rest.
        if sh.uid != 0 && (node.uid != sh.uid || letters.contains(['i', 'a'])) {
            err.push_str(&format!("chattr: Operation not permitted while setting flags on {f}\n"));
            continue;
        }
        let mut now = flags_of(sh, &path);
        match op {
            '+' => now.extend(letters.chars().filter(|c| !now.contains(*c)).collect::<Vec<_>>()),
            '-' => now.retain(|c| !letters.contains(c)),
            _ => now = letters.clone(),
        }
        if sh.attrs.len() < MAX_TRACKED || sh.attrs.contains_key(&path) {
            sh.attrs.insert(path, now);
        }
    }
    Output::errors(err)
}

pub fn lsattr(sh: &mut Shell, argv: &[String], _: &[u8]) -> Output {
    let (flags, _, mut operands) = split_flags(&argv[1..]);
    let dir_itself = flags.contains('d');
    if operands.is_empty() {
        operands.push(".".into());
    }
    let mut out = String::new();
    let mut err = String::new();
    for f in operands {
        let path = normalize(&sh.cwd, &f);
        let Some(node) = sh.fs.stat(&path) else {
            err.push_str(&format!("lsattr: No such file or directory while trying to stat {f}\n"));
            continue;
        };
        let shown: Vec<(String, String)> = if node.is_dir() && !dir_itself {
            sh.fs
                .list(&path)
                .unwrap_or_default()
                .into_iter()
                .filter(|name| !name.starts_with('.'))
                .map(|name| {
                    let prefix = if f.ends_with('/') { f.clone() } else { format!("{f}/") };
                    (format!("{prefix}{name}"), format!("{}/{name}", path.trim_end_matches('/')))
                })
                .collect()
        } else {
            vec![(f.clone(), path)]
        };
        for (label, path) in shown {
            let set = flags_of(sh, &path);
            let columns: String = COLUMNS.chars().map(|c| if set.contains(c) { c } else { '-' }).collect();
            out.push_str(&format!("{columns} {label}\n"));
        }
    }
    let status = i32::from(!err.is_empty());
    Output::both(out.into_bytes(), err, status)
}
