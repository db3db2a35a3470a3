"""What Python applications leave behind in Redis, written by the real libraries where one exists.

db 0: sessions and caches (some with a TTL, some leaked without), an order-events stream with a
      consumer group that has pending and unread entries, a metrics stream nobody reads, a mail
      outbox list and recent-search lists, counters, locks, keys of no recognisable owner.
db 1: Celery results (redis result backend): most stored with result_expires=None (no TTL),
      some with Celery's default expiry (1 day), group results.
db 2: RQ: finished jobs kept forever (result_ttl=-1) and for the default 500 s, failed jobs,
      queued, scheduled and deferred jobs, and one job `started` by a worker that keeps running.
db 3: keys of no recognisable owner, temporary uploads with a TTL.
(BullMQ and Bull queues are written by queues.js, in db 0 and db 3.)

`write_all` returns a manifest: the keys and job ids the checks look at afterwards.
"""

import json
import os
import random
import subprocess
import sys
import time
import uuid

import redis
from celery import Celery
from celery.result import AsyncResult, GroupResult
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

import tasks

HERE = os.path.dirname(os.path.abspath(__file__))
DAY_MS = 24 * 3600 * 1000
SESSION, CACHE, STREAM, RESULTS, RQ_DB, OTHER = 0, 0, 0, 1, 2, 3
RELEASE_KEY = "e2e:release-started-job"

SIZE = {
    "sessions": 300, "leaked_sessions": 200, "cached_users": 300, "cached_pages": 300,
    "order_events": 2000, "metrics": 3000, "celery_forever": 1500, "celery_default": 300,
    "celery_groups": 20, "rq_forever": 300, "rq_default": 60, "rq_charges": 45, "rq_queued": 40,
    "rq_scheduled": 5, "unknown": 150,
}


def conn(port, db):
    return redis.Redis(host="127.0.0.1", port=port, db=db, decode_responses=True)


def flush(pipe):
    pipe.execute()
    return pipe


def write_sessions_and_caches(port, rnd):
    r = conn(port, SESSION)
    p = r.pipeline(transaction=False)
    for _ in range(SIZE["sessions"]):
        p.set(f"session:{uuid.UUID(int=rnd.getrandbits(128))}",
              json.dumps({"user_id": rnd.randint(1, 50000), "csrf": f"{rnd.getrandbits(128):032x}"}),
              ex=rnd.randint(1800, 86400))
    # Sessions whose expiry was lost (a SET without EX over a live one): no TTL.
    for _ in range(SIZE["leaked_sessions"]):
        p.set(f"session:{uuid.UUID(int=rnd.getrandbits(128))}",
              json.dumps({"user_id": rnd.randint(1, 50000), "csrf": f"{rnd.getrandbits(128):032x}"}))
    for i in range(SIZE["cached_users"]):
        p.set(f"cache:user:{1000 + i}", json.dumps({"name": f"user {i}", "plan": rnd.choice(["free", "pro"])}),
              ex=3600)
    for _ in range(SIZE["cached_pages"]):
        p.set(f"cache:page:{rnd.getrandbits(64):016x}", "<html>" + "<p>lorem ipsum</p>" * rnd.randint(5, 40) + "</html>")
    flush(p)


