-- wrk script: POSTs the file named by BODY with the token in TOKEN to the URL path given
-- on wrk's command line; prints percentiles in a form bench/daemon reads.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

local statuses = {}
function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency)
  local codes = {}
  for s, n in pairs(statuses) do codes[#codes + 1] = s .. ":" .. n end
  io.write(string.format("rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d statuses=%s\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
      summary.errors.timeout, table.concat(codes, ",")))
end
