//! The session filesystem: a copy-on-write view over the persona's image.
//!
//! The image ([`super::image`]) is what the host has on disk before the
//! attacker arrives; it is built once per persona, shared by every
//! session of the decky, and never changed. Every
//! write, move, chmod or delete lands in the session's overlay, so what an
//! attacker creates persists for their session only and costs nothing to
//! other sessions. The overlay is bounded in entries and bytes: past the
//! budget a write fails like a full disk would (`No space left on device`).

use std::collections::BTreeMap;
use std::sync::Arc;

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A file whose bytes are made when read (`/proc/uptime`, …): the
    /// image keeps the generator's key, the shell renders it.
    Dynamic(&'static str),
    /// A character device (`/dev/null`, `/dev/zero`, …).
    Device(&'static str),
}

/// One filesystem entry with the metadata `ls -l` and `stat` show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Unix seconds.
    pub mtime: i64,
    /// Reported size for entries whose content the image does not hold
    /// in full (binaries): `ls -l` shows this, `cat` shows nothing useful.
    pub size_hint: u64,
}

impl Node {
    pub fn dir(mode: u32, uid: u32, mtime: i64) -> Node {
        Node { content: Content::Dir, mode, uid, gid: uid, mtime, size_hint: 4096 }
    }
    pub fn file(bytes: impl Into<Vec<u8>>, mode: u32, uid: u32, mtime: i64) -> Node {
        Node { content: Content::File(bytes.into()), mode, uid, gid: uid, mtime, size_hint: 0 }
    }
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir)
    }
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(b) if self.size_hint == 0 => b.len() as u64,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir => 4096,
            _ => self.size_hint,
        }
    }
}

/// Why a filesystem operation failed, as the message coreutils prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotADirectory,
    IsADirectory,
    PermissionDenied,
    Exists,
    NotEmpty,
    NoSpace,
}

impl FsError {
    pub fn message(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::PermissionDenied => "Permission denied",
            FsError::Exists => "File exists",
            FsError::NotEmpty => "Directory not empty",
            FsError::NoSpace => "No space left on device",
        }
    }
}

/// Bounds on what one session may write.
#[derive(Debug, Clone, Copy)]
pub struct FsLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for FsLimits {
    fn default() -> Self {
        FsLimits { max_entries: 2_000, max_bytes: 8 * 1024 * 1024 }
    }
}

/// The image plus this session's changes.
pub struct SessionFs {
    image: Arc<BTreeMap<String, Node>>,
    /// `Some`: created or changed by the session; `None`: deleted.
    overlay: BTreeMap<String, Option<Node>>,
    overlay_bytes: usize,
    limits: FsLimits,
}

