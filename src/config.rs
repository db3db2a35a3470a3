//! Module configs (`retention.*`): storage, bounds, and what happens when one changes.
//!
//! Numeric configs live in atomics read on the hot path without locking. The policy file is
//! special: setting it loads and validates the file, and a bad file is refused so that the
//! policy in force never changes to something broken (`CONFIG SET` gets the error).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use redis_module::configuration::ConfigurationContext;
use redis_module::{ConfigurationValue, RedisError, RedisString};

pub const DEFAULT_SWEEP_BUDGET_US: i64 = 1000;
pub const MIN_SWEEP_BUDGET_US: i64 = 50;
/// A slice longer than this would be a stall no operator asks for on purpose.
pub const MAX_SWEEP_BUDGET_US: i64 = 100_000;
pub const DEFAULT_PASS_INTERVAL_S: i64 = 60;
pub const MAX_PASS_INTERVAL_S: i64 = 7 * 24 * 3600;
pub const DEFAULT_TRACK_QUEUE_MAX: i64 = 100_000;
pub const MAX_TRACK_QUEUE_MAX: i64 = 10_000_000;
pub const DEFAULT_PRESSURE_RATIO: &str = "0.8";
/// 0 = the background idle-client reaper is off; the largest is the server's `timeout` bound.
pub const MAX_CLIENTS_IDLE_KILL_S: i64 = crate::clients::MAX_IDLE_S;

pub static ENABLED: AtomicBool = AtomicBool::new(true);
pub static DRY_RUN: AtomicBool = AtomicBool::new(false);
pub static SWEEP_BUDGET_US: AtomicI64 = AtomicI64::new(DEFAULT_SWEEP_BUDGET_US);
pub static PASS_INTERVAL_S: AtomicI64 = AtomicI64::new(DEFAULT_PASS_INTERVAL_S);
pub static TRACK_NEW_KEYS: AtomicBool = AtomicBool::new(true);
pub static TRACK_QUEUE_MAX: AtomicI64 = AtomicI64::new(DEFAULT_TRACK_QUEUE_MAX);
pub static CLIENTS_IDLE_KILL_S: AtomicI64 = AtomicI64::new(0);
pub static EXPLAIN_HISTORY: AtomicBool = AtomicBool::new(true);

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}
pub fn dry_run() -> bool {
    DRY_RUN.load(Ordering::Relaxed)
}
pub fn sweep_budget_us() -> u64 {
    SWEEP_BUDGET_US
        .load(Ordering::Relaxed)
        .max(MIN_SWEEP_BUDGET_US) as u64
}
pub fn pass_interval_ms() -> i64 {
    PASS_INTERVAL_S.load(Ordering::Relaxed) * 1000
}
pub fn track_new_keys() -> bool {
    TRACK_NEW_KEYS.load(Ordering::Relaxed)
}
pub fn track_queue_max() -> usize {
    TRACK_QUEUE_MAX.load(Ordering::Relaxed).max(0) as usize
}

/// `retention.explain-history`: remember each action for `RETENTION.EXPLAIN`'s `last`.
pub fn explain_history() -> bool {
    EXPLAIN_HISTORY.load(Ordering::Relaxed)
}

/// `retention.clients-idle-kill-s`: close normal clients idle longer than this (0 = off).
pub fn clients_idle_kill_s() -> u64 {
    CLIENTS_IDLE_KILL_S.load(Ordering::Relaxed).max(0) as u64
}

/// `retention.policy-file`: the path in force. Setting it loads the file first.
pub struct PolicyFileConfig {
    path: Mutex<String>,
}

pub static POLICY_FILE: PolicyFileConfig = PolicyFileConfig {
    path: Mutex::new(String::new()),
};

impl PolicyFileConfig {
    pub fn path(&self) -> String {
        self.path.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl ConfigurationValue<RedisString> for PolicyFileConfig {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, self.path().as_str())
    }

    fn set(&self, _ctx: &ConfigurationContext, val: RedisString) -> Result<(), RedisError> {
        let path = val
            .try_as_str()
            .map_err(|_| RedisError::Str("ERR policy-file must be a UTF-8 path"))?
            .to_string();
        crate::state::install_policy_from_path(&path).map_err(RedisError::from)?;
        if let Ok(mut p) = self.path.lock() {
            *p = path;
        }
        Ok(())
    }
}

/// `retention.pressure-ratio`: used/maxmemory ratio (0..1] at which pressure mode starts.
/// Module configs have no float type, so it is a string validated on set.
pub struct RatioConfig {
    millis: AtomicI64,
}

pub static PRESSURE_RATIO: RatioConfig = RatioConfig {
    millis: AtomicI64::new(800),
};

