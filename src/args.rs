//! Command arguments: a cursor over them with typed getters, and an option loop that
//! rejects unknown and repeated option words with a message naming them.

use std::collections::HashSet;
use std::vec::IntoIter;

use redis_module::RedisString;

use crate::error::{Error, Result};
use crate::policy::duration::{parse_age_ms, parse_duration_ms};
use crate::policy::size::parse_size_bytes;

pub struct Args {
    command: &'static str,
    rest: IntoIter<RedisString>,
}

/// The options already given, to reject repeats.
#[derive(Default)]
pub struct OptionSet {
    seen: HashSet<&'static str>,
}

impl Args {
    /// Skips the command name.
    pub fn new(args: Vec<RedisString>, command: &'static str) -> Result<Args> {
        let mut rest = args.into_iter();
        rest.next().ok_or(Error::WrongArity)?;
        Ok(Args { command, rest })
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn next_raw(&mut self, what: &str) -> Result<RedisString> {
        self.rest
            .next()
            .ok_or_else(|| Error::arg(format!("{} needs {what}", self.command)))
    }

    pub fn next_bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        Ok(self.next_raw(what)?.as_slice().to_vec())
    }

    pub fn next_str(&mut self, what: &str) -> Result<String> {
        let raw = self.next_raw(what)?;
        raw.try_as_str()
            .map(str::to_string)
            .map_err(|_| Error::arg(format!("{what}: not valid UTF-8")))
    }

    pub fn next_i64(&mut self, what: &str) -> Result<i64> {
        let raw = self.next_raw(what)?;
        std::str::from_utf8(raw.as_slice())
            .ok()
            .and_then(parse_i64)
            .ok_or_else(|| {
                // Echo a bounded, escaped prefix: the argument may be megabytes of anything.
                let text = shown(raw.as_slice());
                Error::arg(format!("{what}: '{text}' is not an integer in range"))
            })
    }

    /// A duration (`500ms`, `90s`, `5m`, `24h`, `7d`, `2w`, bare seconds) in ms, > 0;
    /// with `zero_allowed`, 0 too.
    pub fn next_duration_ms(&mut self, what: &str, zero_allowed: bool) -> Result<i64> {
        let raw = self.next_raw(what)?;
        let text = std::str::from_utf8(raw.as_slice())
            .map_err(|_| Error::arg(format!("{what}: not a duration")))?;
        let parsed = match zero_allowed {
            true => parse_age_ms(text),
            false => parse_duration_ms(text),
        };
        parsed.map_err(|e| Error::arg(format!("{what}: {e}")))
    }

    /// A memory size (> 0) written as in a policy: `200mb`, `1g`, or a whole number of bytes.
    pub fn next_size_bytes(&mut self, what: &str) -> Result<u64> {
        let raw = self.next_raw(what)?;
        let text = std::str::from_utf8(raw.as_slice())
            .map_err(|_| Error::arg(format!("{what}: not a size")))?;
        parse_size_bytes(text).map_err(|e| Error::arg(format!("{what}: {e}")))
    }

    /// A whole number >= 0.
    pub fn next_count(&mut self, what: &str) -> Result<u64> {
        let n = self.next_i64(what)?;
        u64::try_from(n).map_err(|_| Error::arg(format!("{what}: must be 0 or more (got {n})")))
    }

    /// The next option word (case-insensitive) out of `options`, or None at the end.
    pub fn next_option(
        &mut self,
        seen: &mut OptionSet,
        options: &[&'static str],
    ) -> Result<Option<&'static str>> {
        let Some(word) = self.rest.next() else {
            return Ok(None);
        };
        let text = word.to_string_lossy();
        let Some(option) = options.iter().find(|o| o.eq_ignore_ascii_case(&text)) else {
            return Err(Error::arg(format!(
                "unknown option '{}' for {} (expected one of: {})",
                shown(word.as_slice()),
                self.command,
                options.join(", ")
            )));
        };
        if !seen.seen.insert(option) {
            return Err(Error::arg(format!("option {option} given twice")));
        }
        Ok(Some(option))
    }

    /// Fails if arguments are left over.
    pub fn done(mut self) -> Result<()> {
        match self.rest.next() {
            None => Ok(()),
            Some(extra) => Err(Error::arg(format!(
                "unexpected argument '{}' for {}",
                shown(extra.as_slice()),
                self.command
            ))),
        }
    }
}

/// The arguments of a subcommand (`RETENTION.JOBS COUNTS ...`): the container's name and
/// the subcommand's are skipped (the server routed on them).
pub fn subcommand_args(args: Vec<RedisString>, command: &'static str) -> Result<Args> {
    let mut args = Args::new(args, command)?;
    args.next_raw("a subcommand")?;
    Ok(args)
}

/// User input echoed in an error: printable ASCII as is, other bytes as `\xNN` (an error
/// reply cannot carry raw control bytes), cut to a readable length.
pub fn shown(bytes: &[u8]) -> String {
    const MAX_SHOWN: usize = 64;
    let mut out = String::new();
    for &b in bytes.iter().take(MAX_SHOWN) {
        match b {
            b' '..=b'~' if b != b'\\' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > MAX_SHOWN {
        out.push_str("...");
    }
    out
}

/// Strict integer parsing: no sign-less garbage, no spaces, no overflow.
pub fn parse_i64(text: &str) -> Option<i64> {
    if text.is_empty() || text.starts_with('+') || text.trim() != text {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_input_is_escaped_and_bounded() {
        assert_eq!(shown(b"ok"), "ok");
        assert_eq!(shown(b"\xff\x00\r\n\\"), "\\xff\\x00\\x0d\\x0a\\x5c");
        assert_eq!(shown(&[b'a'; 70]).len(), 64 + 3);
    }

    #[test]
    fn integers_are_parsed_strictly() {
        assert_eq!(parse_i64("42"), Some(42));
        assert_eq!(parse_i64("-7"), Some(-7));
        for bad in [
            "",
            " 1",
            "1 ",
            "+1",
            "1e3",
            "0x10",
            "99999999999999999999",
            "1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad}");
        }
    }
}
