//! Collection trimming (streams, lists, sorted sets). Placeholder until issue 5.

use crate::policy::{KeyType, TrimAction};
use crate::sweep::work::Planned;

pub fn plan(
    _trim: &TrimAction,
    _rule_type: Option<KeyType>,
    _name: &[u8],
    _key_type: KeyType,
) -> Planned {
    Planned::Nothing
}
