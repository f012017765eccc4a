//! `ssh_client_banner`: the identification line an SSH client sends
//! (`SSH-2.0-<software> <comments>`), which names the attacker's tool
//! (OpenSSH, libssh, paramiko, Go's x/crypto/ssh, …) and its version.

/// The banner at the start of a client's stream, once its line is complete
/// (RFC 4253 §4.2: at most 255 bytes with CR LF). `None` if this is not one.
pub fn client_banner(stream: &[u8]) -> Option<String> {
    if !stream.starts_with(b"SSH-") {
        return None;
    }
    let end = stream.iter().take(255).position(|b| *b == b'\n')?;
    let line = &stream[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return None;
    }
    Some(String::from_utf8_lossy(line).into_owned())
}
