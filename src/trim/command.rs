//! `RETENTION.TRIM <key> [MAXLEN <n>] [MAXAGE <duration>] [MAXMEMORY <size>] [APPROX]
//! [NEWEST HEAD|TAIL] [SCOREUNIT MS|S] [DRYRUN]`: trims one key now with the same code as the
//! sweep and replies with the number of entries removed (or, with DRYRUN, that would be).
//! MAXMEMORY keeps the newest entries whose memory fits the size, as a rule's `max_memory`
//! does. NEWEST says which end of a list holds the newest entries (the ones kept).
//!
//! Small trims finish inside the command. A trim that does not fit in one sweep budget
//! blocks the caller and continues in slices from the event loop (`sweep::blocked`), so
//! other clients are served in between. Inside MULTI or a script the caller asked for atomicity
//! and the client cannot block: the trim then runs to completion inline, as the native
//! XTRIM/LTRIM/ZREMRANGEBYRANK it replaces would.

use std::time::{Duration, Instant};

use redis_module::{Context, ContextFlags, KeyType as RawKeyType, RedisString, RedisValue};

use super::work::{Failure, Shape, TrimWork};
use crate::args::{parse_i64, shown};
use crate::error::{Error, Result};
use crate::policy::duration::parse_duration_ms;
use crate::policy::size::parse_size_bytes;
use crate::policy::{ListEnd, ScoreUnit, TrimAction};
use crate::stats::{self, Tally};
use crate::sweep::blocked::{self, SlicedCommand};
use crate::sweep::work::{Progress, Work, WorkEnv};
use crate::time::now_ms;
use crate::write::Asker;
use crate::{config, keyspace};

const OPTIONS: [&str; 7] = [
    "MAXLEN",
    "MAXAGE",
    "MAXMEMORY",
    "APPROX",
    "NEWEST",
    "SCOREUNIT",
    "DRYRUN",
];

/// The parsed options of one `RETENTION.TRIM`.
#[derive(Debug, Clone, PartialEq)]
struct TrimRequest {
    action: TrimAction,
    dry_run: bool,
    /// Type-specific options the caller gave, checked once the key's type is known.
    approx_given: bool,
    newest_given: bool,
    score_unit_given: bool,
}

/// Parses the words after the key: each option at most once, in any order.
fn parse_options(words: &[&[u8]]) -> Result<TrimRequest> {
    let mut req = TrimRequest {
        action: TrimAction {
            max_len: None,
            max_age_ms: None,
            approx: false,
            newest: ListEnd::Head,
            score_unit: ScoreUnit::Milliseconds,
            max_memory_bytes: None,
        },
        dry_run: false,
        approx_given: false,
        newest_given: false,
        score_unit_given: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        let text = String::from_utf8_lossy(word);
        let option = OPTIONS
            .iter()
            .find(|o| o.eq_ignore_ascii_case(&text))
            .ok_or_else(|| {
                Error::arg(format!(
                    "unknown option '{}' for RETENTION.TRIM (expected one of: {})",
                    shown(word),
                    OPTIONS.join(", ")
                ))
            })?;
        if seen.contains(option) {
            return Err(Error::arg(format!("option {option} given twice")));
        }
        seen.push(option);
        let mut value = |what: &str| {
            rest.next()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .ok_or_else(|| Error::arg(format!("{option} needs {what}")))
        };
        match *option {
            "MAXLEN" => {
                let text = value("a count")?;
                let n = parse_i64(&text).filter(|n| *n >= 0).ok_or_else(|| {
                    Error::arg(format!(
                        "MAXLEN must be a whole number >= 0 (got '{}')",
                        shown(text.as_bytes())
                    ))
                })?;
                req.action.max_len = Some(n as u64);
            }
            "MAXAGE" => {
                let text = value("a duration such as 7d, 24h or 3600 (seconds)")?;
                let ms =
                    parse_duration_ms(&text).map_err(|e| Error::arg(format!("MAXAGE: {e}")))?;
                req.action.max_age_ms = Some(ms);
            }
            "MAXMEMORY" => {
                let text = value("a size such as 200mb or 1048576 (bytes)")?;
                let bytes =
                    parse_size_bytes(&text).map_err(|e| Error::arg(format!("MAXMEMORY: {e}")))?;
                req.action.max_memory_bytes = Some(bytes);
            }
            "APPROX" => {
                req.action.approx = true;
                req.approx_given = true;
            }
            "NEWEST" => {
                let text = value("HEAD or TAIL")?;
                req.action.newest = match text.to_ascii_uppercase().as_str() {
                    "HEAD" => ListEnd::Head,
                    "TAIL" => ListEnd::Tail,
                    _ => {
                        return Err(Error::arg(format!(
                            "NEWEST must be HEAD or TAIL (got '{text}')"
                        )))
                    }
                };
                req.newest_given = true;
            }
            "SCOREUNIT" => {
                let text = value("MS or S")?;
                req.action.score_unit = match text.to_ascii_uppercase().as_str() {
                    "MS" => ScoreUnit::Milliseconds,
                    "S" => ScoreUnit::Seconds,
                    _ => {
                        return Err(Error::arg(format!(
                            "SCOREUNIT must be MS or S (got '{text}')"
                        )))
                    }
                };
                req.score_unit_given = true;
            }
            _ => req.dry_run = true,
        }
    }
    let action = &req.action;
    if action.max_len.is_none() && action.max_age_ms.is_none() && action.max_memory_bytes.is_none()
    {
        return Err(Error::arg(
            "RETENTION.TRIM needs MAXLEN <n>, MAXAGE <duration> and/or MAXMEMORY <size>",
        ));
    }
    Ok(req)
}

