//! Legacy scp (`scp -O`, and every scp before OpenSSH 9.0): the client
//! execs `scp -t DIR` (upload: this side is the sink) or `scp -f FILE`
//! (download: this side is the source) and the two ends speak the rcp
//! protocol over the channel: `C<mode> <size> <name>\n`, the bytes and a
//! `\0`, each step acknowledged with `\0`; `D…`/`E` enter and leave
//! folders (`-r`), `T…` carries times (`-p`); `\x01msg\n` is a warning,
//! `\x02msg\n` a fatal error.
//!
//! The sink is a pure state machine over the session filesystem (bytes in,
//! acknowledgements and finished files out), bounded in line length, file
//! size and files per session; the ssh handler drives it and the source
//! side with the channel.

use crate::shell::fs::{self, Node};
use crate::shell::Shell;

/// Longest control line (`C0644 <size> <name>`); a longer one is a protocol error.
const MAX_LINE: usize = 1024;
/// Files one scp session may upload.
pub const MAX_FILES: usize = 64;

/// What the client asked the server side to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `scp -t TARGET`: receive into TARGET.
    Sink { target: String, recursive: bool },
    /// `scp -f PATH`: send PATH.
    Source { path: String },
}

/// The exec command of an scp transfer, or `None` for any other command.
pub fn parse(command: &str) -> Option<Mode> {
    let mut words = command.split_whitespace();
    if words.next()? != "scp" {
        return None;
    }
    let (mut sink, mut source, mut recursive) = (false, false, false);
    let mut operand = None;
    let mut options_done = false;
    for w in words.by_ref() {
        if !options_done && w == "--" {
            options_done = true;
        } else if !options_done && w.starts_with('-') && w.len() > 1 {
            sink |= w.contains('t');
            source |= w.contains('f');
            recursive |= w.contains('r');
        } else {
            operand = Some(w.to_string());
            break;
        }
    }
    // The rest of the line is the operand's tail: a path with spaces.
    let rest: Vec<&str> = words.collect();
    let mut path = operand?;
    if !rest.is_empty() {
        path = format!("{path} {}", rest.join(" "));
    }
    // OpenSSH quotes the path for the remote shell.
    if path.len() >= 2 && path.starts_with('\'') && path.ends_with('\'') {
        path = path[1..path.len() - 1].replace("'\\''", "'");
    }
    match (sink, source) {
        (true, false) => Some(Mode::Sink { target: path, recursive }),
        (false, true) => Some(Mode::Source { path }),
        _ => None,
    }
}

/// What one piece of input produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes for the client (acknowledgements, errors).
    pub reply: Vec<u8>,
    /// Files completed: (path in the session filesystem, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// The transfer is over, with this exit status.
    pub end: Option<u32>,
}

enum State {
    Line(Vec<u8>),
    Data {
        path: String,
        mode: u32,
        remaining: u64,
        buf: Vec<u8>,
    },
    /// The file's bytes are in; its trailing `\0` is next.
    Trailer {
        path: String,
        mode: u32,
        buf: Vec<u8>,
    },
    Done,
}

/// The receiving side of `scp -t`.
pub struct Sink {
    /// The target, then each folder entered with `D`.
    dirs: Vec<String>,
    recursive: bool,
    state: State,
    files: usize,
    max_file: u64,
}

impl Sink {
    /// A sink writing into `target` (relative to the shell's cwd).
    /// `max_file`: the largest file accepted.
    pub fn new(target: &str, recursive: bool, shell: &Shell, max_file: u64) -> Sink {
        let target = if target.is_empty() { "." } else { target };
        Sink {
            dirs: vec![fs::normalize(&shell.cwd, target)],
            recursive,
            state: State::Line(Vec::new()),
            files: 0,
            max_file,
        }
    }

    /// Where a name sent by the client lands: inside the current folder,
    /// or the target itself when the target is not a folder (`scp f host:new`).
    fn place(&self, name: &str, shell: &Shell) -> String {
        let top = self.dirs.last().expect("the target is never popped");
        match shell.fs.stat(top) {
            Some(n) if n.is_dir() => fs::normalize(top, name),
            _ if self.dirs.len() == 1 => top.clone(),
            _ => fs::normalize(top, name),
        }
    }

    fn fatal(step: &mut Step, msg: &str) {
        step.reply.push(2);
        step.reply.extend_from_slice(format!("scp: {msg}\n").as_bytes());
        step.end = Some(1);
    }

