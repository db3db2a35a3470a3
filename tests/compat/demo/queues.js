'use strict';
// The demo's job queues, made and checked by the real libraries (BullMQ 5 and Bull 4 from
// tests/compat/node_modules), so every key has exactly the libraries' layout:
//   bull:emails      BullMQ: a history of sent and failed emails (with logs, retries, finished
//                    flows and a job scheduler) that never set removeOnComplete/removeOnFail,
//                    then live jobs: waiting, prioritized, delayed, one active job holding its
//                    lock, and parents waiting for children in bull:renders (no worker there);
//   bull:thumbnails  Bull: the same kind of history and live jobs, from the app's older half.
// Finished jobs are then spread over the last two weeks: their finish times (set score and
// the hash's finishedOn/processedOn/timestamp, as the libraries write them) are moved back,
// as if the queues had been running for that long.

const { Queue, Worker, FlowProducer } = require('bullmq');
const Bull = require('bull');
const { DAY, HOUR, emailJob, hashOf, rng, thumbnailJob } = require('./data');

const PREFIX = 'bull';
const HISTORY_MS = 14 * DAY;
const HELD_LOCK_MS = 10 * 60 * 1000; // the active job's lock outlives the demo
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, what, limitMs = 300000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The same job fails (or logs) in every run: decided by its id, not by its data. */
const fails = (queue, id) => hashOf(`${queue}:${id}`) % 13 === 0;
const logs = (queue, id) => hashOf(`log:${queue}:${id}`) % 4 === 0;

async function sendEmail(job) {
  if (job.name === 'render') return { pages: 3, bytes: 48213 };
  if (job.name === 'digest' || job.name === 'weekly-report') return { sent: true };
  const id = String(job.id);
  if (logs('emails', id)) {
    await job.log(`smtp: connected to mx${hashOf(id) % 4 + 1}.${job.data.to.split('@')[1]}:25 (TLS 1.3)`);
    await job.log(`smtp: MAIL FROM:<${job.data.from}> RCPT TO:<${job.data.to}>`);
  }
  if (fails('emails', id)) {
    throw new Error(`550 5.1.1 <${job.data.to}>: Recipient address rejected: User unknown in virtual mailbox table`);
  }
  return { messageId: `<${id}.${job.data.requestId}@mail.example.com>`, accepted: [job.data.to],
    response: `250 2.0.0 OK ${Math.floor(Date.now() / 1000)} q${id}si.${job.data.tenant}` };
}

async function makeThumbnails(job) {
  const id = String(job.id);
  if (logs('thumbnails', id)) await job.log(`fetched s3://${job.data.bucket}/${job.data.key}`);
  if (fails('thumbnails', id)) throw new Error(`sharp: Input buffer contains unsupported image format (${job.data.key})`);
  return { outputs: job.data.sizes.map(([w, h]) => `s3://thumbs/${job.data.key.replace('.jpg', '')}-${w}x${h}.${job.data.format}`) };
}

/** Moves every finished job of `<prefix>:<name>:` back to a finish time in the last two weeks. */
async function spreadFinishTimes(client, name) {
  const base = `${PREFIX}:${name}:`;
  const now = Date.now();
  for (const set of ['completed', 'failed']) {
    const ids = await client.zrange(`${base}${set}`, 0, -1);
    for (let i = 0; i < ids.length; i += 2000) {
      const multi = client.pipeline();
      for (const id of ids.slice(i, i + 2000)) {
        const h = hashOf(`${name}:${id}`);
        const finishedOn = now - (h % HISTORY_MS);
        const processedOn = finishedOn - (50 + (h % 1900));
        multi.zadd(`${base}${set}`, finishedOn, id);
        multi.hset(`${base}${id}`, 'finishedOn', finishedOn, 'processedOn', processedOn,
          'timestamp', processedOn - (h % 4000));
      }
      await multi.exec();
    }
  }
}

