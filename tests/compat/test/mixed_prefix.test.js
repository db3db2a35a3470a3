'use strict';
// Both libraries default to the prefix `bull`, so one prefix often holds BullMQ and Bull
// queues side by side. A queue rule with `"flavor": "auto"` cleans each queue the way its
// own library does; a rule for one library leaves the other's queues alone.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Queue, Worker } = require('bullmq');
const Bull = require('bull');
const h = require('../lib/harness');

const { HOUR, DAY } = h;
const limits = {
  completed: { max_age: '48h', max_len: 50 },
  failed: { max_age: '7d', max_len: 40 },
};
const POLICY = {
  rules: [
    { name: 'one-library', match: 'solo:*', queue: { flavor: 'bullmq', ...limits } },
    { name: 'both-libraries', match: 'bull:*', queue: { flavor: 'auto', ...limits } },
  ],
};

let server;
/** Queues and workers to close even when an assertion fails (open ones keep Node running). */
const open = [];

before(async () => { server = await h.startServer({ policy: POLICY }); });
after(async () => {
  await Promise.allSettled(open.map((q) => q.close()));
  await server?.stop();
});

/** Finished jobs spread over 10 days, one in five failed. */
const ageOf = (id) => (Number(id) || 0) % 10 * DAY + HOUR;

async function bullmqHistory(prefix, name) {
  const connection = server.connection;
  const queue = new Queue(name, { connection, prefix });
  open.push(queue);
  const jobs = [];
  for (let i = 0; i < 300; i++) jobs.push({ name: 'work', data: { i, fail: i % 5 === 0 } });
  await queue.addBulk(jobs);
  const worker = new Worker(name, async (job) => {
    if (job.data.fail) throw new Error('boom');
    return job.id;
  }, { connection, prefix, concurrency: 20 });
  await h.waitFor(async () => {
    const c = await queue.getJobCounts('completed', 'failed');
    return c.completed + c.failed === 300;
  }, `${prefix}:${name} processed`, 60000);
  await worker.close();
  await h.rewriteFinishTimes(server.client, `${prefix}:${name}:`, ageOf);
  const live = [
    await queue.add('later', { live: 1 }, { delay: DAY }),
    await queue.add('waiting', { live: 2 }),
  ];
  return { queue, live: live.map((j) => j.id) };
}

async function bullHistory(prefix, name) {
  const queue = new Bull(name, { prefix, redis: { host: '127.0.0.1', port: server.port } });
  open.push(queue);
  const jobs = [];
  for (let i = 0; i < 300; i++) jobs.push({ name: 'work', data: { i, fail: i % 5 === 0 } });
  await queue.addBulk(jobs);
  queue.process('*', 20, async (job) => {
    if (job.data.fail) throw new Error('boom');
    return job.id;
  });
  await h.waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.completed + c.failed === 300;
  }, `${prefix}:${name} processed`, 60000);
  await queue.pause(true, true);
  await h.rewriteFinishTimes(server.client, `${prefix}:${name}:`, ageOf);
  const live = [
    await queue.add('later', { live: 1 }, { delay: DAY }),
    await queue.add('waiting', { live: 2 }),
  ];
  return { queue, live: live.map((j) => String(j.id)) };
}

/** What the limits leave of a finished set: jobs inside max_age, at most max_len. */
function expected(ages, maxAgeMs, maxCount) {
  return Math.min(ages.filter((a) => a < maxAgeMs).length, maxCount);
}

async function finishedAges(prefix, name, set) {
  const now = Date.now();
  const flat = await server.client.zrange(`${prefix}:${name}:${set}`, 0, -1, 'WITHSCORES');
  const ages = [];
  for (let i = 1; i < flat.length; i += 2) ages.push(now - Number(flat[i]));
  return ages;
}

test('an auto rule cleans BullMQ and Bull queues under one prefix, each its own way', async () => {
  const mq = await bullmqHistory('bull', 'mailer');
  const bq = await bullHistory('bull', 'resizer');
  await bullHistory('solo', 'legacy');
  const want = {};
  for (const [prefix, name] of [['bull', 'mailer'], ['bull', 'resizer'], ['solo', 'legacy']]) {
    want[`${prefix}:${name}`] = {
      completed: expected(await finishedAges(prefix, name, 'completed'), 48 * HOUR, 50),
      failed: expected(await finishedAges(prefix, name, 'failed'), 7 * DAY, 40),
    };
  }
  const soloBefore = await h.suffixes(server.client, 'solo:legacy:');

  const report = h.flatToObject(await server.client.call('RETENTION.SWEEP'));
  assert.equal(Number(report.errors), 0);

  // Each library's own API sees its queue cleaned to the limits, live jobs untouched.
  const mqCounts = await mq.queue.getJobCounts('completed', 'failed', 'delayed', 'waiting');
  assert.deepEqual(
    { completed: mqCounts.completed, failed: mqCounts.failed },
    want['bull:mailer'],
  );
  assert.equal(mqCounts.delayed, 1);
  assert.equal(mqCounts.waiting, 1);
  for (const id of mq.live) assert.ok(await mq.queue.getJob(id), `BullMQ job ${id} kept`);
  const bqCounts = await bq.queue.getJobCounts();
  assert.deepEqual(
    { completed: bqCounts.completed, failed: bqCounts.failed },
    want['bull:resizer'],
  );
  assert.equal(bqCounts.delayed, 1);
  assert.equal(bqCounts.waiting, 1);
  for (const id of bq.live) assert.ok(await bq.queue.getJob(id), `Bull job ${id} kept`);
  // Bull's clean leaves nothing of a removed job; neither does the module.
  const bqKeys = await h.suffixes(server.client, 'bull:resizer:');
  const jobHashes = bqKeys.filter((s) => /^\d+$/.test(s)).length;
  assert.equal(jobHashes, want['bull:resizer'].completed + want['bull:resizer'].failed + 2);

  // A rule for BullMQ skips the Bull queue under its prefix (and says so).
  assert.deepEqual(await h.suffixes(server.client, 'solo:legacy:'), soloBefore);
  const rules = report.rules;
  assert.match(JSON.stringify(rules), /one-library/);
  const stats = h.flatToObject(await server.client.call('RETENTION.STATS', 'GET'));
  assert.ok(Number(stats.skipped_wrong_type) >= 1, `skipped_wrong_type ${stats.skipped_wrong_type}`);

  // Both queues still work: a new job is processed by each library's worker.
  const done = new Promise((resolve) => {
    const w = new Worker('mailer', async () => 'ok', { connection: server.connection, prefix: 'bull' });
    open.push(w);
    w.on('completed', async (job) => { if (job.name === 'after') { await w.close(); resolve(); } });
  });
  await mq.queue.add('after', {});
  await done;
  await bq.queue.resume(true);
  const bullDone = new Promise((resolve) => bq.queue.on('completed', (job) => {
    if (job.name === 'after') resolve();
  }));
  await bq.queue.add('after', {});
  await bullDone;
});
