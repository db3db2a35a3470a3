'use strict';
// The job queues of the RETENTION.SUGGEST end-to-end test, made and checked by the real
// libraries (BullMQ 5 and Bull 4 from tests/compat/node_modules):
//   node tests/suggest_e2e/queues.js write <port> <state.json>
//   node tests/suggest_e2e/queues.js check <port> <state.json>
// write: db 0 gets the demo's queues (bull:emails BullMQ, bull:thumbnails Bull: old finished
// jobs, then waiting, prioritized, delayed, one active holding its lock, parents waiting for
// children in bull:renders) and a paused Bull queue bull:reports; db 3 a paused BullMQ queue
// under another prefix (jobs:exports). Every live job and the live counts go to <state.json>.
// check: every live job is still there in the same state with the same data, live counts are
// unchanged, and every queue still processes new and waiting jobs. Prints `ok`/`FAIL` lines;
// exits 1 when a check fails.

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const compat = path.join(__dirname, '..', 'compat');
const fromCompat = createRequire(path.join(compat, 'package.json'));
const IORedis = fromCompat('ioredis');
const { Queue, Worker } = fromCompat('bullmq');
const Bull = fromCompat('bull');
const demoQueues = require(path.join(compat, 'demo', 'queues.js'));

const SIZE = { bullmq: 600, flows: 6, bull: 400, live: 12 };
const PAUSED = { finished: 20, live: 6 };
const EXPORTS = { name: 'exports', prefix: 'jobs', db: 3 };
const REPORTS = { name: 'reports', prefix: 'bull', db: 0 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function serverAt(port, db = 0) {
  const connection = { host: '127.0.0.1', port, db, maxRetriesPerRequest: null };
  return { port, connection, client: new IORedis(connection) };
}

async function waitFor(check, what, limitMs = 60000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const exportsQueue = (port) => new Queue(EXPORTS.name, { prefix: EXPORTS.prefix,
  connection: { host: '127.0.0.1', port, db: EXPORTS.db, maxRetriesPerRequest: null } });
const reportsQueue = (port) => new Bull(REPORTS.name, { prefix: REPORTS.prefix,
  redis: { host: '127.0.0.1', port, db: REPORTS.db } });

/** BullMQ under prefix `jobs` in db 3: finished jobs, then paused with jobs waiting. */
async function buildPausedBullmq(port) {
  const queue = exportsQueue(port);
  await queue.addBulk(Array.from({ length: PAUSED.finished }, (_, i) => ({ name: 'csv', data: { export: i } })));
  const worker = new Worker(EXPORTS.name, async (job) => ({ rows: job.data.export * 10 }),
    { prefix: EXPORTS.prefix, connection: queue.opts.connection, concurrency: 10 });
  await waitFor(async () => (await queue.getJobCounts()).completed >= PAUSED.finished, 'jobs:exports history');
  await worker.close();
  await queue.pause();
  await queue.addBulk(Array.from({ length: PAUSED.live }, (_, i) => ({ name: 'csv', data: { export: 1000 + i } })));
  return queue;
}

/** Bull in db 0: finished jobs, then paused with jobs in its `paused` list. */
async function buildPausedBull(port) {
  const queue = reportsQueue(port);
  for (let i = 0; i < PAUSED.finished; i++) await queue.add('pdf', { report: i });
  queue.process('*', 10, async (job) => ({ pages: job.data.report % 7 }));
  await waitFor(async () => (await queue.getJobCounts()).completed >= PAUSED.finished, 'bull:reports history');
  await queue.close();
  const paused = reportsQueue(port);
  await paused.pause();
  for (let i = 0; i < PAUSED.live; i++) await paused.add('pdf', { report: 1000 + i });
  return paused;
}

async function pausedJobs(port) {
  const out = [];
  const q = exportsQueue(port);
  for (const job of await q.getJobs(['waiting', 'paused'], 0, -1)) {
    out.push({ lib: 'bullmq', queue: `${EXPORTS.prefix}:${EXPORTS.name}`, id: String(job.id),
      state: await q.getJobState(job.id), data: JSON.stringify(job.data) });
  }
  await q.close();
  const b = reportsQueue(port);
  for (const job of await b.getJobs(['paused'], 0, -1)) {
    out.push({ lib: 'bull', queue: `${REPORTS.prefix}:${REPORTS.name}`, id: String(job.id),
      state: await job.getState(), data: JSON.stringify(job.data) });
  }
  await b.close();
  return out;
}

async function write(port, stateFile) {
  const server = serverAt(port);
  const [emails, thumbs] = await Promise.all([
    demoQueues.buildBullmq(server, { jobs: SIZE.bullmq, flows: SIZE.flows, live: SIZE.live }),
    demoQueues.buildBull(server, { jobs: SIZE.bull, live: SIZE.live }),
  ]);
  const exportsQ = await buildPausedBullmq(port);
  const reportsQ = await buildPausedBull(port);
  const state = {
    live: await demoQueues.liveJobs(server),
    counts: await demoQueues.jobCounts(server),
    paused: await pausedJobs(port),
  };
  if (state.paused.length !== 2 * PAUSED.live) throw new Error(`expected ${2 * PAUSED.live} paused jobs, found ${state.paused.length}`);
  fs.writeFileSync(stateFile, JSON.stringify(state));
  for (const q of [emails, thumbs, exportsQ, reportsQ]) await q.close();
  server.client.disconnect();
  const states = {};
  for (const j of [...state.live, ...state.paused]) states[j.state] = (states[j.state] || 0) + 1;
  process.stdout.write(`${Object.entries(states).map(([s, n]) => `${n} ${s}`).join(', ')}\n`);
}

/** The paused queues: their jobs are still there, and run once the queues are resumed. */
async function checkPaused(port, before, check) {
  const now = await pausedJobs(port);
  const key = (j) => `${j.queue}:${j.id}:${j.state}:${j.data}`;
  const left = new Set(now.map(key));
  const lost = before.filter((j) => !left.has(key(j)));
  check(lost.length === 0, `paused queues: all ${before.length} paused jobs still there, same state and data (jobs:exports in db 3, bull:reports)`,
    lost.map((j) => `${j.queue}:${j.id} (${j.state})`).join(', '));

  const exportsQ = exportsQueue(port);
  const reportsQ = reportsQueue(port);
  try {
    await exportsQ.resume();
    const worker = new Worker(EXPORTS.name, async () => ({ ok: 1 }),
      { prefix: EXPORTS.prefix, connection: exportsQ.opts.connection, concurrency: 10 });
    await reportsQ.resume();
    reportsQ.process('*', 10, async () => ({ ok: 1 }));
    let ok = true;
    try {
      await waitFor(async () => {
        const a = await exportsQ.getJobCounts();
        const b = await reportsQ.getJobCounts();
        return a.waiting + a.paused + a.active === 0 && b.waiting + b.paused + b.active === 0;
      }, 'the resumed queues', 30000);
    } catch { ok = false; }
    await worker.close();
    check(ok, 'paused queues: once resumed, BullMQ and Bull workers process every job');
  } finally {
    await exportsQ.close();
    await reportsQ.close();
  }
}

async function checkAll(port, stateFile) {
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  const server = serverAt(port);
  let failures = 0;
  const check = (ok, what, detail) => {
    process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `: ${detail}` : ''}\n`);
    if (!ok) failures++;
  };
  try {
    // No limits: what the suggested queue rule keeps of finished jobs is the suggestion's choice.
    await demoQueues.checkQueues(server, state.live, state.counts, Date.now(), check, null);
    await checkPaused(port, state.paused, check);
  } finally {
    server.client.disconnect();
  }
  return failures;
}

async function main() {
  const [command, port, stateFile] = process.argv.slice(2);
  if (!['write', 'check'].includes(command) || !port || !stateFile) {
    throw new Error('usage: queues.js write|check <port> <state.json>');
  }
  if (command === 'write') {
    await write(Number(port), stateFile);
    return 0;
  }
  return (await checkAll(Number(port), stateFile)) ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`queues.js: ${e.stack || e}\n`);
  process.exit(2);
});
