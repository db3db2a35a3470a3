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
//! The table is bounded, and only suspects are recorded (a healthy key or run set is
//! looked at and forgotten, never observed). When it is full a new observation is not
//! recorded (that key waits for a later pass, which is the safe direction), unless its kind
//! holds less than an even share of the table among the kinds present: then the newest
//! observation of the kind holding most makes room (its clock starts over at its next
//! look). So a flood of one kind (100k strays of one broken run set) cannot keep queue
//! orphans from ever being watched. Both losses are counted (`orphans_watch_dropped`).
//!
//! Stale observations are found by rings of the keys in insertion order, one per kind:
//! every operation examines at most `EXAMINED_PER_OP` records at the fronts (taking the
//! kinds in turn), dropping the stale ones and rotating the live ones to the back, so no
//! operation ever walks the table.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;
use std::time::Instant;

/// Observations kept at most: about 100 bytes each (a map entry and a ring record, 10 MB
/// when full), whatever the names' lengths.
pub const MAX_OBSERVATIONS: usize = 100_000;
/// Slots of the per-kind arrays, indexed by `Kind as usize` (1..=7).
const KIND_SLOTS: usize = 8;
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
    /// A run set whose walk found holes or strays (keyed by base); its clock is the epoch
    /// of the set's entry observations.
    RunsUneven = 5,
    /// An indexed id without a document (keyed by base, id and epoch).
    RunsHole = 6,
    /// A document whose id is not indexed (keyed by base, id and epoch).
    RunsStray = 7,
}

/// The digest of what an observation is about, and its kind (for the table's shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObsKey {
    lo: u64,
    hi: u64,
    kind: Kind,
}

thread_local! {
    static SEED: RandomState = RandomState::new();
}

fn digest(kind: Kind, parts: impl Hash) -> ObsKey {
    SEED.with(|seed| ObsKey {
        // Two domain-separated SipHash outputs of the same parts.
        lo: seed.hash_one((0u8, kind as u8, &parts)),
        hi: seed.hash_one((1u8, kind as u8, &parts)),
        kind,
    })
}

impl ObsKey {
    /// A whole key `name` of database `db` (or a run set's base).
    pub fn key(kind: Kind, db: i32, name: &[u8]) -> ObsKey {
        digest(kind, (db, name))
    }

    /// `member` of the collection `name`. `epoch` groups a collection's entry observations:
    /// a new epoch makes all earlier ones unreachable (they age out of the table).
    pub fn entry(kind: Kind, db: i32, name: &[u8], member: &[u8], epoch: i64) -> ObsKey {
        digest(kind, (db, name, member, epoch))
    }

    fn slot(&self) -> usize {
        self.kind as usize
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
    /// Per kind: every observation once, plus records of forgotten ones until they reach
    /// the front.
    rings: [VecDeque<(ObsKey, u64)>; KIND_SLOTS],
    /// Records in all rings.
    ring_len: usize,
    /// Live observations per kind.
    held: [usize; KIND_SLOTS],
    /// The ring whose front the next examination starts at.
    next_ring: usize,
    next_ticket: u64,
    max_entries: usize,
    /// Ring records examined so far (a measure of the table's own work).
    examined: u64,
    /// Looks not recorded, and observations dropped to make room, because it was full.
    dropped: u64,
}

impl Table {
    pub fn new(max_entries: usize) -> Table {
        Table {
            seen: HashMap::new(),
            rings: Default::default(),
            ring_len: 0,
            held: [0; KIND_SLOTS],
            next_ring: 0,
            next_ticket: 0,
            max_entries,
            examined: 0,
            dropped: 0,
        }
    }

