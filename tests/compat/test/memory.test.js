'use strict';
// `max_memory` on real BullMQ 5 and Bull 4 queues: one RETENTION.SWEEP keeps the newest
// finished jobs whose memory (hash and sub-keys, as MEMORY USAGE … SAMPLES 0 counts it) fits
// the budget, removes the rest, and leaves a queue the library itself reads consistently.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Queue, Worker } = require('bullmq');
const Bull = require('bull');
const h = require('../lib/harness');

const { HOUR } = h;
const MB = 1 << 20;
// Budgets about half of what each set holds; the biggest job (300 KB) is under 4% of the
// smallest budget, so the kept memory must land within 5% under it.
const BUDGET = { completed: 12 * MB, failed: 8 * MB };
const TIGHT_LEN = { completed: 20, failed: 10 };
const POLICY = {
  rules: [
    {
      name: 'mq-memory', match: 'mqmem:*',
      queue: { flavor: 'bullmq', completed: { max_memory: '12mb' }, failed: { max_memory: '8mb' } },
    },
    {
      name: 'bull-memory', match: 'bmem:*',
      queue: { flavor: 'bull', completed: { max_memory: '12mb' }, failed: { max_memory: '8mb' } },
    },
    // max_len is tighter than the memory budget here: it decides.
    {
      name: 'mq-len', match: 'mqlen:*',
      queue: { flavor: 'bullmq', completed: { max_memory: '12mb', max_len: 20 }, failed: { max_memory: '8mb', max_len: 10 } },
    },
    {
      name: 'bull-len', match: 'blen:*',
      queue: { flavor: 'bull', completed: { max_memory: '12mb', max_len: 20 }, failed: { max_memory: '8mb', max_len: 10 } },
    },
  ],
};
const SUB_KEYS = ['logs', 'dependencies', 'processed', 'failed', 'unsuccessful'];

let server;
/** Every queue and worker opened, closed at the end even when an assertion failed. */
const opened = [];
const track = (q) => { opened.push(q); return q; };
before(async () => { server = await h.startServer({ policy: POLICY }); });
after(async () => {
  for (const q of opened) await q.close().catch(() => {});
  await server?.stop();
});

/** Mixed payloads: most of a few KB, one in three of 100–300 KB, one in seven with logs. */
function payload(i, fail) {
  const h32 = h.hashOf(`p${i}`);
  const bytes = i % 3 === 0 ? 100 * 1024 + (h32 % (200 * 1024)) : 1024 + (h32 % (7 * 1024));
  return { i, fail, log: i % 7 === 0, blob: 'x'.repeat(bytes) };
}

async function processor(job) {
  if (job.data.log) {
    // Logs of 2–20 KB: a sub-key the budget counts.
    for (let n = 0; n < 2 + (job.data.i % 10) * 2; n++) await job.log(`line ${n} ${'l'.repeat(1000)}`);
  }
  if (job.data.fail) throw new Error(`boom ${job.data.i}`);
  return { ok: job.data.i };
}

/** The two libraries behind one interface. */
const LIBRARIES = {
  bullmq: {
    open: (prefix, name) => track(new Queue(name, { connection: server.connection, prefix })),
    async run(prefix, name, fn) {
      const w = track(new Worker(name, fn, { connection: server.connection, prefix, concurrency: 8 }));
      return { close: () => w.close() };
    },
    async takeActive(queue, prefix, name) {
      await queue.add('held', { i: -1 });
      const taker = track(new Worker(name, null, { connection: server.connection, prefix, autorun: false }));
      const job = await taker.getNextJob('held-token', { block: false });
      await taker.close(true);
      return job;
    },
    waitingCount: (c) => c.waiting,
  },
  bull: {
    open: (prefix, name) => track(new Bull(name, { prefix, redis: { host: '127.0.0.1', port: server.port } })),
    async run(prefix, name, fn) {
      const q = LIBRARIES.bull.open(prefix, name);
      q.process('*', 8, fn);
      return { close: () => q.close() };
    },
    async takeActive(queue) {
      await queue.add('held', { i: -1 });
      return queue.getNextJob();
    },
    waitingCount: (c) => c.waiting,
  },
};

