"""RETENTION.SUGGEST end to end, on keyspaces written by the real job libraries (scripts/test-suggest).

A server with the module (and a replica) gets BullMQ and Bull queues (queues.js), Celery results,
RQ jobs, sessions, caches, streams, lists, counters, locks and keys of no recognisable owner
(writers.py) in four databases. Then: RETENTION.SUGGEST's reply has the documented shape and a
policy RETENTION.RELOAD accepts; the suggestion is applied (RELOAD, RETENTION.SWEEP in every
database) and the libraries' own APIs show that no live job was lost and the queues still work,
keys no suggested rule acts on are unchanged byte for byte, memory freed and TTLs given are at
least what the suggestion announced, and the replica ends equal to the master.
Prints `ok`/`FAIL` lines; exits 1 when a check fails.
  RETENTION_SERVER_BIN  server binary (default: redis-server)
  RETENTION_MODULE      the module (default: target/release/libredis_retention.so)
"""

import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import redis
from celery import Celery
from celery.result import GroupResult
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

import writers
from servers import Server, wait_replicated

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER_BIN = os.environ.get("RETENTION_SERVER_BIN", "redis-server")
MODULE = os.environ.get("RETENTION_MODULE", os.path.join(ROOT, "target", "release", "libredis_retention.so"))
DATABASES = [0, 1, 2, 3]
ACTIONS = ["keep", "ttl", "trim", "queue", "runs"]
EFFECT_FIELDS = ["keys", "jobs", "entries", "freed_bytes", "expiring_bytes"]
# What no suggestion may ever act on while these tests run: the running RQ worker's own keys
# and the job it holds change on their own (heartbeats), so they are compared through RQ.
MOVING = re.compile(r"^rq:(worker|workers|wip|clean_registries|clean_groups|scheduler|pubsub|execution)")
T0 = time.time()
failures = []


def phase(what):
    print(f"==> [{time.time() - T0:.1f}s] {what}", file=sys.stderr, flush=True)


def check(ok, what, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + str(detail) if not ok and detail else ''}", flush=True)
    if not ok:
        failures.append(what)
    return ok


