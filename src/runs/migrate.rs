//! ACTIVERUNS.MIGRATE: a legacy one-hash run set (id → JSON) into index + data.
//!
//! All-or-nothing: every legacy entry is checked (a valid run id, valid JSON) before
//! anything is written. When the data hash does not exist yet (the usual case) the legacy
//! hash simply becomes it with `RENAME` (O(1), keeps its TTL) and only the index is built;
//! otherwise the entries the run set does not have yet are copied in. Runs already in the
//! index win over legacy entries with the same id. The legacy key is gone afterwards, so
//! running it again is a no-op.

use std::cell::RefCell;
use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, RedisString, RedisValue, ScanKeyCursor};

use super::commands::validate_json;
use super::names::{shown, validate_id};
use super::server::{key_facts, write_call, RunSet};
use super::timestamp::{json_field, ms_from_json};
use crate::acl::{require_keys, KeyAccess};
use crate::args::{Args, OptionSet};
use crate::error::{Error, Result};
use crate::policy::KeyType;
use crate::time::now_ms;
use crate::write::Asker;

/// One legacy entry, checked.
struct LegacyRun {
    id: Vec<u8>,
    score_ms: i64,
    /// The score came from the document (not the migration time).
    scored_from_field: bool,
    /// Kept only when it has to be copied (the data hash already exists).
    doc: Option<Vec<u8>>,
}

#[derive(Default)]
struct Outcome {
    migrated: u64,
    kept_existing: u64,
    score_from_field: u64,
    score_now: u64,
    expire_at_ms: Option<i64>,
}

/// `ACTIVERUNS.MIGRATE <legacy-hash> <base> [SCOREFIELD <json-field>]`
/// → a map: `migrated`, `kept_existing`, `score_from_field`, `score_now` (counts) and
/// `expire_at_ms` (the run set's expire time, nil without one).
pub fn cmd_migrate(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 3 && args.len() != 5 {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, "ACTIVERUNS.MIGRATE")?;
    let legacy = args.next_raw("a legacy hash")?;
    let base = args.next_raw("a run-set base")?;
    let mut score_field = None;
    let mut seen = OptionSet::default();
    while args.next_option(&mut seen, &["SCOREFIELD"])?.is_some() {
        score_field = Some(args.next_str("SCOREFIELD <json-field>")?);
    }
    args.done()?;
    // Both keys are written (the index built, the data hash created or added to).
    let set = RunSet::open(ctx, base.as_slice(), KeyAccess::Update)?;
    let legacy_name = legacy.as_slice();
    if legacy_name == set.names.index.as_slice() || legacy_name == set.names.data.as_slice() {
        return Err(Error::arg(
            "the legacy hash must not be one of the run set's own keys (<base>:index, <base>:data)",
        ));
    }
    // Its documents are read and the key goes (renamed away or unlinked).
    require_keys(ctx, &[legacy_name], KeyAccess::Read)?;
    require_keys(ctx, &[legacy_name], KeyAccess::Delete)?;
    let outcome = match key_facts(ctx, legacy_name) {
        None => Outcome::default(),
        Some(facts) if facts.key_type != Some(KeyType::Hash) => return Err(Error::WrongType),
        Some(facts) => migrate(
            ctx,
            &set,
            &legacy,
            score_field.as_deref(),
            facts.abs_expire_ms,
        )?,
    };
    Ok(outcome_reply(&outcome))
}

