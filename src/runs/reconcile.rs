//! Bringing a run set's two keys back into agreement after other writers broke it:
//! "holes" (indexed ids without a document) leave the index, "strays" (documents whose id
//! is not indexed, e.g. left by a client-side `ZREMRANGEBYSCORE`) leave the data hash, and
//! a key whose other half is missing altogether goes as a whole.
//!
//! Whether something found unreferenced may go *now* is a `Judge`'s call: a command a
//! client runs on one set repairs at once (`AtOnce`); the sweep removes only what the module
//! has seen unreferenced for long enough (`runs::sweep`), because a writer that sends the
//! two keys in separate commands is briefly half-written by design.
//!
//! The walk is resumable in bounded steps so the sweep can spread it over time slices; each
//! step checks and removes in one go, so nothing a client added between steps is touched.

use super::server::{Order, RunSet};
use crate::error::Result;

/// Ids looked at per step.
pub const RECONCILE_BATCH: u64 = 256;

/// Something a walk found without its other half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// The index exists, the data hash does not.
    IndexAlone,
    /// The data hash exists, the index does not.
    DataAlone,
    /// An indexed id without a document.
    Hole(&'a [u8]),
    /// A document whose id is not indexed.
    Stray(&'a [u8]),
}

/// Decides whether what a walk found unreferenced may be removed now.
pub trait Judge {
    /// Seen without its other half now: may it go?
    fn unreferenced(&mut self, found: Found<'_>) -> bool;
    /// Seen with its other half now.
    fn referenced(&mut self, found: Found<'_>);
}

/// For a command a client runs on one set (ACTIVERUNS.EXPIRE): the repair happens now.
pub struct AtOnce;

impl Judge for AtOnce {
    fn unreferenced(&mut self, _found: Found<'_>) -> bool {
        true
    }

    fn referenced(&mut self, _found: Found<'_>) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Walking the index by rank from `next_rank`.
    Holes {
        next_rank: u64,
    },
    /// Walking the data hash with an HSCAN cursor for strays.
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

    /// Looks at up to `RECONCILE_BATCH` ids and advances; removes (or in a dry run,
    /// counts) what `judge` lets go.
    pub fn step(&mut self, set: &RunSet, dry_run: bool, judge: &mut dyn Judge) -> Result<Repaired> {
        match *self {
            Reconcile::Holes { next_rank } => self.step_holes(set, next_rank, dry_run, judge),
            Reconcile::Orphans { cursor } => self.step_orphans(set, cursor, dry_run, judge),
            Reconcile::Done => Ok(Repaired::default()),
        }
    }

    fn step_holes(
        &mut self,
        set: &RunSet,
        rank: u64,
        dry_run: bool,
        judge: &mut dyn Judge,
    ) -> Result<Repaired> {
        // Without a data hash every indexed id is a hole: the index goes as a whole.
        if !set.data_exists()? {
            *self = Reconcile::Done;
            let holes = set.count()?;
            if holes == 0 || !judge.unreferenced(Found::IndexAlone) {
                return Ok(Repaired::default());
            }
            if !dry_run {
                set.unlink_index()?;
            }
            return Ok(Repaired { holes, orphans: 0 });
        }
        let entries = set.ids_by_rank(rank, rank + RECONCILE_BATCH - 1, Order::Asc)?;
        if entries.is_empty() {
            *self = Reconcile::Orphans { cursor: 0 };
            return Ok(Repaired::default());
        }
        let ids: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let have = set.have_documents(&ids)?;
        let mut holes: Vec<&[u8]> = Vec::new();
        for (id, has_document) in ids.iter().zip(&have) {
            if *has_document {
                judge.referenced(Found::Hole(id));
            } else if judge.unreferenced(Found::Hole(id)) {
                holes.push(id);
            }
        }
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

    fn step_orphans(
        &mut self,
        set: &RunSet,
        cursor: u64,
        dry_run: bool,
        judge: &mut dyn Judge,
    ) -> Result<Repaired> {
        if !set.data_exists()? {
            *self = Reconcile::Done;
            return Ok(Repaired::default());
        }
        // Without an index every document is a stray: the hash goes as a whole.
        if !set.index_exists()? {
            *self = Reconcile::Done;
            if !judge.unreferenced(Found::DataAlone) {
                return Ok(Repaired::default());
            }
            let orphans = set.data_len()?;
            if !dry_run {
                set.unlink_data()?;
            }
            return Ok(Repaired { holes: 0, orphans });
        }
        let (next, fields) = set.scan_data_ids(cursor, RECONCILE_BATCH)?;
        let ids: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let scores = set.scores(&ids)?;
        let mut strays: Vec<&[u8]> = Vec::new();
        for (id, score) in ids.iter().zip(&scores) {
            if score.is_some() {
                judge.referenced(Found::Stray(id));
            } else if judge.unreferenced(Found::Stray(id)) {
                strays.push(id);
            }
        }
        // HSCAN may report a field twice; HDEL's count does not double count it.
        let found = if strays.is_empty() {
            0
        } else if dry_run {
            strays.len() as u64
        } else {
            set.data_remove(&strays)?
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

/// Runs a whole reconciliation at once (inside one command a client sent for this set).
pub fn reconcile_all(set: &RunSet) -> Result<Repaired> {
    let mut walk = Reconcile::start();
    let mut total = Repaired::default();
    while !walk.is_done() {
        let r = walk.step(set, false, &mut AtOnce)?;
        total.holes += r.holes;
        total.orphans += r.orphans;
    }
    Ok(total)
}
