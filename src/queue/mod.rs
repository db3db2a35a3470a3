//! Queue-aware retention for BullMQ and Bull. Placeholder until issue 6: a queue rule
//! only protects its keys from later rules.

use crate::policy::{KeyType, QueueAction};
use crate::sweep::work::Planned;

pub fn plan(_queue: &QueueAction, _name: &[u8], _key_type: KeyType) -> Planned {
    Planned::Nothing
}

/// `RETENTION.JOBS <prefix> <queue> COUNTS | CLEAN ...` (issue 6).
pub fn cmd_jobs(
    _ctx: &redis_module::Context,
    _args: Vec<redis_module::RedisString>,
) -> crate::error::Result<redis_module::RedisValue> {
    Err(crate::error::Error::arg(
        "RETENTION.JOBS is not implemented yet",
    ))
}
