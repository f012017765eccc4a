//! SIEM export: every bus event as one ECS-style JSON document, sent as
//! an RFC 5424 syslog message over TCP or TLS with RFC 6587 octet-counting
//! framing (`<len> <message>`), which rsyslog (`imtcp`/`imptcp`),
//! syslog-ng, Logstash and Elastic Agent's syslog input all accept. The
//! JSON is the MSG part, so a receiver that parses JSON after the syslog
//! header gets the ECS fields as they are.
//!
//! Events go through a bounded queue ([`Siem::offer`] never waits): when
//! the destination is slow or away the queue fills, and events past it
//! are dropped and counted (`dropped`), never buffered without bound. The
//! sender connects, writes, and on any error reconnects with exponential
//! backoff (100 ms doubling up to `backoff_max`); the frame that failed
//! is sent again first on the next connection, so a receiver that is down
//! for a while gets everything that fitted in the queue once it is back.
//! A receiver that closes the connection is noticed at once (the read
//! side sees end of file), not only on the next write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use decnet_bus::Envelope;

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";
/// Events queued for the destination at most (`--siem-queue`).
pub const DEFAULT_QUEUE: usize = 10_000;
/// First reconnect delay; doubles per failed attempt up to `backoff_max`.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest one connect (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiemTransport {
    Tcp,
    /// TLS, trusting the CA certificates in this PEM file only.
    Tls {
        ca: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct SiemConfig {
    /// `host:port` of the receiver.
    pub addr: String,
    pub transport: SiemTransport,
    pub queue: usize,
    pub backoff_max: Duration,
    /// The syslog HOSTNAME and ECS `observer.hostname`: this host's id.
    pub hostname: String,
}

impl SiemConfig {
    /// Parse `tcp://host:port` or `tls://host:port` (`ca` needed for tls).
    pub fn parse(url: &str, ca: Option<PathBuf>) -> anyhow::Result<SiemConfig> {
        let (scheme, addr) = url
            .split_once("://")
            .ok_or_else(|| anyhow::anyhow!("--siem {url:?}: expected tcp://HOST:PORT or tls://HOST:PORT"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--siem {url:?}: no port (expected {scheme}://HOST:PORT)"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            anyhow::bail!("--siem {url:?}: expected {scheme}://HOST:PORT with a port from 1 to 65535");
        }
        let transport = match scheme {
            "tcp" => SiemTransport::Tcp,
            "tls" => SiemTransport::Tls {
                ca: ca.ok_or_else(|| anyhow::anyhow!("--siem tls://… needs --siem-ca (the receiver's CA, PEM)"))?,
            },
            other => anyhow::bail!("--siem {url:?}: unknown scheme {other:?} (tcp or tls)"),
        };
        Ok(SiemConfig {
            addr: addr.to_owned(),
            transport,
            queue: DEFAULT_QUEUE,
            backoff_max: Duration::from_secs(30),
            hostname: decnet_bus::sdk::host_id(),
        })
    }
}

/// What the exporter has done since start (`GET /api/v1/siem`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SiemStats {
    /// `tcp://host:port` or `tls://host:port`.
    pub destination: String,
    pub connected: bool,
    /// Events written to a connection.
    pub sent: u64,
    /// Events refused because the queue was full.
    pub dropped: u64,
    /// Events waiting in the queue.
    pub queued: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Why the last connection or write failed, if one did.
    pub last_error: Option<String>,
}

/// The exporter: a bounded queue and the task that drains it.
#[derive(Debug)]
pub struct Siem {
    config: SiemConfig,
    tx: mpsc::Sender<Vec<u8>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    connected: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    connects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Siem {
    pub fn new(config: SiemConfig) -> Arc<Siem> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        Arc::new(Siem {
            config,
            tx,
            rx: Mutex::new(Some(rx)),
            connected: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn stats(&self) -> SiemStats {
        let scheme = match self.config.transport {
            SiemTransport::Tcp => "tcp",
            SiemTransport::Tls { .. } => "tls",
        };
        SiemStats {
            destination: format!("{scheme}://{}", self.config.addr),
            connected: self.connected.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: (self.tx.max_capacity() - self.tx.capacity()) as u64,
            reconnects: self.connects.load(Ordering::Relaxed).saturating_sub(1),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Queue `event` for export; never waits. A full queue drops it (counted).
    pub fn offer(&self, event: &Envelope) {
        let frame = frame(&self.config.hostname, event);
        if self.tx.try_send(frame).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per power of two: a flood of drops stays readable.
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, queue = self.config.queue, "SIEM queue full: events dropped");
            }
        }
    }

    fn fail(&self, what: String) {
        tracing::warn!(destination = %self.config.addr, error = %what, "SIEM export");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }

    /// Drain the queue into the destination until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return tracing::error!("SIEM exporter started twice");
        };
        let tls = match &self.config.transport {
            SiemTransport::Tcp => None,
            SiemTransport::Tls { ca } => match tls_connector(ca) {
                Ok(c) => Some(c),
                Err(e) => return self.fail(format!("TLS setup: {e:#}; SIEM export disabled")),
            },
        };
        let mut backoff = BACKOFF_START;
        // A frame taken off the queue but not known to be written.
        let mut unsent: Option<Vec<u8>> = None;
        loop {
            let conn = tokio::select! {
                _ = cancel.cancelled() => return,
                c = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(tls.as_ref())) => c,
            };
            let stream = match conn {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.fail(format!("cannot connect to {}: {e}", self.config.addr));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    continue;
                }
                Err(_) => {
                    self.fail(format!("connecting to {} timed out", self.config.addr));
                    continue;
                }
            };
            self.connects.fetch_add(1, Ordering::Relaxed);
            self.connected.store(true, Ordering::Relaxed);
            tracing::info!(destination = %self.config.addr, "SIEM export connected");
            backoff = BACKOFF_START;
            let ended = match stream {
                Conn::Tcp(s) => self.pump(s, &mut rx, &mut unsent, &cancel).await,
                Conn::Tls(s) => self.pump(*s, &mut rx, &mut unsent, &cancel).await,
            };
            self.connected.store(false, Ordering::Relaxed);
            match ended {
                Ok(()) => return, // cancelled or the queue closed
                Err(e) => self.fail(format!("connection to {} lost: {e}", self.config.addr)),
            }
        }
    }

    async fn connect(&self, tls: Option<&tokio_rustls::TlsConnector>) -> std::io::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(&self.config.addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else { return Ok(Conn::Tcp(tcp)) };
        let host = self.config.addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.config.addr);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Conn::Tls(Box::new(tls.connect(name, tcp).await?)))
    }

    /// Write queued frames to `stream` until an error (reconnect), the
    /// peer closing (an error too), `cancel` or the queue closing (Ok).
    async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        rx: &mut mpsc::Receiver<Vec<u8>>,
        unsent: &mut Option<Vec<u8>>,
        cancel: &CancellationToken,
    ) -> std::io::Result<()> {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut scratch = [0u8; 512];
        loop {
            let frame = match unsent.take() {
                Some(f) => f,
                None => tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    f = rx.recv() => match f {
                        Some(f) => f,
                        None => return Ok(()),
                    },
                    // Receivers send nothing; a read that returns means it closed.
                    r = read.read(&mut scratch) => {
                        return Err(match r {
                            Ok(_) => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the receiver closed the connection"),
                            Err(e) => e,
                        });
                    }
                },
            };
            *unsent = Some(frame);
            let bytes = unsent.as_deref().unwrap_or_default();
            write.write_all(bytes).await?;
            write.flush().await?;
            *unsent = None;
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

fn tls_connector(ca: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::logship::tls::load_certs(ca)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Topics that are alerts (syslog severity warning, ECS `event.kind:
/// alert`); everything else is informational.
fn is_alert(topic: &str) -> bool {
    matches!(
        topic,
        "attacker.observed"
            | "credential.captured"
            | "attacker.artifact"
            | "credential.reuse.detected"
            | "worker.stale"
    )
}

/// ECS `event.category` and `event.type` for a topic.
fn categorize(topic: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match topic {
        "credential.captured" | "credential.reuse.detected" => (&["authentication", "intrusion_detection"], &["info"]),
        "attacker.artifact" => (&["file", "intrusion_detection"], &["creation"]),
        "attacker.session.started" => (&["session", "intrusion_detection"], &["start"]),
        "attacker.session.ended" => (&["session", "intrusion_detection"], &["end"]),
        t if t.starts_with("attacker.") => (&["intrusion_detection", "network"], &["info"]),
        t if t.starts_with("identity.") => (&["threat"], &["indicator"]),
        t if t.starts_with("decky.") || t.starts_with("topology.") => (&["configuration"], &["change"]),
        _ => (&["host"], &["info"]),
    }
}

fn rfc3339(ts: f64) -> String {
    let nanos = (ts * 1e3).round() as i128 * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// The ECS document for one event.
pub fn ecs(hostname: &str, event: &Envelope) -> Value {
    let p = &event.payload;
    let str_of = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    let (category, kind_type) = categorize(&event.topic);
    let dataset = event.topic.split('.').next().unwrap_or("decnet");
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), rfc3339(event.ts).into());
    doc.insert("message".into(), super::format::summary(event).into());
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "event".into(),
        json!({
            "kind": if is_alert(&event.topic) { "alert" } else { "event" },
            "category": category,
            "type": kind_type,
            "action": event.topic,
            "id": event.id,
            "module": "decnet",
            "dataset": format!("decnet.{dataset}"),
        }),
    );
    doc.insert(
        "observer".into(),
        json!({"vendor": "decnet", "product": "decnet", "type": "honeypot", "hostname": hostname}),
    );
    let mut related_ips: Vec<Value> = Vec::new();
    if let Some(ip) = str_of("attacker_ip") {
        doc.insert("source".into(), json!({"ip": ip}));
        related_ips.push(ip.into());
    }
    for key in ["attacker_ips", "members"] {
        if let Some(Value::Array(ips)) = p.get(key) {
            related_ips.extend(ips.iter().filter(|v| v.is_string()).cloned());
        }
    }
    if !related_ips.is_empty() {
        doc.insert("related".into(), json!({"ip": related_ips}));
    }
    if let Some(user) = str_of("username") {
        doc.insert("user".into(), json!({"name": user}));
    }
    if let Some(decky) = str_of("decky") {
        doc.insert("host".into(), json!({"name": decky}));
    }
    if let Some(service) = str_of("service") {
        doc.insert("service".into(), json!({"name": service}));
    }
    if event.topic == "attacker.artifact" {
        let path = str_of("path").unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        doc.insert(
            "file".into(),
            json!({
                "path": path, "name": name, "size": p.get("size"),
                "mime_type": p.get("mime"), "hash": {"sha256": p.get("sha256")},
            }),
        );
        if let Some(url) = str_of("url") {
            doc.insert("url".into(), json!({"full": url}));
        }
    }
    doc.insert("decnet".into(), json!({"topic": event.topic, "type": event.event_type, "payload": event.payload}));
    Value::Object(doc)
}

