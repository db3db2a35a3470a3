'use strict';
// Test harness: a real redis-server with the retention module loaded, on a free loopback
// port, killed when the test ends. Binary and module come from RETENTION_SERVER_BIN and
// RETENTION_MODULE (defaults: redis-server on PATH, the repo's release build).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const IORedis = require('ioredis');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SERVER_BIN = process.env.RETENTION_SERVER_BIN || 'redis-server';
const MODULE = process.env.RETENTION_MODULE ||
  path.join(REPO, 'target', 'release', 'libredis_retention.so');

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, what, limitMs = 30000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts a server; `policy` (an object) becomes its policy file. The sweeper is paused. */
async function startServer({ policy, extra = [] } = {}) {
  if (!fs.existsSync(MODULE)) {
    throw new Error(`module not built: ${MODULE} (run cargo build --release or set RETENTION_MODULE)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retention-compat-'));
  const moduleArgs = [MODULE, 'enabled', 'no'];
  if (policy) {
    const file = path.join(dir, 'policy.json');
    fs.writeFileSync(file, JSON.stringify(policy));
    moduleArgs.push('policy-file', file);
  }
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes',
    '--repl-diskless-sync-delay', '0', '--logfile', path.join(dir, 'server.log'),
    '--loadmodule', ...moduleArgs, ...extra];
  const child = spawn(SERVER_BIN, args, { stdio: 'ignore' });
  let exited = false;
  child.on('exit', () => { exited = true; });
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const client = new IORedis({ ...connection, lazyConnect: true, retryStrategy: () => 50 });
  client.on('error', () => {}); // refused connections while the server starts are expected
  await waitFor(async () => {
    if (exited) throw new Error(`server exited: ${readLog(dir)}`);
    try {
      if (client.status === 'wait') await client.connect();
      return (await client.ping()) === 'PONG';
    } catch { return false; }
  }, 'server start');
  return {
    port, dir, connection, client,
    log: () => readLog(dir),
    async stop() {
      client.disconnect();
      child.kill('SIGKILL');
      await new Promise((r) => (exited ? r() : child.on('exit', r)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(dir) {
  try { return fs.readFileSync(path.join(dir, 'server.log'), 'utf8'); } catch { return ''; }
}

/** Every key under `base` (`<prefix>:<queue>:`) as its suffix, sorted. */
async function suffixes(client, base) {
  const out = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${base.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) out.push(k.slice(base.length));
  } while (cursor !== '0');
  return out.sort();
}

/** RETENTION.JOBS ... COUNTS as an object. */
async function moduleCounts(client, prefix, queue, ...extra) {
  const flat = await client.call('RETENTION.JOBS', 'COUNTS', prefix, queue, ...extra);
  const counts = {};
  for (let i = 0; i < flat.length; i += 2) counts[flat[i]] = Number(flat[i + 1]);
  return counts;
}

/** A flat RESP2 map reply as an object (one level). */
function flatToObject(flat) {
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

/**
 * Rewrites the finish time of every finished job (zset score and hash `finishedOn`
 * together, as moveToFinished writes them) to now - ageOf(id).
 */
async function rewriteFinishTimes(client, base, ageOf) {
  const now = Date.now();
  for (const set of ['completed', 'failed']) {
    const ids = await client.zrange(`${base}${set}`, 0, -1);
    const multi = client.multi();
    for (const id of ids) {
      const at = now - ageOf(id);
      multi.zadd(`${base}${set}`, at, id);
      multi.hset(`${base}${id}`, 'finishedOn', at);
    }
    await multi.exec();
  }
}

/** A deterministic pseudo-random number from a string (same for twin queues). */
function hashOf(text) {
  let h = 2166136261;
  for (const ch of text) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}

/** Ages spread over 0..10 days, never on a whole hour (no ties with hour-based cutoffs). */
function ageOf(normalizedId) {
  return (hashOf(normalizedId) % 240) * HOUR + 1234 + (hashOf(`m${normalizedId}`) % 1000) * 1000;
}

module.exports = {
  DAY, HOUR, MODULE, SERVER_BIN, ageOf, flatToObject, freePort, hashOf, moduleCounts,
  rewriteFinishTimes, sleep, startServer, suffixes, waitFor,
};
