//! The report of a finished walk: its warnings, as a map for tools (the default reply, built
//! here as a JSON value) and as aligned text for people (`FORMAT text`). Pure: the walk's
//! groups and the server's memory facts come in as data.

use serde_json::{json, Value};

use super::group::{Finished, Group, Grouper, QueuePart, TopKey};
use crate::policy::KeyType;

/// Used memory at or above this share of maxmemory is warned about.
pub const MEMORY_WARN_RATIO: f64 = 0.8;
/// A queue holding more finished jobs than this is warned about.
pub const FINISHED_WARN_JOBS: u64 = 10_000;
/// Warnings of one kind listed one by one, at most (then one line for the rest).
const WARNINGS_PER_KIND: usize = 10;
/// Queues listed in the map, at most (most finished jobs first).
const QUEUES_LISTED: usize = 100;
/// Widest pattern column in the text table.
const PATTERN_COLUMN_MAX: usize = 60;

/// The server's memory facts (`INFO memory`, `INFO stats`), read when the walk ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerFacts {
    pub used_memory: u64,
    /// 0: no limit.
    pub maxmemory: u64,
    pub evicted_keys: u64,
    pub maxmemory_policy: String,
}

impl ServerFacts {
    /// used / max, None without a limit.
    pub fn ratio(&self) -> Option<f64> {
        (self.maxmemory > 0).then(|| self.used_memory as f64 / self.maxmemory as f64)
    }
}

/// What the walk covered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalkFacts {
    pub databases: Vec<i32>,
    pub keys: u64,
    pub duration_ms: u64,
    pub slices: u64,
    pub match_glob: Option<Vec<u8>>,
}

/// Everything a report shows.
pub struct Report<'a> {
    pub server: ServerFacts,
    pub walk: WalkFacts,
    pub grouper: &'a Grouper,
    /// The policy's rule names, by index.
    pub rule_names: &'a [String],
    /// Groups shown; the rest are folded into "other".
    pub groups_shown: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: &'static str,
    pub message: String,
}

/// The folded groups: those beyond the shown ones, and the keys of patterns beyond the table.
#[derive(Debug, Default)]
struct Other {
    groups: u64,
    keys: u64,
    no_ttl: u64,
    memory: u64,
    measured: u64,
    types: Vec<(KeyType, u64)>,
}

impl Other {
    fn absorb(&mut self, g: &Group) {
        self.keys += g.keys;
        self.no_ttl += g.no_ttl;
        self.memory += g.memory();
        self.measured += g.measured_keys();
        for (t, n) in g.types() {
            match self.types.iter_mut().find(|(x, _)| *x == t) {
                Some((_, m)) => *m += n,
                None => self.types.push((t, n)),
            }
        }
    }
}