/// `path` made absolute against `cwd`, with `.`/`..` and repeated
/// slashes resolved (no symlinks followed). Always starts with `/`.
pub fn normalize(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{cwd}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The parent directory of an absolute, normalized path.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl SessionFs {
    pub fn new(image: Arc<BTreeMap<String, Node>>, limits: FsLimits) -> SessionFs {
        SessionFs { image, overlay: BTreeMap::new(), overlay_bytes: 0, limits }
    }

    /// The entry at an absolute path, without following a final symlink.
    pub fn lstat(&self, path: &str) -> Option<&Node> {
        match self.overlay.get(path) {
            Some(entry) => entry.as_ref(),
            None => self.image.get(path),
        }
    }

    /// The entry at `path`, following symlinks (at most 8 hops, like a
    /// shallow ELOOP) in every component.
    pub fn stat(&self, path: &str) -> Option<&Node> {
        let resolved = self.resolve(path)?;
        self.lstat(&resolved)
    }

    /// `path` with every symlink resolved.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut current = String::from("/");
        let mut pending: Vec<String> = path.split('/').filter(|p| !p.is_empty()).rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            let candidate = normalize(&current, &part);
            match self.lstat(&candidate).map(|n| &n.content) {
                Some(Content::Symlink(target)) => {
                    hops += 1;
                    if hops > 8 {
                        return None;
                    }
                    let target = normalize(&current, target);
                    pending.extend(target.split('/').filter(|p| !p.is_empty()).rev().map(str::to_string));
                    current = "/".into();
                }
                Some(_) => current = candidate,
                None if pending.is_empty() => return Some(candidate),
                None => return None,
            }
        }
        Some(current)
    }

    /// Names in the directory at `path` (resolved), sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, FsError> {
        let dir = self.resolve(path).ok_or(FsError::NotFound)?;
        match self.lstat(&dir) {
            None => return Err(FsError::NotFound),
            Some(n) if !n.is_dir() => return Err(FsError::NotADirectory),
            Some(_) => {}
        }
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        let direct = |p: &str| p.len() > prefix.len() && p.starts_with(&prefix) && !p[prefix.len()..].contains('/');
        let mut names: Vec<String> = self
            .image
            .keys()
            .filter(|p| direct(p) && !matches!(self.overlay.get(p.as_str()), Some(None)))
            .map(|p| p[prefix.len()..].to_string())
            .collect();
        for (p, entry) in &self.overlay {
            if entry.is_some() && direct(p) && !self.image.contains_key(p) {
                names.push(p[prefix.len()..].to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Create or replace the entry at `path` (absolute, normalized). Its
    /// parent must be an existing directory.
    pub fn put(&mut self, path: &str, node: Node) -> Result<(), FsError> {
        match self.stat(parent(path)) {
            None => return Err(FsError::NotFound),
            Some(n) if !n.is_dir() => return Err(FsError::NotADirectory),
            Some(_) => {}
        }
        let new_bytes = match &node.content {
            Content::File(b) => b.len(),
            _ => 0,
        };
        let old_bytes = match self.overlay.get(path) {
            Some(Some(Node { content: Content::File(b), .. })) => b.len(),
            _ => 0,
        };
        let entries = self.overlay.len() + usize::from(!self.overlay.contains_key(path));
        if entries > self.limits.max_entries || self.overlay_bytes - old_bytes + new_bytes > self.limits.max_bytes {
            return Err(FsError::NoSpace);
        }
        self.overlay_bytes = self.overlay_bytes - old_bytes + new_bytes;
        self.overlay.insert(path.to_string(), Some(node));
        Ok(())
    }

    /// Remove the entry at `path` (a directory must be empty unless
    /// `recursive`, which removes everything below it too).
    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        let node = self.lstat(path).ok_or(FsError::NotFound)?;
        if node.is_dir() {
            let children = self.list(path)?;
            if !children.is_empty() {
                if !recursive {
                    return Err(FsError::NotEmpty);
                }
                for child in children {
                    self.remove(&normalize(path, &child), true)?;
                }
            }
        }
        if let Some(Some(Node { content: Content::File(b), .. })) = self.overlay.get(path) {
            self.overlay_bytes -= b.len();
        }
        if self.image.contains_key(path) {
            if self.overlay.len() >= self.limits.max_entries {
                return Err(FsError::NoSpace);
            }
            self.overlay.insert(path.to_string(), None);
        } else {
            self.overlay.remove(path);
        }
        Ok(())
    }

    /// Bytes the session has written (for its summary).
    pub fn written_bytes(&self) -> usize {
        self.overlay_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> SessionFs {
        let mut image = BTreeMap::new();
        image.insert("/".to_string(), Node::dir(0o755, 0, 0));
        image.insert("/etc".to_string(), Node::dir(0o755, 0, 0));
        image.insert("/etc/hostname".to_string(), Node::file("web\n", 0o644, 0, 0));
        image.insert("/usr".to_string(), Node::dir(0o755, 0, 0));
        image.insert("/usr/bin".to_string(), Node::dir(0o755, 0, 0));
        image
            .insert("/bin".to_string(), Node { content: Content::Symlink("usr/bin".into()), ..Node::dir(0o777, 0, 0) });
        image.insert("/usr/bin/ls".to_string(), Node::file("", 0o755, 0, 0));
        SessionFs::new(Arc::new(image), FsLimits { max_entries: 4, max_bytes: 10 })
    }

    #[test]
    fn paths_normalize_and_symlinks_resolve() {
        assert_eq!(normalize("/root", "../etc/./passwd"), "/etc/passwd");
        assert_eq!(normalize("/", "a//b/"), "/a/b");
        assert_eq!(normalize("/a", "/../.."), "/");
        let fs = fs();
        assert_eq!(fs.resolve("/bin/ls").as_deref(), Some("/usr/bin/ls"));
        assert!(fs.stat("/bin/ls").is_some());
        assert_eq!(fs.list("/bin").unwrap(), vec!["ls"]);
        assert_eq!(fs.list("/etc/hostname"), Err(FsError::NotADirectory));
    }

    #[test]
    fn writes_stay_in_the_overlay_and_are_bounded() {
        let mut fs = fs();
        fs.put("/etc/x", Node::file("12345", 0o644, 0, 0)).unwrap();
        assert_eq!(fs.list("/etc").unwrap(), vec!["hostname", "x"]);
        fs.remove("/etc/hostname", false).unwrap();
        assert!(fs.stat("/etc/hostname").is_none());
        assert_eq!(fs.list("/etc").unwrap(), vec!["x"]);
        assert_eq!(fs.put("/nope/x", Node::file("", 0o644, 0, 0)), Err(FsError::NotFound));
        // 5 + 6 bytes is past the 10-byte budget; rewriting x smaller is fine.
        assert_eq!(fs.put("/etc/y", Node::file("123456", 0o644, 0, 0)), Err(FsError::NoSpace));
        fs.put("/etc/x", Node::file("1", 0o644, 0, 0)).unwrap();
        assert_eq!(fs.written_bytes(), 1);
        assert_eq!(fs.remove("/etc", false), Err(FsError::NotEmpty));
        fs.remove("/etc", true).unwrap();
        assert!(fs.stat("/etc").is_none());
    }
}
