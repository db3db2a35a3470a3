'use strict';
// RETENTION.SUGGEST on queues made by the real libraries: a BullMQ-only prefix, a Bull-only
// prefix and a prefix both share each get one queue rule of the right flavor (bullmq, bull,
// auto); each rule's effect is what a dry-run sweep of the loaded suggestion counts; applied,
// it keeps every live job (waiting, delayed, prioritized, paused), leaves finished jobs within
// the rule's limits, and the libraries' workers still process the waiting jobs.

const fs = require('node:fs');
const path = require('node:path');
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Queue, Worker } = require('bullmq');
const Bull = require('bull');
const h = require('../lib/harness');

const { HOUR, DAY } = h;
const FINISHED = 300;
let server;
/** Queues to close even when an assertion fails (open ones keep Node running). */
const open = [];

before(async () => { server = await h.startServer({ policy: { rules: [] } }); });
after(async () => {
  await Promise.allSettled(open.map((q) => q.close()));
  await server?.stop();
});

/** Finished jobs spread over 10 days (never on a whole hour), one in five failed. */
const ageOf = (id) => ((Number(id) || 0) % 10) * DAY + HOUR + ((Number(id) || 0) % 7) * 60000 + 1234;

async function bullmqQueue(prefix, name) {
  const connection = server.connection;
  const queue = new Queue(name, { connection, prefix });
  open.push(queue);
  await queue.addBulk(Array.from({ length: FINISHED }, (_, i) => ({ name: 'work', data: { i, fail: i % 5 === 0 } })));
  const worker = new Worker(name, async (job) => {
    if (job.data.fail) throw new Error('boom');
    return job.id;
  }, { connection, prefix, concurrency: 20 });
  await h.waitFor(async () => {
    const c = await queue.getJobCounts('completed', 'failed');
    return c.completed + c.failed === FINISHED;
  }, `${prefix}:${name} processed`, 60000);
  await worker.close();
  await h.rewriteFinishTimes(server.client, `${prefix}:${name}:`, ageOf);
  const live = [
    await queue.add('waiting', { live: 1 }),
    await queue.add('delayed', { live: 2 }, { delay: DAY }),
    await queue.add('prioritized', { live: 3 }, { priority: 5 }),
  ];
  return { lib: 'bullmq', prefix, name, queue, live: await liveStates(queue, live.map((j) => j.id)) };
}

async function bullQueue(prefix, name, { paused = false } = {}) {
  const redis = { host: '127.0.0.1', port: server.port };
  const queue = new Bull(name, { prefix, redis });
  open.push(queue);
  for (let i = 0; i < FINISHED; i++) await queue.add('work', { i, fail: i % 5 === 0 });
  queue.process('*', 20, async (job) => {
    if (job.data.fail) throw new Error('boom');
    return job.id;
  });
  await h.waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.completed + c.failed === FINISHED;
  }, `${prefix}:${name} processed`, 60000);
  await queue.close();
  await h.rewriteFinishTimes(server.client, `${prefix}:${name}:`, ageOf);
  const again = new Bull(name, { prefix, redis });
  open.push(again);
  if (paused) await again.pause();
  const live = [await again.add('waiting', { live: 1 }), await again.add('delayed', { live: 2 }, { delay: DAY })];
  return { lib: 'bull', prefix, name, queue: again, live: await liveStates(again, live.map((j) => j.id)) };
}

/** id -> state, as the library tells it. */
async function liveStates(queue, ids) {
  const states = {};
  for (const id of ids) {
    states[id] = queue instanceof Queue ? await queue.getJobState(id) : await (await queue.getJob(id)).getState();
  }
  return states;
}

const rulesOf = (reply) => h.flatToObject(reply).rules.map((r) => {
  const o = h.flatToObject(r);
  return { ...o, effect: h.flatToObject(o.effect) };
});

let queues;
let rules;
let policy;
let policyText;
const queueRule = (prefix) => policy.rules.find((r) => r.queue && r.match === `${prefix}:*`);

