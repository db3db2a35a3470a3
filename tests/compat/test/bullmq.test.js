'use strict';
// BullMQ 5 compatibility: the module cleans finished jobs exactly like BullMQ's own
// queue.clean(), never breaks a queue, and keeps a replica identical.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Queue, Worker, FlowProducer } = require('bullmq');
const h = require('../lib/harness');

const { HOUR, DAY } = h;
// One retention, three ways: BullMQ's clean (twinA), RETENTION.JOBS (twinB), a rule (twinC).
const KEEP = { completed: { age: 48 * HOUR, count: 50 }, failed: { age: 7 * DAY, count: 100 } };
const POLICY = {
  rules: [
    {
      name: 'swept',
      match: 'swept:*',
      queue: {
        flavor: 'bullmq',
        completed: { max_age: '48h', max_len: 50 },
        failed: { max_age: '7d', max_len: 100 },
        events: { max_len: 1000 },
      },
    },
    { name: 'orphans', match: 'orph:*', queue: { flavor: 'bullmq', orphan_age: '1s' } },
  ],
};
const TWINS = [
  { prefix: 'bull', name: 'twinA' },
  { prefix: 'bull', name: 'twinB' },
  { prefix: 'swept', name: 'twinC' },
];
const STATES = ['completed', 'failed', 'delayed', 'prioritized', 'waiting-children', 'wait', 'active', 'paused'];

let master;
let replica;

before(async () => {
  master = await h.startServer({ policy: POLICY });
  replica = await h.startServer({ policy: POLICY });
  await replica.client.call('REPLICAOF', '127.0.0.1', String(master.port));
  await h.waitFor(async () => (await replica.client.info('replication')).includes('master_link_status:up'),
    'replica sync');
});

after(async () => {
  await replica?.stop();
  await master?.stop();
});

/** Scheduler iteration ids carry the time they were made: the same job in both twins. */
const norm = (id) => id.replace(/^repeat:sched:\d+/, 'repeat:sched:*');
const base = (t) => `${t.prefix}:${t.name}:`;
/** Keys BullMQ gives a TTL (they may expire between the twins' snapshots). */
const ttlKey = (suffix) => suffix === 'stalled-check' || suffix.endsWith(':lock') || suffix === 'limiter';

async function processor(job) {
  if (job.data.log) await job.log(`line for ${job.id}`);
  if (job.data.fail) throw new Error('boom');
  return { ok: job.id };
}

/** The same history for one twin: finished jobs of all kinds, then live ones. */
async function buildHistory(t) {
  const connection = master.connection;
  const queue = new Queue(t.name, { connection, prefix: t.prefix });
  const flow = new FlowProducer({ connection, prefix: t.prefix });
  const bulk = [];
  for (let i = 0; i < 1200; i++) {
    bulk.push({ name: 'work', data: { i, fail: i % 6 === 0, log: i % 10 === 0 } });
  }
  await queue.addBulk(bulk);
  await queue.add('dedup', { i: -1 }, { deduplication: { id: 'dd1', ttl: 600000 } });
  await queue.add('colons', { i: -2, log: true }, { jobId: 'a:b:c' });
  await flow.add({
    name: 'parent', queueName: t.name, data: {}, opts: { jobId: 'flow-parent' },
    children: [
      { name: 'child', queueName: t.name, data: { log: true }, opts: { jobId: 'flow-c1' } },
      { name: 'child', queueName: t.name, data: {}, opts: { jobId: 'flow-c2' } },
    ],
  });
  await queue.upsertJobScheduler('sched', { every: HOUR }, { name: 'rep', data: {} });
  const worker = new Worker(t.name, processor, { connection, prefix: t.prefix, concurrency: 50 });
  await h.waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.waiting + c.active + c.prioritized + c['waiting-children'] === 0 && c.completed + c.failed >= 1205;
  }, `history of ${t.name}`, 60000);
  await worker.close();

  // Live jobs: one active (held by a worker that never finishes it), waiting, delayed,
  // prioritized, and a parent waiting for a child in a queue that has no worker.
  await queue.add('active', { i: -3 });
  const taker = new Worker(t.name, null, { connection, prefix: t.prefix, autorun: false });
  assert.ok(await taker.getNextJob('held-token', { block: false }), 'an active job');
  await taker.close(true);
  for (let i = 0; i < 30; i++) await queue.add('waiting', { i });
  for (let i = 0; i < 10; i++) await queue.add('delayed', { i }, { delay: 1500 });
  for (let i = 0; i < 5; i++) await queue.add('prio', { i }, { priority: 1 + i });
  await flow.add({
    name: 'waiting-parent', queueName: t.name, opts: { jobId: 'wait-parent' },
    children: [{ name: 'kid', queueName: `${t.name}-kids`, opts: { jobId: 'wait-kid' } }],
  });
  await h.rewriteFinishTimes(master.client, base(t), finishedAgeOf);
  await flow.close();
  return queue;
}

