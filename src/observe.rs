//! What the module has seen unreferenced, and since when: the clock of every orphan removal.
//!
//! Data cannot date its own orphanhood: a job hash's `finishedOn` says when the job ended,
//! not since when nothing refers to it (an import writes the hash before its state set),
//! and a run set's keys carry no time at all. So a possible orphan is removed only once
//! the module itself has seen it unreferenced at looks spanning the rule's age, by its own
//! monotonic clock:
//! - the first look only starts the clock, however old the data claims to be;
//! - a look that sees a reference forgets the observation (the clock starts over);
//! - a gap between looks longer than the continuity window (see `continuity_ms`) also
//!   starts over: the module lost track, and whatever happened meanwhile is unknown.
//!
//! Observations live in memory only, never in keys, so a restart starts every clock over
//! (in doubt, leave). They are keyed by database and name (plus member and epoch for
//! entries of a collection), digested into 128 bits with a per-process random key: memory
//! per observation is fixed however long the name, and an accidental collision between
//! two of at most `MAX_OBSERVATIONS` live observations is about 2^-94.
//!
//! The table is bounded. When it is full a new observation is not recorded (that key waits
//! for a later pass, which is the safe direction). Stale observations are found by a ring
//! of the keys in insertion order: every operation examines at most `EXAMINED_PER_OP`
//! records at its front, dropping the stale ones and rotating the live ones to the back,
//! so no operation ever walks the table.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;
use std::time::Instant;

/// Observations kept at most: about 90 bytes each (a map entry and a ring record, 10 MB
/// when full), whatever the names' lengths.
pub const MAX_OBSERVATIONS: usize = 100_000;
/// Smallest continuity window: passes normally come every minute, but an operator may run
/// them by hand or hourly from a cron job.
const MIN_CONTINUITY_MS: i64 = 3_600_000;
/// Ring records examined per operation: more than one, so dead records (forgotten keys)
/// drain faster than they can be created.
const EXAMINED_PER_OP: usize = 2;

/// What is observed. Each kind has its own clock, even for the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A finished job hash (queue rules).
    QueueJob = 1,
    /// A job sub-key whose job hash is gone (queue rules).
    QueueSubKey = 2,
    /// A run set's `:data` without its `:index` (keyed by base).
    RunsDataAlone = 3,
    /// A run set's `:index` without its `:data` (keyed by base).
    RunsIndexAlone = 4,
    /// A run set being reconciled (keyed by base); its clock is the epoch of the set's
    /// entry observations.
    RunsUneven = 5,
    /// An indexed id without a document (keyed by base, id and epoch).
    RunsHole = 6,
    /// A document whose id is not indexed (keyed by base, id and epoch).
    RunsStray = 7,
}

/// The digest of what an observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObsKey(u128);

thread_local! {
    static SEED: RandomState = RandomState::new();
}

fn digest(parts: impl Hash) -> ObsKey {
    SEED.with(|seed| {
        // Two domain-separated SipHash outputs of the same parts.
        let lo = seed.hash_one((0u8, &parts));
        let hi = seed.hash_one((1u8, &parts));
        ObsKey((u128::from(hi) << 64) | u128::from(lo))
    })
}

impl ObsKey {
    /// A whole key `name` of database `db` (or a run set's base).
    pub fn key(kind: Kind, db: i32, name: &[u8]) -> ObsKey {
        digest((kind as u8, db, name))
    }

    /// `member` of the collection `name`. `epoch` groups a collection's entry observations:
    /// a new epoch makes all earlier ones unreachable (they age out of the table).
    pub fn entry(kind: Kind, db: i32, name: &[u8], member: &[u8], epoch: i64) -> ObsKey {
        digest((kind as u8, db, name, member, epoch))
    }
}

