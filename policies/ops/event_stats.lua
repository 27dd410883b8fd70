-- Counts events by type and tenant in the kv namespace "event_stats" — a small working
-- policy shipped by default, and an example of a handler that keeps durable state.
--   curl -H "Authorization: Bearer $(cat var/admin.token)" -d '{"type":"demo.hello"}' localhost:8080/v1/events
local kv = require "steward.kv"

return {
  name = "ops.event_stats",
  on = { "*" },
  key = function(ev) return ev.type end, -- one counter per type: updates never race
  handle = function(ev)
    local ns = kv.ns("event_stats")
    local key = ev.type .. "/" .. (ev.tenant or "-")
    local current = ns:get(key) or { count = 0 }
    current.count = current.count + 1
    current.last_seen = ev.time
    local ok, err = ns:put(key, current)
    if not ok then error("cannot update the counter: " .. tostring(err)) end
  end,
}
