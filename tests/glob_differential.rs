//! Differential test: our `Glob` against a real server's `SCAN MATCH` on binary and tricky
//! key names, for fixed, random and key-derived patterns (odd ones included).

mod common;

use std::collections::BTreeSet;

use common::{scan_match, Rng, Server, ServerOpts};
use redis_retention::policy::Glob;

const NAME_BYTES: &[u8] = b"ab:c-_]^\\*?[{}1 \x00\x01\x7f\x80\xc3\xa9\xfe\xff";

fn key_names(rng: &mut Rng) -> BTreeSet<Vec<u8>> {
    let mut names: BTreeSet<Vec<u8>> = [
        &b""[..],
        b"bull:q:id",
        b"bull:q:meta",
        b"bull:q:1",
        b"bull:q:1:logs",
        b"bull:other:events",
        b"bull",
        b"Bull:q:id",
        b"celery-task-meta-0f9c",
        b"runs:active:{w}:p:index",
        b"*",
        b"?",
        b"[",
        b"]",
        b"\\",
        b"a*b",
        b"a[b]c",
        b"\x00",
        b"\x00\x00",
        b"\xff",
        b"\x80",
        b"caf\xc3\xa9",
        b"a\\b",
        b"-",
        b"^",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    while names.len() < 3000 {
        let n = rng.string(NAME_BYTES, 1, 12);
        names.insert(n);
    }
    names
}

/// A pattern made from one of the names, so that it usually matches something.
fn derived_pattern(rng: &mut Rng, name: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for &b in name {
        match rng.below(10) {
            0 => p.push(b'?'),
            1 => p.push(b'*'),
            2 => {} // drop the byte
            3 => p.extend_from_slice(&[b'[', b, rng.pick(b"ab\x80"), b']']),
            4 => p.extend_from_slice(&[b'[', b'^', rng.pick(b"ab:"), b']']),
            5 => {
                let other = rng.pick(NAME_BYTES);
                p.extend_from_slice(&[b'[', b.min(other), b'-', b.max(other), b']'])
            }
            6 => p.extend_from_slice(&[b'\\', b]),
            _ if matches!(b, b'*' | b'?' | b'[' | b'\\') => p.extend_from_slice(&[b'\\', b]),
            _ => p.push(b),
        }
    }
    if p.is_empty() {
        p.push(b'*');
    }
    p
}

fn assert_same(
    conn: &mut redis::Connection,
    names: &BTreeSet<Vec<u8>>,
    pattern: &[u8],
    glob: &Glob,
) -> usize {
    let ours: BTreeSet<Vec<u8>> = names.iter().filter(|n| glob.matches(n)).cloned().collect();
    let redis = scan_match(conn, pattern);
    assert_eq!(
        ours,
        redis,
        "pattern {:?}: ours only {:?}, redis only {:?} (first 10 each)",
        String::from_utf8_lossy(pattern),
        ours.difference(&redis).take(10).collect::<Vec<_>>(),
        redis.difference(&ours).take(10).collect::<Vec<_>>()
    );
    ours.len()
}

#[test]
fn glob_agrees_with_scan_match() {
    let server = Server::start(ServerOpts {
        no_module: true,
        ..Default::default()
    })
    .expect("server");
    let mut conn = server.conn();
    let mut rng = Rng(0xD1FF);
    let names = key_names(&mut rng);
    let mut pipe = redis::pipe();
    for n in &names {
        pipe.cmd("SET").arg(n).arg(1).ignore();
    }
    let _: () = pipe.query(&mut conn).expect("populate");
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
    assert_eq!(dbsize, names.len());

    let fixed: &[&[u8]] = &[
        b"*",
        b"**",
        b"?",
        b"??",
        b"bull:*",
        b"bull:*:id",
        b"bull:?:*",
        b"*:id",
        b"*meta*",
        b"[bB]ull:*",
        b"[^b]*",
        b"[a-c]*",
        b"[c-a]*",
        b"*[\\]]*",
        b"*\\**",
        b"*\\?*",
        b"*\\[*",
        b"*\\\\*",
        b"a\\",
        b"*\\",
        b"\\",
        b"\x00*",
        b"*\x00",
        b"[\x80-\xff]*",
        b"*[\xfe-\x80]",
        b"caf?*",
        b"*a*a*a*a*a*b",
        b"*[*]*",
        b"*[?]",
        b"[\\^]*",
        b"*\xc3\xa9",
    ];
    let mut checked = 0;
    let mut matched_total = 0;
    for p in fixed {
        let glob = Glob::new(p).expect("fixed patterns are accepted");
        matched_total += assert_same(&mut conn, &names, p, &glob);
        checked += 1;
    }

    let name_list: Vec<&Vec<u8>> = names.iter().collect();
    let mut accepted_random = 0;
    while accepted_random < 300 {
        let p = if rng.below(2) == 0 {
            rng.string(b"**??[]^-\\ab:\x00\x80\xff", 1, 8)
        } else {
            let name = name_list[rng.below(name_list.len())];
            derived_pattern(&mut rng, name)
        };
        match Glob::new(&p) {
            Ok(glob) => {
                matched_total += assert_same(&mut conn, &names, &p, &glob);
                accepted_random += 1;
            }
            // Rejected patterns must still be read exactly as Redis reads them.
            Err(_) => {
                assert_same(&mut conn, &names, &p, &Glob::new_unchecked(&p));
            }
        }
        checked += 1;
    }
    assert!(
        matched_total > 1000,
        "patterns matched too little to prove much"
    );
    println!("{checked} patterns compared on {} keys", names.len());
}

#[test]
fn rejected_oddities_are_read_as_documented() {
    let server = Server::start(ServerOpts {
        no_module: true,
        ..Default::default()
    })
    .expect("server");
    let mut conn = server.conn();
    let names: BTreeSet<Vec<u8>> = [
        &b"a"[..],
        b"b",
        b"-",
        b"]",
        b"_",
        b"x",
        b"[",
        b"\\",
        b"\x00",
        b"\x7f",
        b"\x80",
        b"\xff",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    for n in &names {
        let _: () = redis::cmd("SET")
            .arg(n)
            .arg(1)
            .query(&mut conn)
            .expect("SET");
    }
    // (pattern, what Redis matches) — the surprising readings Glob::new refuses.
    let cases: &[(&[u8], &[&[u8]])] = &[
        (b"[ab", &[b"a", b"b"]),
        (b"[", &[]),
        (b"[]", &[]),
        (
            b"[^]",
            &[
                b"a", b"b", b"-", b"]", b"_", b"x", b"[", b"\\", b"\x00", b"\x7f", b"\x80", b"\xff",
            ],
        ),
        (b"[a-]", &[b"]", b"_", b"a"]),
        (b"[\x00-\xff]", &[b"\x00", b"\xff"]),
    ];
    for (pattern, want) in cases {
        assert!(Glob::new(pattern).is_err(), "{pattern:?} should be refused");
        let want: BTreeSet<Vec<u8>> = want.iter().map(|n| n.to_vec()).collect();
        assert_eq!(scan_match(&mut conn, pattern), want, "redis, {pattern:?}");
        assert_same(&mut conn, &names, pattern, &Glob::new_unchecked(pattern));
    }
}