/** Jobs that exercise the removal details finished 3 days ago; the rest at spread ages. */
const OLD_ON_PURPOSE = ['flow-parent', 'flow-c1', 'a:b:c', '1201' /* the dedup job */, 'repeat:sched:*'];
const finishedAgeOf = (id) => (OLD_ON_PURPOSE.includes(norm(id)) ? 3 * DAY + 1234 : h.ageOf(norm(id)));

async function snapshot(t) {
  const client = master.client;
  const keys = (await h.suffixes(client, base(t))).filter((s) => !ttlKey(s)).map(norm).sort();
  const states = {};
  for (const s of STATES) {
    const k = `${base(t)}${s}`;
    const type = await client.type(k);
    const members = type === 'list' ? await client.lrange(k, 0, -1)
      : type === 'zset' ? await client.zrange(k, 0, -1) : [];
    states[s] = members.map(norm).sort();
  }
  return { keys, states };
}

/** Sum of the `count` of every `cleaned` event on the queue's stream. */
async function cleanedTotal(t) {
  const entries = await master.client.xrange(`${base(t)}events`, '-', '+');
  let total = 0;
  for (const [, fields] of entries) {
    const f = h.flatToObject(fields);
    if (f.event === 'cleaned') total += Number(f.count);
  }
  return total;
}

/** BullMQ's own clean for age, then for count (clean(0, n) drops the n oldest). */
async function libraryClean(queue, t) {
  for (const [set, keep] of Object.entries(KEEP)) {
    await queue.clean(keep.age, 0, set);
    const left = await master.client.zcard(`${base(t)}${set}`);
    if (left > keep.count) await queue.clean(0, left - keep.count, set);
  }
}

let queues;
let before_;

test('twin queues cleaned by BullMQ, by RETENTION.JOBS and by a rule end up identical', async (tt) => {
  queues = [];
  for (const t of TWINS) queues.push(await buildHistory(t));
  before_ = await snapshot(TWINS[0]);
  for (const t of TWINS.slice(1)) assert.deepEqual(await snapshot(t), before_, `${t.name} history differs`);

  await libraryClean(queues[0], TWINS[0]);
  const c = master.client;
  const jobsRemoved = async (...args) => Number(h.flatToObject(await c.call('RETENTION.JOBS', ...args)).jobs_removed);
  const removedB = await jobsRemoved('CLEAN', 'bull', 'twinB', 'completed', 'MAXAGE', '48h', 'MAXLEN', '50')
    + await jobsRemoved('CLEAN', 'bull', 'twinB', 'failed', 'MAXAGE', '7d', 'MAXLEN', '100');
  const report = h.flatToObject(await c.call('RETENTION.SWEEP'));

  const [a, b, sw] = [await snapshot(TWINS[0]), await snapshot(TWINS[1]), await snapshot(TWINS[2])];
  // What BullMQ's clean removes besides the job hash: logs, a parent's child results,
  // the de-duplication key the job still owns, finished scheduler iterations.
  for (const k of ['de:dd1', 'flow-parent', 'flow-parent:processed', 'flow-c1:logs', 'a:b:c:logs']) {
    assert.ok(before_.keys.includes(k), `history has ${k}`);
    assert.ok(!a.keys.includes(k), `queue.clean() removed ${k}`);
  }
  assert.ok(before_.states.completed.includes('repeat:sched:*'), 'a finished scheduler iteration');
  assert.ok(!a.states.completed.includes('repeat:sched:*'), 'queue.clean() removed it');
  assert.ok(a.keys.includes('repeat:sched') && a.states.delayed.includes('repeat:sched:*'), 'the scheduler stays');
  assert.deepEqual(b, a, 'RETENTION.JOBS CLEAN differs from queue.clean()');
  assert.deepEqual(sw, a, 'the queue rule differs from queue.clean()');
  // The retention really bit, by count and by age, and kept every live job.
  assert.equal(a.states.completed.length, 50);
  assert.equal(a.states.failed.length, 100);
  assert.ok(a.keys.length < before_.keys.length / 2);
  for (const s of ['wait', 'active', 'delayed', 'prioritized', 'waiting-children']) {
    assert.deepEqual(a.states[s], before_.states[s], `${s} changed`);
  }
  const removed = before_.states.completed.length + before_.states.failed.length - 150;
  tt.diagnostic(`before: ${before_.keys.length} keys, ${before_.states.completed.length} completed, ${before_.states.failed.length} failed; after: ${a.keys.length} keys; ${removed} jobs removed`);
  assert.equal(removedB, removed);
  assert.ok(Number(report.jobs_removed) >= removed);
  // The library's `cleaned` events account for the same number of jobs.
  for (const t of TWINS) assert.equal(await cleanedTotal(t), removed, `cleaned events of ${t.name}`);
  // Keys outside the twins' prefixes were not swept (the kids queue keeps its waiting child).
  assert.equal(await c.llen('swept:twinC-kids:wait'), 1);
});

