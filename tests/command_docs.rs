//! What the server says about each command (`COMMAND DOCS`, `COMMAND INFO`) is what
//! docs/commands.md says: the syntax rendered from the server's own argument list, the
//! summary, complexity and since version, and (where the server takes them, Redis 7.2+ and
//! Valkey) the ACL categories. Every command of the module has a section and every section
//! is a command of the module.

mod common;

use std::collections::BTreeMap;

use common::*;
use redis::Value;

const DOCS: &str = include_str!("../docs/commands.md");

/// One `## NAME` section's `Key: value` lines.
fn documented() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in DOCS.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            let is_command = title.starts_with("RETENTION.") || title.starts_with("ACTIVERUNS.");
            // `RETENTION.JOBS COUNTS` is the subcommand the server calls `retention.jobs|counts`.
            current = is_command.then(|| title.trim().to_ascii_lowercase().replacen(' ', "|", 1));
            continue;
        }
        let Some(name) = &current else { continue };
        for field in ["Syntax", "Summary", "Complexity", "ACL categories", "Since"] {
            if let Some(value) = line.strip_prefix(&format!("{field}: ")) {
                let value = value.trim().trim_matches('`').to_string();
                out.entry(name.clone())
                    .or_default()
                    .insert(field.to_string(), value);
            }
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn field<'a>(pairs: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) | Some(Value::Set(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The docs' rendering of one argument of `COMMAND DOCS`: tokens as the server has them,
/// values as `<name>`, choices joined by `|`, optional parts in brackets.
fn render(arg: &Value) -> String {
    let pairs = flat_map(arg);
    let name = field(&pairs, "name").map(text).unwrap_or_default();
    let kind = field(&pairs, "type").map(text).unwrap_or_default();
    let token = field(&pairs, "token").map(text);
    let flags: Vec<String> = list(field(&pairs, "flags")).iter().map(text).collect();
    let optional = flags.iter().any(|f| f == "optional");
    let multiple = flags.iter().any(|f| f == "multiple");
    let sub: Vec<String> = list(field(&pairs, "arguments"))
        .iter()
        .map(render)
        .collect();
    let value = match kind.as_str() {
        "pure-token" => String::new(),
        "oneof" if token.is_none() && !optional => format!("<{}>", sub.join("|")),
        "oneof" => sub.join("|"),
        "block" => sub.join(" "),
        _ => format!("<{name}>"),
    };
    let mut out = match (token, value.is_empty()) {
        (Some(t), true) => t,
        (Some(t), false) => format!("{t} {value}"),
        (None, _) => value,
    };
    if multiple {
        out = format!("{out} [{out} ...]");
    }
    match optional {
        true => format!("[{out}]"),
        false => out,
    }
}

/// `COMMAND DOCS` of every module command and subcommand: full name → its doc fields.
fn server_docs(c: &mut redis::Connection) -> BTreeMap<String, Vec<(String, Value)>> {
    let names: Vec<String> = redis::cmd("COMMAND")
        .arg(&["LIST", "FILTERBY", "MODULE", "retention"])
        .query(c)
        .expect("COMMAND LIST");
    assert!(names.len() >= 10, "{names:?}");
    let mut out = BTreeMap::new();
    for name in names {
        let reply = call(c, &["COMMAND", "DOCS", &name]);
        for (full, doc) in flat_map(&reply) {
            let doc = flat_map(&doc);
            if let Some(subs) = field(&doc, "subcommands") {
                for (sub, sub_doc) in flat_map(subs) {
                    out.insert(sub, flat_map(&sub_doc));
                }
            }
            out.insert(full, doc);
        }
    }
    out
}

fn acl_categories(c: &mut redis::Connection, name: &str) -> Vec<String> {
    let info = call(c, &["COMMAND", "INFO", name]);
    let Value::Array(entries) = info else {
        panic!("COMMAND INFO {name}: {info:?}")
    };
    let Some(Value::Array(entry)) = entries.first() else {
        panic!("COMMAND INFO {name}: {entries:?}")
    };
    // name, arity, flags, first, last, step, ACL categories, ...
    list(entry.get(6))
        .iter()
        .map(text)
        .filter(|c| c != "@module")
        .collect()
}

#[test]
fn command_docs_of_every_command_match_docs_commands_md() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let docs = documented();
    let served = server_docs(&mut c);
    let commands: Vec<&String> = served
        .iter()
        .filter(|(_, doc)| field(doc, "subcommands").is_none())
        .map(|(name, _)| name)
        .collect();
    let undocumented: Vec<&&String> = commands
        .iter()
        .filter(|n| !docs.contains_key(**n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "commands without a section: {undocumented:?}"
    );
    let unknown: Vec<&String> = docs.keys().filter(|n| !commands.contains(n)).collect();
    assert!(unknown.is_empty(), "sections of no command: {unknown:?}");

    // Redis 7.0 cannot take a module's ACL categories; Redis 7.2+ and Valkey list them.
    let server = ServerKind::of(&mut c);
    let in_force = server.takes_module_acl_categories();
    let mut categories_checked = 0;
    let command_count = commands.len();
    for name in commands {
        let doc = &served[name];
        let section = &docs[name];
        let mut syntax = name.replace('|', " ").to_ascii_uppercase();
        for arg in list(field(doc, "arguments")) {
            syntax.push(' ');
            syntax.push_str(&render(&arg));
        }
        let want = |f: &str| section.get(f).cloned().unwrap_or_default();
        assert_eq!(want("Syntax"), syntax, "{name}: Syntax");
        for (line, server_field) in [
            ("Summary", "summary"),
            ("Complexity", "complexity"),
            ("Since", "since"),
        ] {
            let served = field(doc, server_field).map(text).unwrap_or_default();
            assert_eq!(want(line), served, "{name}: {line}");
        }
        let declared = acl_categories(&mut c, name);
        if !in_force {
            assert!(declared.is_empty(), "{name}: {declared:?} on {server:?}");
            continue;
        }
        let mut documented: Vec<String> = want("ACL categories")
            .split(", ")
            .map(|c| c.trim_matches('`').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        documented.sort();
        let mut declared = declared;
        declared.sort();
        assert_eq!(documented, declared, "{name}: ACL categories");
        categories_checked += 1;
    }
    if in_force {
        assert_eq!(categories_checked, command_count, "every command compared");
    }
    eprintln!("ACL categories compared for {categories_checked} commands on {server:?}");
}

/// `<container> HELP` lists each subcommand as the docs write its syntax.
#[test]
fn help_lists_every_subcommand_with_its_documented_syntax() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let docs = documented();
    for container in ["RETENTION.JOBS", "RETENTION.STATS"] {
        let Value::Array(lines) = call(&mut c, &[container, "HELP"]) else {
            panic!("{container} HELP")
        };
        let lines: Vec<String> = lines.iter().map(text).collect();
        let subs: Vec<&String> = docs
            .keys()
            .filter(|n| n.starts_with(&format!("{}|", container.to_ascii_lowercase())))
            .collect();
        assert!(subs.len() >= 3, "{container}: {subs:?}");
        for sub in subs {
            let syntax = &docs[sub]["Syntax"];
            let usage = syntax.split_once(' ').map_or("", |(_, rest)| rest);
            assert!(
                lines.iter().any(|l| l == usage),
                "{container} HELP lacks '{usage}': {lines:?}"
            );
        }
    }
}

/// `MODULE LIST` reports the Cargo version encoded as Redis modules do (1.0.0 = 10000),
/// `RETENTION.STATUS` names it, CHANGELOG.md's newest entry is it, and LICENSE is the
/// license Cargo.toml declares.
#[test]
fn the_version_and_license_agree_everywhere() {
    let version = env!("CARGO_PKG_VERSION");
    let parts: Vec<i64> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().expect("numeric version part"))
        .collect();
    let encoded = parts[0] * 10_000 + parts[1] * 100 + parts[2];

    let server = Server::start_paused(None);
    let mut c = server.conn();
    let modules = call(&mut c, &["MODULE", "LIST"]);
    let Value::Array(modules) = modules else {
        panic!("MODULE LIST: {modules:?}")
    };
    let ours = modules
        .iter()
        .map(flat_map)
        .find(|m| field(m, "name").map(text).as_deref() == Some("retention"))
        .expect("the module is listed");
    assert_eq!(field(&ours, "ver").map(text), Some(encoded.to_string()));
    let status = call(&mut c, &["RETENTION.STATUS"]);
    assert_eq!(map_str(&status, "version").as_deref(), Some(version));

    let changelog = include_str!("../CHANGELOG.md");
    let newest = changelog
        .lines()
        .find_map(|l| l.strip_prefix("## "))
        .expect("a version heading");
    assert!(newest.starts_with(&format!("{version} ")), "{newest}");
    let license = include_str!("../LICENSE");
    assert_eq!(env!("CARGO_PKG_LICENSE"), "MIT");
    assert!(license.starts_with("MIT License\n"), "LICENSE is not MIT");
}
