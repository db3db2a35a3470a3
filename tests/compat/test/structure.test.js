'use strict';
// Queue structure survives the cleaner. Real BullMQ 5 and Bull 4 queues use every feature
// that writes keys: metrics for completed and failed jobs (with data points), job schedulers
// and legacy repeatables (ids with colons that end like job sub-keys), deduplication and
// debounce (`de:`, `dn:`), flows whose waiting parents hold `:dependencies`, `:processed`,
// `:failed` and `:unsuccessful`, rate limiters (Bull's grouped `limiter:*` keys too), markers,
// pause, priorities, locks, the stalled checker. Then many sweeps run with a policy whose
// ages are all tiny (finished jobs 1 ms, orphans 1 ms) and which ends in a catch-all `ttl`
// rule. Every key that is not a finished job or a finished job's sub-key must be
// byte-identical afterwards (DUMP; hash tables by content) with the same expire time
// (PEXPIRETIME), events streams may only have gained the library's own `cleaned` entries,
// and the libraries' own API must see the same queues.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Queue, Worker, FlowProducer, MetricsTime } = require('bullmq');
const Bull = require('bull');
const h = require('../lib/harness');

const { HOUR } = h;
const LONG_MS = 600000; // lock, limiter, stalled-check and dedup TTLs outlive the test
const SWEEPS = 8;
const POLICY = {
  rules: [
    {
      name: 'bullmq',
      match: 'smq:*',
      queue: {
        flavor: 'bullmq',
        completed: { max_age: '1ms' }, failed: { max_age: '1ms' }, orphan_age: '1ms',
      },
    },
    {
      name: 'bull',
      match: 'sb:*',
      queue: {
        flavor: 'bull',
        completed: { max_age: '1ms' }, failed: { max_age: '1ms' }, orphan_age: '1ms',
      },
    },
    { name: 'everything-else', match: '*', ttl: '1h' },
  ],
};
/** A key no queue rule governs: the catch-all rule must give it a TTL (the sweeps ran). */
const CONTROL = 'control:no-ttl';
/** Sub-keys a finished job may own (they go with it). */
const JOB_SUB_KEYS = ['logs', 'dependencies', 'processed', 'failed', 'unsuccessful', 'lock'];

const MQ_QUEUES = ['main', 'live', 'parents', 'nowork', 'paused'];
const BULL_QUEUES = ['b:main', 'b:live', 'b:paused', 'b:limited'];
const BASES = [...MQ_QUEUES.map((q) => `smq:${q}:`), ...BULL_QUEUES.map((q) => `sb:${q}:`)];

let server;
/** Every library object opened, closed at the end even when the test fails early. */
const opened = [];
const track = (o) => { opened.push(o); return o; };
const mq = {};
const bull = {};
const parents = {};
const held = {};

before(async () => { server = await h.startServer({ policy: POLICY }); });
after(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  await server?.stop();
});

async function processor(job) {
  if (job.data.log) await job.log(`line for ${job.id}`);
  if (job.data.fail) throw new Error('boom');
  return { ok: job.id };
}

/**
 * Makes the next finished job add data points: collectMetrics appends one point per minute
 * since `prevTS` (the client's clock), so moving it back 3 minutes gives the `:data` lists.
 */
async function ageMetrics(base) {
  const c = server.client;
  for (const kind of ['completed', 'failed']) {
    const key = `${base}metrics:${kind}`;
    assert.equal(await c.exists(key), 1, `${key} written by the library`);
    await c.hset(key, 'prevTS', Date.now() - 3 * 60000);
  }
}

/** `n` jobs for a worker: a quarter fail, a fifth write a log line. */
function workJobs(n) {
  const jobs = [];
  for (let i = 0; i < n; i++) jobs.push({ name: 'work', data: { i, fail: i % 4 === 0, log: i % 5 === 0 } });
  return jobs;
}

const allFinished = (states) => states.every((s) => s === 'completed' || s === 'failed');

async function finishedCount(base) {
  return (await server.client.zcard(`${base}completed`)) + (await server.client.zcard(`${base}failed`));
}

