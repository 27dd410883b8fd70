-- wrk script for bench/alerting.sh: POSTs Alertmanager API v2 bodies of BATCH alerts (default
-- 100) to the URL, cycling through ALERTS distinct label sets (default 100,000), so after the
-- first pass every alert is a re-send, as Prometheus re-sends. TOKEN, when set, is sent as a
-- bearer token. Prints "rps=... p50_ms=... p99_ms=... errors=... non2xx=..." at the end.
-- RATE (alerts/s) with CONNS (wrk's -c) paces the load: each connection waits between its
-- requests so that together they post about RATE alerts/s (less if the server is slower).
local N = tonumber(os.getenv("ALERTS") or "") or 100000
local BATCH = tonumber(os.getenv("BATCH") or "") or 100
local token = os.getenv("TOKEN")

local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

local bodies, idx, headers
function init()
  local starts = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local ends = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600)
  bodies = {}
  for b = 0, math.floor(N / BATCH) - 1 do
    local parts = {}
    for i = 1, BATCH do
      local k = b * BATCH + i
      parts[i] = string.format('{"labels":{"alertname":"Bench%d","instance":"host-%d:9100","job":"node",'
        .. '"severity":"warning"},"annotations":{"summary":"bench alert %d"},"startsAt":"%s","endsAt":"%s",'
        .. '"generatorURL":"http://prometheus:9090/graph?g0.expr=up"}', k % 50, k, k, starts, ends)
    end
    bodies[#bodies + 1] = "[" .. table.concat(parts, ",") .. "]"
  end
  -- Threads start at different points of the cycle.
  idx = (tid or 0) * math.floor(#bodies / 2)
  headers = { ["Content-Type"] = "application/json" }
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
end

local rate, conns = tonumber(os.getenv("RATE") or ""), tonumber(os.getenv("CONNS") or "")
if rate and rate > 0 and conns then
  local ms = conns * BATCH * 1000 / rate
  function delay() return ms end
end

function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[idx])
end

function done(summary, latency)
  io.write(string.format("ok_rps=%.1f rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    (summary.requests - summary.errors.status) / (summary.duration / 1e6), summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
