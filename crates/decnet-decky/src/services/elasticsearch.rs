//! Elasticsearch honeypot: a single-node cluster with security off (the
//! 7.x default, and what the scanners that wipe and ransom open clusters
//! look for), answering the REST API as the real 7.17.0 / 7.10.2 do: the
//! root document (pretty, Jackson's `"key" : value`), `_cat/indices`,
//! `_cat/nodes`, `_nodes`, `_cluster/health`, `_search`, and ES's own
//! error shapes for anything else (404 `index_not_found_exception`, 400
//! `no handler found`, 405 `Incorrect HTTP method`). The cluster holds no
//! index; index creation is acknowledged and nothing is kept.
//!
//! The version follows the release: 7.17.0 (the `deb`/`rpm`/`zip` build,
//! with the `X-elastic-product` header and the "security features are not
//! enabled" warning 7.17 sends) on the newer releases, 7.10.2 on the
//! older. Build hashes and dates are the real releases'.
//!
//! Every request is a `command` line: method, target, and up to 512
//! characters of its body. Heads are read with the http decky's bounded
//! parser ([`super::http::request`]); bodies up to 64 KiB.

use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::http::request::{self, Request};
use super::http::response::{reason, Response};
use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// Longest body read; a longer one is answered 413 and the connection closed.
const MAX_BODY: u64 = 64 * 1024;
/// Characters of a body kept in its `command` line.
const LOGGED_BODY: usize = 512;

/// The `elasticsearch` entry of [`super::REGISTRY`].
pub struct Elasticsearch;

impl super::Protocol for Elasticsearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }
    fn default_port(&self) -> u16 {
        9200
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// One real release's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub number: String,
    pub hash: &'static str,
    pub date: &'static str,
    pub lucene: &'static str,
    /// Sends `X-elastic-product` and the security warning (7.14 and later).
    pub product_header: bool,
    /// `_cat/nodes` role letters.
    pub roles: &'static str,
}

/// The Elasticsearch the persona runs.
pub fn build(persona: &Persona) -> Build {
    let number = persona.version_of("elasticsearch", |p| {
        match p.release.as_str() {
            "ubuntu-20.04" | "centos-7" | "debian-11" => "7.10.2",
            _ => "7.17.0",
        }
        .to_string()
    });
    if number.starts_with("7.10") {
        Build {
            number,
            hash: "747e1cc71def077253878a59143c1f785afa92b9",
            date: "2021-01-13T00:42:12.435326Z",
            lucene: "8.7.0",
            product_header: false,
            roles: "cdhilmrstw",
        }
    } else {
        Build {
            number,
            hash: "bee86328705acaa9a6daede7140defd4d9ec56bd",
            date: "2022-01-28T08:36:04.875279988Z",
            lucene: "8.11.1",
            product_header: true,
            roles: "cdfhilmrstw",
        }
    }
}

/// How the package was built (`version.build_type`).
fn build_type(persona: &Persona) -> &'static str {
    match (persona.family, persona.os_id.as_str()) {
        (OsFamily::Windows, _) => "zip",
        (_, "centos") => "rpm",
        _ => "deb",
    }
}