    /// Records a look that found `key` unreferenced at `now_ms`. None when it is not being
    /// observed and the table is full: nothing was recorded.
    pub fn sight(&mut self, key: ObsKey, now_ms: i64, continuity_ms: i64) -> Option<Sighting> {
        if let Some(sighting) = self.resight(key, now_ms, continuity_ms) {
            return Some(sighting);
        }
        if !self.make_room(key.kind) {
            self.dropped += 1;
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
        self.rings[key.slot()].push_back((key, ticket));
        self.ring_len += 1;
        self.held[key.slot()] += 1;
        Some(Sighting {
            since_ms: now_ms,
            seen_before: false,
        })
    }

    /// `sight` for a key already being observed; None (and nothing recorded) otherwise.
    pub fn resight(&mut self, key: ObsKey, now_ms: i64, continuity_ms: i64) -> Option<Sighting> {
        self.drop_stale(now_ms);
        let seen = self.seen.get_mut(&key)?;
        let seen_before = !seen.lapsed(now_ms);
        if !seen_before {
            seen.first_ms = now_ms;
        }
        seen.last_ms = now_ms;
        seen.continuity_ms = continuity_ms;
        Some(Sighting {
            since_ms: seen.first_ms,
            seen_before,
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
        if !self.seen.is_empty() && self.seen.remove(&key).is_some() {
            self.held[key.slot()] -= 1;
        }
    }

    pub fn clear(&mut self) {
        self.seen.clear();
        self.rings.iter_mut().for_each(VecDeque::clear);
        self.ring_len = 0;
        self.held = [0; KIND_SLOTS];
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether a new observation of `kind` may be recorded; when the table is full, one of
    /// the kind holding most is dropped for a kind holding less than an even share.
    fn make_room(&mut self, kind: Kind) -> bool {
        if self.ring_len >= 2 * self.max_entries {
            return false;
        }
        if self.seen.len() < self.max_entries {
            return true;
        }
        let slot = kind as usize;
        let kinds_present = self.held.iter().filter(|n| **n > 0).count();
        let share = self.max_entries / (kinds_present + usize::from(self.held[slot] == 0));
        if self.held[slot] >= share {
            return false;
        }
        // The table is full and this kind holds less than its share, so another holds more.
        let largest = (0..KIND_SLOTS)
            .max_by_key(|s| self.held[*s])
            .unwrap_or(slot);
        largest != slot && self.drop_newest(largest)
    }

    /// Drops one live observation of the kind in ring `slot`, from the back of its ring,
    /// where new observations are added (they have had the least watching to lose). Dead
    /// records met on the way go too.
    fn drop_newest(&mut self, slot: usize) -> bool {
        while let Some((key, ticket)) = self.rings[slot].pop_back() {
            self.ring_len -= 1;
            if self.seen.get(&key).is_some_and(|s| s.ticket == ticket) {
                self.seen.remove(&key);
                self.held[slot] -= 1;
                self.dropped += 1;
                return true;
            }
        }
        false
    }

    /// Examines ring fronts, the kinds in turn: drops records of forgotten or lapsed
    /// observations, rotates live ones to the back.
    fn drop_stale(&mut self, now_ms: i64) {
        let mut examined = 0;
        let mut empty_rings = 0;
        while examined < EXAMINED_PER_OP && empty_rings < KIND_SLOTS {
            let slot = self.next_ring;
            self.next_ring = (self.next_ring + 1) % KIND_SLOTS;
            let Some((key, ticket)) = self.rings[slot].pop_front() else {
                empty_rings += 1;
                continue;
            };
            (examined, empty_rings) = (examined + 1, 0);
            self.examined += 1;
            match self.seen.get(&key) {
                Some(seen) if seen.ticket == ticket => {
                    if seen.lapsed(now_ms) {
                        self.seen.remove(&key);
                        self.held[slot] -= 1;
                        self.ring_len -= 1;
                    } else {
                        self.rings[slot].push_back((key, ticket));
                    }
                }
                // Forgotten (maybe observed again since, under a new ticket).
                _ => self.ring_len -= 1,
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

/// Runs `f` on the module's table; what it dropped is counted in STATS.
fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let (result, dropped) = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let before = t.dropped;
        let result = f(&mut t);
        (result, t.dropped - before)
    });
    if dropped > 0 {
        crate::stats::with_stats(|s| s.orphans_watch_dropped += dropped);
    }
    result
}

/// `Table::sight` on the module's table at the module's clock.
pub fn sight(key: ObsKey, continuity_ms: i64) -> Option<Sighting> {
    let now = now_ms();
    with_table(|t| t.sight(key, now, continuity_ms))
}

/// `Table::resight` on the module's table at the module's clock.
pub fn resight(key: ObsKey, continuity_ms: i64) -> Option<Sighting> {
    let now = now_ms();
    with_table(|t| t.resight(key, now, continuity_ms))
}

/// `Table::observe` on the module's table at the module's clock.
pub fn observe(key: ObsKey, age_ms: i64) -> bool {
    let now = now_ms();
    with_table(|t| t.observe(key, now, age_ms))
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
        assert!(t.ring_len <= 2 * MAX);
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
        assert!(t.len() <= MAX && t.ring_len <= 2 * MAX);
        // Forgotten observations leave dead ring records; they drain too.
        for i in 0..MAX as u64 {
            t.forget(key(10_000_000 + i));
        }
        for i in 0..MAX as u64 {
            t.sight(key(20_000_000 + i), later + 1, HOUR);
        }
        assert!(t.ring_len <= 2 * MAX, "{}", t.ring_len);
        assert!(t.len() >= MAX / 2, "{}", t.len());
    }

    #[test]
    fn a_full_table_gives_every_kind_an_even_share() {
        let mut t = Table::new(10);
        let stray = |i: u8| ObsKey::entry(Kind::RunsStray, 0, b"broken", &[i], 7);
        let job = |i: u8| ObsKey::key(Kind::QueueJob, 0, &[i]);
        let sub = |i: u8| ObsKey::key(Kind::QueueSubKey, 0, &[i]);
        for i in 0..10 {
            assert!(t.sight(stray(i), 0, HOUR).is_some());
        }
        assert!(
            t.sight(stray(10), 0, HOUR).is_none(),
            "full of its own kind"
        );
        // Another kind takes places up to half the table, the newest strays giving way.
        for i in 0..5 {
            assert!(t.sight(job(i), 1, HOUR).is_some(), "job {i}");
        }
        assert!(t.sight(job(5), 1, HOUR).is_none());
        assert!(t.sight(stray(11), 1, HOUR).is_none());
        assert_eq!((t.len(), t.held[Kind::RunsStray as usize]), (10, 5));
        let kept: Vec<u8> = (0..10)
            .filter(|i| t.seen.contains_key(&stray(*i)))
            .collect();
        assert_eq!(kept.len(), 5, "{kept:?}");
        // Those kept go on with their clocks.
        for i in kept {
            assert!(t.observe(stray(i), HOUR, HOUR), "stray {i}");
        }
        // A third kind gets a third; the kinds holding most give way.
        for i in 0..3 {
            assert!(t.sight(sub(i), HOUR, HOUR).is_some(), "sub-key {i}");
        }
        assert!(t.sight(sub(3), HOUR, HOUR).is_none());
        let held = |k: Kind| t.held[k as usize];
        assert_eq!(held(Kind::QueueSubKey), 3);
        assert_eq!(held(Kind::QueueJob) + held(Kind::RunsStray), 7);
        assert!(held(Kind::QueueJob) >= 3 && held(Kind::RunsStray) >= 3);
        assert_eq!(t.len(), 10);
        // Every look refused and every observation dropped was counted.
        assert_eq!(t.dropped, 1 + 5 + 2 + 3 + 1);
        // Known observations are never refused, full or not.
        let job_kept = (0..5)
            .find(|i| t.seen.contains_key(&job(*i)))
            .expect("a job");
        assert!(t.observe(job(job_kept), HOUR + 1, HOUR));
        assert_eq!(t.dropped, 12);
    }

    #[test]
    fn resight_records_nothing_new() {
        let mut t = Table::new(10);
        assert_eq!(t.resight(k("a"), 0, HOUR), None);
        assert!(t.is_empty());
        t.sight(k("a"), 0, HOUR);
        let s = t.resight(k("a"), 5, HOUR).expect("observed");
        assert_eq!((s.since_ms, s.seen_before), (0, true));
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
