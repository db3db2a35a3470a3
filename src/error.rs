//! One error type for the whole module, turned into a Redis reply in one place.
//!
//! Every message starts with an error code a client can act on, as the server's own errors
//! do (docs/commands.md lists them):
//! - `ERR`: the call is wrong (arguments, options, a command in a place it cannot run): fix it;
//! - `WRONGTYPE`, `NOPERM`, `MOVED`, `READONLY`: what the server means by them;
//! - `INPROGRESS`: another pass of the same kind is running: wait for it (`RETENTION.STATUS`).
//!   Not `BUSY`, which every Redis client and tool reads as "a script holds the server";
//! - `ABORTED`: work stopped part-way (the server became a replica); what was done stays;
//! - `TRYAGAIN`: writes are held right now (`CLIENT PAUSE WRITE`, a failover): retry later;
//! - `POLICY`: the policy file or a rule in it is invalid; the policy in force stays.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Wrong number of arguments: the server formats its standard message.
    WrongArity,
    /// A bad argument or option; the text says which and why.
    Arg(String),
    /// A key holds another type than the command needs.
    WrongType,
    /// Another pass of the same kind is running.
    InProgress(String),
    /// Work stopped part-way; what it did stays (and was replicated).
    Aborted(String),
    /// The policy file (or a rule in it) is invalid.
    Policy(String),
    /// The caller lacks a permission.
    NoPerm(String),
    /// The server refused an operation the module asked for.
    Server(String),
    /// Redis Cluster: the keys live on another node (`<slot> <host>:<port>`).
    Moved(String),
    /// A write asked of a read-only replica (the server's own `READONLY` reply).
    ReadOnlyReplica,
    /// A write asked while the server holds writes (CLIENT PAUSE WRITE, FAILOVER).
    WritesPaused(String),
}

impl Error {
    pub fn arg(msg: impl Into<String>) -> Self {
        Error::Arg(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WrongArity => f.write_str("ERR wrong number of arguments"),
            Error::Arg(m) => write!(f, "ERR {m}"),
            Error::WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            Error::InProgress(m) => write!(f, "INPROGRESS {m}"),
            Error::Aborted(m) => write!(f, "ABORTED {m}"),
            Error::Policy(m) => write!(f, "POLICY {m}"),
            Error::NoPerm(m) => write!(f, "NOPERM {m}"),
            Error::Server(m) => write!(f, "ERR {m}"),
            Error::Moved(m) => write!(f, "MOVED {m}"),
            Error::ReadOnlyReplica => {
                f.write_str("READONLY You can't write against a read only replica.")
            }
            Error::WritesPaused(m) => write!(f, "TRYAGAIN {m}: the server holds writes now (CLIENT PAUSE WRITE or a failover); try again when it is over"),
        }
    }
}

// No `std::error::Error` impl: the crate's blanket `From<E: Error> for RedisError` would
// bypass the mapping below (which keeps WRONGTYPE and arity errors the server's own).

impl From<Error> for RedisError {
    fn from(e: Error) -> Self {
        match e {
            Error::WrongArity => RedisError::WrongArity,
            Error::WrongType => RedisError::WrongType,
            other => RedisError::String(ascii_safe(&other.to_string())),
        }
    }
}

/// The crate writes error replies byte-truncating non-ASCII characters, which makes them
/// invalid UTF-8 that clients fail to parse: escape such characters (and control bytes).
fn ascii_safe(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            ' '..='~' => out.push(c),
            other => out.push_str(&format!("\\u{{{:x}}}", other as u32)),
        }
    }
    out
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::WrongArity => Error::WrongArity,
            RedisError::WrongType => Error::WrongType,
            // The crate's own argument parsers say e.g. "Couldn't parse as integer".
            RedisError::Str(s) => Error::Arg(s.trim_start_matches("ERR ").to_string()),
            RedisError::String(s) => Error::Arg(s.trim_start_matches("ERR ").to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The signature every command handler of this module has.
pub type Handler = fn(&Context, Vec<RedisString>) -> Result<RedisValue>;

/// Runs a command handler so that neither an error nor a panic can reach the server:
/// a Rust panic unwinding out of the `extern "C"` trampoline would abort redis-server.
pub fn run_command(ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(result) => result.map_err(RedisError::from),
        Err(panic) => {
            let what = panic_message(&panic);
            ctx.log_warning(&format!(
                "retention: internal error (panic) in command: {what}"
            ));
            Err(RedisError::String(format!(
                "ERR retention internal error: {what} (nothing was changed by the failing step; please report)"
            )))
        }
    }
}

/// Runs a server callback (cron, timer, notification) and logs instead of aborting on panic.
pub fn run_callback<T>(ctx: &Context, what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(panic) => {
            let msg = panic_message(&panic);
            ctx.log_warning(&format!(
                "retention: internal error (panic) in {what}: {msg}"
            ));
            None
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_redis_error_codes() {
        assert_eq!(Error::arg("bad").to_string(), "ERR bad");
        assert!(Error::WrongType.to_string().starts_with("WRONGTYPE "));
        assert!(Error::InProgress("x".into())
            .to_string()
            .starts_with("INPROGRESS "));
        assert!(Error::WritesPaused("x".into())
            .to_string()
            .starts_with("TRYAGAIN "));
        assert_eq!(
            Error::Policy("rule 'a': x".into()).to_string(),
            "POLICY rule 'a': x"
        );
    }

    #[test]
    fn replies_are_ascii_whatever_the_message() {
        let e: RedisError = Error::arg("no rule named 'é\n'").into();
        match e {
            RedisError::String(s) => assert_eq!(s, "ERR no rule named '\\u{e9}\\u{a}'"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crate_errors_become_argument_errors_without_double_prefix() {
        let e: Error = RedisError::String("ERR nope".into()).into();
        assert_eq!(e.to_string(), "ERR nope");
        let e: Error = RedisError::WrongArity.into();
        assert_eq!(e, Error::WrongArity);
    }
}
