"""The keyspace the README's examples run against (scripts/test-readme, setup section).

The private server is started like `scripts/run` (redis.conf.example, the module,
examples/policy.json), so new-key tracking applies the example policy while this fills it.
Every README code block then runs against this state, in README order. When a new example
needs keys that are not here, add them below, next to a comment naming the block they serve.
"""

import time
import uuid


def _now_ms():
    return int(time.time() * 1000)


def _bullmq_queue(r, name, jobs, finished_ms, waiting=1):
    """A BullMQ-shaped queue `bull:<name>`: `jobs` completed jobs finished at `finished_ms`
    (job ids 1..jobs) and `waiting` live jobs in `wait`. Job hashes are written before the
    `completed` set, as BullMQ does."""
    p = r.pipeline(transaction=False)
    p.hset(f"bull:{name}:meta", mapping={"version": "bullmq:5.81.5", "opts.maxLenEvents": 10000})
    p.set(f"bull:{name}:id", jobs + waiting)
    for i in range(1, jobs + 1):
        p.hset(f"bull:{name}:{i}", mapping={"name": "send", "data": "{}",
                                            "timestamp": finished_ms, "finishedOn": finished_ms,
                                            "returnvalue": "null"})
    for i in range(jobs + 1, jobs + waiting + 1):
        p.hset(f"bull:{name}:{i}", mapping={"name": "send", "data": "{}",
                                            "timestamp": _now_ms()})
        p.lpush(f"bull:{name}:wait", i)
    p.xadd(f"bull:{name}:events", {"event": "added", "jobId": jobs + waiting})
    p.execute()
    if jobs:
        r.zadd(f"bull:{name}:completed", {str(i): finished_ms for i in range(1, jobs + 1)})


def create(r):
    """Fills database 0 (and 1) of the server `r` (a redis-py client, RESP2) is connected to."""
    # `$ redis-cli RETENTION.EXPLAIN bull:mail:1` (section RETENTION.EXPLAIN): a BullMQ queue
    # whose completed job 1 finished two days ago, so the example policy's `bull-jobs` rule
    # (completed max_age 24h) removes it as soon as the `completed` set is written; EXPLAIN then
    # tells what the module did last to the vanished key.
    _bullmq_queue(r, "mail", jobs=1, finished_ms=_now_ms() - 2 * 86_400_000)
    deadline = time.monotonic() + 10
    while r.exists("bull:mail:1") and time.monotonic() < deadline:
        time.sleep(0.02)
    if r.exists("bull:mail:1"):
        raise RuntimeError("fixture: new-key tracking did not clean bull:mail:1 within 10 s")

    # `$ redis-cli RETENTION.EXPLAIN celery-task-meta-h`: a hash where the example policy's
    # `celery-results` rule only takes strings (it is passed over).
    r.hset("celery-task-meta-h", "status", "SUCCESS")

    # `RETENTION.SWEEP DRYRUN RULE celery-results` (Commands; redis-cli and redis-py): Celery
    # results, given their 1d TTL by the policy.
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.set(f"celery-task-meta-{uuid.uuid4()}", '{"status": "SUCCESS"}')
    p.execute()

    # `redis-cli RETENTION.TRIM audit:2026 ...` (trim rules): an audit stream.
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.xadd("audit:2026", {"event": "login", "user": str(i)})
    p.execute()

    # `redis-cli RETENTION.JOBS CLEAN|COUNTS bull emails` and the RETENTION.JOBS synopsis: a
    # BullMQ queue that never removed its finished jobs (the policy keeps the newest 500).
    _bullmq_queue(r, "emails", jobs=600, finished_ms=_now_ms() - 60_000, waiting=3)

    # `$ redis-cli --raw RETENTION.REPORT GROUPS 8 TOP 2`: more groups than GROUPS (so the
    # report folds the rest into `other`), one big enough to be sampled (key:*), keys without
    # TTL that no rule covers (warnings), a second database.
    r.execute_command("DEBUG", "POPULATE", 2000, "key")
    p = r.pipeline(transaction=False)
    for i in range(60):
        p.set(f"session:{i}", "s", ex=3600)
        p.hset(f"user:{i}:profile", mapping={"name": f"user {i}", "plan": "free"})
        p.rpush(f"feed:{i}", "a", "b", "c")
        p.xadd(f"events:{i}", {"type": "click"})
        p.zadd(f"leaderboard:{i}", {"a": 1, "b": 2})
        p.sadd(f"tags:{i}", "x", "y")
        p.set(f"lock:{i}", "1")
        p.set(f"cache:{i}", "v" * 100)
    p.execute()
    # Database 1 (MULTI/EXEC, so the SELECT stays on the connection that sends the SETs).
    p = r.pipeline(transaction=True)
    p.execute_command("SELECT", 1)
    for i in range(100):
        p.set(f"cache:{i}", "v" * 100)
    p.execute_command("SELECT", 0)
    p.execute()

    # ACTIVERUNS examples: ACTIVERUNS.ADD creates the run set 'runs:active:{acme}:web'.
