#!lua flags=no-writes
-- redis-retention metrics for redis_exporter's -script option (oliver006/redis_exporter,
-- Debian package prometheus-redis-exporter):
--
--   prometheus-redis-exporter -redis.addr redis://localhost:6379 -script /path/to/redis_exporter.lua
--
-- The exporter runs this script with EVAL on every scrape and publishes each returned
-- name/value pair as the gauge redis_script_values{key="<name>"}. Every name is listed,
-- with its meaning, in the README section "Monitoring with Prometheus".
--
-- The script runs inside the server and holds it while it runs: everything here is bounded
-- (one RETENTION.STATS GET, one RETENTION.STATUS, one INFO keyspace, a SCAN of at most
-- DISCOVER_SCAN_KEYS keys per prefix and at most MAX_QUEUES queue counts of ~20 us each).
--
-- The first line declares the script read-only (Redis 7+, Valkey): replicas run it, and a
-- scrape is answered during CLIENT PAUSE WRITE (a FAILOVER) instead of waiting for the pause.
--
-- The exporter passes no arguments: configure the script by editing the lines below.

-- Queues always exported, as { prefix, queue } pairs (the prefix includes any ioredis
-- keyPrefix), e.g. { { "bull", "emails" }, { "myapp:bull", "reports" } }. List your queues
-- here when the database is larger than DISCOVER_SCAN_KEYS.
local QUEUES = {}

-- Queue prefixes under which more queues are found: queues the module has cleaned since it
-- was loaded (from RETENTION.STATS GET, free), and queues whose `<prefix>:<queue>:meta` or
-- `<prefix>:<queue>:id` key a bounded SCAN finds. {} turns discovery off.
local DISCOVER_PREFIXES = { "bull" }

-- The discovery SCAN runs only when the database holds at most this many keys (SCAN costs
-- about 0.3-1 us a key, and the script holds the server). On a larger database it does not
-- run: retention_exporter_discovery_complete is then 0, and the queues to watch belong in
-- QUEUES (or raise this, knowing each scrape then scans the whole database).
local DISCOVER_SCAN_KEYS = 2000

-- Most queues whose job counts (listed ones first), and whose cleaning counters, are
-- exported per scrape.
local MAX_QUEUES = 100

-- ------------------------------------------------------------------------------------------

local out = {}

