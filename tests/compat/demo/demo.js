#!/usr/bin/env node
'use strict';
// The five-minute tour on a realistic messy keyspace (run by scripts/demo):
//   node tests/compat/demo/demo.js [--scale small|full] [--keep]
// Starts a private server with the module, no rules and background work off, builds the
// keyspace (queues.js, keyspace.js), asks RETENTION.SUGGEST for a policy and loads it, shows
// RETENTION.REPORT, a dry-run sweep and RETENTION.EXPLAIN, applies the policy, shows the report
// again and what changed, then checks with BullMQ and Bull themselves that every live job
// survived and the queues still work.
// Exits 1 when a check fails. Env: RETENTION_SERVER_BIN, RETENTION_MODULE, DEMO_SCALE.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { REPO, startServer } = require('./server');
const queues = require('./queues');
const keyspace = require('./keyspace');

const SCALES = {
  // The test's size (tests/compat/test/demo.test.js): seconds.
  small: { bullmq: 2000, flows: 20, bull: 1000, live: 24, celery: 2000, audit: [4, 3000], runs: [2, 200], other: 500 },
  // The README's size: about 200 MB, well under a minute on a 2-core machine.
  full: { bullmq: 40000, flows: 400, bull: 15000, live: 120, celery: 40000, audit: [12, 20000], runs: [3, 2000], other: 10000 },
};

function parseArgs(argv) {
  const opts = { scale: process.env.DEMO_SCALE || 'full', keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--keep') opts.keep = true;
    else if (a === '--scale') opts.scale = argv[++i];
    else if (a.startsWith('--scale=')) opts.scale = a.slice('--scale='.length);
    else if (a === '-h' || a === '--help') opts.help = true;
    else throw new Error(`unknown argument '${a}' (use --scale small|full, --keep)`);
  }
  if (!SCALES[opts.scale]) throw new Error(`unknown scale '${opts.scale}' (use small or full)`);
  return opts;
}

const out = (line = '') => process.stdout.write(`${line}\n`);
let sections = 0;
const section = (title) => {
  if (sections++) out();
  out(`=== ${title}`);
};

function human(bytes) {
  const n = Math.abs(bytes);
  const sign = bytes < 0 ? '-' : '';
  if (n >= 1024 * 1024 * 1024) return `${sign}${(n / 1024 / 1024 / 1024).toFixed(2)}G`;
  if (n >= 1024 * 1024) return `${sign}${(n / 1024 / 1024).toFixed(2)}M`;
  if (n >= 1024) return `${sign}${(n / 1024).toFixed(2)}K`;
  return `${sign}${n}B`;
}

const num = (n) => Number(n).toLocaleString('en-US');

