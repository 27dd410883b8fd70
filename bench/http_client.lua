-- HTTP client throughput: TASKS tasks (default 64) each issue GET URL in a loop for SECONDS
-- (default 5) over one steward.http pool allowing TASKS connections to the host (the default
-- pool's 8 per host would measure the queue, not the client); prints one line:
--   http_client_rps=<n> p50_ms=<x> p99_ms=<y>
-- usage: steward script bench/http_client.lua URL [SECONDS] [TASKS]
local http = require "steward.http"
local task = require "steward.task"
local time = require "steward.time"

local url = arg[1] or error("usage: bench/http_client.lua URL [SECONDS] [TASKS]")
local seconds = tonumber(arg[2] or 5)
local ntasks = tonumber(arg[3] or 64)

local lat, errors, first_err = {}, 0, nil
local deadline = time.monotonic() + seconds
local start = time.monotonic()

local function worker()
  while time.monotonic() < deadline do
    local t0 = time.monotonic()
    local res, err = http.request{url = url, timeout = 10, max_host_connections = ntasks}
    if res and res.status < 400 then
      lat[#lat + 1] = time.monotonic() - t0
    else
      errors = errors + 1
      first_err = first_err or err or ("status " .. res.status)
    end
  end
end

local handles = {}
for i = 1, ntasks do handles[i] = task.spawn(worker) end
for i = 1, ntasks do handles[i]:join() end
local elapsed = time.monotonic() - start

table.sort(lat)
local function pct(p)
  if #lat == 0 then return 0 end
  return lat[math.max(1, math.ceil(#lat * p))] * 1000
end
if errors > 0 then
  io.stderr:write(("http_client: %d failed requests (first: %s)\n"):format(errors, first_err))
end
print(("http_client_rps=%.0f p50_ms=%.2f p99_ms=%.2f"):format(#lat / elapsed, pct(0.50), pct(0.99)))
