//! Property tests of the pure parsers (no server): the policy parser on arbitrary text, on
//! arbitrary JSON and on mutated valid policies; the glob matcher against a port of Redis'
//! own `stringmatchlen`; durations, integers, run ids and names, ISO-8601 start times,
//! cluster slots, the pressure ratio, queue key classification and the trim planners.
//!
//! Each property runs a bounded number of cases (the whole file takes a few seconds) with
//! proptest's default random seed, so every run explores new inputs; a failure prints the
//! shrunk input, which then goes into `tests/corpus/` and a named regression test here.
//! The corpus files under `tests/corpus/` (policies, globs) are replayed first.

mod common;
mod policy_gen;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use common::{civil, Rng};
use policy_gen::*;

use redis_retention::args::{parse_i64, shown};
use redis_retention::cluster::key_hash_slot;
use redis_retention::config::parse_ratio;
use redis_retention::policy::duration::{format_duration_ms, parse_duration_ms, MAX_DURATION_MS};
use redis_retention::policy::{
    clipped, parse_policy, Glob, KeyType, Policy, QueueFlavor, Selector,
};
use redis_retention::queue::layout::{base_candidates, classify, parse_score, KeyRole};
use redis_retention::runs::{ms_from_json, parse_rfc3339_ms, validate_id, RunSetNames};
use redis_retention::trim::plan::{entries_to_remove, list_trim_range};

// ---------------------------------------------------------------------------------------
// The reference glob: Redis 7.0's `stringmatchlen_impl` (util.c, nocase = 0), ported line
// by line. The pattern is an sds, so reading one byte past its end gives the terminating
// NUL, as `pat(i)` does here. `nesting_limit` adds the guard of CVE-2024-31228
// (`if (nesting > 1000) return 0;`), which upstream 7.0.15 does not have.

struct Reference<'a> {
    pattern: &'a [u8],
    name: &'a [u8],
    nesting_limit: Option<usize>,
    skip_longer_matches: bool,
}