impl Report<'_> {
    /// Every group, most memory first (then most keys, then by pattern).
    fn sorted(&self) -> Vec<&Group> {
        let mut groups: Vec<&Group> = self.grouper.groups().iter().collect();
        groups.sort_by(|a, b| {
            (b.memory(), b.keys)
                .cmp(&(a.memory(), a.keys))
                .then_with(|| a.pattern.cmp(&b.pattern))
        });
        groups
    }

    fn shown_and_other(&self) -> (Vec<&Group>, Other) {
        let mut sorted = self.sorted();
        let folded = sorted.split_off(self.groups_shown.min(sorted.len()));
        let mut other = Other {
            groups: folded.len() as u64,
            ..Other::default()
        };
        for g in folded {
            other.absorb(g);
        }
        let overflow = self.grouper.overflow();
        if overflow.keys > 0 {
            other.absorb(overflow);
        }
        (sorted, other)
    }

    fn rule_name(&self, rule: Option<usize>) -> Option<&str> {
        rule.map(|i| {
            self.rule_names
                .get(i)
                .map(String::as_str)
                .unwrap_or("(unknown rule)")
        })
    }

    /// The rule column: the rule of most keys (`-` for none), `+N` when others govern some.
    fn rule_label(&self, g: &Group) -> String {
        let rules = g.rules();
        let main = rules.first().and_then(|(r, _)| self.rule_name(*r));
        let label = main.unwrap_or("-").to_string();
        match rules.len() {
            0 | 1 => label,
            n => format!("{label} +{}", n - 1),
        }
    }

    /// Queues with their finished jobs, most first.
    fn queues(&self) -> Vec<(&Vec<u8>, &Finished)> {
        let mut queues: Vec<_> = self.grouper.finished().iter().collect();
        queues.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(b.0)));
        queues
    }

    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        let s = &self.server;
        if let Some(ratio) = s.ratio().filter(|r| *r >= MEMORY_WARN_RATIO) {
            out.push(Warning {
                kind: "memory",
                message: format!(
                    "used memory is {:.0}% of maxmemory ({} of {}): at 100% the server {}",
                    ratio * 100.0,
                    human(s.used_memory),
                    human(s.maxmemory),
                    match s.maxmemory_policy.as_str() {
                        "noeviction" => "refuses writes (OOM errors)".to_string(),
                        p => format!("evicts keys ({p})"),
                    }
                ),
            });
        }
        if self.grouper.holds_queues() && s.maxmemory_policy != "noeviction" {
            let examples: Vec<String> = self
                .grouper
                .groups()
                .iter()
                .filter(|g| g.queue == Some(QueuePart::Jobs))
                .take(3)
                .map(|g| shown(&g.pattern))
                .collect();
            out.push(Warning {
                kind: "eviction_policy",
                message: format!(
                    "maxmemory-policy is {} but this server holds BullMQ/Bull queues ({}): the libraries require noeviction, evicted job keys corrupt queues (CONFIG SET maxmemory-policy noeviction)",
                    s.maxmemory_policy,
                    examples.join(", ")
                ),
            });
        }
        let mut uncovered: Vec<&Group> = self
            .sorted()
            .into_iter()
            // A queue's structure keys live as long as the queue: no TTL is their normal state.
            .filter(|g| g.uncovered_no_ttl > 0 && g.queue != Some(QueuePart::Structure))
            .collect();
        let rest = uncovered.split_off(uncovered.len().min(WARNINGS_PER_KIND));
        for g in uncovered {
            out.push(Warning {
                kind: "no_ttl_uncovered",
                message: format!(
                    "{}: {} without TTL that no rule covers ({} in the group)",
                    shown(&g.pattern),
                    plural(g.uncovered_no_ttl, "key"),
                    human(g.memory())
                ),
            });
        }
        if !rest.is_empty() {
            let keys: u64 = rest.iter().map(|g| g.uncovered_no_ttl).sum();
            out.push(Warning {
                kind: "no_ttl_uncovered",
                message: format!(
                    "{} more groups: {} without TTL that no rule covers",
                    rest.len(),
                    plural(keys, "key")
                ),
            });
        }
        let mut full: Vec<_> = self
            .queues()
            .into_iter()
            .filter(|(_, f)| f.total() > FINISHED_WARN_JOBS)
            .collect();
        let rest = full.split_off(full.len().min(WARNINGS_PER_KIND));
        for (base, f) in full {
            let advice = match self.rule_name(f.rule) {
                Some(rule) => format!(
                    "rule '{rule}' cleans them to its completed/failed limits at each pass (RETENTION.EXPLAIN {}completed)",
                    shown(base)
                ),
                None => "remove them with the library's removeOnComplete/removeOnFail or a queue rule".into(),
            };
            out.push(Warning {
                kind: "finished_jobs",
                message: format!(
                    "queue {}: {} finished jobs (completed {}, failed {}), more than {FINISHED_WARN_JOBS}: {advice}",
                    shown(base.strip_suffix(b":").unwrap_or(base)),
                    f.total(),
                    f.completed,
                    f.failed
                ),
            });
        }
        if !rest.is_empty() {
            out.push(Warning {
                kind: "finished_jobs",
                message: format!(
                    "{} more queues hold more than {FINISHED_WARN_JOBS} finished jobs",
                    rest.len()
                ),
            });
        }
        out
    }

    /// Aligned text lines, for `redis-cli`.
    pub fn text(&self) -> String {
        let (shown_groups, other) = self.shown_and_other();
        let w = &self.walk;
        let s = &self.server;
        let mut out = String::new();
        let dbs: Vec<String> = w.databases.iter().map(|d| d.to_string()).collect();
        let measured: u64 = self
            .grouper
            .groups()
            .iter()
            .chain([self.grouper.overflow()])
            .map(Group::measured_keys)
            .sum();
        out.push_str(&format!(
            "keys {} in {} ({} ms, {} slices; memory measured on {} keys, the rest estimated){}\n",
            w.keys,
            match dbs.len() {
                0 => "no database".to_string(),
                1 => format!("db {}", dbs[0]),
                _ => format!("dbs {}", dbs.join(", ")),
            },
            w.duration_ms,
            w.slices,
            measured,
            w.match_glob
                .as_ref()
                .map(|m| format!(", MATCH {}", shown(m)))
                .unwrap_or_default()
        ));
        out.push_str(&format!(
            "used_memory {}  maxmemory {}  ratio {}  evicted_keys {}  maxmemory-policy {}\n",
            human(s.used_memory),
            match s.maxmemory {
                0 => "0 (no limit)".to_string(),
                m => human(m),
            },
            s.ratio()
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            s.evicted_keys,
            s.maxmemory_policy
        ));
        out.push('\n');
        let mut rows: Vec<[String; 6]> = vec![[
            "GROUP".into(),
            "KEYS".into(),
            "NO TTL".into(),
            "MEMORY".into(),
            "RULE".into(),
            "TYPES".into(),
        ]];
        for g in &shown_groups {
            rows.push([
                shown(&g.pattern),
                g.keys.to_string(),
                g.no_ttl.to_string(),
                human(g.memory()),
                self.rule_label(g),
                types_label(&g.types()),
            ]);
        }
        if other.keys > 0 {
            rows.push([
                match other.groups {
                    0 => "other".into(),
                    n => format!("other ({n} groups)"),
                },
                other.keys.to_string(),
                other.no_ttl.to_string(),
                human(other.memory),
                String::new(),
                types_label(&other.types),
            ]);
        }
        let all = self
            .grouper
            .groups()
            .iter()
            .chain([self.grouper.overflow()]);
        let (keys, no_ttl, memory) = all.fold((0, 0, 0), |(k, n, m), g| {
            (k + g.keys, n + g.no_ttl, m + g.memory())
        });
        rows.push([
            "total".into(),
            keys.to_string(),
            no_ttl.to_string(),
            human(memory),
            String::new(),
            String::new(),
        ]);
        let pattern_width = rows
            .iter()
            .map(|r| r[0].chars().count())
            .max()
            .unwrap_or(0)
            .min(PATTERN_COLUMN_MAX);
        let width = |col: usize| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [pattern_width, width(1), width(2), width(3), width(4)];
        for r in &rows {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let with_top: Vec<&&Group> = shown_groups
            .iter()
            .filter(|g| !g.top().is_empty())
            .collect();
        if !with_top.is_empty() {
            out.push_str("\nbiggest keys\n");
            for g in with_top {
                let keys: Vec<String> = g.top().iter().map(top_label).collect();
                out.push_str(&format!(
                    "{:<w$}  {}\n",
                    shown(&g.pattern),
                    keys.join(", "),
                    w = pattern_width
                ));
            }
        }
        let warnings = self.warnings();
        out.push_str("\nwarnings\n");
        if warnings.is_empty() {
            out.push_str("none\n");
        }
        for warning in warnings {
            out.push_str(&format!("! {}\n", warning.message));
        }
        out
    }

    /// The report for tools: maps, arrays and numbers (the command replies with it as a
    /// native map).
    pub fn value(&self) -> Value {
        let (shown_groups, other) = self.shown_and_other();
        let groups: Vec<Value> = shown_groups.iter().map(|g| self.group_value(g)).collect();
        let all = self
            .grouper
            .groups()
            .iter()
            .chain([self.grouper.overflow()]);
        let (keys, no_ttl, memory, measured) = all.fold((0, 0, 0, 0), |(k, n, m, x), g| {
            (
                k + g.keys,
                n + g.no_ttl,
                m + g.memory(),
                x + g.measured_keys(),
            )
        });
        let queues: serde_json::Map<String, Value> = self
            .queues()
            .into_iter()
            .take(QUEUES_LISTED)
            .map(|(base, f)| {
                let queue = shown(base.strip_suffix(b":").unwrap_or(base));
                let rule = self.rule_name(f.rule);
                (
                    queue,
                    json!({"completed": f.completed, "failed": f.failed, "rule": rule,
                        "memory": self.queue_memory(base)}),
                )
            })
            .collect();
        let warnings: Vec<Value> = self
            .warnings()
            .into_iter()
            .map(|w| json!({"kind": w.kind, "message": w.message}))
            .collect();
        let s = &self.server;
        let w = &self.walk;
        json!({
            "databases": w.databases,
            "keys": w.keys,
            "duration_ms": w.duration_ms,
            "slices": w.slices,
            "match": w.match_glob.as_deref().map(shown),
            "server": {
                "used_memory": s.used_memory,
                "maxmemory": s.maxmemory,
                "used_memory_ratio": s.ratio(),
                "evicted_keys": s.evicted_keys,
                "maxmemory_policy": s.maxmemory_policy,
            },
            "groups": groups,
            "other": {
                "group_count": other.groups,
                "keys": other.keys,
                "keys_without_ttl": other.no_ttl,
                "memory_bytes": other.memory,
                "keys_measured": other.measured,
                "types": types_json(&other.types),
            },
            "total": {
                "group_count": self.grouper.groups().len(),
                "keys": keys,
                "keys_without_ttl": no_ttl,
                "memory_bytes": memory,
                "keys_measured": measured,
            },
            "queues": queues,
            "warnings": warnings,
        })
    }

    /// What the last pass measured in a queue's finished sets under a `max_memory` limit:
    /// `{"completed": {"kept_memory_bytes", "max_memory_bytes", "kept_count"}, ...}`, nil when
    /// neither was measured.
    fn queue_memory(&self, base: &[u8]) -> Value {
        let mut out = serde_json::Map::new();
        for set in ["completed", "failed"] {
            let name = [base, set.as_bytes()].concat();
            let found = self
                .walk
                .databases
                .iter()
                .find_map(|db| crate::history::measured(*db, &name));
            if let Some(m) = found {
                out.insert(
                    set.into(),
                    json!({"kept_memory_bytes": m.kept_memory_bytes,
                        "max_memory_bytes": m.max_memory_bytes,
                        "kept_count": m.kept_within_budget}),
                );
            }
        }
        match out.is_empty() {
            true => Value::Null,
            false => Value::Object(out),
        }
    }

    /// One group: `rules` maps each governing rule's name to its keys (as `rules` maps rule
    /// names to their counters in RETENTION.STATS); keys no rule governs are
    /// `keys_without_rule`.
    fn group_value(&self, g: &Group) -> Value {
        let mut rules = serde_json::Map::new();
        let mut keys_without_rule = 0;
        let measured = crate::history::measured_by_rule();
        for (rule, n) in g.rules() {
            match self.rule_name(rule) {
                Some(name) => {
                    let mut entry = json!({ "keys": n });
                    // The rule's keys under a max_memory limit, as the last pass measured them.
                    let memory = measured.get(name);
                    if let Some((kept, budget, keys)) = memory {
                        entry["kept_memory_bytes"] = json!(kept);
                        entry["max_memory_bytes"] = json!(budget);
                        entry["keys_measured_for_memory"] = json!(keys);
                    }
                    rules.insert(name.to_string(), entry);
                }
                None => keys_without_rule += n,
            }
        }
        let top: Vec<Value> = g
            .top()
            .iter()
            .map(|t| json!({"key": shown(&t.name), "db": t.db, "memory_bytes": t.bytes, "type": t.key_type.name()}))
            .collect();
        json!({
            "pattern": shown(&g.pattern),
            "queue": g.queue.map(|q| match q {
                QueuePart::Jobs => "jobs",
                QueuePart::Structure => "structure",
            }),
            "keys": g.keys,
            "keys_without_ttl": g.no_ttl,
            "keys_without_rule": keys_without_rule,
            "keys_without_ttl_or_rule": g.uncovered_no_ttl,
            "memory_bytes": g.memory(),
            "keys_measured": g.measured_keys(),
            "types": types_json(&g.types()),
            "rule": g.rules().first().and_then(|(r, _)| self.rule_name(*r)),
            "rules": rules,
            "top": top,
        })
    }
}

