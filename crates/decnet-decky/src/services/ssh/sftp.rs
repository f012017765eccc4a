//! The `sftp` subsystem (what `sftp` and, since OpenSSH 9.0, `scp` use)
//! over the session filesystem: the protocol is russh-sftp's (SFTP v3, as
//! OpenSSH's sftp-server speaks it; it runs over any stream, so it works
//! with the vendored russh), the files are the session's.
//!
//! Uploads land in the session filesystem (bounded like any write there)
//! and, when their handle is closed, are stored as `upload` artifacts;
//! downloads and listings come from it, with the persona's owners and
//! modes and the user's permissions. Bounded: files uploaded and handles
//! open per session, bytes by the session's input limit and the
//! filesystem's budget. A client that breaks the stream (an i/o error)
//! ends the subsystem instead of being retried.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::capture::Capturer;
use crate::shell::fs::{self, Content, FsError, Node};
use crate::shell::Shell;

/// Files one sftp session may upload.
pub const MAX_FILES: usize = 64;
/// Handles open at once.
const MAX_HANDLES: usize = 16;
/// Entries of one READDIR answer (OpenSSH's sftp-server sends at most 100).
const DIR_CHUNK: usize = 100;

enum Open {
    File { path: String, bytes: Vec<u8>, written: bool, mode: u32 },
    Dir { entries: Vec<File>, next: usize },
}

pub struct Sftp {
    shell: Shell,
    capturer: Capturer,
    handles: HashMap<String, Open>,
    next_handle: u64,
    uploads: usize,
    max_file: u64,
}

fn status(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Success".into(), language_tag: "".into() }
}

fn fs_error(e: FsError) -> StatusReply {
    let code = match e {
        FsError::NotFound => StatusCode::NoSuchFile,
        FsError::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.message())
}

impl Sftp {
    pub fn new(shell: Shell, capturer: Capturer, max_file: u64) -> Sftp {
        Sftp { shell, capturer, handles: HashMap::new(), next_handle: 0, uploads: 0, max_file }
    }

    fn path(&self, p: &str) -> String {
        fs::normalize(&self.shell.cwd, if p.is_empty() { "." } else { p })
    }

    fn attrs(&self, node: &Node) -> FileAttributes {
        let kind = match node.content {
            Content::Dir => 0o040000,
            Content::Symlink(_) => 0o120000,
            Content::Device(_) => 0o020000,
            _ => 0o100000,
        };
        let name = |id: u32| self.shell.persona.users.iter().find(|u| u.uid == id).map(|u| u.name.clone());
        FileAttributes {
            size: Some(node.size()),
            uid: Some(node.uid),
            user: name(node.uid),
            gid: Some(node.gid),
            group: name(node.gid),
            permissions: Some(kind | (node.mode & 0o7777)),
            atime: Some(node.mtime.max(0) as u32),
            mtime: Some(node.mtime.max(0) as u32),
        }
    }

    /// Bytes held by the open file handles: together they stay within one
    /// file's limit, so sparse writes at far offsets on many handles cannot
    /// make the session hold more memory than one upload.
    fn buffered(&self) -> u64 {
        self.handles.values().map(|h| if let Open::File { bytes, .. } = h { bytes.len() as u64 } else { 0 }).sum()
    }

