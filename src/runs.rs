//! ACTIVERUNS.*: an atomic sorted-set run index (`<base>:index`) plus data hash (`<base>:data`).
//! (placeholder: implemented in issue 7)

use redis_module::{Context, RedisString, RedisValue};

use crate::error::{Error, Result};

fn not_yet() -> Result<RedisValue> {
    Err(Error::arg("ACTIVERUNS commands are not implemented yet"))
}

pub fn cmd_add(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_del(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_get(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_page(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_after(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_count(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_expire(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}
pub fn cmd_migrate(_ctx: &Context, _args: Vec<RedisString>) -> Result<RedisValue> {
    not_yet()
}

/// Background expiry of a run set governed by a `runs` rule (issue 7).
pub fn plan(
    _runs: &crate::policy::RunsAction,
    _name: &[u8],
    _key_type: crate::policy::KeyType,
) -> crate::sweep::work::Planned {
    crate::sweep::work::Planned::Nothing
}
