//! The quarantine: every file an attacker brings (an upload over scp or
//! sftp, `echo … > f` in the shell, a payload fetched for them) is kept
//! here, named by its SHA-256, for the operator to study later.
//!
//! A file in quarantine is hostile: it is written mode 0600 (never
//! executable, readable by decnet's user only) under a folder created
//! 0700, by its hash only (nothing the attacker chose reaches a path), and
//! never opened again by decnet. The whole folder is bounded in bytes:
//! storing past the bound evicts the files stored longest ago. Each file
//! and each session are bounded too, so one attacker cannot flush everyone
//! else's captures out by uploading.
//!
//! Writes are blocking (`std::fs`): callers on the async threads run
//! [`ArtifactStore::store`] inside `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use crate::fetch::FetchSettings;

/// Bounds of the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// All files together; the oldest are evicted to stay under it.
    pub max_total: u64,
    /// One file; a larger one is not stored.
    pub max_file: u64,
    /// What one session may store in all.
    pub max_session: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits { max_total: 256 * 1024 * 1024, max_file: 32 * 1024 * 1024, max_session: 64 * 1024 * 1024 }
    }
}

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("file of {0} bytes is over the per-file limit")]
    FileTooLarge(u64),
    #[error("session artifact budget spent")]
    SessionBudget,
    #[error("quarantine i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A file now in quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub mime: &'static str,
    pub path: PathBuf,
}

/// What one session has stored, against [`StoreLimits::max_session`].
#[derive(Debug, Default)]
pub struct SessionQuota {
    used: AtomicU64,
}

/// The files in the folder, oldest first.
#[derive(Default)]
struct Index {
    /// sha256 → (size, the sequence number of its last store).
    files: HashMap<String, (u64, u64)>,
    by_age: BTreeMap<u64, String>,
    total: u64,
    next: u64,
}

impl Index {
    fn insert(&mut self, sha: String, size: u64) {
        if let Some((old_size, seq)) = self.files.remove(&sha) {
            self.by_age.remove(&seq);
            self.total -= old_size;
        }
        let seq = self.next;
        self.next += 1;
        self.total += size;
        self.by_age.insert(seq, sha.clone());
        self.files.insert(sha, (size, seq));
    }

    fn pop_oldest(&mut self) -> Option<String> {
        let (_, sha) = self.by_age.pop_first()?;
        if let Some((size, _)) = self.files.remove(&sha) {
            self.total -= size;
        }
        Some(sha)
    }
}

pub struct ArtifactStore {
    dir: PathBuf,
    limits: StoreLimits,
    index: Mutex<Index>,
}

