//! ACTIVERUNS.PAGE (by position) and ACTIVERUNS.AFTER (by keyset): one round trip,
//! O(log N + size), and never a hole: an indexed id without a document is left out of the
//! reply.
//!
//! Both are reads and change nothing, wherever they run: a reader's rights are checked
//! for reading only, and the name it pages may not even be a run set (an application's
//! own `search:index`). Holes are removed by writes (`ACTIVERUNS.EXPIRE`) and by the
//! `runs` rules, which watch them across passes first.

use redis_module::{Context, RedisString, RedisValue};

use super::names::shown;
use super::server::{reply_page, Bound, Item, Order, Row, RunSet};
use super::MAX_PAGE_SIZE;
use crate::acl::KeyAccess;
use crate::args::{parse_i64, Args, OptionSet};
use crate::error::{Error, Result};

/// Further reads past a window whose holes left the page short. Holes come in streaks
/// (a writer that lost a batch of documents), so each read is at least `MIN_REFILL_READ`
/// entries; past `MAX_REFILL_ROUNDS` reads the page comes back short.
const MAX_REFILL_ROUNDS: usize = 4;
const MIN_REFILL_READ: u64 = 128;
/// Up to this rank PAGE walks the index with the key API (moving an iterator is a pointer
/// step); deeper pages use ZRANGE's O(log N) rank lookup.
const MAX_ITER_SKIP: u64 = 1000;
/// Equal-score entries AFTER walks past before it looks the marker's rank up instead.
const MAX_TIES_WALKED: u64 = 64;

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
    let set = RunSet::open(ctx, base.as_slice(), KeyAccess::Read)?;
    let start = (page - 1).saturating_mul(size);
    let total = set.count()?;
    let rows = match start < total {
        true => fill(&set, window_by_rank(&set, start, size, order)?, size, order)?,
        false => Vec::new(),
    };
    reply_page(ctx, total, &rows, with_scores);
    Ok(RedisValue::NoReply)
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
    let set = RunSet::open(ctx, base.as_slice(), KeyAccess::Read)?;
    let marker = marker.as_slice();
    let rows = fill(
        &set,
        window_after(&set, score, marker, size, order)?,
        size,
        order,
    )?;
    reply_page(ctx, set.count()?, &rows, true);
    Ok(RedisValue::NoReply)
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

/// The window of PAGE: `size` entries from rank `start`.
fn window_by_rank(set: &RunSet, start: u64, size: u64, order: Order) -> Result<Vec<Item>> {
    if start <= MAX_ITER_SKIP {
        return Ok(set.view()?.items_from_end(start, size, order));
    }
    // Deep pages: the skiplist finds a rank in O(log N), which only ZRANGE exposes.
    let ids = set.ids_by_rank(start, start + size - 1, order)?;
    let view = set.view()?;
    Ok(ids
        .iter()
        .filter_map(|id| {
            let id = RedisString::create_from_slice(set.ctx_ptr(), id);
            view.score(&id).map(|score| Item { id, score })
        })
        .collect())
}

/// The window of AFTER: the `size` entries strictly after (score, marker) in `order`.
fn window_after(
    set: &RunSet,
    score: f64,
    marker: &[u8],
    size: u64,
    order: Order,
) -> Result<Vec<Item>> {
    // Usual case: walk from the score, past the few runs that share it.
    if let Some(items) = set
        .view()?
        .items_after(score, marker, size, order, MAX_TIES_WALKED)
    {
        return Ok(items);
    }
    // Many runs share the score (e.g. migrated without a start time): any reader could make
    // a walk past them cost O(ties), so the position is found by rank in O(log N) steps.
    let start = rank_after_ties(set, score, marker, order)?;
    window_by_rank(set, start, size, order)
}

/// The rank in `order` of the first entry after (score, marker), `score` being shared by
/// many entries.
fn rank_after_ties(set: &RunSet, score: f64, marker: &[u8], order: Order) -> Result<u64> {
    if set.score(marker)? == Some(score) {
        if let Some(rank) = set.rank(marker, order)? {
            return Ok(rank + 1);
        }
    }
    // The marker left. Equal scores sort by id bytes, so the ties form a sorted run of ASC
    // ranks and the marker's place among them is bisected, one ZRANGE (O(log N)) a probe.
    let below = set.count_between(Bound::Inclusive(f64::NEG_INFINITY), Bound::Exclusive(score))?;
    let ties = set.count_between(Bound::Inclusive(score), Bound::Inclusive(score))?;
    let first_past = first_rank_where(below, below + ties, |rank| {
        // A rank with no id (none here: nothing changes during the command) counts as past.
        Ok(set.id_at_rank(rank)?.is_none_or(|id| match order {
            Order::Asc => id.as_slice() > marker,
            Order::Desc => id.as_slice() >= marker,
        }))
    })?;
    Ok(match order {
        Order::Asc => first_past,
        // DESC walks down from the last ASC rank before the marker (first_past - 1).
        Order::Desc => set.count()?.saturating_sub(first_past),
    })
}

