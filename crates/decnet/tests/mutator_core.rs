//! The mutator's core against a real SQLite file, the in-process FakeBus,
//! and (for failures) a stand-in deploy executable.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use decnet::events::{emit_decky_mutated, rfc5424, Trigger};
use decnet::fleet::Fleet;
use decnet::mutator::drivers::{CommandDriver, DeployDriver, DryRunDriver};
use decnet::mutator::Mutator;
use decnet::store::fleet as fleet_store;
use decnet_bus::fake::FakeBus;
use decnet_bus::{Envelope, Subscription};

/// Tests that spawn stand-in executables run one at a time: a script still
/// open for writing in one thread while another forks gives ETXTBSY.
static SPAWN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Rig {
    dir: tempfile::TempDir,
    hub: FakeBus,
    mutator: Mutator,
}

impl Rig {
    async fn new(driver: Arc<dyn DeployDriver>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
        let hub = FakeBus::new();
        let log = dir.path().join("ingest.log");
        let mutator = Mutator::new(pool, driver, Some(hub.client("mutator")), log);
        Rig { dir, hub, mutator }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.mutator.log_path).unwrap_or_default()
    }

    async fn deploy(&self, toml: &str) {
        let fleet = Fleet::parse(toml, "fleet.toml").unwrap();
        assert!(self.mutator.deploy_fleet(&fleet).await.unwrap().is_empty());
    }

    /// Pretend `name` was last mutated `ago` seconds ago.
    async fn age(&self, name: &str, ago: f64) {
        let mut d = fleet_store::get(&self.mutator.pool, name).await.unwrap().unwrap();
        d.last_mutated = Some(decnet::mutator::now_secs() - ago);
        fleet_store::upsert(&self.mutator.pool, &d).await.unwrap();
    }

    async fn last_mutated(&self, name: &str) -> f64 {
        fleet_store::get(&self.mutator.pool, name).await.unwrap().unwrap().last_mutated.unwrap()
    }
}

const TWO: &str = "interval = 1\n[[decky]]\nname = \"a\"\narchetype = \"database-host\"\n[[decky]]\nname = \"b\"\narchetype = \"iot-device\"\n";

async fn next(sub: &mut Subscription) -> Envelope {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("event within 5 s").expect("open")
}

/// Publish a sentinel from a third client and return everything `sub` got
/// before it: proves the absence of events without sleeping.
async fn drain_until_sentinel(hub: &FakeBus, sub: &mut Subscription, topic: &str) -> Vec<Envelope> {
    hub.client("sentinel").publish(topic, "sentinel", serde_json::json!({})).await.unwrap();
    let mut before = Vec::new();
    loop {
        let ev = next(sub).await;
        if ev.event_type == "sentinel" {
            return before;
        }
        before.push(ev);
    }
}

#[tokio::test]
async fn mutate_all_returns_time_until_next_due_and_none_without_deckies() {
    let rig = Rig::new(Arc::new(DryRunDriver)).await;
    assert_eq!(rig.mutator.mutate_all(None).await, None, "nothing deployed, nothing scheduled");

    rig.deploy(TWO).await;
    let next_due = rig.mutator.mutate_all(None).await.expect("scheduled");
    assert!(next_due > Duration::from_secs(50) && next_due <= Duration::from_secs(60), "{next_due:?}");

    rig.age("a", 45.0).await;
    let next_due = rig.mutator.mutate_all(None).await.unwrap();
    assert!(next_due <= Duration::from_secs(15) && next_due > Duration::from_secs(5), "{next_due:?}");

    rig.age("a", 120.0).await;
    let before = rig.last_mutated("a").await;
    let next_due = rig.mutator.mutate_all(None).await.unwrap();
    assert!(rig.last_mutated("a").await > before, "the overdue decky was mutated");
    assert!(next_due > Duration::from_secs(50), "{next_due:?}");
}

#[tokio::test]
async fn only_filter_mutates_just_the_named_due_deckies() {
    let rig = Rig::new(Arc::new(DryRunDriver)).await;
    rig.deploy(TWO).await;
    rig.age("a", 120.0).await;
    rig.age("b", 120.0).await;
    let (a0, b0) = (rig.last_mutated("a").await, rig.last_mutated("b").await);
    let only: HashSet<String> = ["a".to_string()].into();
    let next_due = rig.mutator.mutate_all(Some(&only)).await;
    assert!(rig.last_mutated("a").await > a0);
    assert_eq!(rig.last_mutated("b").await, b0, "b was not in the filter");
    assert_eq!(next_due, Some(Duration::ZERO), "b is still overdue");
}

