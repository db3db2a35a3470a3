//! Collection trimming (streams, lists, sorted sets). Placeholder until issue 5.

use crate::policy::{KeyType, TrimAction};
use crate::sweep::work::Planned;

pub fn plan(
    _trim: &TrimAction,
    _rule_type: Option<KeyType>,
    _name: &[u8],
    _key_type: KeyType,
) -> Planned {
    Planned::Nothing
}

/// `RETENTION.TRIM <key> MAXLEN <n> | MAXAGE <duration> [DRYRUN]` (issue 5).
pub fn cmd_trim(
    _ctx: &redis_module::Context,
    _args: Vec<redis_module::RedisString>,
) -> crate::error::Result<redis_module::RedisValue> {
    Err(crate::error::Error::arg(
        "RETENTION.TRIM is not implemented yet",
    ))
}
