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
//! Nodes are kept small because a client controls how many exist: the
//! children of a node are a short vector (most nodes have one or two) that
//! becomes a hash map only past [`SMALL_CHILDREN`], and the subscriber lists
//! are boxed away when empty. A node costs about 100 bytes instead of the
//! ~500 of a `HashMap` per node; nodes are freed as soon as the last
//! pattern through them goes, and [`SubscriptionIndex::node_count`] says
//! how many there are.
//!
//! On top sits a result cache keyed by topic, because a fleet publishes
//! the same few hundred topics over and over. Like sublist's, it is kept
//! up to date selectively instead of being cleared: a SUB adds its key to
//! the cached topics the pattern matches, an UNSUB evicts only the topics
//! the pattern matched, a disconnect only those that held the key. A hit
//! takes only a read lock on the cache, so lookups never serialise behind
//! each other; writers to the trie already hold `&mut self`.
//!
//! A subscriber (key `K`, a connection id in the daemon) appears at most
//! once in a result, however many of its patterns match: the daemon sends
//! one EVT per connection and the client fans it out locally.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use crate::topic::pattern_matches;

/// Entries kept in the result cache before it is cleared wholesale.
const CACHE_LIMIT: usize = 4096;
/// Children kept in a vector (linear search) before switching to a map.
const SMALL_CHILDREN: usize = 8;

#[derive(Debug)]
enum Children<K> {
    Small(Vec<(Box<str>, Node<K>)>),
    // Boxed on purpose: a bare HashMap (48 bytes with its hasher) would
    // double the size of every node, and only wide nodes have one.
    #[allow(clippy::box_collection)]
    Map(Box<HashMap<Box<str>, Node<K>>>),
}

#[derive(Debug)]
struct Node<K> {
    literal: Children<K>,
    star: Option<Box<Node<K>>>,
    /// Subscribers whose pattern ends here, and whose pattern is `<path>.>`.
    subs: Option<Box<Subs<K>>>,
}

#[derive(Debug)]
struct Subs<K> {
    here: Vec<K>,
    tail: Vec<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node { literal: Children::Small(Vec::new()), star: None, subs: None }
    }
}

impl<K> Children<K> {
    fn get(&self, tok: &str) -> Option<&Node<K>> {
        match self {
            Children::Small(v) => v.iter().find(|(t, _)| &**t == tok).map(|(_, n)| n),
            Children::Map(m) => m.get(tok),
        }
    }

    fn get_mut(&mut self, tok: &str) -> Option<&mut Node<K>> {
        match self {
            Children::Small(v) => v.iter_mut().find(|(t, _)| &**t == tok).map(|(_, n)| n),
            Children::Map(m) => m.get_mut(tok),
        }
    }

    /// The child for `tok`, created if missing; the flag says it was.
    fn get_or_insert(&mut self, tok: &str) -> (&mut Node<K>, bool) {
        if let Children::Small(v) = self {
            if v.len() >= SMALL_CHILDREN && !v.iter().any(|(t, _)| &**t == tok) {
                let map: HashMap<_, _> = std::mem::take(v).into_iter().collect();
                *self = Children::Map(Box::new(map));
            }
        }
        match self {
            Children::Small(v) => match v.iter().position(|(t, _)| &**t == tok) {
                Some(i) => (&mut v[i].1, false),
                None => {
                    v.push((tok.into(), Node::default()));
                    v.shrink_to_fit();
                    let last = v.len() - 1;
                    (&mut v[last].1, true)
                }
            },
            Children::Map(m) => {
                let mut created = false;
                let node = m.entry(tok.into()).or_insert_with(|| {
                    created = true;
                    Node::default()
                });
                (node, created)
            }
        }
    }

    fn remove(&mut self, tok: &str) {
        match self {
            Children::Small(v) => {
                if let Some(i) = v.iter().position(|(t, _)| &**t == tok) {
                    v.swap_remove(i);
                    v.shrink_to_fit();
                }
            }
            Children::Map(m) => {
                m.remove(tok);
                if m.len() <= SMALL_CHILDREN / 2 {
                    let small: Vec<_> = std::mem::take(&mut **m).into_iter().collect();
                    *self = Children::Small(small);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Small(v) => v.is_empty(),
            Children::Map(m) => m.is_empty(),
        }
    }
}

impl<K: Copy + Eq> Node<K> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.subs.is_none()
    }