/** BullMQ `emails` with `jobs` finished jobs and live ones (`live` of each kind). */
async function buildBullmq(server, { jobs, flows, live }) {
  const connection = server.connection;
  const r = rng(1);
  const queue = new Queue('emails', { connection, prefix: PREFIX });
  const flow = new FlowProducer({ connection, prefix: PREFIX });
  for (let i = 0; i < jobs; i += 1000) {
    const bulk = [];
    for (let k = i; k < Math.min(jobs, i + 1000); k++) {
      bulk.push({ name: 'send', data: emailJob(r, k), opts: { attempts: 3 } });
    }
    await queue.addBulk(bulk);
  }
  const finishedFlows = [];
  for (let i = 0; i < flows; i++) {
    finishedFlows.push({
      name: 'digest', queueName: 'emails', data: { tenant: r.pick(['acme', 'globex']), week: i },
      children: [{ name: 'render', queueName: 'emails', data: { part: 'summary', week: i } },
        { name: 'render', queueName: 'emails', data: { part: 'charts', week: i } }],
    });
  }
  if (finishedFlows.length) await flow.addBulk(finishedFlows);
  await queue.upsertJobScheduler('hourly-digest', { every: HOUR }, { name: 'digest', data: { kind: 'hourly' } });
  const worker = new Worker('emails', sendEmail, { connection, prefix: PREFIX, concurrency: 100 });
  await waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.waiting + c.active + c.prioritized + c['waiting-children'] === 0 &&
      c.completed + c.failed >= jobs + 3 * flows;
  }, 'the BullMQ history');
  await worker.close();
  await spreadFinishTimes(server.client, 'emails');

  // Live jobs. One active: taken by a worker that holds its lock (a long-running job).
  await queue.add('send', emailJob(r, -1));
  const taker = new Worker('emails', null, { connection, prefix: PREFIX, autorun: false, lockDuration: HELD_LOCK_MS });
  if (!(await taker.getNextJob('demo-held-token', { block: false }))) throw new Error('no active BullMQ job');
  await taker.close(true);
  await queue.addBulk(Array.from({ length: live }, (_, i) => ({ name: 'send', data: emailJob(r, jobs + i) })));
  for (let i = 0; i < Math.ceil(live / 4); i++) {
    await queue.add('send', emailJob(r, -2 - i), { delay: 2 * HOUR + i * 15 * 60 * 1000 });
    await queue.add('send', emailJob(r, -1000 - i), { priority: 1 + (i % 10) });
  }
  // Parents waiting for children in a queue whose workers are down.
  for (let i = 0; i < Math.max(1, Math.ceil(live / 20)); i++) {
    await flow.add({
      name: 'weekly-report', queueName: 'emails', data: { tenant: 'acme', week: 100 + i },
      children: [0, 1, 2].map((p) => ({ name: 'render', queueName: 'renders', data: { page: p, week: 100 + i } })),
    });
  }
  await flow.close();
  return queue;
}

/** Bull `thumbnails`, the same shape. */
async function buildBull(server, { jobs, live }) {
  const r = rng(2);
  const redis = { host: '127.0.0.1', port: server.port };
  const queue = new Bull('thumbnails', { prefix: PREFIX, redis });
  for (let i = 0; i < jobs; i += 1000) {
    const bulk = [];
    for (let k = i; k < Math.min(jobs, i + 1000); k++) {
      bulk.push({ name: 'resize', data: thumbnailJob(r, k), opts: { attempts: 2 } });
    }
    await queue.addBulk(bulk);
  }
  await queue.add('cleanup-tmp', {}, { repeat: { every: HOUR } });
  queue.process('*', 100, makeThumbnails);
  await waitFor(async () => {
    const c = await queue.getJobCounts();
    return c.waiting + c.active === 0 && c.completed + c.failed >= jobs;
  }, 'the Bull history');
  await queue.close();
  await spreadFinishTimes(server.client, 'thumbnails');

  const holder = new Bull('thumbnails', { prefix: PREFIX, redis, settings: { lockDuration: HELD_LOCK_MS } });
  await holder.add('resize', thumbnailJob(r, -1));
  if (!(await holder.getNextJob())) throw new Error('no active Bull job');
  for (let i = 0; i < live; i++) await holder.add('resize', thumbnailJob(r, jobs + i));
  for (let i = 0; i < Math.ceil(live / 4); i++) {
    await holder.add('resize', thumbnailJob(r, -2 - i), { delay: 3 * HOUR + i * 60 * 1000 });
    await holder.add('resize', thumbnailJob(r, -1000 - i), { priority: 1 + (i % 10) });
  }
  return holder;
}

