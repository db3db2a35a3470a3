// The cleanup loop operators run from cron today, as scripts/bench measures it
// (approach 1): SCAN MATCH ... COUNT 100, then TTL and EXPIRE per key, one await at a time.
// Usage: node cron-loop.js <port> <match> <ttl-seconds> <max-keys>
// Prints {"keys": n, "secs": s, "expired": e} on stdout.
'use strict';
const Redis = require('ioredis');

async function main() {
  const [port, match, ttl, maxKeys] = process.argv.slice(2);
  if (!port || !match || !ttl || !maxKeys) {
    throw new Error('usage: node cron-loop.js <port> <match> <ttl-seconds> <max-keys>');
  }
  const redis = new Redis({ host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: 0 });
  const started = process.hrtime.bigint();
  let keys = 0;
  let expired = 0;
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 100);
    cursor = next;
    for (const key of batch) {
      if ((await redis.ttl(key)) === -1) {
        await redis.expire(key, Number(ttl));
        expired += 1;
      }
      keys += 1;
    }
  } while (cursor !== '0' && keys < Number(maxKeys));
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  redis.disconnect();
  process.stdout.write(JSON.stringify({ keys, secs, expired }) + '\n');
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