    /// Feed what the client sent.
    pub fn feed(&mut self, mut data: &[u8], shell: &mut Shell) -> Step {
        let mut step = Step::default();
        while !data.is_empty() && step.end.is_none() {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return step,
                State::Line(mut line) => {
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > MAX_LINE {
                            Self::fatal(&mut step, "protocol error: line too long");
                            return step;
                        }
                        self.state = State::Line(line);
                        return step;
                    };
                    line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    if line.len() > MAX_LINE {
                        Self::fatal(&mut step, "protocol error: line too long");
                        return step;
                    }
                    self.state = State::Line(Vec::new());
                    self.header(&line, shell, &mut step);
                }
                State::Data { path, mode, remaining, mut buf } => {
                    let take = (remaining.min(data.len() as u64)) as usize;
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::Trailer { path, mode, buf }
                    } else {
                        State::Data { path, mode, remaining, buf }
                    };
                }
                State::Trailer { path, mode, buf } => {
                    data = &data[1..];
                    self.state = State::Line(Vec::new());
                    let node = Node::file(buf.clone(), mode & 0o777, shell.uid, crate::shell::now());
                    match shell.fs.put(&path, node) {
                        Ok(()) => {
                            step.reply.push(0);
                            step.files.push((path, buf));
                        }
                        Err(e) => {
                            step.reply.push(1);
                            step.reply.extend_from_slice(format!("scp: {path}: {}\n", e.message()).as_bytes());
                        }
                    }
                }
            }
        }
        step
    }

    /// One control line.
    fn header(&mut self, line: &[u8], shell: &mut Shell, step: &mut Step) {
        let text = String::from_utf8_lossy(line);
        let Some(kind) = text.chars().next() else {
            return Self::fatal(step, "protocol error: empty line");
        };
        match kind {
            'T' => step.reply.push(0),
            // The client's own warnings and errors: nothing to answer.
            '\x01' | '\x02' => {}
            'E' => {
                if self.dirs.len() > 1 {
                    self.dirs.pop();
                }
                step.reply.push(0);
            }
            'C' | 'D' => {
                let mut parts = text[1..].splitn(3, ' ');
                let (Some(mode), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                    return Self::fatal(step, "protocol error: bad header");
                };
                let (Ok(mode), Ok(size)) = (u32::from_str_radix(mode, 8), size.parse::<u64>()) else {
                    return Self::fatal(step, "protocol error: bad mode or size");
                };
                // As OpenSSH's sink: a name is one path component.
                if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                    return Self::fatal(step, &format!("error: unexpected filename: {name}"));
                }
                let path = self.place(name, shell);
                if kind == 'D' {
                    if !self.recursive {
                        return Self::fatal(step, "error: received directory without -r");
                    }
                    if shell.fs.stat(&path).is_none_or(|n| !n.is_dir()) {
                        let node = Node::dir(mode & 0o777, shell.uid, crate::shell::now());
                        if let Err(e) = shell.fs.put(&path, node) {
                            return Self::fatal(step, &format!("{path}: {}", e.message()));
                        }
                    }
                    self.dirs.push(path);
                    step.reply.push(0);
                    return;
                }
                self.files += 1;
                if self.files > MAX_FILES {
                    return Self::fatal(step, &format!("{path}: Disk quota exceeded"));
                }
                if size > self.max_file {
                    return Self::fatal(step, &format!("{path}: No space left on device"));
                }
                let writable = shell.fs.stat(fs::parent(&path)).is_some_and(|d| d.is_dir() && shell.may_write(d));
                if !writable {
                    return Self::fatal(step, &format!("{path}: Permission denied"));
                }
                step.reply.push(0);
                self.state = if size == 0 {
                    State::Trailer { path, mode, buf: Vec::new() }
                } else {
                    State::Data { path, mode, remaining: size, buf: Vec::with_capacity(size.min(64 * 1024) as usize) }
                };
            }
            _ => Self::fatal(step, "protocol error: unknown message"),
        }
    }
}

