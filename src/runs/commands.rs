//! ACTIVERUNS.ADD / DEL / GET / COUNT / EXPIRE.

use std::collections::HashSet;

use redis_module::{Context, RedisString, RedisValue};

use super::names::{shown, validate_id};
use super::reconcile::reconcile_all;
use super::server::RunSet;
use super::timestamp::MAX_MS;
use crate::acl::KeyAccess;
use crate::args::{parse_i64, Args, OptionSet};
use crate::error::{Error, Result};
use crate::policy::duration::parse_duration_ms;
use crate::time::now_ms;

/// `ACTIVERUNS.ADD <base> <id> <json> [SCORE <ms>]` → 1 new, 0 updated.
pub fn cmd_add(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 4 && args.len() != 6 {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, "ACTIVERUNS.ADD")?;
    let base = args.next_raw("a run-set base")?;
    let id = args.next_raw("a run id")?;
    let doc = args.next_raw("a JSON document")?;
    let mut score_ms = None;
    let mut seen = OptionSet::default();
    while args.next_option(&mut seen, &["SCORE"])?.is_some() {
        score_ms = Some(parse_score_ms(&args.next_raw("SCORE <ms>")?)?);
    }
    args.done()?;
    validate_id(id.as_slice())?;
    validate_json(doc.as_slice())?;
    let set = RunSet::open(ctx, base.as_slice(), KeyAccess::Update)?;
    // The master's clock, written down: the replica gets the same number.
    let score_ms = score_ms.unwrap_or_else(now_ms);
    let added = set.index_add(&[(score_ms as f64, id.as_slice())], false)?;
    set.data_set(&[(id.as_slice(), doc.as_slice())])?;
    Ok(RedisValue::Integer(added as i64))
}

/// `ACTIVERUNS.DEL <base> <id> [<id> ...]` → how many runs were removed.
///
/// Any id bytes are accepted here (not only ids ADD would store) so that leftovers other
/// tools wrote can still be removed.
pub fn cmd_del(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() < 3 {
        return Err(Error::WrongArity);
    }
    let base = args[1].as_slice();
    let mut seen = HashSet::new();
    let ids: Vec<&[u8]> = args[2..]
        .iter()
        .map(RedisString::as_slice)
        .filter(|id| seen.insert(*id))
        .collect();
    let set = RunSet::open(ctx, base, KeyAccess::Delete)?;
    let indexed = set.scores(&ids)?;
    let documented = set.have_documents(&ids)?;
    let in_index: Vec<&[u8]> = pick(&ids, indexed.iter().map(Option::is_some));
    let in_data: Vec<&[u8]> = pick(&ids, documented.iter().copied());
    let removed = indexed
        .iter()
        .zip(&documented)
        .filter(|(i, d)| i.is_some() || **d)
        .count();
    if !in_index.is_empty() {
        set.index_remove(&in_index)?;
    }
    if !in_data.is_empty() {
        set.data_remove(&in_data)?;
    }
    Ok(RedisValue::Integer(removed as i64))
}

/// `ACTIVERUNS.GET <base> <id>` → the JSON document, or nil when the run is not in the set.
pub fn cmd_get(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 3 {
        return Err(Error::WrongArity);
    }
    let set = RunSet::open(ctx, args[1].as_slice(), KeyAccess::Read)?;
    let id = args[2].as_slice();
    // The index decides membership, as it does for PAGE and COUNT.
    if set.score(id)?.is_none() {
        return Ok(RedisValue::Null);
    }
    Ok(match set.documents(&[id])?.pop().flatten() {
        Some(doc) => RedisValue::BulkRedisString(doc),
        None => RedisValue::Null,
    })
}

/// `ACTIVERUNS.COUNT <base>` → number of runs.
pub fn cmd_count(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 2 {
        return Err(Error::WrongArity);
    }
    let set = RunSet::open(ctx, args[1].as_slice(), KeyAccess::Read)?;
    Ok(RedisValue::Integer(set.count()? as i64))
}

/// `ACTIVERUNS.EXPIRE <base> <max_age>` → how many runs were older than `max_age` and
/// were removed from both keys.
pub fn cmd_expire(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 3 {
        return Err(Error::WrongArity);
    }
    let max_age_ms = std::str::from_utf8(args[2].as_slice())
        .map_err(|_| "not a duration".to_string())
        .and_then(parse_duration_ms)
        .map_err(|e| Error::arg(format!("max_age: {}", shown(e.as_bytes()))))?;
    // Removes runs and leftovers; what it reads is only counted, never returned.
    let set = RunSet::open(ctx, args[1].as_slice(), KeyAccess::Delete)?;
    let expired = expire_older_than(&set, now_ms() - max_age_ms)?;
    // Leftovers of other writers (a client-side ZREMRANGEBYSCORE leaves its JSON behind):
    // only a set whose two keys disagree in size can hold any, so only then is it walked.
    if set.count()? != set.data_len()? {
        reconcile_all(&set)?;
    }
    Ok(RedisValue::Integer(expired as i64))
}

/// Removes every run with a score below `cutoff_ms` from both keys; returns how many.
pub fn expire_older_than(set: &RunSet, cutoff_ms: i64) -> Result<u64> {
    use super::server::{Bound, Order};
    let expired = set.ids_by_score(
        Bound::Inclusive(f64::NEG_INFINITY),
        Bound::Exclusive(cutoff_ms as f64),
        Order::Asc,
        0,
        None,
    )?;
    if expired.is_empty() {
        return Ok(0);
    }
    // One compact, deterministic command for the index; the data hash gets exactly the
    // ids that command removes (read above, in the same atomic command).
    let removed = set.index_remove_older_than(cutoff_ms)?;
    let ids: Vec<&[u8]> = expired.iter().map(Vec::as_slice).collect();
    set.data_remove(&ids)?;
    Ok(removed)
}

fn pick<'a>(ids: &[&'a [u8]], keep: impl Iterator<Item = bool>) -> Vec<&'a [u8]> {
    ids.iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(id, _)| *id)
        .collect()
}

/// A start time in Unix ms: a non-negative integer no later than year 9999 (scores are
/// doubles; below 2^53 they are exact).
pub fn parse_score_ms(arg: &RedisString) -> Result<i64> {
    std::str::from_utf8(arg.as_slice())
        .ok()
        .and_then(parse_i64)
        .filter(|ms| (0..=MAX_MS).contains(ms))
        .ok_or_else(|| {
            Error::arg(format!(
                "SCORE must be a start time in Unix milliseconds between 0 and {MAX_MS} (got '{}')",
                shown(arg.as_slice())
            ))
        })
}

/// The document must be JSON; it is parsed without building a tree.
pub fn validate_json(doc: &[u8]) -> Result<()> {
    serde_json::from_slice::<serde::de::IgnoredAny>(doc)
        .map(|_| ())
        .map_err(|e| Error::arg(format!("invalid JSON document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_validated() {
        assert!(validate_json(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(validate_json(b"42").is_ok());
        for bad in [&b""[..], b"{", b"{\"a\":1}}", b"{'a':1}", b"\xff", b"[1,]"] {
            assert!(validate_json(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(validate_json(deep.as_bytes()).is_err());
    }
}
