//! Every command of the module in one table: its handler, flags, ACL categories, keys, and
//! the documentation the server hands out (`COMMAND DOCS`, `COMMAND INFO`, redis-cli's
//! hints, `<container> HELP`). `command_info` turns it into what the server takes;
//! docs/commands.md is checked against what the server then answers.
//!
//! Modes that need different rights are subcommands of a container (`RETENTION.JOBS
//! COUNTS|CLEAN`, `RETENTION.STATS GET|RESET`), as Redis does for `CLIENT`, `CONFIG` and
//! `SLOWLOG`: ACL can grant one without the other, and each one's flags tell the truth.

use crate::command_info::KeyUse;
use crate::error::Handler;
use crate::{admin, clients, explain, queue, report, runs, suggest, sweep, trim};

/// Module versions that added commands (`COMMAND DOCS` `since`).
const V1_0: &str = "1.0.0";
const V1_1: &str = "1.1.0";

/// This build's version (Cargo.toml), as `RETENTION.STATUS` names it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version as `MODULE LIST` reports it: major * 10000 + minor * 100 + patch, the
/// encoding Redis modules use (1.0.0 is 10000).
pub const MODULE_VERSION: i32 = version_number(VERSION);

const fn version_number(text: &str) -> i32 {
    let bytes = text.as_bytes();
    let (mut parts, mut part, mut i) = ([0i32; 3], 0, 0);
    while i < bytes.len() && part < 3 {
        match bytes[i] {
            b'.' => part += 1,
            b @ b'0'..=b'9' => parts[part] = parts[part] * 10 + (b - b'0') as i32,
            // A pre-release or build suffix (`-rc1`, `+git`) does not count.
            _ => break,
        }
        i += 1;
    }
    parts[0] * 10_000 + parts[1] * 100 + parts[2]
}

/// One command, subcommand (`name` is `container|sub`) or container (no handler).
pub struct CommandDef {
    pub name: &'static str,
    /// None for a container: the server answers it with its subcommands.
    pub handler: Option<Handler>,
    /// `RM_CreateCommand` flags.
    pub flags: &'static str,
    /// ACL categories, declared where the server supports it (Redis 7.2+, Valkey).
    pub acl: &'static str,
    pub summary: &'static str,
    pub complexity: &'static str,
    /// Exact argument count when positive, minimum when negative (the name included).
    pub arity: i32,
    /// Each key: its argument position and how the command uses it.
    pub keys: &'static [(i32, KeyUse)],
    pub args: &'static [Arg],
    /// Space-separated command tips for clients and proxies.
    pub tips: &'static str,
    /// The module version that added the command.
    pub since: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    String,
    Integer,
    Double,
    /// Index into the command's `keys`.
    Key(usize),
    Pattern,
    PureToken,
    OneOf(&'static [Arg]),
    Block(&'static [Arg]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgKind,
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
}

impl Arg {
    const fn new(name: &'static str, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
        }
    }
    pub const fn string(name: &'static str) -> Arg {
        Arg::new(name, ArgKind::String)
    }
    pub const fn integer(name: &'static str) -> Arg {
        Arg::new(name, ArgKind::Integer)
    }
    pub const fn double(name: &'static str) -> Arg {
        Arg::new(name, ArgKind::Double)
    }
    pub const fn key(name: &'static str, spec: usize) -> Arg {
        Arg::new(name, ArgKind::Key(spec))
    }
    pub const fn pattern(name: &'static str) -> Arg {
        Arg::new(name, ArgKind::Pattern)
    }
    /// A word alone (`DRYRUN`): its name is the token in lower case.
    pub const fn flag(name: &'static str, token: &'static str) -> Arg {
        Arg::new(name, ArgKind::PureToken).token(token)
    }
    pub const fn one_of(name: &'static str, choices: &'static [Arg]) -> Arg {
        Arg::new(name, ArgKind::OneOf(choices))
    }
    pub const fn block(name: &'static str, parts: &'static [Arg]) -> Arg {
        Arg::new(name, ArgKind::Block(parts))
    }
    pub const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
    pub const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }
    pub const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }
}

/// Per-node commands: a cluster client sends them to every node and the caller merges.
const PER_SHARD: &str = "nondeterministic_output request_policy:all_shards response_policy:special";
const PER_NODE: &str = "nondeterministic_output request_policy:all_nodes response_policy:special";
/// Settings-like commands: every node must take them (as `CONFIG SET` / `CONFIG RESETSTAT`).
const EVERY_NODE: &str = "request_policy:all_nodes response_policy:all_succeeded";

