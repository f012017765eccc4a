//! Kubernetes API server honeypot (port 6443, HTTPS): a kubeadm cluster's
//! kube-apiserver with its default authorization, reached without
//! credentials.
//!
//! What a real one answers, and this one does:
//! - anonymous requests are `system:anonymous`: the public-info paths
//!   (`/version`, `/healthz`, `/livez`, `/readyz`, RBAC's
//!   `system:public-info-viewer`) answer; everything else, discovery
//!   (`/api`, `/apis`, bound to authenticated users only since 1.14)
//!   included, is `403 Forbidden` with the `Status` object and message
//!   the authorizer writes (`pods is forbidden: User "system:anonymous"
//!   cannot list resource "pods" in API group "" in the namespace
//!   "default"`, `forbidden: … cannot get path "/api"`);
//! - a bearer token that is not the cluster's is `401 Unauthorized` on
//!   every path, and is recorded as a credential (username `bearer`);
//!   Basic credentials (no authenticator since 1.19) are recorded, and the
//!   request goes on as anonymous;
//! - JSON is indented for curl and wget (the server's user-agent rule)
//!   or `?pretty=true`, compact for kubectl.
//!
//! Every request is a `request` line; writes (anything but GET/HEAD) are
//! also `command` lines with their body's start, so a pod spec an attacker
//! tried to create is kept.
//!
//! TLS is the decky's certificate ([`super::https`]); ALPN offers
//! `http/1.1` only, which kubectl and curl fall back to.

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::go_http::{self, Answer};
use crate::event::{self, ByteCount, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::Persona;

/// The `k8s` entry of [`super::REGISTRY`].
pub struct K8s;

impl super::Protocol for K8s {
    fn name(&self) -> &'static str {
        "k8s"
    }
    fn default_port(&self) -> u16 {
        6443
    }
    fn prepare(&self, ctx: &crate::DeckyContext) -> Result<(), String> {
        ctx.tls_config().map(|_| ())
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// Characters of a write's body kept in its `command` line.
const BODY_IN_COMMAND: usize = 512;

/// The kube-apiserver release: Kubernetes is not a distribution package,
/// so every persona runs one kubeadm release (v1.28.2, its upstream
/// build facts), unless the fleet sets `versions.k8s`.
pub fn version(persona: &Persona) -> String {
    persona.version_of("k8s", |_| "v1.28.2".to_string())
}

/// `GET /version`: always indented, as the server writes it.
pub fn version_body(persona: &Persona) -> String {
    let git_version = version(persona);
    let mut numbers = git_version.trim_start_matches('v').split(['.', '-', '+']);
    let major = numbers.next().unwrap_or("1").to_string();
    let minor = numbers.next().unwrap_or("28").to_string();
    let arch = if persona.machine == "aarch64" { "arm64" } else { "amd64" };
    // serde_json's `json!` sorts keys; the server's order is the struct's.
    let fields = [
        ("major", major),
        ("minor", minor),
        ("gitVersion", git_version),
        ("gitCommit", "89a4ea3e1e4ddd7f7572286090359983e0387b2f".into()),
        ("gitTreeState", "clean".into()),
        ("buildDate", "2023-09-13T09:29:07Z".into()),
        ("goVersion", "go1.20.8".into()),
        ("compiler", "gc".into()),
        ("platform", format!("linux/{arch}")),
    ];
    let lines: Vec<String> = fields.iter().map(|(k, v)| format!("  {}: {}", json!(k), json!(v))).collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

/// What a request asks of the API, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A path outside the resource API (`/api`, `/metrics`, …).
    Path(String),
    Resource {
        verb: String,
        group: String,
        resource: String,
        namespace: Option<String>,
        name: Option<String>,
    },
}

/// Classify a request the way the API server's request-info resolver does.
pub fn classify(method: &str, path: &str, watch: bool) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => return Target::Path(path.to_string()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some(ns.to_string()), more),
        _ => (None, rest),
    };
    let resource = match rest {
        [r, _name, sub, ..] => format!("{r}/{sub}"),
        [r, ..] => r.to_string(),
        [] => return Target::Path(path.to_string()),
    };
    let name = rest.get(1).map(|n| n.to_string());
    let verb = match (method, name.is_some()) {
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (m, _) => return Target::Path(format!("{} {path}", m.to_ascii_lowercase())),
    };
    Target::Resource { verb: verb.into(), group: group.into(), resource, namespace, name }
}

