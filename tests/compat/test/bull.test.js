'use strict';
// Bull 4 compatibility: the module cleans finished jobs exactly like Bull's own
// queue.clean(), and the queue keeps working afterwards.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Bull = require('bull');
const h = require('../lib/harness');

const { HOUR, DAY } = h;
const KEEP = { completed: { age: 48 * HOUR, count: 50 }, failed: { age: 7 * DAY, count: 40 } };
const POLICY = {
  rules: [{
    name: 'bull-swept',
    match: 'bswept:*',
    queue: {
      flavor: 'bull',
      completed: { max_age: '48h', max_len: 50 },
      failed: { max_age: '7d', max_len: 40 },
    },
  }],
};
// Bull allows ':' in queue names: one twin uses one.
const TWINS = [
  { prefix: 'bull', name: 'twin:a' },
  { prefix: 'bull', name: 'twin:b' },
  { prefix: 'bswept', name: 'twin:c' },
];
const STATES = ['completed', 'failed', 'delayed', 'priority', 'wait', 'active', 'paused'];

let server;

before(async () => { server = await h.startServer({ policy: POLICY }); });
after(async () => { await server?.stop(); });

const base = (t) => `${t.prefix}:${t.name}:`;
/** Repeat iteration ids carry the time they were made. */
const norm = (id) => id.replace(/^repeat:([0-9a-f]+):\d+/, 'repeat:$1:*');
const ttlKey = (suffix) => suffix === 'stalled-check' || suffix.endsWith(':lock') || suffix.startsWith('limiter');

function newQueue(t) {
  return new Bull(t.name, {
    prefix: t.prefix,
    redis: { host: '127.0.0.1', port: server.port },
  });
}

async function processor(job) {
  if (job.data.log) await job.log(`line for ${job.id}`);
  if (job.data.fail) throw new Error('boom');
  return { ok: job.id };
}

async function buildHistory(t) {
  const queue = newQueue(t);
  const jobs = [];
  for (let i = 0; i < 600; i++) jobs.push({ name: 'work', data: { i, fail: i % 5 === 0, log: i % 10 === 0 } });
  await queue.addBulk(jobs);
  await queue.add('custom', { log: true }, { jobId: 'x:y' });
  await queue.add('rep', {}, { repeat: { every: HOUR } });
  queue.process('*', 20, processor);
  await h.waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.waiting + c.active === 0 && c.completed + c.failed === 601;
  }, `history of ${t.name}`, 60000);
  await queue.close();

  const live = newQueue(t);
  await live.add('held', {});
  const held = await live.getNextJob();
  assert.ok(held, 'an active job');
  for (let i = 0; i < 20; i++) await live.add('waiting', { i });
  for (let i = 0; i < 8; i++) await live.add('delayed', { i }, { delay: 1500 });
  await live.add('prio', {}, { priority: 3 });
  // The custom id (with a colon, and logs) finished 3 days ago; the rest at spread ages.
  await h.rewriteFinishTimes(server.client, base(t), (id) => (id === 'x:y' ? 3 * DAY + 1234 : h.ageOf(norm(id))));
  return live;
}

async function snapshot(t) {
  const client = server.client;
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

/** Bull's own clean: by age (grace), then by count (the `n` oldest with limit n). */
async function libraryClean(queue, t) {
  for (const [set, keep] of Object.entries(KEEP)) {
    await queue.clean(keep.age, set);
    const left = await server.client.zcard(`${base(t)}${set}`);
    if (left > keep.count) await queue.clean(0, set, left - keep.count);
  }
}

test('Bull twins cleaned by Bull, by RETENTION.JOBS and by a rule end up identical; the queue still works', async (tt) => {
  const queues = [];
  for (const t of TWINS) queues.push(await buildHistory(t));
  const before_ = await snapshot(TWINS[0]);
  for (const t of TWINS.slice(1)) assert.deepEqual(await snapshot(t), before_, `${t.name} history differs`);

  const c = server.client;
  await libraryClean(queues[0], TWINS[0]);
  const jobsRemoved = async (...args) => Number(h.flatToObject(await c.call('RETENTION.JOBS', ...args)).jobs_removed);
  const removedB = await jobsRemoved('CLEAN', 'bull', 'twin:b', 'completed', 'MAXAGE', '48h', 'MAXLEN', '50')
    + await jobsRemoved('CLEAN', 'bull', 'twin:b', 'failed', 'MAXAGE', '7d', 'MAXLEN', '40', 'FLAVOR', 'bull');
  const report = h.flatToObject(await c.call('RETENTION.SWEEP'));

  const [a, b, sw] = [await snapshot(TWINS[0]), await snapshot(TWINS[1]), await snapshot(TWINS[2])];
  for (const k of ['x:y', 'x:y:logs']) {
    assert.ok(before_.keys.includes(k) && !a.keys.includes(k), `queue.clean() removed ${k}`);
  }
  assert.deepEqual(b, a, 'RETENTION.JOBS CLEAN differs from queue.clean()');
  assert.deepEqual(sw, a, 'the queue rule differs from queue.clean()');
  assert.equal(a.states.completed.length, 50);
  assert.equal(a.states.failed.length, 40);
  for (const s of ['wait', 'active', 'delayed', 'priority']) assert.deepEqual(a.states[s], before_.states[s], s);
  const removed = before_.states.completed.length + before_.states.failed.length - 90;
  tt.diagnostic(`before: ${before_.keys.length} keys, ${before_.states.completed.length} completed, ${before_.states.failed.length} failed; after: ${a.keys.length} keys; ${removed} jobs removed`);
  assert.equal(removedB, removed);
  assert.equal(Number(report.jobs_removed), removed);
  assert.equal(await c.exists(`${base(TWINS[2])}events`), 0, 'no events stream for Bull');

  // The swept queue keeps working: waiting and delayed jobs run, ids continue, counts agree.
  const t = TWINS[2];
  const queue = queues[2];
  const pending = [
    ...(await c.lrange(`${base(t)}wait`, 0, -1)),
    ...(await c.zrange(`${base(t)}delayed`, 0, -1)).filter((id) => !id.startsWith('repeat:')),
  ];
  assert.equal(pending.length, 29);
  const lastId = Number(await c.get(`${base(t)}id`));
  queue.process('*', 10, processor);
  await h.waitFor(async () => {
    const n = await queue.getJobCounts();
    return n.waiting === 0 && n.delayed === 1;
  }, 'waiting and delayed jobs processed', 30000);
  for (const id of pending) assert.equal(await (await queue.getJob(id)).getState(), 'completed', `job ${id}`);
  const next = await queue.add('after', {});
  assert.equal(String(next.id), String(lastId + 1), 'job ids continue the sequence');
  await h.waitFor(async () => (await queue.getJobCounts()).waiting === 0, 'new job processed');
  await queue.close();
  const reader = newQueue(t);
  const counts = await reader.getJobCounts();
  await reader.close();
  assert.deepEqual(await h.moduleCounts(c, t.prefix, t.name), counts);
  for (const q of queues.slice(0, 2)) await q.close();
});