#[tokio::test]
async fn success_publishes_state_then_mutation_and_logs_the_line() {
    let rig = Rig::new(Arc::new(DryRunDriver)).await;
    rig.deploy(TWO).await;
    let watcher = rig.hub.client("watcher");
    let mut sub = watcher.subscribe("decky.a.>").await.unwrap();
    let old = fleet_store::get(&rig.mutator.pool, "a").await.unwrap().unwrap().services;

    let new = rig.mutator.mutate_decky("a", Trigger::Operator, Some("alice")).await.unwrap();
    assert_ne!(new, old);

    let state = next(&mut sub).await;
    assert_eq!(state.topic, "decky.a.state");
    assert_eq!(state.payload["services"], serde_json::json!(new));
    let mutation = next(&mut sub).await;
    assert_eq!(mutation.topic, "decky.a.mutation");
    assert_eq!(mutation.payload["old_services"], serde_json::json!(old));
    assert_eq!(mutation.payload["new_services"], serde_json::json!(new));
    assert_eq!(mutation.payload["trigger"], "operator");
    assert_eq!(mutation.payload["actor"], "alice");

    let last = rig.log().lines().last().unwrap().to_string();
    let ev = rfc5424::parse_mutation(&last).unwrap().unwrap();
    assert_eq!((ev.decky.as_str(), &ev.old_services, &ev.new_services), ("a", &old, &new));
    assert_eq!(fleet_store::get(&rig.mutator.pool, "a").await.unwrap().unwrap().services, new, "state saved");
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn failed_deploy_publishes_nothing_logs_nothing_and_keeps_last_mutated() {
    let _serial = SPAWN_LOCK.lock().await;
    let scripts = tempfile::tempdir().unwrap();
    let ok = write_script(scripts.path(), "ok", "exit 0");
    let rig = Rig::new(Arc::new(CommandDriver::new(ok))).await;
    rig.deploy(TWO).await;
    rig.age("a", 120.0).await;
    let before = fleet_store::get(&rig.mutator.pool, "a").await.unwrap().unwrap();
    let log_before = rig.log();

    // Same store, now with a driver that always fails.
    let failing = write_script(scripts.path(), "fail", "echo 'compose exploded' >&2; exit 3");
    let broken = Mutator::new(
        rig.mutator.pool.clone(),
        Arc::new(CommandDriver::new(failing)),
        Some(rig.hub.client("mutator2")),
        rig.mutator.log_path.clone(),
    );
    let watcher = rig.hub.client("watcher");
    let mut sub = watcher.subscribe("decky.>").await.unwrap();

    let err = broken.mutate_decky("a", Trigger::Operator, None).await.unwrap_err();
    assert!(format!("{err:#}").contains("compose exploded"), "{err:#}");
    let only_a: HashSet<String> = ["a".to_string()].into();
    let next_due = broken.mutate_all(Some(&only_a)).await;
    // a failed this pass, so only b (fresh) counts for the next due time.
    assert!(next_due.unwrap() > Duration::from_secs(50), "{next_due:?}");

    assert!(drain_until_sentinel(&rig.hub, &mut sub, "decky.z.sentinel").await.is_empty(), "no state, no mutation");
    assert_eq!(fleet_store::get(&rig.mutator.pool, "a").await.unwrap().unwrap(), before);
    assert_eq!(rig.log(), log_before, "nothing logged");
}

#[tokio::test]
async fn unwritable_log_still_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeBus::new();
    let watcher = hub.client("watcher");
    let mut sub = watcher.subscribe("decky.*.mutation").await.unwrap();
    let publisher = hub.client("mutator");
    // A directory cannot be opened for appending.
    let outcome = emit_decky_mutated(
        Some(publisher.as_ref()),
        dir.path(),
        "d1",
        &[],
        &["ssh".to_string()],
        Trigger::Creation,
        None,
    )
    .await;
    assert!(!outcome.logged && outcome.published);
    let ev = next(&mut sub).await;
    assert_eq!(ev.topic, "decky.d1.mutation");
    assert_eq!(ev.payload["new_services"], serde_json::json!(["ssh"]));
    assert!(ev.payload.get("actor").is_none());
}

#[tokio::test]
async fn no_bus_or_closed_bus_still_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sub/ingest.log");
    let old = vec!["ssh".to_string()];
    let new = vec!["http".to_string()];
    let outcome = emit_decky_mutated(None, &log, "d1", &[], &old, Trigger::Creation, None).await;
    assert!(outcome.logged && !outcome.published);

    let hub = FakeBus::new();
    let dead = hub.client("mutator");
    dead.close().await;
    let outcome = emit_decky_mutated(Some(dead.as_ref()), &log, "d1", &old, &new, Trigger::Scheduled, Some("x")).await;
    assert!(outcome.logged);

    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<_> = text.lines().map(|l| rfc5424::parse_mutation(l).unwrap().unwrap()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].old_services, old);
    assert_eq!(events[1].new_services, new);
    assert!(decnet::correlate::fold_lines(text.as_bytes()).unwrap().is_intact());
}