/// The `Status` of a refused anonymous request: message and details.
pub fn forbidden(method: &str, target: &Target) -> (String, Value) {
    const WHO: &str = "User \"system:anonymous\"";
    match target {
        Target::Path(p) => {
            let (verb, path) = match p.split_once(' ') {
                Some((v, p)) => (v.to_string(), p.to_string()),
                None => (method.to_ascii_lowercase(), p.clone()),
            };
            (format!("forbidden: {WHO} cannot {verb} path {}", json!(path)), json!({}))
        }
        Target::Resource { verb, group, resource, namespace, name } => {
            let base = resource.split('/').next().unwrap_or(resource);
            let subject = match name {
                Some(n) => format!("{base} {}", json!(n)),
                None => base.to_string(),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace {}", json!(ns)),
                None => "at the cluster scope".into(),
            };
            let message = format!(
                "{subject} is forbidden: {WHO} cannot {verb} resource {} in API group {} {scope}",
                json!(resource),
                json!(group)
            );
            let mut details = serde_json::Map::new();
            if let Some(n) = name {
                details.insert("name".into(), json!(n));
            }
            if !group.is_empty() {
                details.insert("group".into(), json!(group));
            }
            details.insert("kind".into(), json!(base));
            (message, Value::Object(details))
        }
    }
}

/// A `Status` object in the server's field order.
fn status_body(message: &str, reason: &str, details: Option<&Value>, code: u16, pretty: bool) -> String {
    let mut fields: Vec<(&str, Value)> = vec![
        ("kind", json!("Status")),
        ("apiVersion", json!("v1")),
        ("metadata", json!({})),
        ("status", json!("Failure")),
        ("message", json!(message)),
        ("reason", json!(reason)),
    ];
    if let Some(d) = details {
        fields.push(("details", d.clone()));
    }
    fields.push(("code", json!(code)));
    if pretty {
        let lines: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let value = serde_json::to_string_pretty(v).unwrap_or_default().replace('\n', "\n  ");
                format!("  {}: {value}", json!(k))
            })
            .collect();
        format!("{{\n{}\n}}\n", lines.join(",\n"))
    } else {
        let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
        format!("{{{}}}\n", parts.join(","))
    }
}

/// Per-decky identifiers the API priority-and-fairness headers carry.
fn flow_uids(persona: &Persona) -> (String, String) {
    let uid = |label: &str| {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("{label}\0{}", persona.hostname).as_bytes());
        let b = d.as_ref();
        uuid::Builder::from_random_bytes(b[..16].try_into().unwrap_or([0; 16])).into_uuid().to_string()
    };
    (uid("flowschema"), uid("prioritylevel"))
}

/// The headers on every answer: an audit ID per request, no caching.
fn headers(content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Audit-Id", uuid::Uuid::new_v4().to_string()),
        ("Cache-Control", "no-cache, private".into()),
        ("Content-Type", content_type.to_string()),
    ]
}

/// Whether the answer is indented: the server's rule for curl and wget.
fn pretty(user_agent: &str, target: &str) -> bool {
    user_agent.starts_with("curl") || user_agent.starts_with("Wget") || {
        matches!(go_http::query_param(target, "pretty").as_deref(), Some("true" | "1"))
    }
}

/// What the request's credentials are.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    Bearer(Vec<u8>),
    Basic(String, Vec<u8>),
}

pub fn credential(authorization: Option<&str>) -> Credential {
    let Some(auth) = authorization else { return Credential::None };
    let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Bearer(value.trim().as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(value.trim()) {
            return match raw.iter().position(|b| *b == b':') {
                Some(i) => Credential::Basic(printable(&raw[..i]), raw[i + 1..].to_vec()),
                None => Credential::Basic(printable(&raw), Vec::new()),
            };
        }
    }
    Credential::None
}

