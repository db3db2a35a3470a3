//! Telling a BullMQ queue from a Bull queue by its keys.
//!
//! BullMQ writes `meta.version = "bullmq:<ver>"` on every `new Queue()` and appends every
//! job change to the `events` stream. Bull has neither (its `meta` only ever holds `paused`,
//! and its events go over PUBLISH). So: a `bullmq:` version or an `events` stream means
//! BullMQ; a queue with neither is treated as Bull.

use super::calls::{key, Calls};
use super::layout::is_bullmq_version;
use crate::policy::QueueFlavor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    BullMq,
    NotBullMq,
}

/// The library of the queue at `base`, as its keys show it (BullMQ writes a versioned `meta`
/// and an events stream; Bull neither).
pub fn flavor_of(calls: &Calls, base: &[u8]) -> QueueFlavor {
    match flavor_evidence(calls, base) {
        Evidence::BullMq => QueueFlavor::BullMq,
        Evidence::NotBullMq => QueueFlavor::Bull,
    }
}

pub fn flavor_evidence(calls: &Calls, base: &[u8]) -> Evidence {
    let meta = key(&[base, b"meta"]);
    if let Ok(Some(version)) = calls.hget(&meta, b"version") {
        if is_bullmq_version(&version) {
            return Evidence::BullMq;
        }
    }
    let events = key(&[base, b"events"]);
    match calls.key_type(&events).as_deref() {
        Some("stream") => Evidence::BullMq,
        _ => Evidence::NotBullMq,
    }
}

/// Whether anything of a queue exists at `base` (its id counter, meta or a state key).
pub fn queue_exists(calls: &Calls, base: &[u8]) -> bool {
    let names: Vec<Vec<u8>> = [
        "id",
        "meta",
        "completed",
        "failed",
        "wait",
        "active",
        "delayed",
        "paused",
        "events",
    ]
    .iter()
    .map(|s| key(&[base, s.as_bytes()]))
    .collect();
    let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    calls.exists(&refs)
}

/// The flavor of the queue at `base`, or None when there is no queue there.
pub fn detect_flavor(calls: &Calls, base: &[u8]) -> Option<QueueFlavor> {
    if !queue_exists(calls, base) {
        return None;
    }
    Some(match flavor_evidence(calls, base) {
        Evidence::BullMq => QueueFlavor::BullMq,
        Evidence::NotBullMq => QueueFlavor::Bull,
    })
}