/// The first rank in `lo..hi` where `past` holds, `hi` when none does; `past` must be false
/// then true along the ranks (a sorted run).
fn first_rank_where(
    mut lo: u64,
    mut hi: u64,
    mut past: impl FnMut(u64) -> Result<bool>,
) -> Result<u64> {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if past(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The runs of `window` (the first `size` entries of a page), holes left out. When holes
/// made it short and the index goes on, the entries after the window's last one are read
/// too, a bounded number of times, so that a page shows up to `size` runs where they exist.
/// A PAGE filled this way may show a run again on the next page (its window starts at its
/// own rank, holes included); AFTER, which goes on from the last run shown, never does.
fn fill(set: &RunSet, window: Vec<Item>, size: u64, order: Order) -> Result<Vec<Row>> {
    if !set.data_exists()? {
        return Ok(Vec::new());
    }
    let (mut window, mut asked) = (window, size);
    let mut rows = Vec::with_capacity(window.len());
    for round in 0..=MAX_REFILL_ROUNDS {
        let index_ended = (window.len() as u64) < asked;
        let last = window.last().map(|i| (i.score, i.id.as_slice().to_vec()));
        rows.extend(set.rows_of(window)?);
        let Some((score, id)) = last else { break };
        if rows.len() as u64 >= size || index_ended || round == MAX_REFILL_ROUNDS {
            break;
        }
        asked = size.max(MIN_REFILL_READ);
        window = window_after(set, score, &id, asked, order)?;
    }
    rows.truncate(size as usize);
    Ok(rows)
}

/// An integer in 1..=max.
fn positive(arg: &RedisString, what: &str, max: u64) -> Result<u64> {
    std::str::from_utf8(arg.as_slice())
        .ok()
        .and_then(parse_i64)
        .filter(|n| *n >= 1 && (*n as u64) <= max)
        .map(|n| n as u64)
        .ok_or_else(|| {
            let text = shown(arg.as_slice());
            let range = match max {
                m if m == i64::MAX as u64 => "a positive integer".to_string(),
                m => format!("an integer from 1 to {m}"),
            };
            Error::arg(format!("{what} must be {range} (got '{text}')"))
        })
}

/// A score as AFTER replies it: integer ms, or exact text such as `1.5` or `inf` for a score
/// another writer left; `+inf`/`-inf` start a walk from either end.
fn position_score(arg: &RedisString) -> Result<f64> {
    let bytes = arg.as_slice();
    let integer = std::str::from_utf8(bytes).ok().and_then(parse_i64);
    let score = match integer {
        Some(n) if n.unsigned_abs() < (1 << 53) => Some(n as f64),
        // Beyond 2^53 an integer is a double's text (as replied), not exact ms.
        _ => parse_score_text(bytes),
    };
    score.ok_or_else(|| {
        Error::arg(format!(
            "score must be the score of the last run seen (an integer, or as replied) or +inf/-inf (got '{}')",
            shown(bytes)
        ))
    })
}

/// `1.5`, `-2e3`, `inf`, `+inf`, `-inf` (what `score_text` writes, and the walk's ends); not
/// NaN, hex or other spellings Rust's parser takes.
fn parse_score_text(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    text.parse::<f64>().ok().filter(|s| plain && s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_the_first_rank_past_a_position() {
        let ids = ["a", "b", "bb", "c", "d"];
        for (marker, want_gt, want_ge) in [
            ("", 0, 0),
            ("a", 1, 0),
            ("ab", 1, 1),
            ("bb", 3, 2),
            ("d", 5, 4),
            ("z", 5, 5),
        ] {
            let mut probes = 0;
            let gt = first_rank_where(0, 5, |r| {
                probes += 1;
                Ok(ids[r as usize] > marker)
            })
            .unwrap();
            let ge = first_rank_where(0, 5, |r| Ok(ids[r as usize] >= marker)).unwrap();
            assert_eq!((gt, ge), (want_gt, want_ge), "{marker}");
            assert!(probes <= 3, "{probes} probes for 5 ranks");
        }
        // Offsets: ranks lo..hi of a larger index.
        assert_eq!(first_rank_where(10, 10, |_| Ok(true)).unwrap(), 10);
        assert_eq!(first_rank_where(10, 20, |r| Ok(r >= 17)).unwrap(), 17);
        assert!(first_rank_where(0, 4, |_| Err(Error::arg("x"))).is_err());
    }
}