/// Answer one request (its credentials already judged: `bearer` means a
/// token was sent, which is never the cluster's).
pub fn respond(persona: &Persona, method: &str, target: &str, path: &str, user_agent: &str, bearer: bool) -> Answer {
    let pretty = pretty(user_agent, target);
    if bearer {
        return Answer::new(
            401,
            headers("application/json"),
            status_body("Unauthorized", "Unauthorized", None, 401, pretty),
        );
    }
    let (flowschema, priority) = flow_uids(persona);
    let mut h = headers("application/json");
    h.push(("X-Content-Type-Options", "nosniff".into()));
    h.push(("X-Kubernetes-Pf-Flowschema-Uid", flowschema));
    h.push(("X-Kubernetes-Pf-Prioritylevel-Uid", priority));
    let public = matches!(path, "/version" | "/version/" | "/healthz" | "/livez" | "/readyz");
    if public && matches!(method, "GET" | "HEAD") {
        if path.starts_with("/version") {
            return Answer::new(200, h, version_body(persona));
        }
        h.retain(|(n, _)| *n != "Content-Type");
        h.push(("Content-Type", "text/plain; charset=utf-8".into()));
        return Answer::new(200, h, "ok");
    }
    let watch = matches!(go_http::query_param(target, "watch").as_deref(), Some("true" | "1"));
    let (message, details) = forbidden(method, &classify(method, path, watch));
    Answer::new(403, h, status_body(&message, "Forbidden", Some(&details), 403, pretty))
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let tls = match super::https::handshake(&session, io).await {
        Ok(tls) => tls,
        Err(end) => return end,
    };
    let (persona, limits) = event::with(&session, |s| (s.context().persona.clone(), s.limits().clone()));
    // The raw stream under TLS already counts and bounds the session's bytes.
    let mut conn =
        Conn::new(Metered::new(tls, std::sync::Arc::new(ByteCount::default()), u64::MAX), limits.max_line, limits.idle);
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
        let cred = credential(req.authorization.as_deref());
        match &cred {
            Credential::Bearer(token) => event::with(&session, |s| {
                s.login_attempt("bearer", token, "bearer", vec![("path", req.target.clone())])
            }),
            Credential::Basic(user, password) => {
                event::with(&session, |s| s.login_attempt(user, password, "basic", vec![("path", req.target.clone())]))
            }
            Credential::None => {}
        }
        let answer = if incoming.body_refused {
            Answer::new(
                413,
                headers("application/json"),
                status_body("the request body is too large", "RequestEntityTooLarge", None, 413, false),
            )
        } else {
            respond(
                &persona,
                &req.method,
                &req.target,
                &req.path,
                &req.user_agent,
                matches!(cred, Credential::Bearer(_)),
            )
        };
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            let body: String = printable(&incoming.body).chars().take(BODY_IN_COMMAND).collect();
            let line = format!("{} {} {body}", req.method, req.target);
            event::with(&session, |s| s.command(line.trim_end()));
        }
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

    fn persona() -> Persona {
        Persona::derive("k8s-01", Some("container-host"), None, 1_764_000_000)
    }

    #[test]
    fn anonymous_resource_requests_get_the_authorizers_message() {
        let (m, d) = forbidden("GET", &classify("GET", "/api/v1/namespaces/default/pods", false));
        assert_eq!(
            m,
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(d, json!({"kind": "pods"}));
        let (m, d) = forbidden("GET", &classify("GET", "/api/v1/nodes", false));
        assert!(m.ends_with("cannot list resource \"nodes\" in API group \"\" at the cluster scope"), "{m}");
        assert_eq!(d, json!({"kind": "nodes"}));
        let (m, d) = forbidden("POST", &classify("POST", "/api/v1/namespaces/kube-system/pods/etcd/exec", false));
        assert_eq!(
            m,
            "pods \"etcd\" is forbidden: User \"system:anonymous\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"kube-system\""
        );
        assert_eq!(d, json!({"name": "etcd", "kind": "pods"}));
        let (m, d) = forbidden("GET", &classify("GET", "/apis/apps/v1/deployments", true));
        assert!(m.contains("cannot watch resource \"deployments\" in API group \"apps\""), "{m}");
        assert_eq!(d["group"], "apps");
        let (m, _) = forbidden("GET", &classify("GET", "/api/v1/namespaces/default", false));
        assert!(m.starts_with("namespaces \"default\" is forbidden"), "{m}");
        let (m, d) = forbidden("GET", &classify("GET", "/api", false));
        assert_eq!((m.as_str(), d), ("forbidden: User \"system:anonymous\" cannot get path \"/api\"", json!({})));
    }

    #[test]
    fn public_paths_answer_and_discovery_does_not() {
        let p = persona();
        let a = respond(&p, "GET", "/version", "/version", "kubectl/v1.32.4", false);
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!((a.status, v["gitVersion"].as_str()), (200, Some("v1.28.2")));
        assert_eq!(v["minor"], "28");
        assert_eq!(respond(&p, "GET", "/healthz", "/healthz", "", false).body, b"ok");
        assert_eq!(respond(&p, "GET", "/apis", "/apis", "", false).status, 403);
        let a = respond(&p, "GET", "/version", "/version", "", true);
        assert_eq!(a.status, 401, "a token that is not the cluster's fails everywhere");
        assert_eq!(
            String::from_utf8(a.body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n"
        );
    }

    #[test]
    fn curl_gets_indented_json_and_kubectl_compact() {
        let p = persona();
        let curl = String::from_utf8(respond(&p, "GET", "/api", "/api", "curl/7.88.1", false).body).unwrap();
        assert!(
            curl.starts_with("{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},"),
            "{curl}"
        );
        assert!(curl.ends_with("  \"details\": {},\n  \"code\": 403\n}\n"), "{curl}");
        let kubectl = String::from_utf8(respond(&p, "GET", "/api", "/api", "kubectl/v1.32", false).body).unwrap();
        assert!(kubectl.starts_with("{\"kind\":\"Status\""), "{kubectl}");
        let asked = respond(&p, "GET", "/api?pretty=true", "/api", "Go-http-client/1.1", false);
        assert!(String::from_utf8(asked.body).unwrap().starts_with("{\n"));
    }

    #[test]
    fn credentials_are_told_apart() {
        assert_eq!(credential(Some("Bearer abc.def")), Credential::Bearer(b"abc.def".to_vec()));
        assert_eq!(credential(Some("Basic YWRtaW46czNjcmV0")), Credential::Basic("admin".into(), b"s3cret".to_vec()));
        assert_eq!(credential(Some("Basic !!!")), Credential::None);
        assert_eq!(credential(None), Credential::None);
    }
}