/// One RFC 6587 octet-counted RFC 5424 message: `<len> <PRI>1 TIMESTAMP
/// HOSTNAME decnet - - - <ECS JSON>` (facility local0).
pub fn frame(hostname: &str, event: &Envelope) -> Vec<u8> {
    let severity = if is_alert(&event.topic) { 4 } else { 6 };
    let pri = 16 * 8 + severity;
    // HOSTNAME is 1-255 printable ASCII, no spaces (RFC 5424 §6.2.4).
    let host: String = hostname.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let host = if host.is_empty() { "-".to_owned() } else { host };
    let json = ecs(hostname, event).to_string();
    let message = format!("<{pri}>1 {} {host} decnet - - - {json}", rfc3339(event.ts));
    format!("{} {message}", message.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_maps_to_ecs_fields_and_a_counted_frame() {
        let e = Envelope {
            v: 1,
            id: "abc".into(),
            topic: "credential.captured".into(),
            event_type: "credential".into(),
            ts: 1_700_000_000.25,
            payload: json!({"attacker_ip": "203.0.113.5", "decky": "web-01", "service": "ssh", "username": "root"}),
        };
        let bytes = frame("master", &e);
        let text = String::from_utf8(bytes).unwrap();
        let (len, message) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert!(message.starts_with("<132>1 2023-11-14T22:13:20.250Z master decnet - - - {"), "{message}");
        let doc: Value = serde_json::from_str(&message[message.find('{').unwrap()..]).unwrap();
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:20.250Z");
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["action"], "credential.captured");
        assert_eq!(doc["event"]["category"], json!(["authentication", "intrusion_detection"]));
        assert_eq!(doc["source"]["ip"], "203.0.113.5");
        assert_eq!(doc["user"]["name"], "root");
        assert_eq!(doc["host"]["name"], "web-01");
        assert_eq!(doc["observer"]["hostname"], "master");
    }

    #[test]
    fn destinations_parse_or_say_why_not() {
        let c = SiemConfig::parse("tcp://127.0.0.1:6514", None).unwrap();
        assert_eq!(c.addr, "127.0.0.1:6514");
        assert_eq!(c.transport, SiemTransport::Tcp);
        assert!(SiemConfig::parse("tls://siem:6514", None).unwrap_err().to_string().contains("--siem-ca"));
        assert!(SiemConfig::parse("udp://siem:514", None).unwrap_err().to_string().contains("unknown scheme"));
        assert!(SiemConfig::parse("tcp://siem", None).unwrap_err().to_string().contains("port"));
        assert!(SiemConfig::parse("siem:514", None).unwrap_err().to_string().contains("tcp://"));
    }
}
