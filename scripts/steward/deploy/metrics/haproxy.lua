-- steward.deploy.metrics.haproxy: an analysis metric from HAProxy's per-server counters.
-- provider{service=, revision=, metric=} -> fn; each fn() reads `show stat` (through
-- steward.deploy.haproxy) and answers for the requests since its previous call: HAProxy's
-- counters are cumulative, so a rate over an interval is a difference of two samples.
local haproxy = require "steward.deploy.haproxy"

local type, pairs, tostring, error, format, setmetatable = type, pairs, tostring, error, string.format, setmetatable

local M = {}

local METRICS = {
  -- fraction (0..1) of the interval's requests answered 5xx; nil when there were none
  error_rate = true,
  -- fraction (0..1) answered 1xx-3xx (4xx counts as neither: client errors)
  success_rate = true,
  -- HAProxy's mean response time of the revision's last 1024 requests, ms (a gauge, no delta)
  rtime = true,
  -- requests in the interval
  requests = true,
}
local FIELDS = { service = true, revision = true, metric = true, min_requests = true }

local function sample(service, revision)
  local st, err = haproxy.stats(service)
  if not st then return nil, err end
  local r = st.revisions[revision]
  if not r then return nil, format("haproxy metric: revision '%s' has no servers in the backend of %s", revision, service) end
  return r
end

-- Counters of servers that were deleted and re-added restart at 0: a delta below 0 means the
-- sample before is not comparable, and the interval is measured from 0.
local function delta(now, before, k)
  local d = now[k] - (before and before[k] or 0)
  if d < 0 then d = now[k] end
  return d
end

function M.provider(args)
  if type(args) ~= "table" then error("metrics.haproxy: table {service=, revision=, metric=} expected", 2) end
  for k in pairs(args) do
    if not FIELDS[k] then error("metrics.haproxy: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(args.service) ~= "string" then error("metrics.haproxy: service: service name expected", 2) end
  if type(args.revision) ~= "string" then error("metrics.haproxy: revision: revision id expected", 2) end
  if not METRICS[args.metric] then
    error("metrics.haproxy: metric: one of error_rate, success_rate, rtime, requests expected, got " .. tostring(args.metric), 2)
  end
  local min = args.min_requests or 1
  if type(min) ~= "number" or min < 1 then error("metrics.haproxy: min_requests: a number >= 1 expected", 2) end
  local service, revision, metric = args.service, args.revision, args.metric
  local before -- the previous call's sample: the start of the next interval

  local function measure()
    local now, err = sample(service, revision)
    if not now then return nil, err end
    local prev = before
    before = now
    if metric == "rtime" then return now.rtime end
    local req = delta(now, prev, "hrsp_1xx") + delta(now, prev, "hrsp_2xx") + delta(now, prev, "hrsp_3xx")
      + delta(now, prev, "hrsp_4xx") + delta(now, prev, "hrsp_5xx") + delta(now, prev, "hrsp_other")
    if metric == "requests" then return req end
    if req < min then
      return nil, format("haproxy metric: %d requests to %s %s in the interval, fewer than the %d needed for a %s",
        req, service, revision, min, metric)
    end
    if metric == "error_rate" then return delta(now, prev, "hrsp_5xx") / req end
    return (delta(now, prev, "hrsp_1xx") + delta(now, prev, "hrsp_2xx") + delta(now, prev, "hrsp_3xx")) / req
  end
  return measure
end

-- require(...){...} in scripts; policies call .provider (the sandbox's module views are tables).
return setmetatable(M, { __call = function(_, args) return M.provider(args) end })
