//! What the module last did to a key, for `RETENTION.EXPLAIN`: "why did this key expire, or
//! vanish?" is the first question an operator asks.
//!
//! A fixed table of recent actions, each in the slot its key hashes to (database and an
//! FxHash of the name): no names are kept, memory is fixed (`SLOTS` × 48 bytes, 3 MB,
//! allocated at the first action), and recording is one hash, one pointer comparison and one
//! store. An action's rule is kept as its place in the policy, and shown only while the rules
//! in force are named as when it was taken (a reload may reorder them). Measured A/B
//! (1M keys given a TTL by one `RETENTION.SWEEP`, 5 rounds each, Redis 7.0): ~7% longer with
//! the table; with SipHash it was ~14%, with a map evicting oldest-first ~20%. FxHash is not
//! keyed: names crafted to collide could only make EXPLAIN show another key's action.
//! A key's entry lasts until another key's action lands in its slot: the most recent
//! actions are the ones remembered; EXPLAIN says when it remembers none. In memory only:
//! a restart forgets everything. `retention.explain-history no` records nothing and frees
//! the table, for operators who would rather have that back (~4% measured with the switch).

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::configuration::ConfigurationContext;

use rustc_hash::FxBuildHasher;

use crate::policy::Policy;

/// Slots of the table: about as many actions are remembered (fewer where keys share slots).
pub const SLOTS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A TTL was given to a key without one; it expires at this time (Unix ms).
    TtlSet { expire_at_ms: i64 },
    /// A longer TTL was lowered (`cap`, or `pressure.ttl`).
    TtlLowered { expire_at_ms: i64 },
    /// Entries were trimmed from the key.
    Trimmed { entries: u64 },
    /// The key was removed with its job: a finished job cleaned from its set, or an orphan.
    JobRemoved { orphan: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub at_ms: i64,
    /// The acting rule's place in the policy in force; None for a command's own action, and
    /// for an action under an earlier policy (a reload may have put another rule there).
    pub rule: Option<u32>,
    pub action: Action,
}

#[derive(Clone, Copy)]
struct Stored {
    db: i32,
    /// The policy the entry's rule index belongs to (see `Log::generation`).
    generation: u32,
    hash: u64,
    entry: Entry,
}

#[derive(Default)]
struct Log {
    slots: Vec<Option<Stored>>,
    /// Counts the policies seen: entries recorded under another one lose their rule index.
    generation: u32,
    /// The policy last seen, held weakly so that its address cannot be reused by a later
    /// policy, and its rules' names.
    policy: Weak<Policy>,
    rule_names: Vec<String>,
}

impl Log {
    /// The generation of `policy`: a new one when its rules are not named, place by place,
    /// as those of the policy last seen (reloading the same rules keeps the generation).
    fn generation(&mut self, policy: &Rc<Policy>) -> u32 {
        if !std::ptr::eq(self.policy.as_ptr(), Rc::as_ptr(policy)) {
            let names: Vec<String> = policy.rules.iter().map(|r| r.name.clone()).collect();
            if names != self.rule_names {
                self.generation = self.generation.wrapping_add(1);
                self.rule_names = names;
            }
            self.policy = Rc::downgrade(policy);
        }
        self.generation
    }

    fn place(&self, db: i32, name: &[u8]) -> (u64, usize) {
        let hash = FxBuildHasher.hash_one((db, name));
        (hash, (hash as usize) % SLOTS)
    }

    fn record(&mut self, db: i32, name: &[u8], entry: Entry, policy: &Rc<Policy>) {
        if self.slots.is_empty() {
            // Allocated at the first action: a module that never acts costs nothing.
            self.slots = vec![None; SLOTS];
        }
        let generation = self.generation(policy);
        let (hash, at) = self.place(db, name);
        self.slots[at] = Some(Stored {
            db,
            generation,
            hash,
            entry,
        });
    }