async function buildBullMq() {
  const connection = server.connection;
  const prefix = 'smq';
  for (const name of MQ_QUEUES) mq[name] = track(new Queue(name, { connection, prefix }));
  const { main, live } = mq;

  // Job schedulers and legacy repeatables, with ids that end like job sub-keys.
  await main.upsertJobScheduler('every-hour', { every: HOUR }, { name: 'tick', data: {} });
  await main.upsertJobScheduler('nightly:failed', { pattern: '0 3 * * *' }, { name: 'nightly' });
  await main.upsertJobScheduler('x:processed', { every: 3 * HOUR }, { name: 'x' });
  await main.add('legacy', {}, { repeat: { every: 2 * HOUR } });
  // (A legacy key cannot hold ':': BullMQ writes its hash, then refuses the iteration's id.)
  await main.add('legacy-key', {}, { repeat: { pattern: '0 4 * * *', key: 'legacy-key' } });

  // Metrics for completed and failed jobs, a rate limiter, the stalled checker.
  const worker = track(new Worker('main', processor, {
    connection, prefix, concurrency: 10,
    metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
    limiter: { max: 100000, duration: LONG_MS },
    stalledInterval: LONG_MS,
  }));
  const round = async (n) => {
    const added = await main.addBulk(workJobs(n));
    await h.waitFor(async () => allFinished(await Promise.all(added.map((j) => main.getJobState(j.id)))),
      'main jobs finished');
  };
  await round(12);
  await ageMetrics('smq:main:');
  await round(12);

  // Flows. Parents wait in a queue without a worker; their children run in `main`
  // (completed -> :processed; failed with ignoreDependencyOnFailure / continueParentOnFailure
  // -> :failed; failed with failParentOnFailure -> :unsuccessful, parent moved to wait) or
  // stay pending in `nowork` (-> :dependencies). One flow completes entirely in `main`.
  const flow = track(new FlowProducer({ connection, prefix }));
  const kid = (name, queueName, data, opts = {}) => ({ name, queueName, data, opts });
  const trees = await flow.addBulk([
    {
      name: 'p-ignore', queueName: 'parents', children: [
        kid('ok', 'main', {}),
        kid('bad', 'main', { fail: true }, { ignoreDependencyOnFailure: true }),
        kid('pending', 'nowork', {}),
      ],
    },
    {
      name: 'p-fail', queueName: 'parents', children: [
        kid('ok', 'main', { log: true }),
        kid('bad', 'main', { fail: true }, { failParentOnFailure: true }),
        kid('pending', 'nowork', {}),
      ],
    },
    {
      name: 'p-continue', queueName: 'parents', children: [
        kid('bad', 'main', { fail: true }, { continueParentOnFailure: true }),
        kid('pending', 'nowork', {}),
      ],
    },
    {
      name: 'done-flow', queueName: 'main', data: {}, children: [
        kid('ok', 'main', { log: true }),
        kid('ok2', 'main', {}),
      ],
    },
  ]);
  for (const t of trees.slice(0, 3)) parents[t.job.name] = t.job.id;
  const doneFlow = trees[3].job;
  await h.waitFor(async () => (await doneFlow.getState()) === 'completed'
    && (await mq.parents.getJobCounts()).waiting === 2, 'flows settled');
  await flow.close();
  await worker.close();

  // `live` never has a worker: an active job held with its lock, a keepLastIfActive
  // deduplication with a next job stored (`dn:`), waiting, prioritized and delayed jobs,
  // dedup keys without and with a TTL, a debounce key, global concurrency and rate limit.
  await live.add('klia', { v: 1 }, { deduplication: { id: 'klia:failed', keepLastIfActive: true } });
  const taker = track(new Worker('live', null, { connection, prefix, autorun: false, lockDuration: LONG_MS }));
  held.mq = await taker.getNextJob('held-token', { block: false });
  assert.equal(held.mq?.name, 'klia', 'the held job is active');
  await taker.close(true);
  await live.add('klia', { v: 2 }, { deduplication: { id: 'klia:failed', keepLastIfActive: true } });
  for (let i = 0; i < 3; i++) await live.add('waiting', { i });
  for (let i = 0; i < 2; i++) await live.add('prio', { i }, { priority: 2 + i });
  await live.add('dedup', {}, { delay: HOUR, deduplication: { id: 'simple' } });
  await live.add('dedup-ttl', {}, { delay: HOUR, deduplication: { id: 'with:ttl', ttl: LONG_MS } });
  await live.add('debounce', {}, { delay: HOUR, debounce: { id: 'deb', ttl: LONG_MS } });
  await live.setGlobalConcurrency(4);
  await live.setGlobalRateLimit(10, 60000);

  for (let i = 0; i < 3; i++) await mq.paused.add('p', { i });
  await mq.paused.pause();
}