const FLAVOR: Arg = Arg::one_of(
    "flavor",
    &[Arg::flag("bullmq", "bullmq"), Arg::flag("bull", "bull")],
)
.token("FLAVOR")
.optional();
const DRYRUN: Arg = Arg::flag("dryrun", "DRYRUN").optional();
const ORDER: Arg = Arg::one_of(
    "order",
    &[Arg::flag("asc", "ASC"), Arg::flag("desc", "DESC")],
)
.optional();
const HELP_SUMMARY: &str = "Shows the subcommands and what each does.";

pub static COMMANDS: &[CommandDef] = &[
    CommandDef {
        name: "retention.sweep",
        handler: Some(sweep::command::cmd_sweep),
        flags: "admin write",
        acl: "admin dangerous slow",
        summary: "Runs one retention pass over the caller's database now and replies with its report; only the caller waits.",
        complexity: "O(N) where N is the number of keys in the database, done in slices between other clients' commands.",
        arity: -1,
        keys: &[],
        args: &[
            DRYRUN,
            Arg::string("name").token("RULE").optional(),
            Arg::pattern("glob").token("MATCH").optional(),
            Arg::integer("us").token("BUDGET").optional(),
            Arg::flag("noop", "NOOP").optional(),
        ],
        tips: PER_SHARD,
        since: V1_0,
    },
    CommandDef {
        name: "retention.status",
        handler: Some(sweep::command::cmd_status),
        flags: "readonly",
        acl: "read fast",
        summary: "Shows the module's version, whether a pass runs and its progress, the last pass's report and the time to the next one.",
        complexity: "O(D) where D is the number of databases.",
        arity: 1,
        keys: &[],
        args: &[],
        tips: PER_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "retention.policy",
        handler: Some(admin::cmd_policy),
        flags: "readonly",
        acl: "read fast",
        summary: "Shows the rules in force as normalized JSON, their file and load time.",
        complexity: "O(R) where R is the number of rules.",
        arity: 1,
        keys: &[],
        args: &[],
        tips: PER_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "retention.reload",
        handler: Some(admin::cmd_reload),
        flags: "admin",
        acl: "admin dangerous slow",
        summary: "Re-reads the policy file; on an error the policy in force stays.",
        complexity: "O(R) where R is the number of rules.",
        arity: 1,
        keys: &[],
        args: &[],
        tips: EVERY_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "retention.stats",
        handler: None,
        flags: "",
        acl: "",
        summary: "A container for the module's counters.",
        complexity: "Depends on subcommand.",
        arity: -2,
        keys: &[],
        args: &[],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.stats|get",
        handler: Some(admin::cmd_stats_get),
        flags: "readonly",
        acl: "read fast",
        summary: "Shows the counters since load (or the last reset), overall and per rule.",
        complexity: "O(R) where R is the number of rules.",
        arity: 2,
        keys: &[],
        args: &[],
        tips: PER_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "retention.stats|reset",
        handler: Some(admin::cmd_stats_reset),
        flags: "admin",
        acl: "admin dangerous slow",
        summary: "Sets every counter to zero.",
        complexity: "O(R) where R is the number of rules.",
        arity: 2,
        keys: &[],
        args: &[],
        tips: EVERY_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "retention.stats|help",
        handler: Some(cmd_help),
        flags: "readonly",
        acl: "slow",
        summary: HELP_SUMMARY,
        complexity: "O(1)",
        arity: 2,
        keys: &[],
        args: &[],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.trim",
        handler: Some(trim::cmd_trim),
        flags: "write",
        acl: "keyspace write slow",
        summary: "Trims one stream, list or sorted set now, the way a trim rule does, and replies with the number of entries removed.",
        complexity: "O(M) where M is the number of entries removed, done in slices when it takes longer than the sweep budget.",
        arity: -4,
        keys: &[(1, KeyUse::Delete)],
        args: &[
            Arg::key("key", 0),
            Arg::integer("n").token("MAXLEN").optional(),
            Arg::string("duration").token("MAXAGE").optional(),
            Arg::string("size").token("MAXMEMORY").optional(),
            Arg::flag("approx", "APPROX").optional(),
            Arg::one_of("end", &[Arg::flag("head", "HEAD"), Arg::flag("tail", "TAIL")])
                .token("NEWEST")
                .optional(),
            Arg::one_of("unit", &[Arg::flag("ms", "MS"), Arg::flag("s", "S")])
                .token("SCOREUNIT")
                .optional(),
            DRYRUN,
        ],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.jobs",
        handler: None,
        flags: "",
        acl: "",
        summary: "A container for reading and cleaning BullMQ and Bull queues.",
        complexity: "Depends on subcommand.",
        arity: -2,
        keys: &[],
        args: &[],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.jobs|counts",
        handler: Some(queue::cmd_jobs_counts),
        flags: "readonly",
        acl: "keyspace read slow",
        summary: "Counts a queue's jobs per state, as the library's getJobCounts() does.",
        complexity: "O(S) where S is the number of the queue's state keys.",
        arity: -4,
        keys: &[],
        args: &[Arg::string("prefix"), Arg::string("queue"), FLAVOR],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.jobs|clean",
        handler: Some(queue::cmd_jobs_clean),
        flags: "write",
        // The module also checks admin rights (Redis 7.0 cannot declare categories).
        acl: "admin dangerous keyspace write slow",
        summary: "Removes a queue's finished jobs the way the library's own clean does, with every key the library keeps for them.",
        complexity: "O(N) where N is the number of jobs in the finished set, done in slices between other clients' commands.",
        arity: -5,
        keys: &[],
        args: &[
            Arg::string("prefix"),
            Arg::string("queue"),
            Arg::one_of(
                "state",
                &[
                    Arg::flag("completed", "completed"),
                    Arg::flag("failed", "failed"),
                ],
            ),
            Arg::string("duration").token("MAXAGE").optional(),
            Arg::integer("n").token("MAXLEN").optional(),
            Arg::string("size").token("MAXMEMORY").optional(),
            Arg::integer("n").token("LIMIT").optional(),
            DRYRUN,
            FLAVOR,
        ],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.jobs|help",
        handler: Some(cmd_help),
        flags: "readonly",
        acl: "slow",
        summary: HELP_SUMMARY,
        complexity: "O(1)",
        arity: 2,
        keys: &[],
        args: &[],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "retention.report",
        handler: Some(report::cmd_report),
        flags: "readonly",
        acl: "keyspace read slow",
        summary: "Shows where the memory went: every database walked in slices, keys grouped by pattern, with sizes, TTLs and the rule that governs them.",
        complexity: "O(N) where N is the number of keys, done in slices between other clients' commands.",
        arity: -1,
        keys: &[],
        args: &[
            Arg::integer("n").token("GROUPS").optional(),
            Arg::integer("n").token("TOP").optional(),
            Arg::pattern("glob").token("MATCH").optional(),
            Arg::one_of("format", &[Arg::flag("map", "map"), Arg::flag("text", "text")])
                .token("FORMAT")
                .optional(),
        ],
        tips: PER_SHARD,
        since: V1_0,
    },
    CommandDef {
        name: "retention.suggest",
        handler: Some(suggest::cmd_suggest),
        flags: "readonly",
        acl: "keyspace read slow",
        summary: "Suggests a complete policy for this keyspace: every database walked in slices, owners proven from key shapes and contents, each rule with its evidence and what a dry run of it would change now.",
        complexity: "O(N) where N is the number of keys (a few walks), done in slices between other clients' commands.",
        arity: -1,
        keys: &[],
        args: &[
            Arg::pattern("glob").token("MATCH").optional(),
            Arg::one_of("format", &[Arg::flag("map", "map"), Arg::flag("policy", "policy")])
                .token("FORMAT")
                .optional(),
        ],
        tips: PER_SHARD,
        since: V1_1,
    },
    CommandDef {
        name: "retention.explain",
        handler: Some(explain::cmd_explain),
        flags: "readonly",
        acl: "keyspace read slow",
        summary: "Tells why a key has (or lost) its TTL: the rule that governs it, what the module would do now and what it did last.",
        complexity: "O(1) for most keys; O(log N) for a job of a queue with N finished jobs.",
        arity: 2,
        keys: &[(1, KeyUse::ReadMeta)],
        args: &[Arg::key("key", 0)],
        tips: "nondeterministic_output",
        since: V1_0,
    },
    CommandDef {
        name: "retention.clients",
        handler: Some(clients::cmd_clients),
        flags: "admin deny-script allow-stale",
        acl: "admin dangerous slow connection",
        summary: "Lists the normal clients idle longer than a time and, with KILL, closes them; never blocked workers, pub/sub, replicas or MONITOR.",
        complexity: "O(C) where C is the number of connected clients.",
        arity: -3,
        keys: &[],
        args: &[
            Arg::string("duration").token("IDLE"),
            Arg::flag("kill", "KILL").optional(),
            Arg::pattern("glob").token("NAME").optional(),
        ],
        tips: PER_NODE,
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.add",
        handler: Some(runs::cmd_add),
        flags: "write deny-oom",
        acl: "write slow",
        summary: "Adds a run (or replaces its document) in a run set, scored by its start time.",
        complexity: "O(log N) where N is the number of runs in the set.",
        arity: -4,
        keys: &[(1, KeyUse::Update)],
        args: &[
            Arg::key("base", 0),
            Arg::string("id"),
            Arg::string("json"),
            Arg::integer("ms").token("SCORE").optional(),
        ],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.del",
        handler: Some(runs::cmd_del),
        flags: "write",
        acl: "write slow",
        summary: "Removes runs from a run set and replies with how many were there.",
        complexity: "O(M log N) where M is the number of ids given and N the number of runs in the set.",
        arity: -3,
        keys: &[(1, KeyUse::Delete)],
        args: &[Arg::key("base", 0), Arg::string("id").multiple()],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.get",
        handler: Some(runs::cmd_get),
        flags: "readonly fast",
        acl: "read fast",
        summary: "Returns one run's JSON document, or nil when the run is not in the set.",
        complexity: "O(1)",
        arity: 3,
        keys: &[(1, KeyUse::ReadData)],
        args: &[Arg::key("base", 0), Arg::string("id")],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.page",
        handler: Some(runs::cmd_page),
        flags: "readonly",
        acl: "read slow",
        summary: "Returns one page of runs (id and JSON document), newest first by default.",
        complexity: "O(log N + S) where N is the number of runs in the set and S the page size.",
        arity: -4,
        keys: &[(1, KeyUse::ReadData)],
        args: &[
            Arg::key("base", 0),
            Arg::integer("page"),
            Arg::integer("size"),
            ORDER,
            Arg::flag("withscores", "WITHSCORES").optional(),
        ],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.after",
        handler: Some(runs::cmd_after),
        flags: "readonly",
        acl: "read slow",
        summary: "Returns the runs after a (score, id) cursor, for stable paging while runs come and go.",
        complexity: "O(log N + S) where N is the number of runs in the set and S the page size.",
        arity: -5,
        keys: &[(1, KeyUse::ReadData)],
        args: &[
            Arg::key("base", 0),
            Arg::double("score"),
            Arg::string("id"),
            Arg::integer("size"),
            ORDER,
        ],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.count",
        handler: Some(runs::cmd_count),
        flags: "readonly fast",
        acl: "read fast",
        summary: "Returns the number of runs in a run set.",
        complexity: "O(1)",
        arity: 2,
        keys: &[(1, KeyUse::ReadData)],
        args: &[Arg::key("base", 0)],
        tips: "",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.expire",
        handler: Some(runs::cmd_expire),
        flags: "write",
        acl: "write slow",
        summary: "Removes the runs that started longer ago than a duration and replies with how many.",
        complexity: "O(M log N) where M is the number of runs removed and N the number of runs in the set.",
        arity: 3,
        keys: &[(1, KeyUse::Delete)],
        args: &[Arg::key("base", 0), Arg::string("duration")],
        tips: "nondeterministic_output",
        since: V1_0,
    },
    CommandDef {
        name: "activeruns.migrate",
        handler: Some(runs::cmd_migrate),
        flags: "write deny-oom",
        acl: "write slow",
        summary: "Turns a legacy hash of runs (id to JSON) into a run set; all or nothing.",
        complexity: "O(N log N) where N is the number of entries in the legacy hash.",
        arity: -3,
        keys: &[(1, KeyUse::ReadAndDelete), (2, KeyUse::Update)],
        args: &[
            Arg::key("legacy-hash", 0),
            Arg::key("base", 1),
            Arg::string("field").token("SCOREFIELD").optional(),
        ],
        tips: "",
        since: V1_0,
    },
];

