// ioredis' Cluster and the module's keyed commands: every form of forms.json, on a key of each
// of the three masters, must reply as expected and leave the expected keys on the key's owner.
//
// What ioredis does with a module command: it finds keys only through its own static command
// table (@ioredis/commands). A command missing from it has no keys for ioredis, so
// cluster.call() sends it to a random master and follows the MOVED reply (one redirection,
// then the right node). The server's COMMAND metadata is never read. ioredis 5 offers no
// way to declare a command's key positions: Command's `keys` is private, Cluster#sendCommand's
// node argument is internal (@ignore) and turns redirection handling off, defineCommand only
// defines Lua scripts, and a pipeline takes its slot from the keys of table commands only.
// What it does expose is the slot map (`cluster.slots`: slot -> node keys "host:port",
// master first) and its node connections (`cluster.nodes("master")`). So the routed pass
// below reads the key positions the server declares (COMMAND INFO: first key, last key,
// step, as clients with a static table use them), hashes the first key with
// cluster-key-slot (the package ioredis itself hashes with) and sends the command to that
// slot's master: no MOVED. An application can route module commands the same way; it then
// handles MOVED/ASK itself during resharding (retrying through cluster.call() does).
//
// Run by scripts/test-cluster-clients, which starts the cluster: CLUSTER_PORTS names its
// masters. Prints the MOVED count per command of both passes.
"use strict";

const fs = require("fs");
const path = require("path");
const assert = require("assert");
const Redis = require("ioredis");
const calculateSlot = require("cluster-key-slot");

const PORTS = process.env.CLUSTER_PORTS.split(" ").map(Number);
const FORMS = JSON.parse(fs.readFileSync(path.join(__dirname, "forms.json"), "utf8"));
const NODES = new Map(PORTS.map((port) => [port, new Redis({ port, lazyConnect: false })]));
const ANY = NODES.get(PORTS[0]);

async function ownerOf(key) {
  const slot = await ANY.call("CLUSTER", "KEYSLOT", key);
  for (const [lo, hi, master] of await ANY.call("CLUSTER", "SLOTS")) {
    if (lo <= slot && slot <= hi) return Number(master[1]);
  }
  throw new Error(`slot ${slot} of ${key} is not served`);
}

// One hash tag `<prefix><n>` served by each master: Map port -> tag.
async function tagsPerMaster(prefix) {
  const tags = new Map();
  for (let n = 0; n < 10000 && tags.size < PORTS.length; n++) {
    const owner = await ownerOf(`${prefix}${n}`);
    if (!tags.has(owner)) tags.set(owner, `${prefix}${n}`);
  }
  assert.equal(tags.size, PORTS.length, `no tag '${prefix}<n>' for every master`);
  return tags;
}

function argument(value, tag, nowMs) {
  if (value !== null && typeof value === "object") return String(nowMs - value.now_minus_ms);
  return typeof value === "string" ? value.replaceAll("@", tag) : value;
}

const place = (command, tag, nowMs) => command.map((a) => argument(a, tag, nowMs));

function placeForm(form, tag, nowMs) {
  return {
    args: place(form.args, tag, nowMs),
    reply: JSON.parse(JSON.stringify(form.reply).replaceAll("@", tag)),
    then: form.then && [place(form.then[0], tag, nowMs), form.then[1]],
  };
}

