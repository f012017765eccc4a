//! `decnet login`: get a bearer token from the API and keep it in
//! `$DECNET_HOME/token` (mode 0600) for `decnet workers` and friends.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::api::login::LoginResponse;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Base URL of the API.
    #[arg(long, env = "DECNET_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// User name to log in as (`decnet up` creates `admin`).
    #[arg(long, short = 'u', default_value = crate::initial_admin::USERNAME)]
    pub username: String,
}

/// Where `decnet login` stores the token.
pub fn token_path() -> PathBuf {
    crate::home::decnet_home().join("token")
}

/// The token to send: `DECNET_TOKEN`, else the one `decnet login` stored.
pub fn load_token() -> anyhow::Result<String> {
    if let Some(t) = std::env::var("DECNET_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_owned());
    }
    let path = token_path();
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} is empty; run `decnet login` again", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "not logged in: run `decnet login` (as admin) or `decnet login --username NAME`, or set DECNET_TOKEN"
            )
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}

/// Write the token readable by its owner only, replacing any old one
/// atomically (a crash never leaves a half-written token).
fn store_token(token: &str) -> anyhow::Result<PathBuf> {
    let home = crate::home::ensure_home()?;
    let path = home.join("token");
    let tmp = home.join(format!(".token.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The `error` message of an API error answer, or the status text.
pub async fn api_error(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    match body.get("error").and_then(|e| e.as_str()) {
        Some(msg) => anyhow::anyhow!("API answered {status}: {msg}"),
        None => anyhow::anyhow!("API answered {status}"),
    }
}

pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let password = super::user::read_password(&format!("Password for {}: ", args.username), false)?;
    let url = format!("{}/api/v1/auth/login", args.api.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"username": args.username, "password": password}))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the API at {}: {e}", args.api))?;
    if !resp.status().is_success() {
        return Err(api_error(resp).await);
    }
    let login: LoginResponse = resp.json().await.map_err(|e| anyhow::anyhow!("unexpected login answer: {e}"))?;
    let path = store_token(&login.access_token)?;
    let until = time::OffsetDateTime::from_unix_timestamp(login.expires_at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| login.expires_at.to_string());
    println!(
        "logged in as {} ({}); token valid until {until}, stored in {}",
        args.username,
        login.role,
        path.display()
    );
    Ok(())
}
