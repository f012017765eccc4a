//! Which subscribers want a topic: a token trie in the style of
//! nats-server's `sublist`.
//!
//! Each pattern is stored along its tokens: literal tokens as keyed
//! children, `*` as one wildcard child, and a trailing `>` as a list on the
//! node where it stands. Matching a topic walks only the branches that can
//! match it (the literal child for the token, plus the `*` child, plus any
//! `>` lists passed on the way), so the cost of a publish grows with the
//! number of *matching* paths, not with the number of subscriptions.
//!
//! On top sits a result cache keyed by topic, because a fleet publishes
//! the same few hundred topics over and over. Any SUB/UNSUB clears it:
//! subscriptions change rarely (worker start-up) compared with publishes,
//! and a full clear is trivially correct where selective invalidation is
//! a known source of bugs.
//!
//! A subscriber (key `K`, a connection id in the daemon) appears at most
//! once in a result, however many of its patterns match: the daemon sends
//! one EVT per connection and the client fans it out locally.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// Entries kept in the result cache before it is cleared wholesale.
const CACHE_LIMIT: usize = 4096;

#[derive(Debug)]
struct Node<K> {
    literal: HashMap<Box<str>, Node<K>>,
    star: Option<Box<Node<K>>>,
    /// Subscribers whose pattern ends exactly here.
    here: Vec<K>,
    /// Subscribers whose pattern is `<path to here>.>`.
    tail: Vec<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node { literal: HashMap::new(), star: None, here: Vec::new(), tail: Vec::new() }
    }
}

impl<K: Copy + Eq> Node<K> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.here.is_empty() && self.tail.is_empty()
    }

    fn collect(&self, tokens: &[&str], out: &mut Vec<K>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.extend_from_slice(&self.here);
            return;
        };
        // At least one token remains, so a `>` standing here matches.
        out.extend_from_slice(&self.tail);
        if let Some(child) = self.literal.get(*first) {
            child.collect(rest, out);
        }
        if let Some(child) = &self.star {
            child.collect(rest, out);
        }
    }

    fn insert(&mut self, tokens: &[&str], key: K) {
        match tokens.split_first() {
            None => self.here.push(key),
            Some((&">", [])) => self.tail.push(key),
            Some((&"*", rest)) => self.star.get_or_insert_with(Default::default).insert(rest, key),
            Some((tok, rest)) => self.literal.entry((*tok).into()).or_default().insert(rest, key),
        }
    }

    /// Remove `key` from the pattern's node and prune nodes left empty.
    fn remove(&mut self, tokens: &[&str], key: K) {
        fn drop_key<K: Eq>(v: &mut Vec<K>, key: &K) {
            if let Some(i) = v.iter().position(|k| k == key) {
                v.swap_remove(i);
            }
        }
        match tokens.split_first() {
            None => drop_key(&mut self.here, &key),
            Some((&">", [])) => drop_key(&mut self.tail, &key),
            Some((&"*", rest)) => {
                if let Some(child) = &mut self.star {
                    child.remove(rest, key);
                    if child.is_empty() {
                        self.star = None;
                    }
                }
            }
            Some((tok, rest)) => {
                if let Some(child) = self.literal.get_mut(*tok) {
                    child.remove(rest, key);
                    if child.is_empty() {
                        self.literal.remove(*tok);
                    }
                }
            }
        }
    }
}

/// Pattern subscriptions per subscriber key, matched against topics.
#[derive(Debug)]
pub struct SubscriptionIndex<K> {
    root: Node<K>,
    patterns: HashMap<K, HashSet<Box<str>>>,
    count: usize,
    cache: HashMap<Box<str>, Arc<[K]>>,
}

impl<K: Copy + Eq + Hash + Ord> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash + Ord> SubscriptionIndex<K> {
    pub fn new() -> Self {
        SubscriptionIndex { root: Node::default(), patterns: HashMap::new(), count: 0, cache: HashMap::new() }
    }