/// How long a gap between two looks may be before the clock starts over: the age itself,
/// and at least an hour. A key must be looked at least once per window to ever go.
pub fn continuity_ms(age_ms: i64) -> i64 {
    age_ms.max(MIN_CONTINUITY_MS)
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    first_ms: i64,
    last_ms: i64,
    continuity_ms: i64,
    /// Matches the ring record that stands for this observation.
    ticket: u64,
}

impl Seen {
    fn lapsed(&self, now_ms: i64) -> bool {
        now_ms < self.last_ms || now_ms.saturating_sub(self.last_ms) > self.continuity_ms
    }
}

/// One look at something unreferenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// Since when it has been seen unreferenced without a break.
    pub since_ms: i64,
    /// Whether an earlier look saw it too (false: this look started the clock).
    pub seen_before: bool,
}

impl Sighting {
    /// Seen unreferenced at two looks at least `age_ms` (and 1 ms) apart.
    pub fn lasted(&self, now_ms: i64, age_ms: i64) -> bool {
        self.seen_before && now_ms.saturating_sub(self.since_ms) >= age_ms.max(1)
    }
}

pub struct Table {
    seen: HashMap<ObsKey, Seen>,
    /// Every observation once, plus records of forgotten ones until they reach the front.
    ring: VecDeque<(ObsKey, u64)>,
    next_ticket: u64,
    max_entries: usize,
    /// Ring records examined so far (a measure of the table's own work).
    examined: u64,
}

impl Table {
    pub fn new(max_entries: usize) -> Table {
        Table {
            seen: HashMap::new(),
            ring: VecDeque::new(),
            next_ticket: 0,
            max_entries,
            examined: 0,
        }
    }

    /// Records a look that found `key` unreferenced at `now_ms`. None when it is not being
    /// observed and the table is full: nothing was recorded.
    pub fn sight(&mut self, key: ObsKey, now_ms: i64, continuity_ms: i64) -> Option<Sighting> {
        self.drop_stale(now_ms);
        if let Some(seen) = self.seen.get_mut(&key) {
            let seen_before = !seen.lapsed(now_ms);
            if !seen_before {
                seen.first_ms = now_ms;
            }
            seen.last_ms = now_ms;
            seen.continuity_ms = continuity_ms;
            return Some(Sighting {
                since_ms: seen.first_ms,
                seen_before,
            });
        }
        if self.seen.len() >= self.max_entries || self.ring.len() >= 2 * self.max_entries {
            return None;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.seen.insert(
            key,
            Seen {
                first_ms: now_ms,
                last_ms: now_ms,
                continuity_ms,
                ticket,
            },
        );
        self.ring.push_back((key, ticket));
        Some(Sighting {
            since_ms: now_ms,
            seen_before: false,
        })
    }

    /// Records a look that found `key` unreferenced; true once it has been for `age_ms`.
    pub fn observe(&mut self, key: ObsKey, now_ms: i64, age_ms: i64) -> bool {
        self.sight(key, now_ms, continuity_ms(age_ms))
            .is_some_and(|s| s.lasted(now_ms, age_ms))
    }

    /// A look saw a reference (or the key went): its clock starts over at the next look.
    /// The ring record stays until it reaches the front.
    pub fn forget(&mut self, key: ObsKey) {
        if !self.seen.is_empty() {
            self.seen.remove(&key);
        }
    }

    pub fn clear(&mut self) {
        self.seen.clear();
        self.ring.clear();
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Examines the ring's front: drops records of forgotten or lapsed observations,
    /// rotates live ones to the back.
    fn drop_stale(&mut self, now_ms: i64) {
        for _ in 0..EXAMINED_PER_OP {
            let Some((key, ticket)) = self.ring.pop_front() else {
                return;
            };
            self.examined += 1;
            match self.seen.get(&key) {
                Some(seen) if seen.ticket == ticket => {
                    if seen.lapsed(now_ms) {
                        self.seen.remove(&key);
                    } else {
                        self.ring.push_back((key, ticket));
                    }
                }
                // Forgotten (maybe observed again since, under a new ticket).
                _ => {}
            }
        }
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::new(MAX_OBSERVATIONS));
}

/// The module's own clock for observations: monotonic milliseconds since the first call
/// (a wall-clock step must not age or rejuvenate anything).
pub fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// `Table::sight` on the module's table at the module's clock.
pub fn sight(key: ObsKey, continuity_ms: i64) -> Option<Sighting> {
    let now = now_ms();
    TABLE.with(|t| t.borrow_mut().sight(key, now, continuity_ms))
}

/// `Table::observe` on the module's table at the module's clock.
pub fn observe(key: ObsKey, age_ms: i64) -> bool {
    let now = now_ms();
    TABLE.with(|t| t.borrow_mut().observe(key, now, age_ms))
}

/// `Table::forget` on the module's table.
pub fn forget(key: ObsKey) {
    TABLE.with(|t| t.borrow_mut().forget(key));
}

/// Forgets `key` built lazily: the common case (nothing observed) costs no digest.
pub fn forget_with(key: impl FnOnce() -> ObsKey) {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if !t.is_empty() {
            t.forget(key());
        }
    });
}

