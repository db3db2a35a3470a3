//! Durations in policy files: an integer and a unit (`ms|s|m|h|d|w`); a bare integer is seconds.

const UNITS: [(&str, i64); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Longer than any retention anyone means; keeps `now + ttl` far from i64 overflow.
pub const MAX_DURATION_MS: i64 = 100 * 365 * 86_400_000;

/// Whether what follows a number's digits is its fractional part (`.5h`, `.25`).
pub fn is_fraction(rest: &str) -> bool {
    rest.strip_prefix('.')
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Parses `"90s"`, `"24h"`, `"7d"`, `"500ms"` or `"3600"` (seconds) into milliseconds (> 0).
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let shown = super::clipped(text);
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "bad duration '{shown}': expected an integer with a unit ms|s|m|h|d|w, e.g. \"90s\", \"24h\", \"7d\""
        ));
    }
    if is_fraction(unit) {
        return Err(format!(
            "bad duration '{shown}': a duration is a whole number; use a smaller unit (90m, not 1.5h)"
        ));
    }
    let unit_ms = match unit {
        "" => 1_000,
        u => UNITS
            .iter()
            .find(|(name, _)| *name == u)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| {
                format!(
                    "bad duration '{shown}': unknown unit '{}' (use ms|s|m|h|d|w)",
                    super::clipped(u)
                )
            })?,
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("bad duration '{shown}': number too large"))?;
    let ms = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| format!("bad duration '{shown}': longer than 100 years"))?;
    if ms == 0 {
        return Err(format!("bad duration '{shown}': must be greater than zero"));
    }
    Ok(ms)
}

/// Like `parse_duration_ms`, but zero (in any unit) is allowed: for limits where "older
/// than nothing" means everything, as the libraries' `clean(0)`.
pub fn parse_age_ms(text: &str) -> Result<i64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    match !number.is_empty() && number.bytes().all(|b| b == b'0') {
        // The unit is checked like any other duration's.
        true => parse_duration_ms(&format!("1{unit}")).map(|_| 0),
        false => parse_duration_ms(text),
    }
}

/// The shortest exact spelling of a duration: 86400000 → "1d", 1500 → "1500ms".
pub fn format_duration_ms(ms: i64) -> String {
    UNITS
        .iter()
        .find(|(_, unit_ms)| ms % unit_ms == 0)
        .map(|(name, unit_ms)| format!("{}{}", ms / unit_ms, name))
        .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("500ms", 500),
            ("90s", 90_000),
            ("5m", 300_000),
            ("24h", 86_400_000),
            ("7d", 604_800_000),
            ("2w", 1_209_600_000),
            ("3600", 3_600_000),
            (" 1h ", 3_600_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn rejects_mistakes_with_a_reason() {
        for bad in [
            "",
            "h",
            "-5s",
            "1.5h",
            "5x",
            "5 h",
            "0",
            "0s",
            "99999999999999999999",
            "40000w",
            "1hh",
            "1H",
        ] {
            let err = parse_duration_ms(bad).expect_err(bad);
            assert!(err.starts_with("bad duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration_ms(86_400_000), "1d");
        assert_eq!(format_duration_ms(604_800_000), "1w");
        assert_eq!(format_duration_ms(90_000), "90s");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        for ms in [1, 999, 1_000, 61_000, 3_600_000, 172_800_000] {
            assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms));
        }
    }
}
