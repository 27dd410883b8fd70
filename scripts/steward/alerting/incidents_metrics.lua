-- The incident metrics of /metrics: MTTA and MTTR per service as histograms (mean = _sum /
-- _count) and the open incidents by service and state, recounted from the store after each
-- state change of this instance (and at start), so the gauge is right after a restart.
local metrics = require "steward.metrics"

local ipairs, pairs = ipairs, pairs

local M = {}

local BUCKETS = { 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200 }
M.ack = metrics.histogram("steward_incident_ack_seconds",
  "Time from an incident's creation to its acknowledgement (MTTA = sum / count)", { "service" }, BUCKETS)
M.resolve = metrics.histogram("steward_incident_resolve_seconds",
  "Time from an incident's creation to its resolution (MTTR = sum / count)", { "service" }, BUCKETS)
local m_open = metrics.gauge("steward_incidents_open",
  "Incidents not resolved, by service and state (triggered, acknowledged, silenced)", { "service", "state" })

-- The open-incident gauge, recounted after each change (cheap: an index range).
local seen_series = {}
function M.refresh_gauge(st)
  local rows = st.db:query("SELECT service, state, COUNT(*) AS n FROM incidents " ..
    "WHERE state IN ('triggered', 'acknowledged', 'silenced') GROUP BY service, state")
  if not rows then return end
  local now = {}
  for _, r in ipairs(rows) do
    local k = r.service .. "\0" .. r.state
    now[k] = true
    seen_series[k] = { r.service, r.state }
    m_open:set(r.n, r.service, r.state)
  end
  for k, s in pairs(seen_series) do
    if not now[k] then m_open:set(0, s[1], s[2]) end
  end
end

return M