/// A stable 22-character id (ES's base64url UUIDs) for `label`.
fn persona_id(persona: &Persona, label: &str) -> String {
    use base64::Engine as _;
    let mut material = persona.hostname.as_bytes().to_vec();
    material.extend_from_slice(label.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// The cluster's facts, fixed per decky.
pub struct Cluster {
    persona: std::sync::Arc<Persona>,
    build: Build,
    cluster_name: String,
    cluster_uuid: String,
    node_id: String,
}

/// Jackson's pretty printer: two-space indent and `"key" : value`, as
/// Elasticsearch writes `?pretty` (and its root document).
struct JacksonPretty(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for JacksonPretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// A JSON value whose objects keep their fields in the order written:
/// Elasticsearch's documents have a fixed field order, and serde_json's
/// own map sorts its keys.
#[derive(Debug, Clone)]
pub enum J {
    V(Value),
    O(Vec<(String, J)>),
    A(Vec<J>),
}

impl serde::Serialize for J {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            J::V(v) => v.serialize(ser),
            J::A(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::O(fields) => {
                let mut map = ser.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// An ordered object.
fn o<const N: usize>(fields: [(&str, J); N]) -> J {
    J::O(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A plain value.
fn v(value: Value) -> J {
    J::V(value)
}

fn to_json(value: &J, pretty: bool) -> Vec<u8> {
    if !pretty {
        return serde_json::to_vec(value).unwrap_or_default();
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JacksonPretty(Default::default()));
    let _ = serde::Serialize::serialize(value, &mut ser);
    out.push(b'\n');
    out
}

impl Cluster {
    pub fn new(persona: std::sync::Arc<Persona>) -> Cluster {
        Cluster {
            build: build(&persona),
            cluster_name: "elasticsearch".into(),
            cluster_uuid: persona_id(&persona, "es-cluster-uuid"),
            node_id: persona_id(&persona, "es-node-id"),
            persona,
        }
    }

    fn address(&self) -> String {
        self.persona.interfaces.first().map(|i| i.address.clone()).unwrap_or_else(|| "127.0.0.1".into())
    }

    fn version(&self) -> J {
        o([
            ("number", v(json!(self.build.number))),
            ("build_flavor", v(json!("default"))),
            ("build_type", v(json!(build_type(&self.persona)))),
            ("build_hash", v(json!(self.build.hash))),
            ("build_date", v(json!(self.build.date))),
            ("build_snapshot", v(json!(false))),
            ("lucene_version", v(json!(self.build.lucene))),
            ("minimum_wire_compatibility_version", v(json!("6.8.0"))),
            ("minimum_index_compatibility_version", v(json!("6.0.0-beta1"))),
        ])
    }

    /// `{"error": error, "status": status}`.
    fn error(&self, status: u16, error: J, pretty: bool) -> Response {
        self.json(status, &o([("error", error), ("status", v(json!(status)))]), pretty)
    }

    fn json(&self, status: u16, body: &J, pretty: bool) -> Response {
        self.respond(status, "application/json; charset=UTF-8", to_json(body, pretty))
    }

    fn respond(&self, status: u16, content_type: &str, body: Vec<u8>) -> Response {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if self.build.product_header {
            let minor = self.build.number.split('.').take(2).collect::<Vec<_>>().join(".");
            headers.push((
                "warning",
                format!(
                    "299 Elasticsearch-{}-{} \"Elasticsearch built-in security features are not enabled. Without authentication, your cluster could be accessible to anyone. See https://www.elastic.co/guide/en/elasticsearch/reference/{minor}/security-minimal-setup.html to enable security.\"",
                    self.build.number, self.build.hash
                ),
            ));
            headers.push(("X-elastic-product", "Elasticsearch".into()));
        }
        headers.push(("content-type", content_type.to_string()));
        headers.push(("content-length", body.len().to_string()));
        Response { status, reason: reason_of(status), headers, body, head_only: false, close: false }
    }

    fn index_not_found(&self, index: &str, pretty: bool) -> Response {
        let fields = |root: Option<J>| {
            let mut f = Vec::new();
            if let Some(root) = root {
                f.push(("root_cause".to_string(), root));
            }
            for (k, val) in [
                ("type", json!("index_not_found_exception")),
                ("reason", json!(format!("no such index [{index}]"))),
                ("resource.type", json!("index_or_alias")),
                ("resource.id", json!(index)),
                ("index_uuid", json!("_na_")),
                ("index", json!(index)),
            ] {
                f.push((k.to_string(), v(val)));
            }
            J::O(f)
        };
        self.error(404, fields(Some(J::A(vec![fields(None)]))), pretty)
    }

    /// The answer to one request (its body is only logged: nothing is
    /// indexed, and every search finds nothing).
    pub fn answer(&self, method: &str, target: &str) -> Response {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let pretty = query.split('&').any(|q| q == "pretty" || q == "pretty=true");
        let verbose = query.split('&').any(|q| q == "v" || q == "v=true");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = matches!(method, "GET" | "HEAD");
        let no_handler = || {
            let error = format!("no handler found for uri [{}] and method [{method}]", printable(target.as_bytes()));
            self.error(400, v(json!(error)), pretty)
        };
        let wrong_method = |allowed: &str| {
            let error =
                format!("Incorrect HTTP method for uri [{}] and method [{method}], allowed: [{allowed}]", target);
            self.error(405, v(json!(error)), pretty)
        };
        match segments.as_slice() {
            [] if get => self.json(
                200,
                &o([
                    ("name", v(json!(self.persona.hostname))),
                    ("cluster_name", v(json!(self.cluster_name))),
                    ("cluster_uuid", v(json!(self.cluster_uuid))),
                    ("version", self.version()),
                    ("tagline", v(json!("You Know, for Search"))),
                ]),
                true,
            ),
            [] => wrong_method("HEAD, GET"),
            ["_cat", "indices", ..] if get => {
                let header = "health status index uuid pri rep docs.count docs.deleted store.size pri.store.size\n";
                let body = if verbose { header } else { "" };
                self.respond(200, "text/plain; charset=UTF-8", body.as_bytes().to_vec())
            }
            ["_cat", "nodes", ..] if get => {
                let mut text = String::new();
                if verbose {
                    text.push_str(
                        "ip        heap.percent ram.percent cpu load_1m load_5m load_15m node.role   master name\n",
                    );
                }
                text.push_str(&format!(
                    "{} 23 96 1 0.08 0.03 0.01 {} * {}\n",
                    self.address(),
                    self.build.roles,
                    self.persona.hostname
                ));
                self.respond(200, "text/plain; charset=UTF-8", text.into_bytes())
            }
            ["_nodes", ..] if get => {
                let address = self.address();
                let p = &self.persona;
                let os_name = if p.family == OsFamily::Windows { "Windows Server 2019" } else { "Linux" };
                let node = o([
                    ("name", v(json!(p.hostname))),
                    ("transport_address", v(json!(format!("{address}:9300")))),
                    ("host", v(json!(address))),
                    ("ip", v(json!(address))),
                    ("version", v(json!(self.build.number))),
                    ("build_flavor", v(json!("default"))),
                    ("build_type", v(json!(build_type(p)))),
                    ("build_hash", v(json!(self.build.hash))),
                    (
                        "roles",
                        v(json!([
                            "data",
                            "data_cold",
                            "data_content",
                            "data_frozen",
                            "data_hot",
                            "data_warm",
                            "ingest",
                            "master",
                            "ml",
                            "remote_cluster_client",
                            "transform"
                        ])),
                    ),
                    (
                        "os",
                        o([
                            ("name", v(json!(os_name))),
                            ("pretty_name", v(json!(p.pretty_name))),
                            ("arch", v(json!("amd64"))),
                            ("version", v(json!(p.kernel_release))),
                            ("available_processors", v(json!(p.cpu_count))),
                            ("allocated_processors", v(json!(p.cpu_count))),
                        ]),
                    ),
                ]);
                self.json(
                    200,
                    &o([
                        ("_nodes", o([("total", v(json!(1))), ("successful", v(json!(1))), ("failed", v(json!(0)))])),
                        ("cluster_name", v(json!(self.cluster_name))),
                        ("nodes", J::O(vec![(self.node_id.clone(), node)])),
                    ]),
                    pretty,
                )
            }
            ["_cluster", "health", ..] if get => {
                let mut fields = vec![
                    ("cluster_name".to_string(), v(json!(self.cluster_name))),
                    ("status".to_string(), v(json!("green"))),
                    ("timed_out".to_string(), v(json!(false))),
                    ("number_of_nodes".to_string(), v(json!(1))),
                    ("number_of_data_nodes".to_string(), v(json!(1))),
                ];
                for zero in [
                    "active_primary_shards",
                    "active_shards",
                    "relocating_shards",
                    "initializing_shards",
                    "unassigned_shards",
                    "delayed_unassigned_shards",
                    "number_of_pending_tasks",
                    "number_of_in_flight_fetch",
                    "task_max_waiting_in_queue_millis",
                ] {
                    fields.push((zero.to_string(), v(json!(0))));
                }
                fields.push(("active_shards_percent_as_number".to_string(), v(json!(100.0))));
                self.json(200, &J::O(fields), pretty)
            }
            ["_search"] | ["_all", "_search"] | ["*", "_search"] if get || method == "POST" => {
                let zero = || v(json!(0));
                let shards = o([("total", zero()), ("successful", zero()), ("skipped", zero()), ("failed", zero())]);
                let total = o([("value", zero()), ("relation", v(json!("eq")))]);
                let hits = o([("total", total), ("max_score", v(json!(0.0))), ("hits", J::A(vec![]))]);
                let doc =
                    o([("took", v(json!(1))), ("timed_out", v(json!(false))), ("_shards", shards), ("hits", hits)]);
                self.json(200, &doc, pretty)
            }
            [first, ..] if first.starts_with('_') => no_handler(),
            [index] if method == "PUT" => {
                let index = printable(index.as_bytes());
                let doc = o([
                    ("acknowledged", v(json!(true))),
                    ("shards_acknowledged", v(json!(true))),
                    ("index", v(json!(index))),
                ]);
                self.json(200, &doc, pretty)
            }
            [index, ..] => self.index_not_found(&printable(index.as_bytes()), pretty),
        }
    }
}

fn reason_of(status: u16) -> &'static str {
    match status {
        413 => "Request Entity Too Large",
        s => reason(s),
    }
}

/// The `command` line of a request: method, target and the start of its body.
pub fn logged(req: &Request, body: &[u8]) -> String {
    let mut line = format!("{} {}", req.method, req.target);
    if !body.is_empty() {
        let text: String = printable(body).chars().take(LOGGED_BODY).collect();
        line.push(' ');
        line.push_str(&text);
    }
    line
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let cluster = Cluster::new(ctx.persona.clone());
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    let mut served = 0u32;
    loop {
        let req = match request::read(&mut conn, limits.idle).await {
            Ok(r) => r,
            Err(End::ClientClosed | End::Idle) if served > 0 => return End::Done,
            Err(e) => return e,
        };
        if let Some(why) = req.malformed {
            event::with(&session, |s| s.command(&format!("malformed request: {why}")));
            let mut r = cluster.error(400, v(json!(why)), false);
            r.close = true;
            let _ = conn.send(&r.to_bytes()).await;
            return End::Done;
        }
        if req.chunked || req.unframed_body || req.content_length > MAX_BODY {
            event::with(&session, |s| s.command(&logged(&req, b"")));
            let mut r = cluster.error(413, v(json!("request body not accepted")), false);
            r.close = true;
            let _ = conn.send(&r.to_bytes()).await;
            return End::Done;
        }
        let body = match conn.read_up_to(req.content_length as usize).await {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Some(auth) = req.authorization.as_deref() {
            record_basic(&session, auth);
        }
        event::with(&session, |s| s.command(&logged(&req, &body)));
        let mut response = cluster.answer(&req.method, &req.target);
        response.head_only = req.method == "HEAD";
        response.close = req.wants_close || !req.is_http11() && !req.wants_keep_alive;
        let mut wire = response.to_bytes();
        // Netty answers in the version the request was made in.
        if req.proto == (1, 0) {
            wire[..8].copy_from_slice(b"HTTP/1.0");
        }
        if let Err(e) = conn.send(&wire).await {
            return e;
        }
        served += 1;
        if response.close {
            return End::Done;
        }
    }
}

/// Basic credentials sent to a cluster that asks for none (clients
/// configured for a secured cluster send them anyway): recorded.
fn record_basic(session: &SharedSession, auth: &str) {
    use base64::Engine as _;
    let Some(basic) = auth.strip_prefix("Basic ").or_else(|| auth.strip_prefix("basic ")) else { return };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else { return };
    let (user, pass) = match raw.iter().position(|b| *b == b':') {
        Some(i) => (printable(&raw[..i]), raw[i + 1..].to_vec()),
        None => (printable(&raw), Vec::new()),
    };
    event::with(session, |s| s.login_attempt(&user, &pass, "basic", vec![]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(release: &str) -> Cluster {
        let p = Persona::derive("search-under-test", Some("database-host"), None, 1_790_000_000)
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap();
        Cluster::new(std::sync::Arc::new(p))
    }

    fn body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn the_root_document_is_a_real_releases_pretty_printed() {
        let c = cluster("debian-12");
        let r = c.answer("GET", "/");
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(text.starts_with("{\n  \"name\" : \"search-under-test\",\n"), "{text}");
        assert!(text.contains("\"tagline\" : \"You Know, for Search\"\n}\n"), "{text}");
        let doc = body(&r);
        assert_eq!(doc["version"]["number"], "7.17.0");
        assert_eq!(doc["version"]["build_hash"], "bee86328705acaa9a6daede7140defd4d9ec56bd");
        assert_eq!(doc["version"]["lucene_version"], "8.11.1");
        assert_eq!(doc["cluster_uuid"].as_str().unwrap().len(), 22);
        assert_eq!(doc["cluster_uuid"], body(&cluster("debian-12").answer("GET", "/"))["cluster_uuid"]);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["warning", "X-elastic-product", "content-type", "content-length"]);
        // 7.10.2 predates the product header.
        let old = cluster("centos-7").answer("GET", "/");
        assert_eq!(body(&old)["version"]["build_type"], "rpm");
        assert_eq!(body(&old)["version"]["number"], "7.10.2");
        assert!(!old.headers.iter().any(|(n, _)| *n == "X-elastic-product"));
    }

    #[test]
    fn other_paths_get_elasticsearchs_error_shapes() {
        let c = cluster("debian-12");
        let missing = c.answer("GET", "/customers/_search");
        assert_eq!(missing.status, 404);
        let doc = body(&missing);
        assert_eq!(doc["error"]["type"], "index_not_found_exception");
        assert_eq!(doc["error"]["root_cause"][0]["reason"], "no such index [customers]");
        assert_eq!(doc["status"], 404);
        let unknown = c.answer("GET", "/_nothing_here");
        assert_eq!(unknown.status, 400);
        assert_eq!(body(&unknown)["error"], "no handler found for uri [/_nothing_here] and method [GET]");
        assert_eq!(c.answer("DELETE", "/").status, 405);
        let search = c.answer("POST", "/_search?pretty");
        assert_eq!(body(&search)["hits"]["total"]["value"], 0);
        assert_eq!(c.answer("PUT", "/read_me").status, 200);
        let health = body(&c.answer("GET", "/_cluster/health"));
        assert_eq!(health["status"], "green");
        let nodes = String::from_utf8(c.answer("GET", "/_cat/nodes?v").body).unwrap();
        assert!(nodes.lines().nth(1).unwrap().ends_with("cdfhilmrstw * search-under-test"), "{nodes}");
    }

    #[test]
    fn logged_requests_are_bounded_and_escaped() {
        let req = Request { method: "POST".into(), target: "/_search".into(), ..Default::default() };
        let line = logged(&req, format!("{{\"q\":\"\n{}\"}}", "a".repeat(5000)).as_bytes());
        assert!(line.starts_with("POST /_search {\"q\":\"\\x0a"), "{line}");
        assert!(line.chars().count() <= "POST /_search ".len() + LOGGED_BODY);
    }
}
