//! Bringing a run set's two keys back into agreement after other writers broke it:
//! "holes" (indexed ids without a document) leave the index, "orphans" (documents whose id
//! is not indexed, e.g. left by a client-side `ZREMRANGEBYSCORE`) leave the data hash.
//!
//! The walk is resumable in bounded steps so the sweep can spread it over time slices; each
//! step checks and removes in one go, so nothing a client added between steps is touched.
//! It assumes the writers it runs next to are atomic (ACTIVERUNS.* or MULTI/EXEC): a
//! client that writes the two keys in separate round trips is briefly inconsistent by design.

use super::server::{Order, RunSet};
use crate::error::Result;

/// Ids looked at per step.
pub const RECONCILE_BATCH: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Walking the index by rank from `next_rank`.
    Holes {
        next_rank: u64,
    },
    /// Walking the data hash with an HSCAN cursor.
    Orphans {
        cursor: u64,
    },
    Done,
}

/// What one step removed (or, in a dry run, found).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    pub holes: u64,
    pub orphans: u64,
}

impl Repaired {
    pub fn total(&self) -> u64 {
        self.holes + self.orphans
    }
}

impl Reconcile {
    pub fn start() -> Reconcile {
        Reconcile::Holes { next_rank: 0 }
    }

    pub fn is_done(&self) -> bool {
        *self == Reconcile::Done
    }

    /// Looks at up to `RECONCILE_BATCH` ids and advances.
    pub fn step(&mut self, set: &RunSet, dry_run: bool) -> Result<Repaired> {
        match *self {
            Reconcile::Holes { next_rank } => self.step_holes(set, next_rank, dry_run),
            Reconcile::Orphans { cursor } => self.step_orphans(set, cursor, dry_run),
            Reconcile::Done => Ok(Repaired::default()),
        }
    }

    fn step_holes(&mut self, set: &RunSet, rank: u64, dry_run: bool) -> Result<Repaired> {
        // Without a data hash every indexed id is a hole: drop the index in one go.
        if !set.data_exists()? {
            let holes = set.count()?;
            if holes > 0 && !dry_run {
                set.unlink_index()?;
            }
            *self = Reconcile::Done;
            return Ok(Repaired { holes, orphans: 0 });
        }
        let entries = set.ids_by_rank(rank, rank + RECONCILE_BATCH - 1, Order::Asc)?;
        if entries.is_empty() {
            *self = Reconcile::Orphans { cursor: 0 };
            return Ok(Repaired::default());
        }
        let ids: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let have = set.have_documents(&ids)?;
        let holes: Vec<&[u8]> = ids
            .iter()
            .zip(&have)
            .filter(|(_, h)| !**h)
            .map(|(id, _)| *id)
            .collect();
        let removed = if dry_run || holes.is_empty() {
            0
        } else {
            set.index_remove(&holes)?
        };
        // Removed entries were inside this batch, so the next unseen one moved up by that many.
        *self = Reconcile::Holes {
            next_rank: rank + ids.len() as u64 - removed,
        };
        Ok(Repaired {
            holes: holes.len() as u64,
            orphans: 0,
        })
    }

    fn step_orphans(&mut self, set: &RunSet, cursor: u64, dry_run: bool) -> Result<Repaired> {
        if !set.data_exists()? {
            *self = Reconcile::Done;
            return Ok(Repaired::default());
        }
        // Without an index every document is an orphan: drop the hash in one go.
        if !set.index_exists()? {
            let orphans = set.data_len()?;
            if !dry_run {
                set.unlink_data()?;
            }
            *self = Reconcile::Done;
            return Ok(Repaired { holes: 0, orphans });
        }
        let (next, fields) = set.scan_data_ids(cursor, RECONCILE_BATCH)?;
        let ids: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let scores = set.scores(&ids)?;
        let orphans: Vec<&[u8]> = ids
            .iter()
            .zip(&scores)
            .filter(|(_, s)| s.is_none())
            .map(|(id, _)| *id)
            .collect();
        // HSCAN may report a field twice; HDEL's count does not double count it.
        let found = if orphans.is_empty() {
            0
        } else if dry_run {
            orphans.len() as u64
        } else {
            set.data_remove(&orphans)?
        };
        *self = match next {
            0 => Reconcile::Done,
            c => Reconcile::Orphans { cursor: c },
        };
        Ok(Repaired {
            holes: 0,
            orphans: found,
        })
    }
}

/// Runs a whole reconciliation at once (inside one command).
pub fn reconcile_all(set: &RunSet) -> Result<Repaired> {
    let mut walk = Reconcile::start();
    let mut total = Repaired::default();
    while !walk.is_done() {
        let r = walk.step(set, false)?;
        total.holes += r.holes;
        total.orphans += r.orphans;
    }
    Ok(total)
}