/// The definition of a command or subcommand by its full name (`container|sub`), any case.
pub fn find(name: &str) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// The subcommands of a container, in table order.
pub fn subcommands(container: &str) -> impl Iterator<Item = &'static CommandDef> + '_ {
    COMMANDS.iter().filter(move |c| {
        c.name
            .split_once('|')
            .is_some_and(|(parent, _)| parent.eq_ignore_ascii_case(container))
    })
}

/// A command's syntax as docs/commands.md writes it: `RETENTION.JOBS COUNTS <prefix> <queue>
/// [FLAVOR bullmq|bull]` (tokens as typed, values as `<name>`, choices joined by `|`).
pub fn syntax(def: &CommandDef) -> String {
    let mut out = def.name.replace('|', " ").to_ascii_uppercase();
    for arg in def.args {
        out.push(' ');
        out.push_str(&render_arg(arg));
    }
    out
}

fn render_arg(arg: &Arg) -> String {
    let value = match arg.kind {
        ArgKind::PureToken => String::new(),
        ArgKind::OneOf(choices) => {
            let inner: Vec<String> = choices.iter().map(render_arg).collect();
            match arg.token.is_none() && !arg.optional {
                true => format!("<{}>", inner.join("|")),
                false => inner.join("|"),
            }
        }
        ArgKind::Block(parts) => parts.iter().map(render_arg).collect::<Vec<_>>().join(" "),
        _ => format!("<{}>", arg.name),
    };
    let mut text = match (arg.token, value.is_empty()) {
        (Some(token), true) => token.to_string(),
        (Some(token), false) => format!("{token} {value}"),
        (None, _) => value,
    };
    if arg.multiple {
        text = format!("{text} [{text} ...]");
    }
    match arg.optional {
        true => format!("[{text}]"),
        false => text,
    }
}

