//! Topology deploys and mutation draining against a real SQLite file, the
//! FakeBus, and a stand-in deploy command that fails for one decky.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use decnet::mutator::drivers::CommandDriver;
use decnet::mutator::Mutator;
use decnet::store::topology as store;
use decnet::topology::{Decky, MutationOp, MutationState, TopologyStatus};
use decnet_bus::fake::FakeBus;
use decnet_bus::Envelope;

fn decky(name: &str, services: &[&str]) -> Decky {
    Decky { name: name.into(), services: services.iter().map(|s| s.to_string()).collect() }
}

fn write_script(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("deploy");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn next(sub: &mut decnet_bus::Subscription) -> Envelope {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("event within 5 s").expect("open")
}

#[tokio::test]
async fn deploy_then_drain_stops_at_first_failure_and_degrades() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    // Deploys anything except a decky called "broken".
    let script = write_script(dir.path(), "[ \"$1\" = broken ] && { echo 'no such image' >&2; exit 1; }; exit 0");
    let hub = FakeBus::new();
    let mutator = Mutator::new(
        pool.clone(),
        Arc::new(CommandDriver::new(script)),
        Some(hub.client("mutator")),
        dir.path().join("log"),
    );
    let watcher = hub.client("watcher");
    let mut sub = watcher.subscribe("topology.>").await.unwrap();

    let t = store::create_topology(&pool, "lab", &[decky("a", &["ssh"]), decky("b", &["http"])]).await.unwrap();
    store::set_status(&pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    mutator.drain_topologies().await;
    let status = next(&mut sub).await;
    assert_eq!(status.topic, format!("topology.{}.status", t.id));
    assert_eq!(status.payload["status"], "active");

    let ok = store::enqueue_mutation(
        &pool,
        &t.id,
        &MutationOp::SetServices { decky: "a".into(), services: vec!["ftp".into()] },
        None,
    )
    .await
    .unwrap();
    let bad = store::enqueue_mutation(
        &pool,
        &t.id,
        &MutationOp::AddDecky { name: "broken".into(), services: vec!["smb".into()] },
        None,
    )
    .await
    .unwrap();
    let later =
        store::enqueue_mutation(&pool, &t.id, &MutationOp::RemoveDecky { name: "b".into() }, None).await.unwrap();
    mutator.drain_topologies().await;

    let topics: Vec<(String, serde_json::Value)> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let e = next(&mut sub).await;
            v.push((e.topic.clone(), e.payload.clone()));
        }
        v
    };
    let leaf = |i: usize| topics[i].0.rsplit('.').next().unwrap().to_string();
    assert_eq!((leaf(0), topics[0].1["mutation_id"].as_i64()), ("applying".into(), Some(ok.id)));
    assert_eq!((leaf(1), topics[1].1["mutation_id"].as_i64()), ("applied".into(), Some(ok.id)));
    assert_eq!((leaf(2), topics[2].1["mutation_id"].as_i64()), ("applying".into(), Some(bad.id)));
    assert_eq!((leaf(3), topics[3].1["mutation_id"].as_i64()), ("failed".into(), Some(bad.id)));
    assert!(topics[3].1["reason"].as_str().unwrap().contains("no such image"));
    assert_eq!(topics[4].0, format!("topology.{}.status", t.id));
    assert_eq!(topics[4].1["status"], "degraded");

    let rows = store::list_mutations(&pool, &t.id, None).await.unwrap();
    let state_of = |id: i64| rows.iter().find(|m| m.id == id).unwrap().state;
    assert_eq!(state_of(ok.id), MutationState::Applied);
    assert_eq!(state_of(bad.id), MutationState::Failed);
    assert_eq!(state_of(later.id), MutationState::Pending, "drain stopped at the failure");
    let topology = store::get_topology(&pool, &t.id).await.unwrap().unwrap();
    assert_eq!(topology.status, TopologyStatus::Degraded);
    assert_eq!(topology.deckies.iter().find(|d| d.name == "a").unwrap().services, vec!["ftp".to_string()]);

    // Later passes leave a degraded topology's queue alone...
    mutator.drain_topologies().await;
    let rows = store::list_mutations(&pool, &t.id, None).await.unwrap();
    assert_eq!(rows.iter().find(|m| m.id == later.id).unwrap().state, MutationState::Pending, "still not drained");
    assert!(tokio::time::timeout(Duration::from_millis(200), sub.recv()).await.is_err(), "nothing published for it");

    // ...until a redeploy (what POST …/deploy does) makes it active again.
    store::set_status(&pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    mutator.drain_topologies().await;
    assert_eq!(next(&mut sub).await.payload["status"], "active");
    assert_eq!(next(&mut sub).await.payload["mutation_id"].as_i64(), Some(later.id)); // applying
    let applied = next(&mut sub).await;
    assert!(applied.topic.ends_with(".mutation.applied"), "{}", applied.topic);
    let topology = store::get_topology(&pool, &t.id).await.unwrap().unwrap();
    assert!(topology.deckies.iter().all(|d| d.name != "b"), "the queued remove_decky applied after the redeploy");
}
