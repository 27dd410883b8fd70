-- steward.billing.aggregate alone, no store: N usage events (default 500,000) of one month, in
-- timestamp order as steward.billing.usage hands them over (SHUFFLED=1: in random order, so the
-- run sorts them), aggregated once per aggregation. Values are decimal strings, as the usage
-- API keeps them. Prints events/s per aggregation and the Lua heap:
--   build/steward script bench/billing_aggregate.lua
local aggregate = require "steward.billing.aggregate"
local time = require "steward.time"

local N = tonumber(os.getenv("N") or "") or 500000
local P = { from = 1767225600, to = 1767225600 + 31 * 86400 }
local step = (P.to - P.from) / N
local events = {}
for i = 1, N do
  events[i] = { transaction_id = ("tx-%09d"):format(i), timestamp = P.from + (i - 1) * step,
                properties = { gb = ("%d.%02d"):format(i % 1000, i % 100), user = "u" .. (i % 5000),
                               operation_type = i % 7 == 0 and "remove" or "add", region = (i % 3 == 0) and "eu" or "us" } }
end
if os.getenv("SHUFFLED") == "1" then
  math.randomseed(42)
  for i = N, 2, -1 do
    local j = math.random(i)
    events[i], events[j] = events[j], events[i]
  end
end

local METRICS = {
  { { code = "calls", aggregation = "count" } },
  { { code = "gb", aggregation = "sum", field = "gb" } },
  { { code = "gb_max", aggregation = "max", field = "gb" } },
  { { code = "gb_latest", aggregation = "latest", field = "gb" } },
  { { code = "seats", aggregation = "unique_count", field = "user" } },
  { { code = "seats", aggregation = "unique_count", field = "user", recurring = true }, { prorated = true }, "prorated" },
  { { code = "storage", aggregation = "weighted_sum", field = "gb" } },
  { { code = "gb", aggregation = "sum", field = "gb" }, { group_by = { "region" } }, "group_by region" },
  { { code = "custom", aggregation = "custom", custom = "function(s, e) return s, 1 end" }, { budget = 100 * N } },
}
print(("%d events, %s order"):format(N, os.getenv("SHUFFLED") == "1" and "random" or "timestamp"))
for _, c in ipairs(METRICS) do
  collectgarbage()
  local t0 = time.monotonic()
  local r = assert(aggregate.run(c[1], events, P, c[2]))
  local dt = time.monotonic() - t0
  print(("%-28s %10.0f events/s  units %s"):format(c[1].aggregation .. (c[3] and " " .. c[3] or ""), N / dt,
                                                   r.units:round(2, "half_up"):format(2)))
end
print(("heap %.0f MB"):format(collectgarbage("count") / 1024))