    fn last(&mut self, db: i32, name: &[u8], policy: &Rc<Policy>) -> Option<Entry> {
        let generation = self.generation(policy);
        let (hash, at) = self.place(db, name);
        let stored = self.slots.get(at).copied().flatten()?;
        if stored.db != db || stored.hash != hash {
            return None;
        }
        let mut entry = stored.entry;
        if stored.generation != generation {
            entry.rule = None;
        }
        Some(entry)
    }
}

thread_local! {
    // The server calls the module from its main thread only.
    static LOG: RefCell<Log> = RefCell::new(Log::default());
}

pub fn record(db: i32, name: &[u8], rule: Option<usize>, action: Action) {
    if !crate::config::explain_history() {
        return;
    }
    let entry = Entry {
        at_ms: crate::time::now_ms(),
        rule: rule.and_then(|r| u32::try_from(r).ok()),
        action,
    };
    crate::state::with_policy(|p| {
        LOG.with(|log| log.borrow_mut().record(db, name, entry, &p.policy))
    });
}

/// The latest remembered action on `name` in `db`.
pub fn last(db: i32, name: &[u8]) -> Option<Entry> {
    crate::state::with_policy(|p| LOG.with(|log| log.borrow_mut().last(db, name, &p.policy)))
}

/// `retention.explain-history` changed: turned off, the table is freed (turned on again, it
/// starts empty).
pub fn on_config_changed(_: &ConfigurationContext, _: &str, on: &'static AtomicBool) {
    if !on.load(Ordering::Relaxed) {
        clear();
    }
}

/// After FLUSHALL/FLUSHDB/SWAPDB the remembered names would describe other keys.
pub fn clear() {
    LOG.with(|log| log.borrow_mut().slots = Vec::new());
    MEASURED.with(|m| m.borrow_mut().clear());
}

/// Keys whose last memory measurement is remembered, at most: a map of this many names and
/// their figures (a few MB at worst). Memory limits govern few keys (finished sets, big
/// streams), so in practice every one of them is remembered.
pub const MEASURED_MAX: usize = 10_000;

/// What the last walk under a `max_memory` limit found in one key (a finished set or a
/// trimmed collection): the newest entries kept within the budget, and their memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub at_ms: i64,
    /// The name of the rule that measured (None for a command's own work). A name, not the
    /// rule's place in the policy: a reloaded policy may put another rule at that place, and
    /// the measurement must not be shown under that rule.
    pub rule: Option<String>,
    pub kept_memory_bytes: u64,
    pub max_memory_bytes: u64,
    /// Entries (or jobs) within the budget.
    pub kept_within_budget: u64,
}

thread_local! {
    static MEASURED: RefCell<std::collections::HashMap<(i32, Vec<u8>), Measured>> =
        RefCell::new(std::collections::HashMap::new());
}

/// Remembers a measurement (only of work that removed what lay beyond it: a dry run's is not
/// what the key holds). When the table is full, a name not in it replaces the oldest one.
pub fn record_measured(db: i32, name: &[u8], measured: Measured) {
    MEASURED.with(|m| {
        let mut m = m.borrow_mut();
        let id = (db, name.to_vec());
        if m.len() >= MEASURED_MAX && !m.contains_key(&id) {
            let oldest = m
                .iter()
                .min_by_key(|(_, v)| v.at_ms)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                m.remove(&oldest);
            }
        }
        m.insert(id, measured);
    });
}

/// The name of the rule at `index` in the policy in force: work runs only under the policy
/// in force (a pass stops when another is loaded, queued work is planned again).
pub fn rule_name(index: Option<usize>) -> Option<String> {
    let policy = crate::state::policy();
    index
        .and_then(|i| policy.rules.get(i))
        .map(|r| r.name.clone())
}

/// The last memory measurement of `name` in `db`.
pub fn measured(db: i32, name: &[u8]) -> Option<Measured> {
    MEASURED.with(|m| m.borrow().get(&(db, name.to_vec())).cloned())
}

