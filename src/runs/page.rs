//! ACTIVERUNS.PAGE (by position) and ACTIVERUNS.AFTER (by keyset): one round trip,
//! O(log N + size), and never a hole: an indexed id without a document is removed from the
//! index (replicated as ZREM) and the window is read again.

use redis_module::{Context, RedisString, RedisValue};

use super::names::shown;
use super::server::{Bound, Entry, Order, RunSet};
use super::MAX_PAGE_SIZE;
use crate::args::{parse_i64, Args, OptionSet};
use crate::error::{Error, Result};

/// Re-reads of a window after repairing holes in it. Each round removes every hole it saw,
/// so a page comes back short only when the index is mostly holes; the next call goes on.
const MAX_REPAIR_ROUNDS: usize = 4;

/// `ACTIVERUNS.PAGE <base> <page> <size> [ASC|DESC] [WITHSCORES]`
/// → `[total, [id, json, (score,) ...]]`, page 1 = newest (DESC, the default).
pub fn cmd_page(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if !(4..=6).contains(&args.len()) {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, "ACTIVERUNS.PAGE")?;
    let base = args.next_raw("a run-set base")?;
    let page = positive(&args.next_raw("a page number")?, "page", i64::MAX as u64)?;
    let size = positive(&args.next_raw("a page size")?, "size", MAX_PAGE_SIZE)?;
    let mut order = None;
    let mut with_scores = false;
    let mut seen = OptionSet::default();
    while let Some(option) = args.next_option(&mut seen, &["ASC", "DESC", "WITHSCORES"])? {
        match option {
            "WITHSCORES" => with_scores = true,
            word => order = Some(order_word(word, order)?),
        }
    }
    let order = order.unwrap_or(Order::Desc);
    let set = RunSet::open(ctx, base.as_slice())?;
    let start = (page - 1).saturating_mul(size);
    if start >= set.count()? {
        return Ok(reply(set.count()?, &[], with_scores));
    }
    let stop = start.saturating_add(size - 1);
    let rows = rows_with_repair(&set, |set| set.range_by_rank(start, stop, order))?;
    Ok(reply(set.count()?, &rows, with_scores))
}

/// `ACTIVERUNS.AFTER <base> <score> <id> <size> [ASC|DESC]`
/// → `[total, [id, json, score, ...]]`: the `size` runs that follow the position
/// (score, id) in the given order (DESC by default), whether or not that run still exists.
/// Scores are always included: the last one is the next call's position. Start a walk
/// with `+inf` (DESC) or `-inf` (ASC) and any id.
pub fn cmd_after(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if !(5..=6).contains(&args.len()) {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, "ACTIVERUNS.AFTER")?;
    let base = args.next_raw("a run-set base")?;
    let score = position_score(&args.next_raw("a score")?)?;
    let marker = args.next_raw("an id")?;
    let size = positive(&args.next_raw("a size")?, "size", MAX_PAGE_SIZE)?;
    let mut seen = OptionSet::default();
    let order = match args.next_option(&mut seen, &["ASC", "DESC"])? {
        Some(word) => order_word(word, None)?,
        None => Order::Desc,
    };
    args.done()?;
    let set = RunSet::open(ctx, base.as_slice())?;
    let marker = marker.as_slice();
    let rows = rows_with_repair(&set, |set| window_after(set, score, marker, size, order))?;
    Ok(reply(set.count()?, &rows, true))
}

fn order_word(word: &str, already: Option<Order>) -> Result<Order> {
    if already.is_some() {
        return Err(Error::arg("give only one of ASC and DESC"));
    }
    Ok(if word == "ASC" {
        Order::Asc
    } else {
        Order::Desc
    })
}