/// What `scp -f PATH` sends: the `C` line and the file's bytes, or the
/// error line scp prints for it.
pub fn source(path: &str, shell: &Shell) -> Result<(Vec<u8>, Vec<u8>), Vec<u8>> {
    let full = fs::normalize(&shell.cwd, path);
    let error = |msg: &str| {
        let mut e = vec![1];
        e.extend_from_slice(format!("scp: {path}: {msg}\n").as_bytes());
        e
    };
    let node = shell.fs.stat(&full).ok_or_else(|| error("No such file or directory"))?;
    if node.is_dir() {
        return Err(error("not a regular file"));
    }
    let mode = node.mode & 0o777;
    let bytes = shell.read_file(&full).map_err(|e| error(e.message()))?;
    let header = format!("C{mode:04o} {} {}\n", bytes.len(), fs::basename(&full));
    Ok((header.into_bytes(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persona::Persona;
    use std::sync::Arc;

    fn shell() -> Shell {
        Shell::new("root", Arc::new(Persona::derive("scp-test", None, None, 0)))
    }

    #[test]
    fn commands_name_the_mode_and_path() {
        assert_eq!(parse("scp -t /tmp/"), Some(Mode::Sink { target: "/tmp/".into(), recursive: false }));
        assert_eq!(
            parse("scp -v -r -d -t -- '/tmp/a b'"),
            Some(Mode::Sink { target: "/tmp/a b".into(), recursive: true })
        );
        assert_eq!(parse("scp -f .bashrc"), Some(Mode::Source { path: ".bashrc".into() }));
        assert_eq!(parse("scp x y"), None);
        assert_eq!(parse("ls -t /tmp"), None);
    }

    #[test]
    fn an_upload_lands_in_the_session_filesystem_byte_for_byte() {
        let mut sh = shell();
        let mut sink = Sink::new("/tmp", false, &sh, 1024);
        // Split at awkward places: the header and the data across reads.
        let mut replies = Vec::new();
        let mut files = Vec::new();
        for chunk in [&b"C0755 6 x.s"[..], b"h\nab", b"\ncd\n\0", b"C0644 0 empty\n\0"] {
            let step = sink.feed(chunk, &mut sh);
            replies.extend(step.reply);
            files.extend(step.files);
            assert_eq!(step.end, None);
        }
        assert_eq!(replies, vec![0, 0, 0, 0]);
        assert_eq!(files, vec![("/tmp/x.sh".to_string(), b"ab\ncd\n".to_vec()), ("/tmp/empty".to_string(), vec![])]);
        let node = sh.fs.stat("/tmp/x.sh").unwrap();
        assert_eq!(node.mode & 0o777, 0o755);
        assert_eq!(sh.read_file("/tmp/x.sh").unwrap(), b"ab\ncd\n");
        // A file target names the file itself.
        let mut sink = Sink::new("/tmp/renamed", false, &sh, 1024);
        let step = sink.feed(b"C0644 2 orig\nhi\0", &mut sh);
        assert_eq!(step.files[0].0, "/tmp/renamed");
    }

    #[test]
    fn hostile_headers_end_the_transfer() {
        let mut sh = shell();
        for bad in [&b"C0644 3 ../../etc/passwd\n"[..], b"C0644 3 a/b\n", b"Cxyz 1 a\n", b"D0755 0 dir\n", b"Q\n"] {
            let step = Sink::new("/tmp", false, &sh, 1024).feed(bad, &mut sh);
            assert_eq!(step.end, Some(1), "{bad:?}");
            assert_eq!(step.reply[0], 2);
            assert!(step.files.is_empty());
        }
        let step = Sink::new("/tmp", false, &sh, 1024).feed(b"C0644 2000 big\n", &mut sh);
        assert!(String::from_utf8_lossy(&step.reply).contains("No space left"), "{step:?}");
        let step = Sink::new("/tmp", false, &sh, 1024).feed(&[b'C'; 2000], &mut sh);
        assert_eq!(step.end, Some(1), "an endless line is cut off");
        let mut sink = Sink::new("/tmp", false, &sh, 1024);
        let many: Vec<u8> = (0..=MAX_FILES).flat_map(|i| format!("C0644 1 f{i}\nx\0").into_bytes()).collect();
        let step = sink.feed(&many, &mut sh);
        assert_eq!(step.files.len(), MAX_FILES);
        assert_eq!(step.end, Some(1));
    }

    #[test]
    fn folders_need_r_and_files_are_sent_with_their_mode() {
        let mut sh = shell();
        let mut sink = Sink::new("/tmp", true, &sh, 1024);
        let step = sink.feed(b"D0755 0 kit\nC0600 1 a\nz\0E\nT1 0 1 0\n", &mut sh);
        assert_eq!(step.reply, vec![0, 0, 0, 0, 0]);
        assert_eq!(step.files, vec![("/tmp/kit/a".to_string(), b"z".to_vec())]);
        let (header, bytes) = source("/tmp/kit/a", &sh).unwrap();
        assert_eq!(header, b"C0600 1 a\n");
        assert_eq!(bytes, b"z");
        let e = source("/nope", &sh).unwrap_err();
        assert_eq!(e, b"\x01scp: /nope: No such file or directory\n");
        assert!(source("/tmp", &sh).is_err());
    }
}
