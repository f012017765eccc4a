//! The data-store deckies (redis, mongodb, elasticsearch) driven by their
//! real clients inside a network namespace the test makes: `redis-cli`
//! (side by side with a real `redis-server` from Debian), python's
//! `pymongo`, `curl`, and `nmap -sV`. Credentials (or the crackable
//! SCRAM line) and commands must arrive as fleet lines the ingester
//! turns into credentials.

mod native_support;

use std::time::Duration;

use base64::Engine as _;
use decnet::events::rfc5424::SyslogLine;
use native_support::{is, sd, NsFleet, Receiver};

/// The credential the ingester would store for `line` (one `receiver` got).
fn credential(receiver: &Receiver, line: &SyslogLine) -> decnet::ingest::store::Credential {
    let lines = receiver.lines.lock().unwrap().clone();
    let raw = lines
        .iter()
        .find(|raw| decnet::events::rfc5424::parse_line(raw).ok().as_ref() == Some(line))
        .expect("the line was received");
    let record = decnet::collector::parse::parse_record(raw, 0.0).unwrap();
    decnet::ingest::store::credential_of(&record).unwrap_or_else(|| panic!("no credential in {raw}"))
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fleet of one decky of `release` serving `services`.
async fn fleet(tag: &str, decky: &str, release: &str, services: &[&str]) -> NsFleet {
    let fleet = NsFleet::start(tag, &[(decky, "127.0.0.1")], |o| {
        o.personas.insert(decky.to_string(), serde_json::json!({ "release": release }));
    })
    .await;
    fleet.deploy(decky, services).await;
    fleet
}

/// INFO's field names by section (the error and keyspace counters, which
/// depend on what ran before, left out).
fn info_fields(info: &str) -> Vec<String> {
    let mut fields: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
        .filter(|k| !k.starts_with("errorstat_") && !k.starts_with("db"))
        .collect();
    fields.sort();
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_answers_redis_cli_as_the_real_server_does_and_records_the_write_chain() {
    let fleet = fleet("redis", "cache-01", "debian-12", &["redis"]).await;
    // The real thing, from Debian's package, in the same namespace.
    let dir = tempfile::tempdir().unwrap();
    let mut real = fleet.ns.command("redis-server");
    real.args(["--bind", "127.0.0.2", "--port", "6379", "--save", "", "--protected-mode", "no"])
        .args(["--dir", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null());
    let _real = real.spawn().expect("redis-server (apt-get install redis-server)");
    for _ in 0..100 {
        if text(&fleet.ns.run(10, "redis-cli", &["-h", "127.0.0.2", "PING"]).await).trim() == "PONG" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cli = |host: &'static str, args: &'static [&'static str]| {
        let ns = &fleet.ns;
        async move {
            let mut all = vec!["-h", host];
            all.extend_from_slice(args);
            text(&ns.run(20, "redis-cli", &all).await)
        }
    };
    // One redis-cli session each (the decky's keyspace is per session),
    // every reply as the real 7.0.15 gives it.
    let script = dir.path().join("session.redis");
    std::fs::write(
        &script,
        [
            "PING",
            "foo a b",
            "AUTH s3cret",
            "AUTH bob hunter2",
            "GET",
            "CONFIG SET dir /root/.ssh",
            "CONFIG SET dbfilename authorized_keys",
            "CONFIG SET nosuch 1",
            "CONFIG GET nosuch",
            "CONFIG GET maxmemory",
            "MODULE LOAD /tmp/exp.so",
            r#"SET x "\n\nssh-rsa AAAAB3NzaC1yc2E attacker@box\n\n""#,
            "GET x",
            "KEYS *",
            "EXISTS x y",
            "DEL x y",
            "DBSIZE",
            "SELECT 99",
            "SLAVEOF NO ONE",
            "SAVE",
            "ECHO hi",
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let session = |host: &str| format!("redis-cli -h {host} < {}", script.display());
    let decky_session = text(&fleet.ns.run(30, "sh", &["-c", &session("127.0.0.1")]).await);
    let real_session = text(&fleet.ns.run(30, "sh", &["-c", &session("127.0.0.2")]).await);
    assert_eq!(decky_session, real_session);
    assert!(decky_session.contains("can't set protected config"), "{decky_session}");
    // HELLO 3: the same RESP3 map (its connection id differs by nature).
    let keys = |s: &str| s.lines().step_by(2).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(keys(&cli("127.0.0.1", &["HELLO", "3"]).await), keys(&cli("127.0.0.2", &["HELLO", "3"]).await));
    // Inline commands as netcat sends them, pipelined.
    let nc = |host: &str| format!("printf 'PING\\r\\nset k v\\r\\nget k\\r\\nnope 1\\r\\n' | nc -q 2 {host} 6379");
    let decky_nc = text(&fleet.ns.run(20, "sh", &["-c", &nc("127.0.0.1")]).await);
    let real_nc = text(&fleet.ns.run(20, "sh", &["-c", &nc("127.0.0.2")]).await);
    assert_eq!(decky_nc, real_nc);
    // INFO: every section and field of the real server.
    let decky_info = cli("127.0.0.1", &["INFO"]).await;
    let real_info = cli("127.0.0.2", &["INFO"]).await;
    assert_eq!(info_fields(&decky_info), info_fields(&real_info));
    assert!(decky_info.contains("redis_version:7.0.15"), "{decky_info}");
    assert!(decky_info.contains("\nos:Linux "), "{decky_info}");

    // The lines: the credential (as the ingester stores it) and the chain.
    let r = &fleet.receiver;
    let login = r.wait_for("redis AUTH", |l| is(l, "redis", "login_attempt") && sd(l, "username") == Some("bob")).await;
    let stored = credential(r, &login);
    assert_eq!(stored.kind, "password");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(stored.secret_b64).unwrap(), b"hunter2");
    let default_user =
        r.wait_for("AUTH pw", |l| is(l, "redis", "login_attempt") && sd(l, "username") == Some("default")).await;
    assert_eq!(sd(&default_user, "secret_b64"), Some("czNjcmV0"));
    for command in ["CONFIG SET dir /root/.ssh", "CONFIG SET dbfilename authorized_keys", "MODULE LOAD /tmp/exp.so"] {
        r.wait_for(command, |l| is(l, "redis", "command") && sd(l, "command") == Some(command)).await;
    }
    let set = r
        .wait_for("SET", |l| is(l, "redis", "command") && sd(l, "command").is_some_and(|c| c.starts_with("SET x")))
        .await;
    assert_eq!(sd(&set, "command"), Some("SET x \"\\x0a\\x0assh-rsa AAAAB3NzaC1yc2E attacker@box\\x0a\\x0a\""));
    // No password in any command line.
    assert!(!fleet
        .receiver
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("command=\"AUTH") && l.contains("hunter2")));

    let nmap = fleet.ns.nmap_version("127.0.0.1".parse().unwrap(), 6379).await;
    assert!(nmap.contains("Redis key-value store 7.0.15"), "{nmap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_protocol_errors_close_only_that_session() {
    let fleet = fleet("redis-bad", "cache-02", "ubuntu-22.04", &["redis"]).await;
    // An oversize multibulk count, a bulk past the bound and unbalanced
    // quotes: each answered with Redis's protocol error and closed.
    for (input, reply) in [
        ("*99999999\\r\\n", "-ERR Protocol error: invalid multibulk length"),
        ("*1\\r\\n$999999999\\r\\n", "-ERR Protocol error: invalid bulk length"),
        ("get \\042abc\\r\\n", "-ERR Protocol error: unbalanced quotes in request"),
    ] {
        let out = fleet.ns.run(20, "sh", &["-c", &format!("printf '{input}' | nc -q 3 127.0.0.1 6379")]).await;
        assert_eq!(text(&out).trim_end(), reply, "{input}");
    }
    // The older version's answers, and the chain it accepts.
    let out = fleet.ns.run(20, "redis-cli", &["-h", "127.0.0.1", "CONFIG", "SET", "dir", "/var/spool/cron"]).await;
    assert_eq!(text(&out).trim(), "OK");
    let out = fleet.ns.run(20, "redis-cli", &["-h", "127.0.0.1", "foo", "bar"]).await;
    assert_eq!(text(&out).trim(), "ERR unknown command `foo`, with args beginning with: `bar`,");
    fleet
        .receiver
        .wait_for("protocol error", |l| {
            is(l, "redis", "command") && sd(l, "command") == Some("protocol error: invalid multibulk length")
        })
        .await;
}

/// SCRAM-SHA-256's client proof for `password` (RFC 5802/7677).
fn scram_sha256_proof(password: &str, salt: &[u8], iterations: u32, auth_message: &[u8]) -> String {
    use ring::{digest, hmac, pbkdf2};
    let mut salted = [0u8; 32];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations.try_into().unwrap(), salt, password.as_bytes(), &mut salted);
    let client_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
    let stored = digest::digest(&digest::SHA256, client_key.as_ref());
    let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()), auth_message);
    let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(a, b)| a ^ b).collect();
    base64::engine::general_purpose::STANDARD.encode(proof)
}

const PYMONGO: &str = r#"
import json, pymongo
from pymongo.errors import OperationFailure
opts = dict(serverSelectionTimeoutMS=8000, directConnection=True)
c = pymongo.MongoClient("127.0.0.1", 27017, **opts)
out = {"version": c.server_info()["version"], "dbs": c.list_database_names()}
out["found"] = list(c.shop.customers.find({"name": "x"}))
a = pymongo.MongoClient("127.0.0.1", 27017, username="admin", password="hunter2",
                        authSource="admin", authMechanism="SCRAM-SHA-256", **opts)
try:
    a.admin.command("ping")
    out["auth"] = "accepted"
except OperationFailure as e:
    out["auth"] = e.code
    out["auth_msg"] = e.details.get("errmsg")
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_answers_pymongo_and_records_a_crackable_scram_line() {
    let fleet = fleet("mongo", "docs-01", "debian-12", &["mongodb"]).await;
    let out = fleet.ns.run(60, "python3", &["-c", PYMONGO]).await;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("pymongo said: {}{}", text(&out), String::from_utf8_lossy(&out.stderr)));
    assert_eq!(answer["version"], "4.4.13");
    assert_eq!(answer["dbs"], serde_json::json!(["admin", "config", "local"]));
    assert_eq!(answer["found"], serde_json::json!([]));
    assert_eq!(answer["auth"], 18, "{answer}");
    assert_eq!(answer["auth_msg"], "Authentication failed.");

    let r = &fleet.receiver;
    let login = r.wait_for("SCRAM", |l| is(l, "mongodb", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("admin"));
    assert_eq!(sd(&login, "hash_type"), Some("mongodb-scram"));
    assert_eq!(credential(r, &login).kind, "hash:mongodb-scram");
    // The line is enough to test a password offline: the right one
    // reproduces the proof pymongo sent, a wrong one does not.
    let hash = sd(&login, "hash").unwrap();
    let fields: Vec<&str> = hash.strip_prefix("$mongodb-scram$*").unwrap().split('*').collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(fields[0], "1", "SCRAM-SHA-256");
    assert_eq!(b64.decode(fields[1]).unwrap(), b"admin");
    let (iterations, salt, auth) =
        (fields[2].parse().unwrap(), b64.decode(fields[3]).unwrap(), b64.decode(fields[4]).unwrap());
    assert_eq!(scram_sha256_proof("hunter2", &salt, iterations, &auth), fields[5]);
    assert_ne!(scram_sha256_proof("hunter3", &salt, iterations, &auth), fields[5]);
    for command in ["admin.listDatabases", "shop.find", "admin.buildinfo"] {
        r.wait_for(command, |l| {
            is(l, "mongodb", "command")
                && sd(l, "command").is_some_and(|c| c.to_lowercase().starts_with(&command.to_lowercase()))
        })
        .await;
    }
    // The proof itself never appears in a command line.
    assert!(!r.lines.lock().unwrap().iter().any(|l| l.contains(" command ") && l.contains(fields[5])));

    let nmap = fleet.ns.nmap_version("127.0.0.1".parse().unwrap(), 27017).await;
    assert!(nmap.contains("MongoDB 4.4.13"), "{nmap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_garbage_and_oversize_messages_end_only_their_session() {
    let fleet = fleet("mongo-bad", "docs-02", "debian-12", &["mongodb"]).await;
    // A header announcing 2 GB, then plain garbage: closed without a reply.
    for input in ["\\377\\377\\377\\177\\001\\000\\000\\000", "GET / HTTP/1.0\\r\\n\\r\\n"] {
        let out = fleet.ns.run(20, "sh", &["-c", &format!("printf '{input}' | nc -q 3 127.0.0.1 27017 | wc -c")]).await;
        assert_eq!(text(&out).trim(), "0", "{input}");
    }
    r_wait_protocol_error(&fleet).await;
    // The service still answers a real client.
    let out = fleet
        .ns
        .run(60, "python3", &["-c", "import pymongo; print(pymongo.MongoClient('127.0.0.1', serverSelectionTimeoutMS=8000).server_info()['version'])"])
        .await;
    assert_eq!(text(&out).trim(), "4.4.13", "{}", String::from_utf8_lossy(&out.stderr));
}

async fn r_wait_protocol_error(fleet: &NsFleet) {
    fleet
        .receiver
        .wait_for("length out of range", |l| {
            is(l, "mongodb", "command") && sd(l, "command").is_some_and(|c| c.contains("message length"))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_answers_curl_and_nmap_as_a_real_release() {
    let fleet = NsFleet::start("es", &[("search-01", "127.0.0.1"), ("search-02", "127.0.0.2")], |o| {
        o.personas.insert("search-01".into(), serde_json::json!({ "release": "ubuntu-20.04" }));
        o.personas.insert("search-02".into(), serde_json::json!({ "release": "debian-12" }));
    })
    .await;
    fleet.deploy("search-01", &["elasticsearch"]).await;
    fleet.deploy("search-02", &["elasticsearch"]).await;
    let curl = |args: &[&str]| {
        let mut all = vec!["-sS", "--max-time", "10"];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let ns = &fleet.ns;
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            text(&ns.run(20, "curl", &refs).await)
        }
    };
    let root = curl(&["-i", "http://127.0.0.1:9200/"]).await;
    let (head, body) = root.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: "),
        "{head}"
    );
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["name"], "search-01");
    assert_eq!(doc["version"]["number"], "7.10.2");
    assert_eq!(doc["version"]["build_hash"], "747e1cc71def077253878a59143c1f785afa92b9");
    assert_eq!(doc["tagline"], "You Know, for Search");
    // 7.17 names its product in a header, and says security is off.
    let newer = curl(&["-i", "http://127.0.0.2:9200/"]).await;
    assert!(newer.contains("\r\nX-elastic-product: Elasticsearch\r\n"), "{newer}");
    assert!(newer.contains("built-in security features are not enabled"), "{newer}");
    assert!(newer.contains("\"number\" : \"7.17.0\""), "{newer}");

    let indices = curl(&["http://127.0.0.1:9200/_cat/indices?v"]).await;
    assert!(indices.starts_with("health status index uuid pri rep docs.count"), "{indices}");
    let search = curl(&[
        "-XPOST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"query":{"match_all":{}}}"#,
        "http://127.0.0.1:9200/_search",
    ])
    .await;
    let search: serde_json::Value = serde_json::from_str(&search).unwrap();
    assert_eq!(search["hits"]["total"]["value"], 0);
    let missing = curl(&["-w", " %{http_code}", "http://127.0.0.1:9200/customers/_search"]).await;
    assert!(missing.ends_with(" 404"), "{missing}");
    assert!(
        missing.contains(r#""type":"index_not_found_exception","reason":"no such index [customers]""#),
        "{missing}"
    );
    let health = curl(&["http://127.0.0.1:9200/_cluster/health"]).await;
    assert!(health.starts_with(r#"{"cluster_name":"elasticsearch","status":"green""#), "{health}");

    let r = &fleet.receiver;
    r.wait_for("search body", |l| {
        is(l, "elasticsearch", "command") && sd(l, "command") == Some(r#"POST /_search {"query":{"match_all":{}}}"#)
    })
    .await;
    r.wait_for("cat", |l| is(l, "elasticsearch", "command") && sd(l, "command") == Some("GET /_cat/indices?v")).await;

    let nmap = fleet.ns.nmap_version("127.0.0.1".parse().unwrap(), 9200).await;
    assert!(nmap.contains("Elasticsearch REST API 7.10.2"), "{nmap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_malformed_and_oversize_requests_end_only_their_connection() {
    let fleet = fleet("es-bad", "search-03", "debian-12", &["elasticsearch"]).await;
    let send = |input: &'static str| {
        let ns = &fleet.ns;
        async move { text(&ns.run(20, "sh", &["-c", &format!("printf '{input}' | nc -q 3 127.0.0.1 9200")]).await) }
    };
    // A request line that is not one: 400 in ES's error shape, closed.
    let bad = send("GARBAGE\\r\\n\\r\\nGET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n").await;
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert!(bad.ends_with(r#"{"error":"request line is not METHOD target HTTP/x.y","status":400}"#), "{bad}");
    assert_eq!(bad.matches("HTTP/1.1").count(), 1, "nothing after the 400: {bad}");
    // A body past 64 KiB is not read: 413, closed.
    let big = send("POST /_search HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n\\r\\n{}").await;
    assert!(big.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"), "{big}");
    // Two requests on one connection are both answered (keep-alive).
    let two =
        send("GET /_cluster/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /_cat/nodes HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            .await;
    assert_eq!(two.matches("HTTP/1.1 200 OK").count(), 2, "{two}");
    fleet
        .receiver
        .wait_for("malformed", |l| {
            is(l, "elasticsearch", "command")
                && sd(l, "command") == Some("malformed request: request line is not METHOD target HTTP/x.y")
        })
        .await;
}