fn is_artifact_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactStore {
    /// Open (creating, 0700) the quarantine folder, index what an earlier
    /// run left there (oldest by modification time first), drop unfinished
    /// temporary files, and evict down to the bound.
    pub fn open(dir: &Path, limits: StoreLimits) -> std::io::Result<ArtifactStore> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if name.starts_with(".tmp-") && meta.is_file() {
                let _ = std::fs::remove_file(entry.path());
            } else if is_artifact_name(&name) && meta.is_file() {
                found.push((meta.modified().ok(), name, meta.len()));
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, name, size) in found {
            index.insert(name, size);
        }
        let store = ArtifactStore { dir: dir.to_path_buf(), limits, index: Mutex::new(index) };
        store.evict_to(&mut store.index.lock().unwrap_or_else(|e| e.into_inner()), limits.max_total)?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Bytes in quarantine now.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Evict the oldest files until `room` bytes fit under the bound.
    fn evict_to(&self, index: &mut Index, limit: u64) -> std::io::Result<()> {
        while index.total > limit {
            let Some(sha) = index.pop_oldest() else { break };
            match std::fs::remove_file(self.dir.join(&sha)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Store `bytes` for the session whose budget is `quota`.
    pub fn store(&self, quota: &SessionQuota, bytes: &[u8]) -> Result<Stored, StoreError> {
        let size = bytes.len() as u64;
        if size > self.limits.max_file || size > self.limits.max_total {
            return Err(StoreError::FileTooLarge(size));
        }
        // Reserve the session's share first, so two concurrent stores of
        // one session cannot both pass the check.
        let before = quota.used.fetch_add(size, Ordering::Relaxed);
        if before + size > self.limits.max_session {
            quota.used.fetch_sub(size, Ordering::Relaxed);
            return Err(StoreError::SessionBudget);
        }
        let sha256 = sha256_hex(bytes);
        let path = self.dir.join(&sha256);
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if index.files.contains_key(&sha256) && path.is_file() {
            // Already kept: it becomes the newest, nothing is written.
            index.insert(sha256.clone(), size);
        } else {
            let room = self.limits.max_total - size;
            self.evict_to(&mut index, room)?;
            let tmp = self.dir.join(format!(".tmp-{sha256}-{}", uuid::Uuid::new_v4().simple()));
            let written = (|| {
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
                file.write_all(bytes)?;
                // The umask can only clear bits; this makes sure of the mode
                // whatever the folder's defaults are.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&tmp, &path)
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                quota.used.fetch_sub(size, Ordering::Relaxed);
                return Err(e.into());
            }
            index.insert(sha256.clone(), size);
        }
        Ok(Stored { sha256, size, mime: sniff(bytes), path })
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The MIME type of `bytes`, from their first bytes (as `file
/// --mime-type` would name the kinds attackers bring).
pub fn sniff(bytes: &[u8]) -> &'static str {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if bytes.is_empty() {
        return "inode/x-empty";
    }
    if starts(b"\x7fELF") {
        return "application/x-executable";
    }
    if starts(b"\x1f\x8b") {
        return "application/gzip";
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return "application/zip";
    }
    if starts(b"BZh") {
        return "application/x-bzip2";
    }
    if starts(b"\xfd7zXZ\x00") {
        return "application/x-xz";
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return "application/x-7z-compressed";
    }
    if starts(b"MZ") {
        return "application/x-dosexec";
    }
    if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return "application/x-tar";
    }
    if starts(b"#!") {
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        return if first.contains("python") {
            "text/x-python"
        } else if first.contains("perl") {
            "text/x-perl"
        } else if first.contains("sh") {
            "text/x-shellscript"
        } else {
            "text/plain"
        };
    }
    let head = &bytes[..bytes.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(s) => Some(s),
        // A multi-byte character cut at the 4096th byte is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(t) if !t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c' | '\x1b')) => {
            "text/plain"
        }
        _ => "application/octet-stream",
    }
}

/// What a decky captures: the quarantine and the fetch policy (shared by
/// all its sessions).
pub struct Artifacts {
    pub store: ArtifactStore,
    pub fetch: FetchSettings,
    /// Fetches in flight for the whole decky.
    pub(crate) fetch_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Fetches in flight per decky: more wait their turn (within their time limit).
const FETCHES_IN_FLIGHT: usize = 8;

impl Artifacts {
    pub fn new(store: ArtifactStore, fetch: FetchSettings) -> Artifacts {
        Artifacts { store, fetch, fetch_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(FETCHES_IN_FLIGHT)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u64, file: u64, session: u64) -> StoreLimits {
        StoreLimits { max_total: total, max_file: file, max_session: session }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_named_by_sha256_mode_0600_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("artifacts");
        let store = ArtifactStore::open(&q, StoreLimits::default()).unwrap();
        assert_eq!(mode(&q), 0o700);
        let quota = SessionQuota::default();
        let s = store.store(&quota, b"#!/bin/sh\necho hi\n").unwrap();
        // sha256sum of the same bytes.
        assert_eq!(s.sha256, "299001868fb8c02fd431c336c6d058f5558c5dff5b5af5e6fe04b870a6a9cbba");
        assert_eq!(s.path, q.join(&s.sha256));
        assert_eq!(std::fs::read(&s.path).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(mode(&s.path), 0o600, "never executable, owner only");
        assert_eq!(s.mime, "text/x-shellscript");
        assert_eq!(s.size, 18);
        let again = store.store(&quota, b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(again, s);
        assert_eq!(store.total_bytes(), 18, "the same bytes are kept once");
        let names: Vec<_> = std::fs::read_dir(&q).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn the_oldest_files_are_evicted_to_stay_under_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), limits(100, 100, 1000)).unwrap();
        let quota = SessionQuota::default();
        let a = store.store(&quota, &[b'a'; 40]).unwrap();
        let b = store.store(&quota, &[b'b'; 40]).unwrap();
        // `a` is stored again: now `b` is the oldest.
        store.store(&quota, &[b'a'; 40]).unwrap();
        let c = store.store(&quota, &[b'c'; 40]).unwrap();
        assert!(a.path.exists() && c.path.exists());
        assert!(!b.path.exists(), "the least recently stored file went first");
        assert_eq!(store.total_bytes(), 80);
        // A restart sees what is on disk, and keeps to the bound it is given.
        drop(store);
        std::fs::write(dir.path().join(".tmp-leftover"), b"x").unwrap();
        let reopened = ArtifactStore::open(dir.path(), limits(50, 50, 1000)).unwrap();
        assert_eq!(reopened.total_bytes(), 40);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn per_file_and_per_session_caps_refuse_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), limits(1000, 10, 15)).unwrap();
        let quota = SessionQuota::default();
        assert!(matches!(store.store(&quota, &[0; 11]), Err(StoreError::FileTooLarge(11))));
        store.store(&quota, &[1; 10]).unwrap();
        assert!(matches!(store.store(&quota, &[2; 6]), Err(StoreError::SessionBudget)));
        // Another session still has its own budget.
        store.store(&SessionQuota::default(), &[2; 6]).unwrap();
        // The refused attempt did not use the first session's budget up.
        store.store(&quota, &[3; 5]).unwrap();
        assert_eq!(store.total_bytes(), 21);
    }

    #[test]
    fn mime_types_come_from_magic_bytes() {
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01\0"), "application/x-executable");
        assert_eq!(sniff(b"\x1f\x8b\x08\0"), "application/gzip");
        assert_eq!(sniff(b"PK\x03\x04rest"), "application/zip");
        assert_eq!(sniff(b"#!/bin/bash\n"), "text/x-shellscript");
        assert_eq!(sniff(b"#!/usr/bin/env python3\n"), "text/x-python");
        assert_eq!(sniff(b"hello\nworld\n"), "text/plain");
        assert_eq!(sniff(b"MZ\x90\0"), "application/x-dosexec");
        assert_eq!(sniff(b"\0\x01\x02garbage"), "application/octet-stream");
        assert_eq!(sniff(b""), "inode/x-empty");
        let mut tar = vec![0u8; 512];
        tar[..4].copy_from_slice(b"file");
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), "application/x-tar");
    }
}