/// `<container> HELP`: each subcommand's syntax and summary, as Redis' own `CLIENT HELP`.
fn cmd_help(
    _ctx: &redis_module::Context,
    args: Vec<redis_module::RedisString>,
) -> crate::error::Result<redis_module::RedisValue> {
    use redis_module::RedisValue;
    let container = args
        .first()
        .map(|a| a.to_string_lossy())
        .unwrap_or_default();
    let mut lines = vec![RedisValue::SimpleString(format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.to_ascii_uppercase()
    ))];
    for sub in subcommands(&container) {
        let syntax = syntax(sub);
        let usage = syntax.split_once(' ').map_or(syntax.as_str(), |(_, s)| s);
        lines.push(RedisValue::SimpleString(usage.to_string()));
        lines.push(RedisValue::SimpleString(format!("    {}", sub.summary)));
    }
    Ok(RedisValue::Array(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_encoded_as_redis_modules_do() {
        assert_eq!(version_number("1.0.0"), 10_000);
        assert_eq!(version_number("1.2.3"), 10_203);
        assert_eq!(version_number("2.10.0-rc1"), 21_000);
    }

    #[test]
    fn syntax_follows_the_redis_docs_conventions() {
        let clean = find("RETENTION.JOBS|CLEAN").expect("defined");
        assert_eq!(
            syntax(clean),
            "RETENTION.JOBS CLEAN <prefix> <queue> <completed|failed> [MAXAGE <duration>] [MAXLEN <n>] [MAXMEMORY <size>] [LIMIT <n>] [DRYRUN] [FLAVOR bullmq|bull]"
        );
        let del = find("activeruns.del").expect("defined");
        assert_eq!(syntax(del), "ACTIVERUNS.DEL <base> <id> [<id> ...]");
    }

    #[test]
    fn every_container_has_subcommands_and_every_subcommand_a_container() {
        for def in COMMANDS {
            match def.name.split_once('|') {
                Some((parent, _)) => {
                    let parent = find(parent).expect("a subcommand's container is defined");
                    assert!(parent.handler.is_none(), "{} has a handler", parent.name);
                }
                None if def.handler.is_none() => {
                    assert!(subcommands(def.name).count() >= 2, "{}", def.name)
                }
                None => {}
            }
        }
    }

    #[test]
    fn key_arguments_point_at_declared_keys() {
        for def in COMMANDS {
            let key_args: Vec<usize> = def
                .args
                .iter()
                .filter_map(|a| match a.kind {
                    ArgKind::Key(i) => Some(i),
                    _ => None,
                })
                .collect();
            assert_eq!(key_args.len(), def.keys.len(), "{}", def.name);
            assert!(key_args.iter().all(|&i| i < def.keys.len()), "{}", def.name);
        }
    }
}