function bullQueue(name, opts = {}) {
  return track(new Bull(name, { prefix: 'sb', redis: { host: '127.0.0.1', port: server.port }, ...opts }));
}

async function buildBull() {
  const settings = { stalledInterval: LONG_MS, lockDuration: LONG_MS };
  bull.main = bullQueue('b:main', {
    metrics: { maxDataPoints: 10080 }, limiter: { max: 100000, duration: LONG_MS }, settings,
  });
  await bull.main.add('rep', {}, { repeat: { every: HOUR } });
  await bull.main.add('cron', {}, { repeat: { cron: '0 3 * * *' } });
  await bull.main.add('deb', {}, { delay: HOUR, debounce: { id: 'deb:1', ttl: LONG_MS } });
  bull.main.process('*', 10, processor);
  const round = async (n) => {
    const added = await bull.main.addBulk(workJobs(n));
    await h.waitFor(async () => allFinished(await Promise.all(added.map((j) => j.getState()))),
      'b:main jobs finished');
  };
  await round(12);
  await ageMetrics('sb:b:main:');
  await round(12);
  await bull.main.close();
  bull.main = bullQueue('b:main', { metrics: { maxDataPoints: 10080 } });

  // A grouped limiter without bounce-back: limited jobs wait in delayed, listed in
  // `limiter:index` and `limiter:<group>:limited`.
  bull.limited = bullQueue('b:limited', {
    limiter: { max: 1, duration: LONG_MS, bounceBack: false, groupKey: 'customer' }, settings,
  });
  for (const customer of ['acme', 'acme', 'acme', 'globex', 'globex']) {
    await bull.limited.add('call', { customer });
  }
  bull.limited.process('*', processor);
  await h.waitFor(async () => {
    const n = await bull.limited.getJobCounts();
    return n.completed === 2 && n.delayed === 3 && n.waiting === 0 && n.active === 0;
  }, 'b:limited jobs limited');
  await bull.limited.close();
  bull.limited = bullQueue('b:limited');

  bull.live = bullQueue('b:live', { settings });
  await bull.live.add('held', {});
  held.bull = await bull.live.getNextJob();
  assert.ok(held.bull, 'an active Bull job');
  for (let i = 0; i < 3; i++) await bull.live.add('waiting', { i });
  await bull.live.add('prio', {}, { priority: 3 });
  await bull.live.add('later', {}, { delay: HOUR, debounce: { id: 'later', ttl: LONG_MS } });

  bull.paused = bullQueue('b:paused');
  for (let i = 0; i < 3; i++) await bull.paused.add('p', { i });
  await bull.paused.pause();
}

