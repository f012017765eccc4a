//! The few Docker Engine API calls the collector makes, over the daemon's
//! UNIX socket with hyper's HTTP/1.1 client (one connection per request:
//! a log follow holds its connection for as long as the container runs,
//! and list/inspect are a few per poll, so pooling buys nothing).
//!
//! Unversioned paths (`/containers/json`, not `/v1.43/...`): the daemon
//! answers them with its own API version, and the fields used here
//! (`Id`, `Names`, `Labels`, `Config.Tty`) have not changed since 1.18.
//! Everything the daemon returns is bounded: JSON bodies by size, calls
//! other than the log follow by a timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// The label a container needs for its output to be read.
pub const LABEL: &str = "decnet.fleet.service";
/// `filters={"label":["decnet.fleet.service=true"]}`, percent-encoded.
const LABEL_FILTER: &str = "%7B%22label%22%3A%5B%22decnet.fleet.service%3Dtrue%22%5D%7D";
/// Largest JSON answer read (a list of thousands of containers fits).
const MAX_JSON: usize = 16 * 1024 * 1024;
/// List and inspect must answer within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the daemon answered {status} to {path}")]
    Status { status: hyper::StatusCode, path: String },
    #[error("reading the answer: {0}")]
    Body(String),
    #[error("bad JSON from the daemon: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerSummary {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
}

impl ContainerSummary {
    /// The label is exactly `true` (checked here too, not only by the
    /// daemon's filter, so a daemon that ignores filters reads nothing extra).
    pub fn is_labelled(&self) -> bool {
        self.labels.as_ref().and_then(|l| l.get(LABEL)).is_some_and(|v| v == "true")
    }

    /// `/name` → `name`; the short id when there is no name.
    pub fn name(&self) -> String {
        match self.names.first() {
            Some(n) => n.trim_start_matches('/').chars().take(128).collect(),
            None => self.id.chars().take(12).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Inspect {
    #[serde(rename = "Config")]
    config: InspectConfig,
}

#[derive(Debug, Deserialize)]
struct InspectConfig {
    #[serde(rename = "Tty", default)]
    tty: bool,
}

/// An id the daemon gave us, safe to put in a path (Docker ids are hex).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A followed log: the body and the request handle that keeps its
/// connection open.
pub struct LogStream {
    _sender: SendRequest<Empty<Bytes>>,
    body: Incoming,
}

impl LogStream {
    /// The next chunk of the body; `None` when it ended cleanly.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, hyper::Error>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct DockerApi {
    socket: PathBuf,
}

impl DockerApi {
    pub fn new(socket: &Path) -> DockerApi {
        DockerApi { socket: socket.to_path_buf() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn get(&self, path: &str) -> Result<(SendRequest<Empty<Bytes>>, Incoming), ApiError> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(ApiError::Connect)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "docker: connection ended");
            }
        });
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::Body(e.to_string()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Status { status, path: path.split('?').next().unwrap_or(path).to_string() });
        }
        Ok((sender, response.into_body()))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let call = async {
            let (_sender, body) = self.get(path).await?;
            let bytes = Limited::new(body, MAX_JSON).collect().await.map_err(|e| ApiError::Body(e.to_string()))?;
            Ok(serde_json::from_slice(&bytes.to_bytes())?)
        };
        tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| ApiError::Timeout(CALL_TIMEOUT))?
    }

    /// Running containers that carry the label.
    pub async fn list_labelled(&self) -> Result<Vec<ContainerSummary>, ApiError> {
        let all: Vec<ContainerSummary> = self.get_json(&format!("/containers/json?filters={LABEL_FILTER}")).await?;
        Ok(all.into_iter().filter(|c| c.is_labelled() && valid_id(&c.id)).collect())
    }

    /// Whether the container runs with a TTY (its log is then a raw stream).
    pub async fn has_tty(&self, id: &str) -> Result<bool, ApiError> {
        let inspect: Inspect = self.get_json(&format!("/containers/{id}/json")).await?;
        Ok(inspect.config.tty)
    }

    /// Follow stdout and stderr from `since` (unix seconds, inclusive), with timestamps.
    pub async fn follow_logs(&self, id: &str, since: &str) -> Result<LogStream, ApiError> {
        let path = format!("/containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1&since={since}");
        let (sender, body) = tokio::time::timeout(CALL_TIMEOUT, self.get(&path))
            .await
            .map_err(|_| ApiError::Timeout(CALL_TIMEOUT))??;
        Ok(LogStream { _sender: sender, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_ids() {
        let c: ContainerSummary = serde_json::from_str(
            r#"{"Id":"abc123","Names":["/web"],"Labels":{"decnet.fleet.service":"true"},"State":"running"}"#,
        )
        .unwrap();
        assert!(c.is_labelled());
        assert_eq!(c.name(), "web");
        let c: ContainerSummary =
            serde_json::from_str(r#"{"Id":"abc","Labels":{"decnet.fleet.service":"false"}}"#).unwrap();
        assert!(!c.is_labelled());
        let c: ContainerSummary = serde_json::from_str(r#"{"Id":"abc","Labels":null}"#).unwrap();
        assert!(!c.is_labelled());
        assert!(valid_id("0123abcdef"));
        assert!(!valid_id("../../x") && !valid_id("") && !valid_id("a?b"));
    }

    #[test]
    fn the_filter_is_the_encoded_label() {
        let decoded = LABEL_FILTER
            .replace("%7B", "{")
            .replace("%22", "\"")
            .replace("%3A", ":")
            .replace("%5B", "[")
            .replace("%3D", "=")
            .replace("%5D", "]")
            .replace("%7D", "}");
        assert_eq!(decoded, format!(r#"{{"label":["{LABEL}=true"]}}"#));
    }
}
