//! `decnet install`: put a host in the state the systemd units expect, from
//! the binary alone. Every shipped file (units, drop-in examples,
//! logrotate snippet, example config) is compiled in with `include_str!`.
//!
//! The install is a list of [`Step`]s, each of which compares what is on
//! disk with what should be there and changes only the difference, so a
//! second run changes nothing and says so, and `--dry-run` prints the
//! same list without touching anything.
//!
//! The `decnet` user and group: on the real root (`/`) they are made with
//! `groupadd`/`useradd --system`, which know about shadow files, locks and
//! nscd. Under any other root (a test root, an image being built) those
//! tools would need root and a chroot, so the entries are appended to
//! `<root>/etc/passwd` and `<root>/etc/group` directly, with the highest
//! system id (999 down to 100) free in both files. Owners are applied only
//! when running as root; otherwise each step says it left the owner alone.

use anyhow::{bail, Context};
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user and group every daemon runs as.
pub const USER: &str = "decnet";

/// Where the shipped units expect the binary; rewritten to `--bin`.
pub const UNIT_BINARY: &str = "/usr/bin/decnet";

/// Every unit in deploy/, one per daemon. Adding a daemon: its unit file
/// in deploy/ and one line here (tests/units.rs checks the two agree).
pub const UNITS: &[(&str, &str)] = &[
    ("decnet-api.service", include_str!("../../../deploy/decnet-api.service")),
    ("decnet-bus.service", include_str!("../../../deploy/decnet-bus.service")),
    ("decnet-clusterer.service", include_str!("../../../deploy/decnet-clusterer.service")),
    ("decnet-collector.service", include_str!("../../../deploy/decnet-collector.service")),
    ("decnet-forwarder.service", include_str!("../../../deploy/decnet-forwarder.service")),
    ("decnet-ingester.service", include_str!("../../../deploy/decnet-ingester.service")),
    ("decnet-listener.service", include_str!("../../../deploy/decnet-listener.service")),
    ("decnet-mutator.service", include_str!("../../../deploy/decnet-mutator.service")),
    ("decnet-prober.service", include_str!("../../../deploy/decnet-prober.service")),
    ("decnet-profiler.service", include_str!("../../../deploy/decnet-profiler.service")),
    ("decnet-sniffer.service", include_str!("../../../deploy/decnet-sniffer.service")),
];

/// Drop-ins that widen a unit (LAN placement, NATS federation). Installed
/// as examples under /etc/decnet/dropins, never enabled by the install:
/// each grants more than the base unit and is the operator's decision.
pub const DROPINS: &[(&str, &str)] = &[
    ("decnet-bus-nats.conf", include_str!("../../../deploy/decnet-bus-nats.conf")),
    ("decnet-mutator-lan.conf", include_str!("../../../deploy/decnet-mutator-lan.conf")),
];

pub const LOGROTATE: &str = include_str!("../../../deploy/decnet.logrotate");

/// The configuration written when none exists (a commented file only).
pub const CONFIG: &str = include_str!("../../../deploy/decnet.toml.example");

/// Who should own a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Root,
    /// root:decnet (config readable by the daemons, writable by root only).
    RootGroupDecnet,
    Decnet,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Owner::Root => "root:root",
            Owner::RootGroupDecnet => "root:decnet",
            Owner::Decnet => "decnet:decnet",
        })
    }
}

/// What to do with a file that exists with other contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Ours (units, logrotate, the binary): bring it up to date.
    Replace,
    /// The operator's (the config): keep it, say it differs.
    Keep,
}

#[derive(Debug, Clone)]
pub enum Step {
    UserAndGroup,
    Dir { path: PathBuf, mode: u32, owner: Owner },
    File { path: PathBuf, contents: Vec<u8>, mode: u32, owner: Owner, existing: Existing },
}

/// What one step did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub changed: bool,
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Install under this root ("/" for the host itself).
    pub root: PathBuf,
    /// Absolute path of the binary on the target (ExecStart= of the units).
    pub bin: PathBuf,
    /// The binary to copy there (usually the running one); `None` skips it.
    pub bin_source: Option<PathBuf>,
    pub dry_run: bool,
}