async function allKeys() {
  const out = [];
  let cursor = '0';
  do {
    const [next, keys] = await server.client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out.sort();
}

/** Every key of the finished jobs (the queue rule may remove them). */
async function finishedJobKeys() {
  const out = new Set();
  for (const base of BASES) {
    for (const set of ['completed', 'failed']) {
      for (const id of await server.client.zrange(`${base}${set}`, 0, -1)) {
        out.add(`${base}${id}`);
        for (const sub of JOB_SUB_KEYS) out.add(`${base}${id}:${sub}`);
      }
    }
  }
  return out;
}

/** The finished sets and the events streams are checked on their own. */
const checkedApart = (key) => BASES.some((b) => ['completed', 'failed', 'events'].some((s) => key === b + s));

/**
 * Every other key: type, encoding, absolute expire time and its bytes (DUMP). A hash or set
 * in a hash table is compared by its sorted content instead: DUMP writes its entries in table
 * order, which an incremental rehash step (any read of the key) changes.
 */
async function snapshot(finished) {
  const c = server.client;
  const out = {};
  for (const key of await allKeys()) {
    if (finished.has(key) || checkedApart(key) || key === CONTROL) continue;
    const [type, encoding, at] = await Promise.all([
      c.type(key), c.object('ENCODING', key), c.call('PEXPIRETIME', key),
    ]);
    let value;
    if (encoding === 'hashtable' && type === 'hash') {
      value = JSON.stringify(Object.entries(await c.hgetall(key)).sort());
    } else if (encoding === 'hashtable' && type === 'set') {
      value = JSON.stringify((await c.smembers(key)).sort());
    } else {
      value = (await c.dumpBuffer(key)).toString('base64');
    }
    out[key] = `${type} ${encoding} ${at} ${value}`;
  }
  return out;
}

async function events() {
  const out = {};
  for (const q of MQ_QUEUES) out[q] = await server.client.xrange(`smq:${q}:events`, '-', '+');
  return out;
}

/** What the libraries' API says about the queues (finished counts left out: they are cleaned). */
async function libraryView() {
  const view = { bullmq: {}, bull: {} };
  for (const [name, q] of Object.entries(mq)) {
    const { completed, failed, ...counts } = await q.getJobCounts();
    view.bullmq[name] = { counts, paused: await q.isPaused() };
  }
  const { main, live } = mq;
  Object.assign(view.bullmq, {
    metrics: { completed: await main.getMetrics('completed'), failed: await main.getMetrics('failed') },
    schedulers: await main.getJobSchedulers(0, -1, true),
    repeatables: await main.getRepeatableJobs(0, -1, true),
    rateLimited: (await main.getRateLimitTtl()) > 0,
    dedup: Object.fromEntries(await Promise.all(['simple', 'with:ttl', 'deb', 'klia:failed']
      .map(async (id) => [id, await live.getDeduplicationJobId(id)]))),
    globalConcurrency: await live.getGlobalConcurrency(),
    globalRateLimit: await live.getGlobalRateLimit(),
    held: await live.getJobState(held.mq.id),
    parents: {},
  });
  for (const [name, id] of Object.entries(parents)) {
    const job = await mq.parents.getJob(id);
    view.bullmq.parents[name] = {
      state: await job.getState(),
      dependencies: await job.getDependencies(),
      counts: await job.getDependenciesCount(),
      childrenValues: await job.getChildrenValues(),
      ignored: await job.getIgnoredChildrenFailures(),
      failedChildren: await job.getFailedChildrenValues(),
    };
  }
  for (const [name, q] of Object.entries(bull)) {
    const { completed, failed, ...counts } = await q.getJobCounts();
    view.bull[name] = { counts, paused: await q.isPaused(), delayed: (await q.getDelayed()).map((j) => j.id).sort() };
  }
  Object.assign(view.bull, {
    metrics: { completed: await bull.main.getMetrics('completed'), failed: await bull.main.getMetrics('failed') },
    repeatables: await bull.main.getRepeatableJobs(0, -1, true),
    held: await (await bull.live.getJob(held.bull.id)).getState(),
  });
  return view;
}

/** Key shapes the build must have made (else the test would prove nothing about them). */
function expectedShapes(keys) {
  const has = (re) => keys.some((k) => re.test(k));
  const ids = (q) => Object.values(parents).map((id) => `smq:${q}:${id}`);
  const [pIgnore, pFail, pContinue] = ids('parents');
  const shapes = {
    'smq:main:metrics:completed': /^smq:main:metrics:completed$/,
    'smq:main:metrics:completed:data': /^smq:main:metrics:completed:data$/,
    'smq:main:metrics:failed': /^smq:main:metrics:failed$/,
    'smq:main:metrics:failed:data': /^smq:main:metrics:failed:data$/,
    'smq:main:repeat (zset)': /^smq:main:repeat$/,
    'smq:main:repeat:every-hour': /^smq:main:repeat:every-hour$/,
    'smq:main:repeat:nightly:failed': /^smq:main:repeat:nightly:failed$/,
    'smq:main:repeat:x:processed': /^smq:main:repeat:x:processed$/,
    'smq:main:repeat:legacy-key': /^smq:main:repeat:legacy-key$/,
    'smq:main:repeat:<md5> (legacy)': /^smq:main:repeat:[0-9a-f]{32}$/,
    'smq:main:repeat:<id>:<ms> (next iteration)': /^smq:main:repeat:every-hour:\d+$/,
    'smq:main:limiter': /^smq:main:limiter$/,
    'smq:main:stalled-check': /^smq:main:stalled-check$/,
    'smq:main:delayed': /^smq:main:delayed$/,
    'smq:main:meta': /^smq:main:meta$/,
    'smq:main:id': /^smq:main:id$/,
    'smq:live:active': /^smq:live:active$/,
    'smq:live:<id>:lock': new RegExp(`^smq:live:${held.mq.id}:lock$`),
    'smq:live:wait': /^smq:live:wait$/,
    'smq:live:prioritized': /^smq:live:prioritized$/,
    'smq:live:pc': /^smq:live:pc$/,
    'smq:live:marker': /^smq:live:marker$/,
    'smq:live:de:simple': /^smq:live:de:simple$/,
    'smq:live:de:with:ttl': /^smq:live:de:with:ttl$/,
    'smq:live:de:deb': /^smq:live:de:deb$/,
    'smq:live:dn:klia:failed': /^smq:live:dn:klia:failed$/,
    'smq:parents:waiting-children': /^smq:parents:waiting-children$/,
    'smq:parents:wait': /^smq:parents:wait$/,
    'smq:parents:<p-ignore>:processed': new RegExp(`^${pIgnore}:processed$`),
    'smq:parents:<p-ignore>:failed': new RegExp(`^${pIgnore}:failed$`),
    'smq:parents:<p-ignore>:dependencies': new RegExp(`^${pIgnore}:dependencies$`),
    'smq:parents:<p-fail>:unsuccessful': new RegExp(`^${pFail}:unsuccessful$`),
    'smq:parents:<p-continue>:failed': new RegExp(`^${pContinue}:failed$`),
    'smq:nowork:wait': /^smq:nowork:wait$/,
    'smq:paused:meta': /^smq:paused:meta$/,
    'sb:b:main:metrics:completed': /^sb:b:main:metrics:completed$/,
    'sb:b:main:metrics:completed:data': /^sb:b:main:metrics:completed:data$/,
    'sb:b:main:metrics:failed': /^sb:b:main:metrics:failed$/,
    'sb:b:main:metrics:failed:data': /^sb:b:main:metrics:failed:data$/,
    'sb:b:main:repeat': /^sb:b:main:repeat$/,
    'sb:b:main:repeat:<md5>:<ms>': /^sb:b:main:repeat:[0-9a-f]+:\d+$/,
    'sb:b:main:de:deb:1': /^sb:b:main:de:deb:1$/,
    'sb:b:main:limiter': /^sb:b:main:limiter$/,
    'sb:b:main:stalled-check': /^sb:b:main:stalled-check$/,
    'sb:b:limited:limiter:index': /^sb:b:limited:limiter:index$/,
    'sb:b:limited:limiter:acme': /^sb:b:limited:limiter:acme$/,
    'sb:b:limited:limiter:acme:limited': /^sb:b:limited:limiter:acme:limited$/,
    'sb:b:live:active': /^sb:b:live:active$/,
    'sb:b:live:<id>:lock': new RegExp(`^sb:b:live:${held.bull.id}:lock$`),
    'sb:b:live:priority': /^sb:b:live:priority$/,
    'sb:b:live:de:later': /^sb:b:live:de:later$/,
    'sb:b:paused:meta-paused': /^sb:b:paused:meta-paused$/,
    'sb:b:paused:paused': /^sb:b:paused:paused$/,
  };
  return Object.entries(shapes).filter(([, re]) => !has(re)).map(([name]) => name);
}

test('many sweeps with tiny ages leave every BullMQ and Bull structure key untouched', async (tt) => {
  await buildBullMq();
  await buildBull();
  const c = server.client;
  await c.set(CONTROL, '1');

  const finished = await finishedJobKeys();
  const before_ = await snapshot(finished);
  const eventsBefore = await events();
  const viewBefore = await libraryView();
  assert.deepEqual(expectedShapes(Object.keys(before_)), [], 'key shapes the build did not make');
  // The view compares something: schedulers, dedup owners, held jobs, parents, metrics.
  assert.equal(viewBefore.bullmq.schedulers.length, 5);
  assert.ok(Object.values(viewBefore.bullmq.dedup).every(Boolean), 'dedup ids have owners');
  assert.deepEqual([viewBefore.bullmq.held, viewBefore.bull.held], ['active', 'active']);
  assert.deepEqual(Object.values(viewBefore.bullmq.parents).map((p) => p.state),
    ['waiting-children', 'waiting', 'waiting']);
  for (const kind of ['completed', 'failed']) {
    for (const [lib, m] of [['bullmq', viewBefore.bullmq.metrics[kind]], ['bull', viewBefore.bull.metrics[kind]]]) {
      assert.ok(Number(m.meta.count) > 0 && m.data.length > 0, `${lib} ${kind} metrics have data points`);
    }
  }
  const finishedJobs = (await Promise.all(BASES.map(finishedCount))).reduce((a, b) => a + b, 0);

  let jobsRemoved = 0;
  for (let i = 0; i < SWEEPS; i++) {
    const report = h.flatToObject(await c.call('RETENTION.SWEEP'));
    jobsRemoved += Number(report.jobs_removed);
    await h.sleep(5); // more than orphan_age between passes
  }
  tt.diagnostic(`${Object.keys(before_).length} structure keys, ${finishedJobs} finished jobs, ${jobsRemoved} removed`);

  // The rules did act: every finished job went, the catch-all rule gave the control key a TTL.
  assert.equal(jobsRemoved, finishedJobs);
  for (const key of finished) assert.equal(await c.exists(key), 0, `${key} (a finished job's) removed`);
  assert.ok(Number(await c.pttl(CONTROL)) > 0, 'the catch-all rule ran');

  const after_ = await snapshot(finished);
  const missing = Object.keys(before_).filter((k) => !(k in after_));
  const added = Object.keys(after_).filter((k) => !(k in before_));
  const changed = Object.keys(before_).filter((k) => k in after_ && after_[k] !== before_[k]);
  assert.deepEqual({ missing, added, changed }, { missing: [], added: [], changed: [] });

  // Events: the old entries stay; only the library's own `cleaned` entries are new.
  const eventsAfter = await events();
  for (const q of MQ_QUEUES) {
    const old = eventsBefore[q];
    assert.deepEqual(eventsAfter[q].slice(0, old.length), old, `${q} events kept`);
    for (const [, fields] of eventsAfter[q].slice(old.length)) {
      assert.equal(h.flatToObject(fields).event, 'cleaned', `${q}: only cleaned events added`);
    }
  }
  assert.ok(eventsAfter.main.length > eventsBefore.main.length, 'main got its cleaned events');

  // The libraries see the same queues, and the module counts what they count.
  assert.deepEqual(await libraryView(), viewBefore);
  for (const q of MQ_QUEUES) assert.deepEqual(await h.moduleCounts(c, 'smq', q), await mq[q].getJobCounts(), q);
  for (const q of BULL_QUEUES) {
    const name = q.slice('b:'.length);
    assert.deepEqual(await h.moduleCounts(c, 'sb', q), await bull[name].getJobCounts(), q);
  }
});
