//! Queue-aware retention for BullMQ and Bull. Placeholder until issue 6: a queue rule
//! only protects its keys from later rules.

use crate::policy::{KeyType, QueueAction};
use crate::sweep::work::Planned;

pub fn plan(_queue: &QueueAction, _name: &[u8], _key_type: KeyType) -> Planned {
    Planned::Nothing
}