    /// Append matching keys to `out`; returns the nodes visited (the work done).
    fn collect(&self, tokens: &[&str], out: &mut Vec<K>) -> usize {
        let Some((first, rest)) = tokens.split_first() else {
            if let Some(s) = &self.subs {
                push_keys(out, &s.here);
            }
            return 1;
        };
        // At least one token remains, so a `>` standing here matches.
        if let Some(s) = &self.subs {
            push_keys(out, &s.tail);
        }
        let mut visited = 1;
        if let Some(child) = self.literal.get(first) {
            visited += child.collect(rest, out);
        }
        if let Some(child) = &self.star {
            visited += child.collect(rest, out);
        }
        visited
    }

    fn subs_mut(&mut self) -> &mut Subs<K> {
        self.subs.get_or_insert_with(|| Box::new(Subs { here: Vec::new(), tail: Vec::new() }))
    }

    /// Returns the nodes created.
    fn insert(&mut self, tokens: &[&str], key: K) -> usize {
        match tokens.split_first() {
            None => {
                self.subs_mut().here.push(key);
                0
            }
            Some((&">", [])) => {
                self.subs_mut().tail.push(key);
                0
            }
            Some((&"*", rest)) => {
                let created = usize::from(self.star.is_none());
                created + self.star.get_or_insert_with(Default::default).insert(rest, key)
            }
            Some((tok, rest)) => {
                let (child, created) = self.literal.get_or_insert(tok);
                usize::from(created) + child.insert(rest, key)
            }
        }
    }

    /// Remove `key` from the pattern's node and prune nodes left empty.
    /// Returns the nodes freed.
    fn remove(&mut self, tokens: &[&str], key: K) -> usize {
        fn drop_key<K: Eq>(v: &mut Vec<K>, key: &K) {
            if let Some(i) = v.iter().position(|k| k == key) {
                v.swap_remove(i);
                v.shrink_to_fit();
            }
        }
        match tokens.split_first() {
            None | Some((&">", [])) => {
                if let Some(s) = &mut self.subs {
                    drop_key(if tokens.is_empty() { &mut s.here } else { &mut s.tail }, &key);
                    if s.here.is_empty() && s.tail.is_empty() {
                        self.subs = None;
                    }
                }
                0
            }
            Some((&"*", rest)) => {
                let Some(child) = &mut self.star else { return 0 };
                let mut freed = child.remove(rest, key);
                if child.is_empty() {
                    self.star = None;
                    freed += 1;
                }
                freed
            }
            Some((tok, rest)) => {
                let Some(child) = self.literal.get_mut(tok) else { return 0 };
                let mut freed = child.remove(rest, key);
                if child.is_empty() {
                    self.literal.remove(tok);
                    freed += 1;
                }
                freed
            }
        }
    }
}

/// Pattern subscriptions per subscriber key, matched against topics.
#[derive(Debug)]
pub struct SubscriptionIndex<K> {
    root: Node<K>,
    patterns: HashMap<K, HashSet<Box<str>>>,
    /// Pattern tokens each key holds: what its patterns may cost in trie
    /// nodes, the measure of its fair share (see the daemon's limits).
    tokens: HashMap<K, usize>,
    count: usize,
    nodes: usize,
    cache: RwLock<HashMap<Box<str>, Arc<[K]>>>,
}

/// A key whose patterns are being removed a slice at a time (see
/// [`SubscriptionIndex::retire`]).
#[derive(Debug)]
pub struct Retiring<K> {
    key: K,
    /// Patterns whose trie paths are not freed yet.
    patterns: Vec<Box<str>>,
}

