//! Packet capture on one interface through an AF_PACKET socket.
//!
//! Why AF_PACKET and not libpcap: it is in every Linux kernel, needs no
//! C library or headers at build time, and a cooked (`SOCK_DGRAM`) socket
//! hands us network-layer packets directly on any link type (`lo`,
//! Ethernet, tunnels). Needs CAP_NET_RAW. Reads time out every
//! [`POLL`] so the capture thread notices a stop request promptly.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How often a blocked read wakes up to check for shutdown.
pub const POLL: Duration = Duration::from_millis(200);
/// Large enough for loopback's 64 KiB MTU.
pub const SNAPLEN: usize = 65_536 + 64;
const PACKET_OUTGOING: u8 = 4;

pub struct Capture {
    fd: OwnedFd,
    pub interface: String,
}

/// Opening failed for want of CAP_NET_RAW: not fixed by restarting the
/// process, so the worker waits (see `worker::open_capture`) instead of exiting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoCapturePrivilege(pub String);

fn os_err(what: &str) -> anyhow::Error {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => NoCapturePrivilege(format!(
            "{what}: {e} (packet capture needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep)"
        ))
        .into(),
        _ => anyhow::anyhow!("{what}: {e}"),
    }
}

impl Capture {
    /// Open a capture socket bound to `interface`.
    pub fn open(interface: &str) -> anyhow::Result<Capture> {
        let name = CString::new(interface).map_err(|_| anyhow::anyhow!("interface name {interface:?} has a NUL"))?;
        // SAFETY: name is a valid C string for the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            anyhow::bail!("no network interface named {interface:?}");
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto as i32) };
        if fd < 0 {
            return Err(os_err("cannot open a packet socket"));
        }
        // SAFETY: fd is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_ll is a valid value; we fill the fields bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll lives across the call, size is its real size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_err(&format!("cannot bind the packet socket to {interface}")));
        }
        let tv = libc::timeval { tv_sec: 0, tv_usec: POLL.as_micros() as libc::suseconds_t };
        // SAFETY: tv is valid for the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Capture { fd, interface: interface.to_string() })
    }

    /// Next packet into `buf`: `Ok(Some(len))`, `Ok(None)` on the poll
    /// timeout. Packets this host sends are skipped on `lo` (each appears
    /// once outgoing and once incoming), so every packet is seen once.
    pub fn next(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes at most len bytes.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Ok(None),
                    std::io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}
