//! Login, tokens and roles on every protected route, JSON error bodies,
//! and the OpenAPI document.

mod api_support;

use api_support::*;
use decnet::api::MAX_BODY_BYTES;
use decnet::auth::{unix_now, Claims, Role};

async fn harness() -> Harness {
    Harness::start(no_bus(), SystemctlMode::StandIn { units: "", failing: &[] }).await
}

#[tokio::test]
async fn login_ok_gives_a_working_bearer_token() {
    let h = harness().await;
    let resp = h
        .http
        .post(h.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "root", "password": "root-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["role"], "admin");
    let exp = body["expires_at"].as_i64().unwrap();
    assert!((exp - unix_now() - 3600).abs() <= 2, "expires_at {exp}");
    let (status, _) = h.call("GET", "/api/v1/workers", body["access_token"].as_str()).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn login_bad_password_or_unknown_user_is_401() {
    let h = harness().await;
    for (user, pw) in [("root", "nope"), ("nobody", "root-pw"), ("root", "")] {
        let resp = h
            .http
            .post(h.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{user}/{pw}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid user name or password");
    }
    h.shutdown().await;
}

async fn assert_401_everywhere(h: &Harness, token: Option<&str>, what: &str) {
    for (method, path, _) in PROTECTED {
        let (status, body) = h.call(method, path, token).await;
        assert_eq!(status, 401, "{what}: {method} {path} -> {body}");
        assert!(body["error"].is_string(), "{what}: {method} {path} body {body}");
    }
}

#[tokio::test]
async fn missing_token_is_401_on_every_protected_route() {
    let h = harness().await;
    assert_401_everywhere(&h, None, "no token").await;
    h.shutdown().await;
}

#[tokio::test]
async fn malformed_token_is_401_on_every_protected_route() {
    let h = harness().await;
    assert_401_everywhere(&h, Some("not-a-jwt"), "garbage").await;
    assert_401_everywhere(&h, Some("a.b.c"), "three garbage parts").await;
    // A scheme other than Bearer.
    for (method, path, _) in PROTECTED {
        let resp = h
            .http
            .request(method.parse().unwrap(), h.url(path))
            .header("Authorization", "Basic cm9vdDpyb290LXB3")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn wrongly_signed_token_is_401_on_every_protected_route() {
    let h = harness().await;
    let now = unix_now();
    let token = h.forge(b"another-secret", Claims { sub: "root".into(), role: Role::Admin, iat: now, exp: now + 600 });
    assert_401_everywhere(&h, Some(&token), "wrong key").await;
    h.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_401_on_every_protected_route() {
    let h = harness().await;
    let now = unix_now();
    let token = h.forge(SECRET, Claims { sub: "root".into(), role: Role::Admin, iat: now - 7200, exp: now - 5 });
    assert_401_everywhere(&h, Some(&token), "expired").await;
    let (_, body) = h.call("GET", "/api/v1/workers", Some(&token)).await;
    assert!(body["error"].as_str().unwrap().contains("expired"), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn token_for_a_user_that_does_not_exist_is_401() {
    let h = harness().await;
    let now = unix_now();
    let token = h.forge(SECRET, Claims { sub: "ghost".into(), role: Role::Admin, iat: now, exp: now + 600 });
    assert_401_everywhere(&h, Some(&token), "ghost user").await;
    h.shutdown().await;
}

#[tokio::test]
async fn viewer_on_admin_route_is_403_and_viewer_route_is_200() {
    let h = harness().await;
    let token = h.login(VIEWER).await;
    for (method, path, admin_only) in PROTECTED {
        let (status, body) = h.call(method, path, Some(&token)).await;
        if *admin_only {
            assert_eq!(status, 403, "{method} {path} -> {body}");
            assert!(body["error"].as_str().unwrap().contains("admin"), "{body}");
        } else {
            assert_eq!(status, 200, "{method} {path} -> {body}");
        }
    }
    // The viewer could not start anything.
    assert!(h.argv().iter().all(|l| !l.starts_with("start|")), "{:?}", h.argv());
    h.shutdown().await;
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400_with_a_message() {
    let h = harness().await;
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("{\"username\": \"root\", ", Some("application/json"), "malformed"),
        ("{\"username\": 5, \"password\": \"x\"}", Some("application/json"), "wrong type"),
        ("{\"username\": \"root\"}", Some("application/json"), "missing field"),
        ("[1,2]", Some("application/json"), "not an object"),
        ("{\"username\": \"root\", \"password\": \"root-pw\"}", None, "no content type"),
        ("{\"username\": \"root\", \"password\": \"root-pw\"}", Some("text/plain"), "wrong content type"),
    ];
    for (body, content_type, what) in cases {
        let mut req = h.http.post(h.url("/api/v1/auth/login")).body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", *ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        let json: serde_json::Value = resp.json().await.unwrap();
        assert!(!json["error"].as_str().unwrap().is_empty(), "{what}: {json}");
    }
    h.shutdown().await;
}

/// A login body `over` bytes longer than the limit (valid JSON, so only its size is wrong).
fn oversized_login(over: usize) -> String {
    let envelope = r#"{"username": "root", "password": ""}"#.len();
    let body = format!(r#"{{"username": "root", "password": "{}"}}"#, "x".repeat(MAX_BODY_BYTES - envelope + over));
    assert_eq!(body.len(), MAX_BODY_BYTES + over);
    body
}

#[tokio::test]
async fn login_body_over_the_limit_is_a_json_413() {
    let h = harness().await;
    // With Content-Length: refused by the body-limit layer before any handler.
    let resp = h
        .http
        .post(h.url("/api/v1/auth/login"))
        .header("Content-Type", "application/json")
        .body(oversized_login(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");

    // Chunked, so no length is announced: refused while the JSON extractor reads it.
    let chunks: Vec<Result<String, std::io::Error>> =
        oversized_login(1).into_bytes().chunks(8192).map(|c| Ok(String::from_utf8(c.to_vec()).unwrap())).collect();
    let resp = h
        .http
        .post(h.url("/api/v1/auth/login"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");

    // One byte less than the limit is read and judged on its content.
    let resp = h
        .http
        .post(h.url("/api/v1/auth/login"))
        .header("Content-Type", "application/json")
        .body(oversized_login(0))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a body of exactly the limit is accepted");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let h = harness().await;
    let (status, body) = h.call("GET", "/api/v1/nothing-here", None).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/api/v1/nothing-here"));
    h.shutdown().await;
}

#[tokio::test]
async fn openapi_document_covers_every_route_body_and_error() {
    let h = harness().await;
    let (status, doc) = h.call("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = &doc["paths"];
    for (method, path) in [
        ("post", "/api/v1/auth/login"),
        ("get", "/api/v1/workers"),
        ("post", "/api/v1/workers/{name}/stop"),
        ("post", "/api/v1/workers/{name}/start"),
        ("post", "/api/v1/workers/start-all"),
        ("get", "/api/v1/health"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/attackers/{ip}/artifacts"),
        ("get", "/api/v1/artifacts/{sha256}"),
        ("get", "/api/v1/attackers/{ip}/sessions"),
        ("get", "/api/v1/recordings/{sid}"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    for code in ["202", "400", "401", "403", "404", "503"] {
        assert!(paths["/api/v1/workers/{name}/stop"]["post"]["responses"][code].is_object(), "stop {code}");
    }
    assert!(paths["/api/v1/workers/{name}/start"]["post"]["responses"]["502"].is_object());
    let login = &paths["/api/v1/auth/login"]["post"]["responses"];
    for code in ["200", "400", "401", "413", "500"] {
        assert!(login[code].is_object(), "login {code}");
    }
    assert_eq!(login["413"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
    // Every route that takes a body documents 413; every route that reads
    // the database (all but the two meta routes) documents 500.
    for (path, item) in paths.as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            if op["requestBody"].is_object() {
                assert!(responses["413"].is_object(), "{method} {path} takes a body but does not document 413");
            }
            if !["/api/v1/health", "/api/v1/openapi.json"].contains(&path.as_str()) {
                assert!(responses["500"].is_object(), "{method} {path} does not document 500");
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "LoginRequest",
        "LoginResponse",
        "WorkersResponse",
        "WorkerStatus",
        "StopAccepted",
        "StartResponse",
        "StartFailure",
        "StartAllResponse",
        "ErrorBody",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    h.shutdown().await;
}
