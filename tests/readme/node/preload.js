// Points ioredis' defaults at scripts/test-readme's private server, so a README example runs
// exactly as written: `new Redis()` reaches the server on $README_TEST_PORT instead of
// localhost:6379. Loaded with `node -r` for the README's JavaScript blocks only; ioredis comes
// from tests/compat/node_modules (NODE_PATH), the same module instance the block requires.
"use strict";
const port = process.env.README_TEST_PORT;
if (port) {
  const Redis = require("ioredis");
  Redis.defaultOptions.port = Number(port);
}
