//! How much of an event-loop iteration a sliced job may take: what the server's own work
//! left of its hold, and when to sit an iteration out.

use std::cell::Cell;
use std::time::Duration;

use crate::eventloop;

/// A reply computed in an event-loop iteration is written only after the before-sleep hook,
/// and a request that arrives while the hook runs is read in the next iteration and answered
/// after the hook has run once more: a client can wait through two holds. Holding the loop
/// for half the budget per iteration keeps every client's wait within one budget.
pub const HOLDS_PER_WAIT: u64 = 2;
/// A share below this fraction of its hold is not worth a slice; when a job has sat out
/// `MAX_SKIPS_IN_A_ROW` iterations it gets this much anyway, so it progresses however busy
/// the server is.
const MIN_SHARE_DIVISOR: u64 = 4;
/// Iterations in a row a sliced job may sit out while the server is busy with its own work.
const MAX_SKIPS_IN_A_ROW: u32 = 2;

/// What is left of `hold_us` for the module in this event-loop iteration once the server's
/// own work is counted (clients' commands, the cron's rehashing and expiring): the module
/// fills the hold, it never stacks a whole hold on top of the server's work. A client's
/// wait can span this iteration and the one before it, so what the previous one took beyond
/// a hold is left out too. `None`: too little is left; sit this iteration out.
fn share_left(hold_us: u64, busy_us: u64, previous_us: u64, skipped: u32) -> Option<u64> {
    let left = left_of_hold(hold_us, busy_us, previous_us);
    match left >= floor_of(hold_us) {
        true => Some(left),
        false if skipped >= MAX_SKIPS_IN_A_ROW => Some(floor_of(hold_us)),
        false => None,
    }
}

fn left_of_hold(hold_us: u64, busy_us: u64, previous_us: u64) -> u64 {
    let overrun_before = previous_us.saturating_sub(hold_us);
    hold_us
        .saturating_sub(busy_us)
        .saturating_sub(overrun_before)
}

fn floor_of(hold_us: u64) -> u64 {
    (hold_us / MIN_SHARE_DIVISOR).max(1)
}

fn iteration_load_us() -> (u64, u64) {
    (
        eventloop::busy_this_iteration().as_micros() as u64,
        eventloop::previous_iteration().as_micros() as u64,
    )
}

/// One sliced job's claim on event-loop iterations: remembers how many it sat out.
pub(crate) struct IterationShare {
    skipped: Cell<u32>,
}

impl IterationShare {
    pub(crate) const fn new() -> IterationShare {
        IterationShare {
            skipped: Cell::new(0),
        }
    }

    /// This iteration's share of `hold_us` for the job, or None to sit it out.
    pub(crate) fn take(&self, hold_us: u64) -> Option<u64> {
        // The server cron's own work (rehashing, expiring) can take a millisecond or two:
        // a slice right before it would add to the same client's wait. Sitting out until
        // then is bounded by the cron's schedule, so it needs no count.
        if eventloop::cron_due_within(Duration::from_micros(hold_us * HOLDS_PER_WAIT)) {
            return None;
        }
        let (busy_us, previous_us) = iteration_load_us();
        let share = share_left(hold_us, busy_us, previous_us, self.skipped.get());
        self.skipped.set(match share {
            Some(_) => 0,
            None => self.skipped.get() + 1,
        });
        share
    }
}

/// The share of a job that runs from a module timer and cannot sit out (it would idle at
/// least a millisecond): never below the floor. `RETENTION.TRIM`, `RETENTION.JOBS CLEAN`.
pub fn share_of_iteration(hold_us: u64) -> u64 {
    let (busy_us, previous_us) = iteration_load_us();
    left_of_hold(hold_us, busy_us, previous_us).max(floor_of(hold_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_fills_what_the_server_left_of_its_hold() {
        assert_eq!(share_left(500, 0, 0, 0), Some(500));
        assert_eq!(share_left(500, 120, 0, 0), Some(380));
        assert_eq!(share_left(4_000, 1_000, 0, 0), Some(3_000));
        // A previous iteration within its hold leaves this one alone.
        assert_eq!(share_left(500, 0, 500, 0), Some(500));
    }

    #[test]
    fn a_long_previous_iteration_shortens_this_one() {
        // A client that arrived during the previous iteration waits through this one too.
        assert_eq!(share_left(500, 50, 700, 0), Some(250));
        // The cron's rehashing took 2 ms: nothing is left of this iteration's hold.
        assert_eq!(share_left(500, 0, 2_000, 0), None);
    }

    #[test]
    fn a_job_sits_out_at_most_two_busy_iterations_in_a_row() {
        assert_eq!(share_left(500, 2_000, 0, 0), None);
        assert_eq!(share_left(500, 2_000, 0, 1), None);
        // Then it takes a quarter of its hold so it progresses however busy the server is.
        assert_eq!(share_left(500, 2_000, 0, 2), Some(125));
        // Slivers are not worth a slice.
        assert_eq!(share_left(500, 400, 0, 0), None);
        assert_eq!(share_left(1, 5, 0, 2), Some(1));
    }

    #[test]
    fn sitting_out_is_counted_per_job_and_reset_by_a_slice() {
        let share = IterationShare::new();
        share.skipped.set(1);
        // Outside a server the loop has no recorded work: the whole hold is left.
        assert_eq!(share.take(500), Some(500));
        assert_eq!(share.skipped.get(), 0);
    }
}