test('SUGGEST: one queue rule per prefix, of the flavor its queues show; RELOAD accepts the policy', async () => {
  queues = [
    await bullmqQueue('solo', 'mail'),
    await bullQueue('legacy', 'pdf', { paused: true }),
    await bullmqQueue('bull', 'emails'),
    await bullQueue('bull', 'thumbs'),
  ];
  const client = server.client;
  const reply = await client.call('RETENTION.SUGGEST');
  policyText = h.flatToObject(reply).policy;
  policy = JSON.parse(policyText);
  rules = rulesOf(reply);
  assert.deepEqual(policy.rules.map((r) => r.name), rules.map((r) => r.name));

  const want = { solo: 'bullmq', legacy: 'bull', bull: 'auto' };
  for (const [prefix, flavor] of Object.entries(want)) {
    const rule = queueRule(prefix);
    assert.ok(rule, `a queue rule for ${prefix}:* in ${policyText}`);
    assert.equal(rule.queue.flavor, flavor, `${prefix}:*'s flavor`);
    const reported = rules.find((r) => r.name === rule.name);
    assert.equal(reported.action, 'queue');
    assert.ok(['bullmq', 'bull'].includes(reported.owner), `owner ${reported.owner}`);
    assert.ok(reported.effect.jobs > 0, `${rule.name} announces jobs to remove: ${JSON.stringify(reported.effect)}`);
  }

  fs.writeFileSync(path.join(server.dir, 'policy.json'), policyText);
  assert.equal(await client.call('RETENTION.RELOAD'), 'OK');
});

test('SUGGEST: each queue rule\'s effect is what a dry-run pass of the loaded policy counts', async () => {
  assert.ok(rules, 'the suggestion (previous test)');
  const client = server.client;
  const dry = h.flatToObject(h.flatToObject(await client.call('RETENTION.SWEEP', 'DRYRUN')).rules);
  for (const r of rules.filter((x) => x.action === 'queue')) {
    const counted = Number(h.flatToObject(dry[r.name]).jobs_removed);
    assert.equal(r.effect.jobs, counted, `${r.name}: effect jobs ${r.effect.jobs}, the dry run's jobs_removed ${counted}`);
  }

});

test('the suggestion applied: live jobs stay, finished jobs within its limits, the queues still work', async () => {
  assert.ok(policy, 'the suggestion, loaded (first test)');
  const client = server.client;
  const sweptAt = Date.now();
  const swept = h.flatToObject(await client.call('RETENTION.SWEEP'));
  assert.equal(Number(swept.errors), 0);
  for (const q of queues) {
    const rule = queueRule(q.prefix).queue;
    const now = await liveStates(q.queue, Object.keys(q.live));
    assert.deepEqual(now, q.live, `${q.prefix}:${q.name}: live jobs and their states`);
    const counts = await q.queue.getJobCounts();
    for (const set of ['completed', 'failed']) {
      assert.ok(counts[set] <= rule[set].max_len, `${q.prefix}:${q.name} ${set}: ${counts[set]}`);
      const [oldest] = await q.queue.getJobs([set], 0, 0, true);
      const maxAge = { '24h': DAY, '7d': 7 * DAY }[rule[set].max_age];
      assert.ok(maxAge, `a limit this test knows: ${rule[set].max_age}`);
      assert.ok(!oldest || oldest.finishedOn >= sweptAt - maxAge, `${q.prefix}:${q.name} ${set}: job ${oldest?.id} too old`);
    }
    assert.ok(counts.completed + counts.failed < FINISHED, `${q.prefix}:${q.name}: finished jobs were cleaned`);
  }

  // The waiting jobs still run (the paused Bull queue once resumed).
  for (const q of queues) {
    const waiting = Object.entries(q.live).filter(([, s]) => ['waiting', 'prioritized', 'paused'].includes(s)).map(([id]) => id);
    let worker = null;
    if (q.lib === 'bullmq') {
      worker = new Worker(q.name, async () => 'ok', { connection: server.connection, prefix: q.prefix });
    } else {
      await q.queue.resume();
      q.queue.process('*', 5, async () => 'ok');
    }
    await h.waitFor(async () => {
      for (const id of waiting) {
        const state = q.lib === 'bullmq' ? await q.queue.getJobState(id) : await (await q.queue.getJob(id)).getState();
        if (state !== 'completed') return false;
      }
      return true;
    }, `${q.prefix}:${q.name}: waiting jobs processed`, 30000);
    if (worker) await worker.close();
  }
});
