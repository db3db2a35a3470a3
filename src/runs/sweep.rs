//! `runs` policy rules: the sweep expires old runs of every matching base in bounded steps
//! and cleans what other writers left behind (see `reconcile`).
//!
//! Expiry (runs scored older than `max_age`, removed from both keys) acts on the data's own
//! times. Leftovers are different: a `:data` without its `:index`, an `:index` without its
//! `:data`, a hole or a stray document may be a run set half-written by an application
//! that sends the two keys in separate commands, or a key that only looks like a run set
//! under a broad glob. They go only once the module has seen them without their other half
//! for `max_age`, by its own clock, at looks across passes (`crate::observe`). A runs rule
//! has no `orphan_age` of its own: `max_age` is how long a run may live, so a run's halves
//! may legitimately be apart at most that long.
//!
//! `plan` only looks at the name and type (it is also called from the new-key fast path);
//! all server work happens in `step`, which re-checks the keys every time it resumes.

use std::time::Instant;

use redis_module::Context;

use super::names::{RunSetNames, DATA_SUFFIX, INDEX_SUFFIX};
use super::reconcile::{Found, Judge, Reconcile};
use super::server::{in_cluster, Bound, Order, RunSet};
use crate::error::Result;
use crate::observe::{self, Kind, ObsKey};
use crate::policy::{KeyType, RunsAction};
use crate::stats::Tally;
use crate::sweep::work::{Planned, Progress, Work, WorkEnv};

/// Runs expired per step: one ZRANGE, one ZREM and one HDEL of this many ids.
const EXPIRE_BATCH: u64 = 256;

/// Expiry plus reconciliation for the run set whose `:index` the sweep visited; for a
/// visited `:data`, cleanup only when its index is gone (then every document is a stray).
pub fn plan(runs: &RunsAction, name: &[u8], key_type: KeyType) -> Planned {
    if let Some(base) = name.strip_suffix(INDEX_SUFFIX) {
        if key_type != KeyType::ZSet {
            return Planned::WrongType;
        }
        return match RunSetNames::new(base) {
            Ok(names) => Planned::Work(Box::new(RunSetSweep::new(names, runs.max_age_ms))),
            Err(_) => Planned::Nothing,
        };
    }
    if let Some(base) = name.strip_suffix(DATA_SUFFIX) {
        if key_type != KeyType::Hash {
            return Planned::WrongType;
        }
        return match RunSetNames::new(base) {
            Ok(names) => Planned::Work(Box::new(RunSetSweep::leftovers(names, runs.max_age_ms))),
            Err(_) => Planned::Nothing,
        };
    }
    Planned::Nothing
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Removing runs older than the cutoff, oldest first.
    Expire,
    /// Only for a data hash whose index is gone; otherwise the index's own work covers it.
    Leftovers,
    Reconcile(Reconcile),
    Done,
}

struct RunSetSweep {
    names: RunSetNames,
    /// Runs older than this expire; leftovers must be seen alone this long to go.
    max_age_ms: i64,
    /// Fixed at the first step, so one pass applies one cutoff however many slices it takes.
    cutoff_ms: Option<i64>,
    stage: Stage,
    /// The epoch of this set's entry observations in this pass.
    epoch: Epoch,
    /// Whether this pass's walk found a hole or a stray.
    found_unreferenced: bool,
}

/// The epoch of a set's entry observations: the clock of its `RunsUneven` observation, since
/// when walks have been finding holes or strays in it. Only such suspects are recorded: a
/// healthy set is walked and nothing is kept about it, so that healthy sets cannot fill the
/// table and keep real orphans from being watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Epoch {
    /// Not a suspect so far: taken when this walk finds something unreferenced.
    NotTaken,
    Since(i64),
    /// The table is full: entries are not judged in this pass (they wait).
    Unavailable,
}

impl RunSetSweep {
    fn new(names: RunSetNames, max_age_ms: i64) -> RunSetSweep {
        RunSetSweep {
            names,
            max_age_ms,
            cutoff_ms: None,
            stage: Stage::Expire,
            epoch: Epoch::NotTaken,
            found_unreferenced: false,
        }
    }

    fn leftovers(names: RunSetNames, max_age_ms: i64) -> RunSetSweep {
        RunSetSweep {
            stage: Stage::Leftovers,
            ..RunSetSweep::new(names, max_age_ms)
        }
    }

    fn obs_key(&self, kind: Kind, db: i32) -> ObsKey {
        ObsKey::key(kind, db, &self.names.base)
    }

