//! Memory sizes in policy files, spelled as redis.conf spells them: a whole number and a unit
//! (case-insensitive `b`, `k` = 1000, `kb` = 1024, `m` = 10⁶, `mb` = 2²⁰, `g` = 10⁹,
//! `gb` = 2³⁰), or a whole number of bytes.

/// Units from the largest, so that `format_size_bytes` picks the largest exact one.
const UNITS: [(&str, u64); 7] = [
    ("gb", 1 << 30),
    ("g", 1_000_000_000),
    ("mb", 1 << 20),
    ("m", 1_000_000),
    ("kb", 1 << 10),
    ("k", 1_000),
    ("b", 1),
];

/// The largest size a policy may give: sums of entry sizes stay far from u64 overflow, and the
/// value fits the signed integers JSON tools and Redis replies use.
pub const MAX_SIZE_BYTES: u64 = i64::MAX as u64;

const UNIT_LIST: &str = "b|k|kb|m|mb|g|gb";

/// Parses `"200mb"`, `"1g"`, `"512KB"` or `"1048576"` (bytes) into bytes (> 0).
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let shown = super::clipped(text);
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "bad size '{shown}': expected a whole number of bytes or one with a unit {UNIT_LIST}, e.g. \"200mb\""
        ));
    }
    if super::duration::is_fraction(unit) {
        return Err(format!(
            "bad size '{shown}': a size is a whole number; use a smaller unit (1536mb, not 1.5gb)"
        ));
    }
    let unit_bytes = match unit {
        "" => 1,
        u => UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(u))
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| {
                format!(
                    "bad size '{shown}': unknown unit '{}' (use {UNIT_LIST})",
                    super::clipped(u)
                )
            })?,
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .filter(|b| *b <= MAX_SIZE_BYTES)
        .ok_or_else(|| format!("bad size '{shown}': number too large"))?;
    if bytes == 0 {
        return Err(format!("bad size '{shown}': must be greater than zero"));
    }
    Ok(bytes)
}

/// The shortest exact spelling of a size: 209715200 → "200mb", 1500 → "1500b".
pub fn format_size_bytes(bytes: u64) -> String {
    UNITS
        .iter()
        .find(|(_, unit)| bytes.is_multiple_of(*unit))
        .map(|(name, unit)| format!("{}{}", bytes / unit, name))
        .unwrap_or_else(|| format!("{bytes}b"))
}

/// A size for people, in binary units with one decimal: 196083712 → "187.0 MB".
pub fn human_size(bytes: u64) -> String {
    const STEPS: [(&str, u64); 3] = [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];
    STEPS
        .iter()
        .find(|(_, unit)| bytes >= *unit)
        .map(|(name, unit)| format!("{:.1} {name}", bytes as f64 / *unit as f64))
        .unwrap_or_else(|| format!("{bytes} B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_in_any_case() {
        let cases = [
            ("1", 1),
            ("100b", 100),
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1Kb", 1024),
            ("200mb", 200 << 20),
            ("200MB", 200 << 20),
            ("3m", 3_000_000),
            ("2g", 2_000_000_000),
            ("2GB", 2 << 30),
            (" 7mb ", 7 << 20),
            ("007k", 7000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size_bytes(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        let cases = [
            ("", "expected a whole number"),
            ("mb", "expected a whole number"),
            ("-5mb", "expected a whole number"),
            ("1.5mb", "a size is a whole number; use a smaller unit"),
            ("5 mb", "unknown unit ' mb'"),
            ("5tb", "unknown unit 'tb'"),
            ("5kib", "unknown unit 'kib'"),
            ("0", "greater than zero"),
            ("0gb", "greater than zero"),
            ("99999999999999999999", "number too large"),
            ("9000000000gb", "number too large"),
            ("9223372036854775808", "number too large"),
        ];
        for (text, want) in cases {
            let e = parse_size_bytes(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(parse_size_bytes("9223372036854775807"), Ok(MAX_SIZE_BYTES));
    }

    #[test]
    fn formatting_round_trips() {
        for bytes in [
            1,
            999,
            1000,
            1024,
            1500,
            200 << 20,
            3_000_000,
            2 << 30,
            MAX_SIZE_BYTES,
        ] {
            let text = format_size_bytes(bytes);
            assert_eq!(parse_size_bytes(&text), Ok(bytes), "{text}");
        }
        assert_eq!(format_size_bytes(200 << 20), "200mb");
        assert_eq!(format_size_bytes(1500), "1500b");
        assert_eq!(human_size(187 << 20), "187.0 MB");
        assert_eq!(human_size(512), "512 B");
    }
}