impl<K> Retiring<K> {
    pub fn is_done(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Patterns still to free.
    pub fn remaining(&self) -> usize {
        self.patterns.len()
    }
}

impl<K: Copy + Eq + Hash + Ord> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash + Ord> SubscriptionIndex<K> {
    pub fn new() -> Self {
        SubscriptionIndex {
            root: Node::default(),
            patterns: HashMap::new(),
            tokens: HashMap::new(),
            count: 0,
            nodes: 0,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn cache_mut(&mut self) -> &mut HashMap<Box<str>, Arc<[K]>> {
        self.cache.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `pattern` for `key`. Returns false if it was already there (a
    /// repeated SUB is idempotent). The pattern must already be validated.
    pub fn insert(&mut self, key: K, pattern: &str) -> bool {
        self.insert_counted(key, pattern).0
    }

    /// [`insert`](Self::insert), also returning the work it cost (tokens
    /// walked plus cached topics examined), so the daemon can charge a SUB
    /// for what it really costs instead of a flat price.
    pub fn insert_counted(&mut self, key: K, pattern: &str) -> (bool, usize) {
        if !self.patterns.entry(key).or_default().insert(pattern.into()) {
            return (false, 1);
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        self.nodes += self.root.insert(&tokens, key);
        self.count += 1;
        *self.tokens.entry(key).or_default() += tokens.len();
        // Selective update: the topics this pattern matches gain the key.
        let cache = self.cache_mut();
        let examined = cache.len();
        for (topic, keys) in cache.iter_mut() {
            if pattern_matches(pattern, topic) {
                if let Err(at) = keys.binary_search(&key) {
                    let mut v = keys.to_vec();
                    v.insert(at, key);
                    *keys = v.into();
                }
            }
        }
        (true, tokens.len() + examined)
    }

    /// Remove `pattern` for `key`. Returns false if it was not there.
    pub fn remove(&mut self, key: K, pattern: &str) -> bool {
        self.remove_counted(key, pattern).0
    }

    /// [`remove`](Self::remove), also returning the work it cost (as for
    /// [`insert_counted`](Self::insert_counted)).
    pub fn remove_counted(&mut self, key: K, pattern: &str) -> (bool, usize) {
        let Some(set) = self.patterns.get_mut(&key) else { return (false, 1) };
        if !set.remove(pattern) {
            return (false, 1);
        }
        if set.is_empty() {
            self.patterns.remove(&key);
        }
        let tokens: Vec<&str> = pattern.split('.').collect();
        if let Some(held) = self.tokens.get_mut(&key) {
            *held -= tokens.len();
            if *held == 0 {
                self.tokens.remove(&key);
            }
        }
        self.nodes -= self.root.remove(&tokens, key);
        self.count -= 1;
        // The key may still match these topics through another pattern:
        // evict them (recomputed on next use) rather than guess.
        let cache = self.cache_mut();
        let examined = cache.len();
        cache.retain(|topic, keys| !(pattern_matches(pattern, topic) && keys.binary_search(&key).is_ok()));
        (true, tokens.len() + examined)
    }

    /// Remove every pattern of `key` (its connection closed). Returns how many.
    pub fn remove_key(&mut self, key: K) -> usize {
        let mut retiring = self.retire(key);
        let n = retiring.remaining();
        while !retiring.is_done() {
            self.retire_step(&mut retiring, usize::MAX);
        }
        n
    }

    /// Start removing every pattern of `key` without doing all the work at
    /// once: a connection may hold 10,000 patterns of 200 tokens, and
    /// freeing a million trie nodes in one go holds the routing thread for
    /// tens of milliseconds. The key's patterns are taken out of its set
    /// now (so it holds none and may not subscribe again under this key);
    /// the trie paths are freed by [`retire_step`](Self::retire_step), a
    /// bounded slice at a time. Until the last step, a lookup may still
    /// return `key`: the caller must already ignore it (the daemon has
    /// forgotten the connection first). [`len`](Self::len) and
    /// [`node_count`](Self::node_count) count the patterns still in the
    /// trie, so they reach their final values together.
    pub fn retire(&mut self, key: K) -> Retiring<K> {
        let patterns = self.patterns.remove(&key).map(|set| set.into_iter().collect()).unwrap_or_default();
        self.tokens.remove(&key);
        self.evict_key(key);
        Retiring { key, patterns }
    }

    /// Free the trie paths of a retiring key until about `budget` work
    /// (tokens) is done; returns the work done. When the last path goes,
    /// cached results that picked the key up meanwhile are evicted.
    pub fn retire_step(&mut self, retiring: &mut Retiring<K>, budget: usize) -> usize {
        let mut work = 0;
        while work < budget {
            let Some(pattern) = retiring.patterns.pop() else { break };
            let tokens: Vec<&str> = pattern.split('.').collect();
            self.nodes -= self.root.remove(&tokens, retiring.key);
            self.count -= 1;
            work += tokens.len();
        }
        if retiring.patterns.is_empty() {
            work += self.evict_key(retiring.key);
            retiring.patterns = Vec::new(); // give the list's memory back now
        }
        work
    }

    /// Drop cached results holding `key`; returns the entries examined.
    fn evict_key(&mut self, key: K) -> usize {
        let cache = self.cache_mut();
        let examined = cache.len();
        cache.retain(|_, keys| keys.binary_search(&key).is_err());
        examined
    }

    /// Every key with at least one pattern matching `topic`, each once, sorted.
    pub fn lookup(&self, topic: &str) -> Arc<[K]> {
        self.lookup_counted(topic).0
    }

    /// [`lookup`](Self::lookup), also returning the trie nodes visited (0 on
    /// a cache hit): the daemon charges that work to the publisher.
    pub fn lookup_counted(&self, topic: &str) -> (Arc<[K]>, usize) {
        if let Some(hit) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return (hit.clone(), 0);
        }
        let (result, visited) = self.walk(topic);
        // Filled under `&self`: no trie change can interleave, since those
        // need `&mut self`, so the entry cannot be stale.
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(topic.into(), result.clone());
        (result, visited)
    }

    /// Same as [`lookup`](Self::lookup) without touching the cache.
    pub fn lookup_uncached(&self, topic: &str) -> Arc<[K]> {
        self.walk(topic).0
    }

    fn walk(&self, topic: &str) -> (Arc<[K]>, usize) {
        let tokens: Vec<&str> = topic.split('.').collect();
        let mut out = Vec::new();
        let visited = self.root.collect(&tokens, &mut out);
        out.sort_unstable();
        out.dedup();
        (out.into(), visited + tokens.len())
    }

    /// Number of (key, pattern) subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Patterns `key` holds.
    pub fn len_of(&self, key: K) -> usize {
        self.patterns.get(&key).map_or(0, HashSet::len)
    }

    /// Pattern tokens `key` holds (the sum over its patterns).
    pub fn tokens_of(&self, key: K) -> usize {
        self.tokens.get(&key).copied().unwrap_or(0)
    }

    /// Whether `key` already holds `pattern`.
    pub fn contains(&self, key: K, pattern: &str) -> bool {
        self.patterns.get(&key).is_some_and(|s| s.contains(pattern))
    }

    /// Trie nodes below the root: what subscriptions cost in memory.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Whether the trie holds no nodes beyond the root (used to check pruning).
    pub fn is_pruned(&self) -> bool {
        self.root.is_empty() && self.nodes == 0
    }
}

/// Appends `keys` to a lookup's result, skipping a key equal to the last
/// one pushed. One connection holding thousands of overlapping wildcard
/// patterns (`x.*.x.>`, `*.x.*.>`, ...) matches a topic once per pattern;
/// without this the result grew to thousands of copies of one key that
/// `walk` then sorted and deduplicated, on the routing thread, for every
/// publish (the soak's `wildcards` load). The final sort + dedup still
/// removes the duplicates this cheap check cannot see.
fn push_keys<K: Copy + PartialEq>(out: &mut Vec<K>, keys: &[K]) {
    for &key in keys {
        if out.last() != Some(&key) {
            out.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_keys_skips_only_a_repeat_of_the_last_key() {
        let mut out = Vec::new();
        push_keys(&mut out, &[1, 1, 1]);
        assert_eq!(out, [1]);
        push_keys(&mut out, &[1, 2, 2]);
        assert_eq!(out, [1, 2]);
        // Not adjacent: kept here, removed by walk's final sort + dedup.
        push_keys(&mut out, &[1]);
        assert_eq!(out, [1, 2, 1]);
    }

    #[test]
    fn thousands_of_overlapping_patterns_of_one_key_match_once() {
        // The soak's `wildcards` load: every x-or-* pattern 8 deep, all
        // held by connection 1, plus one pattern of connection 2.
        let mut index = SubscriptionIndex::new();
        for bits in 0..(1u32 << 8) {
            let tokens: Vec<&str> = (0..8).map(|i| if bits >> i & 1 == 1 { "*" } else { "x" }).collect();
            assert!(index.insert(1u32, &format!("{}.>", tokens.join("."))));
        }
        assert!(index.insert(2u32, "x.>"));
        assert_eq!(&*index.lookup_uncached("x.x.x.x.x.x.x.x.deep"), &[1, 2]);
        assert_eq!(&*index.lookup("x.x.x.x.x.x.x.x.deep"), &[1, 2]);
        assert_eq!(&*index.lookup_uncached("x.x.x.x.x.x.x.y.deep"), &[1, 2], "the * branches still match");
        assert_eq!(&*index.lookup_uncached("y.x.x.x.x.x.x.x.deep"), &[1]);
        assert_eq!(&*index.lookup_uncached("x.x.x"), &[2], "too short for connection 1's 9-token patterns");
    }

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

    #[test]
    fn node_count_returns_to_baseline_after_removal() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1u32, "system.*.health");
        let baseline = idx.node_count();
        assert_eq!(baseline, 3);
        // Wide and deep: enough literals under one node to switch it to a map.
        for i in 0..100 {
            idx.insert(2, &format!("system.w{i}.a.b.c"));
            idx.insert(3, &format!("deep.{i}.*.x.>"));
        }
        assert!(idx.node_count() > baseline + 500, "{}", idx.node_count());
        for i in 0..50 {
            assert!(idx.remove(2, &format!("system.w{i}.a.b.c")));
        }
        idx.remove_key(3);
        idx.remove_key(2);
        assert_eq!(idx.node_count(), baseline);
        assert_eq!(&*idx.lookup("system.x.health"), &[1]);
        idx.remove_key(1);
        assert!(idx.is_pruned());
    }

    #[test]
    fn cache_is_updated_selectively() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1u32, "a.*");
        assert_eq!(&*idx.lookup("a.b"), &[1]);
        assert_eq!(&*idx.lookup("c.d"), &[] as &[u32]);
        // A SUB adds to the matching cached topic and leaves the other be.
        idx.insert(2, "a.>");
        assert_eq!(idx.lookup_counted("a.b"), (Arc::from(&[1, 2][..]), 0), "updated in place, no walk");
        assert_eq!(idx.lookup_counted("c.d").1, 0, "unrelated entry kept");
        // An UNSUB evicts what it matched; key 2 is still there through a.*.
        idx.insert(2, "a.*");
        idx.remove(2, "a.>");
        let (keys, visited) = idx.lookup_counted("a.b");
        assert_eq!((&*keys, visited > 0), (&[1, 2][..], true));
        assert_eq!(idx.lookup_counted("c.d").1, 0);
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
        /// any interleaving of subscribe, unsubscribe, disconnect (at once
        /// or retired step by step) and lookups (cached or not).
        #[test]
        fn agrees_with_naive_matcher(
            ops in proptest::collection::vec((0u8..5, 0u32..6, pattern()), 1..60),
            topics in proptest::collection::vec(topic(), 1..20),
        ) {
            let mut idx = SubscriptionIndex::new();
            let mut reference: HashSet<(u32, String)> = HashSet::new();
            for (op, key, pat) in ops {
                match op {
                    0 | 1 => { prop_assert_eq!(idx.insert(key, &pat), reference.insert((key, pat.clone()))); }
                    2 => { prop_assert_eq!(idx.remove(key, &pat), reference.remove(&(key, pat.clone()))); }
                    3 => {
                        let n = reference.iter().filter(|(k, _)| *k == key).count();
                        reference.retain(|(k, _)| *k != key);
                        prop_assert_eq!(idx.remove_key(key), n);
                    }
                    _ => {
                        // Retired one pattern per step, with lookups (which
                        // fill the cache) between steps: in between, the
                        // answer is the reference's, plus possibly the key.
                        reference.retain(|(k, _)| *k != key);
                        let mut retiring = idx.retire(key);
                        while !retiring.is_done() {
                            idx.retire_step(&mut retiring, 1);
                            for t in &topics {
                                let mut want: Vec<u32> = reference.iter().filter(|(_, p)| pattern_matches(p, t)).map(|(k, _)| *k).collect();
                                let got: Vec<u32> = idx.lookup(t).iter().copied().filter(|k| *k != key).collect();
                                want.sort_unstable();
                                want.dedup();
                                prop_assert_eq!(got, want, "topic {} while retiring", t);
                            }
                        }
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
            // Every node counted is reachable: recount by removing everything.
            let keys: Vec<u32> = reference.iter().map(|(k, _)| *k).collect();
            for k in keys {
                idx.remove_key(k);
            }
            prop_assert!(idx.is_pruned());
            prop_assert_eq!(idx.node_count(), 0);
        }
    }
}