const BULLMQ_LIVE = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children'];
const BULL_LIVE = ['waiting', 'delayed', 'active', 'paused'];
/** The example policy's (and the Bull clean's) limits: [max_age ms, max_len] (null: none). */
const LIMITS = { completed: [DAY, 500], failed: [7 * DAY, 1000] };
/** Processed: some emails bounce and some images are broken, by design (`fails`). */
const FINISHED = ['completed', 'failed'];

/** Every live job of the three queues, as the libraries see them: queue, id, state, data. */
async function liveJobs(server) {
  const connection = server.connection;
  const out = [];
  for (const name of ['emails', 'renders']) {
    const q = new Queue(name, { connection, prefix: PREFIX });
    for (const job of await q.getJobs(BULLMQ_LIVE, 0, -1)) {
      out.push({ lib: 'bullmq', queue: name, id: String(job.id), state: await q.getJobState(job.id),
        data: JSON.stringify(job.data) });
    }
    await q.close();
  }
  const b = new Bull('thumbnails', { prefix: PREFIX, redis: { host: '127.0.0.1', port: server.port } });
  for (const job of await b.getJobs(BULL_LIVE, 0, -1)) {
    out.push({ lib: 'bull', queue: 'thumbnails', id: String(job.id), state: await job.getState(),
      data: JSON.stringify(job.data) });
  }
  await b.close();
  return out;
}

/** getJobCounts() of both queues, by the libraries. */
async function jobCounts(server) {
  const q = new Queue('emails', { connection: server.connection, prefix: PREFIX });
  const b = new Bull('thumbnails', { prefix: PREFIX, redis: { host: '127.0.0.1', port: server.port } });
  const counts = { emails: await q.getJobCounts(), thumbnails: await b.getJobCounts() };
  await q.close();
  await b.close();
  return counts;
}

/** `age` (ms) as the policy writes it: 24h, 7d. */
const ageText = (ms) => (ms % DAY === 0 && ms > DAY ? `${ms / DAY}d` : `${Math.round(ms / HOUR)}h`);

/**
 * The policy's limits: a job goes if older than max_age or beyond max_len, so what is left is
 * within both (ages measured from before the pass: its cutoff is later).
 */
async function checkLimits(name, queue, limits, before, after, sweptAt, check) {
  const over = [];
  const ages = [];
  for (const set of FINISHED) {
    const [maxAgeMs, maxCount] = limits[set] || [null, null];
    const [oldest] = await queue.getJobs([set], 0, 0, true); // asc: the oldest first (both libraries)
    if (maxCount != null && after[set] > maxCount) over.push(`${set}: ${after[set]} jobs`);
    if (maxAgeMs != null) {
      ages.push(ageText(maxAgeMs));
      if (oldest && oldest.finishedOn < sweptAt - maxAgeMs) over.push(`${set}: job ${oldest.id} finished ${Math.round((sweptAt - oldest.finishedOn) / HOUR)}h before`);
    }
  }
  const age = ages.length ? `, none older than ${ages.join('/')}` : '';
  check(over.length === 0,
    `${name}: finished jobs cleaned to the policy's limits (completed ${before.completed} -> ${after.completed}, failed ${before.failed} -> ${after.failed}${age})`,
    over.join(', '));
}

/**
 * The checks made with the libraries after the policy ran: every live job is still there in
 * the same state with the same data, the live counts did not change, finished jobs are within
 * `limits` (the policy's queue rule; null: not checked), and the queues still work: a new job
 * gets the next id and is processed, the waiting jobs run, and the parents complete once their
 * children in `renders` are processed.
 */