    fn handle(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next_handle += 1;
        let h = self.next_handle.to_string();
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn stat_of(&self, path: &str, follow: bool) -> Result<FileAttributes, StatusReply> {
        let full = self.path(path);
        let node = if follow { self.shell.fs.stat(&full) } else { self.shell.fs.lstat(&full) };
        node.map(|n| self.attrs(n)).ok_or_else(|| fs_error(FsError::NotFound))
    }

    fn writable_dir(&self, path: &str) -> Result<(), StatusReply> {
        match self.shell.fs.stat(fs::parent(path)) {
            None => Err(fs_error(FsError::NotFound)),
            Some(d) if !d.is_dir() => Err(fs_error(FsError::NotADirectory)),
            Some(d) if !self.shell.may_write(d) => Err(fs_error(FsError::PermissionDenied)),
            Some(_) => Ok(()),
        }
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(self.path(&path))] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.stat_of(&path, true)? })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.stat_of(&path, false)? })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        match self.handles.get(&handle) {
            Some(Open::File { path, bytes, mode, .. }) => {
                let mut attrs = self.stat_of(path, true).unwrap_or_default();
                attrs.size = Some(bytes.len() as u64);
                attrs.permissions = Some(0o100000 | mode);
                Ok(Attrs { id, attrs })
            }
            Some(Open::Dir { .. }) => {
                Ok(Attrs { id, attrs: FileAttributes { permissions: Some(0o040755), ..Default::default() } })
            }
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.path(&filename);
        let existing = self.shell.fs.stat(&path).cloned();
        if pflags.intersects(OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::APPEND) {
            match &existing {
                Some(n) if n.is_dir() => return Err(fs_error(FsError::IsADirectory)),
                Some(_) if pflags.contains(OpenFlags::EXCLUDE) => return Err(fs_error(FsError::Exists)),
                Some(n) if !self.shell.may_write(n) => return Err(fs_error(FsError::PermissionDenied)),
                Some(_) => {}
                None if !pflags.contains(OpenFlags::CREATE) => return Err(fs_error(FsError::NotFound)),
                None => self.writable_dir(&path)?,
            }
            if self.uploads >= MAX_FILES {
                return Err(StatusCode::Failure.with_message("Disk quota exceeded"));
            }
            self.uploads += 1;
            let bytes = match (&existing, pflags.contains(OpenFlags::TRUNCATE)) {
                (Some(_), false) => self.shell.read_file(&path).unwrap_or_default(),
                _ => Vec::new(),
            };
            let mode = existing.map(|n| n.mode).or(attrs.permissions).unwrap_or(0o644) & 0o777;
            let handle = self.handle(Open::File { path, bytes, written: false, mode })?;
            return Ok(Handle { id, handle });
        }
        let bytes = self.shell.read_file(&path).map_err(fs_error)?;
        let mode = existing.map_or(0o644, |n| n.mode & 0o777);
        let handle = self.handle(Open::File { path, bytes, written: false, mode })?;
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let Some(Open::File { bytes, .. }) = self.handles.get(&handle) else {
            return Err(StatusCode::Failure.with_message("invalid handle"));
        };
        if offset >= bytes.len() as u64 {
            return Err(StatusCode::Eof.into());
        }
        let start = offset as usize;
        let end = (start + len.min(256 * 1024) as usize).min(bytes.len());
        Ok(Data { id, data: bytes[start..end].to_vec() })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, Self::Error> {
        let max = self.max_file;
        let held = self.buffered();
        let Some(Open::File { bytes, written, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("invalid handle"));
        };
        let end = offset.saturating_add(data.len() as u64);
        let growth = end.saturating_sub(bytes.len() as u64);
        if end > max || held + growth > max {
            return Err(fs_error(FsError::NoSpace));
        }
        let (start, end) = (offset as usize, end as usize);
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(&data);
        *written = true;
        Ok(status(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::File { path, bytes, written: true, mode }) => {
                let node = Node::file(bytes.clone(), mode, self.shell.uid, crate::shell::now());
                self.shell.fs.put(&path, node).map_err(fs_error)?;
                // Stored before the close is answered: a client may leave
                // right after, and the artifact line must come before the
                // session's closing lines.
                if let Some(stored) = (!bytes.is_empty()).then(|| self.capturer.upload(&path, bytes)).flatten() {
                    let _ = stored.await;
                }
                Ok(status(id))
            }
            Some(_) => Ok(status(id)),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let full = self.path(&path);
        let node = self.shell.fs.stat(&full).ok_or_else(|| fs_error(FsError::NotFound))?;
        if !node.is_dir() {
            return Err(fs_error(FsError::NotADirectory));
        }
        if !self.shell.may_read(node) {
            return Err(fs_error(FsError::PermissionDenied));
        }
        let mut entries = Vec::new();
        for name in [".", ".."].into_iter().map(String::from).chain(self.shell.fs.list(&full).map_err(fs_error)?) {
            let child = fs::normalize(&full, &name);
            if let Some(n) = self.shell.fs.lstat(&child) {
                entries.push(File::new(name, self.attrs(n)));
            }
        }
        let handle = self.handle(Open::Dir { entries, next: 0 })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir { entries, next }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("invalid handle"));
        };
        if *next >= entries.len() {
            return Err(StatusCode::Eof.into());
        }
        let end = (*next + DIR_CHUNK).min(entries.len());
        let files = entries[*next..end].to_vec();
        *next = end;
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let path = self.path(&filename);
        match self.shell.fs.lstat(&path) {
            None => return Err(fs_error(FsError::NotFound)),
            Some(n) if n.is_dir() => return Err(fs_error(FsError::IsADirectory)),
            Some(_) => self.writable_dir(&path)?,
        }
        self.shell.fs.remove(&path, false).map_err(fs_error)?;
        Ok(status(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let path = self.path(&path);
        if self.shell.fs.lstat(&path).is_some() {
            return Err(fs_error(FsError::Exists));
        }
        self.writable_dir(&path)?;
        let mode = attrs.permissions.unwrap_or(0o755) & 0o7777;
        self.shell.fs.put(&path, Node::dir(mode, self.shell.uid, crate::shell::now())).map_err(fs_error)?;
        Ok(status(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let path = self.path(&path);
        match self.shell.fs.lstat(&path) {
            None => return Err(fs_error(FsError::NotFound)),
            Some(n) if !n.is_dir() => return Err(fs_error(FsError::NotADirectory)),
            Some(_) => self.writable_dir(&path)?,
        }
        self.shell.fs.remove(&path, false).map_err(fs_error)?;
        Ok(status(id))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        let (from, to) = (self.path(&oldpath), self.path(&newpath));
        let node = self.shell.fs.lstat(&from).cloned().ok_or_else(|| fs_error(FsError::NotFound))?;
        if node.is_dir() {
            // Moving a folder would move its whole subtree; sftp clients
            // rename files, so this stays simple.
            return Err(StatusCode::OpUnsupported.with_message("Operation unsupported"));
        }
        if self.shell.fs.lstat(&to).is_some() {
            return Err(fs_error(FsError::Exists));
        }
        self.writable_dir(&from)?;
        self.writable_dir(&to)?;
        self.shell.fs.put(&to, node).map_err(fs_error)?;
        self.shell.fs.remove(&from, false).map_err(fs_error)?;
        Ok(status(id))
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let path = self.path(&path);
        let mut node = self.shell.fs.stat(&path).cloned().ok_or_else(|| fs_error(FsError::NotFound))?;
        if self.shell.uid != 0 && node.uid != self.shell.uid {
            return Err(fs_error(FsError::PermissionDenied));
        }
        if let Some(p) = attrs.permissions {
            node.mode = p & 0o7777;
        }
        if let Some(m) = attrs.mtime {
            node.mtime = i64::from(m);
        }
        self.shell.fs.put(&path, node).map_err(fs_error)?;
        Ok(status(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::File { mode, .. }) => {
                if let Some(p) = attrs.permissions {
                    *mode = p & 0o777;
                }
                Ok(status(id))
            }
            Some(Open::Dir { .. }) => Ok(status(id)),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        match self.shell.fs.lstat(&self.path(&path)).map(|n| &n.content) {
            Some(Content::Symlink(target)) => Ok(Name { id, files: vec![File::dummy(target.clone())] }),
            Some(_) => Err(StatusCode::Failure.with_message("Invalid argument")),
            None => Err(fs_error(FsError::NotFound)),
        }
    }
}

/// The channel's stream as russh-sftp reads it: an i/o error reads as the
/// end of the stream from then on, so the protocol loop (which retries
/// after any error but end-of-stream) ends instead of spinning; and the
/// end of the stream is reported only once `on_end` has run (the ssh
/// handler sends the exit status sshd sends when sftp-server exits:
/// clients wait for it, and it must go out before the loop drops the
/// channel, which closes it).
pub struct EndOnError<S> {
    inner: S,
    broken: bool,
    on_end: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S> EndOnError<S> {
    pub fn new(inner: S) -> Self {
        EndOnError { inner, broken: false, on_end: None }
    }

    /// Run `f` to completion when the stream ends (end of input or an error).
    pub fn on_end(mut self, f: impl Future<Output = ()> + Send + 'static) -> Self {
        self.on_end = Some(Box::pin(f));
        self
    }

    /// The stream has ended: finish `on_end`, then read as the end.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.broken = true;
        if let Some(f) = self.on_end.as_mut() {
            if f.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.on_end = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EndOnError<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return self.poll_end(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(_)) => self.poll_end(cx),
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => self.poll_end(cx),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EndOnError<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A stream whose reads always fail.
    struct Broken;
    impl AsyncRead for Broken {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::Error::other("reset")))
        }
    }

    #[tokio::test]
    async fn uploads_land_in_the_session_and_open_handles_share_one_file_s_budget() {
        use russh_sftp::server::Handler as _;
        let persona = std::sync::Arc::new(crate::persona::Persona::derive("sftp-test", None, None, 0));
        let session = std::sync::Arc::new(std::sync::Mutex::new(crate::event::Session::open(
            crate::DeckyContext::new(
                "sftp-test",
                (*persona).clone(),
                crate::sink::LineSink::detached(1 << 20),
                crate::Limits::default(),
                b"seed",
            ),
            "ssh",
            "127.0.0.1:1".parse().unwrap(),
        )));
        let capturer = crate::capture::Capture::new(&session).capturer();
        let mut sftp = Sftp::new(Shell::new("root", persona), capturer, 1000);
        let create = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let a = sftp.open(1, "/tmp/a".into(), create, FileAttributes::default()).await.unwrap().handle;
        let b = sftp.open(2, "/tmp/b".into(), create, FileAttributes::default()).await.unwrap().handle;
        sftp.write(3, a.clone(), 0, b"hello".to_vec()).await.unwrap();
        // A sparse write far out on a second handle would hold memory the
        // first already uses: refused.
        let refused = sftp.write(4, b.clone(), 996, b"xx".to_vec()).await.unwrap_err();
        assert_eq!(refused.status_code, StatusCode::Failure);
        assert!(sftp.write(5, a.clone(), 999, b"xx".to_vec()).await.is_err(), "past one file's limit");
        sftp.write(6, b.clone(), 0, b"ok".to_vec()).await.unwrap();
        sftp.close(7, a).await.unwrap();
        sftp.close(8, b).await.unwrap();
        assert_eq!(sftp.shell.read_file("/tmp/a").unwrap(), b"hello");
        let read = sftp.open(9, "/tmp/b".into(), OpenFlags::READ, FileAttributes::default()).await.unwrap().handle;
        assert_eq!(sftp.read(10, read.clone(), 0, 100).await.unwrap().data, b"ok");
        assert_eq!(sftp.read(11, read, 2, 100).await.unwrap_err().status_code, StatusCode::Eof);
        // The user's permissions hold: a user cannot write into /etc.
        let persona = std::sync::Arc::new(crate::persona::Persona::derive("sftp-test", None, None, 0));
        let user = persona.users.iter().find(|u| u.uid >= 1000).map(|u| u.name.clone()).unwrap();
        let capturer = crate::capture::Capture::new(&session).capturer();
        let mut sftp = Sftp::new(Shell::new(&user, persona), capturer, 1000);
        let denied = sftp.open(12, "/etc/x".into(), create, FileAttributes::default()).await.unwrap_err();
        assert_eq!(denied.status_code, StatusCode::PermissionDenied);
    }

    #[tokio::test]
    async fn a_broken_stream_reads_as_its_end() {
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = ended.clone();
        let mut s = EndOnError::new(Broken).on_end(async move {
            tokio::task::yield_now().await;
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut buf = [0u8; 4];
        // read_u32 on the raw stream would fail with "reset" forever; here
        // it is an end of stream, which ends russh-sftp's loop.
        let e = s.read_u32().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 1, "the end waits for on_end, which runs once");
        // A plain end of input is an end too.
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = ended.clone();
        let mut s = EndOnError::new(&b"ab"[..]).on_end(async move {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(s.read_u16().await.unwrap(), u16::from_be_bytes(*b"ab"));
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
