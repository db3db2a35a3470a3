//! `RETENTION.POLICY`, `RETENTION.RELOAD`, `RETENTION.STATS GET|RESET`.

use std::collections::BTreeMap;

use redis_module::{Context, RedisString, RedisValue};

use crate::acl;
use crate::args::{subcommand_args, Args};
use crate::error::Result;
use crate::state;
use crate::stats::{self, key};

/// `RETENTION.POLICY`: the rules in force as normalized JSON, their file and load time.
pub fn cmd_policy(_ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    Args::new(args, "RETENTION.POLICY")?.done()?;
    Ok(state::with_policy(|p| {
        let mut m = BTreeMap::new();
        m.insert(key("source"), RedisValue::BulkString(p.source.clone()));
        m.insert(key("loaded_at_ms"), RedisValue::Integer(p.loaded_at_ms));
        m.insert(
            key("rule_count"),
            RedisValue::Integer(p.policy.rules.len() as i64),
        );
        m.insert(
            key("policy"),
            RedisValue::BulkString(p.policy.to_json().to_string()),
        );
        RedisValue::OrderedMap(m)
    }))
}

/// `RETENTION.RELOAD`: re-reads the policy file; on error the old policy stays.
pub fn cmd_reload(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    Args::new(args, "RETENTION.RELOAD")?.done()?;
    acl::require_admin(ctx, "RETENTION.RELOAD")?;
    state::reload()?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `RETENTION.STATS GET`: the counters since load or the last reset.
pub fn cmd_stats_get(_ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    subcommand_args(args, "RETENTION.STATS GET")?.done()?;
    Ok(stats::stats_reply(&stats::snapshot()))
}

/// `RETENTION.STATS RESET`: every counter back to zero.
pub fn cmd_stats_reset(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    subcommand_args(args, "RETENTION.STATS RESET")?.done()?;
    // Redis 7.0 cannot put a module command in @admin: the module checks it.
    acl::require_admin(ctx, "RETENTION.STATS RESET")?;
    stats::reset();
    Ok(RedisValue::SimpleStringStatic("OK"))
}
