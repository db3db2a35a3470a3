'use strict';
// RETENTION.CLIENTS with real BullMQ: KILL closes exactly the idle normal clients;
// the worker blocked in its pop, QueueEvents blocked in XREAD, subscribers (RESP2 and RESP3),
// the replica and MONITOR stay, and the worker still processes a job afterwards. Then the
// background reaper (retention.clients-idle-kill-s) with BullMQ's default settings.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const IORedis = require('ioredis');
const { Queue, Worker, QueueEvents } = require('bullmq');
const h = require('../lib/harness');

let master;
let replica;
const closers = [];

before(async () => {
  master = await h.startServer();
  replica = await h.startServer();
  await replica.client.call('REPLICAOF', '127.0.0.1', String(master.port));
  await h.waitFor(async () => (await replica.client.info('replication')).includes('master_link_status:up'),
    'replica sync');
});

after(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await replica?.stop();
  await master?.stop();
});

/** `CLIENT LIST` as objects (the fields these tests read). */
async function clientList(client) {
  const text = await client.client('LIST');
  return text.split('\n').filter(Boolean).map((line) => {
    const f = {};
    for (const word of line.split(' ')) {
      const eq = word.indexOf('=');
      if (eq > 0) f[word.slice(0, eq)] = word.slice(eq + 1);
    }
    return { id: Number(f.id), name: f.name, idle: Number(f.idle), flags: f.flags, cmd: f.cmd };
  });
}

/** The clients of a RETENTION.CLIENTS reply (RESP2: a flat map whose `clients` is an array
 * of flat maps) as objects, idle in seconds. */
async function retentionClients(client, ...args) {
  const reply = h.flatToObject(await client.call('RETENTION.CLIENTS', ...args));
  const clients = reply.clients.map((flat) => {
    const o = h.flatToObject(flat);
    return { id: Number(o.id), name: o.name, idle: Number(o.idle_ms) / 1000, killed: Number(o.killed) };
  });
  assert.equal(Number(reply.clients_killed), clients.filter((c) => c.killed === 1).length);
  return clients;
}

/** A plain connection that says who it is and then stays idle. */
async function idleClient(port, name) {
  const c = new IORedis({ host: '127.0.0.1', port, connectionName: name, retryStrategy: () => null });
  c.on('error', () => {});
  closers.push(async () => c.disconnect());
  return Number(await c.client('ID'));
}

/** A RESP3 subscriber over a raw socket (ioredis speaks RESP2 only). */
async function resp3Subscriber(port, channel) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  closers.push(async () => socket.destroy());
  let received = '';
  socket.on('data', (d) => { received += d.toString('latin1'); });
  socket.write('CLIENT ID\r\n');
  await h.waitFor(async () => /^:\d+\r\n/.test(received), 'CLIENT ID reply');
  const id = Number(received.match(/^:(\d+)/)[1]);
  socket.write(`HELLO 3\r\nSUBSCRIBE ${channel}\r\n`);
  return { id, heard: (text) => received.includes(text) };
}

async function waitClients(client, ids, what, ready) {
  await h.waitFor(async () => {
    const list = await clientList(client);
    return ids.every((id) => list.some((c) => c.id === id && ready(c)));
  }, what, 60000);
}

const sorted = (ids) => [...ids].sort((a, b) => a - b);