fn types_json(types: &[(KeyType, u64)]) -> Value {
    Value::Object(
        types
            .iter()
            .map(|(t, n)| (t.name().to_string(), json!(n)))
            .collect(),
    )
}

fn types_label(types: &[(KeyType, u64)]) -> String {
    match types {
        [(t, _)] => t.name().to_string(),
        _ => types
            .iter()
            .map(|(t, n)| format!("{} {n}", t.name()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn top_label(t: &TopKey) -> String {
    let db = match t.db {
        0 => String::new(),
        n => format!("db{n} "),
    };
    format!("{db}{} ({})", shown(&t.name), human(t.bytes))
}

fn plural(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ => format!("{n} {what}s"),
    }
}

/// A key name or pattern for display: as is when it is printable UTF-8, else with
/// non-printable bytes as `\xNN`.
pub fn shown(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.chars().any(char::is_control) {
            return text.to_string();
        }
    }
    let mut out = String::new();
    for &b in bytes {
        match b {
            b' '..=b'~' if b != b'\\' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Bytes as the server's `*_human` fields show them: `512B`, `12.30K`, `1.50M`, `2.00G`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::super::group::KeyFacts;
    use super::*;

    fn grouper(keys: &[(&str, KeyType, bool, Option<usize>, u64)]) -> Grouper {
        let queue: std::collections::HashMap<Vec<u8>, KeyType> = [
            ("bull:q:id", KeyType::String),
            ("bull:q:completed", KeyType::ZSet),
        ]
        .iter()
        .map(|(n, t)| (n.as_bytes().to_vec(), *t))
        .collect();
        let mut probe = |name: &[u8]| queue.get(name).copied();
        let mut g = Grouper::new(2);
        for (name, key_type, has_ttl, rule, bytes) in keys {
            let f = KeyFacts {
                name: name.as_bytes(),
                db: 0,
                key_type: *key_type,
                has_ttl: *has_ttl,
                len: *bytes,
                rule: *rule,
            };
            g.add(&f, &mut probe, &mut || Some(*bytes));
        }
        g
    }

    fn report<'a>(g: &'a Grouper, server: ServerFacts, names: &'a [String]) -> Report<'a> {
        Report {
            server,
            walk: WalkFacts {
                databases: vec![0, 2],
                keys: 7,
                duration_ms: 12,
                slices: 3,
                match_glob: None,
            },
            grouper: g,
            rule_names: names,
            groups_shown: 2,
        }
    }

    fn facts(used: u64, max: u64, policy: &str) -> ServerFacts {
        ServerFacts {
            used_memory: used,
            maxmemory: max,
            evicted_keys: 0,
            maxmemory_policy: policy.into(),
        }
    }

    const KEYS: &[(&str, KeyType, bool, Option<usize>, u64)] = &[
        ("session:1", KeyType::String, true, Some(0), 100),
        ("session:2", KeyType::String, true, Some(0), 300),
        ("cache:a:1", KeyType::Hash, false, None, 5000),
        ("tmp:1", KeyType::List, false, None, 10),
        ("tmp:2", KeyType::Set, false, None, 10),
        ("bull:q:1", KeyType::Hash, false, None, 50),
        ("bull:q:completed", KeyType::ZSet, false, None, 20_000),
    ];

    fn kinds(r: &Report) -> Vec<&'static str> {
        r.warnings().iter().map(|w| w.kind).collect()
    }

    #[test]
    fn warnings_appear_only_when_they_apply() {
        let g = grouper(KEYS);
        let names = vec!["sessions".to_string()];
        let ok = report(&g, facts(1000, 0, "noeviction"), &names);
        // Keys without TTL and rule (not the queue's structure: it lives as long as the
        // queue), and the queue's 20000 finished jobs.
        assert_eq!(
            kinds(&ok),
            vec![
                "no_ttl_uncovered",
                "no_ttl_uncovered",
                "no_ttl_uncovered",
                "finished_jobs"
            ]
        );
        assert!(ok.warnings()[0]
            .message
            .starts_with("cache:a:*: 1 key without TTL"));
        let low = report(&g, facts(850, 1000, "noeviction"), &names);
        assert_eq!(kinds(&low)[0], "memory");
        assert!(low.warnings()[0].message.contains("85% of maxmemory"));
        let below = report(&g, facts(799, 1000, "noeviction"), &names);
        assert!(!kinds(&below).contains(&"memory"));
        let lru = report(&g, facts(1, 1000, "allkeys-lru"), &names);
        let w = lru.warnings();
        let eviction = w
            .iter()
            .find(|w| w.kind == "eviction_policy")
            .expect("warned");
        assert!(
            eviction.message.contains("bull:q:*"),
            "{}",
            eviction.message
        );
        // Without queues, an eviction policy is the operator's choice.
        let plain = grouper(&KEYS[..5]);
        let lru = report(&plain, facts(1, 1000, "allkeys-lru"), &names);
        assert!(!kinds(&lru).contains(&"eviction_policy"));
    }

    #[test]
    fn text_is_aligned_and_folds_groups_beyond_the_limit() {
        let g = grouper(KEYS);
        let names = vec!["sessions".to_string()];
        let text = report(&g, facts(2 << 20, 0, "noeviction"), &names).text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("keys 7 in dbs 0, 2 (12 ms, 3 slices"),
            "{text}"
        );
        assert!(lines[1].contains("used_memory 2.00M  maxmemory 0 (no limit)"));
        let header = lines
            .iter()
            .position(|l| l.starts_with("GROUP"))
            .expect("header");
        let table: Vec<&str> = lines[header..]
            .iter()
            .take_while(|l| !l.is_empty())
            .copied()
            .collect();
        // Two groups shown (most memory first), the rest folded, then the total.
        assert!(table[1].starts_with("bull:q:<structures>"), "{text}");
        assert!(table[2].starts_with("cache:a:*"), "{text}");
        assert!(table[3].starts_with("other (3 groups)"), "{text}");
        assert!(table[4].starts_with("total"), "{text}");
        // Columns line up: KEYS is right-aligned to the same end.
        let end = table[0].find("KEYS").expect("KEYS") + 4;
        for row in &table[1..] {
            assert!(row[..end].ends_with(|c: char| c.is_ascii_digit()), "{row}");
        }
        assert!(text.contains("biggest keys"));
        assert!(text.contains("bull:q:completed (19.53K)"), "{text}");
        assert!(text.contains("\nwarnings\n! "), "{text}");
    }

    #[test]
    fn the_map_carries_every_field() {
        let g = grouper(KEYS);
        let names = vec!["sessions".to_string()];
        let r = report(&g, facts(900, 1000, "allkeys-lru"), &names);
        let v = r.value();
        assert_eq!(v["databases"], json!([0, 2]));
        assert_eq!(v["server"]["maxmemory_policy"], "allkeys-lru");
        assert_eq!(v["server"]["used_memory_ratio"], json!(0.9));
        assert_eq!(v["groups"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["groups"][0]["pattern"], "bull:q:<structures>");
        assert_eq!(v["groups"][0]["queue"], "structure");
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["other"]["group_count"], 3);
        assert_eq!(v["other"]["keys"], 5);
        assert_eq!(v["total"]["keys"], 7);
        assert_eq!(v["total"]["memory_bytes"], 25_470);
        assert_eq!(v["total"]["group_count"], 5);
        assert_eq!(
            v["queues"]["bull:q"],
            json!({"completed": 20_000, "failed": 0, "rule": null, "memory": null})
        );
        let kinds: Vec<&str> = v["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .filter_map(|w| w["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"memory") && kinds.contains(&"eviction_policy"));
        let all = report(&g, facts(1, 0, "noeviction"), &names);
        let mut all = all;
        all.groups_shown = 100;
        let v = all.value();
        let session = v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["pattern"] == "session:*")
            .expect("session group")
            .clone();
        assert_eq!(session["rule"], "sessions");
        assert_eq!(session["keys_without_ttl"], 0);
        assert_eq!(session["rules"], json!({"sessions": {"keys": 2}}));
        assert_eq!(session["keys_without_rule"], 0);
        assert_eq!(session["top"][0]["memory_bytes"], 300);
        assert_eq!(session["types"], json!({"string": 2}));
        let tmp = v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["pattern"] == "tmp:*")
            .expect("tmp group")
            .clone();
        assert_eq!(
            (&tmp["rules"], &tmp["keys_without_rule"]),
            (&json!({}), &json!(2))
        );
    }

    #[test]
    fn names_are_shown_printable_and_sizes_human() {
        assert_eq!(shown(b"plain:key"), "plain:key");
        assert_eq!(shown("ключ:1".as_bytes()), "ключ:1");
        assert_eq!(shown(b"a\nb\xff"), "a\\x0ab\\xff");
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(3 << 30), "3.00G");
    }
}