fn migrate(
    ctx: &Context,
    set: &RunSet,
    legacy: &RedisString,
    score_field: Option<&str>,
    legacy_expire_ms: Option<i64>,
) -> Result<Outcome> {
    let fresh = !set.index_exists()?;
    let index_expire_ms = set.index_expire_ms()?;
    let copy = set.data_exists()?;
    let now = now_ms();
    let runs = read_legacy(ctx, legacy, score_field, now, copy)?;
    let mut outcome = Outcome {
        score_from_field: runs.iter().filter(|r| r.scored_from_field).count() as u64,
        ..Outcome::default()
    };
    outcome.score_now = runs.len() as u64 - outcome.score_from_field;

    let ids: Vec<&[u8]> = runs.iter().map(|r| r.id.as_slice()).collect();
    let indexed = set.scores(&ids)?;
    let new_runs: Vec<&LegacyRun> = runs
        .iter()
        .zip(&indexed)
        .filter(|(_, s)| s.is_none())
        .map(|(r, _)| r)
        .collect();
    if copy {
        let docs: Vec<(&[u8], &[u8])> = new_runs
            .iter()
            .filter_map(|r| r.doc.as_deref().map(|d| (r.id.as_slice(), d)))
            .collect();
        set.data_set(&docs)?;
        write_call(ctx, Asker::Caller, "UNLINK", &[legacy.as_slice()])?;
    } else {
        // The legacy documents become the data hash as they are (with the legacy TTL).
        write_call(
            ctx,
            Asker::Caller,
            "RENAME",
            &[legacy.as_slice(), &set.names.data],
        )?;
    }
    let entries: Vec<(f64, &[u8])> = new_runs
        .iter()
        .map(|r| (r.score_ms as f64, r.id.as_slice()))
        .collect();
    outcome.migrated = set.index_add(&entries, true)?;
    outcome.kept_existing = runs.len() as u64 - outcome.migrated;

    // Both keys must expire together or one would outlive the other full of orphans: a
    // new run set takes the legacy key's TTL, an existing one keeps its index's.
    let expire_at = if fresh {
        legacy_expire_ms
    } else {
        index_expire_ms
    };
    align_expiry(set, expire_at)?;
    outcome.expire_at_ms = expire_at;
    Ok(outcome)
}

fn align_expiry(set: &RunSet, at_ms: Option<i64>) -> Result<()> {
    if set.index_exists()? && set.index_expire_ms()? != at_ms {
        set.set_expire(false, at_ms)?;
    }
    if set.data_exists()? && set.data_expire_ms()? != at_ms {
        set.set_expire(true, at_ms)?;
    }
    Ok(())
}

/// Reads and checks every legacy entry; the first bad one fails the whole migration.
fn read_legacy(
    ctx: &Context,
    legacy: &RedisString,
    score_field: Option<&str>,
    now: i64,
    keep_docs: bool,
) -> Result<Vec<LegacyRun>> {
    let key = ctx.open_key(legacy);
    if key.is_null() {
        return Ok(Vec::new());
    }
    let cursor = ScanKeyCursor::new(key);
    let runs = RefCell::new(Vec::new());
    let failure = RefCell::new(None);
    let name = shown(legacy.as_slice());
    // The callback runs inside the server (extern "C"): it must not panic, only record.
    let mut visit =
        |_key: &redis_module::key::RedisKey, field: &RedisString, value: &RedisString| {
            if failure.borrow().is_some() {
                return;
            }
            match check_entry(
                field.as_slice(),
                value.as_slice(),
                score_field,
                now,
                keep_docs,
            ) {
                Ok(run) => runs.borrow_mut().push(run),
                Err(e) => *failure.borrow_mut() = Some(entry_error(&name, field.as_slice(), &e)),
            }
        };
    while cursor.scan(&mut visit) {
        if failure.borrow().is_some() {
            break;
        }
    }
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    Ok(runs.into_inner())
}

fn entry_error(legacy: &str, field: &[u8], e: &Error) -> Error {
    let reason = e.to_string();
    Error::arg(format!(
        "legacy hash '{legacy}' field '{}': {}; fix or remove that entry (HDEL) and run MIGRATE again - nothing was migrated",
        shown(field),
        reason.trim_start_matches("ERR ")
    ))
}

fn check_entry(
    id: &[u8],
    doc: &[u8],
    score_field: Option<&str>,
    now: i64,
    keep_doc: bool,
) -> Result<LegacyRun> {
    validate_id(id)?;
    let found_ms = match score_field {
        None => {
            validate_json(doc)?;
            None
        }
        Some(field) => json_field(doc, field)
            .map_err(|e| Error::arg(format!("invalid JSON document: {e}")))?
            .as_ref()
            .and_then(ms_from_json),
    };
    Ok(LegacyRun {
        id: id.to_vec(),
        score_ms: found_ms.unwrap_or(now),
        scored_from_field: found_ms.is_some(),
        doc: keep_doc.then(|| doc.to_vec()),
    })
}

fn outcome_reply(o: &Outcome) -> RedisValue {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: i64| {
        m.insert(RedisValueKey::String(k.to_string()), RedisValue::Integer(v));
    };
    put("migrated", o.migrated as i64);
    put("kept_existing", o.kept_existing as i64);
    put("score_from_field", o.score_from_field as i64);
    put("score_now", o.score_now as i64);
    // nil when the run set has no TTL, as EXPLAIN says it.
    let expire_at = o.expire_at_ms.map_or(RedisValue::Null, RedisValue::Integer);
    m.insert(RedisValueKey::String("expire_at_ms".into()), expire_at);
    RedisValue::OrderedMap(m)
}