def write_streams_and_lists(port, rnd):
    """A consumer group with pending and unread entries over 20 days; a metrics stream; lists."""
    r = conn(port, STREAM)
    now = int(time.time() * 1000)
    n = SIZE["order_events"]
    p = r.pipeline(transaction=False)
    for k in range(n):
        at = now - 20 * DAY_MS + (k * 20 * DAY_MS) // n
        p.xadd("events:orders", {"order": str(10000 + k), "status": rnd.choice(["paid", "shipped", "refunded"])},
               id=f"{at}-0")
    m = SIZE["metrics"]
    for k in range(m):
        at = now - 30 * DAY_MS + (k * 30 * DAY_MS) // m
        p.xadd("metrics:cpu", {"host": f"web-{k % 8}", "load": f"{rnd.random() * 4:.2f}"}, id=f"{at}-0")
    for k in range(150):
        p.rpush("mail:outbox", json.dumps({"to": f"user{k}@example.com", "template": "receipt"}))
    for u in range(20):
        for k in range(30):
            p.lpush(f"recent:searches:{u}", f"query {rnd.getrandbits(32):08x}")
    flush(p)
    r.xgroup_create("events:orders", "billing", id="0")
    read = r.xreadgroup("billing", "billing-1", {"events:orders": ">"}, count=1400)
    ids = [entry_id for _, entries in read for entry_id, _ in entries]
    r.xack("events:orders", "billing", *ids[:1000])
    return [{"db": STREAM, "key": "events:orders", "group": "billing"}]


def write_counters_and_locks(port, rnd):
    r = conn(port, SESSION)
    counters, locks = [], []
    r.incrby("counter:signups", 48213)
    counters.append((0, "counter:signups"))
    for d in range(1, 8):
        r.incrby(f"stats:pageviews:2026-12-0{d}", rnd.randint(1000, 90000))
        counters.append((0, f"stats:pageviews:2026-12-0{d}"))
    for ip in range(10):
        r.set(f"ratelimit:api:10.0.0.{ip}", rnd.randint(1, 99), ex=900)
        counters.append((0, f"ratelimit:api:10.0.0.{ip}"))
    r.hset("counters:jobs", mapping={"sent": 9120, "bounced": 88})
    counters.append((0, "counters:jobs"))
    for n in range(10):
        r.set(f"lock:invoice:{n}", f"{rnd.getrandbits(64):016x}", nx=True, px=600000)
        locks.append((0, f"lock:invoice:{n}"))
    # A lock that lost its expiry (a crashed holder that set none): still someone's lock.
    r.set("lock:schema-migration", "host-7:4121", nx=True)
    locks.append((0, "lock:schema-migration"))
    return counters, locks


def write_unknown(port, rnd):
    unknown = []
    r0 = conn(port, 0)
    p = r0.pipeline(transaction=False)
    for _ in range(SIZE["unknown"]):
        key = f"k:{rnd.getrandbits(64):016x}"
        p.set(key, os.urandom(rnd.randint(16, 200)).hex())
        unknown.append((0, key))
    for n in range(30):
        key = f"tenant/{n}/blob"
        p.hset(key, mapping={"v": os.urandom(40).hex(), "rev": n})
        unknown.append((0, key))
    flush(p)
    r3 = conn(port, OTHER)
    p = r3.pipeline(transaction=False)
    for n in range(80):
        key = f"legacy:{n}"
        p.sadd(key, *[f"m{rnd.getrandbits(32)}" for _ in range(10)])
        unknown.append((3, key))
    for n in range(20):
        key = f"x{rnd.getrandbits(48):012x}"
        p.zadd(key, {f"item{k}": rnd.random() for k in range(8)})
        unknown.append((3, key))
    for n in range(40):
        p.set(f"tmp:upload:{n}", os.urandom(64).hex(), ex=3600)
    flush(p)
    return unknown


def write_celery(port, rnd):
    url = f"redis://127.0.0.1:{port}/{RESULTS}"
    forever = Celery("shop", broker="memory://", backend=url)
    forever.conf.result_expires = None
    default = Celery("shop", broker="memory://", backend=url)  # result_expires: Celery's default, 1 day
    no_ttl, with_ttl, groups = [], [], []
    for n in range(SIZE["celery_forever"]):
        tid = str(uuid.UUID(int=rnd.getrandbits(128)))
        if n % 11 == 0:
            forever.backend.mark_as_failure(tid, TimeoutError("upstream did not answer within 30s"))
        else:
            forever.backend.mark_as_done(tid, {"rows": rnd.randint(1, 5000), "url": f"s3://exports/{tid}.csv"})
        no_ttl.append(tid)
    for _ in range(SIZE["celery_default"]):
        tid = str(uuid.UUID(int=rnd.getrandbits(128)))
        default.backend.store_result(tid, {"sent": True}, "SUCCESS")
        with_ttl.append(tid)
    for g in range(SIZE["celery_groups"]):
        gid = str(uuid.UUID(int=rnd.getrandbits(128)))
        members = [AsyncResult(t, app=forever) for t in no_ttl[g * 3:g * 3 + 3]]
        forever.backend.save_group(gid, GroupResult(gid, members, app=forever))
        groups.append(gid)
    forever.close()
    default.close()
    return {"db": RESULTS, "url": url, "no_ttl": no_ttl, "with_ttl": with_ttl, "groups": groups}


