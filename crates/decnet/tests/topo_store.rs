//! The topology store on a real SQLite file: lifecycle, validation against
//! the topology, optimistic concurrency and the atomic claim.

use std::collections::HashSet;

use decnet::store::topology::{self as topo, TopologyStoreError};
use decnet::topology::{Decky, MutationOp, MutationState, TopologyStatus, ValidationError};
use sqlx::SqlitePool;

fn decky(name: &str, services: &[&str]) -> Decky {
    Decky { name: name.into(), services: services.iter().map(|s| s.to_string()).collect() }
}

fn add(name: &str, services: &[&str]) -> MutationOp {
    MutationOp::AddDecky { name: name.into(), services: services.iter().map(|s| s.to_string()).collect() }
}

async fn open() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    (dir, pool)
}

async fn active_topology(pool: &SqlitePool, deckies: &[Decky]) -> String {
    let t = topo::create_topology(pool, "lab", deckies).await.unwrap();
    topo::set_status(pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    topo::set_status(pool, &t.id, TopologyStatus::Active).await.unwrap();
    t.id
}

#[tokio::test]
async fn create_get_list_round_trip() {
    let (_dir, pool) = open().await;
    let deckies = vec![decky("web1", &["http", "ssh"]), decky("db1", &["mysql"])];
    let created = topo::create_topology(&pool, "lab", &deckies).await.unwrap();
    assert_eq!(created.status, TopologyStatus::Pending);
    assert_eq!(created.version, 1);

    let fetched = topo::get_topology(&pool, &created.id).await.unwrap().unwrap();
    assert_eq!(fetched.deckies, deckies, "deckies keep their declared order and services");
    assert_eq!(fetched, created);
    assert!(topo::get_topology(&pool, "nope").await.unwrap().is_none());

    let other = topo::create_topology(&pool, "other", &[]).await.unwrap();
    let ids: Vec<_> = topo::list_topologies(&pool).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![created.id.clone(), other.id.clone()]);
    let pending = topo::topologies_with_status(&pool, TopologyStatus::Pending).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(topo::topologies_with_status(&pool, TopologyStatus::Active).await.unwrap().is_empty());
}

#[tokio::test]
async fn create_refuses_invalid_topologies_and_stores_nothing() {
    let (_dir, pool) = open().await;
    let err = topo::create_topology(&pool, "lab", &[decky("a", &["ssh"]), decky("a", &["ftp"])]).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::Invalid(ValidationError::DuplicateDecky(ref n)) if n == "a"), "{err}");
    let err = topo::create_topology(&pool, "lab", &[decky("a", &["gopher"])]).await.unwrap_err();
    assert!(err.to_string().contains("gopher"), "{err}");
    assert!(topo::list_topologies(&pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn status_changes_follow_the_state_machine() {
    let (_dir, pool) = open().await;
    let t = topo::create_topology(&pool, "lab", &[]).await.unwrap();
    let err = topo::set_status(&pool, &t.id, TopologyStatus::Active).await.unwrap_err();
    assert!(
        matches!(err, TopologyStoreError::Transition(ref e) if e.from == TopologyStatus::Pending && e.to == TopologyStatus::Active),
        "{err}"
    );
    let change = topo::set_status(&pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    assert_eq!((change.previous, change.status), (TopologyStatus::Pending, TopologyStatus::Deploying));
    topo::set_status(&pool, &t.id, TopologyStatus::Failed).await.unwrap();
    topo::set_status(&pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    topo::set_status(&pool, &t.id, TopologyStatus::Active).await.unwrap();
    topo::set_status(&pool, &t.id, TopologyStatus::Degraded).await.unwrap();
    assert_eq!(topo::get_topology(&pool, &t.id).await.unwrap().unwrap().status, TopologyStatus::Degraded);
    let err = topo::set_status(&pool, "missing", TopologyStatus::Deploying).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::NotFound(ref id) if id == "missing"), "{err}");
}

#[tokio::test]
async fn enqueue_requires_a_deployed_topology_and_the_current_version() {
    let (_dir, pool) = open().await;
    let t = topo::create_topology(&pool, "lab", &[decky("a", &["ssh"])]).await.unwrap();
    let err = topo::enqueue_mutation(&pool, &t.id, &add("b", &["ftp"]), None).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::NotMutable { status: TopologyStatus::Pending, .. }), "{err}");
    let err = topo::enqueue_mutation(&pool, "missing", &add("b", &["ftp"]), None).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::NotFound(_)), "{err}");

    topo::set_status(&pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    topo::set_status(&pool, &t.id, TopologyStatus::Active).await.unwrap();
    let queued = topo::enqueue_mutation_with_version(&pool, &t.id, &add("b", &["ftp"]), Some(1)).await.unwrap();
    assert_eq!(queued.version, 2);
    let m = queued.mutation;
    assert_eq!(m.state, MutationState::Pending);
    assert_eq!(m.op, "add_decky");
    assert_eq!(topo::get_topology(&pool, &t.id).await.unwrap().unwrap().version, 2, "enqueue bumps the version");

    let err = topo::enqueue_mutation(&pool, &t.id, &add("c", &["ftp"]), Some(1)).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::VersionConflict { expected: 1, current: 2, .. }), "{err}");
    assert_eq!(topo::list_mutations(&pool, &t.id, None).await.unwrap().len(), 1, "the stale request queued nothing");
    assert_eq!(topo::get_topology(&pool, &t.id).await.unwrap().unwrap().version, 2, "nor bumped the version");

    topo::set_status(&pool, &t.id, TopologyStatus::Degraded).await.unwrap();
    topo::enqueue_mutation(&pool, &t.id, &add("c", &["ftp"]), Some(2)).await.expect("degraded still accepts");
}