impl RatioConfig {
    pub fn ratio(&self) -> f64 {
        self.millis.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// The ratio is kept in thousandths, so the smallest accepted is 0.001: a smaller one would be
/// stored as 0, shown as 0 by CONFIG GET (and CONFIG REWRITE), and refused at the next start.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.001..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "ERR pressure-ratio must be a number from 0.001 to 1, e.g. 0.8 (got '{text}')"
        )),
    }
}

impl ConfigurationValue<RedisString> for RatioConfig {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, format!("{}", self.ratio()).as_str())
    }

    fn set(&self, _ctx: &ConfigurationContext, val: RedisString) -> Result<(), RedisError> {
        let text = val.to_string_lossy();
        let ratio = parse_ratio(&text).map_err(RedisError::String)?;
        self.millis
            .store((ratio * 1000.0).round() as i64, Ordering::Relaxed);
        Ok(())
    }
}

/// Registers every `retention.*` config, with defaults from the `MODULE LOAD` arguments, then
/// applies the values of the server's config file. Called from the module's init after the
/// server version check: these APIs arrived in Redis 7.0, and on an older server the check
/// must speak first.
pub fn register(ctx: &redis_module::Context, args: &[RedisString]) -> Result<(), String> {
    use redis_module::configuration::{
        get_bool_default_config_value as bool_arg, get_i64_default_config_value as i64_arg,
        get_string_default_config_value as string_arg, register_bool_configuration as add_bool,
        register_i64_configuration as add_i64, register_string_configuration as add_string,
        ConfigurationFlags,
    };
    let flags = || ConfigurationFlags::DEFAULT;
    let bad_arg = |name: &str, e: RedisError| format!("bad MODULE LOAD argument {name}: {e}");
    let numeric: [(&str, &'static AtomicI64, i64, i64, i64); 4] = [
        (
            "sweep-budget-us",
            &SWEEP_BUDGET_US,
            DEFAULT_SWEEP_BUDGET_US,
            MIN_SWEEP_BUDGET_US,
            MAX_SWEEP_BUDGET_US,
        ),
        (
            "pass-interval-s",
            &PASS_INTERVAL_S,
            DEFAULT_PASS_INTERVAL_S,
            0,
            MAX_PASS_INTERVAL_S,
        ),
        (
            "track-queue-max",
            &TRACK_QUEUE_MAX,
            DEFAULT_TRACK_QUEUE_MAX,
            0,
            MAX_TRACK_QUEUE_MAX,
        ),
        (
            "clients-idle-kill-s",
            &CLIENTS_IDLE_KILL_S,
            0,
            0,
            MAX_CLIENTS_IDLE_KILL_S,
        ),
    ];
    for (name, value, default, min, max) in numeric {
        let default = i64_arg(args, name, default).map_err(|e| bad_arg(name, e))?;
        add_i64(ctx, name, value, default, min, max, flags(), None);
    }
    let default = string_arg(args, "policy-file", "").map_err(|e| bad_arg("policy-file", e))?;
    add_string(ctx, "policy-file", &POLICY_FILE, default, flags(), None);
    let default = string_arg(args, "pressure-ratio", DEFAULT_PRESSURE_RATIO)
        .map_err(|e| bad_arg("pressure-ratio", e))?;
    add_string(
        ctx,
        "pressure-ratio",
        &PRESSURE_RATIO,
        default,
        flags(),
        None,
    );
    let switches: [(&str, &'static AtomicBool, bool); 3] = [
        ("enabled", &ENABLED, true),
        ("dry-run", &DRY_RUN, false),
        ("track-new-keys", &TRACK_NEW_KEYS, true),
    ];
    for (name, value, default) in switches {
        let default = bool_arg(args, name, default).map_err(|e| bad_arg(name, e))?;
        add_bool(ctx, name, value, default, flags(), None);
    }
    let default =
        bool_arg(args, "explain-history", true).map_err(|e| bad_arg("explain-history", e))?;
    let on_changed = Box::new(crate::history::on_config_changed);
    add_bool(
        ctx,
        "explain-history",
        &EXPLAIN_HISTORY,
        default,
        flags(),
        Some(on_changed),
    );
    // SAFETY: load time; checked present by server_version::check.
    if let Some(load_configs) = unsafe { redis_module::raw::RedisModule_LoadConfigs } {
        unsafe { load_configs(ctx.ctx) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_accepts_only_the_unit_interval() {
        assert_eq!(parse_ratio("0.8"), Ok(0.8));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        for bad in ["0", "-0.1", "1.5", "abc", "", "NaN", "0.0004", "1e-300"] {
            assert!(parse_ratio(bad).is_err(), "{bad} accepted");
        }
    }
}
