//! ACTIVERUNS.*: a run set named by `<base>` kept in two keys, `<base>:index` (sorted set:
//! run id → score, the start time in Unix ms) and `<base>:data` (hash: run id → JSON).
//!
//! Every command keeps the two keys in agreement: a run is in both or in neither. Changes
//! are replicated as the explicit commands run here (`ZADD` with the chosen score, `HSET`,
//! `ZREM`, `HDEL`, `ZREMRANGEBYSCORE` with an explicit bound, `RENAME`, `PEXPIREAT`), never
//! as something that depends on the replica's clock or state.
//!
//! Ordering everywhere is the sorted set's own: by score, equal scores by id bytes
//! (ZRANGE order); DESC is its exact reverse (ZREVRANGE order).

mod commands;
mod migrate;
mod names;
mod page;
mod reconcile;
mod server;
mod sweep;
mod timestamp;

pub use commands::{cmd_add, cmd_count, cmd_del, cmd_expire, cmd_get};
pub use migrate::cmd_migrate;
pub use names::{validate_id, RunSetNames};
pub use page::{cmd_after, cmd_page};
pub use sweep::plan;

use crate::policy::{Action, KeyType, Rule};
use crate::sweep::work::Planned;

/// The planner of runs rules (registered with the sweep at load).
pub fn plan_rule(rule: &Rule, name: &[u8], key_type: KeyType) -> Planned {
    match &rule.action {
        Action::Runs(runs) => plan(runs, name, key_type),
        _ => Planned::Nothing,
    }
}
pub use timestamp::{ms_from_json, parse_rfc3339_ms};

/// Largest page PAGE and AFTER return: a page view, not an export (a page of 1000 runs of
/// ~1 KB is already a 1 MB reply).
pub const MAX_PAGE_SIZE: u64 = 1000;