function flatToObject(flat) {
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

/** used_memory, keys and keys without a TTL, from INFO (every database). */
async function serverFacts(client) {
  const mem = await client.info('memory');
  const ks = await client.info('keyspace');
  let keys = 0;
  let expires = 0;
  for (const m of ks.matchAll(/^db\d+:keys=(\d+),expires=(\d+)/gm)) {
    keys += Number(m[1]);
    expires += Number(m[2]);
  }
  return { used: Number(/^used_memory:(\d+)/m.exec(mem)[1]), keys, noTtl: keys - expires };
}

/** A command as typed in redis-cli, then its reply. */
async function show(client, args, render) {
  out();
  out(`redis> ${args.join(' ')}`);
  const reply = await client.call(...args);
  out(render ? render(reply) : String(reply).replace(/\n$/, ''));
  return reply;
}

/** EXPLAIN's `now` and `last`: maps of an action, its values and the reason. */
const ACTION_FIELDS = ['now', 'last'];

/** `action (values): reason` of EXPLAIN's `now` or `last`. */
function renderAction(flat) {
  const { action, reason, ...values } = flatToObject(flat);
  const shown = Object.entries(values).filter(([k, v]) => !(k === 'dry_run' && Number(v) === 0));
  const details = shown.length ? ` (${shown.map(([k, v]) => `${k} ${v}`).join(', ')})` : '';
  return `${action}${details}: ${reason}`;
}

/** A map reply as aligned `field  value` lines (nested arrays summarized). */
function renderMap(flat, fields) {
  const o = flatToObject(flat);
  const names = fields || Object.keys(o);
  const width = Math.max(...names.map((n) => n.length));
  return names.filter((n) => n in o).map((n) => {
    const v = o[n];
    const text = ACTION_FIELDS.includes(n) ? renderAction(v)
      : Array.isArray(v) ? (v.length ? v.map((x) => `\n${' '.repeat(width + 4)}${x}`).join('') : '(empty)') : v;
    return `  ${n.padEnd(width)}  ${text}`;
  }).join('\n');
}

/** The sweep report's counters that say what happened, then the per-rule counters. */
function renderSweep(flat) {
  const o = flatToObject(flat);
  const fields = ['dry_run', 'duration_ms', 'slices', 'max_slice_us', 'keys_scanned', 'keys_matched', 'ttl_set',
    'ttl_lowered', 'keys_deleted', 'entries_trimmed', 'jobs_removed', 'runs_expired', 'skipped_wrong_type', 'errors'];
  const lines = [renderMap(flat, fields)];
  const rules = o.rules || [];
  const rows = [];
  const width = Math.max(16, ...rules.filter((_, i) => i % 2 === 0).map((name) => String(name).length));
  for (let i = 0; i < rules.length; i += 2) {
    const r = flatToObject(rules[i + 1]);
    const did = Object.entries(r).filter(([k, v]) => k !== 'keys_matched' && Number(v) > 0).map(([k, v]) => `${k} ${num(v)}`);
    rows.push(`    ${String(rules[i]).padEnd(width)} matched ${num(r.keys_matched || 0).padStart(7)}  ${did.join(', ')}`.trimEnd());
  }
  if (rows.length) lines.push('  per rule:', ...rows);
  return lines.join('\n');
}

/**
 * The first of `names` whose last action EXPLAIN still remembers (its table is direct-mapped:
 * a later action may have taken an early one's slot), else the first.
 */
async function remembered(client, names) {
  for (const name of names) {
    const { last } = flatToObject(await client.call('RETENTION.EXPLAIN', name));
    if (flatToObject(last).action !== 'unknown') return name;
  }
  return names[0];
}

/** Who owns a key of the demo's keyspace (what the policy does to it comes from its rule). */
const OWNERS = [
  [/^bull:emails:/, 'bull:emails', 'BullMQ'],
  [/^bull:thumbnails:/, 'bull:thumbnails', 'Bull'],
  [/^bull:renders:/, 'bull:renders', 'BullMQ, only live jobs (children of waiting parents)'],
  [/^audit:/, 'audit:*', 'audit streams'],
  [/^runs:active:/, 'runs:active:*', 'active runs'],
  [/^celery-task-meta-/, 'celery-task-meta-*', 'Celery results'],
  [/^channel:/, 'channel:*', 'websocket channels'],
  [/^cache:product:/, 'cache:product:*', 'a product cache'],
  [/^session:/, 'session:*', 'sessions (with a TTL)'],
  [/./, 'other', 'user preferences, flags'],
];

/** A duration in ms as the policy writes it ("24h", "7d"), and back. */
const UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000 };
function durationMs(text) {
  if (typeof text === 'number') return text * 1000;
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(String(text));
  return m ? Number(m[1]) * UNITS[m[2]] : null;
}

/** What a policy rule does, in a few words. */
function ruleSummary(rule) {
  if (!rule) return 'no rule: untouched';
  const limits = (o) => (o ? [o.max_age, o.max_len].filter((v) => v !== undefined).join('/') : '-');
  if (rule.keep) return `rule ${rule.name}: kept as is`;
  if (rule.ttl) return `rule ${rule.name}: TTL ${rule.ttl} given, the memory comes back as they expire`;
  if (rule.queue) {
    return `rule ${rule.name}: finished jobs removed (completed ${limits(rule.queue.completed)}, failed ${limits(rule.queue.failed)})`;
  }
  if (rule.trim) return `rule ${rule.name}: trimmed (${Object.entries(rule.trim).map(([k, v]) => `${k} ${v}`).join(', ')})`;
  if (rule.runs) return `rule ${rule.name}: runs older than ${rule.runs.max_age || '3h'} expired from index and data`;
  return `rule ${rule.name}`;
}

/** A rule that frees memory at once when applied (the others give TTLs or keep). */
const removes = (rule) => Boolean(rule && (rule.queue || rule.trim || rule.runs));

/** The queue rule's limits as queues.checkQueues takes them: { completed: [ms, len], ... }. */
function queueLimits(rule) {
  const limits = {};
  for (const set of ['completed', 'failed']) {
    const o = (rule && rule.queue && rule.queue[set]) || {};
    limits[set] = [o.max_age === undefined ? null : durationMs(o.max_age), o.max_len === undefined ? null : o.max_len];
  }
  return limits;
}

