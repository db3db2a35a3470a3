//! What the module last did to a key, for `RETENTION.EXPLAIN`: "why did this key expire, or
//! vanish?" is the first question an operator asks.
//!
//! A bounded ring of the most recent actions (`CAPACITY`), each keyed by database and a
//! 64-bit SipHash of the name with a per-process random key: no names are kept, memory is
//! fixed (about 5 MB when full), and recording is one hash and one map update, a few
//! percent of a key visit that sets a TTL. Older actions are forgotten in order; EXPLAIN
//! then says so. In memory only: a restart forgets everything.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Actions remembered: the most recent ones.
pub const CAPACITY: usize = 100_000;

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
    pub rule: Option<u32>,
    pub action: Action,
}

type Slot = (i32, u64);

#[derive(Default)]
struct Log {
    /// Ring of (key, entry), oldest overwritten first.
    ring: Vec<(Slot, Entry)>,
    next: usize,
    /// Where each key's latest entry is in the ring.
    latest: HashMap<Slot, usize>,
    seed: RandomState,
}

impl Log {
    fn slot(&self, db: i32, name: &[u8]) -> Slot {
        (db, self.seed.hash_one(name))
    }

    fn record(&mut self, db: i32, name: &[u8], entry: Entry) {
        let slot = self.slot(db, name);
        if self.ring.len() < CAPACITY {
            self.ring.push((slot, entry));
        } else {
            let (old, _) = self.ring[self.next];
            if self.latest.get(&old) == Some(&self.next) {
                self.latest.remove(&old);
            }
            self.ring[self.next] = (slot, entry);
        }
        self.latest.insert(slot, self.next);
        self.next = (self.next + 1) % CAPACITY;
    }

    fn last(&self, db: i32, name: &[u8]) -> Option<Entry> {
        let at = *self.latest.get(&self.slot(db, name))?;
        self.ring.get(at).map(|(_, entry)| *entry)
    }
}

thread_local! {
    // The server calls the module from its main thread only.
    static LOG: RefCell<Log> = RefCell::new(Log::default());
}

pub fn record(db: i32, name: &[u8], rule: Option<usize>, action: Action) {
    let entry = Entry {
        at_ms: crate::time::now_ms(),
        rule: rule.and_then(|r| u32::try_from(r).ok()),
        action,
    };
    LOG.with(|log| log.borrow_mut().record(db, name, entry));
}

/// The latest remembered action on `name` in `db`.
pub fn last(db: i32, name: &[u8]) -> Option<Entry> {
    LOG.with(|log| log.borrow().last(db, name))
}

/// How many actions are remembered now.
pub fn len() -> usize {
    LOG.with(|log| log.borrow().latest.len())
}

/// After FLUSHALL/FLUSHDB/SWAPDB the remembered names would describe other keys.
pub fn clear() {
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.ring.clear();
        log.latest.clear();
        log.next = 0;
    });
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

    #[test]
    fn the_latest_action_per_key_and_database_wins() {
        let mut log = Log::default();
        log.record(0, b"a", entry(1));
        log.record(0, b"a", entry(2));
        log.record(3, b"a", entry(5));
        assert_eq!(log.last(0, b"a").map(|e| e.at_ms), Some(2));
        assert_eq!(log.last(3, b"a").map(|e| e.at_ms), Some(5));
        assert_eq!(log.last(0, b"b"), None);
    }

    #[test]
    fn the_oldest_actions_are_forgotten_first_and_memory_stays_bounded() {
        let mut log = Log::default();
        log.record(0, b"first", entry(0));
        for i in 0..CAPACITY as i64 {
            log.record(0, format!("k{i}").as_bytes(), entry(i));
        }
        assert_eq!(log.last(0, b"first"), None);
        assert_eq!(log.last(0, b"k1").map(|e| e.at_ms), Some(1));
        assert_eq!(log.ring.len(), CAPACITY);
        assert_eq!(log.latest.len(), CAPACITY);
        // A key recorded twice keeps only its latest slot when the older one is overwritten.
        log.record(0, b"k1", entry(-1));
        for i in 0..CAPACITY as i64 - 1 {
            log.record(1, format!("x{i}").as_bytes(), entry(i));
        }
        assert_eq!(log.last(0, b"k1").map(|e| e.at_ms), Some(-1));
    }
}
