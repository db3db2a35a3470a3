//! Redis-compatible glob matching: the same answers as Redis 7.0's `stringmatchlen`
//! (util.c) as used by `SCAN MATCH` and `KEYS`, case-sensitive, on binary names.
//!
//! Syntax: `*` any run of bytes, `?` one byte, `[abc]` one of, `[^abc]` none of, `[a-z]` a
//! range (reversed ranges such as `[z-a]` are swapped, as Redis does), `\x` the byte `x`
//! (inside classes too). A trailing `\` matches a literal backslash, as in Redis.
//!
//! The pattern is compiled once into tokens that each consume exactly one byte (or, for `*`,
//! any run). Matching is then linear-ish and never exponential: the segments between stars
//! have fixed lengths, so placing each one at its leftmost fit is optimal. Literal prefixes and
//! suffixes are checked first, and pure literals and `prefix*` patterns skip the general path.
//!
//! `Glob::new` rejects the empty pattern and the patterns that Redis accepts but reads in a
//! way no one writing them means (each error says how to write what was probably meant):
//! - an unterminated class (`user:[abc`): Redis silently closes it at the end of the pattern;
//! - a class closed right after `[` or `[^` (`[]abc]`, `[^]`): Redis reads `[]` as a class
//!   matching nothing and `[^]` as any byte, where shell users mean a literal `]` member;
//! - a range ending in `]` (`[a-]`, `[+-]]`): Redis makes `]` the range's end instead of
//!   reading `-` literally;
//! - a range ending in `\` (`[a-\]]`): a backslash does not escape a range end in Redis;
//! - a range with one end below byte 0x80 and the other at or above it: Redis compares
//!   *signed* chars on x86, so `[\x00-\xff]` would match only 0x00 and 0xff (and the answer
//!   would differ on platforms with unsigned chars).
//! - more than `MAX_STAR_GROUPS` runs of `*`: servers patched for CVE-2024-31228 (Redis
//!   6.2.16+, 7.2.6+, 7.4.1+, Debian's 7.0.15, Valkey) give up (no match) once their matcher
//!   nests deeper than 1000 runs; unpatched ones do not, so the answer would depend on the
//!   server.
//!
//! Every accepted pattern matches exactly as Redis does. The one special case is the pattern
//! `*` alone, which also matches the empty name: SCAN and KEYS skip the matcher for it, while
//! `stringmatchlen` never matches an empty name (so `**` does not match it either).

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);
    const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// Redis compares range ends and the name byte as C `char`s, which are signed on x86.
    fn insert_signed_range(&mut self, a: u8, b: u8) {
        let (lo, hi) = {
            let (a, b) = (a as i8, b as i8);
            (a.min(b), a.max(b))
        };
        for c in lo..=hi {
            self.insert(c as u8);
        }
    }

    fn complement(self) -> ByteSet {
        ByteSet(self.0.map(|w| !w))
    }
}

/// One pattern element that consumes exactly one byte of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    Byte(u8),
    Set(ByteSet),
}

