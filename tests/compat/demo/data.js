'use strict';
// Deterministic, realistic-looking payloads: the same scale gives the same keyspace shape.

const { DAY, HOUR, hashOf } = require('../lib/harness');

/** mulberry32: a small seeded PRNG. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  next.pick = (list) => list[Math.floor(next() * list.length)];
  next.hex = (n) => {
    let s = '';
    while (s.length < n) s += Math.floor(next() * 0x100000000).toString(16).padStart(8, '0');
    return s.slice(0, n);
  };
  next.uuid = () => {
    const h = next.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
  };
  return next;
}


const FIRST = ['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis', 'Frances', 'Edsger', 'Radia'];
const TENANTS = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'wonka', 'tyrell',
  'cyberdyne', 'soylent', 'aperture'];
const TEMPLATES = ['order-confirmation', 'password-reset', 'weekly-digest', 'invoice', 'shipping-update',
  'welcome'];

function emailJob(r, i) {
  const first = r.pick(FIRST);
  const tenant = r.pick(TENANTS);
  const items = [];
  for (let k = r.int(1, 4); k > 0; k--) {
    items.push({ sku: `SKU-${r.int(10000, 99999)}`, title: `Item ${r.hex(6)}`, qty: r.int(1, 3),
      price_cents: r.int(199, 19999) });
  }
  return {
    to: `${first.toLowerCase()}.${r.hex(6)}@${tenant}.example.com`,
    from: `no-reply@${tenant}.example.com`,
    template: r.pick(TEMPLATES),
    locale: r.pick(['en-US', 'de-DE', 'fr-FR', 'ja-JP']),
    tenant,
    vars: { firstName: first, orderId: `ORD-${100000 + i}`, items },
    requestId: r.uuid(),
  };
}

function thumbnailJob(r, i) {
  const tenant = r.pick(TENANTS);
  return {
    bucket: `uploads-${tenant}`,
    key: `images/${r.hex(2)}/${r.hex(2)}/${r.uuid()}.jpg`,
    sizes: [[64, 64], [256, 256], [1024, 768]],
    format: r.pick(['webp', 'jpeg', 'avif']),
    uploadedBy: `user:${r.int(1, 50000)}`,
    upload: i,
  };
}

const TASKS = ['billing.tasks.generate_invoice', 'reports.tasks.export_csv', 'search.tasks.reindex_document',
  'notifications.tasks.push', 'ml.tasks.score_lead'];

/** A Celery result as the Redis backend stores it (result_extended on), finished `ageMs` ago. */
function celeryResult(r, id, ageMs, now) {
  const name = r.pick(TASKS);
  const failed = r() < 0.08;
  const result = failed
    ? { exc_type: 'TimeoutError', exc_message: ['upstream did not answer within 30s'], exc_module: 'builtins' }
    : { rows: r.int(1, 50000), url: `s3://exports/${r.uuid()}.csv.gz`, checksum: r.hex(40) };
  const traceback = failed
    ? 'Traceback (most recent call last):\n  File "/app/venv/lib/python3.12/site-packages/celery/app/trace.py", line 453, in trace_task\n    R = retval = fun(*args, **kwargs)\n  File "/app/venv/lib/python3.12/site-packages/celery/app/trace.py", line 736, in __protected_call__\n    return self.run(*args, **kwargs)\n  File "/app/src/reports/tasks.py", line 88, in export_csv\n    rows = client.fetch(query, timeout=30)\n  File "/app/src/reports/client.py", line 41, in fetch\n    raise TimeoutError("upstream did not answer within 30s")\nTimeoutError: upstream did not answer within 30s\n'
    : null;
  return JSON.stringify({
    status: failed ? 'FAILURE' : 'SUCCESS',
    result,
    traceback,
    children: [],
    date_done: new Date(now - ageMs).toISOString().replace('Z', '000'),
    task_id: id,
    name,
    args: [r.int(1, 99999)],
    kwargs: { tenant: r.pick(TENANTS) },
    worker: `celery@worker-${r.int(1, 8)}`,
    retries: failed ? 3 : 0,
    queue: name.split('.')[0],
  });
}

function auditEntry(r) {
  return ['actor', `user:${r.int(1, 50000)}`,
    'action', r.pick(['login', 'logout', 'project.update', 'member.invite', 'token.create', 'billing.change']),
    'target', `project:${r.int(1, 5000)}`,
    'ip', `10.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}`,
    'ua', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36'];
}

/** A legacy active-run document; `startedAt` as ISO-8601 text or ms (both occur in old data). */
function runDoc(r, id, startedMs, ws, proj) {
  const steps = [];
  for (const name of ['checkout', 'install', 'build', 'test', 'deploy']) {
    steps.push({ name, status: r.pick(['done', 'done', 'running', 'pending']), durationMs: r.int(100, 90000) });
  }
  return JSON.stringify({
    id, workspace: ws, project: proj, status: 'running',
    startedAt: r() < 0.5 ? new Date(startedMs).toISOString() : startedMs,
    trigger: r.pick(['push', 'schedule', 'manual', 'pull_request']),
    commit: r.hex(40), branch: r.pick(['main', 'develop', `feature/${r.hex(6)}`]),
    runner: `runner-${r.int(1, 40)}`, steps,
  });
}

module.exports = { DAY, HOUR, TENANTS, auditEntry, celeryResult, emailJob, hashOf, rng, runDoc, thumbnailJob };
