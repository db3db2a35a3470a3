//! The policy in force. Everything here lives on the server's main thread (all module
//! callbacks run there with the GIL held), so plain thread-locals are enough. Whoever uses
//! the policy takes a snapshot (`policy()`) and notices a new one by comparing snapshots:
//! this layer tells no one.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::policy::{parse_policy, Policy};
use crate::time::now_ms;

pub struct PolicyInForce {
    pub policy: Rc<Policy>,
    /// The file it came from ("" = no policy file).
    pub source: String,
    pub loaded_at_ms: i64,
}

thread_local! {
    static POLICY: RefCell<PolicyInForce> = RefCell::new(PolicyInForce {
        policy: Rc::new(Policy::empty()),
        source: String::new(),
        loaded_at_ms: 0,
    });
    /// Set when the policy file given at startup could not be loaded: module load then fails.
    static STARTUP_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A snapshot of the rules in force (cheap to clone; a pass keeps its own).
pub fn policy() -> Rc<Policy> {
    POLICY.with(|p| p.borrow().policy.clone())
}

pub fn with_policy<R>(f: impl FnOnce(&PolicyInForce) -> R) -> R {
    POLICY.with(|p| f(&p.borrow()))
}

/// Reads, validates and installs the policy at `path` ("" = no rules). On any error the
/// policy in force stays as it was.
pub fn install_policy_from_path(path: &str) -> Result<()> {
    let policy = match load_policy_file(path) {
        Ok(p) => p,
        Err(e) => {
            STARTUP_ERROR.with(|s| *s.borrow_mut() = Some(e.to_string()));
            return Err(e);
        }
    };
    STARTUP_ERROR.with(|s| *s.borrow_mut() = None);
    crate::stats::note_policy_rules(&policy);
    POLICY.with(|p| {
        *p.borrow_mut() = PolicyInForce {
            policy: Rc::new(policy),
            source: path.to_string(),
            loaded_at_ms: now_ms(),
        }
    });
    Ok(())
}

/// The largest policy file read: a policy is rules, not data (100k rules are ~10 MB), and the
/// file is read on the server's main thread.
const MAX_POLICY_FILE_BYTES: u64 = 256 << 20;

pub fn load_policy_file(path: &str) -> Result<Policy> {
    if path.is_empty() {
        return Ok(Policy::empty());
    }
    let text = read_policy_text(path)
        .map_err(|e| Error::Policy(format!("cannot read policy file {path}: {e}")))?;
    parse_policy(&text).map_err(|e| Error::Policy(format!("{path}: {e}")))
}

/// Only a regular file is opened: opening a FIFO would block the whole server until a writer
/// came, and a device such as /dev/zero never ends.
fn read_policy_text(path: &str) -> std::result::Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let too_big = || format!("larger than {} MB", MAX_POLICY_FILE_BYTES >> 20);
    if meta.len() > MAX_POLICY_FILE_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_POLICY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    match text.len() as u64 > MAX_POLICY_FILE_BYTES {
        true => Err(too_big()),
        false => Ok(text),
    }
}

pub fn reload() -> Result<()> {
    let path = with_policy(|p| p.source.clone());
    install_policy_from_path(&path)
}

/// The error that made the startup policy fail to load, if it did.
pub fn take_startup_error() -> Option<String> {
    STARTUP_ERROR.with(|s| s.borrow_mut().take())
}
