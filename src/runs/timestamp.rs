//! Start times found in legacy run documents: Unix milliseconds (a JSON number or a string
//! of digits) or an ISO-8601 / RFC 3339 date-time such as `2024-05-01T12:30:00.250Z`.
//!
//! A small parser rather than a date crate: only this one format is needed, and it must
//! never panic on what a legacy document holds.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Latest instant accepted (year 9999), which also keeps scores exact in an f64.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Checks that `doc` is JSON and returns its top-level `field` (None when the document is
/// not an object or has no such field). Only that one value is built; everything else is
/// skipped while parsing, which matters when migrating 100k documents in one command.
pub fn json_field(doc: &[u8], field: &str) -> Result<Option<serde_json::Value>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = FieldOf(field).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

struct FieldOf<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FieldOf<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldOf<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.0))? {
            if is_field && found.is_none() {
                found = Some(map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Compares an object key with the wanted field name without allocating for it.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Unix ms from a JSON value holding milliseconds or an ISO-8601 date-time.
pub fn ms_from_json(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => {
            let ms = match n.as_i64() {
                Some(i) => i,
                None => {
                    let f = n.as_f64()?;
                    if !f.is_finite() || f < 0.0 || f > MAX_MS as f64 {
                        return None;
                    }
                    f.floor() as i64
                }
            };
            (0..=MAX_MS).contains(&ms).then_some(ms)
        }
        serde_json::Value::String(s) => ms_from_text(s),
        _ => None,
    }
}

/// Unix ms from a string of digits or an ISO-8601 date-time.
pub fn ms_from_text(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().filter(|ms| *ms <= MAX_MS);
    }
    parse_rfc3339_ms(text)
}

/// `YYYY-MM-DD[Tt ]HH:MM[:SS[.fraction]][Z|z|±HH[:]MM|±HH]`; no zone means UTC
/// (what Python's naive `isoformat()` writes). Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let mut p = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    if !matches!(p.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = p.digits(2)?;
    p.expect(b':')?;
    let minute = p.digits(2)?;
    let mut second = 0;
    let mut millis = 0;
    if p.peek() == Some(b':') {
        p.i += 1;
        second = p.digits(2)?;
        if p.peek() == Some(b'.') || p.peek() == Some(b',') {
            p.i += 1;
            millis = p.fraction_ms()?;
        }
    }
    let offset_min = p.zone()?;
    if p.i != p.b.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    let ms = seconds.checked_mul(1_000)?.checked_add(millis)?;
    (0..=MAX_MS).contains(&ms).then_some(ms)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    }

    /// One or more digits after the decimal point, as whole milliseconds.
    fn fraction_ms(&mut self) -> Option<i64> {
        let start = self.i;
        let mut ms = 0i64;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            if self.i - start < 3 {
                ms = ms * 10 + (c - b'0') as i64;
            }
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
        Some(ms)
    }

    /// The zone offset east of UTC in minutes.
    fn zone(&mut self) -> Option<i64> {
        let sign = match self.peek() {
            None => return Some(0),
            Some(b'Z' | b'z') => {
                self.i += 1;
                return Some(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => return None,
        };
        self.i += 1;
        let hours = self.digits(2)?;
        let minutes = match self.peek() {
            None => 0,
            Some(b':') => {
                self.i += 1;
                self.digits(2)?
            }
            Some(_) => self.digits(2)?,
        };
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * (hours * 60 + minutes))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_forms() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2024-05-01T12:30:00.250Z", 1_714_566_600_250),
            ("2024-05-01T12:30:00.25Z", 1_714_566_600_250),
            ("2024-05-01T12:30:00.123456789Z", 1_714_566_600_123),
            ("2024-05-01t12:30:00z", 1_714_566_600_000),
            ("2024-05-01 12:30:00", 1_714_566_600_000),
            ("2024-05-01T12:30", 1_714_566_600_000),
            ("2024-05-01T14:30:00+02:00", 1_714_566_600_000),
            ("2024-05-01T14:30:00+0200", 1_714_566_600_000),
            ("2024-05-01T14:30:00+02", 1_714_566_600_000),
            ("2024-05-01T07:00:00-05:30", 1_714_566_600_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2023-12-31T23:59:60Z", 1_704_067_200_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_rfc3339_ms(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn rfc3339_rejects_garbage_without_panicking() {
        for bad in [
            "",
            "2024",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:30:00.Z",
            "2024-05-01T12:30:00Zjunk",
            "2024-05-01T12:30:00+2:00",
            "1969-12-31T23:59:59Z",
            "+2024-05-01T00:00:00Z",
            "２０２４-05-01T00:00:00Z",
            "2024-05-01T12:30:00+99:00",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn agrees_with_civil_day_counts() {
        // Every first of the month for four centuries: compare with a naive day counter.
        let mut days = 0i64;
        for year in 1970..2370 {
            for month in 1..=12 {
                assert_eq!(days_from_civil(year, month, 1), days, "{year}-{month}");
                days += days_in_month(year, month);
            }
        }
    }

    #[test]
    fn one_field_is_taken_from_a_document_that_is_fully_checked() {
        let doc = br#"{"a":[1,{"t":0}],"t":"2024-05-01T12:30:00Z","z":null}"#;
        assert_eq!(
            json_field(doc, "t").unwrap(),
            Some(json!("2024-05-01T12:30:00Z"))
        );
        assert_eq!(json_field(doc, "missing").unwrap(), None);
        // Escaped keys compare by their value; the first of duplicate keys wins.
        assert_eq!(
            json_field(br#"{"\u0074":5,"t":6}"#, "t").unwrap(),
            Some(json!(5))
        );
        for not_object in [&b"[1,2]"[..], b"42", b"\"t\"", b"null", b"true"] {
            assert_eq!(json_field(not_object, "t").unwrap(), None);
        }
        for bad in [
            &b"{\"t\":1"[..],
            b"{\"t\":1} x",
            b"{t:1}",
            b"",
            b"[1,]",
            b"{\"a\":[}",
        ] {
            assert!(json_field(bad, "t").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_values() {
        assert_eq!(
            ms_from_json(&json!(1_714_566_600_250i64)),
            Some(1_714_566_600_250)
        );
        assert_eq!(
            ms_from_json(&json!(1_714_566_600_250.7)),
            Some(1_714_566_600_250)
        );
        assert_eq!(
            ms_from_json(&json!("1714566600250")),
            Some(1_714_566_600_250)
        );
        assert_eq!(
            ms_from_json(&json!("2024-05-01T12:30:00.250Z")),
            Some(1_714_566_600_250)
        );
        for bad in [
            json!(-1),
            json!(1e300),
            json!(null),
            json!(true),
            json!("soon"),
            json!([1]),
            json!({"a": 1}),
            json!("99999999999999999999999"),
        ] {
            assert_eq!(ms_from_json(&bad), None, "{bad}");
        }
    }
}