    /// Add `pattern` for `key`. Returns false if it was already there (a
    /// repeated SUB is idempotent). The pattern must already be validated.
    pub fn insert(&mut self, key: K, pattern: &str) -> bool {
        if !self.patterns.entry(key).or_default().insert(pattern.into()) {
            return false;
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        self.root.insert(&tokens, key);
        self.count += 1;
        self.cache.clear();
        true
    }

    /// Remove `pattern` for `key`. Returns false if it was not there.
    pub fn remove(&mut self, key: K, pattern: &str) -> bool {
        let Some(set) = self.patterns.get_mut(&key) else { return false };
        if !set.remove(pattern) {
            return false;
        }
        if set.is_empty() {
            self.patterns.remove(&key);
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        self.root.remove(&tokens, key);
        self.count -= 1;
        self.cache.clear();
        true
    }

    /// Remove every pattern of `key` (its connection closed). Returns how many.
    pub fn remove_key(&mut self, key: K) -> usize {
        let Some(set) = self.patterns.remove(&key) else { return 0 };
        for pattern in &set {
            let tokens: Vec<&str> = pattern.split('.').collect();
            self.root.remove(&tokens, key);
        }
        self.count -= set.len();
        self.cache.clear();
        set.len()
    }

    /// Every key with at least one pattern matching `topic`, each once, sorted.
    pub fn lookup(&mut self, topic: &str) -> Arc<[K]> {
        if let Some(hit) = self.cache.get(topic) {
            return hit.clone();
        }
        let result = self.lookup_uncached(topic);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(topic.into(), result.clone());
        result
    }

    /// Same as [`lookup`](Self::lookup) without touching the cache.
    pub fn lookup_uncached(&self, topic: &str) -> Arc<[K]> {
        let tokens: Vec<&str> = topic.split('.').collect();
        let mut out = Vec::new();
        self.root.collect(&tokens, &mut out);
        out.sort_unstable();
        out.dedup();
        out.into()
    }

    /// Number of (key, pattern) subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the trie holds no nodes beyond the root (used to check pruning).
    pub fn is_pruned(&self) -> bool {
        self.root.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::pattern_matches;
    use proptest::prelude::*;

    #[test]
    fn basic_routes() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1u32, "topology.>");
        idx.insert(2, "topology.*.status");
        idx.insert(3, "decky.d1.state");
        idx.insert(3, "decky.*.state");
        assert_eq!(&*idx.lookup("topology.t1.status"), &[1, 2]);
        assert_eq!(&*idx.lookup("topology"), &[] as &[u32]);
        assert_eq!(&*idx.lookup("decky.d1.state"), &[3], "one entry per key");
        assert_eq!(idx.len(), 4);
    }

    #[test]
    fn cache_is_invalidated_by_sub_and_unsub() {
        let mut idx = SubscriptionIndex::new();
        assert!(idx.lookup("a.b").is_empty());
        idx.insert(7u32, "a.*");
        assert_eq!(&*idx.lookup("a.b"), &[7]);
        idx.remove(7, "a.*");
        assert!(idx.lookup("a.b").is_empty());
    }

    #[test]
    fn removal_prunes_and_counts() {
        let mut idx = SubscriptionIndex::new();
        assert!(idx.insert(1u32, "a.b.c"));
        assert!(!idx.insert(1, "a.b.c"));
        idx.insert(1, "a.*.>");
        idx.insert(2, ">");
        assert_eq!(idx.len(), 3);
        assert!(!idx.remove(2, "a.b.c"));
        assert_eq!(idx.remove_key(1), 2);
        assert!(idx.remove(2, ">"));
        assert!(idx.is_empty());
        assert!(idx.is_pruned());
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("c".to_string())]
    }

    fn pattern() -> impl Strategy<Value = String> {
        (proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 0..4), any::<bool>()).prop_map(
            |(mut toks, tail)| {
                if tail || toks.is_empty() {
                    toks.push(">".into());
                }
                toks.join(".")
            },
        )
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    proptest! {
        /// The trie answers exactly what the naive matcher answers, through
        /// any interleaving of subscribe, unsubscribe and lookups (cached or not).
        #[test]
        fn agrees_with_naive_matcher(
            ops in proptest::collection::vec((0u8..4, 0u32..6, pattern()), 1..60),
            topics in proptest::collection::vec(topic(), 1..20),
        ) {
            let mut idx = SubscriptionIndex::new();
            let mut reference: HashSet<(u32, String)> = HashSet::new();
            for (op, key, pat) in ops {
                match op {
                    0 | 1 => { prop_assert_eq!(idx.insert(key, &pat), reference.insert((key, pat.clone()))); }
                    2 => { prop_assert_eq!(idx.remove(key, &pat), reference.remove(&(key, pat.clone()))); }
                    _ => {
                        let n = reference.iter().filter(|(k, _)| *k == key).count();
                        reference.retain(|(k, _)| *k != key);
                        prop_assert_eq!(idx.remove_key(key), n);
                    }
                }
                for t in &topics {
                    let mut want: Vec<u32> = reference.iter().filter(|(_, p)| pattern_matches(p, t)).map(|(k, _)| *k).collect();
                    want.sort_unstable();
                    want.dedup();
                    prop_assert_eq!(&*idx.lookup(t), &want[..], "topic {}", t);
                }
                prop_assert_eq!(idx.len(), reference.len());
            }
            if reference.is_empty() {
                prop_assert!(idx.is_pruned());
            }
        }
    }
}
