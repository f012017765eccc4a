//! The clustering fold: (current identities, fingerprint observations) →
//! (new identities, what changed). Pure, so every rule below is a unit test.
//!
//! Attackers sharing a strong fingerprint hash are linked (union-find);
//! each connected group of ≥ 2 attackers is one identity. Matching the new
//! groups to the stored identities keeps ids stable:
//!
//! - a group touching no identity → a new id, `identity.formed`;
//! - a group touching one identity keeps its id; attackers new to any
//!   identity → `identity.observation.linked` each;
//! - a group touching several → the lowest id survives, the others are
//!   folded into it, `identity.merged`;
//! - an identity whose members no longer link (a fingerprint changed) →
//!   `identity.unmerged` for the members that left it, naming where they
//!   went (`into`, or null when they are on their own now). The
//!   part that keeps the old id is the one holding most of its members.
//!
//! The same input twice gives the same state and no events (idempotent).

use std::collections::{BTreeMap, BTreeSet};

use decnet_bus::identity::ClusterResult;
use serde_json::json;

/// Fingerprint kinds that identify a tool/host well enough to link on.
/// Passive OS/TCP fingerprints and banners are shared by too many hosts.
pub const STRONG_KINDS: &[&str] = &["jarm", "hassh", "ja3", "tls_client_hello", "tls_certificate"];

/// One attacker seen with one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observation {
    pub ip: String,
    pub kind: String,
    pub hash: String,
}