async function checkQueues(server, before, beforeCounts, sweptAt, check, limits = LIMITS) {
  const connection = server.connection;
  const client = server.client;
  const emails = new Queue('emails', { connection, prefix: PREFIX });
  const renders = new Queue('renders', { connection, prefix: PREFIX });
  const thumbs = new Bull('thumbnails', { prefix: PREFIX, redis: { host: '127.0.0.1', port: server.port } });
  try {
    const lost = [];
    for (const j of before) {
      const job = j.lib === 'bull' ? await thumbs.getJob(j.id)
        : await (j.queue === 'emails' ? emails : renders).getJob(j.id);
      const state = !job ? 'missing' : j.lib === 'bull' ? await job.getState()
        : await (j.queue === 'emails' ? emails : renders).getJobState(j.id);
      // An active job must also still hold its lock (the library's `<job>:lock` key).
      const unlocked = j.state === 'active' && !(await client.exists(`${PREFIX}:${j.queue}:${j.id}:lock`));
      if (!job || state !== j.state || JSON.stringify(job.data) !== j.data || unlocked) {
        lost.push(`${j.queue}:${j.id} (${j.state} -> ${state}${unlocked ? ', lock gone' : ''})`);
      }
    }
    const byState = {};
    for (const j of before) byState[`${j.queue} ${j.state}`] = (byState[`${j.queue} ${j.state}`] || 0) + 1;
    const summary = Object.entries(byState).map(([k, n]) => `${n} ${k}`).join(', ');
    check(lost.length === 0, `every live job is still there, same state and data, active ones locked (getJob/getState): ${summary}`,
      lost.slice(0, 5).join(', '));

    const after = { emails: await emails.getJobCounts(), thumbnails: await thumbs.getJobCounts() };
    for (const [name, states] of [['emails', BULLMQ_LIVE], ['thumbnails', BULL_LIVE]]) {
      const changed = states.filter((s) => after[name][s] !== beforeCounts[name][s]);
      check(changed.length === 0, `${name}: getJobCounts() of live states unchanged (${states.map((s) => `${s} ${after[name][s]}`).join(', ')})`,
        changed.map((s) => `${s}: ${beforeCounts[name][s]} -> ${after[name][s]}`).join(', '));
      if (limits) await checkLimits(name, name === 'emails' ? emails : thumbs, limits, beforeCounts[name], after[name], sweptAt, check);
    }

    // BullMQ: a new job gets the next id; workers run it, the waiting jobs and the parents.
    const lastId = Number(await client.get(`${PREFIX}:emails:id`));
    const fresh = await emails.add('send', emailJob(rng(3), 0));
    const runnable = before.filter((j) => j.lib === 'bullmq' && ['waiting', 'prioritized', 'waiting-children'].includes(j.state));
    const workers = [new Worker('emails', sendEmail, { connection, prefix: PREFIX, concurrency: 50 }),
      new Worker('renders', sendEmail, { connection, prefix: PREFIX, concurrency: 50 })];
    const done = async () => {
      if (!FINISHED.includes(await emails.getJobState(fresh.id))) return false;
      for (const j of runnable) {
        if (!FINISHED.includes(await (j.queue === 'emails' ? emails : renders).getJobState(j.id))) return false;
      }
      return true;
    };
    let ok = true;
    try { await waitFor(done, 'BullMQ workers', 60000); } catch { ok = false; }
    for (const w of workers) await w.close();
    check(fresh.id === String(lastId + 1), `emails: a new job gets the next id (${fresh.id})`);
    check(ok, `emails: a BullMQ worker processes the new job and the ${runnable.length} waiting, prioritized and parent jobs (children in renders first)`);

    // Bull: the same.
    const bullLast = Number(await client.get(`${PREFIX}:thumbnails:id`));
    const bullFresh = await thumbs.add('resize', thumbnailJob(rng(4), 0));
    const bullRunnable = before.filter((j) => j.lib === 'bull' && j.state === 'waiting');
    thumbs.process('*', 50, makeThumbnails);
    let bullOk = true;
    try {
      await waitFor(async () => {
        if (!FINISHED.includes(await (await thumbs.getJob(bullFresh.id)).getState())) return false;
        for (const j of bullRunnable) if (!FINISHED.includes(await (await thumbs.getJob(j.id)).getState())) return false;
        return true;
      }, 'the Bull worker', 60000);
    } catch { bullOk = false; }
    check(String(bullFresh.id) === String(bullLast + 1), `thumbnails: a new job gets the next id (${bullFresh.id})`);
    check(bullOk, `thumbnails: a Bull worker processes the new job and the ${bullRunnable.length} waiting jobs`);
  } finally {
    await emails.close();
    await renders.close();
    await thumbs.close();
  }
}

module.exports = { LIMITS, PREFIX, buildBull, buildBullmq, checkQueues, jobCounts, liveJobs };
