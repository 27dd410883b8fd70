-- The threshold policy of ../shared/bench/policy.lua as a steward policy: per-metric
-- thresholds with per-tenant overrides, severity -> route by region. It must answer what the
-- reference answers (bench/decide checks one answer before measuring).
local THRESHOLDS = {
  error_rate     = { critical = 0.05,  warning = 0.02 },
  latency_p99_ms = { critical = 1000,  warning = 500 },
  cpu_util       = { critical = 0.95,  warning = 0.80 },
  queue_depth    = { critical = 10000, warning = 1000 },
}
local TENANT_OVERRIDES = {
  t7  = { error_rate     = { critical = 0.10, warning = 0.05 } },
  t42 = { latency_p99_ms = { critical = 800,  warning = 300 } },
}
local ROUTES = {
  critical = { default = "pager", eu = "pager-eu", us = "pager-us" },
  warning  = { default = "chat" },
  ok       = { default = "none" },
}

local function decide(ev)
  local metric, tenant, v = ev.metric, ev.tenant, ev.value
  local ov = TENANT_OVERRIDES[tenant]
  local th = (ov and ov[metric]) or THRESHOLDS[metric]
  if not th or type(v) ~= "number" then
    return { tenant = tenant, metric = metric, severity = "invalid", route = "drop", action = "reject" }
  end
  local sev, limit
  if v >= th.critical then sev, limit = "critical", th.critical
  elseif v >= th.warning then sev, limit = "warning", th.warning
  else sev, limit = "ok", th.warning end
  local labels = ev.labels
  local region = type(labels) == "table" and labels.region or nil
  local r = ROUTES[sev]
  return {
    tenant = tenant, metric = metric, value = v, threshold = limit, severity = sev,
    route = (region and r[region]) or r.default, action = (sev == "ok") and "none" or "notify",
    service = type(labels) == "table" and labels.service or "unknown",
  }
end

return { name = "bench.threshold", decide = function(input) return decide(input) end }
