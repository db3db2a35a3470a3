//! Redis-compatible glob matching (placeholder: replaced by the full implementation).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty glob".into());
        }
        Ok(Glob {
            pattern: pattern.to_vec(),
        })
    }

    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        match self.pattern.strip_suffix(b"*") {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.pattern.as_slice(),
        }
    }
}
