//! Fetching what an attacker asked a download tool for, when the operator
//! turned it on (off by default: fetching is traffic towards an address
//! the attacker chose).
//!
//! Every hop is judged by the [`CidrPolicy`] on the address decnet will
//! actually connect to: the host is resolved here, the resolved address is
//! checked, and the HTTP client is pinned to it (so a name that resolves
//! differently a moment later cannot slip past the check). Redirects are
//! never followed by the client: each target is parsed, resolved and
//! checked like the first URL, at most [`MAX_REDIRECTS`] times. The body is
//! read up to `max_bytes` and the whole fetch ends at `timeout`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::net_policy::CidrPolicy;

/// Redirects followed (wget's default is 20; payload hosts rarely need more than 2).
pub const MAX_REDIRECTS: usize = 5;

/// The operator's fetch settings.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Off by default: only the URL is recorded.
    pub enabled: bool,
    pub policy: CidrPolicy,
    /// Largest payload fetched; a larger one is abandoned.
    pub max_bytes: u64,
    /// The whole fetch (resolution, redirects, body).
    pub timeout: Duration,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            enabled: false,
            policy: CidrPolicy::default(),
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why nothing was fetched: refused by policy, or tried and failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Denied(String),
    Failed(String),
}

/// The User-Agent the named tool sends, so the payload host answers as it
/// would to the real tool.
fn user_agent(tool: &str) -> &'static str {
    match tool {
        "curl" => "curl/7.81.0",
        _ => "Wget/1.21.2",
    }
}

/// Where one hop goes, once resolved and allowed.
fn check_url(url: &str) -> Result<reqwest::Url, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::Failed(format!("bad url: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(FetchError::Denied(format!("scheme {other} is not fetched"))),
    }
    if parsed.host().is_none() {
        return Err(FetchError::Failed("url has no host".into()));
    }
    Ok(parsed)
}

/// The address the hop connects to, checked against the policy.
async fn resolve(policy: &CidrPolicy, url: &reqwest::Url) -> Result<SocketAddr, FetchError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().ok_or_else(|| FetchError::Failed("url has no host".into()))?;
    let addr = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| FetchError::Failed(format!("cannot resolve {host}")))?,
    };
    if !policy.permits(addr.ip()) {
        return Err(FetchError::Denied(format!("address {} not allowed", addr.ip())));
    }
    Ok(addr)
}

/// Fetch `url` as `tool` would, within `settings`.
pub async fn fetch(settings: &FetchSettings, tool: &str, url: &str) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(settings.timeout, fetch_hops(settings, tool, url)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Failed(format!("timed out after {} s", settings.timeout.as_secs_f64()))),
    }
}

async fn fetch_hops(settings: &FetchSettings, tool: &str, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut current = check_url(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let addr = resolve(&settings.policy, &current).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(user_agent(tool))
            .timeout(settings.timeout);
        if let Some(name) =
            current.host_str().filter(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_err())
        {
            // Pinned: the client connects to the address just checked.
            builder = builder.resolve(name, addr);
        }
        let client = builder.build().map_err(|e| FetchError::Failed(format!("client: {e}")))?;
        let mut response = client.get(current.clone()).send().await.map_err(|e| FetchError::Failed(cause(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::Failed(format!("HTTP {} without a Location", status.as_u16())))?;
            let next =
                current.join(location).map_err(|e| FetchError::Failed(format!("bad redirect: {e}")))?.to_string();
            current = check_url(&next)?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Failed(format!("HTTP {}", status.as_u16())));
        }
        if response.content_length().is_some_and(|n| n > settings.max_bytes) {
            return Err(FetchError::Failed(format!("larger than {} bytes", settings.max_bytes)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Failed(cause(&e)))? {
            if body.len() as u64 + chunk.len() as u64 > settings.max_bytes {
                return Err(FetchError::Failed(format!("larger than {} bytes", settings.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(body);
    }
    Err(FetchError::Failed(format!("more than {MAX_REDIRECTS} redirects")))
}

/// A reqwest error with its underlying cause, in a few words.
fn cause(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-purpose HTTP server: answers every request with `reply(path)`.
    async fn server(reply: fn(&str) -> String) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                    let _ = s.write_all(reply(&path).as_bytes()).await;
                });
            }
        });
        addr
    }

    fn on(allow: &[&str], deny: &[&str]) -> FetchSettings {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FetchSettings {
            enabled: true,
            policy: CidrPolicy::parse(&list(allow), &list(deny)).unwrap(),
            max_bytes: 64,
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn redirects_are_rechecked_and_limits_hold() {
        let addr = server(|path| match path {
            "/x.sh" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".into(),
            "/hop" => "HTTP/1.1 302 Found\r\nLocation: /x.sh\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            "/out" => "HTTP/1.1 302 Found\r\nLocation: http://10.255.255.1/x\r\nContent-Length: 0\r\n\r\n".into(),
            "/big" => format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}", "x".repeat(100)),
            "/loop" => "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".into(),
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        })
        .await;
        let s = on(&["127.0.0.0/8"], &[]);
        let url = |p: &str| format!("http://{addr}{p}");
        assert_eq!(fetch(&s, "wget", &url("/x.sh")).await.unwrap(), b"hello");
        assert_eq!(fetch(&s, "wget", &url("/hop")).await.unwrap(), b"hello", "a redirect inside the policy");
        // A redirect to a network the policy does not allow is refused at
        // that hop, without connecting.
        assert_eq!(
            fetch(&s, "wget", &url("/out")).await,
            Err(FetchError::Denied("address 10.255.255.1 not allowed".into()))
        );
        assert_eq!(fetch(&s, "wget", &url("/big")).await, Err(FetchError::Failed("larger than 64 bytes".into())));
        assert_eq!(fetch(&s, "wget", &url("/nope")).await, Err(FetchError::Failed("HTTP 404".into())));
        assert!(
            matches!(fetch(&s, "wget", &url("/loop")).await, Err(FetchError::Failed(m)) if m.contains("redirects"))
        );
        // A name is judged by the address it resolves to.
        let by_name = format!("http://localhost:{}/x.sh", addr.port());
        assert_eq!(fetch(&s, "curl", &by_name).await.unwrap(), b"hello");
        let denied = on(&["127.0.0.0/8"], &["127.0.0.1"]);
        assert!(matches!(fetch(&denied, "wget", &url("/x.sh")).await, Err(FetchError::Denied(_))));
        assert!(
            matches!(fetch(&s, "tftp", "tftp://127.0.0.1/x").await, Err(FetchError::Denied(m)) if m.contains("tftp"))
        );
    }

    #[tokio::test]
    async fn a_silent_server_is_abandoned_at_the_time_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let mut s = on(&[], &[]);
        s.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let r = fetch(&s, "wget", &format!("http://{addr}/x")).await;
        assert!(matches!(r, Err(FetchError::Failed(ref m)) if m.contains("timed out")), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        held.abort();
    }
}