/// `path` (absolute, as on the target) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A shipped unit with its ExecStart= pointed at `bin`.
pub fn unit_for(text: &str, bin: &Path) -> String {
    let from = format!("ExecStart={UNIT_BINARY} ");
    let to = format!("ExecStart={} ", bin.display());
    text.lines()
        .map(|l| if l.starts_with(&from) { l.replacen(&from, &to, 1) } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Every step of an install, in order (user first: owners need it).
pub fn plan(opts: &Options) -> anyhow::Result<Vec<Step>> {
    if !opts.bin.is_absolute() {
        bail!("--bin {} is not an absolute path (units need one for ExecStart=)", opts.bin.display());
    }
    let root = &opts.root;
    let dir = |p: &str, mode, owner| Step::Dir { path: under(root, p), mode, owner };
    let file = |p: &str, contents: Vec<u8>, mode, owner, existing| Step::File {
        path: under(root, p),
        contents,
        mode,
        owner,
        existing,
    };
    let mut steps = vec![
        Step::UserAndGroup,
        dir("/etc/decnet", 0o750, Owner::RootGroupDecnet),
        dir("/etc/decnet/dropins", 0o755, Owner::Root),
        // The daemons' state (database, ingest logs, secrets): theirs only.
        dir("/var/lib/decnet", 0o700, Owner::Decnet),
        // The listener's master.log / master.json.
        dir("/var/log/decnet", 0o700, Owner::Decnet),
        dir("/etc/systemd/system", 0o755, Owner::Root),
        dir("/etc/logrotate.d", 0o755, Owner::Root),
        file("/etc/decnet/decnet.toml", CONFIG.into(), 0o640, Owner::RootGroupDecnet, Existing::Keep),
    ];
    for (name, text) in UNITS {
        let path = format!("/etc/systemd/system/{name}");
        steps.push(file(&path, unit_for(text, &opts.bin).into_bytes(), 0o644, Owner::Root, Existing::Replace));
    }
    for (name, text) in DROPINS {
        let path = format!("/etc/decnet/dropins/{name}");
        steps.push(file(&path, text.as_bytes().to_vec(), 0o644, Owner::Root, Existing::Replace));
    }
    steps.push(file("/etc/logrotate.d/decnet", LOGROTATE.into(), 0o644, Owner::Root, Existing::Replace));
    if let Some(src) = &opts.bin_source {
        let target = under(root, &opts.bin.to_string_lossy());
        // Installing the binary over itself (run from its installed place)
        // is a no-op, not a read-while-writing of the running executable.
        let same = std::fs::canonicalize(src).ok() == std::fs::canonicalize(&target).ok() && target.exists();
        if !same {
            let bytes = std::fs::read(src).with_context(|| format!("cannot read the binary {}", src.display()))?;
            if let Some(parent) = opts.bin.parent() {
                steps.push(dir(&parent.to_string_lossy(), 0o755, Owner::Root));
            }
            steps.push(Step::File {
                path: target,
                contents: bytes,
                mode: 0o755,
                owner: Owner::Root,
                existing: Existing::Replace,
            });
        }
    }
    Ok(steps)
}

/// Run (or, with `dry_run`, describe) every step.
pub fn apply(opts: &Options, steps: &[Step]) -> anyhow::Result<Vec<Outcome>> {
    let as_root = nix::unistd::geteuid().is_root();
    let mut out = Vec::new();
    for step in steps {
        out.push(match step {
            Step::UserAndGroup => user_and_group(opts, as_root)?,
            Step::Dir { path, mode, owner } => ensure_dir(opts, as_root, path, *mode, *owner)?,
            Step::File { path, contents, mode, owner, existing } => {
                ensure_file(opts, as_root, path, contents, *mode, *owner, *existing)?
            }
        });
    }
    Ok(out)
}

fn ensure_dir(opts: &Options, as_root: bool, path: &Path, mode: u32, owner: Owner) -> anyhow::Result<Outcome> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Some(m),
        Ok(_) => bail!("{} exists and is not a directory; move it away and run again", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    let what = format!("{} ({mode:04o} {owner})", path.display());
    let Some(meta) = meta else {
        if !opts.dry_run {
            std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
            set_mode(path, mode)?;
            let note = set_owner(opts, as_root, path, owner)?;
            return Ok(Outcome { changed: true, line: format!("created   {what}{note}") });
        }
        return Ok(Outcome { changed: true, line: format!("would create {what}") });
    };
    fix_mode_and_owner(opts, as_root, path, &meta, mode, owner, &what)
}

fn ensure_file(
    opts: &Options,
    as_root: bool,
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Owner,
    existing: Existing,
) -> anyhow::Result<Outcome> {
    let what = format!("{} ({mode:04o} {owner})", path.display());
    let current = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match current {
        None => {
            if opts.dry_run {
                return Ok(Outcome { changed: true, line: format!("would create {what}") });
            }
            write_atomically(path, contents, mode)?;
            let note = set_owner(opts, as_root, path, owner)?;
            Ok(Outcome { changed: true, line: format!("created   {what}{note}") })
        }
        Some(bytes) if bytes != contents && existing == Existing::Replace => {
            if opts.dry_run {
                return Ok(Outcome { changed: true, line: format!("would update {what}") });
            }
            write_atomically(path, contents, mode)?;
            let note = set_owner(opts, as_root, path, owner)?;
            Ok(Outcome { changed: true, line: format!("updated   {what}{note}") })
        }
        Some(bytes) => {
            let meta = std::fs::metadata(path).with_context(|| format!("cannot inspect {}", path.display()))?;
            let mut outcome = fix_mode_and_owner(opts, as_root, path, &meta, mode, owner, &what)?;
            if bytes != contents {
                outcome.line.push_str(" (yours differs from the shipped one: kept)");
            }
            Ok(outcome)
        }
    }
}

/// Write to a temporary file beside `path` and rename it into place, so a
/// unit or the binary is never seen half-written.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let parent = path.parent().context("a file to install has no parent folder")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = path.file_name().context("a file to install has no name")?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.decnet-install"));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    set_mode(&tmp, mode)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:04o} on {}", path.display()))
}

fn fix_mode_and_owner(
    opts: &Options,
    as_root: bool,
    path: &Path,
    meta: &std::fs::Metadata,
    mode: u32,
    owner: Owner,
    what: &str,
) -> anyhow::Result<Outcome> {
    let mode_ok = meta.permissions().mode() & 0o7777 == mode;
    // In a dry run the user may not exist yet: its owner is then to be fixed.
    let owner_ok = !as_root
        || match ids(opts, owner) {
            Ok(ids) => ids == (meta.uid(), meta.gid()),
            Err(_) if opts.dry_run => false,
            Err(e) => return Err(e),
        };
    if mode_ok && owner_ok {
        return Ok(Outcome { changed: false, line: format!("unchanged {what}") });
    }
    if opts.dry_run {
        return Ok(Outcome { changed: true, line: format!("would fix {what}") });
    }
    set_mode(path, mode)?;
    set_owner(opts, as_root, path, owner)?;
    Ok(Outcome { changed: true, line: format!("fixed     {what}") })
}

/// chown when running as root; otherwise a note that the owner was left.
fn set_owner(opts: &Options, as_root: bool, path: &Path, owner: Owner) -> anyhow::Result<String> {
    if !as_root {
        return Ok(if owner == Owner::Root { String::new() } else { " (owner left: not running as root)".into() });
    }
    let (uid, gid) = ids(opts, owner)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {} to {owner}", path.display()))?;
    Ok(String::new())
}

/// uid and gid of `owner` on the target, from its passwd and group files.
fn ids(opts: &Options, owner: Owner) -> anyhow::Result<(u32, u32)> {
    if owner == Owner::Root {
        return Ok((0, 0));
    }
    let group = read_db(&under(&opts.root, "/etc/group"))?;
    let gid = find_id(&group, USER).with_context(|| format!("group {USER} missing from the target's /etc/group"))?;
    if owner == Owner::RootGroupDecnet {
        return Ok((0, gid));
    }
    let passwd = read_db(&under(&opts.root, "/etc/passwd"))?;
    let uid = find_id(&passwd, USER).with_context(|| format!("user {USER} missing from the target's /etc/passwd"))?;
    Ok((uid, gid))
}

fn read_db(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The id (third field) of `name` in a passwd or group file.
pub fn find_id(db: &str, name: &str) -> Option<u32> {
    db.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name)).then(|| f.nth(1).and_then(|id| id.parse().ok())).flatten()
    })
}