impl Reference<'_> {
    fn pat(&self, i: usize) -> u8 {
        self.pattern.get(i).copied().unwrap_or(0)
    }

    fn matches(&mut self, mut p: usize, mut s: usize, nesting: usize) -> bool {
        if self.nesting_limit.is_some_and(|limit| nesting > limit) {
            return false;
        }
        let mut plen = self.pattern.len() as isize - p as isize;
        let mut slen = self.name.len() - s;
        while plen > 0 && slen > 0 {
            match self.pat(p) {
                b'*' => {
                    while plen > 0 && self.pat(p + 1) == b'*' {
                        p += 1;
                        plen -= 1;
                    }
                    if plen == 1 {
                        return true;
                    }
                    while slen > 0 {
                        if self.matches(p + 1, s, nesting + 1) {
                            return true;
                        }
                        if self.skip_longer_matches {
                            return false;
                        }
                        s += 1;
                        slen -= 1;
                    }
                    self.skip_longer_matches = true;
                    return false;
                }
                b'?' => {
                    s += 1;
                    slen -= 1;
                }
                b'[' => {
                    p += 1;
                    plen -= 1;
                    let not = self.pat(p) == b'^';
                    if not {
                        p += 1;
                        plen -= 1;
                    }
                    let mut matched = false;
                    loop {
                        if self.pat(p) == b'\\' && plen >= 2 {
                            p += 1;
                            plen -= 1;
                            if self.pat(p) == self.name[s] {
                                matched = true;
                            }
                        } else if self.pat(p) == b']' {
                            break;
                        } else if plen == 0 {
                            p -= 1;
                            plen += 1;
                            break;
                        } else if plen >= 3 && self.pat(p + 1) == b'-' {
                            // `int start = pattern[0]`: chars are signed on x86.
                            let mut start = self.pat(p) as i8 as i32;
                            let mut end = self.pat(p + 2) as i8 as i32;
                            let c = self.name[s] as i8 as i32;
                            if start > end {
                                std::mem::swap(&mut start, &mut end);
                            }
                            p += 2;
                            plen -= 2;
                            if c >= start && c <= end {
                                matched = true;
                            }
                        } else if self.pat(p) == self.name[s] {
                            matched = true;
                        }
                        p += 1;
                        plen -= 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
                c => {
                    if c == b'\\' && plen >= 2 {
                        p += 1;
                        plen -= 1;
                    }
                    if self.pat(p) != self.name[s] {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
            }
            p += 1;
            plen -= 1;
            if slen == 0 {
                while self.pat(p) == b'*' {
                    p += 1;
                    plen -= 1;
                }
                break;
            }
        }
        plen == 0 && slen == 0
    }
}

/// What `SCAN MATCH` / `KEYS` answer: the pattern `*` alone skips the matcher.
fn reference_match(pattern: &[u8], name: &[u8], nesting_limit: Option<usize>) -> bool {
    if pattern == b"*" {
        return true;
    }
    Reference {
        pattern,
        name,
        nesting_limit,
        skip_longer_matches: false,
    }
    .matches(0, 0, 0)
}

/// Upstream Redis 7.0.
fn unguarded_match(pattern: &[u8], name: &[u8]) -> bool {
    reference_match(pattern, name, None)
}

/// Servers patched for CVE-2024-31228: Redis 6.2.16+, 7.2.6+, 7.4.1+, Debian's 7.0.15,
/// Valkey (the servers this suite runs on).
fn guarded_match(pattern: &[u8], name: &[u8]) -> bool {
    reference_match(pattern, name, Some(1000))
}

// ---------------------------------------------------------------------------------------
// The glob matcher against the reference port, on fixed tables and seeded random inputs
// (one port of `stringmatchlen` serves the unit-level and the property tests).

fn valid_glob(p: &[u8]) -> Glob {
    Glob::new(p).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(p)))
}

#[test]
fn table_of_matches() {
    let yes: &[(&[u8], &[u8])] = &[
        (b"*", b""),
        (b"*", b"anything"),
        (b"**", b"x"),
        (b"bull:*", b"bull:"),
        (b"bull:*", b"bull:q:1"),
        (b"bull:*:id", b"bull:q:id"),
        (b"bull:*:id", b"bull::id"),
        (b"bull:*:id", b"bull:a:b:id"),
        (b"*:id", b"x:id"),
        (b"a?c", b"abc"),
        (b"a?c", b"a\x00c"),
        (b"[abc]x", b"bx"),
        (b"[^abc]x", b"dx"),
        (b"[a-z]", b"m"),
        (b"[z-a]", b"m"),
        (b"[a-cx-z]", b"y"),
        (b"[\\]]", b"]"),
        (b"[\\^a]", b"^"),
        (b"[a\\-z]", b"-"),
        (b"a\\*b", b"a*b"),
        (b"a\\?", b"a?"),
        (b"a\\[b", b"a[b"),
        (b"\\x", b"x"),
        (b"ab\\", b"ab\\"),
        (b"[*]", b"*"),
        (b"[\x80-\xff]", b"\xa0"),
        (b"*a*a*a*a*a*b", b"aaaaaab"),
        (b"*?", b"x"),
        (b"?*?", b"xy"),
        (b"a*b*c", b"abc"),
        (b"a*b*c", b"axxbyyc"),
        (b"*\x00*", b"a\x00b"),
        (b"[^a-z]", b"\xff"),
    ];
    for (p, n) in yes {
        assert!(valid_glob(p).matches(n), "{:?} should match {:?}", p, n);
        assert!(unguarded_match(p, n), "reference: {:?} vs {:?}", p, n);
    }
    let no: &[(&[u8], &[u8])] = &[
        (b"**", b""),
        (b"?", b""),
        (b"a*", b""),
        (b"bull:*", b"bull"),
        (b"bull:*", b"Bull:x"),
        (b"bull:*:id", b"bull:q:idx"),
        (b"a?c", b"ac"),
        (b"a?c", b"abbc"),
        (b"[abc]x", b"dx"),
        (b"[^abc]x", b"ax"),
        (b"[a-z]", b"A"),
        (b"a\\*b", b"axb"),
        (b"ab\\", b"ab"),
        (b"*a*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (b"a*b*c", b"acb"),
        (b"abc", b"abcd"),
        (b"abc", b"ab"),
        (b"[\x80-\xff]", b"a"),
    ];
    for (p, n) in no {
        assert!(
            !valid_glob(p).matches(n),
            "{:?} should not match {:?}",
            p,
            n
        );
        assert!(!unguarded_match(p, n), "reference: {:?} vs {:?}", p, n);
    }
}

#[test]
fn odd_patterns_still_compile_exactly_like_redis() {
    // Rejected by `new`, but `new_unchecked` must still mirror Redis (the property test covers
    // them too); spot-check the strangest readings.
    let cases: &[(&[u8], &[u8], bool)] = &[
        (b"[abc", b"b", true),
        (b"[^", b"q", true),
        (b"[", b"[", false),
        (b"[]", b"]", false),
        (b"[^]", b"x", true),
        (b"[a-]", b"_", true),
        (b"[a-]", b"-", false),
        (b"[\x00-\xff]", b"\x80", false),
        (b"[\x00-\xff]", b"\xff", true),
        (b"[a-]x", b"x", true),
    ];
    for (p, n, want) in cases {
        let g = Glob::new_unchecked(p);
        assert!(Glob::new(p).is_err(), "{p:?}");
        assert_eq!(unguarded_match(p, n), *want, "reference {p:?} {n:?}");
        assert_eq!(g.matches(n), *want, "{p:?} {n:?}");
    }
}

#[test]
fn agrees_with_a_port_of_redis_on_random_inputs() {
    let pattern_alphabet = b"**??[[]]^-\\abc\x00\x7f\x80\xff";
    let name_alphabet = b"abc-]^\\*?[\x00\x7f\x80\xff";
    let mut rng = Rng(0x5eed);
    let mut accepted = 0;
    for _ in 0..100_000 {
        let pattern = rng.string(pattern_alphabet, 0, 10);
        if pattern.is_empty() {
            continue; // rejected, and SCAN MATCH "" is not a glob anyone uses
        }
        let g = Glob::new_unchecked(&pattern);
        if Glob::new(&pattern).is_ok() {
            accepted += 1;
        }
        for _ in 0..8 {
            let name = rng.string(name_alphabet, 0, 8);
            assert_eq!(
                g.matches(&name),
                unguarded_match(&pattern, &name),
                "pattern {pattern:?} name {name:?}"
            );
        }
    }
    assert!(accepted > 5_000, "too few accepted patterns: {accepted}");
}

#[test]
fn agrees_with_redis_on_names_built_from_the_pattern() {
    // Random names rarely match long patterns; derive names from the pattern's own bytes.
    let pattern_alphabet = b"***?[]^-\\abab";
    let mut rng = Rng(42);
    for _ in 0..100_000 {
        let pattern = rng.string(pattern_alphabet, 0, 14);
        if pattern.is_empty() {
            continue;
        }
        let g = Glob::new_unchecked(&pattern);
        let mut name: Vec<u8> = pattern
            .iter()
            .copied()
            .filter(|_| rng.below(4) != 0)
            .collect();
        if rng.below(2) == 0 {
            let extra = rng.string(b"ab", 0, 3);
            let at = rng.below(name.len() + 1);
            name.splice(at..at, extra);
        }
        assert_eq!(
            g.matches(&name),
            unguarded_match(&pattern, &name),
            "pattern {pattern:?} name {name:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Corpus files: `\xNN`, `\\`, `\t`, `\n` escapes in text lines.

pub fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 4 <= b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex escape");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 4;
                    continue;
                }
                b'\\' => out.push(b'\\'),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                other => panic!("unknown escape \\{} in {text:?}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `tests/corpus/globs.txt`: `pattern<TAB>name<TAB>0|1` per line (escaped), `#` comments.
fn glob_corpus() -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let text = std::fs::read_to_string(corpus_dir().join("globs.txt")).expect("globs.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "globs.txt: bad line {line:?}");
            (unescape(cols[0]), unescape(cols[1]), cols[2].trim() == "1")
        })
        .collect()
}

#[test]
fn glob_corpus_agrees_with_the_reference_and_the_module() {
    let cases = glob_corpus();
    assert!(cases.len() >= 20, "corpus too small: {}", cases.len());
    for (pattern, name, want) in cases {
        let shown_case = format!("{} vs {}", shown(&pattern), shown(&name));
        assert_eq!(
            unguarded_match(&pattern, &name),
            want,
            "reference: {shown_case}"
        );
        assert_eq!(
            guarded_match(&pattern, &name),
            want,
            "guarded reference: {shown_case}"
        );
        assert_eq!(
            Glob::new_unchecked(&pattern).matches(&name),
            want,
            "module: {shown_case}"
        );
    }
}

#[test]
fn policy_corpus_gives_the_recorded_outcome() {
    let corpus = policy_corpus();
    assert!(corpus.len() >= 10, "corpus too small: {}", corpus.len());
    for (name, text, expect) in corpus {
        let outcome = parse_policy(&text);
        match expect.split_once(' ').unwrap_or((&expect, "")) {
            ("ok", rules) => {
                let policy = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                if !rules.is_empty() {
                    assert_eq!(policy.rules.len().to_string(), rules, "{name}");
                }
                assert_round_trips(&policy);
            }
            ("error", want) => {
                let e = outcome.expect_err(&name).message;
                assert!(e.contains(want), "{name}: got {e:?}, want {want:?}");
            }
            _ => panic!("{name}: bad .expect {expect:?}"),
        }
    }
}

fn assert_round_trips(policy: &Policy) {
    let rendered = policy.to_json();
    let again = parse_policy(&rendered.to_string())
        .unwrap_or_else(|e| panic!("normalized JSON does not parse: {e}\n{rendered}"));
    assert_eq!(&again, policy, "normalized JSON parses to other rules");
    assert_eq!(again.to_json(), rendered, "rendering is not stable");
    // Every rule's selector renders its patterns byte for byte.
    for (a, b) in policy.rules.iter().zip(&again.rules) {
        if let (Selector::Globs(x), Selector::Globs(y)) = (&a.selector, &b.selector) {
            let px: Vec<&[u8]> = x.iter().map(Glob::pattern).collect();
            let py: Vec<&[u8]> = y.iter().map(Glob::pattern).collect();
            assert_eq!(px, py);
        }
    }
}

/// An error an operator can read: says something, and quotes no megabytes of input.
fn assert_readable(msg: &str) {
    assert!(!msg.trim().is_empty(), "empty error");
    assert!(
        msg.len() <= 1024,
        "error of {} bytes: {}...",
        msg.len(),
        &msg[..200]
    );
}

/// An error about `rule` (after its prefix) starts with a JSON path into it: a field the
/// rule has (or `match` or `type`, when missing), or says what is wrong with the rule as a whole.
fn assert_names_a_path(rest: &str, rule: &Value, whole: &str) {
    if rest.starts_with("rule has ") || rest.starts_with("rule: must be a JSON object") {
        return;
    }
    // Field names may themselves hold ':', '.' or '[': compare whole keys.
    let names_a_field = rule.as_object().is_some_and(|fields| {
        fields.keys().any(|k| {
            rest.strip_prefix(clipped(k).as_ref())
                .is_some_and(|after| after.starts_with([':', '.', '[']))
        })
    });
    let names_a_missing_field = ["match: missing", "type: missing"]
        .iter()
        .any(|m| rest.starts_with(m));
    assert!(
        names_a_field || names_a_missing_field,
        "error does not start with a field of the rule: {whole:?}\nrule: {rule}"
    );
    assert!(rest.contains(": "), "no reason after the path: {whole:?}");
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_policies_parse_and_round_trip(doc in valid_policy()) {
        let text = doc.to_string();
        let policy = parse_policy(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(policy.rules.len(), doc["rules"].as_array().map_or(0, Vec::len));
        assert_round_trips(&policy);
        // Pretty-printed, the same rules.
        let pretty = serde_json::to_string_pretty(&doc).expect("pretty");
        prop_assert_eq!(parse_policy(&pretty).expect("pretty parses"), policy);
    }

    #[test]
    fn a_mutated_policy_parses_or_names_the_mutated_rule_and_path(
        doc in valid_policy(),
        at in any::<Index>(),
        m in mutation(),
    ) {
        let (mutated, path, m) = mutate(&doc, &at, m);
        let text = mutated.to_string();
        match parse_policy(&text) {
            Ok(policy) => assert_round_trips(&policy),
            Err(e) => {
                let msg = e.message;
                assert_readable(&msg);
                // A mutation inside rule k (not one removing rule k itself): the error is
                // about rule k, every rule before it being valid and uniquely named.
                let inside_rule = match (path.first(), path.get(1), &m) {
                    (Some(Step::Key(r)), Some(Step::At(k)), Mutation::Remove) if r == "rules" => {
                        (path.len() > 2).then_some(*k)
                    }
                    (Some(Step::Key(r)), Some(Step::At(k)), _) if r == "rules" => Some(*k),
                    _ => None,
                };
                if let Some(k) = inside_rule {
                    let rule = &mutated["rules"][k];
                    let prefix = rule_prefix(k, rule);
                    prop_assert!(
                        msg.starts_with(&prefix),
                        "error not about rules[{}]: {:?}\n{}", k, msg, text
                    );
                    assert_names_a_path(&msg[prefix.len()..], rule, &msg);
                }
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_errors_say_where(doc in arbitrary_json()) {
        match parse_policy(&doc.to_string()) {
            Ok(policy) => assert_round_trips(&policy),
            Err(e) => assert_readable(&e.message),
        }
        // The same value as the rules list, and as one rule.
        let as_rules = json!({ "rules": doc.clone() });
        if let Err(e) = parse_policy(&as_rules.to_string()) {
            assert_readable(&e.message);
        }
        let as_rule = json!({ "rules": [doc.clone()] });
        match parse_policy(&as_rule.to_string()) {
            Ok(policy) => assert_round_trips(&policy),
            Err(e) => {
                let prefix = rule_prefix(0, &doc);
                prop_assert!(e.message.starts_with(&prefix), "{:?}", e.message);
                assert_names_a_path(&e.message[prefix.len()..], &doc, &e.message);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,64}|[{}\\[\\]\",:0-9a-z \\\\]{0,64}") {
        if let Err(e) = parse_policy(&text) {
            assert_readable(&e.message);
        }
    }

    #[test]
    fn damaged_policy_text_is_a_syntax_error_with_a_position_or_parses(
        doc in valid_policy(),
        edits in prop::collection::vec((any::<Index>(), 0usize..3, prop::sample::select(
            vec!['{', '}', '[', ']', '"', ',', ':', '\\', '0', 'a', ' ', '\u{0}', 'é']
        )), 1..4),
    ) {
        let mut chars: Vec<char> = serde_json::to_string_pretty(&doc).expect("json").chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 if i < chars.len() => { chars.remove(i); }
                1 if i < chars.len() => chars[i] = c,
                _ => chars.insert(i, c),
            }
        }
        let text: String = chars.into_iter().collect();
        match (serde_json::from_str::<Value>(&text), parse_policy(&text)) {
            (Err(_), Err(e)) => prop_assert!(
                e.message.starts_with("line ") && e.message.contains(", column "),
                "{:?}", e.message
            ),
            (Err(_), Ok(_)) => prop_assert!(false, "invalid JSON accepted: {:?}", text),
            (Ok(_), Ok(policy)) => assert_round_trips(&policy),
            (Ok(_), Err(e)) => assert_readable(&e.message),
        }
    }
}

#[test]
fn a_policy_of_100k_rules_parses_and_a_late_duplicate_is_named() {
    let rule = |i: usize| format!(r#"{{"name":"rule{i}","match":"key:{i}:*","ttl":"1h"}}"#);
    let mut rules: Vec<String> = (0..100_000).map(rule).collect();
    let policy = parse_policy(&format!(r#"{{"rules":[{}]}}"#, rules.join(",")))
        .expect("100k distinct rules");
    assert_eq!(policy.rules.len(), 100_000);
    assert_eq!(
        policy.rule_for(b"key:99999:x", KeyType::String),
        Some(99_999)
    );
    // The last rule repeats the name of the first.
    rules.push(rule(0));
    let err = parse_policy(&format!(r#"{{"rules":[{}]}}"#, rules.join(",")))
        .expect_err("duplicate name")
        .message;
    assert!(
        err.starts_with("rules[100000] (\"rule0\"): name: duplicate rule name"),
        "{err}"
    );
    assert!(
        err.contains("rules[0]"),
        "the first use is not named: {err}"
    );
}

#[test]
fn errors_quote_at_most_a_short_prefix_of_huge_input() {
    // Found by the corpus: a megabyte glob, name, duration or field was quoted whole, and
    // `CONFIG SET` (which cuts module errors at 255 bytes) then lost the reason.
    let big = "x".repeat(1 << 20);
    let bad_glob = format!("[{big}");
    let cases = [
        (
            format!(r#"{{"name":"{big}","match":"*","ttl":"1y"}}"#),
            "ttl: bad duration",
        ),
        (
            format!(r#"{{"name":"a","match":"{bad_glob}","ttl":"1h"}}"#),
            "unterminated",
        ),
        (
            format!(r#"{{"name":"a","match":"*","ttl":"{big}"}}"#),
            "expected an integer",
        ),
        (
            format!(r#"{{"name":"a","match":"*","ttl":"1{big}"}}"#),
            "unknown unit",
        ),
        (
            format!(r#"{{"name":"a","match":"*","ttl":"1h","{big}":1}}"#),
            "unknown field",
        ),
        (
            format!(r#"{{"name":"a","match":"*","ttl":"1h","type":"{big}"}}"#),
            "unknown type",
        ),
        (
            format!(
                r#"{{"name":"{big}","match":"*","keep":true}},{{"name":"{big}","match":"*","keep":true}}"#
            ),
            "duplicate",
        ),
    ];
    for (rules, want) in cases {
        let e = parse_policy(&format!(r#"{{"rules":[{rules}]}}"#))
            .expect_err(want)
            .message;
        assert!(e.contains(want), "{want}: {}", &e[..e.len().min(300)]);
        assert!(e.len() < 400, "{want}: {} bytes", e.len());
    }
    let e = parse_duration_ms(&big).expect_err("not a duration");
    assert!(e.len() < 200, "{} bytes", e.len());
}

#[test]
fn deeply_nested_policy_json_is_refused_without_overflowing_the_stack() {
    for depth in [200, 100_000] {
        let text = format!(
            r#"{{"rules":[{{"name":"a","match":"*","ttl":"1h","comment":{}{}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let err = parse_policy(&text).expect_err("too deep").message;
        assert!(err.contains("recursion limit"), "{err}");
        assert!(err.starts_with("line 1, column "), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Globs.

fn pattern_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(b"**??[[]]^^--\\\\ab:\x00\x7f\x80\xc3\xa9\xff".to_vec());
    prop::collection::vec(byte, 1..14)
}

/// A name made from the pattern's own bytes (so that it often matches), with some dropped,
/// some replaced and some inserted.
fn name_from(pattern: &[u8], edits: &[(Index, u8, u8)]) -> Vec<u8> {
    let mut name: Vec<u8> = pattern
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'*' | b'[' | b']' | b'\\' | b'^'))
        .collect();
    for (at, op, byte) in edits {
        let i = at.index(name.len() + 1);
        match op % 3 {
            0 if i < name.len() => {
                name.remove(i);
            }
            1 if i < name.len() => name[i] = *byte,
            _ => name.insert(i, *byte),
        }
    }
    name
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn glob_agrees_with_redis_stringmatchlen(
        pattern in pattern_bytes(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), prop::sample::select(
            b"ab:-]^\\*?[\x00\x7f\x80\xa9\xc3\xff".to_vec())), 0..4),
        random_name in prop::collection::vec(any::<u8>(), 0..6),
    ) {
        // Rejected patterns too: the matcher must still read them as Redis does.
        let unchecked = Glob::new_unchecked(&pattern);
        let checked = Glob::new(&pattern);
        if let Err(e) = &checked {
            prop_assert!(!e.is_empty());
        }
        for name in [name_from(&pattern, &edits), random_name.clone(), Vec::new()] {
            let want = unguarded_match(&pattern, &name);
            prop_assert_eq!(
                unchecked.matches(&name), want,
                "pattern {} name {}", shown(&pattern), shown(&name)
            );
            if let Ok(glob) = &checked {
                prop_assert_eq!(glob.matches(&name), want);
                // Accepted patterns also match as servers with the CVE-2024-31228 guard do.
                prop_assert_eq!(guarded_match(&pattern, &name), want);
            }
        }
    }

    #[test]
    fn glob_of_star_groups_matches_long_names_like_redis(
        groups in prop::collection::vec(("[ab?]{1,3}", any::<bool>()), 1..8),
        name in "[ab]{0,60}",
    ) {
        let mut pattern = Vec::new();
        for (segment, star) in &groups {
            pattern.extend_from_slice(segment.as_bytes());
            if *star {
                pattern.push(b'*');
            }
        }
        let glob = Glob::new(&pattern).expect("plain pattern");
        prop_assert_eq!(glob.matches(name.as_bytes()), unguarded_match(&pattern, name.as_bytes()));
    }
}

#[test]
fn globs_with_more_star_groups_than_the_server_matcher_nests_are_refused() {
    // Servers patched for CVE-2024-31228 (Debian's 7.0.15 and Valkey 9.1 included) stop
    // matching past 1000 nested `*`; upstream 7.0.15 has no such limit. Such a pattern would
    // match a key for the module and not for SCAN MATCH, so it is refused.
    let star_groups = |n: usize| b"*a".repeat(n);
    let name = vec![b'a'; 1001];
    let at_limit = star_groups(1000);
    assert!(unguarded_match(&at_limit, &name));
    assert!(guarded_match(&at_limit, &name));
    assert!(Glob::new(&at_limit).expect("1000 groups").matches(&name));

    let over = star_groups(1001);
    assert!(unguarded_match(&over, &name), "upstream 7.0 has no limit");
    assert!(!guarded_match(&over, &name), "patched servers give up");
    let err = Glob::new(&over).expect_err("1001 groups");
    assert!(err.contains("1000"), "{err}");
    // Consecutive stars are one group (the server skips them in one go).
    let doubled = b"**a".repeat(1000);
    assert!(Glob::new(&doubled).is_ok());
    // Through the policy parser too.
    let policy = format!(
        r#"{{"rules":[{{"name":"x","match":"{}","ttl":"1h"}}]}}"#,
        String::from_utf8(over).expect("ascii")
    );
    let e = parse_policy(&policy).expect_err("refused").message;
    assert!(e.starts_with("rules[0] (\"x\"): match: bad glob"), "{e}");
}

#[test]
fn huge_glob_patterns_and_names_are_matched_without_recursion() {
    // 1 MB patterns compile and match without deep recursion (the matcher is iterative).
    let pattern = [&b"a"[..], &b"?".repeat(1 << 20), b"*b"].concat();
    let glob = Glob::new(&pattern).expect("long pattern");
    let name = [&b"a"[..], &vec![b'x'; 1 << 20], b"zzb"].concat();
    assert!(glob.matches(&name));
    assert!(!glob.matches(&name[..name.len() - 1]));
    let stars = b"*?".repeat(400_000);
    let glob = Glob::new_unchecked(&stars);
    assert!(glob.matches(&vec![b'q'; 400_000]));
    assert!(!glob.matches(&vec![b'q'; 399_999]));
}

// ---------------------------------------------------------------------------------------
// Durations and integers.

const UNIT_MS: [(&str, i64); 7] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
    ("", 1000),
];

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn durations_never_panic_and_stay_in_range(text in "\\PC{0,24}|[0-9]{0,30}[a-z]{0,3}") {
        match parse_duration_ms(&text) {
            Ok(ms) => prop_assert!((1..=MAX_DURATION_MS).contains(&ms), "{} -> {}", text, ms),
            Err(e) => {
                prop_assert!(e.starts_with("bad duration '"), "{}", e);
                assert_readable(&e);
            }
        }
    }

    #[test]
    fn durations_are_exact_or_refused_never_wrapped(
        digits in "[0-9]{1,40}",
        unit in 0usize..UNIT_MS.len(),
        pad in prop::sample::select(vec!["", " ", "\t", "\n "]),
    ) {
        let (name, unit_ms) = UNIT_MS[unit];
        let text = format!("{pad}{digits}{name}{pad}");
        // The reference in 128-bit arithmetic: 40 digits overflow even that, so they are
        // "too large" by length.
        let exact = digits.parse::<u128>().ok().and_then(|n| n.checked_mul(unit_ms as u128));
        match (parse_duration_ms(&text), exact) {
            (Ok(ms), Some(want)) => prop_assert_eq!(ms as u128, want),
            (Ok(ms), None) => prop_assert!(false, "{:?} parsed to {} but overflows", text, ms),
            (Err(e), Some(want)) => prop_assert!(
                want == 0 || want > MAX_DURATION_MS as u128,
                "{:?} refused: {}", text, e
            ),
            (Err(_), None) => {}
        }
    }

    #[test]
    fn durations_round_trip_through_their_shortest_spelling(ms in 1i64..=MAX_DURATION_MS) {
        let text = format_duration_ms(ms);
        prop_assert_eq!(parse_duration_ms(&text), Ok(ms));
        // No larger unit divides it.
        let (_, used) = UNIT_MS.iter().find(|(n, _)| text.ends_with(n) && !n.is_empty()
            && text[..text.len() - n.len()].bytes().all(|b| b.is_ascii_digit()))
            .expect("a unit");
        for (_, bigger) in UNIT_MS.iter().filter(|(n, u)| !n.is_empty() && u > used) {
            prop_assert!(ms % bigger != 0, "{} could be written in a larger unit", text);
        }
    }

    #[test]
    fn integers_parse_exactly_like_a_strict_reference(text in "-?[0-9]{0,22}|[-+ 0-9a-fx.e]{0,8}|\\PC{0,6}") {
        let body = text.strip_prefix('-').unwrap_or(&text);
        let reference = (!body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<i128>().ok())
            .flatten()
            .and_then(|n| i64::try_from(n).ok());
        prop_assert_eq!(parse_i64(&text), reference, "{:?}", text);
    }

    #[test]
    fn every_integer_reads_back(n in any::<i64>()) {
        prop_assert_eq!(parse_i64(&n.to_string()), Some(n));
    }

    #[test]
    fn echoed_input_is_printable_and_bounded(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = shown(&bytes);
        prop_assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b)), "{:?}", text);
        prop_assert!(text.len() <= 64 * 4 + 3);
        if bytes.len() <= 64 && bytes.iter().all(|b| (b' '..=b'~').contains(b) && *b != b'\\') {
            prop_assert_eq!(text.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn pressure_ratio_is_a_finite_fraction_or_refused(text in "\\PC{0,12}|[-+0-9.eEinfaINFA]{0,8}") {
        match parse_ratio(&text) {
            Ok(r) => prop_assert!(r.is_finite() && r > 0.0 && r <= 1.0, "{:?} -> {}", text, r),
            Err(e) => prop_assert!(e.starts_with("ERR pressure-ratio"), "{}", e),
        }
    }
}

#[test]
fn non_finite_numbers_are_refused_everywhere() {
    for text in [
        "nan", "NaN", "inf", "-inf", "+inf", "infinity", "1e309", "-0", "0x10",
    ] {
        assert!(parse_ratio(text).is_err(), "ratio {text}");
        assert!(parse_duration_ms(text).is_err(), "duration {text}");
        assert!(parse_i64(text).is_none() || text == "-0", "integer {text}");
    }
    assert_eq!(parse_i64("-0"), Some(0));
    assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_i64("9223372036854775808"), None);
}

// ---------------------------------------------------------------------------------------
// Run sets: ids, base names, slots, start times.

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn run_ids_are_exactly_the_printable_utf8_texts_up_to_512_bytes(
        id in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..8),
            "\\PC{0,8}".prop_map(String::into_bytes),
            (0usize..600).prop_map(|n| vec![b'x'; n]),
            (0usize..200).prop_map(|n| "é".repeat(n).into_bytes()),
        ],
    ) {
        let want = !id.is_empty()
            && id.len() <= 512
            && std::str::from_utf8(&id).is_ok_and(|t| !t.chars().any(char::is_control));
        match validate_id(&id) {
            Ok(()) => prop_assert!(want, "accepted {}", shown(&id)),
            Err(e) => {
                prop_assert!(!want, "refused {}: {}", shown(&id), e);
                prop_assert!(e.to_string().starts_with("ERR run id"));
            }
        }
    }

    #[test]
    fn run_set_names_append_suffixes_and_slots_follow_hash_tags(
        base in prop::collection::vec(any::<u8>(), 0..40),
        tag in "[a-z0-9:]{1,8}",
        before in "[a-z:]{0,6}",
        after in "[a-z:{}]{0,6}",
    ) {
        match RunSetNames::new(&base) {
            Ok(n) => {
                prop_assert!(!base.is_empty() && base.len() <= 1024);
                prop_assert_eq!(&n.index, &[&base[..], b":index"].concat());
                prop_assert_eq!(&n.data, &[&base[..], b":data"].concat());
            }
            Err(e) => {
                prop_assert!(base.is_empty() || base.len() > 1024);
                prop_assert!(e.to_string().starts_with("ERR "));
            }
        }
        prop_assert!(key_hash_slot(&base) < 16384);
        // `<before>{<tag>}<after>` hashes as `<tag>` when `before` has no `{`; a tagged base
        // keeps its :index and :data in its own slot.
        let tagged = format!("{before}{{{tag}}}{after}");
        prop_assert_eq!(key_hash_slot(tagged.as_bytes()), key_hash_slot(tag.as_bytes()));
        let names = RunSetNames::new(tagged.as_bytes()).expect("short base");
        prop_assert!(names.check_cluster_slots().is_ok());
    }

    #[test]
    fn start_times_never_panic_and_stay_in_range(text in "\\PC{0,32}|[0-9T:.Z+-]{0,30}") {
        if let Some(ms) = parse_rfc3339_ms(&text) {
            prop_assert!((0..=253_402_300_799_999).contains(&ms));
        }
        for v in [json!(text.clone()), serde_json::from_str(&text).unwrap_or(Value::Null)] {
            if let Some(ms) = ms_from_json(&v) {
                prop_assert!((0..=253_402_300_799_999).contains(&ms), "{} -> {}", v, ms);
            }
        }
    }

    #[test]
    fn iso_times_round_trip(
        ms in 0i64..=253_402_300_799_999,
        offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        sep in prop::sample::select(vec!['T', 't', ' ']),
        colon in any::<bool>(),
    ) {
        // Written as a local time at `offset_min` east of UTC.
        let local = ms + offset_min * 60_000;
        prop_assume!((0..=253_402_300_799_999).contains(&local));
        let (y, mo, d, h, mi, s, milli) = civil(local);
        let sign = if offset_min < 0 { '-' } else { '+' };
        let (oh, om) = (offset_min.abs() / 60, offset_min.abs() % 60);
        let zone = match (offset_min, colon) {
            (0, true) => "Z".to_string(),
            (_, true) => format!("{sign}{oh:02}:{om:02}"),
            (_, false) => format!("{sign}{oh:02}{om:02}"),
        };
        let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}.{milli:03}{zone}");
        prop_assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{}", text);
        prop_assert_eq!(ms_from_json(&json!(text)), Some(ms));
        prop_assert_eq!(ms_from_json(&json!(ms)), Some(ms));
        prop_assert_eq!(ms_from_json(&json!(ms.to_string())), Some(ms));
    }
}

// ---------------------------------------------------------------------------------------
// Queue key names (read from the keyspace: anything may be there) and trim planning.

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn queue_key_classification_never_panics_and_stays_inside_the_name(
        prefix in "[a-z]{1,5}",
        rest in prop::collection::vec(prop::sample::select(b":::ab1-{}\x00\xff".to_vec()), 0..16),
        tail in prop::sample::select(vec![
            "", ":completed", ":failed", ":events", ":logs", ":lock", ":dependencies",
            ":processed", ":id", ":meta", ":repeat:x", ":de:1", ":dn:1",
        ]),
        key_type in 0usize..KeyType::ALL.len(),
        mq in any::<bool>(),
    ) {
        let flavor = if mq { QueueFlavor::BullMq } else { QueueFlavor::Bull };
        let key_type = KeyType::ALL[key_type].1;
        let prefix = format!("{prefix}:");
        let name = [prefix.as_bytes(), &rest, tail.as_bytes()].concat();
        for prefix_len in [prefix.len(), 0, name.len(), name.len() + 3] {
            match classify(flavor, prefix_len, &name, key_type) {
                KeyRole::Finished { base_len, .. } => prop_assert!(base_len < name.len()),
                KeyRole::SubKeyCandidate { job_key_len } => prop_assert!(job_key_len < name.len()),
                _ => {}
            }
            for base_len in base_candidates(prefix_len.min(name.len()), &name) {
                prop_assert!(base_len < name.len());
                prop_assert_eq!(name[base_len - 1], b':');
            }
        }
        if let Some(score) = parse_score(&name) {
            prop_assert!(!score.is_nan());
        }
    }

    #[test]
    fn scores_parse_like_the_server_prints_them(
        score in any::<f64>(),
        junk in "\\PC{0,6}",
    ) {
        let printed = if score.is_nan() { "nan".to_string() } else { format!("{score}") };
        match parse_score(printed.as_bytes()) {
            Some(v) => prop_assert_eq!(v, score),
            None => prop_assert!(score.is_nan()),
        }
        if let Some(v) = parse_score(junk.as_bytes()) {
            prop_assert!(!v.is_nan());
        }
    }

    #[test]
    fn trim_plans_keep_what_they_promise(
        // An empty list does not exist in Redis: nothing is ever trimmed from one.
        len in prop_oneof![1u64..100, 1u64..=u64::MAX],
        remove in prop_oneof![0u64..100, any::<u64>()],
        max_len in prop::option::of(prop_oneof![0u64..100, any::<u64>()]),
        head in any::<bool>(),
    ) {
        let n = entries_to_remove(len, max_len, remove);
        prop_assert!(n <= len);
        prop_assert!(n >= remove.min(len));
        if let Some(max) = max_len {
            prop_assert!(len - n <= max);
        }
        let keep = if head {
            redis_retention::policy::ListEnd::Head
        } else {
            redis_retention::policy::ListEnd::Tail
        };
        let (start, stop) = list_trim_range(len, n, keep);
        let kept = if start > stop { 0 } else { stop - start + 1 };
        prop_assert_eq!(kept, len - n);
        // LTRIM indexes are never negative and within the list.
        prop_assert!(kept == 0 || stop < len);
        if kept > 0 && head {
            prop_assert_eq!(start, 0);
        }
        if kept > 0 && !head {
            prop_assert_eq!(stop, len - 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The policy's rule lookup, against a naive reading of "first rule that fits wins".

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_first_rule_that_fits_governs(
        doc in valid_policy(),
        names in prop::collection::vec("[ab:*?é\\[\\]{}w-]{0,10}", 1..12),
        key_type in 0usize..KeyType::ALL.len(),
    ) {
        let policy = parse_policy(&doc.to_string()).expect("valid");
        let key_type = KeyType::ALL[key_type].1;
        for name in &names {
            let name = name.as_bytes();
            let fits = |r: &redis_retention::policy::Rule| match &r.selector {
                Selector::Globs(globs) => globs.iter().any(|g| unguarded_match(g.pattern(), name)),
                Selector::Prefix(p) => name.starts_with(p),
                Selector::RunBases(globs) => name
                    .strip_suffix(b":index")
                    .or_else(|| name.strip_suffix(b":data"))
                    .is_some_and(|b| globs.iter().any(|g| unguarded_match(g.pattern(), b))),
            };
            // Queue and runs rules claim their names whatever the type.
            let naive = policy.rules.iter().position(|r| {
                fits(r)
                    && (r.key_type.is_none_or(|t| t == key_type)
                        || !matches!(r.selector, Selector::Globs(_)))
            });
            prop_assert_eq!(
                policy.rule_for(name, key_type), naive,
                "{:?}", String::from_utf8_lossy(name)
            );
            prop_assert_eq!(policy.may_govern(name), policy.rules.iter().any(fits));
        }
    }
}

/// Key names near the rules' patterns: a literal head of a generated glob (or queue prefix)
/// with a random tail, sometimes a run-set suffix.
fn name_near_rules() -> impl Strategy<Value = Vec<u8>> {
    let heads = prop::sample::select(vec![
        "",
        "a",
        "b:",
        "ab",
        "b:a",
        "runs:active:",
        "bull:",
        "jobs:",
        "my:app:",
        "b{x}:",
        "é",
        "a]b:",
        "q\\:",
        "{w}",
        "\\",
        "[",
    ]);
    let tails = prop::collection::vec(prop::sample::select(b"ab:z{w}-]\\*?[".to_vec()), 0..6);
    let suffix = prop::sample::select(vec!["", "", ":index", ":data", ":id", ":meta"]);
    (heads, tails, suffix).prop_map(|(h, t, s)| [h.as_bytes(), &t, s.as_bytes()].concat())
}

proptest! {
    #![proptest_config(config(128))]

    /// Policies above the linear-scan size find a key's rule through the literal-prefix
    /// index: the answer must be the first rule that governs it, rule by rule.
    #[test]
    fn the_rule_index_finds_the_first_governing_rule(
        rules in prop::collection::vec(valid_rule(), 33..90),
        names in prop::collection::vec((name_near_rules(), key_type_name()), 64),
    ) {
        let rules: Vec<Value> = rules
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.insert("name".into(), json!(format!("n{i}")));
                Value::Object(r)
            })
            .collect();
        let whole = parse_policy(&json!({ "rules": rules }).to_string()).expect("policy");
        let alone: Vec<Policy> = rules
            .iter()
            .map(|r| parse_policy(&json!({ "rules": [r] }).to_string()).expect("one rule"))
            .collect();
        for (name, type_name) in &names {
            let key_type = KeyType::from_name(type_name).expect("type");
            let first = alone.iter().position(|p| p.rule_for(name, key_type).is_some());
            prop_assert_eq!(whole.rule_for(name, key_type), first, "{:?}", shown(name));
            let any = alone.iter().any(|p| p.may_govern(name));
            prop_assert_eq!(whole.may_govern(name), any, "{:?}", shown(name));
        }
    }
}