#[tokio::test]
async fn enqueue_validates_against_the_projected_topology() {
    let (_dir, pool) = open().await;
    let id = active_topology(&pool, &[decky("a", &["ssh"])]).await;
    let err = topo::enqueue_mutation(&pool, &id, &add("a", &["ftp"]), None).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::Invalid(ValidationError::DuplicateDecky(ref n)) if n == "a"), "{err}");
    let remove_missing = MutationOp::RemoveDecky { name: "ghost".into() };
    let err = topo::enqueue_mutation(&pool, &id, &remove_missing, None).await.unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");

    // Queued-but-unapplied ops count: add then remove the same decky.
    topo::enqueue_mutation(&pool, &id, &add("b", &["ftp"]), None).await.unwrap();
    topo::enqueue_mutation(&pool, &id, &MutationOp::RemoveDecky { name: "b".into() }, None).await.unwrap();
    let err =
        topo::enqueue_mutation(&pool, &id, &MutationOp::RemoveDecky { name: "b".into() }, None).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::Invalid(ValidationError::MissingDecky(_))), "{err}");
    assert_eq!(topo::in_flight(&pool, &id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn claim_apply_and_fail_walk_the_queue_in_order() {
    let (_dir, pool) = open().await;
    let id = active_topology(&pool, &[decky("a", &["ssh"])]).await;
    let idle = active_topology(&pool, &[]).await;
    assert!(topo::live_topologies(&pool).await.unwrap().is_empty());

    let m1 = topo::enqueue_mutation(&pool, &id, &add("b", &["ftp"]), None).await.unwrap();
    let set = MutationOp::SetServices { decky: "a".into(), services: vec!["rdp".into(), "smb".into()] };
    let m2 = topo::enqueue_mutation(&pool, &id, &set, None).await.unwrap();
    let m3 = topo::enqueue_mutation(&pool, &id, &MutationOp::RemoveDecky { name: "b".into() }, None).await.unwrap();
    assert_eq!(topo::live_topologies(&pool).await.unwrap(), vec![id.clone()]);
    assert!(topo::claim_next_pending(&pool, &idle).await.unwrap().is_none());

    // Applying only from `applying`.
    let err = topo::mark_applied(&pool, m1.id).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::MutationState { state: MutationState::Pending, .. }), "{err}");

    let c1 = topo::claim_next_pending(&pool, &id).await.unwrap().unwrap();
    assert_eq!((c1.id, c1.state), (m1.id, MutationState::Applying));
    assert_eq!(c1.op().unwrap(), add("b", &["ftp"]));
    let applied = topo::mark_applied(&pool, c1.id).await.unwrap();
    assert_eq!(applied.state, MutationState::Applied);
    let t = topo::get_topology(&pool, &id).await.unwrap().unwrap();
    assert_eq!(t.deckies, vec![decky("a", &["ssh"]), decky("b", &["ftp"])]);

    let c2 = topo::claim_next_pending(&pool, &id).await.unwrap().unwrap();
    assert_eq!(c2.id, m2.id);
    assert_eq!(
        topo::in_flight(&pool, &id).await.unwrap().iter().map(|m| m.state).collect::<Vec<_>>(),
        [MutationState::Applying, MutationState::Pending]
    );
    let failed = topo::mark_failed(&pool, c2.id, "deploy driver exited 3").await.unwrap();
    assert_eq!((failed.state, failed.reason.as_deref()), (MutationState::Failed, Some("deploy driver exited 3")));
    let t = topo::get_topology(&pool, &id).await.unwrap().unwrap();
    assert_eq!(t.deckies[0], decky("a", &["ssh"]), "a failed mutation changes no decky");
    let err = topo::mark_failed(&pool, c2.id, "again").await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::MutationState { state: MutationState::Failed, .. }), "{err}");
    let err = topo::mark_failed(&pool, 999_999, "x").await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::MutationNotFound(999_999)), "{err}");

    let c3 = topo::claim_next_pending(&pool, &id).await.unwrap().unwrap();
    assert_eq!(c3.id, m3.id);
    topo::mark_applied(&pool, c3.id).await.unwrap();
    assert!(topo::claim_next_pending(&pool, &id).await.unwrap().is_none());
    assert!(topo::live_topologies(&pool).await.unwrap().is_empty());

    let by_state = |s| {
        let pool = pool.clone();
        let id = id.clone();
        async move { topo::list_mutations(&pool, &id, Some(s)).await.unwrap().into_iter().map(|m| m.id).collect::<Vec<_>>() }
    };
    assert_eq!(by_state(MutationState::Applied).await, vec![m1.id, m3.id]);
    assert_eq!(by_state(MutationState::Failed).await, vec![m2.id]);
    assert!(by_state(MutationState::Pending).await.is_empty());
    assert_eq!(topo::list_mutations(&pool, &id, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn mark_applied_refuses_an_op_that_no_longer_fits() {
    let (_dir, pool) = open().await;
    let id = active_topology(&pool, &[decky("a", &["ssh"])]).await;
    let m = topo::enqueue_mutation(&pool, &id, &MutationOp::RemoveDecky { name: "a".into() }, None).await.unwrap();
    // Someone removes the decky by another route before the mutator applies.
    sqlx::query("DELETE FROM topology_deckies WHERE topology_id = ?").bind(&id).execute(&pool).await.unwrap();
    topo::claim_next_pending(&pool, &id).await.unwrap().unwrap();
    let err = topo::mark_applied(&pool, m.id).await.unwrap_err();
    assert!(matches!(err, TopologyStoreError::Invalid(ValidationError::MissingDecky(ref n)) if n == "a"), "{err}");
    let still = topo::list_mutations(&pool, &id, None).await.unwrap();
    assert_eq!(still[0].state, MutationState::Applying, "the refused apply rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decnet.db");
    let pool = decnet::store::open(&path).await.unwrap();
    // A second pool on the same file stands in for a second process.
    let other_pool = decnet::store::open(&path).await.unwrap();
    let id = active_topology(&pool, &[]).await;
    const ROWS: usize = 120;
    for i in 0..ROWS {
        topo::enqueue_mutation(&pool, &id, &add(&format!("d{i}"), &["ssh"]), None).await.unwrap();
    }

    let mut tasks = Vec::new();
    for n in 0..16 {
        let pool = if n % 2 == 0 { pool.clone() } else { other_pool.clone() };
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(m) = topo::claim_next_pending(&pool, &id).await.unwrap() {
                assert_eq!(m.state, MutationState::Applying);
                mine.push(m.id);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a row was claimed twice");
    assert_eq!(all.len(), ROWS, "every pending row was claimed");
    assert!(topo::list_mutations(&pool, &id, Some(MutationState::Pending)).await.unwrap().is_empty());
}

/// `decnet up` starts its children together and each opens the database:
/// on a new file they all migrate at once. Every open must succeed (this
/// failed with "table already exists" before migrations were serialised,
/// and now and then with "database is locked" while the first connection
/// still switched the new file to WAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_processes_opening_a_new_database_at_once_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decnet.db");
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { decnet::store::open(&path).await.map(|_| ()) })
            })
            .collect();
        for (i, open) in opens.into_iter().enumerate() {
            if let Err(e) = open.await.unwrap() {
                panic!("round {round}: open {i} of a new database failed: {e:#}");
            }
        }
    }
}