impl Observation {
    pub fn new(ip: &str, kind: &str, hash: &str) -> Self {
        Observation { ip: ip.into(), kind: kind.into(), hash: hash.into() }
    }
    fn key(&self) -> String {
        format!("{}:{}", self.kind, self.hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub members: BTreeSet<String>,
    /// `kind:hash` values shared by ≥ 2 members (what links them).
    pub fingerprints: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub identities: BTreeMap<i64, Identity>,
    /// The next id to hand out (ids are never reused).
    pub next_id: i64,
}

impl ClusterState {
    pub fn identity_of(&self, ip: &str) -> Option<i64> {
        self.identities.iter().find(|(_, i)| i.members.contains(ip)).map(|(id, _)| *id)
    }
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind { parent: (0..n).collect() }
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller index is the root: deterministic whatever the order.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// Groups of ≥ 2 attackers linked by a shared strong fingerprint, with the
/// fingerprints that link them; sorted by their first member.
pub fn groups(observations: &[Observation]) -> Vec<Identity> {
    let ips: Vec<&str> = observations
        .iter()
        .filter(|o| STRONG_KINDS.contains(&o.kind.as_str()) && !o.hash.is_empty())
        .map(|o| o.ip.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = ips.iter().enumerate().map(|(i, ip)| (*ip, i)).collect();
    let mut by_key: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for o in observations {
        if let Some(&i) = index.get(o.ip.as_str()) {
            if STRONG_KINDS.contains(&o.kind.as_str()) && !o.hash.is_empty() {
                by_key.entry(o.key()).or_default().insert(i);
            }
        }
    }
    let mut uf = UnionFind::new(ips.len());
    for members in by_key.values() {
        let mut it = members.iter();
        if let Some(&first) = it.next() {
            for &other in it {
                uf.union(first, other);
            }
        }
    }
    let mut comps: BTreeMap<usize, Identity> = BTreeMap::new();
    for (i, ip) in ips.iter().enumerate() {
        let root = uf.find(i);
        comps
            .entry(root)
            .or_insert_with(|| Identity { members: BTreeSet::new(), fingerprints: BTreeSet::new() })
            .members
            .insert(ip.to_string());
    }
    for (key, members) in &by_key {
        if members.len() >= 2 {
            let root = uf.find(*members.iter().next().unwrap_or(&0));
            if let Some(c) = comps.get_mut(&root) {
                c.fingerprints.insert(key.clone());
            }
        }
    }
    comps.into_values().filter(|c| c.members.len() >= 2).collect()
}

/// Fold `observations` into `state`: the new state and the events to publish.
pub fn fold(state: &ClusterState, observations: &[Observation]) -> (ClusterState, ClusterResult) {
    let old_of: BTreeMap<&str, i64> =
        state.identities.iter().flat_map(|(id, i)| i.members.iter().map(move |m| (m.as_str(), *id))).collect();
    let mut comps: Vec<(Identity, Vec<(i64, usize)>)> = groups(observations)
        .into_iter()
        .map(|c| {
            let mut overlap: BTreeMap<i64, usize> = BTreeMap::new();
            for m in &c.members {
                if let Some(id) = old_of.get(m.as_str()) {
                    *overlap.entry(*id).or_default() += 1;
                }
            }
            (c, overlap.into_iter().collect())
        })
        .collect();
    // Groups holding an old identity's largest share choose first, so the
    // biggest remaining piece of a split keeps the id.
    comps.sort_by(|(a, ca), (b, cb)| {
        let key = |c: &Vec<(i64, usize)>| c.first().map(|(id, n)| (*id, usize::MAX - n)).unwrap_or((i64::MAX, 0));
        key(ca).cmp(&key(cb)).then_with(|| a.members.iter().next().cmp(&b.members.iter().next()))
    });

    let mut next = state.next_id.max(state.identities.keys().next_back().map_or(1, |k| k + 1)).max(1);
    let mut taken: BTreeSet<i64> = BTreeSet::new();
    let mut result = ClusterResult::default();
    let mut new_state = ClusterState::default();
    // (old id, new id or None) → members that moved.
    let mut moved: BTreeMap<(i64, Option<i64>), Vec<String>> = BTreeMap::new();

    for (comp, candidates) in comps {
        let free: Vec<i64> = candidates.iter().map(|(id, _)| *id).filter(|id| !taken.contains(id)).collect();
        let (id, fresh) = match free.first() {
            Some(&survivor) => (survivor, false),
            None => {
                next += 1;
                (next - 1, true)
            }
        };
        taken.insert(id);
        let absorbed: Vec<i64> = free.iter().copied().filter(|o| *o != id).collect();
        taken.extend(absorbed.iter().copied());
        let members: Vec<&String> = comp.members.iter().collect();
        let fingerprints: Vec<&String> = comp.fingerprints.iter().collect();
        if fresh {
            result.formed.push(json!({"identity": id, "members": members, "fingerprints": fingerprints}));
        }
        if !absorbed.is_empty() {
            result.merged.push(json!({
                "into": id, "from": absorbed, "members": members, "fingerprints": fingerprints,
            }));
        }
        for m in &comp.members {
            match old_of.get(m.as_str()) {
                None if !fresh => result.linked.push(json!({
                    "identity": id, "observation": m, "fingerprints": fingerprints,
                })),
                Some(o) if *o != id && !absorbed.contains(o) => {
                    moved.entry((*o, Some(id))).or_default().push(m.clone())
                }
                _ => {}
            }
        }
        new_state.identities.insert(id, comp);
    }
    // Members of an old identity that are in no group any more.
    for (id, identity) in &state.identities {
        for m in &identity.members {
            if !new_state.identities.values().any(|i| i.members.contains(m)) {
                moved.entry((*id, None)).or_default().push(m.clone());
            }
        }
    }
    for ((from, to), released) in moved {
        let remaining: Vec<&String> =
            new_state.identities.get(&from).map(|i| i.members.iter().collect()).unwrap_or_default();
        result.unmerged.push(json!({
            "identity": from, "released": released, "into": to, "remaining": remaining,
        }));
    }
    new_state.next_id = next;
    (new_state, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(list: &[(&str, &str, &str)]) -> Vec<Observation> {
        list.iter().map(|(ip, k, h)| Observation::new(ip, k, h)).collect()
    }

    fn members(state: &ClusterState, id: i64) -> Vec<&str> {
        state.identities[&id].members.iter().map(String::as_str).collect()
    }

    #[test]
    fn shared_strong_fingerprint_forms_one_identity_and_rerun_is_silent() {
        let o = obs(&[("10.0.0.1", "hassh", "h1"), ("10.0.0.2", "hassh", "h1"), ("10.0.0.3", "hassh", "other")]);
        let (s1, r1) = fold(&ClusterState::default(), &o);
        assert_eq!(r1.formed.len(), 1);
        assert_eq!(r1.event_count(), 1);
        assert_eq!(r1.formed[0]["identity"], 1);
        assert_eq!(r1.formed[0]["fingerprints"], json!(["hassh:h1"]));
        assert_eq!(members(&s1, 1), ["10.0.0.1", "10.0.0.2"]);
        let (s2, r2) = fold(&s1, &o);
        assert!(r2.is_empty(), "{r2:?}");
        assert_eq!(s2, s1);
    }

    #[test]
    fn weak_kinds_and_empty_hashes_never_link() {
        let o = obs(&[
            ("10.0.0.1", "tcpfp", "linux"),
            ("10.0.0.2", "tcpfp", "linux"),
            ("10.0.0.1", "ssh_client_banner", "OpenSSH_9"),
            ("10.0.0.2", "ssh_client_banner", "OpenSSH_9"),
            ("10.0.0.1", "jarm", ""),
            ("10.0.0.2", "jarm", ""),
        ]);
        let (s, r) = fold(&ClusterState::default(), &o);
        assert!(r.is_empty() && s.identities.is_empty());
    }

    #[test]
    fn transitive_links_through_different_kinds() {
        let o = obs(&[
            ("10.0.0.1", "ja3", "j"),
            ("10.0.0.2", "ja3", "j"),
            ("10.0.0.2", "tls_certificate", "c"),
            ("10.0.0.3", "tls_certificate", "c"),
        ]);
        let (s, _) = fold(&ClusterState::default(), &o);
        assert_eq!(members(&s, 1), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn a_newcomer_is_linked_to_the_existing_identity() {
        let base = obs(&[("10.0.0.1", "jarm", "x"), ("10.0.0.2", "jarm", "x")]);
        let (s1, _) = fold(&ClusterState::default(), &base);
        let mut more = base.clone();
        more.push(Observation::new("10.0.0.9", "jarm", "x"));
        let (s2, r) = fold(&s1, &more);
        assert_eq!((r.formed.len(), r.linked.len(), r.merged.len(), r.unmerged.len()), (0, 1, 0, 0));
        assert_eq!(r.linked[0]["observation"], "10.0.0.9");
        assert_eq!(r.linked[0]["identity"], 1);
        assert_eq!(members(&s2, 1).len(), 3);
    }

    #[test]
    fn bridging_two_identities_merges_into_the_lowest_id() {
        let o = obs(&[
            ("10.0.0.1", "hassh", "a"),
            ("10.0.0.2", "hassh", "a"),
            ("10.0.0.3", "jarm", "b"),
            ("10.0.0.4", "jarm", "b"),
        ]);
        let (s1, r1) = fold(&ClusterState::default(), &o);
        assert_eq!(r1.formed.len(), 2);
        let mut bridged = o.clone();
        bridged.push(Observation::new("10.0.0.2", "jarm", "b"));
        let (s2, r2) = fold(&s1, &bridged);
        assert_eq!(r2.merged.len(), 1, "{r2:?}");
        assert_eq!(r2.merged[0]["into"], 1);
        assert_eq!(r2.merged[0]["from"], json!([2]));
        assert!(r2.formed.is_empty() && r2.unmerged.is_empty() && r2.linked.is_empty());
        assert_eq!(s2.identities.len(), 1);
        assert_eq!(members(&s2, 1).len(), 4);
        assert!(fold(&s2, &bridged).1.is_empty(), "idempotent after a merge");
    }

    #[test]
    fn a_merge_that_no_longer_holds_is_unmerged_and_ids_are_not_reused() {
        let bridged = obs(&[
            ("10.0.0.1", "hassh", "a"),
            ("10.0.0.2", "hassh", "a"),
            ("10.0.0.2", "jarm", "b"),
            ("10.0.0.3", "jarm", "b"),
            ("10.0.0.4", "jarm", "b"),
        ]);
        let (s1, _) = fold(&ClusterState::default(), &bridged);
        assert_eq!(s1.identities.len(), 1);
        // 10.0.0.2's JARM changed: the bridge is gone.
        let split = obs(&[
            ("10.0.0.1", "hassh", "a"),
            ("10.0.0.2", "hassh", "a"),
            ("10.0.0.2", "jarm", "rotated"),
            ("10.0.0.3", "jarm", "b"),
            ("10.0.0.4", "jarm", "b"),
        ]);
        let (s2, r) = fold(&s1, &split);
        assert_eq!(s2.identities.len(), 2);
        assert_eq!(r.unmerged.len(), 1, "{r:?}");
        let u = &r.unmerged[0];
        assert_eq!(u["identity"], 1);
        assert_eq!(r.formed.len(), 1, "the split-off piece is a new identity");
        let new_id = r.formed[0]["identity"].as_i64().unwrap();
        assert!(new_id > 1);
        assert_eq!(u["into"], new_id);
        // Both pieces hold two members; the one with the lower first member
        // keeps id 1 on a tie.
        assert_eq!(members(&s2, 1), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(u["released"], json!(["10.0.0.3", "10.0.0.4"]));
        assert!(fold(&s2, &split).1.is_empty());
    }

    #[test]
    fn a_member_left_alone_is_released_with_no_new_identity() {
        let o = obs(&[("10.0.0.1", "hassh", "a"), ("10.0.0.2", "hassh", "a"), ("10.0.0.3", "hassh", "a")]);
        let (s1, _) = fold(&ClusterState::default(), &o);
        let o2 = obs(&[("10.0.0.1", "hassh", "a"), ("10.0.0.2", "hassh", "a"), ("10.0.0.3", "hassh", "z")]);
        let (s2, r) = fold(&s1, &o2);
        assert_eq!(r.unmerged.len(), 1);
        assert_eq!(r.unmerged[0]["released"], json!(["10.0.0.3"]));
        assert_eq!(r.unmerged[0]["into"], serde_json::Value::Null);
        assert_eq!(members(&s2, 1), ["10.0.0.1", "10.0.0.2"]);
        // Dissolving entirely: the identity goes away, every member released.
        let (s3, r3) = fold(&s2, &[]);
        assert!(s3.identities.is_empty());
        assert_eq!(r3.unmerged[0]["released"], json!(["10.0.0.1", "10.0.0.2"]));
        assert!(s3.next_id > 1, "id 1 is never handed out again");
    }
}