/** Text wrapped at `width` columns, each line indented by `indent`. */
function wrap(text, indent, width = 100) {
  const lines = [];
  let line = '';
  for (const word of String(text).split(/\s+/)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(indent + line);
  return lines.join('\n');
}

/** RETENTION.SUGGEST's map for people: each rule with its evidence and effect, the unknown groups. */
function renderSuggestion(flat) {
  const o = flatToObject(flat);
  const lines = [];
  const rules = o.rules.map(flatToObject);
  lines.push(`policy  ${rules.length} rules (the JSON below)`);
  lines.push('rules');
  rules.forEach((r, i) => {
    const match = Array.isArray(r.match) ? r.match.join(' ') : r.match;
    lines.push(`  ${i + 1}. ${r.name}  ${r.action}  ${match}  (owner ${r.owner})`);
    lines.push(wrap(r.comment, '       '));
    const effect = flatToObject(r.effect);
    const shown = Object.entries(effect).filter(([, v]) => Number(v) > 0)
      .map(([k, v]) => (k.endsWith('_bytes') ? `${k} ${human(Number(v))}` : `${k} ${num(v)}`));
    if (shown.length) lines.push(`       effect now: ${shown.join(', ')}`);
  });
  const unknown = o.unknown.map(flatToObject);
  lines.push(`unknown  ${unknown.length} groups of keys without TTL that no rule covers (most memory first)`);
  const width = Math.max(7, ...unknown.map((u) => u.pattern.length));
  lines.push(`  ${'PATTERN'.padEnd(width)}  ${'KEYS'.padStart(6)}  ${'NO TTL'.padStart(6)}  ${'MEMORY'.padStart(8)}  REASON`);
  for (const u of unknown) {
    lines.push(`  ${u.pattern.padEnd(width)}  ${String(u.keys).padStart(6)}  ${String(u.keys_without_ttl).padStart(6)}  ${human(Number(u.memory_bytes)).padStart(8)}  ${u.reason}`);
  }
  const walk = flatToObject(o.walk);
  lines.push(`walk  databases ${walk.databases.join(', ')}: ${num(walk.keys)} keys in ${walk.duration_ms} ms, ${walk.slices} slices`);
  return lines.join('\n');
}

/**
 * Memory per owner: `MEMORY USAGE <key> SAMPLES 0` (every element counted) summed over every
 * key. The default sampling (5 elements) misjudges BullMQ/Bull job hashes, whose few big
 * fields (data, returnvalue, stacktrace) sit among many small ones, by up to a third either way.
 */
async function memoryByOwner(client, samples = {}) {
  const owners = {};
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    const p = client.pipeline();
    for (const k of keys) p.memory('USAGE', k, 'SAMPLES', '0');
    const sizes = await p.exec();
    keys.forEach((k, i) => {
      const [, owner] = OWNERS.find(([re]) => re.test(k));
      owners[owner] = (owners[owner] || 0) + (Number(sizes[i][1]) || 0);
      // A job's hash (name ending in its id) stands for a queue better than a structure key.
      if (!samples[owner] || (/:\d+$/.test(k) && !/:\d+$/.test(samples[owner]))) samples[owner] = k;
    });
  } while (cursor !== '0');
  return owners;
}

/**
 * Every owner's keys in two digests: `names` (the key names) and `keys` (names, values by
 * DEBUG DIGEST-VALUE, and whether each has a TTL), and `noTtl`, its keys without a TTL.
 * Memory figures can move without a change (Valkey counts an expire time inside the key's own
 * allocation, and mixes it into DIGEST-VALUE), so "untouched" is judged by these.
 */