test('a replica is identical after the cleaning', async () => {
  const c = master.client;
  await c.set('test:barrier', '1');
  assert.equal(await c.call('WAIT', '1', '10000'), 1);
  assert.equal(await replica.client.call('DEBUG', 'DIGEST'), await c.call('DEBUG', 'DIGEST'));
});

test('after a sweep the queue still works: jobs run, ids continue, counts agree', async () => {
  const t = TWINS[2];
  const queue = queues[2];
  const c = master.client;
  const pending = [
    ...(await c.lrange(`${base(t)}wait`, 0, -1)),
    ...(await c.zrange(`${base(t)}prioritized`, 0, -1)),
    ...(await c.zrange(`${base(t)}delayed`, 0, -1)).filter((id) => !id.startsWith('repeat:')),
  ];
  assert.equal(pending.length, 45);
  const lastId = Number(await c.get(`${base(t)}id`));
  const worker = new Worker(t.name, processor, { connection: master.connection, prefix: t.prefix, concurrency: 20 });
  await h.waitFor(async () => {
    const n = await queue.getJobCounts();
    return n.waiting + n.prioritized === 0 && n.delayed === 1;
  }, 'waiting and delayed jobs processed', 30000);
  await worker.close();
  for (const id of pending) assert.equal(await queue.getJobState(id), 'completed', `job ${id}`);
  const next = await queue.add('after', {});
  assert.equal(next.id, String(lastId + 1), 'job ids continue the sequence');
  const counts = await queue.getJobCounts();
  assert.deepEqual(await h.moduleCounts(c, t.prefix, t.name), counts);
  assert.equal(counts.active, 1, 'the held job is still active');
  assert.equal(counts['waiting-children'], 1);
  for (const q of queues) await q.close();
});

test('orphans are removed, live jobs of the same age are not', async () => {
  const connection = master.connection;
  const c = master.client;
  const queue = new Queue('q', { connection, prefix: 'orph' });
  const done = [];
  for (let i = 0; i < 3; i++) done.push((await queue.add('done', { log: true })).id);
  const worker = new Worker('q', processor, { connection, prefix: 'orph' });
  await h.waitFor(async () => (await queue.getJobCounts()).completed === 3, 'jobs done');
  await worker.close();
  const waiting = (await queue.add('waiting', {})).id;
  const delayed = (await queue.add('delayed', {}, { delay: 500 })).id;
  const old = Date.now() - 30 * DAY;
  // Orphans: a finished job hash in no set, logs of a job that is gone, and a completed job
  // whose set entry vanished (what BullMQ 5.66.6's removeOnComplete bug left behind).
  const fields = await c.hgetall(`orph:q:${done[0]}`);
  await c.hset('orph:q:ghost', { ...fields, finishedOn: old });
  await c.rpush('orph:q:ghost2:logs', 'x');
  await c.zrem('orph:q:completed', done[1]);
  await c.hset(`orph:q:${done[1]}`, 'finishedOn', old);
  // Live jobs just as old: still completed, waiting, delayed.
  await c.zadd('orph:q:completed', old, done[2]);
  for (const id of [done[2], waiting, delayed]) await c.hset(`orph:q:${id}`, 'finishedOn', old);

  await c.call('RETENTION.SWEEP');
  for (const k of ['orph:q:ghost', 'orph:q:ghost2:logs', `orph:q:${done[1]}`]) {
    assert.equal(await c.exists(k), 1, `${k}: every orphan is watched for orphan_age first`);
  }
  await h.sleep(1100);
  await c.call('RETENTION.SWEEP');
  for (const k of ['orph:q:ghost', 'orph:q:ghost2:logs', `orph:q:${done[1]}`, `orph:q:${done[1]}:logs`]) {
    assert.equal(await c.exists(k), 0, `${k} removed`);
  }
  for (const id of [done[0], done[2], waiting, delayed]) assert.equal(await c.exists(`orph:q:${id}`), 1, `job ${id} kept`);
  assert.equal(await c.exists(`orph:q:${done[0]}:logs`), 1);
  const again = new Worker('q', processor, { connection, prefix: 'orph' });
  await h.waitFor(async () => (await queue.getJobCounts()).completed === 4, 'waiting and delayed jobs run', 15000);
  await again.close();
  assert.equal(await queue.getJobState(waiting), 'completed');
  assert.equal(await queue.getJobState(delayed), 'completed');
  await queue.close();
});