/// Per rule name: the kept memory summed over its measured keys, their budgets summed, and
/// the number of keys.
pub fn measured_by_rule() -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    MEASURED.with(|m| {
        for v in m.borrow().values() {
            if let Some(rule) = &v.rule {
                let e: &mut (u64, u64, u64) = out.entry(rule.clone()).or_default();
                e.0 = e.0.saturating_add(v.kept_memory_bytes);
                e.1 = e.1.saturating_add(v.max_memory_bytes);
                e.2 += 1;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64) -> Entry {
        Entry {
            at_ms,
            rule: Some(1),
            action: Action::Trimmed { entries: 3 },
        }
    }

    fn policy() -> Rc<Policy> {
        Rc::new(Policy::empty())
    }

    fn named(names: &[&str]) -> Rc<Policy> {
        let rules: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"name":"{n}","match":"{n}:*","ttl":"1h"}}"#))
            .collect();
        let json = format!(r#"{{"rules":[{}]}}"#, rules.join(","));
        Rc::new(crate::policy::parse_policy(&json).expect("policy"))
    }

    #[test]
    fn the_latest_action_per_key_and_database_wins() {
        let mut log = Log::default();
        let p = policy();
        log.record(0, b"a", entry(1), &p);
        log.record(0, b"a", entry(2), &p);
        log.record(3, b"a", entry(5), &p);
        assert_eq!(log.last(0, b"a", &p).map(|e| e.at_ms), Some(2));
        assert_eq!(log.last(3, b"a", &p).map(|e| e.at_ms), Some(5));
        assert_eq!(log.last(0, b"b", &p), None);
    }

    #[test]
    fn a_new_policy_drops_the_rule_index_of_earlier_actions() {
        let mut log = Log::default();
        let (old, new) = (named(&["a", "b"]), named(&["b", "a"]));
        log.record(0, b"a", entry(1), &old);
        assert_eq!(log.last(0, b"a", &old).and_then(|e| e.rule), Some(1));
        // Under the new policy, index 1 may be another rule: the action stays, its rule not.
        let seen = log.last(0, b"a", &new).expect("remembered");
        assert_eq!(
            (seen.at_ms, seen.rule, seen.action),
            (1, None, entry(1).action)
        );
        log.record(0, b"b", entry(2), &new);
        assert_eq!(log.last(0, b"b", &new).and_then(|e| e.rule), Some(1));
        // The same rules loaded again keep their actions' rules, also once the policy they
        // replace is gone.
        drop(new);
        let again = named(&["b", "a"]);
        assert_eq!(log.last(0, b"b", &again).and_then(|e| e.rule), Some(1));
    }

    #[test]
    fn a_slot_is_48_bytes() {
        // The README and the module doc promise 3 MB for the table.
        assert!(std::mem::size_of::<Option<Stored>>() <= 48);
    }

    #[test]
    fn memory_is_fixed_and_recent_actions_win() {
        let mut log = Log::default();
        let p = policy();
        for i in 0..(4 * SLOTS) as i64 {
            log.record(0, format!("k{i}").as_bytes(), entry(i), &p);
        }
        assert_eq!(log.slots.len(), SLOTS);
        // The last action of all is remembered; a key whose slot was taken later is not
        // mistaken for the key that took it.
        let last = 4 * SLOTS as i64 - 1;
        assert_eq!(
            log.last(0, format!("k{last}").as_bytes(), &p)
                .map(|e| e.at_ms),
            Some(last)
        );
        let remembered = (0..(4 * SLOTS) as i64)
            .filter(|i| log.last(0, format!("k{i}").as_bytes(), &p) == Some(entry(*i)))
            .count();
        assert!(
            remembered <= SLOTS && remembered > SLOTS / 2,
            "{remembered}"
        );
    }
}
