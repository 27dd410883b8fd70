-- steward.deploy.metrics.prometheus: an analysis metric from Prometheus's HTTP API. provider{url,
-- query} returns a function that runs the instant query now and answers its one number: a scalar
-- or a vector of exactly one sample. No data (an empty vector, NaN) and several series are
-- errors, which an analysis counts towards its consecutive error limit. The HTTP client is the
-- SLO source's (steward.slo.prometheus); a policy needs the `http` capability for the URL.
local prom = require "steward.slo.prometheus"
local time = require "steward.time"

local type, pairs, error, tostring = type, pairs, error, tostring

local M = {}

local FIELDS = { url = true, query = true, timeout = true, headers = true }

-- provider{url, query [, timeout = "10s"] [, headers]} -> fn() -> number | nil, err
function M.provider(o)
  if type(o) ~= "table" then error("metrics.prometheus: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then error("metrics.prometheus: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(o.query) ~= "string" or o.query == "" then error("metrics.prometheus: query: PromQL string expected", 2) end
  if type(o.url) ~= "string" or not o.url:match("^https?://") then
    error("metrics.prometheus: url: http:// or https:// URL of the Prometheus server expected", 2)
  end
  if o.timeout ~= nil and not time.parse_duration(o.timeout) then
    error("metrics.prometheus: timeout: duration like \"10s\" expected", 2)
  end
  if o.headers ~= nil and type(o.headers) ~= "table" then error("metrics.prometheus: headers: table expected", 2) end
  -- The SLO source wants good and total queries: ours is both; only query() is used.
  local src = prom.new { url = o.url, good = o.query, total = o.query, timeout = o.timeout, headers = o.headers }
  local q = o.query
  return function()
    local v, err = src:query(q, time.now())
    if v == nil then return nil, err end
    if v == false then return nil, "prometheus: no data (empty result or NaN) for: " .. q end
    return v
  end
end

M.new = M.provider

return M