    /// Both keys exist: neither is alone.
    fn forget_alone(&self, db: i32) {
        observe::forget_with(|| self.obs_key(Kind::RunsDataAlone, db));
        observe::forget_with(|| self.obs_key(Kind::RunsIndexAlone, db));
    }

    /// One bounded unit of work.
    fn advance(&mut self, set: &RunSet, env: &WorkEnv, tally: &mut Tally) -> Result<()> {
        match &mut self.stage {
            Stage::Expire => {
                let cutoff = *self
                    .cutoff_ms
                    .get_or_insert(env.now_ms.saturating_sub(self.max_age_ms));
                self.expire_batch(set, cutoff, env.db, env.dry_run, tally)
            }
            Stage::Leftovers => {
                self.stage = match set.index_exists()? {
                    true => {
                        // Entries are the index's own work; here only the sighting counts.
                        self.forget_alone(env.db);
                        Stage::Done
                    }
                    false => Stage::Reconcile(Reconcile::Orphans { cursor: 0 }),
                };
                Ok(())
            }
            Stage::Reconcile(mut walk) => {
                let mut judge = Observed {
                    db: env.db,
                    base: &self.names.base,
                    age_ms: self.max_age_ms,
                    epoch: &mut self.epoch,
                    found_unreferenced: &mut self.found_unreferenced,
                    dry_run: env.dry_run,
                };
                tally.entries_trimmed += walk.step(set, env.dry_run, &mut judge)?.total();
                self.stage = match walk.is_done() {
                    true => self.after_walk(env.db),
                    false => Stage::Reconcile(walk),
                };
                Ok(())
            }
            Stage::Done => Ok(()),
        }
    }

    /// Every pass walks the set for leftovers of other writers: equal sizes prove nothing (as
    /// many holes as stray documents look even). The walk is bounded per step and resumable;
    /// entries seen together are forgotten, so only what stays apart across passes ages.
    fn after_expiry(&mut self, set: &RunSet, db: i32) -> Result<Stage> {
        let (count, data_len) = (set.count()?, set.data_len()?);
        if count > 0 && data_len > 0 {
            self.forget_alone(db);
        }
        if count == 0 && data_len == 0 {
            observe::forget_with(|| self.obs_key(Kind::RunsUneven, db));
            return Ok(Stage::Done);
        }
        // A suspect of earlier passes keeps its epoch from the start of the walk, so that an
        // entry seen with its other half is forgotten under it even before (or without)
        // anything unreferenced being found this time. Others are recorded only on a find.
        if !observe::is_empty() {
            let uneven = self.obs_key(Kind::RunsUneven, db);
            let continuity = observe::continuity_ms(self.max_age_ms);
            if let Some(sighting) = observe::resight(uneven, continuity) {
                self.epoch = Epoch::Since(sighting.since_ms);
            }
        }
        Ok(Stage::Reconcile(Reconcile::start()))
    }

    /// A walk that found nothing unreferenced clears the set of suspicion: entries found
    /// apart later are watched from a new epoch.
    fn after_walk(&self, db: i32) -> Stage {
        if !self.found_unreferenced {
            observe::forget_with(|| self.obs_key(Kind::RunsUneven, db));
        }
        Stage::Done
    }

    fn expire_batch(
        &mut self,
        set: &RunSet,
        cutoff_ms: i64,
        env_db: i32,
        dry_run: bool,
        tally: &mut Tally,
    ) -> Result<()> {
        let expired = (
            Bound::Inclusive(f64::NEG_INFINITY),
            Bound::Exclusive(cutoff_ms as f64),
        );
        if dry_run {
            // Nothing is removed, so paging through the expired runs would have to skip
            // what it counted (quadratic with LIMIT offsets): one ZCOUNT, O(log N), says how
            // many a real pass would remove.
            tally.runs_expired += set.count_between(expired.0, expired.1)?;
            self.stage = self.after_expiry(set, env_db)?;
            return Ok(());
        }
        let batch = set.ids_by_score(expired.0, expired.1, Order::Asc, 0, Some(EXPIRE_BATCH))?;
        if batch.is_empty() {
            self.stage = self.after_expiry(set, env_db)?;
            return Ok(());
        }
        let ids: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        tally.runs_expired += set.index_remove(&ids)?;
        set.data_remove(&ids)?;
        Ok(())
    }
}

/// Judges leftovers on the module's observations: what a walk finds without its other half
/// goes only once it has been seen so for `age_ms` (see the module doc).
struct Observed<'a> {
    db: i32,
    base: &'a [u8],
    age_ms: i64,
    epoch: &'a mut Epoch,
    found_unreferenced: &'a mut bool,
    dry_run: bool,
}