impl Elem {
    fn accepts(&self, b: u8) -> bool {
        match self {
            Elem::Byte(x) => *x == b,
            Elem::Set(set) => set.contains(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Star,
    One(Elem),
}

/// A pattern Redis reads in a way its writer almost surely did not mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oddity {
    UnterminatedClass,
    ClassClosedAtOnce,
    RangeEndsInBracket,
    RangeEndsInBackslash,
    RangeCrossesSignBoundary,
    TooManyStars,
}

/// Patched servers' `stringmatchlen` returns "no match" past this nesting depth (one level per
/// run of `*`): the CVE-2024-31228 guard against stack exhaustion.
pub const MAX_STAR_GROUPS: usize = 1000;

impl Oddity {
    fn message(self) -> &'static str {
        match self {
            Oddity::UnterminatedClass => {
                "unterminated '[' (Redis would close it at the end of the pattern); write '\\[' for a literal '['"
            }
            Oddity::ClassClosedAtOnce => {
                "']' right after '[' or '[^' closes the class in Redis ('[]' matches nothing, '[^]' any byte); write '\\]' for a literal ']'"
            }
            Oddity::RangeEndsInBracket => {
                "'-' before ']' makes a range ending at ']' in Redis; write '\\-' for a literal '-'"
            }
            Oddity::RangeEndsInBackslash => {
                "a range cannot end in '\\' (Redis does not read it as an escape there)"
            }
            Oddity::RangeCrossesSignBoundary => {
                "a range from a byte below 0x80 to one at or above 0x80 is compared as signed chars by Redis; split it in two ranges"
            }
            Oddity::TooManyStars => {
                "more than 1000 runs of '*' (Redis and Valkey stop matching past 1000)"
            }
        }
    }
}

/// Parses a pattern exactly as `stringmatchlen` walks it. The walk never depends on the name
/// (a class is always read to its end), so it can be done once. Also reports oddities.
fn tokenize(p: &[u8]) -> (Vec<Token>, Vec<Oddity>) {
    let mut tokens = Vec::new();
    let mut odd = Vec::new();
    let n = p.len();
    let mut i = 0;
    while i < n {
        match p[i] {
            b'*' => {
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            b'?' => {
                tokens.push(Token::One(Elem::Set(ByteSet::ALL)));
                i += 1;
            }
            b'[' => {
                let (set, next) = parse_class(p, i + 1, &mut odd);
                tokens.push(Token::One(Elem::Set(set)));
                i = next;
            }
            b'\\' if n - i >= 2 => {
                tokens.push(Token::One(Elem::Byte(p[i + 1])));
                i += 2;
            }
            b => {
                tokens.push(Token::One(Elem::Byte(b)));
                i += 1;
            }
        }
    }
    if tokens.iter().filter(|t| **t == Token::Star).count() > MAX_STAR_GROUPS {
        odd.push(Oddity::TooManyStars);
    }
    (tokens, odd)
}

/// Reads a class whose body starts at `i` (just after `[`), mirroring util.c's loop, and
/// returns its byte set and the index after it.
fn parse_class(p: &[u8], mut i: usize, odd: &mut Vec<Oddity>) -> (ByteSet, usize) {
    let n = p.len();
    let negated = p.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let body_start = i;
    let mut set = ByteSet::EMPTY;
    loop {
        let left = n - i;
        if left >= 2 && p[i] == b'\\' {
            i += 1;
            set.insert(p[i]);
        } else if left >= 1 && p[i] == b']' {
            if i == body_start {
                odd.push(Oddity::ClassClosedAtOnce);
            }
            break;
        } else if left == 0 {
            // Redis steps back onto the last byte read; the step below then ends the pattern.
            odd.push(Oddity::UnterminatedClass);
            i -= 1;
            break;
        } else if left >= 3 && p[i + 1] == b'-' {
            let (start, end) = (p[i], p[i + 2]);
            if end == b']' {
                odd.push(Oddity::RangeEndsInBracket);
            }
            if end == b'\\' {
                odd.push(Oddity::RangeEndsInBackslash);
            }
            if (start < 0x80) != (end < 0x80) {
                odd.push(Oddity::RangeCrossesSignBoundary);
            }
            set.insert_signed_range(start, end);
            i += 2;
        } else {
            set.insert(p[i]);
        }
        i += 1;
    }
    let set = if negated { set.complement() } else { set };
    (set, i + 1)
}

/// The precomputed matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// `*` alone: every name, the empty one included (SCAN/KEYS skip matching for it).
    Everything,
    /// No wildcard at all.
    Exact(Vec<u8>),
    /// A literal followed by one star.
    Prefix(Vec<u8>),
    General(General),
}

/// `head * middle[0] * ... * tail`, or just `head` when the pattern has no star.
#[derive(Debug, Clone, PartialEq, Eq)]
struct General {
    has_star: bool,
    /// Literal bytes every match starts / ends with (checked first, cheaply).
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    /// Bytes a name needs at least (one per non-star token).
    min_len: usize,
    head: Vec<Elem>,
    middle: Vec<Vec<Elem>>,
    tail: Vec<Elem>,
}

impl General {
    fn new(tokens: &[Token]) -> General {
        let mut segments: Vec<Vec<Elem>> = vec![Vec::new()];
        for token in tokens {
            match token {
                Token::Star => segments.push(Vec::new()),
                Token::One(e) => {
                    if let Some(last) = segments.last_mut() {
                        last.push(*e);
                    }
                }
            }
        }
        let has_star = segments.len() > 1;
        let head = segments.remove(0);
        let tail = if has_star {
            segments.pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        let literal = |e: &Elem| match e {
            Elem::Byte(b) => Some(*b),
            Elem::Set(_) => None,
        };
        let prefix: Vec<u8> = head.iter().map_while(literal).collect();
        let mut suffix: Vec<u8> = tail.iter().rev().map_while(literal).collect();
        suffix.reverse();
        let min_len = head.len() + tail.len() + segments.iter().map(Vec::len).sum::<usize>();
        General {
            has_star,
            prefix,
            suffix,
            min_len,
            head,
            middle: segments,
            tail,
        }
    }

    fn matches(&self, name: &[u8]) -> bool {
        if name.len() < self.min_len || (!self.has_star && name.len() != self.min_len) {
            return false;
        }
        if !name.starts_with(&self.prefix) || !name.ends_with(&self.suffix) {
            return false;
        }
        let tail_start = name.len() - self.tail.len();
        let (p, s) = (self.prefix.len(), self.suffix.len());
        if !fits_at(&self.head[p..], name, p)
            || !fits_at(&self.tail[..self.tail.len() - s], name, tail_start)
        {
            return false;
        }
        // Each middle segment has a fixed length, so its leftmost fit leaves the most room
        // for the rest: greedy placement is exact and at most O(name × pattern).
        let mut from = self.head.len();
        for segment in &self.middle {
            match find(segment, &name[..tail_start], from) {
                Some(at) => from = at + segment.len(),
                None => return false,
            }
        }
        true
    }
}

/// Whether `elems` accept the bytes of `name` starting at `at` (the caller checked the length).
fn fits_at(elems: &[Elem], name: &[u8], at: usize) -> bool {
    elems.iter().zip(&name[at..]).all(|(e, b)| e.accepts(*b))
}

/// The leftmost position at or after `from` where `elems` fit inside `hay`.
fn find(elems: &[Elem], hay: &[u8], from: usize) -> Option<usize> {
    let last_start = hay.len().checked_sub(elems.len())?;
    let Some(first) = elems.first() else {
        return (from <= hay.len()).then_some(from);
    };
    (from..=last_start).find(|&at| first.accepts(hay[at]) && fits_at(&elems[1..], hay, at + 1))
}

/// A compiled Redis glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
    matcher: Matcher,
}

impl Glob {
    /// Compiles a pattern; rejects the empty pattern and the oddities listed in the module doc.
    pub fn new(pattern: &[u8]) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty glob".into());
        }
        let (glob, oddities) = Glob::compile(pattern);
        match oddities.first() {
            Some(odd) => Err(odd.message().into()),
            None => Ok(glob),
        }
    }

    /// Compiles any non-empty pattern, the oddities `new` rejects included, exactly as Redis
    /// reads it. For differential tests against a real server only.
    #[doc(hidden)]
    pub fn new_unchecked(pattern: &[u8]) -> Glob {
        Glob::compile(pattern).0
    }

    /// Compiles any pattern, oddities included, exactly as Redis reads it.
    fn compile(pattern: &[u8]) -> (Glob, Vec<Oddity>) {
        let (tokens, oddities) = tokenize(pattern);
        let literal: Option<Vec<u8>> = tokens
            .iter()
            .take_while(|t| **t != Token::Star)
            .map(|t| match t {
                Token::One(Elem::Byte(b)) => Some(*b),
                _ => None,
            })
            .collect();
        let stars = tokens.iter().filter(|t| **t == Token::Star).count();
        let matcher = match (literal, stars, tokens.last()) {
            _ if pattern == b"*" => Matcher::Everything,
            (Some(bytes), 0, _) => Matcher::Exact(bytes),
            (Some(bytes), 1, Some(Token::Star)) => Matcher::Prefix(bytes),
            _ => Matcher::General(General::new(&tokens)),
        };
        let glob = Glob {
            pattern: pattern.to_vec(),
            matcher,
        };
        (glob, oddities)
    }

    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// The part of the pattern before its first special character (`*`, `?`, `[`, `\`):
    /// every name the glob matches starts with it.
    pub fn literal_prefix(&self) -> &[u8] {
        let end = self
            .pattern
            .iter()
            .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
            .unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        match &self.matcher {
            Matcher::Everything => true,
            // `stringmatchlen` never matches an empty name with a non-empty pattern.
            _ if name.is_empty() => false,
            Matcher::Exact(bytes) => name == bytes.as_slice(),
            Matcher::Prefix(bytes) => name.starts_with(bytes),
            Matcher::General(general) => general.matches(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literal_prefix_stops_at_the_first_special_character() {
        let prefix = |p: &[u8]| Glob::new_unchecked(p).literal_prefix().to_vec();
        assert_eq!(prefix(b"celery-task-meta-*"), b"celery-task-meta-");
        assert_eq!(prefix(b"a?b"), b"a");
        assert_eq!(prefix(b"[ab]*"), b"");
        assert_eq!(prefix(b"x\\*y"), b"x");
        assert_eq!(prefix(b"exact"), b"exact");
    }

    fn glob(p: &[u8]) -> Glob {
        Glob::new(p).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(p)))
    }

    #[test]
    fn fast_paths_are_chosen() {
        assert_eq!(glob(b"*").matcher, Matcher::Everything);
        assert_eq!(glob(b"a\\*b").matcher, Matcher::Exact(b"a*b".to_vec()));
        assert_eq!(glob(b"bull:*").matcher, Matcher::Prefix(b"bull:".to_vec()));
        assert_eq!(glob(b"bull:**").matcher, Matcher::Prefix(b"bull:".to_vec()));
        match glob(b"ab?cd*ef[g]hi").matcher {
            Matcher::General(g) => {
                assert_eq!(g.prefix, b"ab");
                assert_eq!(g.suffix, b"hi");
                assert_eq!(g.min_len, 5 + 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn odd_patterns_are_rejected_with_a_hint() {
        let rejected: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"user:[abc", "unterminated"),
            (b"[", "unterminated"),
            (b"[^", "unterminated"),
            (b"a[\\]", "unterminated"),
            (b"[]abc]", "closes the class"),
            (b"[^]", "closes the class"),
            (b"[a-]", "range ending at ']'"),
            (b"[+-]]", "range ending at ']'"),
            (b"[a-\\]]", "cannot end in"),
            (b"[\x00-\xff]", "signed"),
            (b"[a-\x80]", "signed"),
        ];
        for (p, why) in rejected {
            let err = Glob::new(p).expect_err(&format!("{p:?} should be rejected"));
            assert!(err.contains(why), "{p:?}: {err}");
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let name = vec![b'a'; 100_000];
        let g = glob(b"*a*a*a*a*a*a*a*a*a*a*b");
        let t = std::time::Instant::now();
        assert!(!g.matches(&name));
        let g = glob(b"*[ab]*?*a?*a*c");
        assert!(!g.matches(&name));
        let g = glob(b"*a?a*b*a*a");
        assert!(!g.matches(&name));
        // A generous bound: the naive recursive matcher needs far longer than this.
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}
