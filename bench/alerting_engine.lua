-- The notification engine alone (steward.alerting.engine), no HTTP, no dispatch: alert.firing
-- events as the API makes them, handed to engine:handle_batch in batches of BATCH (default
-- 500, the shipped router's batch_max), on an SQLite store in a temporary file (or STORE).
-- N (default 100,000) distinct alerts into 50 groups with group_wait 30s, as bench/alerting.sh
-- loads it. Prints events/s and the heap. Profile with STEWARD_PROFILE as the daemon
-- (docs/performance.md, "How to profile"):
--   build/steward script bench/alerting_engine.lua
local store = require "steward.runtime.store"
local engine = require "steward.alerting.engine"
local fingerprint = require "steward.alerting.fingerprint"
local time = require "steward.time"

local N = tonumber(os.getenv("N") or "") or 100000
local BATCH = tonumber(os.getenv("BATCH") or "") or 500
local url, tmp = os.getenv("STORE"), nil
if not url or url == "" then
  tmp = os.tmpname()
  url = "sqlite:" .. tmp
end
local st = assert(store.open(url))
assert(st:migrate())

local eng = assert(engine.compile({
  route = { receiver = "hook", group_by = { "alertname" }, group_wait = "30s", group_interval = "5m",
            repeat_interval = "4h" },
  receivers = { hook = { { kind = "webhook", url = "http://127.0.0.1:9/hook" } } },
}, { store = st }))

local now = time.now()
local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
local list = {}
for k = 1, N do
  local labels = { alertname = "Bench" .. (k % 50), instance = "host-" .. k .. ":9100", job = "node", severity = "warning" }
  list[k] = { id = "bench-" .. k, type = "alert.firing", seq = k, time = now, source = "steward.alerting",
    data = { status = "firing", fingerprint = fingerprint.of(labels), labels = labels,
      annotations = { summary = "bench alert " .. k }, startsAt = stamp, endsAt = stamp, generatorURL = "" } }
end

local t0 = time.monotonic()
for first = 1, N, BATCH do
  local batch = {}
  for i = first, math.min(first + BATCH - 1, N) do batch[#batch + 1] = list[i] end
  eng:handle_batch(batch)
end
local took = time.monotonic() - t0
list = nil -- luacheck: ignore (what is left is the engine's state and the modules)
collectgarbage()
collectgarbage()
print(string.format("engine: %d alert.firing events in batches of %d: %.0f events/s (%.1f us each); " ..
  "Lua heap after, with the engine's state: %.1f MiB", N, BATCH, N / took, took / N * 1e6, collectgarbage("count") / 1024))
st:close()
if tmp then os.remove(tmp); os.remove(tmp .. "-wal"); os.remove(tmp .. "-shm") end
