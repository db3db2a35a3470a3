'use strict';
// The rest of the messy keyspace, written with pipelines as the applications would have
// left it: Celery results without expiry, unbounded audit streams, legacy active-run hashes,
// websocket channel state, and keys no rule governs (some with a TTL, most without).

const { DAY, HOUR, TENANTS, auditEntry, celeryResult, rng, runDoc } = require('./data');

async function inBatches(client, total, write, batch = 2000) {
  for (let i = 0; i < total; i += batch) {
    const p = client.pipeline();
    for (let k = i; k < Math.min(total, i + batch); k++) write(p, k);
    await p.exec();
  }
}

/**
 * `celery-task-meta-<uuid>`: results of the last 30 days, never expired (no result_expires).
 * Returns the names of the first 50.
 */
async function buildCelery(client, count) {
  const r = rng(10);
  const now = Date.now();
  const names = [];
  await inBatches(client, count, (p) => {
    const id = r.uuid();
    if (names.length < 50) names.push(`celery-task-meta-${id}`);
    p.set(`celery-task-meta-${id}`, celeryResult(r, id, r.int(0, 30 * DAY), now));
  });
  return names;
}

/** `audit:tenant-<id>` streams: a month of entries, oldest first, never trimmed. Returns their names. */
async function buildAudit(client, streams, perStream) {
  const r = rng(11);
  const now = Date.now();
  const span = 30 * DAY;
  const names = [];
  for (let s = 0; s < streams; s++) {
    const name = `audit:tenant-${1001 + s * 37}`;
    names.push(name);
    await inBatches(client, perStream, (p, k) => {
      const at = now - span + Math.floor((k * span) / perStream);
      p.xadd(name, `${at}-${k}`, ...auditEntry(r));
    });
  }
  return names;
}

/**
 * Legacy active runs: one hash per `{workspace}:project` (`HSET runs:active:{ws}:{proj} <id>
 * <json>`). Most runs are leftovers of crashed runners the client-side cleanup never removed
 * (started days ago); the rest started within the last two hours.
 */
async function buildLegacyRuns(client, sets, perSet) {
  const r = rng(12);
  const now = Date.now();
  const bases = [];
  for (let s = 0; s < sets; s++) {
    const ws = TENANTS[s % TENANTS.length];
    const proj = ['web', 'api', 'mobile', 'infra'][Math.floor(s / TENANTS.length) % 4];
    const base = `runs:active:{${ws}}:${proj}`;
    bases.push(base);
    await inBatches(client, perSet, (p, k) => {
      const started = r() < 0.85 ? now - r.int(4 * HOUR, 20 * DAY) : now - r.int(0, 2 * HOUR);
      const id = `run_${ws}_${proj}_${k}`;
      p.hset(base, id, runDoc(r, id, started, ws, proj));
    });
  }
  return bases;
}

/** Websocket channel state (`channel:<id>` hashes), governed by the policy's 1h rule. */
async function buildChannels(client, count) {
  const r = rng(13);
  await inBatches(client, count, (p) => {
    p.hset(`channel:${r.uuid()}`, 'members', String(r.int(1, 40)), 'last_message_at', String(Date.now() - r.int(0, DAY)),
      'topic', r.pick(['deploys', 'alerts', 'support', 'random']));
  });
}

/**
 * Keys no rule governs: sessions the app gives a TTL, a product cache it never expires, user
 * preferences that must live forever, a few singletons.
 */
async function buildUngoverned(client, n) {
  const r = rng(14);
  await inBatches(client, n, (p) => {
    p.set(`session:${r.uuid()}`, JSON.stringify({ user: r.int(1, 50000), csrf: r.hex(32), roles: ['member'] }),
      'EX', r.int(600, 86400));
  });
  await inBatches(client, n * 2, (p, k) => {
    p.set(`cache:product:${k + 1000}`, JSON.stringify({ sku: `SKU-${k}`, title: `Product ${r.hex(8)}`,
      price_cents: r.int(199, 99999), stock: r.int(0, 500), description: 'Lorem ipsum dolor sit amet. '.repeat(r.int(2, 8)) }));
  });
  await inBatches(client, n, (p, k) => {
    p.hset(`user:${k + 1}:prefs`, 'theme', r.pick(['dark', 'light']), 'locale', r.pick(['en', 'de', 'fr']),
      'digest', r.pick(['daily', 'weekly', 'off']), 'tz', r.pick(['UTC', 'Europe/Berlin', 'America/New_York']));
  });
  await client.hset('feature-flags', 'new-checkout', '1', 'dark-mode', '1', 'beta-search', '0');
  await client.set('deploy:last', JSON.stringify({ sha: r.hex(40), at: new Date().toISOString() }));
}

module.exports = { buildAudit, buildCelery, buildChannels, buildLegacyRuns, buildUngoverned };