def start_rq_worker(port):
    """A worker process that takes the job on `slow` and keeps it `started` until released."""
    code = ("import sys, redis; from rq import SimpleWorker, Queue; "
            f"c = redis.Redis(port={port}, db={RQ_DB}); "
            "SimpleWorker([Queue('slow', connection=c)], connection=c).work(burst=True, logging_level='CRITICAL')")
    return subprocess.Popen([sys.executable, "-c", code], cwd=HERE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def write_rq(port, rnd):
    c = redis.Redis(host="127.0.0.1", port=port, db=RQ_DB)
    default = Queue("default", connection=c)
    high = Queue("high", connection=c)
    for n in range(SIZE["rq_forever"]):
        default.enqueue(tasks.resize, n, result_ttl=-1)
    for n in range(SIZE["rq_default"]):
        default.enqueue(tasks.resize, 10000 + n)
    for n in range(SIZE["rq_charges"]):
        high.enqueue(tasks.charge, n, result_ttl=-1)
    SimpleWorker([high, default], connection=c).work(burst=True, logging_level="CRITICAL")
    finished = default.finished_job_registry.get_job_ids() + high.finished_job_registry.get_job_ids()
    failed = high.failed_job_registry.get_job_ids()

    queued = [default.enqueue(tasks.resize, 20000 + n).id for n in range(SIZE["rq_queued"] // 2)]
    queued += [high.enqueue(tasks.charge, 3 * n + 1).id for n in range(SIZE["rq_queued"] // 2)]
    scheduled = [default.enqueue_in(__import__("datetime").timedelta(hours=6), tasks.resize, 30000 + n).id
                 for n in range(SIZE["rq_scheduled"])]
    parent = default.enqueue(tasks.resize, 40000)
    queued.append(parent.id)
    deferred = [default.enqueue(tasks.resize, 40001, depends_on=parent).id]

    slow = Queue("slow", connection=c)
    started = slow.enqueue(tasks.wait_for_release, f"redis://127.0.0.1:{port}/{RQ_DB}", RELEASE_KEY,
                           job_timeout=300).id
    worker = start_rq_worker(port)
    deadline = time.time() + 30
    while Job.fetch(started, connection=c).get_status() != JobStatus.STARTED:
        if time.time() > deadline or worker.poll() is not None:
            raise RuntimeError(f"the RQ job on `slow` never started: {worker.stderr.read() if worker.poll() is not None else ''}")
        time.sleep(0.05)
    return {"db": RQ_DB, "finished": finished, "failed": failed, "queued": queued, "scheduled": scheduled,
            "deferred": deferred, "started": started, "release_key": RELEASE_KEY}, worker


def write_all(port, seed=7):
    """Writes everything; returns (manifest, the running RQ worker process)."""
    rnd = random.Random(seed)
    write_sessions_and_caches(port, rnd)
    streams = write_streams_and_lists(port, rnd)
    counters, locks = write_counters_and_locks(port, rnd)
    unknown = write_unknown(port, rnd)
    celery = write_celery(port, rnd)
    rq, worker = write_rq(port, rnd)
    return {"streams": streams, "counters": counters, "locks": locks, "unknown": unknown,
            "celery": celery, "rq": rq}, worker