impl Observed<'_> {
    /// The epoch, taken (and the set recorded as a suspect) at the first find.
    fn take_epoch(&mut self) -> Option<i64> {
        if *self.epoch == Epoch::NotTaken {
            let uneven = ObsKey::key(Kind::RunsUneven, self.db, self.base);
            *self.epoch = match observe::sight(uneven, observe::continuity_ms(self.age_ms)) {
                Some(sighting) => Epoch::Since(sighting.since_ms),
                None => Epoch::Unavailable,
            };
        }
        self.known_epoch()
    }

    fn known_epoch(&self) -> Option<i64> {
        match *self.epoch {
            Epoch::Since(e) => Some(e),
            Epoch::NotTaken | Epoch::Unavailable => None,
        }
    }

    /// The observation `found` stands for; entries need the epoch (`epoch`: None when
    /// there is none, and then nothing about entries is recorded or forgotten).
    fn key(&self, found: Found<'_>, epoch: Option<i64>) -> Option<ObsKey> {
        let (db, base) = (self.db, self.base);
        match found {
            Found::IndexAlone => Some(ObsKey::key(Kind::RunsIndexAlone, db, base)),
            Found::DataAlone => Some(ObsKey::key(Kind::RunsDataAlone, db, base)),
            Found::Hole(id) => epoch.map(|e| ObsKey::entry(Kind::RunsHole, db, base, id, e)),
            Found::Stray(id) => epoch.map(|e| ObsKey::entry(Kind::RunsStray, db, base, id, e)),
        }
    }
}

impl Judge for Observed<'_> {
    fn unreferenced(&mut self, found: Found<'_>) -> bool {
        let epoch = match found {
            Found::Hole(_) | Found::Stray(_) => {
                *self.found_unreferenced = true;
                self.take_epoch()
            }
            Found::IndexAlone | Found::DataAlone => None,
        };
        let Some(key) = self.key(found, epoch) else {
            return false;
        };
        let goes = observe::observe(key, self.age_ms);
        // The walk removes it in this step: its observation would only hold a place.
        if goes && !self.dry_run {
            observe::forget(key);
        }
        goes
    }

    fn referenced(&mut self, found: Found<'_>) {
        // Most entries are referenced and nothing is observed: skip the digest then.
        if observe::is_empty() {
            return;
        }
        // Without an epoch from this pass or an earlier one, no entry of this set is watched.
        if let Some(key) = self.key(found, self.known_epoch()) {
            observe::forget(key);
        }
    }
}

impl Work for RunSetSweep {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        // A base without a hash tag cannot be handled atomically in a cluster (its keys may
        // live on other nodes); the commands refuse it, and so does the sweep.
        if in_cluster(ctx) && self.names.check_cluster_slots().is_err() {
            return Progress::Done;
        }
        let set = RunSet::unchecked(ctx, self.names.clone(), env.asker);
        // The keys may have changed type between slices.
        if set.check_types().is_err() {
            tally.skipped_wrong_type += 1;
            return Progress::Done;
        }
        while self.stage != Stage::Done {
            if let Err(e) = self.advance(&set, env, tally) {
                tally.errors += 1;
                ctx.log_warning(&format!(
                    "retention: runs rule on '{}': {e}",
                    String::from_utf8_lossy(&self.names.base)
                ));
                return Progress::Done;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        match self.stage {
            Stage::Done => Progress::Done,
            _ => Progress::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> RunsAction {
        RunsAction {
            max_age_ms: 3_600_000,
        }
    }

    #[test]
    fn plans_work_for_index_and_data_keys_only() {
        let a = action();
        assert!(matches!(
            plan(&a, b"runs:active:{w}:p:index", KeyType::ZSet),
            Planned::Work(_)
        ));
        assert!(matches!(
            plan(&a, b"runs:active:{w}:p:data", KeyType::Hash),
            Planned::Work(_)
        ));
        assert!(matches!(
            plan(&a, b"runs:active:{w}:p:index", KeyType::Hash),
            Planned::WrongType
        ));
        assert!(matches!(
            plan(&a, b"runs:active:{w}:p:data", KeyType::ZSet),
            Planned::WrongType
        ));
        assert!(matches!(
            plan(&a, b"runs:active:{w}:p", KeyType::Hash),
            Planned::Nothing
        ));
        assert!(matches!(
            plan(&a, b":index", KeyType::ZSet),
            Planned::Nothing
        ));
    }
}
