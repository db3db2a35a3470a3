'use strict';
// scripts/demo at its small size (its Node part, with the same RETENTION_SERVER_BIN and
// RETENTION_MODULE): the tour runs end to end, starting from RETENTION.SUGGEST's policy, and its
// own checks pass. Those checks: used memory went down, where the suggested rules remove jobs,
// trim or expire runs and nowhere else; and, made with BullMQ
// and Bull themselves, every live job (waiting, prioritized, delayed, active with its lock,
// parents waiting for children, and the children) is still there in the same state with the
// same data, getJobCounts() of live states is unchanged, finished jobs were cleaned to the
// policy's limits, and both queues still work (next id; workers process the new job, the
// waiting jobs and the parents).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

const DEMO = path.join(__dirname, '..', 'demo', 'demo.js');

function run(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [DEMO, ...args], { timeout: 180000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr }));
  });
}

const CHECKS = [
  /^ok {3}used_memory went down \(/m,
  /^ok {3}job cleaning, trims and run expiry freed memory of every owner a suggested rule cleans \(bull:emails, bull:thumbnails, /m,
  /^ok {3}the queue rule freed more than half of the queues' memory/m,
  /^ok {3}keys no rule acts on, and the live-only queue, are untouched: the same keys, values and TTLs/m,
  /^ok {3}keys a ttl rule governs are all still there, each with a TTL now \(celery-task-meta-\*/m,
  /^ok {3}every live job is still there, same state and data, active ones locked/m,
  /^ok {3}emails: getJobCounts\(\) of live states unchanged/m,
  /^ok {3}emails: finished jobs cleaned to the policy's limits/m,
  /^ok {3}thumbnails: getJobCounts\(\) of live states unchanged/m,
  /^ok {3}thumbnails: finished jobs cleaned to the policy's limits/m,
  /^ok {3}emails: a new job gets the next id/m,
  /^ok {3}emails: a BullMQ worker processes the new job and the \d+ waiting, prioritized and parent jobs/m,
  /^ok {3}thumbnails: a new job gets the next id/m,
  /^ok {3}thumbnails: a Bull worker processes the new job and the \d+ waiting jobs/m,
];

test('scripts/demo --scale small: the tour runs and every check passes', async (t) => {
  const { code, stdout, stderr } = await run(['--scale', 'small']);
  const tail = `\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
  assert.equal(code, 0, `exit code ${code}${tail}`);
  assert.doesNotMatch(stdout, /^FAIL/m, tail);
  for (const re of CHECKS) assert.match(stdout, re, tail);
  assert.match(stdout, /^=== all checks passed$/m, tail);

  // The tour's steps are all there, in order: the suggestion first, loaded as the policy.
  const steps = ['redis> ACTIVERUNS.MIGRATE', 'redis> RETENTION.SUGGEST\n',
    '$ redis-cli --raw RETENTION.SUGGEST FORMAT policy > ', 'redis> RETENTION.RELOAD\nOK',
    'redis> RETENTION.REPORT', 'redis> RETENTION.SWEEP DRYRUN',
    'redis> RETENTION.EXPLAIN bull:emails:', 'redis> RETENTION.EXPLAIN celery-task-meta-',
    'redis> RETENTION.EXPLAIN bull:emails:meta', 'redis> RETENTION.SWEEP\n', 'flavor": "auto"',
    '=== where did the memory go now?', '=== before / after'];
  let at = 0;
  for (const step of steps.slice(0, 6)) {
    const i = stdout.indexOf(step, at);
    assert.ok(i >= 0, `${step} (in order)${tail}`);
    at = i;
  }
  for (const step of steps.slice(3)) assert.ok(stdout.includes(step), `${step}${tail}`);

  // The suggestion as shown: the queues, the Celery results, the streams and the run sets each
  // get a rule with its evidence; keys of no recognisable owner are listed, not ruled.
  const suggestion = stdout.slice(stdout.indexOf('redis> RETENTION.SUGGEST\n'), stdout.indexOf('=== the suggestion becomes'));
  for (const re of [/^ {2}\d+\. \S+ {2}queue {2}bull:\* {2}\(owner bull(mq)?\)$/m, /^ {2}\d+\. \S+ {2}ttl {2}celery-task-meta-\* {2}\(owner celery\)$/m,
    /^ {2}\d+\. \S+ {2}trim {2}audit:tenant-\* {2}\(owner stream\)$/m, /^ {2}\d+\. \S+ {2}runs {2}runs:active:/m,
    /^ {7}effect now: .*jobs [\d,]+/m, /^ {2}user:\*:prefs +500 +500 .* no owner recognised/m]) {
    assert.match(suggestion, re, tail);
  }

  // The memory really went down (the demo's own numbers).
  const used = /^ok {3}used_memory went down \(([\d.]+)M -> ([\d.]+)M\)/m.exec(stdout);
  assert.ok(used && Number(used[2]) < Number(used[1]), tail);
  t.diagnostic(`used_memory ${used[1]}M -> ${used[2]}M`);
});

test('scripts/demo refuses an unknown scale', async () => {
  const { code, stderr } = await run(['--scale', 'huge']);
  assert.equal(code, 2);
  assert.match(stderr, /unknown scale 'huge' \(use small or full\)/);
});