/** `completed` finished jobs and `failed` ones, then live jobs: active, waiting, delayed. */
async function buildQueue(lib, prefix, name, completed, failed) {
  const L = LIBRARIES[lib];
  const queue = L.open(prefix, name);
  const total = completed + failed;
  // Which jobs fail is unrelated to their size.
  const fails = (j) => h.hashOf(`f${j}`) % total < failed;
  for (let i = 0; i < total; i += 20) {
    const bulk = [];
    for (let j = i; j < Math.min(total, i + 20); j++) bulk.push({ name: 'work', data: payload(j, fails(j)) });
    await queue.addBulk(bulk);
  }
  const worker = await L.run(prefix, name, processor);
  await h.waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.completed + c.failed === total;
  }, `history of ${prefix}:${name}`, 120000);
  await worker.close();

  const active = await L.takeActive(queue, prefix, name);
  assert.ok(active, 'an active job');
  const live = [String(active.id)];
  for (let i = 0; i < 15; i++) live.push(String((await queue.add('waiting', payload(1000 + i, false))).id));
  for (let i = 0; i < 5; i++) live.push(String((await queue.add('delayed', { i }, { delay: HOUR })).id));
  // Distinct finish times in an order unrelated to the payload sizes.
  const base = `${prefix}:${name}:`;
  await h.rewriteFinishTimes(server.client, base, (id) => (h.hashOf(`age${id}`) % 100000) * 1000 + Number(id));
  return { queue, live, base };
}

/** A job's memory as the budget counts it: its hash and every sub-key it has. */
async function jobMemory(c, base, id) {
  let sum = 0;
  for (const k of [`${base}${id}`, ...SUB_KEYS.map((s) => `${base}${id}:${s}`)]) {
    sum += Number((await c.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) || 0);
  }
  return sum;
}

/** Every member of a finished set with its score, newest first, and each one's memory. */
async function finishedSet(c, base, set) {
  const flat = await c.zrevrange(`${base}${set}`, 0, -1, 'WITHSCORES');
  const jobs = [];
  for (let i = 0; i < flat.length; i += 2) {
    jobs.push({ id: flat[i], finishedOn: Number(flat[i + 1]), bytes: await jobMemory(c, base, flat[i]) });
  }
  return jobs;
}