/// Rejects options that do not apply to the key's type (as the policy parser does for rules).
fn check_fits(req: &TrimRequest, shape: Shape) -> Result<()> {
    let only = |given: bool, option: &str, for_type: Shape| match given && shape != for_type {
        true => Err(Error::arg(format!(
            "{option} only applies to a {} (this key is a {})",
            shape_name(for_type),
            shape_name(shape)
        ))),
        false => Ok(()),
    };
    only(req.approx_given, "APPROX", Shape::Stream)?;
    only(req.newest_given, "NEWEST", Shape::List)?;
    only(req.score_unit_given, "SCOREUNIT", Shape::ZSet)?;
    if shape == Shape::List && req.action.max_age_ms.is_some() {
        return Err(Error::arg(
            "MAXAGE does not apply to a list (a list has no timestamps); use MAXLEN",
        ));
    }
    Ok(())
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Stream => "stream",
        Shape::List => "list",
        Shape::ZSet => "zset",
    }
}

pub fn cmd_trim(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() < 2 {
        return Err(Error::WrongArity);
    }
    let words: Vec<&[u8]> = args[2..].iter().map(|a| a.as_slice()).collect();
    let req = parse_options(&words)?;
    let key = &args[1];
    let shape = match ctx.open_key(key).key_type() {
        RawKeyType::Empty => return Ok(RedisValue::Integer(0)),
        RawKeyType::Stream => Shape::Stream,
        RawKeyType::List => Shape::List,
        RawKeyType::ZSet => Shape::ZSet,
        _ => return Err(Error::WrongType),
    };
    check_fits(&req, shape)?;
    let job = TrimJob {
        work: TrimWork::new(key.as_slice().to_vec(), shape, req.action),
        env: WorkEnv {
            now_ms: now_ms(),
            dry_run: req.dry_run,
            db: keyspace::selected_db(ctx),
            asker: Asker::Caller,
            rule: None,
        },
    };
    let may_block = !ctx
        .get_flags()
        .intersects(ContextFlags::DENY_BLOCKING | ContextFlags::MULTI | ContextFlags::LUA);
    run_in_command(ctx, job, may_block)
}

/// A `RETENTION.TRIM` in progress.
struct TrimJob {
    work: TrimWork,
    env: WorkEnv,
}

impl TrimJob {
    /// One slice of at most `budget_us` (at least one bounded call).
    fn run_slice(&mut self, ctx: &Context, budget_us: u64) -> Progress {
        let started = Instant::now();
        let mut tally = Tally::default();
        let progress = self.work.step(
            ctx,
            &self.env,
            started + Duration::from_micros(budget_us),
            &mut tally,
        );
        // Counted like sweep slices: `max_slice_us` and over-budget slices in STATS.
        let elapsed_us = started.elapsed().as_micros() as u64;
        if stats::record_slice(elapsed_us, budget_us) {
            keyspace::latency_sample("retention-trim", (elapsed_us / 1000) as i64);
        }
        if !self.env.dry_run {
            stats::with_stats(|s| s.total.add(&tally));
        }
        progress
    }

    fn reply(&self) -> Result<RedisValue> {
        match self.work.failure() {
            None => Ok(RedisValue::Integer(
                self.work.removed().min(i64::MAX as u64) as i64,
            )),
            Some(Failure::WrongType) => Err(Error::WrongType),
            Some(Failure::Server(msg)) => Err(Error::Server(msg.clone())),
        }
    }
}

impl SlicedCommand for TrimJob {
    fn slice(&mut self, ctx: &Context, budget_us: u64) -> Option<Result<RedisValue>> {
        match self.run_slice(ctx, budget_us) {
            Progress::More => None,
            Progress::Done => Some(self.reply()),
        }
    }

    fn name(&self) -> &'static str {
        "RETENTION.TRIM"
    }

    fn db(&self) -> i32 {
        self.env.db
    }
}