#[tokio::test]
async fn teardown_emits_retirement_and_redeploy_a_creation() {
    let rig = Rig::new(Arc::new(DryRunDriver)).await;
    rig.deploy(TWO).await;
    assert!(rig.mutator.teardown(&["b".to_string()], Some("ops")).await.unwrap().is_empty());
    assert_eq!(rig.mutator.mutate_all(None).await.map(|d| d > Duration::from_secs(50)), Some(true));
    assert!(rig.mutator.mutate_decky("b", Trigger::Operator, None).await.is_err(), "b is retired");
    rig.deploy(TWO).await; // b comes back, a is untouched
    let report = decnet::correlate::fold_lines(rig.log().as_bytes()).unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    let triggers: Vec<Trigger> = report.chains["b"].iter().map(|(_, e)| e.trigger).collect();
    assert_eq!(triggers, vec![Trigger::Creation, Trigger::Retirement, Trigger::Creation]);
    assert_eq!(report.chains["a"].len(), 1);
    assert!(rig.dir.path().exists());
}

#[tokio::test]
async fn a_big_fleet_is_recorded_whole_and_a_second_deploy_only_updates_settings() {
    // 600 deckies: past one batch of recorded creations (256) and one
    // multi-row statement (500).
    let rig = Rig::new(Arc::new(DryRunDriver)).await;
    let fleet = |n: usize, interval: u32| {
        let mut t = format!("interval = {interval}\n");
        for i in 0..n {
            t.push_str(&format!(
                "[[decky]]\nname = \"big-{i:03}\"\nservices = [\"ssh\"]\naddress = \"127.4.{}.{}\"\n",
                i / 200,
                i % 200 + 1
            ));
        }
        t
    };
    rig.deploy(&fleet(600, 5)).await;
    let all = fleet_store::list(&rig.mutator.pool).await.unwrap();
    assert_eq!(all.len(), 600);
    assert!(all
        .iter()
        .all(|d| d.deployed && d.services == ["ssh"] && d.interval_minutes == 5 && d.last_mutated.is_some()));
    let history = decnet::store::mutations::for_decky(&rig.mutator.pool, "big-599").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].trigger.as_str(), history[0].new_services.as_slice()),
        ("creation", ["ssh".to_string()].as_slice())
    );
    assert_eq!(fleet_store::address_of(&rig.mutator.pool, "big-599").await.unwrap().as_deref(), Some("127.4.2.200"));
    assert_eq!(rig.log().lines().filter(|l| l.contains("creation")).count(), 600, "one creation line each");

    // Again with a new interval and one more decky: the 600 keep their
    // services and deploy time, only big-600 is created.
    let first = rig.last_mutated("big-000").await;
    rig.deploy(&fleet(601, 9)).await;
    let all = fleet_store::list(&rig.mutator.pool).await.unwrap();
    assert_eq!(all.len(), 601);
    assert!(all.iter().all(|d| d.deployed && d.interval_minutes == 9));
    assert_eq!(rig.last_mutated("big-000").await, first);
    assert_eq!(rig.log().lines().filter(|l| l.contains("creation")).count(), 601);
    let serving = fleet_store::serving_of_many(&rig.mutator.pool, &["big-000", "big-600", "nobody"]).await.unwrap();
    assert_eq!(serving.len(), 2, "a name not in the fleet is left out: {serving:?}");
}

#[tokio::test]
async fn in_a_fleet_deploy_the_deckies_the_driver_fails_are_named_and_not_recorded() {
    let _serial = SPAWN_LOCK.lock().await;
    let scripts = tempfile::tempdir().unwrap();
    let picky =
        write_script(scripts.path(), "picky", "case \"$1\" in bad-*) echo \"no room for $1\" >&2; exit 3;; esac");
    let rig = Rig::new(Arc::new(CommandDriver::new(picky))).await;
    let toml = "interval = 5\n[[decky]]\nname = \"ok-1\"\nservices = [\"ssh\"]\n[[decky]]\nname = \"bad-1\"\nservices = [\"ssh\"]\n[[decky]]\nname = \"ok-2\"\nservices = [\"ssh\"]\n";
    let failed = rig.mutator.deploy_fleet(&Fleet::parse(toml, "fleet.toml").unwrap()).await.unwrap();
    assert_eq!(failed, ["bad-1"]);
    let bad = fleet_store::get(&rig.mutator.pool, "bad-1").await.unwrap().unwrap();
    assert!(!bad.deployed && bad.services.is_empty() && bad.last_mutated.is_none(), "{bad:?}");
    for ok in ["ok-1", "ok-2"] {
        assert!(fleet_store::get(&rig.mutator.pool, ok).await.unwrap().unwrap().deployed, "{ok}");
    }
    assert!(!rig.log().contains("bad-1"), "no creation line for the failed decky");
    assert_eq!(rig.log().lines().filter(|l| l.contains("creation")).count(), 2);
}