/// The highest system id (999 down to 100) used in neither file.
pub fn free_system_id(passwd: &str, group: &str) -> Option<u32> {
    let used: std::collections::HashSet<u32> = passwd
        .lines()
        .chain(group.lines())
        .filter_map(|l| l.split(':').nth(2).and_then(|id| id.parse().ok()))
        .collect();
    (100..=999).rev().find(|id| !used.contains(id))
}

fn user_and_group(opts: &Options, as_root: bool) -> anyhow::Result<Outcome> {
    let passwd_path = under(&opts.root, "/etc/passwd");
    let group_path = under(&opts.root, "/etc/group");
    let passwd = read_db(&passwd_path)?;
    let group = read_db(&group_path)?;
    let (has_user, has_group) = (find_id(&passwd, USER).is_some(), find_id(&group, USER).is_some());
    if has_user && has_group {
        return Ok(Outcome { changed: false, line: format!("unchanged user and group {USER}") });
    }
    if opts.dry_run {
        return Ok(Outcome { changed: true, line: format!("would create the system user and group {USER}") });
    }
    let host = opts.root == Path::new("/");
    if host {
        if !as_root {
            bail!("creating user {USER} needs root: run `sudo decnet install` (or --dry-run to see the plan)");
        }
        if !has_group {
            run("groupadd", &["--system", USER])?;
        }
        if !has_user {
            run(
                "useradd",
                &[
                    "--system",
                    "--gid",
                    USER,
                    "--home-dir",
                    "/var/lib/decnet",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "decnet honeypot network",
                    USER,
                ],
            )?;
        }
    } else {
        let id = free_system_id(&passwd, &group).context("no free system id between 100 and 999 in the target root")?;
        let gid = find_id(&group, USER).unwrap_or(id);
        if !has_group {
            append_line(&group_path, &format!("{USER}:x:{gid}:"))?;
        }
        if !has_user {
            let home = "decnet honeypot network:/var/lib/decnet:/usr/sbin/nologin";
            append_line(&passwd_path, &format!("{USER}:x:{id}:{gid}:{home}"))?;
        }
    }
    Ok(Outcome { changed: true, line: format!("created   the system user and group {USER}") })
}

fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut text = read_db(path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    // passwd and group are world-readable, like the real ones.
    write_atomically(path, text.as_bytes(), 0o644)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program} (is the passwd package installed?)"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_and_free_ones_avoid_both_files() {
        let passwd = "root:x:0:0::/root:/bin/bash\nsvc:x:999:999::/:/bin/false\n";
        let group = "root:x:0:\nsvc:x:999:\nother:x:998:\n";
        assert_eq!(find_id(passwd, "svc"), Some(999));
        assert_eq!(find_id(passwd, "decnet"), None);
        assert_eq!(free_system_id(passwd, group), Some(997));
    }

    #[test]
    fn only_exec_start_is_pointed_at_the_binary() {
        let text = "# ExecStart=/usr/bin/decnet api --no-ingest\nExecStart=/usr/bin/decnet bus --socket x\n";
        let got = unit_for(text, Path::new("/opt/decnet/bin/decnet"));
        assert_eq!(
            got,
            "# ExecStart=/usr/bin/decnet api --no-ingest\nExecStart=/opt/decnet/bin/decnet bus --socket x\n"
        );
    }
}