test('KILL closes exactly the idle normal clients; the BullMQ worker still processes a job', async () => {
  const admin = master.client;
  const { connection, port } = master;
  const processed = [];
  // A long drainDelay keeps the worker in one BZPOPMIN; a short stalledInterval keeps its
  // command connection busy (with BullMQ's default, 30 s, that connection idles too: see the
  // background test).
  const worker = new Worker('reap', async (job) => { processed.push(job.id); return 'ok'; },
    { connection, drainDelay: 60, stalledInterval: 500 });
  closers.push(() => worker.close());
  const queueEvents = new QueueEvents('reap', { connection });
  closers.push(() => queueEvents.close());
  await worker.waitUntilReady();
  await queueEvents.waitUntilReady();

  const sub2 = new IORedis({ ...connection });
  closers.push(async () => sub2.disconnect());
  const sub2Id = Number(await sub2.client('ID'));
  const heard2 = [];
  sub2.on('message', (_ch, msg) => heard2.push(msg));
  await sub2.subscribe('news');
  const sub3 = await resp3Subscriber(port, 'news3');
  // lazyConnect: monitor() opens its own connection; the instance itself never connects.
  const monitor = await new IORedis({ ...connection, lazyConnect: true }).monitor();
  closers.push(async () => monitor.disconnect());

  const idleIds = [await idleClient(port, 'idle-1'), await idleClient(port, 'idle-2'), await idleClient(port, 'idle-3')];

  // Find the worker's and QueueEvents' blocked connections by BullMQ's own client names.
  let blockedIds = [];
  await h.waitFor(async () => {
    const list = await clientList(admin);
    blockedIds = list.filter((c) => c.flags.includes('b') && c.name.startsWith('bull:')).map((c) => c.id);
    return blockedIds.length === 2;
  }, 'worker and QueueEvents blocked', 60000);
  const monitorId = (await clientList(admin)).find((c) => c.flags.includes('O')).id;
  const replicaId = (await clientList(admin)).find((c) => c.flags.includes('S')).id;
  await waitClients(admin, [sub2Id, sub3.id], 'subscribed', (c) => c.flags.includes('P'));
  await waitClients(admin, idleIds, 'idle clients', (c) => c.idle >= 2);

  const listed = await retentionClients(admin, 'IDLE', '1');
  assert.deepEqual(sorted(listed.map((c) => c.id)), sorted(idleIds));
  assert.ok(listed.every((c) => c.killed === 0 && c.idle >= 2 && c.name.startsWith('idle-')));

  const killed = await retentionClients(admin, 'IDLE', '1', 'KILL');
  assert.deepEqual(sorted(killed.map((c) => c.id)), sorted(idleIds));
  assert.ok(killed.every((c) => c.killed === 1));
  // Closed clients are freed before the server's event loop sleeps.
  await h.waitFor(async () => {
    const ids = (await clientList(admin)).map((c) => c.id);
    return idleIds.every((id) => !ids.includes(id));
  }, 'the idle clients gone');
  const live = (await clientList(admin)).map((c) => c.id);
  for (const id of [...blockedIds, sub2Id, sub3.id, monitorId, replicaId]) {
    assert.ok(live.includes(id), `client ${id} was closed`);
  }
  const stats = h.flatToObject(await admin.call('RETENTION.STATS', 'GET'));
  assert.equal(Number(stats.clients_killed), idleIds.length);

  // The worker wakes from the same BZPOPMIN and processes a new job; the events still flow.
  const queue = new Queue('reap', { connection });
  closers.push(() => queue.close());
  const job = await queue.add('after-kill', { n: 1 });
  assert.equal(await job.waitUntilFinished(queueEvents, 30000), 'ok');
  assert.deepEqual(processed, [job.id]);
  assert.equal(await admin.publish('news', 'hello'), 1);
  assert.equal(await admin.publish('news3', 'hello3'), 1);
  await h.waitFor(async () => heard2.includes('hello') && sub3.heard('hello3'), 'subscribers heard');
  assert.match(await replica.client.info('replication'), /master_link_status:up/);
  const stillBlocked = (await clientList(admin)).filter((c) => blockedIds.includes(c.id));
  assert.equal(stillBlocked.length, 2, 'the worker or QueueEvents reconnected instead of staying');

  await queue.close();
  await worker.close();
  await queueEvents.close();
});

test('the background reaper with BullMQ defaults: idle clients closed, the worker keeps working', async () => {
  const admin = master.client;
  const { connection, port } = master;
  const processed = [];
  // BullMQ's defaults: the command connection idles up to stalledInterval (30 s) between
  // checks, so the reaper may close it; ioredis reconnects and the worker carries on.
  const worker = new Worker('reap-bg', async (job) => { processed.push(job.id); return 'done'; }, { connection });
  closers.push(() => worker.close());
  worker.on('error', () => {});
  await worker.waitUntilReady();
  const idleId = await idleClient(port, 'idle-bg');
  const before = Number(h.flatToObject(await admin.call('RETENTION.STATS', 'GET')).clients_killed);

  await admin.config('SET', 'retention.clients-idle-kill-s', '1');
  await admin.config('SET', 'retention.enabled', 'yes');
  try {
    // The admin connection may itself be closed while idle: ioredis reconnects and retries.
    await h.waitFor(async () => !(await clientList(admin)).some((c) => c.id === idleId),
      'the idle client closed by the reaper', 60000);
    const queue = new Queue('reap-bg', { connection });
    closers.push(() => queue.close());
    const queueEvents = new QueueEvents('reap-bg', { connection });
    closers.push(() => queueEvents.close());
    await queueEvents.waitUntilReady();
    // Long enough for the worker's command connection to have idled past the limit.
    await h.sleep(3000);
    const job = await queue.add('under-reaper', { n: 2 });
    assert.equal(await job.waitUntilFinished(queueEvents, 60000), 'done');
    assert.deepEqual(processed, [job.id]);
    const after = Number(h.flatToObject(await admin.call('RETENTION.STATS', 'GET')).clients_killed);
    assert.ok(after > before, `clients_killed ${before} -> ${after}`);
    await queue.close();
    await queueEvents.close();
  } finally {
    await admin.config('SET', 'retention.clients-idle-kill-s', '0');
    await admin.config('SET', 'retention.enabled', 'no');
  }
  await worker.close();
});
