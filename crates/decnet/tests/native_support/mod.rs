//! Support for tests of natively served deckies: a receiver speaking the
//! collector's wire, a native driver, and network namespaces the test
//! creates (`ip netns`, as root) so real clients and scanners reach the
//! deckies at their own addresses and default ports without touching the
//! host's network.
//!
//! The deckies' sockets are made inside the namespace (the driver's
//! `netns` option), while the decnet code serving them and the receiver
//! stay in the test process on the host side. Clients run inside the
//! namespace with `ip netns exec`.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use decnet::events::rfc5424::{parse_line, SyslogLine, SD_ID};
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The collector's side of the wire: accepts connections and splits
/// octet-counted frames (RFC 6587) into lines.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(space) = buf.iter().position(|b| *b == b' ') {
                            let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
                            if buf.len() < space + 1 + len {
                                break;
                            }
                            let line = String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).unwrap();
                            buf.drain(..space + 1 + len);
                            sink.lock().unwrap().push(line);
                        }
                    }
                });
            }
        });
        Receiver { addr, lines }
    }

    pub fn parsed(&self) -> Vec<SyslogLine> {
        self.lines.lock().unwrap().iter().map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// Wait (at most 20 s, for a loaded CI machine) for a line matching
    /// `pred`; panics with every line received when none comes.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&SyslogLine) -> bool) -> SyslogLine {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.parsed().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(Instant::now() < deadline, "no {what} line; got:\n{}", self.lines.lock().unwrap().join("\n"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A structured-data parameter of a fleet line.
pub fn sd<'a>(line: &'a SyslogLine, name: &str) -> Option<&'a str> {
    line.element(SD_ID).and_then(|e| e.param(name))
}

/// Whether `line` is the `msgid` event of service `app`.
pub fn is(line: &SyslogLine, app: &str, msgid: &str) -> bool {
    line.app_name.as_deref() == Some(app) && line.msgid.as_deref() == Some(msgid)
}

/// A network namespace made for one test (`ip netns add`), loopback up,
/// deleted on drop. Needs root (CI and `scripts/test.sh` run as root).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("dn-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("ip").args(args).output().expect("iproute2 is installed");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["netns", "add", &name]);
        let ns = Netns { name };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's file, as the native driver's `netns` option wants.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).kill_on_drop(true);
        c
    }

    /// Run `program args…` inside the namespace (at most `secs` seconds);
    /// its output. Stdin is empty.
    pub async fn run(&self, secs: u64, program: &str, args: &[&str]) -> std::process::Output {
        let mut c = self.command(program);
        c.args(args).stdin(std::process::Stdio::null());
        tokio::time::timeout(Duration::from_secs(secs), c.output())
            .await
            .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in {secs} s"))
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// `nmap -sV` of one port, as an attacker in the namespace runs it; the
    /// report's line for that port (`PORT STATE SERVICE VERSION`).
    pub async fn nmap_version(&self, addr: IpAddr, port: u16) -> String {
        let p = port.to_string();
        let out = self.run(300, "nmap", &["-sV", "-Pn", "-n", "-p", &p, &addr.to_string()]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with(&format!("{port}/")))
            .unwrap_or_else(|| panic!("no line for port {port} in nmap's report:\n{text}"))
            .to_string()
    }

    /// `nmap -sU -sV` of one UDP port; the report's line for it.
    pub async fn nmap_udp_version(&self, addr: IpAddr, port: u16) -> String {
        let p = port.to_string();
        let out = self.run(300, "nmap", &["-sU", "-sV", "-Pn", "-n", "-p", &p, &addr.to_string()]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with(&format!("{port}/udp")))
            .unwrap_or_else(|| panic!("no line for {port}/udp in nmap's report:\n{text}"))
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Deckies served in one test namespace at their default ports, their
/// lines going to a [`Receiver`].
pub struct NsFleet {
    pub ns: Netns,
    pub receiver: Receiver,
    pub driver: NativeDriver,
}

impl NsFleet {
    /// A namespace and a driver serving `deckies` (name, 127.x address on
    /// the namespace's loopback) at their default ports; `tune` adjusts the
    /// options (personas, limits) before the driver starts.
    pub async fn start(tag: &str, deckies: &[(&str, &str)], tune: impl FnOnce(&mut NativeOptions)) -> NsFleet {
        let ns = Netns::new(tag);
        let receiver = Receiver::start().await;
        let mut o = NativeOptions::new(receiver.addr, b"test seed, fixed so keys are stable".to_vec());
        for (decky, ip) in deckies {
            o.addresses.insert(decky.to_string(), ip.parse().unwrap());
            o.netns.insert(decky.to_string(), ns.path());
        }
        tune(&mut o);
        let driver = NativeDriver::live(o, None);
        NsFleet { ns, receiver, driver }
    }

    /// Open `services` on `decky`. Waits for the SSH banner when ssh is
    /// among them (host keys take seconds to make).
    pub async fn deploy(&self, decky: &str, services: &[&str]) {
        let wanted: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        self.driver
            .apply(&Change { project: "fleet", decky, services: &wanted, fleet: &[] })
            .await
            .unwrap_or_else(|e| panic!("deploy {decky}: {e}"));
        let ssh = self.driver.listening("fleet", decky).await.into_iter().find(|(s, _)| s == "ssh");
        if let Some((_, at)) = ssh {
            let banner = self.connect_and_read(at, 4, Duration::from_secs(180)).await;
            assert!(banner.starts_with(b"SSH-"), "no ssh banner from {decky}: {banner:?}");
        }
    }

    /// The address `decky` serves `service` on (inside the namespace).
    pub async fn at(&self, decky: &str, service: &str) -> SocketAddr {
        let listening = self.driver.listening("fleet", decky).await;
        listening
            .into_iter()
            .find(|(s, _)| s == service)
            .unwrap_or_else(|| panic!("{decky} does not serve {service}"))
            .1
    }

    /// Send one datagram from inside the namespace to `at` and wait up to
    /// `wait` for the first datagram back (from any port): the reply and
    /// where it came from, or `None`.
    pub async fn udp_exchange(
        &self,
        at: SocketAddr,
        payload: Vec<u8>,
        wait: Duration,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let path = self.ns.path();
        tokio::task::spawn_blocking(move || {
            decnet::decky::netns::run_in(Some(&path), move || {
                let s = std::net::UdpSocket::bind(SocketAddr::new(at.ip(), 0))?;
                s.set_read_timeout(Some(wait))?;
                s.send_to(&payload, at)?;
                let mut got = vec![0u8; 65_535];
                match s.recv_from(&mut got) {
                    Ok((n, from)) => {
                        got.truncate(n);
                        Ok(Some((got, from)))
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("udp to {at} in the namespace: {e}"))
    }

    /// Connect from inside the namespace and read up to `n` bytes (what a
    /// server says first): for banners, without a client program.
    pub async fn connect_and_read(&self, at: SocketAddr, n: usize, wait: Duration) -> Vec<u8> {
        let path = self.ns.path();
        tokio::task::spawn_blocking(move || {
            decnet::decky::netns::run_in(Some(&path), move || {
                use std::io::Read;
                let mut s = std::net::TcpStream::connect_timeout(&at, Duration::from_secs(5))?;
                s.set_read_timeout(Some(wait))?;
                let mut got = vec![0u8; n];
                let mut filled = 0;
                while filled < n {
                    match s.read(&mut got[filled..])? {
                        0 => break,
                        k => filled += k,
                    }
                }
                got.truncate(filled);
                Ok(got)
            })
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("connect to {at} in the namespace: {e}"))
    }
}