/// The `size` entries strictly after (score, marker) in `order`.
fn window_after(
    set: &RunSet,
    score: f64,
    marker: &[u8],
    size: u64,
    order: Order,
) -> Result<Vec<Entry>> {
    // Usual case: the marker is the last run of the previous page and is still there.
    if set.score(marker)? == Some(score) {
        if let Some(rank) = set.rank(marker, order)? {
            return set.range_by_rank(rank + 1, rank + size, order);
        }
    }
    // The marker left (or moved): continue by value. First the runs with the same score
    // that sort after the marker, then the strictly later scores.
    let ties = set.range_by_score(
        Bound::Inclusive(score),
        Bound::Inclusive(score),
        order,
        0,
        None,
    )?;
    let mut out: Vec<Entry> = ties
        .into_iter()
        .filter(|e| match order {
            Order::Asc => e.id.as_slice() > marker,
            Order::Desc => e.id.as_slice() < marker,
        })
        .take(size as usize)
        .collect();
    let missing = size - out.len() as u64;
    if missing > 0 {
        let end = match order {
            Order::Asc => f64::INFINITY,
            Order::Desc => f64::NEG_INFINITY,
        };
        out.extend(set.range_by_score(
            Bound::Exclusive(score),
            Bound::Inclusive(end),
            order,
            0,
            Some(missing),
        )?);
    }
    Ok(out)
}

/// An entry and its document.
struct Row {
    entry: Entry,
    doc: RedisString,
}

/// Reads the window and the documents of its ids; ids without a document are removed from
/// the index and the window is read again (the window function sees the repaired index).
fn rows_with_repair(
    set: &RunSet,
    window: impl Fn(&RunSet) -> Result<Vec<Entry>>,
) -> Result<Vec<Row>> {
    let mut round = 0;
    loop {
        let entries = window(set)?;
        let ids: Vec<&[u8]> = entries.iter().map(|e| e.id.as_slice()).collect();
        let docs = set.documents(&ids)?;
        let holes: Vec<&[u8]> = ids
            .iter()
            .zip(&docs)
            .filter(|(_, d)| d.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !holes.is_empty() {
            if !set.data_exists()? {
                // Every indexed id is a hole: one UNLINK instead of ZREMs page by page.
                set.unlink_index()?;
                return Ok(Vec::new());
            }
            set.index_remove(&holes)?;
        }
        round += 1;
        if holes.is_empty() || round > MAX_REPAIR_ROUNDS {
            return Ok(entries
                .into_iter()
                .zip(docs)
                .filter_map(|(entry, doc)| doc.map(|doc| Row { entry, doc }))
                .collect());
        }
    }
}

fn reply(total: u64, rows: &[Row], with_scores: bool) -> RedisValue {
    let per_row = if with_scores { 3 } else { 2 };
    let mut items = Vec::with_capacity(rows.len() * per_row);
    for row in rows {
        items.push(RedisValue::StringBuffer(row.entry.id.clone()));
        items.push(RedisValue::BulkRedisString(row.doc.clone()));
        if with_scores {
            items.push(RedisValue::Integer(score_reply(row.entry.score)));
        }
    }
    RedisValue::Array(vec![
        RedisValue::Integer(total as i64),
        RedisValue::Array(items),
    ])
}

/// Scores written by this module are integer ms; a fractional score written by another
/// tool is shown rounded down (and ±inf saturates).
fn score_reply(score: f64) -> i64 {
    score.floor() as i64
}

/// An integer in 1..=max.
fn positive(arg: &RedisString, what: &str, max: u64) -> Result<u64> {
    let text = shown(arg.as_slice());
    parse_i64(&text)
        .filter(|n| *n >= 1 && (*n as u64) <= max)
        .map(|n| n as u64)
        .ok_or_else(|| {
            let range = match max {
                m if m == i64::MAX as u64 => "a positive integer".to_string(),
                m => format!("an integer from 1 to {m}"),
            };
            Error::arg(format!("{what} must be {range} (got '{text}')"))
        })
}

/// An integer score (Unix ms), or `+inf`/`-inf` to start a walk from either end.
fn position_score(arg: &RedisString) -> Result<f64> {
    let text = shown(arg.as_slice());
    match text.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => return Ok(f64::INFINITY),
        "-inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    parse_i64(&text)
        .filter(|n| n.unsigned_abs() < (1 << 53))
        .map(|n| n as f64)
        .ok_or_else(|| {
            Error::arg(format!(
                "score must be an integer (the score of the last run seen) or +inf/-inf (got '{text}')"
            ))
        })
}