/// Small trims (and every trim inside MULTI or a script, which cannot block) finish here;
/// a longer one blocks the caller and continues in slices between other clients' commands.
fn run_in_command(ctx: &Context, mut job: TrimJob, may_block: bool) -> Result<RedisValue> {
    loop {
        let budget_us = crate::sweep::share_of_iteration(config::sweep_budget_us());
        if job.run_slice(ctx, budget_us) == Progress::Done {
            return job.reply();
        }
        if may_block {
            break;
        }
    }
    Ok(blocked::block(ctx, Box::new(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<TrimRequest> {
        let bytes: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        parse_options(&bytes)
    }

    fn err(words: &[&str]) -> String {
        parse(words).expect_err("should fail").to_string()
    }

    #[test]
    fn maxmemory_takes_the_policy_sizes() {
        let r = parse(&["maxmemory", "200MB"]).expect("valid");
        assert_eq!(r.action.max_memory_bytes, Some(200 << 20));
        assert_eq!((r.action.max_len, r.action.max_age_ms), (None, None));
        let r = parse(&["MAXMEMORY", "1048576", "MAXLEN", "5"]).expect("valid");
        assert_eq!(r.action.max_memory_bytes, Some(1 << 20));
        assert!(err(&["MAXMEMORY", "0"]).contains("MAXMEMORY: bad size '0'"));
        assert!(err(&["MAXMEMORY", "1.5mb"]).contains("a size is a whole number"));
        assert!(err(&["DRYRUN", "MAXMEMORY"]).contains("MAXMEMORY needs a size"));
    }

    #[test]
    fn options_parse_in_any_order_and_case() {
        let r = parse(&["maxage", "7d", "MAXLEN", "100", "approx", "DryRun"]).expect("valid");
        assert_eq!(r.action.max_len, Some(100));
        assert_eq!(r.action.max_age_ms, Some(7 * 86_400_000));
        assert!(r.action.approx && r.approx_given && r.dry_run);
        let r = parse(&["MAXLEN", "0", "NEWEST", "tail"]).expect("valid");
        assert_eq!(r.action.newest, ListEnd::Tail);
        assert!(!r.dry_run);
        let r = parse(&["MAXAGE", "3600", "SCOREUNIT", "s"]).expect("valid");
        assert_eq!(r.action.max_age_ms, Some(3_600_000));
        assert_eq!(r.action.score_unit, ScoreUnit::Seconds);
    }

    #[test]
    fn bad_options_are_named() {
        for (words, want) in [
            (&[][..], "needs MAXLEN"),
            (&["DRYRUN"][..], "needs MAXLEN"),
            (&["MAXLEN"][..], "MAXLEN needs a count"),
            (&["MAXLEN", "-1"][..], "whole number >= 0"),
            (&["MAXLEN", "1.5"][..], "whole number >= 0"),
            (&["MAXLEN", "99999999999999999999"][..], "whole number >= 0"),
            (&["MAXAGE", "7x"][..], "MAXAGE: bad duration"),
            (&["MAXAGE", "0"][..], "greater than zero"),
            (&["MAXLEN", "1", "MAXLEN", "2"][..], "given twice"),
            (
                &["MAXLEN", "1", "NEWEST", "middle"][..],
                "NEWEST must be HEAD or TAIL",
            ),
            (
                &["MAXLEN", "1", "KEEP", "TAIL"][..],
                "unknown option 'KEEP'",
            ),
            (&["MAXLEN", "1", "SCOREUNIT", "us"][..], "MS or S"),
            (&["MAXLEN", "1", "LIMIT", "5"][..], "unknown option 'LIMIT'"),
        ] {
            let e = err(words);
            assert!(e.starts_with("ERR "), "{e}");
            assert!(e.contains(want), "{words:?}: {e}");
        }
    }

    #[test]
    fn options_must_fit_the_key_type() {
        let r = parse(&["MAXAGE", "1d"]).expect("valid");
        assert!(check_fits(&r, Shape::List)
            .expect_err("list has no age")
            .to_string()
            .contains("MAXAGE does not apply to a list"));
        assert!(check_fits(&r, Shape::Stream).is_ok());
        assert!(check_fits(&r, Shape::ZSet).is_ok());
        let r = parse(&["MAXLEN", "1", "APPROX"]).expect("valid");
        assert!(check_fits(&r, Shape::Stream).is_ok());
        assert!(check_fits(&r, Shape::ZSet)
            .expect_err("approx is for streams")
            .to_string()
            .contains("APPROX only applies to a stream"));
        let r = parse(&["MAXLEN", "1", "NEWEST", "TAIL"]).expect("valid");
        assert!(check_fits(&r, Shape::Stream)
            .expect_err("newest is for lists")
            .to_string()
            .contains("NEWEST only applies to a list"));
        let r = parse(&["MAXLEN", "1", "SCOREUNIT", "S"]).expect("valid");
        assert!(check_fits(&r, Shape::List).is_err());
        assert!(check_fits(&r, Shape::ZSet).is_ok());
    }
}
