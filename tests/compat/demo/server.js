'use strict';
// The demo's private server: redis-server (or RETENTION_SERVER_BIN) on a free loopback port
// with a scratch directory, the module loaded with `enabled no` and an empty policy file in that
// directory (the demo writes RETENTION.SUGGEST's policy there), so nothing is cleaned before
// the demo says so. Spawned in its own process group: with --keep
// it outlives the demo (and a Ctrl-C in the shell that ran it).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const IORedis = require('ioredis');
const { freePort, sleep } = require('../lib/harness');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SERVER_BIN = process.env.RETENTION_SERVER_BIN || 'redis-server';
const MODULE = process.env.RETENTION_MODULE ||
  path.join(REPO, 'target', 'release', 'libredis_retention.so');
/** The policy the server starts with: no rules (RETENTION.SUGGEST proposes them). */
const EMPTY_POLICY = '{ "rules": [] }\n';


function readLog(dir) {
  try { return fs.readFileSync(path.join(dir, 'server.log'), 'utf8'); } catch { return ''; }
}

/**
 * Starts the server. `maxmemory` is set (with `noeviction`, what BullMQ and Bull require) so
 * REPORT shows a ratio, far enough above the demo's data that pressure mode stays off.
 */
async function startServer({ maxmemory = '1gb' } = {}) {
  if (!fs.existsSync(MODULE)) {
    throw new Error(`module not built: ${MODULE} (run cargo build --release or set RETENTION_MODULE)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retention-demo-'));
  const policy = path.join(dir, 'policy.json');
  fs.writeFileSync(policy, EMPTY_POLICY);
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes',
    '--maxmemory', maxmemory, '--maxmemory-policy', 'noeviction',
    '--logfile', path.join(dir, 'server.log'),
    '--loadmodule', MODULE, 'enabled', 'no', 'policy-file', policy];
  const child = spawn(SERVER_BIN, args, { stdio: 'ignore', detached: true });
  let exited = false;
  let spawnError = null;
  child.on('error', (e) => { spawnError = e; exited = true; });
  child.on('exit', () => { exited = true; });
  const client = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: null,
    retryStrategy: () => 50 });
  client.on('error', () => {}); // refused connections while the server starts are expected
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited) {
      throw new Error(`${SERVER_BIN} did not start: ${spawnError ? spawnError.message : readLog(dir)}`);
    }
    try {
      if (client.status === 'wait') await client.connect();
      if ((await client.ping()) === 'PONG') break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${SERVER_BIN} did not answer PING: ${readLog(dir)}`);
    await sleep(20);
  }
  return {
    port, dir, client, bin: SERVER_BIN, module: MODULE, policy, pid: child.pid,
    connection: { host: '127.0.0.1', port, maxRetriesPerRequest: null },
    log: () => readLog(dir),
    /** Leaves the server running after the demo exits. */
    detach() {
      client.disconnect();
      child.unref();
    },
    /** Kills the server at once (from a signal handler: no await). */
    killNow() {
      if (!exited) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    async stop() {
      client.disconnect();
      if (!exited) {
        child.kill('SIGKILL');
        await new Promise((r) => (exited ? r() : child.on('exit', r)));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { MODULE, REPO, SERVER_BIN, startServer };