def pairs(flat):
    """A RESP2 map (flat field/value pairs) as a dict."""
    if isinstance(flat, dict):
        return flat
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError(f"not a map: {flat!r:.200}")
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def glob_regex(glob):
    """A Redis glob (SCAN MATCH syntax) as a regular expression."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        elif c == "[":
            j = glob.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:j]
                neg = body.startswith("^")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.S)


def rule_globs(rule):
    m = rule["match"]
    return [m] if isinstance(m, str) else list(m)


def rule_action(rule):
    found = [a for a in ACTIONS if a in rule]
    return found[0] if len(found) == 1 else None


def governs(rule, key, key_type):
    """Whether `rule` would govern `key` (the policy's first-match semantics, per rule kind)."""
    if rule.get("type") and rule_action(rule) not in ("queue", "runs") and rule["type"] != key_type:
        return False
    globs = [glob_regex(g) for g in rule_globs(rule)]
    if rule_action(rule) == "runs":
        base = re.sub(r":(index|data)$", "", key)
        return base != key and any(g.match(base) for g in globs)
    return any(g.match(key) for g in globs)


def governing_rule(rules, key, key_type):
    return next((r for r in rules if governs(r, key, key_type)), None)


# --- the keyspace, before and after ---------------------------------------------------------

def snapshot(server):
    """Every key of every database: type, PEXPIRETIME, DUMP, MEMORY USAGE SAMPLES 0."""
    keys = {}
    raw = redis.Redis(host="127.0.0.1", port=server.port)
    for db in DATABASES:
        raw.select(db)
        names = list(raw.scan_iter(count=1000))
        for i in range(0, len(names), 500):
            batch = names[i:i + 500]
            p = raw.pipeline(transaction=False)
            for k in batch:
                p.type(k)
                p.execute_command("PEXPIRETIME", k)
                p.dump(k)
                p.memory_usage(k, samples=0)
            out = p.execute()
            for n, k in enumerate(batch):
                t, exp, dump, mem = out[4 * n:4 * n + 4]
                if dump is None:
                    continue  # gone between SCAN and DUMP (a worker's key)
                keys[(db, k.decode("utf-8", "surrogateescape"))] = {
                    "type": t.decode(), "expire": exp, "dump": dump, "memory": mem or 0}
    raw.close()
    return keys


def total_memory(snap):
    return sum(v["memory"] for v in snap.values())


# --- the suggestion ---------------------------------------------------------------------------

def check_shape(reply):
    """The interface's shape: policy, rules, unknown, walk; each field's type."""
    problems = []
    top = pairs(reply)
    for field in ["policy", "rules", "unknown", "walk"]:
        if field not in top:
            problems.append(f"no field {field}")
    if problems:
        return None, problems
    if not isinstance(top["policy"], str):
        problems.append("policy is not a bulk string")
    rules = [pairs(r) for r in top["rules"]]
    for r in rules:
        name = r.get("name")
        for field in ["name", "action", "match", "owner", "comment", "effect"]:
            if field not in r:
                problems.append(f"rule {name}: no field {field}")
        if r.get("action") not in ACTIONS:
            problems.append(f"rule {name}: action {r.get('action')!r}")
        effect = pairs(r.get("effect", []))
        for field in EFFECT_FIELDS:
            if not isinstance(effect.get(field), int) or effect[field] < 0:
                problems.append(f"rule {name}: effect {field} = {effect.get(field)!r}")
        if r.get("action") == "keep" and any(effect.get(f) for f in EFFECT_FIELDS):
            problems.append(f"rule {name}: a keep rule with a non-zero effect {effect}")
        r["effect"] = effect
    unknown = [pairs(u) for u in top["unknown"]]
    for u in unknown:
        for field, kind in [("pattern", str), ("keys", int), ("keys_without_ttl", int),
                            ("memory_bytes", int), ("reason", str)]:
            if not isinstance(u.get(field), kind):
                problems.append(f"unknown group {u.get('pattern')}: {field} = {u.get(field)!r}")
        u["types"] = pairs(u.get("types", []))
        if sum(u["types"].values()) != u.get("keys"):
            problems.append(f"unknown group {u.get('pattern')}: types {u['types']} do not add up to {u.get('keys')} keys")
    if [u.get("memory_bytes") for u in unknown] != sorted((u.get("memory_bytes") for u in unknown), reverse=True):
        problems.append("unknown groups are not biggest first")
    walk = pairs(top["walk"])
    for field, kind in [("databases", list), ("keys", int), ("duration_ms", int), ("slices", int)]:
        if not isinstance(walk.get(field), kind):
            problems.append(f"walk: {field} = {walk.get(field)!r}")
    if "match" not in walk or walk["match"] is not None:
        problems.append(f"walk: match = {walk.get('match', '(absent)')!r}, nil expected without MATCH")
    return {"policy": top["policy"], "rules": rules, "unknown": unknown, "walk": walk}, problems


def check_policy_matches_rules(policy, rules):
    problems = []
    prules = policy.get("rules")
    if not isinstance(prules, list) or not prules:
        return ["the policy has no rules"]
    if [r.get("name") for r in prules] != [r.get("name") for r in rules]:
        problems.append(f"names/order differ: policy {[r.get('name') for r in prules]}, rules {[r.get('name') for r in rules]}")
        return problems
    seen_acting = False
    for p, r in zip(prules, rules):
        name = p["name"]
        if rule_action(p) != r["action"]:
            problems.append(f"{name}: policy action {rule_action(p)}, reply action {r['action']}")
        if rule_globs(p) != ([r["match"]] if isinstance(r["match"], str) else list(r["match"])):
            problems.append(f"{name}: policy match {p['match']!r}, reply match {r['match']!r}")
        if p.get("comment") != r["comment"]:
            problems.append(f"{name}: policy comment differs from the reply's")
        if not re.search(r"\d", r["comment"] or ""):
            problems.append(f"{name}: a comment without numbers: {r['comment']!r}")
        if r["action"] == "keep" and seen_acting:
            problems.append(f"{name}: a keep rule after an acting rule")
        seen_acting = seen_acting or r["action"] != "keep"
    return problems


def without_comment(rule):
    return {k: v for k, v in rule.items() if k != "comment"}


def rules_of(text):
    """A policy text's rules without their comments (or why it is not a policy)."""
    try:
        return [without_comment(r) for r in json.loads(text)["rules"]]
    except (ValueError, KeyError, TypeError) as e:
        return f"not a policy: {e}"


def same_rules(a, b):
    return isinstance(rules_of(a), list) and rules_of(a) == rules_of(b)


def suggest(server, *args, protocol=2):
    return server.client(protocol=protocol).execute_command("RETENTION.SUGGEST", *args)


# --- the libraries' own checks ----------------------------------------------------------------

def check_rq_before_release(port, rq, after_snap, before_snap):
    c = redis.Redis(host="127.0.0.1", port=port, db=rq["db"])
    want = [(i, JobStatus.QUEUED) for i in rq["queued"]] + [(i, JobStatus.SCHEDULED) for i in rq["scheduled"]] + \
        [(i, JobStatus.DEFERRED) for i in rq["deferred"]] + [(rq["started"], JobStatus.STARTED)]
    lost = []
    for job_id, status in want:
        try:
            got = Job.fetch(job_id, connection=c).get_status()
        except Exception as e:  # NoSuchJobError, or a hash the module damaged
            got = f"{type(e).__name__}"
        key = (rq["db"], f"rq:job:{job_id}")
        ttl_given = key in after_snap and after_snap[key]["expire"] != before_snap[key]["expire"]
        if got != status or ttl_given:
            lost.append(f"{job_id} ({status} -> {got}{', expire time changed' if ttl_given else ''})")
    queue_ids = set(Queue("default", connection=c).get_job_ids() + Queue("high", connection=c).get_job_ids())
    missing = [i for i in rq["queued"] if i not in queue_ids]
    check(not lost and not missing,
          f"RQ: every live job is still fetchable in its state, expire time unchanged (Job.fetch): "
          f"{len(rq['queued'])} queued, {len(rq['scheduled'])} scheduled, {len(rq['deferred'])} deferred, 1 started",
          ", ".join(lost[:5] + [f"{i} not in its queue" for i in missing[:5]]))
    c.close()


def check_rq_runs(port, rq, worker):
    c = redis.Redis(host="127.0.0.1", port=port, db=rq["db"])
    c.set(rq["release_key"], "1")
    deadline = time.time() + 30
    while (status := Job.fetch(rq["started"], connection=c).get_status()) != JobStatus.FINISHED and time.time() < deadline:
        time.sleep(0.05)
    worker.kill()  # a burst worker lingers for a minute after its last job
    worker.wait()
    check(status == JobStatus.FINISHED, "RQ: the started job finishes in its worker afterwards", f"status {status}")
    SimpleWorker([Queue("high", connection=c), Queue("default", connection=c)], connection=c).work(
        burst=True, logging_level="CRITICAL")
    unfinished = []
    for job_id in rq["queued"] + rq["deferred"]:
        status = Job.fetch(job_id, connection=c).get_status()
        if status != JobStatus.FINISHED:
            unfinished.append(f"{job_id}: {status}")
    check(not unfinished, f"RQ: a burst SimpleWorker runs every queued and deferred job afterwards ({len(rq['queued']) + len(rq['deferred'])})",
          ", ".join(unfinished[:5]))
    c.close()


def check_celery(port, celery, before, after):
    app = Celery("shop", broker="memory://", backend=celery["url"])
    changed = []
    for tid in celery["with_ttl"]:
        key = (celery["db"], f"celery-task-meta-{tid}")
        if key not in after or after[key]["expire"] != before[key]["expire"] or after[key]["dump"] != before[key]["dump"]:
            changed.append(tid)
    check(not changed, f"Celery: the {len(celery['with_ttl'])} results stored with the default expiry keep their value and expire time",
          ", ".join(changed[:5]))
    unreadable = [t for t in celery["no_ttl"][:50] if app.AsyncResult(t).state not in ("SUCCESS", "FAILURE")]
    groups = [g for g in celery["groups"] if GroupResult.restore(g, app=app) is None]
    check(not unreadable and not groups, "Celery: results and group results are still readable (AsyncResult, GroupResult.restore)",
          f"unreadable {unreadable[:3]}, groups {groups[:3]}")
    app.close()


def check_streams(port, streams, before_state):
    for s in streams:
        r = redis.Redis(host="127.0.0.1", port=port, db=s["db"], decode_responses=True)
        last, pending, unread = before_state[s["key"]]
        missing_unread = [i for i in unread if not r.xrange(s["key"], i, i)]
        missing_pending = [i for i in pending if not r.xrange(s["key"], i, i)]
        group = next(g for g in r.xinfo_groups(s["key"]) if g["name"] == s["group"])
        check(not missing_unread and not missing_pending and group["last-delivered-id"] == last,
              f"stream {s['key']}: the group {s['group']}'s {len(unread)} unread and {len(pending)} pending entries are all still there",
              f"{len(missing_unread)} unread and {len(missing_pending)} pending gone, last-delivered {group['last-delivered-id']}")
        r.close()


def stream_state(port, streams):
    state = {}
    for s in streams:
        r = redis.Redis(host="127.0.0.1", port=port, db=s["db"], decode_responses=True)
        group = next(g for g in r.xinfo_groups(s["key"]) if g["name"] == s["group"])
        last = group["last-delivered-id"]
        pending = [p["message_id"] for p in r.xpending_range(s["key"], s["group"], "-", "+", 100000)]
        unread = [i for i, _ in r.xrange(s["key"], f"({last}", "+")]
        state[s["key"]] = (last, pending, unread)
        r.close()
    return state


def unchanged(before, after, keys):
    """The keys of `keys` whose value or expire time changed (or that are gone)."""
    return [k for k in keys if k not in after or after[k]["dump"] != before[k]["dump"]
            or after[k]["expire"] != before[k]["expire"]]


def show(keys):
    return ", ".join(f"db{db} {k}" for db, k in keys[:5]) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")


def main():
    phase(f"servers: {SERVER_BIN}, module {MODULE}")
    work = tempfile.mkdtemp(prefix="retention-suggest-run-")
    policy_file = os.path.join(work, "policy.json")
    with open(policy_file, "w") as f:
        json.dump({"rules": []}, f)
    master = Server(SERVER_BIN, MODULE, policy_file)
    replica = Server(SERVER_BIN, MODULE, os.path.join(work, "policy.json"), replica_of=master)
    worker = None
    try:
        wait_replicated(master, replica)
        phase("writing: BullMQ and Bull (queues.js)")
        state_file = os.path.join(work, "queues.json")
        out = subprocess.run(["node", os.path.join(HERE, "queues.js"), "write", str(master.port), state_file],
                             capture_output=True, text=True, timeout=300)
        if out.returncode:
            raise RuntimeError(f"queues.js write failed:\n{out.stdout}\n{out.stderr}")
        print(f"BullMQ/Bull live jobs: {out.stdout.strip()}")
        phase("writing: Celery, RQ, sessions, caches, streams, lists, counters, locks, unknown keys")
        manifest, worker = writers.write_all(master.port)
        wait_replicated(master, replica)
        main_checks(master, replica, manifest, worker, policy_file, state_file)
    finally:
        if worker and worker.poll() is None:
            worker.kill()
        for s in (master, replica):
            s.stop()
    phase(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0


def main_checks(master, replica, manifest, worker, policy_file, state_file):
    suggestion = check_suggestion(master, manifest)
    if suggestion is None:
        return
    reply, text, rules = suggestion
    check_on_replica(master, replica, text, rules)
    phase("apply: RELOAD, SWEEP in every database")
    applied = apply_suggestion(master, policy_file, text, manifest)
    if applied is None:
        return
    before, after, swept, streams_before = applied
    check_announced_effects(reply, rules, before, after, swept)
    check_untouched(manifest, rules, before, after)
    check_streams(master.port, manifest["streams"], streams_before)
    check_celery(master.port, manifest["celery"], before, after)
    check_rq_before_release(master.port, manifest["rq"], after, before)
    phase("the queues, with BullMQ and Bull (queues.js check)")
    check_queues(master, state_file)
    phase("RQ workers")
    check_rq_runs(master.port, manifest["rq"], worker)
    phase("replica consistency")
    check_replica_consistency(master, replica)


def check_suggestion(master, manifest):
    """The reply's shape and consistency; (reply, policy text, policy rules), None if unusable."""
    phase("RETENTION.SUGGEST")
    started = time.time()
    reply, problems = check_shape(suggest(master))
    took = time.time() - started
    check(not problems, "SUGGEST: the reply has the interface's shape (policy, rules with effect, unknown, walk)",
          "; ".join(problems[:8]))
    if reply is None:
        return None
    text = reply["policy"]
    try:
        policy = json.loads(text)
    except ValueError as e:
        check(False, "SUGGEST: the policy is valid JSON", e)
        return None
    check(True, f"SUGGEST: the policy is valid JSON ({len(policy.get('rules', []))} rules, {len(text)} bytes, {took:.2f} s)")
    check(not (p := check_policy_matches_rules(policy, reply["rules"])),
          "SUGGEST: the policy's rules match `rules` (names, order, actions, globs, comments), keep rules first, each comment carries numbers",
          "; ".join(p[:6]))
    dbsize = sum(master.client(db).dbsize() for db in DATABASES)
    walk = reply["walk"]
    check(sorted(walk["databases"]) == DATABASES and walk["keys"] == dbsize,
          f"SUGGEST: the walk covered databases {DATABASES} and every key ({dbsize})", f"walk {walk}")
    print_suggestion(reply)
    # Each call is a new walk: the comments' figures are that walk's (memory is sampled, ages
    # move on), so two calls must suggest the same rules, not the same words.
    alone = suggest(master, "FORMAT", "policy")
    check(same_rules(alone, text), "SUGGEST FORMAT policy: the map's policy alone (the same rules)",
          diff(text, alone, "map", "FORMAT policy"))
    resp3 = suggest(master, protocol=3)
    check(isinstance(resp3, dict) and isinstance(resp3.get("walk"), dict) and same_rules(resp3.get("policy"), text),
          "SUGGEST over RESP3: a map (nested maps too) with the same rules",
          f"a {type(resp3).__name__}" if not isinstance(resp3, dict) else diff(text, resp3.get("policy"), "RESP2", "RESP3"))
    check_recognised(reply)
    check_unknown_groups(reply, policy["rules"], snapshot(master), manifest)
    return reply, text, policy["rules"]


def check_on_replica(master, replica, text, rules):
    phase("SUGGEST on the replica")
    wait_replicated(master, replica)
    on_replica = suggest(replica, "FORMAT", "policy")
    # The comments' figures are each walk's own (memory sampled in the server's scan order).
    replica_rules = rules_of(on_replica)
    master_rules = [without_comment(r) for r in rules]
    check(replica_rules == master_rules, "SUGGEST on a replica suggests the same rules (comments aside)",
          diff(json.dumps(master_rules, indent=1), json.dumps(replica_rules, indent=1)))


def apply_suggestion(master, policy_file, text, manifest):
    """RELOAD with the suggested policy, then a SWEEP in every database:
    (keyspace before, after, each database's sweep reply, the consumer groups' state before)."""
    with open(policy_file, "w") as f:
        f.write(text)
    try:
        reloaded = master.client().execute_command("RETENTION.RELOAD")
        check(True, f"RETENTION.RELOAD accepts the suggested policy ({reloaded})")
    except redis.ResponseError as e:
        check(False, "RETENTION.RELOAD accepts the suggested policy", e)
        return None
    streams_before = stream_state(master.port, manifest["streams"])
    before = snapshot(master)
    swept = {db: pairs(master.client(db).execute_command("RETENTION.SWEEP")) for db in DATABASES}
    after = snapshot(master)
    errors = {db: s.get("errors") for db, s in swept.items() if s.get("errors")}
    check(not errors, "RETENTION.SWEEP in each database: no errors", errors)
    return before, after, swept, streams_before


def freed_by_rule(rules, before, after):
    """Memory freed (MEMORY USAGE SAMPLES 0, before - after) over the keys each rule governs."""
    freed = {}
    for k, v in before.items():
        rule = governing_rule(rules, k[1], v["type"])
        name = rule["name"] if rule else "(no rule)"
        freed[name] = freed.get(name, 0) + v["memory"] - after.get(k, {"memory": 0})["memory"]
    return freed


def check_announced_effects(reply, rules, before, after, swept):
    """Applying frees at least the sum of freed_bytes, gives at least the sum of keys a TTL,
    and does per rule what its effect announced."""
    total = {f: sum(r["effect"][f] for r in reply["rules"]) for f in EFFECT_FIELDS}
    freed = total_memory(before) - total_memory(after)
    by_rule = freed_by_rule(rules, before, after)
    per_rule = "; ".join(f"{r['name']}: freed_bytes {r['effect']['freed_bytes']:,}, freed {by_rule.get(r['name'], 0):,}"
                         for r in reply["rules"] if r["effect"]["freed_bytes"])
    check(freed >= total["freed_bytes"],
          f"memory freed at once ({freed:,} bytes, MEMORY USAGE SAMPLES 0 summed) >= the sum of freed_bytes ({total['freed_bytes']:,})",
          f"{freed:,} < {total['freed_bytes']:,} (per rule, over the keys it governs: {per_rule})")
    given = [k for k, v in before.items() if v["expire"] == -1 and k in after and after[k]["expire"] > 0]
    check(len(given) >= total["keys"], f"keys newly given a TTL ({len(given):,}) >= the sum of keys ({total['keys']:,})",
          f"{len(given):,} < {total['keys']:,}")
    removed = sum(s.get("jobs_removed", 0) for s in swept.values())
    trimmed = sum(s.get("entries_trimmed", 0) + s.get("runs_expired", 0) for s in swept.values())
    check(removed >= total["jobs"] and trimmed >= total["entries"],
          f"the sweep removed >= the announced jobs ({removed:,} >= {total['jobs']:,}) and trimmed or expired >= the announced entries ({trimmed:,} >= {total['entries']:,})")
    check_effects_match_sweep(reply["rules"], swept)


def check_untouched(manifest, rules, before, after):
    """Keys no acting rule governs, every key that had a TTL, locks, counters, keys of no
    owner: byte for byte (DUMP) with the same expire time."""
    started = manifest["rq"]["started"]
    idle = [k for k in before if not MOVING.match(k[1])
            and not k[1].startswith((f"rq:job:{started}", f"rq:results:{started}"))]
    ungoverned = [k for k in idle if rule_action(governing_rule(rules, k[1], before[k]["type"]) or {"keep": True}) == "keep"]
    check(not (bad := unchanged(before, after, ungoverned)),
          f"the {len(ungoverned):,} keys no suggested rule acts on (keep or none) are unchanged (DUMP, PEXPIRETIME)", show(bad))
    had_ttl = [k for k in idle if before[k]["expire"] > 0]
    check(not (bad := unchanged(before, after, had_ttl)),
          f"the {len(had_ttl):,} keys that had a TTL keep their value and expire time", show(bad))
    for what in ["locks", "counters", "unknown"]:
        keys = [tuple(k) for k in manifest[what]]
        check(not (bad := unchanged(before, after, keys)), f"{what}: all {len(keys)} unchanged", show(bad))


def check_queues(master, state_file):
    """queues.js check: its ok/FAIL lines count as this script's."""
    out = subprocess.run(["node", os.path.join(HERE, "queues.js"), "check", str(master.port), state_file],
                         capture_output=True, text=True, timeout=300)
    print(out.stdout, end="")
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    failures.extend(failed)
    if out.returncode not in (0, 1) or (out.returncode == 1 and not failed):
        check(False, "queues.js check ran", out.stderr[-2000:])


def check_replica_consistency(master, replica):
    wait_replicated(master, replica)
    digests = [s.client().execute_command("DEBUG", "DIGEST") for s in (master, replica)]
    check(digests[0] == digests[1], "the replica's DEBUG DIGEST equals the master's after the sweep", digests)
    expires = [{k: v["expire"] for k, v in snapshot(s).items()} for s in (master, replica)]
    differ = [k for k in expires[0] if expires[0][k] != expires[1].get(k)]
    check(not differ, f"every key's expire time is the same on the replica ({len(expires[0]):,} keys)", show(differ))


# What each rule's effect counts, and the sweep's per-rule counter of the same thing.
EFFECT_COUNTER = {"ttl": ("keys", "ttl_set"), "queue": ("jobs", "jobs_removed"),
                  "trim": ("entries", "entries_trimmed"), "runs": ("entries", "runs_expired")}


def check_effects_match_sweep(rules, swept):
    """A rule's effect is a dry run of it now: the pass that follows does the same, per rule
    (within 1% or 2: a job or entry may cross an age limit in the seconds between)."""
    done = {}
    for s in swept.values():
        for name, counters in pairs(s.get("rules", [])).items():
            for field, value in pairs(counters).items():
                done[(name, field)] = done.get((name, field), 0) + value
    off = []
    for r in rules:
        if r["action"] not in EFFECT_COUNTER:
            continue
        field, counter = EFFECT_COUNTER[r["action"]]
        announced, did = r["effect"][field], done.get((r["name"], counter), 0)
        if abs(announced - did) > max(2, did // 100):
            off.append(f"{r['name']}: effect {field} {announced:,}, the sweep's {counter} {did:,}")
    check(not off, "each rule's effect (keys, jobs, entries) is what the sweep then did under that rule", "; ".join(off))


def check_recognised(reply):
    """The owners the real libraries leave recognisable: a rule for each, acting on their keys."""
    rules = reply["rules"]

    def found(owner, action, pattern):
        return any(r["owner"] == owner and r["action"] == action and
                   any(glob_regex(g).match(pattern) for g in ([r["match"]] if isinstance(r["match"], str) else r["match"]))
                   for r in rules)
    want = [("bullmq", "queue", "bull:emails:1"), ("bull", "queue", "bull:thumbnails:1"),
            ("bullmq", "queue", "jobs:exports:1"), ("celery", "ttl", "celery-task-meta-0f4c")]
    missing = []
    for owner, action, key in want:
        # BullMQ and Bull queues under one prefix share one rule (flavor auto): either owner names it.
        alt = {"bullmq": "bull", "bull": "bullmq"}.get(owner)
        if not found(owner, action, key) and not (alt and found(alt, action, key)):
            missing.append(f"{owner} {action} rule covering {key}")
    check(not missing, "SUGGEST recognises the queues of both prefixes (BullMQ, Bull) and Celery's results", "; ".join(missing))
    check(any(r["owner"] == "rq" for r in rules), "SUGGEST recognises RQ (a rule with owner rq)",
          f"owners: {sorted({r['owner'] for r in rules})}")


def check_unknown_groups(reply, rules, snap, manifest):
    """Unknown groups name keys no acting rule governs, and the keys of no owner are among them."""
    acting = []
    for u in reply["unknown"]:
        g = glob_regex(u["pattern"])
        for (db, k), v in snap.items():
            if g.match(k) and v["expire"] == -1:
                rule = governing_rule(rules, k, v["type"])
                if rule and rule_action(rule) != "keep":
                    acting.append(f"{u['pattern']}: db{db} {k} governed by {rule['name']}")
                    break
    check(not acting, f"no suggested rule acts on the keys of the {len(reply['unknown'])} unknown groups", "; ".join(acting[:5]))
    globs = [glob_regex(u["pattern"]) for u in reply["unknown"]]
    uncovered = [(db, k) for db, k in map(tuple, manifest["unknown"]) if not any(g.match(k) for g in globs)]
    check(not uncovered, f"the {len(manifest['unknown'])} keys of no recognisable owner are all in unknown groups", show(uncovered))


def print_suggestion(reply):
    print("  suggested rules:")
    for r in reply["rules"]:
        e = r["effect"]
        effect = ", ".join(f"{f} {e[f]:,}" for f in EFFECT_FIELDS if e[f])
        print(f"    {r['name']:<24} {r['action']:<5} {r['owner']:<8} {r['match']}  {effect}")
    print("  unknown:")
    for u in reply["unknown"]:
        print(f"    {u['pattern']:<28} keys {u['keys']:>6}  no TTL {u['keys_without_ttl']:>6}  {u['memory_bytes']:>9,} B  {u['reason']}")


def diff(a, b, name_a="master", name_b="replica"):
    """The lines that differ, each cut around its first differing character (comments are long)."""
    if a == b:
        return ""
    a_lines, b_lines = (a or "").splitlines(), (b or "").splitlines()
    if len(a_lines) != len(b_lines):
        lines = difflib.unified_diff(a_lines, b_lines, name_a, name_b, lineterm="")
        return "\n" + "\n".join(list(lines)[:40])
    out = []
    for n, (x, y) in enumerate(zip(a_lines, b_lines)):
        if x != y:
            at = next(i for i in range(min(len(x), len(y)) + 1) if i == min(len(x), len(y)) or x[i] != y[i])
            cut = max(0, at - 70)
            out.append(f"  line {n + 1}, {name_a}: ...{x[cut:at + 50]}...")
            out.append(f"  line {n + 1}, {name_b}: ...{y[cut:at + 50]}...")
    return "\n" + "\n".join(out[:20])


if __name__ == "__main__":
    try:
        code = main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"FAIL the test could not run: {e}")
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # Without the finalizers: Celery's results unsubscribe when collected, from a server now gone.
    os._exit(code)