async function checkQueue(tt, lib, prefix, name, built, beforeSets, tight) {
  const c = server.client;
  const { queue, live, base } = built;
  for (const set of ['completed', 'failed']) {
    const before_ = beforeSets[set];
    const budget = BUDGET[set];
    const after_ = await finishedSet(c, base, set);
    const keptIds = after_.map((j) => j.id);
    const keptBytes = after_.reduce((s, j) => s + j.bytes, 0);
    // The kept jobs are the newest ones, whatever their size.
    const newest = before_.slice(0, keptIds.length);
    assert.deepEqual(keptIds, newest.map((j) => j.id), `${prefix} ${set}: the newest jobs are kept`);
    assert.ok(keptBytes <= budget, `${prefix} ${set}: ${keptBytes} within ${budget}`);
    if (tight) {
      assert.equal(keptIds.length, TIGHT_LEN[set], `${prefix} ${set}: max_len decides`);
    } else {
      assert.ok(keptBytes >= 0.95 * budget, `${prefix} ${set}: ${keptBytes} is within 5% under ${budget}`);
      // And the next newest would not have fit. A hash's memory may drop by a dict bucket
      // array (64 bytes) when the server finishes rehashing it between two measurements.
      const next = before_[keptIds.length];
      const slack = 64 * (keptIds.length + 1);
      const keptBefore = newest.reduce((s, j) => s + j.bytes, 0);
      assert.ok(keptBefore + next.bytes > budget - slack,
        `${prefix} ${set}: job ${next.id} (${next.bytes} bytes) would have fit beside ${keptBefore}`);
      assert.ok(Math.abs(keptBefore - keptBytes) <= slack, `${prefix} ${set}: kept jobs unchanged`);
    }
    const removed = before_.filter((j) => !keptIds.includes(j.id));
    assert.ok(removed.length > 0, `${prefix} ${set}: some jobs removed`);
    const oldestKept = Math.min(...after_.map((j) => j.finishedOn));
    const newestRemoved = Math.max(...removed.map((j) => j.finishedOn));
    assert.ok(oldestKept >= newestRemoved, `${prefix} ${set}: every kept job finished after every removed one`);
    for (const j of removed) {
      for (const k of [`${base}${j.id}`, ...SUB_KEYS.map((s) => `${base}${j.id}:${s}`)]) {
        assert.equal(await c.exists(k), 0, `${k} removed`);
      }
    }
    // The library sees every kept job, with its payload whole, and only those.
    const listed = (await queue.getJobs([set], 0, -1)).filter(Boolean).map((j) => String(j.id)).sort();
    assert.deepEqual(listed, [...keptIds].sort(), `${prefix} ${set}: getJobs lists the kept jobs`);
    for (const id of keptIds) {
      const job = await queue.getJob(id);
      assert.ok(job, `${prefix} getJob(${id})`);
      assert.equal(job.data.blob.length, payload(job.data.i, false).blob.length, `${prefix} job ${id} payload`);
    }
    tt.diagnostic(`${prefix}:${name} ${set}: ${before_.length} -> ${keptIds.length} jobs, `
      + `${(before_.reduce((s, j) => s + j.bytes, 0) / MB).toFixed(2)} MB -> ${(keptBytes / MB).toFixed(3)} MB `
      + `(budget ${(budget / MB).toFixed(0)} MB${tight ? `, max_len ${TIGHT_LEN[set]}` : ''})`);
  }
  const counts = await queue.getJobCounts();
  assert.equal(counts.completed, await c.zcard(`${base}completed`), 'getJobCounts completed');
  assert.equal(counts.failed, await c.zcard(`${base}failed`), 'getJobCounts failed');
  assert.equal(counts.active, 1, 'the active job stays');
  assert.equal(LIBRARIES[lib].waitingCount(counts), 15, 'waiting jobs stay');
  assert.equal(counts.delayed, 5, 'delayed jobs stay');
  for (const id of live) assert.ok(await queue.getJob(id), `${prefix} live job ${id} stays`);

  // A new job is still processed (with the waiting ones).
  const fresh = await queue.add('after', { i: 5000, blob: '' });
  const worker = await LIBRARIES[lib].run(prefix, name, async () => 'done');
  await h.waitFor(async () => (await (await queue.getJob(fresh.id)).getState()) === 'completed',
    `${prefix} new job processed`, 30000);
  await worker.close();
  await queue.close();
}

const CASES = [
  { lib: 'bullmq', prefix: 'mqmem', completed: 300, failed: 200, tight: false },
  { lib: 'bull', prefix: 'bmem', completed: 300, failed: 200, tight: false },
  { lib: 'bullmq', prefix: 'mqlen', completed: 60, failed: 30, tight: true },
  { lib: 'bull', prefix: 'blen', completed: 60, failed: 30, tight: true },
];

test('one sweep with max_memory keeps the newest finished jobs within the budget; BullMQ and Bull read a consistent queue', async (tt) => {
  const c = server.client;
  const built = [];
  for (const k of CASES) {
    const b = await buildQueue(k.lib, k.prefix, 'mem', k.completed, k.failed);
    const sets = {};
    for (const set of ['completed', 'failed']) sets[set] = await finishedSet(c, b.base, set);
    // The history is big enough that the budget (or max_len) has to remove jobs.
    if (!k.tight) {
      for (const set of ['completed', 'failed']) {
        assert.ok(sets[set].reduce((s, j) => s + j.bytes, 0) > 1.3 * BUDGET[set], `${k.prefix} ${set} over budget`);
      }
    }
    built.push({ k, b, sets });
  }
  const report = h.flatToObject(await c.call('RETENTION.SWEEP'));
  assert.equal(Number(report.errors ?? 0), 0, 'no errors');
  for (const { k, b, sets } of built) await checkQueue(tt, k.lib, k.prefix, 'mem', b, sets, k.tight);
});