local function put(name, value)
  out[#out + 1] = name
  -- The exporter parses every value as a float; Lua numbers would reach it as integers.
  out[#out + 1] = tostring(value)
end

-- A flat RESP2 map reply { field, value, ... } as a Lua table.
local function as_map(reply)
  local m = {}
  if type(reply) ~= "table" then
    return m
  end
  for i = 1, #reply - 1, 2 do
    m[reply[i]] = reply[i + 1]
  end
  return m
end

-- The reply, or nil and the error text (a string on Redis 7.0, a table on later servers).
local function call(...)
  local ok, reply = pcall(redis.call, ...)
  if ok then
    return reply
  end
  if type(reply) == "table" then
    return nil, tostring(reply.err)
  end
  return nil, tostring(reply)
end

-- Keys without a TTL, every database: `keys` - `expires` of INFO keyspace (exact, O(1)).
local function keys_without_ttl()
  local info = call("INFO", "keyspace") or ""
  local total = 0
  for keys, expires in string.gmatch(info, "keys=(%d+),expires=(%d+)") do
    total = total + tonumber(keys) - tonumber(expires)
  end
  return total
end

-- Puts the module's counters; returns the names ("<prefix>:<queue>") of the queues it has
-- cleaned, or nil when the module does not answer.
local function module_counters()
  local stats = call("RETENTION.STATS", "GET")
  if not stats then
    put("retention_up", 0)
    return nil
  end
  put("retention_up", 1)
  local m = as_map(stats)
  for name, value in pairs(m) do
    if type(value) == "number" then
      put("retention_" .. name, value)
    end
  end
  for rule, fields in pairs(as_map(m["rules"])) do
    for name, value in pairs(as_map(fields)) do
      put("retention_rule_" .. name .. ":" .. rule, value)
    end
  end
  -- The module keeps counters for up to 10,000 queues: export those of MAX_QUEUES.
  local queues = as_map(m["queues"])
  local cleaned = {}
  for queue in pairs(queues) do
    cleaned[#cleaned + 1] = queue
  end
  table.sort(cleaned)
  for i = 1, math.min(#cleaned, MAX_QUEUES) do
    for name, value in pairs(as_map(queues[cleaned[i]])) do
      put("retention_queue_" .. name .. ":" .. cleaned[i], value)
    end
  end
  return cleaned
end

local function pass_progress()
  local status = as_map(call("RETENTION.STATUS"))
  put("retention_enabled", status["enabled"] or 0)
  put("retention_pass_running", status["running"] or 0)
  local pass = as_map(status["pass"])
  put("retention_pass_progress_pct", pass["progress_pct"] or 0)
  put("retention_pass_keys_scanned", pass["keys_scanned"] or 0)
  put("retention_pass_duration_seconds", (pass["duration_ms"] or 0) / 1000)
  if status["next_pass_at_ms"] then
    put("retention_next_pass_timestamp_seconds", status["next_pass_at_ms"] / 1000)
  end
  local last = as_map(status["last_pass"])
  if last["started_at_ms"] then
    put("retention_last_pass_end_timestamp_seconds",
      (last["started_at_ms"] + (last["duration_ms"] or 0)) / 1000)
    put("retention_last_pass_duration_seconds", (last["duration_ms"] or 0) / 1000)
    put("retention_last_pass_aborted", last["aborted"] or 0)
  end
end

local function escape_glob(s)
  return (string.gsub(s, "([%*%?%[%]\\])", "\\%1"))
end

local function starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

-- Queues to count: the listed ones, those the module cleaned, those a bounded SCAN finds.
local function find_queues(cleaned)
  local queues, seen = {}, {}
  local function add(prefix, queue)
    local base = prefix .. ":" .. queue
    if not seen[base] and #queues < MAX_QUEUES then
      seen[base] = true
      queues[#queues + 1] = { prefix, queue }
    end
  end
  for _, q in ipairs(QUEUES) do
    add(q[1], q[2])
  end
  for _, prefix in ipairs(DISCOVER_PREFIXES) do
    for _, name in ipairs(cleaned) do
      if starts_with(name, prefix .. ":") and #name > #prefix + 1 then
        add(prefix, string.sub(name, #prefix + 2))
      end
    end
  end
  -- A SCAN that stopped part way would find the same arbitrary subset on every scrape:
  -- scan a small database whole, a large one not at all.
  local complete = 1
  if #DISCOVER_PREFIXES > 0 and redis.call("DBSIZE") > DISCOVER_SCAN_KEYS then
    complete = 0
  end
  for _, prefix in ipairs(complete == 1 and DISCOVER_PREFIXES or {}) do
    -- One glob for both suffixes; the exact suffix is checked below.
    local pattern = escape_glob(prefix) .. ":*:[im][de]*"
    local cursor, visited = "0", 0
    repeat
      local reply = redis.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
      cursor, visited = reply[1], visited + 1000
      for _, key in ipairs(reply[2]) do
        local rest = string.sub(key, #prefix + 2)
        local queue = string.match(rest, "^(.+):id$") or string.match(rest, "^(.+):meta$")
        if queue then
          add(prefix, queue)
        end
      end
      -- A safety bound: a sparse table (after mass deletes) needs more calls than keys/1000.
    until cursor == "0" or visited > 2 * DISCOVER_SCAN_KEYS + 1000
    if cursor ~= "0" then
      complete = 0
    end
  end
  put("retention_exporter_discovery_complete", complete)
  return queues
end

-- Job counts by state, as the library's getJobCounts() names them.
local function job_counts(queues)
  local found, errors = 0, 0
  for _, q in ipairs(queues) do
    local counts, err = call("RETENTION.JOBS", "COUNTS", q[1], q[2])
    if counts then
      found = found + 1
      for state, n in pairs(as_map(counts)) do
        put("retention_jobs:" .. state .. ":" .. q[1] .. ":" .. q[2], n)
      end
    elseif not string.find(err, "no queue at", 1, true) then
      -- Refused: an ACL user without read access to the queue's keys gets NOPERM.
      errors = errors + 1
    end
  end
  put("retention_exporter_queues", found)
  put("retention_exporter_queue_errors", errors)
end

put("retention_keys_without_ttl", keys_without_ttl())
local cleaned = module_counters()
if cleaned then
  pass_progress()
  job_counts(find_queues(cleaned))
end
return out