async function digestByOwner(client) {
  const lines = {};
  const noTtl = {};
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    if (!keys.length) continue;
    const digests = await client.call('DEBUG', 'DIGEST-VALUE', ...keys);
    const p = client.pipeline();
    for (const k of keys) p.pttl(k);
    const ttls = await p.exec();
    keys.forEach((k, i) => {
      const [, owner] = OWNERS.find(([re]) => re.test(k));
      const hasTtl = ttls[i][1] > 0;
      (lines[owner] = lines[owner] || []).push([k, `${k} ${digests[i]} ${hasTtl ? 'ttl' : 'none'}`]);
      noTtl[owner] = (noTtl[owner] || 0) + (hasTtl ? 0 : 1);
    });
  } while (cursor !== '0');
  const sha1 = (list) => crypto.createHash('sha1').update(list.sort().join('\n')).digest('hex');
  const out = {};
  for (const [owner, list] of Object.entries(lines)) {
    out[owner] = { names: sha1(list.map(([k]) => k)), keys: sha1(list.map(([, line]) => line)), noTtl: noTtl[owner] };
  }
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    out('usage: scripts/demo [--scale small|full] [--keep]');
    return 0;
  }
  const size = SCALES[opts.scale];
  const started = Date.now();
  const server = await startServer();
  // The server runs in its own process group (so --keep survives the shell's Ctrl-C): an
  // interrupted demo takes it down itself.
  // Same when the output goes away (`scripts/demo | head`) or anything is thrown outside main.
  const abort = (why) => {
    server.killNow();
    try { process.stderr.write(`demo: ${why}: server stopped\n`); } catch { /* stderr gone too */ }
    process.exit(130);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => abort(signal));
  process.stdout.on('error', (e) => abort(`stdout: ${e.code || e.message}`));
  process.on('uncaughtException', (e) => abort(e.stack || e));
  const c = server.client;
  let failures = 0;
  try {
    const info = await c.info('server');
    const version = /^valkey_version:(.*)$/m.exec(info) || /^redis_version:(.*)$/m.exec(info);
    section(`a private ${server.bin.split('/').pop()} ${version ? version[1].trim() : ''} on 127.0.0.1:${server.port}, scale ${opts.scale}`);
    const shown = (file) => (file.startsWith(`${REPO}/`) ? path.relative(REPO, file) : file);
    out(`module ${shown(server.module)}`);
    out(`policy ${shown(server.policy)} (no rules yet; retention.enabled no: nothing is cleaned until the demo says so)`);

    section('building a messy keyspace (the real BullMQ and Bull libraries, then pipelined writes)');
    const t = Date.now();
    const [emails, thumbs] = await Promise.all([
      queues.buildBullmq(server, { jobs: size.bullmq, flows: size.flows, live: size.live }),
      queues.buildBull(server, { jobs: size.bull, live: size.live }),
    ]);
    const built = (what, text) => out(`${what.padEnd(27)} ${text}`);
    built('bull:emails', `BullMQ: ${num(size.bullmq)} emails sent by a worker (some bounced after 3 attempts, some logged),`);
    built('', `${size.flows} finished flows, an hourly job scheduler; nobody set removeOnComplete/removeOnFail`);
    built('bull:thumbnails', `Bull: ${num(size.bull)} image resizes, the same way, and a repeatable job`);
    built('', 'finished jobs spread over the last 14 days; then live jobs in both: waiting, prioritized,');
    built('', 'delayed by hours, one active holding its lock; BullMQ parents waiting for children in bull:renders');
    const celery = await keyspace.buildCelery(c, size.celery);
    built('celery-task-meta-*', `${num(size.celery)} Celery results of the last 30 days, no result_expires`);
    const audit = await keyspace.buildAudit(c, size.audit[0], size.audit[1]);
    built('audit:tenant-<id>', `${size.audit[0]} streams of ${num(size.audit[1])} entries over 30 days, never trimmed`);
    const bases = await keyspace.buildLegacyRuns(c, size.runs[0], size.runs[1]);
    built('runs:active:{ws}:<project>', `${size.runs[0]} legacy hashes of ${num(size.runs[1])} runs (HSET id json), 85% left by crashed runners`);
    await keyspace.buildChannels(c, Math.ceil(size.other / 5));
    await keyspace.buildUngoverned(c, size.other);
    built('channel:*', `${num(Math.ceil(size.other / 5))} websocket channel hashes`);
    built('session:*, cache:product:*,', 'sessions (the app gives them a TTL), a product cache nobody expires,');
    built('user:*:prefs, ...', 'user preferences and flags that must live forever (no TTL)');
    out(`(built in ${((Date.now() - t) / 1000).toFixed(1)} s)`);

    section('migrating the legacy run hashes to index + data (README: "Migrating from a legacy hash")');
    let migrated = 0;
    for (const base of bases) {
      const r = flatToObject(await c.call('ACTIVERUNS.MIGRATE', base, base, 'SCOREFIELD', 'startedAt'));
      migrated += Number(r.migrated);
    }
    out(`redis> ACTIVERUNS.MIGRATE ${bases[0]} ${bases[0]} SCOREFIELD startedAt   (and ${bases.length - 1} more)`);
    out(`${num(migrated)} runs migrated; each base is now <base>:index (zset) + <base>:data (hash)`);

    section('what policy does the module suggest? (RETENTION.SUGGEST reads only)');
    await show(c, ['RETENTION.SUGGEST'], renderSuggestion);

    section('the suggestion becomes the policy');
    const text = await c.call('RETENTION.SUGGEST', 'FORMAT', 'policy');
    fs.writeFileSync(server.policy, text);
    out(`$ redis-cli --raw RETENTION.SUGGEST FORMAT policy > ${shown(server.policy)}`);
    out(`$ cat ${shown(server.policy)}`);
    out(text.replace(/\n$/, ''));
    await show(c, ['RETENTION.RELOAD']);
    const policy = JSON.parse(text);

    const live = await queues.liveJobs(server);
    const countsBefore = await queues.jobCounts(server);
    const factsBefore = await serverFacts(c);
    const samples = {};
    const ownersBefore = await memoryByOwner(c, samples);
    const digestsBefore = await digestByOwner(c);
    // The rule that governs each owner's keys (EXPLAIN of one of them) and what it does.
    const ownerRule = {};
    for (const [owner, key] of Object.entries(samples)) {
      const name = flatToObject(await c.call('RETENTION.EXPLAIN', key)).rule;
      ownerRule[owner] = policy.rules.find((r) => r.name === name) || null;
    }

    section('where did the memory go?');
    await show(c, ['RETENTION.REPORT', 'GROUPS', '12', 'TOP', '1', 'FORMAT', 'text']);

    section('what would the policy do? (nothing is changed)');
    await show(c, ['RETENTION.SWEEP', 'DRYRUN'], renderSweep);

    section('why would it? (RETENTION.EXPLAIN)');
    // The oldest finished emails, which the pass removes, and some Celery results.
    const oldest = (await c.zrange('bull:emails:completed', 0, 49)).map((id) => `bull:emails:${id}`);
    const explain = ['key', 'type', 'rule', 'matched', 'now'];
    await show(c, ['RETENTION.EXPLAIN', oldest[0]], (r) => renderMap(r, explain));
    await show(c, ['RETENTION.EXPLAIN', 'bull:emails:meta'], (r) => renderMap(r, explain));
    await show(c, ['RETENTION.EXPLAIN', celery[0]], (r) => renderMap(r, explain));
    await show(c, ['RETENTION.EXPLAIN', audit[0]], (r) => renderMap(r, explain));

    const sweptAt = Date.now();
    section('apply the policy: one pass now (CONFIG SET retention.enabled yes would do it in the background)');
    await show(c, ['RETENTION.SWEEP'], renderSweep);
    out();
    const queueRule = ownerRule['bull:emails'];
    if (queueRule && queueRule.queue && queueRule.queue.flavor === 'auto') {
      out(`The suggested queue rule ${queueRule.name} has "flavor": "auto": the BullMQ queue (emails) and the`);
      out('Bull queue (thumbnails) under the same prefix bull were each cleaned the way their own library cleans.');
    }
    out();
    out('What did it do? (RETENTION.EXPLAIN remembers about its last 65,536 actions)');
    await show(c, ['RETENTION.EXPLAIN', await remembered(c, oldest)], (r) => renderMap(r, ['key', 'exists', 'last']));
    await show(c, ['RETENTION.EXPLAIN', await remembered(c, celery)], (r) => renderMap(r, ['key', 'expire_at_ms', 'now', 'last']));

    section('where did the memory go now?');
    await show(c, ['RETENTION.REPORT', 'GROUPS', '12', 'TOP', '1', 'FORMAT', 'text']);

    const factsAfter = await serverFacts(c);
    const ownersAfter = await memoryByOwner(c);
    const digestsAfter = await digestByOwner(c);
    section('before / after');
    const row = (a, b, cc, d) => out(`${a.padEnd(22)}${b.padStart(12)}${cc.padStart(12)}  ${d}`.trimEnd());
    row('', 'before', 'after', '');
    row('used_memory', human(factsBefore.used), human(factsAfter.used), `${human(factsBefore.used - factsAfter.used)} freed`);
    row('keys', num(factsBefore.keys), num(factsAfter.keys), `${num(factsBefore.keys - factsAfter.keys)} removed`);
    row('keys without TTL', num(factsBefore.noTtl), num(factsAfter.noTtl), `${num(factsBefore.noTtl - factsAfter.noTtl)} fewer`);
    out('(used_memory after includes about 3 MB the module allocates at its first action: the table');
    out('behind EXPLAIN\'s "last")');
    out();
    out('memory by owner (MEMORY USAGE <key> SAMPLES 0, summed over every key):');
    // bull:renders holds live jobs only: the queue rule governs it and must leave it as it is.
    const liveOnly = ['bull:renders'];
    const byBefore = [...OWNERS].sort(([, a], [, b]) => (ownersBefore[b] || 0) - (ownersBefore[a] || 0));
    for (const [, name, what] of byBefore) {
      if (ownersBefore[name] === undefined) continue;
      const rule = ownerRule[name];
      const does = liveOnly.includes(name) && rule ? `rule ${rule.name}: live jobs are never touched` : ruleSummary(rule);
      row(name, human(ownersBefore[name]), human(ownersAfter[name] || 0), `${what}: ${does}`);
    }

    section('checks (with BullMQ and Bull themselves)');
    const check = (ok, what, detail) => {
      out(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `: ${detail}` : ''}`);
      if (!ok) failures++;
    };
    check(factsAfter.used < factsBefore.used, `used_memory went down (${human(factsBefore.used)} -> ${human(factsAfter.used)})`);
    const owners = OWNERS.map(([, name]) => name).filter((o) => ownersBefore[o] !== undefined);
    const freeing = owners.filter((o) => removes(ownerRule[o]) && !liveOnly.includes(o));
    const notFreed = freeing.filter((o) => !(ownersAfter[o] < ownersBefore[o]));
    check(freeing.includes('bull:emails') && freeing.includes('bull:thumbnails') && notFreed.length === 0,
      `job cleaning, trims and run expiry freed memory of every owner a suggested rule cleans (${freeing.join(', ')})`,
      notFreed.map((o) => `${o} ${human(ownersBefore[o])} -> ${human(ownersAfter[o])}`).join(', ') || 'no queue rule for bull:emails and bull:thumbnails');
    const halved = ['bull:emails', 'bull:thumbnails'].filter((o) => !(ownersAfter[o] < ownersBefore[o] / 2));
    check(halved.length === 0, 'the queue rule freed more than half of the queues\' memory (bull:emails, bull:thumbnails)',
      halved.map((o) => `${o} ${human(ownersBefore[o])} -> ${human(ownersAfter[o])}`).join(', '));
    // Untouched: the same keys, values and TTLs (DEBUG DIGEST-VALUE and PTTL of every key).
    const kept = owners.filter((o) => (!removes(ownerRule[o]) && !(ownerRule[o] && ownerRule[o].ttl)) || liveOnly.includes(o));
    const changed = kept.filter((o) => digestsAfter[o].keys !== digestsBefore[o].keys);
    const keptBytes = kept.reduce((sum, o) => sum + ownersBefore[o], 0);
    check(changed.length === 0, `keys no rule acts on, and the live-only queue, are untouched: the same keys, values and TTLs (${kept.join(', ')}: ${human(keptBytes)})`,
      `changed: ${changed.join(', ')}`);
    const given = owners.filter((o) => ownerRule[o] && ownerRule[o].ttl);
    const notGiven = given.filter((o) => digestsAfter[o].names !== digestsBefore[o].names || digestsAfter[o].noTtl !== 0);
    check(given.length > 0 && notGiven.length === 0, `keys a ttl rule governs are all still there, each with a TTL now (${given.join(', ')})`,
      notGiven.map((o) => `${o}: ${digestsAfter[o].noTtl} without TTL${digestsAfter[o].names !== digestsBefore[o].names ? ', keys changed' : ''}`).join(', '));
    await queues.checkQueues(server, live, countsBefore, sweptAt, check, queueLimits(queueRule));
    await emails.close();
    await thumbs.close();

    section(failures ? `${failures} check(s) FAILED` : 'all checks passed');
    out(`(${((Date.now() - started) / 1000).toFixed(1)} s)`);
    if (opts.keep) {
      out();
      out(`The server keeps running (pid ${server.pid}, data in ${server.dir}):`);
      out(`  redis-cli -p ${server.port}`);
      out(`  redis-cli -p ${server.port} CONFIG SET retention.enabled yes   # let the module run in the background`);
      out(`  redis-cli -p ${server.port} SHUTDOWN NOSAVE && rm -rf ${server.dir}   # when done`);
    }
  } catch (e) {
    out(`FAIL ${e.stack || e}`);
    failures++;
  } finally {
    if (opts.keep) server.detach();
    else await server.stop();
  }
  return failures ? 1 : 0;
}

// Exit explicitly: a library object left open by a failed step must not keep the demo alive.
main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exit(2);
});