function parseInfo(text) {
  const fields = {};
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

const statNumber = (value, name) => Number((value || "").match(new RegExp(`${name}=(\\d+)`))?.[1] || 0);

// Per node: calls of each command and the MOVED replies given so far.
async function counters() {
  const snapshot = new Map();
  for (const [port, node] of NODES) {
    const commands = parseInfo(await node.info("commandstats"));
    const errors = parseInfo(await node.info("errorstats"));
    const calls = {};
    for (const [name, value] of Object.entries(commands)) {
      calls[name.replace(/^cmdstat_/, "")] = statNumber(value, "calls");
    }
    snapshot.set(port, { calls, moved: statNumber(errors.errorstat_MOVED, "count") });
  }
  return snapshot;
}

function checkReply(args, reply, expected) {
  if ("eq" in expected) {
    assert.deepStrictEqual(reply, expected.eq, `${args.join(" ")}`);
  } else if ("map" in expected) {
    assert.ok(Array.isArray(reply) && reply.length % 2 === 0, `${args.join(" ")}: not a map: ${reply}`);
    const fields = {};
    for (let i = 0; i < reply.length; i += 2) fields[reply[i]] = reply[i + 1];
    for (const [field, want] of Object.entries(expected.map)) {
      assert.deepStrictEqual(fields[field], want, `${args.join(" ")}: ${field} in ${JSON.stringify(fields)}`);
    }
  } else if ("page" in expected) {
    const want = expected.page;
    assert.ok(Array.isArray(reply) && reply.length === 2, `${args.join(" ")}: ${JSON.stringify(reply)}`);
    const [total, rows] = reply;
    const ids = rows.filter((_, i) => i % want.stride === 0);
    assert.deepStrictEqual({ total, ids }, { total: want.total, ids: want.ids }, `${args.join(" ")}`);
  } else {
    throw new Error(`unknown expectation ${JSON.stringify(expected)}`);
  }
}

// The keys the server declares for a command (COMMAND INFO first key, last key, step).
const keyRanges = new Map();
async function declaredKeys(args) {
  const name = args[0].toLowerCase();
  if (!keyRanges.has(name)) {
    const [[, , , first, last, step]] = await ANY.call("COMMAND", "INFO", name);
    keyRanges.set(name, { first, last, step });
  }
  const { first, last, step } = keyRanges.get(name);
  const end = last < 0 ? args.length + last : last;
  const keys = [];
  for (let i = first; first > 0 && step > 0 && i <= end && i < args.length; i += step) keys.push(args[i]);
  return keys;
}

// Sends a command to the master of its first declared key, from ioredis' slot map.
async function callByKey(cluster, args) {
  const [key] = await declaredKeys(args);
  assert.ok(key !== undefined, `${args[0]} declares no key`);
  const [nodeKey] = cluster.slots[calculateSlot(key)] || [];
  const node = cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === nodeKey);
  assert.ok(node, `no master for ${key} (slot map entry ${nodeKey})`);
  return node.call(...args);
}

// Runs every form on each master through `send`; returns per command {sent, moved}.
async function pass(prefix, send, movedAllowed) {
  const perCommand = new Map();
  for (const [owner, tag] of await tagsPerMaster(prefix)) {
    const owned = NODES.get(owner);
    for (const command of FORMS.setup) await owned.call(...place(command, tag, Date.now()));
    for (const raw of FORMS.forms) {
      const form = placeForm(raw, tag, Date.now());
      const before = await counters();
      const reply = await send(form.args);
      const after = await counters();
      const name = form.args[0].toLowerCase();
      let moved = 0;
      for (const port of PORTS) {
        const calls = (after.get(port).calls[name] || 0) - (before.get(port).calls[name] || 0);
        assert.equal(calls, port === owner ? 1 : 0, `${form.args.join(" ")}: ran on ${port}`);
        moved += after.get(port).moved - before.get(port).moved;
      }
      assert.ok(moved <= movedAllowed, `${form.args.join(" ")}: ${moved} MOVED`);
      checkReply(form.args, reply, form.reply);
      if (form.then) {
        const [command, want] = form.then;
        assert.deepStrictEqual(await owned.call(...command), want, `after ${form.args.join(" ")}: ${command.join(" ")}`);
      }
      const seen = perCommand.get(name) || { sent: 0, moved: 0 };
      perCommand.set(name, { sent: seen.sent + 1, moved: seen.moved + moved });
    }
  }
  return perCommand;
}

async function main() {
  const cluster = new Redis.Cluster([{ host: "127.0.0.1", port: PORTS[0] }]);
  await new Promise((resolve, reject) => {
    cluster.once("ready", resolve);
    cluster.once("error", reject);
  });
  try {
    // cluster.call: one redirection at most, then the owner.
    const plain = await pass("jscall", (args) => cluster.call(...args), 1);
    // Routed by the declared key: never a redirection.
    const routed = await pass("jsroute", (args) => callByKey(cluster, args), 0);
    const version = require("ioredis/package.json").version;
    console.log(`ioredis ${version}: forms sent / MOVED answered, cluster.call() vs routed by the declared key`);
    for (const [name, { sent, moved }] of plain) {
      const byKey = routed.get(name);
      console.log(`  ${name.padEnd(20)} call(): ${sent} sent, ${moved} MOVED   by key: ${byKey.sent} sent, ${byKey.moved} MOVED`);
    }
  } finally {
    cluster.disconnect();
    for (const node of NODES.values()) node.disconnect();
  }
}

main().catch((e) => {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
});
