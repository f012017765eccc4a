//! Shared harness for the `api_*` tests: the real router on a real TCP
//! listener (127.0.0.1:0), a real SQLite file in a tempdir, and a stand-in
//! `systemctl` script that records its argv.
#![allow(dead_code)]

use decnet::api::{self, ApiConfig, AppState};
use decnet::auth::{self, Claims, JwtKeys, Role};
use decnet::registry::WorkerRegistry;
use decnet::systemd::Systemctl;
use decnet_bus::sdk::AppBus;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: &[u8] = b"test-secret";
pub const ADMIN: (&str, &str) = ("root", "root-pw");
pub const VIEWER: (&str, &str) = ("eve", "eve-pw");
pub const KNOWN: &[&str] = &["api", "bus", "mutator", "sniffer"];

/// How systemctl behaves in a test.
pub enum SystemctlMode {
    /// The stand-in script: `units` is what `list-unit-files` prints;
    /// `start` of a unit named in `failing` exits 5 with a message.
    StandIn { units: &'static str, failing: &'static [&'static str] },
    /// No systemctl on the search path at all.
    Missing,
    /// A systemctl that records its argv and exits 1 on everything, after
    /// printing unit lines as if it had worked (so a caller that ignored
    /// the exit code would see units).
    Failing,
}

pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub argv_log: PathBuf,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

const STAND_IN: &str = r#"#!/bin/sh
# Stand-in for systemctl: record argv (one '|'-terminated entry each), answer from files.
PATH=/usr/bin:/bin
for a in "$@"; do printf '%s|' "$a"; done >> "@DIR@/argv.log"
echo >> "@DIR@/argv.log"
case "$1" in
  list-unit-files) cat "@DIR@/units.txt"; exit 0 ;;
  start)
    for a in "$@"; do unit="$a"; done
    if grep -qx "$unit" "@DIR@/failing.txt"; then echo "Job for $unit failed: unit not found." >&2; exit 5; fi
    exit 0 ;;
esac
exit 1
"#;

const FAILING: &str = r#"#!/bin/sh
# Stand-in for a broken systemctl: record argv, print plausible output, fail.
for a in "$@"; do printf '%s|' "$a"; done >> "@DIR@/argv.log"
echo >> "@DIR@/argv.log"
echo 'decnet-bus.service enabled enabled'
echo 'decnet-mutator.service enabled enabled'
echo 'Failed to connect to bus: No such file or directory' >&2
exit 1
"#;

impl Harness {
    pub async fn start(bus: Arc<AppBus>, mode: SystemctlMode) -> Harness {
        Self::start_with(bus, mode, Duration::from_secs(90)).await
    }

    pub async fn start_with(bus: Arc<AppBus>, mode: SystemctlMode, stale: Duration) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let argv_log = dir.path().join("argv.log");
        let d = dir.path().display().to_string();
        let script = bin.join("systemctl");
        match mode {
            SystemctlMode::StandIn { units, failing } => {
                std::fs::write(&script, STAND_IN.replace("@DIR@", &d)).unwrap();
                std::fs::write(dir.path().join("units.txt"), units).unwrap();
                let failing: String = failing.iter().map(|w| format!("decnet-{w}.service\n")).collect();
                std::fs::write(dir.path().join("failing.txt"), failing).unwrap();
            }
            SystemctlMode::Failing => std::fs::write(&script, FAILING.replace("@DIR@", &d)).unwrap(),
            SystemctlMode::Missing => {}
        }
        if script.exists() {
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
        for ((name, pw), role) in [(ADMIN, Role::Admin), (VIEWER, Role::Viewer)] {
            let hash = auth::hash_password(pw).unwrap();
            decnet::store::users::create(&pool, name, &hash, role).await.unwrap();
        }
        let state = AppState::new(
            pool,
            JwtKeys::new(SECRET, Duration::from_secs(3600)),
            WorkerRegistry::new(KNOWN.iter().map(|s| s.to_string()).collect(), stale),
            bus,
            Systemctl::with_search_path(bin.as_os_str()),
            ApiConfig { heartbeat_interval: Duration::from_millis(200) },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = state.shutdown.clone();
        let server = tokio::spawn(api::serve(listener, state.clone(), async move { shutdown.cancelled().await }));
        Harness { base, http: reqwest::Client::new(), dir, state, argv_log, server: Some(server) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Lines systemctl was run with, argv entries joined by '|'.
    pub fn argv(&self) -> Vec<String> {
        std::fs::read_to_string(&self.argv_log).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    pub async fn login(&self, (user, pw): (&str, &str)) -> String {
        let resp = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN).await
    }

    pub fn forge(&self, secret: &[u8], claims: Claims) -> String {
        JwtKeys::new(secret, Duration::from_secs(60)).sign(&claims).unwrap()
    }

    /// `method path` with an optional bearer token; (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        if let Some(s) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(5), s).await.expect("server stops").unwrap().unwrap();
        }
    }
}

/// The production shared bus pointed at a socket nobody listens on.
pub fn no_bus() -> Arc<AppBus> {
    Arc::new(AppBus::new("api", "/nonexistent/decnet-test/bus.sock"))
}

/// Every route that needs a token: (method, path, admin only).
pub const PROTECTED: &[(&str, &str, bool)] = &[
    ("GET", "/api/v1/workers", false),
    ("POST", "/api/v1/workers/mutator/stop", true),
    ("POST", "/api/v1/workers/mutator/start", true),
    ("POST", "/api/v1/workers/start-all", true),
    ("GET", "/api/v1/attackers", false),
    ("GET", "/api/v1/identities", false),
    ("GET", "/api/v1/logs", false),
    ("GET", "/api/v1/fleet", false),
];

/// Poll `check` every 20 ms until it is true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
