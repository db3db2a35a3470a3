//! Which rules may govern a key name, found by the literal prefix of their patterns rather
//! than by trying every rule. Operators generate policies from their tenant lists: with
//! 100k rules a linear first-match made every new key cost 100k glob matches (SET fell from
//! 58k to 400 requests/s with new-key tracking on).

use std::collections::HashMap;

use super::{Rule, Selector};

/// Up to this many rules a linear scan is as fast as the index and needs no lookups.
pub const LINEAR_MAX: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleIndex {
    /// Rule numbers (ascending) by the literal prefix every name they match starts with.
    by_prefix: HashMap<Vec<u8>, Vec<usize>>,
    /// The distinct lengths of those prefixes, ascending: the only ones worth looking up.
    lengths: Vec<usize>,
}

impl RuleIndex {
    pub fn new(rules: &[Rule]) -> RuleIndex {
        let mut index = RuleIndex::default();
        for (number, rule) in rules.iter().enumerate() {
            for prefix in literal_prefixes(&rule.selector) {
                let numbers = index.by_prefix.entry(prefix.to_vec()).or_default();
                if numbers.last() != Some(&number) {
                    numbers.push(number);
                }
            }
        }
        index.lengths = index.by_prefix.keys().map(Vec::len).collect();
        index.lengths.sort_unstable();
        index.lengths.dedup();
        index
    }

    /// The rules that may match `name`, ascending (a superset of those that do).
    pub fn candidates(&self, name: &[u8]) -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        for &len in self.lengths.iter().take_while(|&&len| len <= name.len()) {
            if let Some(numbers) = self.by_prefix.get(&name[..len]) {
                found.extend_from_slice(numbers);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// The bytes every name a selector matches starts with, one per pattern.
fn literal_prefixes(selector: &Selector) -> Vec<&[u8]> {
    match selector {
        Selector::Prefix(prefix) => vec![prefix.as_slice()],
        // A run rule's keys are `<base>:index`/`<base>:data`: they start as the base does.
        Selector::Globs(globs) | Selector::RunBases(globs) => {
            globs.iter().map(|g| g.literal_prefix()).collect()
        }
    }
}
