'use strict';
// One pass (RETENTION.SWEEP) over a BullMQ queue of N finished jobs, cleaned once by
// `max_memory` and once by `max_len` set to keep exactly as many jobs: the cost of measuring
// the kept jobs' memory, side by side with the count limit doing the same removal.
//
//   node bench/memory.js [--jobs N] [--keep-percent P] [--rounds R] [--smoke]
//
// Each measurement runs on a freshly flushed server with the queue rebuilt server-side (EVAL,
// 50k jobs per script): N completed jobs as BullMQ leaves them (a hash of 9 fields with ~100 to
// ~600 bytes of data and return value, every tenth job with a :logs list), finish times 1 ms
// apart. The max_memory budget is P% (default 10) of the jobs' memory as MEMORY USAGE counts it
// (summed over a sample), so the newest ~P% stay; the max_len run keeps exactly the number the
// last max_memory run kept (rounds alternate which goes first; the first round starts with
// max_memory). --smoke checks the end states only (no timing claims).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');

function parseArgs(argv) {
  const o = { jobs: 1_000_000, keepPercent: 10, rounds: 1, smoke: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--jobs') o.jobs = Number(argv[++i]);
    else if (a === '--keep-percent') o.keepPercent = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else throw new Error(`unknown argument ${a} (use --jobs N, --keep-percent P, --rounds R, --smoke)`);
  }
  if (!(o.jobs > 0 && o.keepPercent > 0 && o.keepPercent < 100 && o.rounds > 0)) throw new Error('bad arguments');
  return o;
}

const BASE = 'bench:q:';
const FILL = `
local base, first, last, t0 = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = first, last do
  local id = tostring(i)
  local at = t0 + i
  local data = '{"n":' .. i .. ',"pad":"' .. string.rep('d', 50 + (i * 7919) % 400) .. '"}'
  redis.call('HSET', base .. id, 'name', 'work', 'data', data, 'opts', '{"attempts":1}',
    'timestamp', at - 20, 'delay', 0, 'priority', 0, 'processedOn', at - 10, 'finishedOn', at,
    'returnvalue', '{"ok":' .. i .. ',"r":"' .. string.rep('r', (i * 104729) % 200) .. '"}')
  if i % 10 == 0 then redis.call('RPUSH', base .. id .. ':logs', 'line one', 'line two') end
  redis.call('ZADD', base .. 'completed', at, id)
end
return last - first + 1`;

async function fill(c, jobs) {
  await c.hset(`${BASE}meta`, 'version', 'bullmq:5.81.5', 'opts.maxLenEvents', '10000');
  await c.set(`${BASE}id`, String(jobs));
  const t0 = Date.now() - 10 * 86_400_000;
  for (let first = 1; first <= jobs; first += 50_000) {
    const last = Math.min(jobs, first + 49_999);
    await c.eval(FILL, 1, BASE, first, last, t0);
  }
}

/** Memory of `n` evenly spread jobs (hash + logs), scaled to the whole queue. */
async function estimatedJobsMemory(c, jobs) {
  const n = Math.min(jobs, 2000);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    const id = 1 + Math.floor((k * jobs) / n);
    for (const key of [`${BASE}${id}`, `${BASE}${id}:logs`]) {
      sum += Number((await c.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) || 0);
    }
  }
  return Math.round((sum * jobs) / n);
}

/** The rule with `retention` for the queue's completed jobs; none with null. */
async function setPolicy(server, retention) {
  const policy = { rules: retention === null ? [] : [{ name: 'bench', match: 'bench:*', queue: { flavor: 'bullmq', completed: retention } }] };
  fs.writeFileSync(path.join(server.dir, 'policy.json'), JSON.stringify(policy));
  await server.client.call('RETENTION.RELOAD');
}

