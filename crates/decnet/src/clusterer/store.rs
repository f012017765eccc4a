//! The clusterer's SQL: strong fingerprints in, identities out.

use std::collections::BTreeSet;

use sqlx::{Row, SqlitePool};

use super::fold::{ClusterState, Identity, Observation, STRONG_KINDS};

/// Every (attacker, strong kind, hash) in `fingerprints`.
pub async fn observations(pool: &SqlitePool) -> anyhow::Result<Vec<Observation>> {
    let marks = vec!["?"; STRONG_KINDS.len()].join(",");
    let sql = format!(
        "SELECT DISTINCT attacker_ip, kind, hash FROM fingerprints WHERE kind IN ({marks}) ORDER BY attacker_ip, kind, hash"
    );
    let mut q = sqlx::query(&sql);
    for k in STRONG_KINDS {
        q = q.bind(*k);
    }
    q.fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok(Observation { ip: r.try_get("attacker_ip")?, kind: r.try_get("kind")?, hash: r.try_get("hash")? }))
        .collect()
}

/// The stored identities and the next free id (AUTOINCREMENT's sequence,
/// so an id deleted by an unmerge is never handed out again).
pub async fn load_state(pool: &SqlitePool) -> anyhow::Result<ClusterState> {
    let mut state = ClusterState::default();
    for r in sqlx::query("SELECT id, fingerprints FROM identities").fetch_all(pool).await? {
        let fps: String = r.try_get("fingerprints")?;
        let fingerprints: BTreeSet<String> = serde_json::from_str(&fps).unwrap_or_default();
        state.identities.insert(r.try_get("id")?, Identity { members: BTreeSet::new(), fingerprints });
    }
    for r in sqlx::query("SELECT identity_id, attacker_ip FROM identity_members").fetch_all(pool).await? {
        let id: i64 = r.try_get("identity_id")?;
        if let Some(i) = state.identities.get_mut(&id) {
            i.members.insert(r.try_get("attacker_ip")?);
        }
    }
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'identities'").fetch_optional(pool).await?;
    state.next_id = seq.unwrap_or(0) + 1;
    Ok(state)
}

/// Replace `old` by `new` in one transaction.
pub async fn save_state(pool: &SqlitePool, old: &ClusterState, new: &ClusterState) -> anyhow::Result<()> {
    let now = crate::mutator::now_secs();
    let mut tx = pool.begin().await?;
    for id in old.identities.keys().filter(|id| !new.identities.contains_key(id)) {
        sqlx::query("DELETE FROM identities WHERE id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE attackers SET identity_id = NULL WHERE identity_id = ?").bind(id).execute(&mut *tx).await?;
    }
    for (id, identity) in &new.identities {
        if old.identities.get(id) == Some(identity) {
            continue;
        }
        let fps = serde_json::to_string(&identity.fingerprints)?;
        sqlx::query(
            "INSERT INTO identities (id, created_at, updated_at, fingerprints) VALUES (?1, ?2, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET updated_at = ?2, fingerprints = ?3",
        )
        .bind(id)
        .bind(now)
        .bind(&fps)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM identity_members WHERE identity_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE attackers SET identity_id = NULL WHERE identity_id = ?").bind(id).execute(&mut *tx).await?;
        for ip in &identity.members {
            // A member moving from another identity: its old row goes.
            sqlx::query("DELETE FROM identity_members WHERE attacker_ip = ?").bind(ip).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO identity_members (identity_id, attacker_ip) VALUES (?, ?)")
                .bind(id)
                .bind(ip)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE attackers SET identity_id = ? WHERE ip = ?")
                .bind(id)
                .bind(ip)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Members of surviving identities that are now in no identity.
    for (id, identity) in &old.identities {
        for ip in &identity.members {
            if !new.identities.values().any(|i| i.members.contains(ip)) {
                sqlx::query("DELETE FROM identity_members WHERE attacker_ip = ? AND identity_id = ?")
                    .bind(ip)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE attackers SET identity_id = NULL WHERE ip = ?").bind(ip).execute(&mut *tx).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
