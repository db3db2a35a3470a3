//! `runs` policy rules: the sweep expires old runs of every matching base in bounded steps
//! and cleans what other writers left behind (see `reconcile`).
//!
//! `plan` only looks at the name and type (it is also called from the new-key fast path);
//! all server work happens in `step`, which re-checks the keys every time it resumes.

use std::time::Instant;

use redis_module::Context;

use super::names::{RunSetNames, DATA_SUFFIX, INDEX_SUFFIX};
use super::reconcile::Reconcile;
use super::server::{in_cluster, Bound, Order, RunSet};
use crate::error::Result;
use crate::policy::{KeyType, RunsAction};
use crate::stats::Tally;
use crate::sweep::work::{Planned, Progress, Work, WorkEnv};

/// Runs expired per step: one ZRANGE, one ZREM and one HDEL of this many ids.
const EXPIRE_BATCH: u64 = 256;

/// Expiry plus reconciliation for the run set whose `:index` the sweep visited; for a
/// visited `:data`, cleanup only when its index is gone (then every document is an orphan).
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
            Ok(names) => Planned::Work(Box::new(RunSetSweep::leftovers(names))),
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
    max_age_ms: i64,
    /// Fixed at the first step, so one pass applies one cutoff however many slices it takes.
    cutoff_ms: Option<i64>,
    /// Dry runs remove nothing, so they page past what they counted.
    dry_skip: u64,
    stage: Stage,
}

impl RunSetSweep {
    fn new(names: RunSetNames, max_age_ms: i64) -> RunSetSweep {
        RunSetSweep {
            names,
            max_age_ms,
            cutoff_ms: None,
            dry_skip: 0,
            stage: Stage::Expire,
        }
    }

    fn leftovers(names: RunSetNames) -> RunSetSweep {
        RunSetSweep {
            stage: Stage::Leftovers,
            ..RunSetSweep::new(names, 0)
        }
    }

    /// One bounded unit of work.
    fn advance(&mut self, set: &RunSet, env: &WorkEnv, tally: &mut Tally) -> Result<()> {
        match &mut self.stage {
            Stage::Expire => {
                let cutoff = *self
                    .cutoff_ms
                    .get_or_insert(env.now_ms.saturating_sub(self.max_age_ms));
                self.expire_batch(set, cutoff, env.dry_run, tally)
            }
            Stage::Leftovers => {
                self.stage = match set.index_exists()? {
                    true => Stage::Done,
                    false => Stage::Reconcile(Reconcile::Orphans { cursor: 0 }),
                };
                Ok(())
            }
            Stage::Reconcile(walk) => {
                tally.entries_trimmed += walk.step(set, env.dry_run)?.total();
                if walk.is_done() {
                    self.stage = Stage::Done;
                }
                Ok(())
            }
            Stage::Done => Ok(()),
        }
    }

    fn expire_batch(
        &mut self,
        set: &RunSet,
        cutoff_ms: i64,
        dry_run: bool,
        tally: &mut Tally,
    ) -> Result<()> {
        let batch = set.ids_by_score(
            Bound::Inclusive(f64::NEG_INFINITY),
            Bound::Exclusive(cutoff_ms as f64),
            Order::Asc,
            self.dry_skip,
            Some(EXPIRE_BATCH),
        )?;
        if batch.is_empty() {
            // Leftovers of other writers can only exist where the two sizes differ.
            self.stage = match set.count()? == set.data_len()? {
                true => Stage::Done,
                false => Stage::Reconcile(Reconcile::start()),
            };
            return Ok(());
        }
        if dry_run {
            self.dry_skip += batch.len() as u64;
            tally.runs_expired += batch.len() as u64;
            return Ok(());
        }
        let ids: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        tally.runs_expired += set.index_remove(&ids)?;
        set.data_remove(&ids)?;
        Ok(())
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
        let set = RunSet::unchecked(ctx, self.names.clone());
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