/** One pass; its wall time, the module's own duration, slices and the jobs removed. */
async function pass(c) {
  await c.call('RETENTION.STATS', 'RESET');
  const started = process.hrtime.bigint();
  const report = h.flatToObject(await c.call('RETENTION.SWEEP'));
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const stats = h.flatToObject(await c.call('RETENTION.STATS', 'GET'));
  assert.equal(Number(report.errors ?? 0), 0, `pass errors: ${JSON.stringify(report)}`);
  return {
    wallMs,
    durationMs: Number(report.duration_ms),
    slices: Number(report.slices),
    maxSliceUs: Number(stats.max_slice_us ?? 0),
    removed: Number(report.jobs_removed),
  };
}

/** End state: the newest `kept` jobs stay whole, every older one is gone with its logs. */
async function checkEndState(c, jobs, kept) {
  assert.equal(await c.zcard(`${BASE}completed`), kept, 'kept jobs in the set');
  const ids = await c.zrange(`${BASE}completed`, 0, -1);
  assert.equal(Number(ids[0]), jobs - kept + 1, 'the newest are kept');
  const oldest = jobs - kept + 1;
  for (const id of [1, 10, oldest - 1, oldest - 10 + (oldest % 10)].filter((i) => i >= 1 && i < oldest)) {
    assert.equal(await c.exists(`${BASE}${id}`, `${BASE}${id}:logs`), 0, `job ${id} removed`);
  }
  assert.equal(await c.exists(`${BASE}${oldest}`), 1, 'the oldest kept job stays');
  // Every key left: the kept jobs, their logs, meta, id, the set and the events stream.
  const logs = Math.floor(jobs / 10) - Math.floor((oldest - 1) / 10);
  assert.equal(await c.dbsize(), kept + logs + 4, 'nothing else left or removed');
}

function fmt(ms) { return `${(ms / 1000).toFixed(2)} s`; }

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const server = await h.startServer({ policy: { rules: [] } });
  const c = server.client;
  try {
    const info = await c.info('server');
    const version = (info.match(/valkey_version:(\S+)/) || info.match(/redis_version:(\S+)/) || [])[1];
    const kind = /server_name:valkey/.test(info) ? 'Valkey' : 'Redis';
    console.log(`# max_memory vs max_len: one pass over ${o.jobs} finished BullMQ jobs, keeping ~${o.keepPercent}% (${kind} ${version}, ${o.rounds} round(s))`);
    const rows = { memory: [], len: [] };
    let budget;
    let kept;
    for (let round = 0; round < o.rounds; round++) {
      // Alternate which runs first: the allocator and the machine are warmer for the second.
      const order = round % 2 === 0 ? ['memory', 'len'] : ['len', 'memory'];
      for (const which of order) {
        await setPolicy(server, null); // nothing acts while the queue is built
        await c.flushall();
        await fill(c, o.jobs);
        if (budget === undefined) budget = Math.floor((await estimatedJobsMemory(c, o.jobs)) * o.keepPercent / 100);
        await setPolicy(server, which === 'memory' ? { max_memory: String(budget) } : { max_len: kept });
        const r = await pass(c);
        if (which === 'memory') {
          // Allocation sizes can differ a little between runs (glibc malloc especially): each
          // max_memory run sets the count the following max_len run keeps.
          kept = o.jobs - r.removed;
        } else {
          assert.equal(r.removed, o.jobs - kept, 'max_len removes as many as max_memory did');
        }
        await checkEndState(c, o.jobs, kept);
        rows[which].push(r);
        console.log(`round ${round + 1} ${which.padEnd(6)} removed ${r.removed}, kept ${kept}: wall ${fmt(r.wallMs)}, pass ${r.durationMs} ms in ${r.slices} slices, max slice ${r.maxSliceUs} µs`);
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const mem = median(rows.memory.map((r) => r.durationMs));
    const len = median(rows.len.map((r) => r.durationMs));
    console.log(`budget ${budget} bytes (${(budget / 1048576).toFixed(1)} MB) kept ${kept} of ${o.jobs} jobs`);
    if (o.smoke) {
      console.log('smoke: end states checked (no timing)');
    } else {
      console.log(`median pass: max_memory ${mem} ms, max_len ${len} ms: ratio ${(mem / len).toFixed(2)}x (target <= 1.5x)`);
    }
  } finally {
    await server.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