/// Drops every observation (FLUSHDB/FLUSHALL: the keys they were about are gone).
pub fn clear() {
    TABLE.with(|t| t.borrow_mut().clear());
}

/// Whether nothing is being observed (most of the time: orphans are rare).
pub fn is_empty() -> bool {
    TABLE.with(|t| t.borrow().is_empty())
}

/// The number of things currently being observed.
pub fn len() -> usize {
    TABLE.with(|t| t.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn k(name: &str) -> ObsKey {
        ObsKey::key(Kind::QueueSubKey, 0, name.as_bytes())
    }

    #[test]
    fn the_first_look_only_starts_the_clock() {
        let mut t = Table::new(10);
        // However small the age, one look is never enough.
        assert!(!t.observe(k("a"), 1000, 0));
        assert!(t.observe(k("a"), 1001, 0));
        assert!(!t.observe(k("b"), 0, HOUR));
        assert!(!t.observe(k("b"), HOUR - 1, HOUR));
        assert!(t.observe(k("b"), HOUR, HOUR));
    }

    #[test]
    fn a_sighting_of_a_reference_restarts_the_clock() {
        let mut t = Table::new(10);
        assert!(!t.observe(k("a"), 0, HOUR));
        t.forget(k("a"));
        assert!(!t.observe(k("a"), HOUR, HOUR));
        assert!(!t.observe(k("a"), 2 * HOUR - 1, HOUR));
        assert!(t.observe(k("a"), 2 * HOUR, HOUR));
    }

    #[test]
    fn a_long_gap_or_a_clock_going_back_restarts_the_clock() {
        let mut t = Table::new(10);
        assert!(!t.observe(k("a"), 0, 1000));
        // Unseen for more than the continuity window (an hour at least).
        assert!(!t.observe(k("a"), HOUR + 1001, 1000));
        assert!(t.observe(k("a"), HOUR + 2001, 1000));
        assert!(!t.observe(k("b"), 10_000, 1000));
        assert!(!t.observe(k("b"), 5_000, 1000));
        assert!(t.observe(k("b"), 6_000, 1000));
    }

    #[test]
    fn observations_are_per_database_kind_member_and_epoch() {
        let mut t = Table::new(10);
        let name = b"bull:q:1".as_slice();
        assert!(!t.observe(ObsKey::key(Kind::QueueJob, 0, name), 0, 100));
        // The same name elsewhere has its own clock.
        assert!(!t.observe(ObsKey::key(Kind::QueueJob, 1, name), 200, 100));
        assert!(!t.observe(ObsKey::key(Kind::QueueSubKey, 0, name), 200, 100));
        assert!(t.observe(ObsKey::key(Kind::QueueJob, 0, name), 200, 100));
        let entry = |member: &[u8], epoch| ObsKey::entry(Kind::RunsStray, 0, b"b", member, epoch);
        assert!(!t.observe(entry(b"x", 7), 0, 100));
        assert!(!t.observe(entry(b"y", 7), 200, 100));
        assert!(!t.observe(entry(b"x", 8), 200, 100));
        assert!(t.observe(entry(b"x", 7), 200, 100));
        // Parts are length-prefixed: moving bytes between name and member is another key.
        assert_ne!(
            ObsKey::entry(Kind::RunsStray, 0, b"ab", b"c", 0),
            ObsKey::entry(Kind::RunsStray, 0, b"a", b"bc", 0)
        );
    }

    #[test]
    fn a_full_table_records_nothing_new_until_observations_lapse() {
        let mut t = Table::new(2);
        assert!(t.sight(k("a"), 0, HOUR).is_some());
        assert!(t.sight(k("b"), 0, HOUR).is_some());
        assert_eq!(t.sight(k("c"), 1, HOUR), None);
        assert!(!t.observe(k("c"), 2, 0));
        assert_eq!(t.len(), 2);
        // Known ones still advance.
        assert!(t.observe(k("a"), HOUR, HOUR));
        // Once a and b have lapsed, the ring's front drops them and c gets its place.
        let later = 3 * HOUR;
        assert_eq!(
            t.sight(k("c"), later, HOUR).map(|s| s.seen_before),
            Some(false)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_table_stays_bounded_and_each_operation_is_cheap() {
        const MAX: usize = 100_000;
        let mut t = Table::new(MAX);
        let key = |i: u64| ObsKey::key(Kind::QueueJob, (i % 3) as i32, &i.to_le_bytes());
        for i in 0..MAX as u64 {
            assert!(t.sight(key(i), 0, HOUR).is_some());
        }
        // Full of live observations: a million new ones are refused, each in O(1) (the old
        // table walked all 100k entries per refused insert: 10^11 steps here).
        let (mut ops, examined_before) = (0u64, t.examined);
        for i in MAX as u64..MAX as u64 + 1_000_000 {
            assert_eq!(t.sight(key(i), 1000, HOUR), None);
            ops += 1;
            if i % 7 == 0 {
                // Forgetting names that are not observed changes nothing.
                t.forget(key(i));
            }
        }
        assert_eq!(t.len(), MAX);
        assert!(t.ring.len() <= 2 * MAX);
        // The upkeep per operation is a constant number of ring records.
        let examined = t.examined - examined_before;
        assert!(examined <= EXAMINED_PER_OP as u64 * ops, "{examined}");
        // Once the old ones lapse, the ring's front drops them as operations go by (two per
        // operation), and new observations get their places.
        let later = 2 * HOUR + 1;
        let mut recorded = 0;
        for i in 0..MAX as u64 {
            recorded += usize::from(t.sight(key(10_000_000 + i), later, HOUR).is_some());
        }
        assert!(recorded >= MAX / 2, "{recorded}");
        assert!(t.len() <= MAX && t.ring.len() <= 2 * MAX);
        // Forgotten observations leave dead ring records; they drain too.
        for i in 0..MAX as u64 {
            t.forget(key(10_000_000 + i));
        }
        for i in 0..MAX as u64 {
            t.sight(key(20_000_000 + i), later + 1, HOUR);
        }
        assert!(t.ring.len() <= 2 * MAX, "{}", t.ring.len());
        assert!(t.len() >= MAX / 2, "{}", t.len());
    }

    #[test]
    fn sightings_report_since_when() {
        let mut t = Table::new(10);
        let s = t.sight(k("a"), 50, HOUR);
        assert_eq!(
            s,
            Some(Sighting {
                since_ms: 50,
                seen_before: false
            })
        );
        let s = t.sight(k("a"), 80, HOUR).expect("tracked");
        assert_eq!(s.since_ms, 50);
        assert!(s.seen_before && s.lasted(80, 30) && !s.lasted(80, 31));
    }
}
