//! The dashboard's alerts section in a real headless Chromium over a real
//! `decnet api`: an admin adds a Slack webhook, sees it redacted, presses
//! Test and the loopback receiver gets the message; a viewer never sees
//! the section.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;
use support::{browser, click_live, free_port, wait_text, Proc, BIN};

async fn sign_in(b: &fantoccini::Client, url: &str, user: &str, password: &str) {
    b.goto(url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys(user).await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_and_tests_a_webhook_from_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    for (name, pw, role) in
        [("root", "pw-admin-123", decnet::auth::Role::Admin), ("eve", "pw-viewer-12", decnet::auth::Role::Viewer)]
    {
        let hash = decnet::auth::hash_password(pw).unwrap();
        decnet::store::users::create(&pool, name, &hash, role).await.unwrap();
    }
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/services/T1/B1/s3cr3t",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| async move {
            seen.lock().unwrap().push(v);
            "ok"
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(hook_listener, app).await });

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let _api = Proc(
        Command::new(BIN)
            .args(["api", "--listen", &format!("127.0.0.1:{port}"), "--no-ingest"])
            .env("DECNET_HOME", dir.path())
            .env("DECNET_DB", dir.path().join("decnet.db"))
            .env("DECNET_BUS_SOCKET", dir.path().join("no-bus.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(support::wait_tcp(([127, 0, 0, 1], port).into(), 20.0), "the API listens");

    let (_driver, b) = browser(dir.path()).await;
    sign_in(&b, &url, "root", "pw-admin-123").await;
    b.goto(&format!("{url}#system")).await.unwrap();
    wait_text(&b, "#webhooks-empty", |t| t.contains("No webhooks")).await;
    b.find(Locator::Id("webhook-name")).await.unwrap().send_keys("soc").await.unwrap();
    let secret_url = format!("http://{hook_addr}/services/T1/B1/s3cr3t");
    b.find(Locator::Id("webhook-url")).await.unwrap().send_keys(&secret_url).await.unwrap();
    b.find(Locator::Id("webhook-add")).await.unwrap().click().await.unwrap();
    let row = wait_text(&b, "#webhooks tbody", |t| t.contains("soc")).await;
    assert!(row.contains(&format!("http://{hook_addr}/…")) && row.contains("slack"), "{row}");
    assert!(!row.contains("s3cr3t"), "the URL is shown redacted: {row}");

    click_live(&b, "#webhooks tbody button").await; // Test
    let log = wait_text(&b, "#webhook-deliveries tbody", |t| t.contains("delivered")).await;
    assert!(log.contains("webhook.test"), "{log}");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0]["text"].as_str().unwrap().contains("test notification"), "{}", got[0]);

    // A viewer's System page has no alerts section.
    b.execute("sessionStorage.clear()", vec![]).await.unwrap();
    sign_in(&b, &url, "eve", "pw-viewer-12").await;
    b.goto(&format!("{url}#system")).await.unwrap();
    wait_text(&b, "#who", |t| t.contains("eve")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let section = b.find(Locator::Id("alerts-admin")).await.unwrap();
    assert!(!section.is_displayed().await.unwrap(), "viewers do not see the webhooks");
    b.close().await.unwrap();
}
