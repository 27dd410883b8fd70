-- steward.scaling.hpa_replicas: one metric's replica proposal, as Kubernetes' replica calculator
-- (pkg/controller/podautoscaler/replica_calculator.go) computes it: usage ratio against the target,
-- the tolerance, ready / unready / missing / ignored instances, and the re-computation that must not
-- flip the direction. Kubernetes counts in milli-units with integer division; so do we (milli()),
-- so the answers match theirs to the replica. Pure: no I/O, times from the caller.
local type, pairs, ipairs, next, tostring, format = type, pairs, ipairs, next, tostring, string.format
local floor, ceil, huge = math.floor, math.ceil, math.huge

local M = {}

-- How long a sample averages over (metrics-server's window) when the source does not say.
M.DEFAULT_WINDOW = 60

-- A quantity as Kubernetes' MilliValue: rounded to the nearest milli so that 0.3 is 300, not 300.00000000000006.
local function milli(v) return floor(v * 1000 + 0.5) end
M.milli = milli

-- A sample the arithmetic can use: NaN and infinities would turn into replica counts.
local function finite(v) return type(v) == "number" and v == v and v > -huge and v < huge end

-- Go's integer division truncates toward zero.
local function idiv(a, b)
  local q = a / b
  return q >= 0 and floor(q) or ceil(q)
end

local function within(tol, ratio) return (1 - tol.down) <= ratio and ratio <= (1 + tol.up) end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- groupPods: which instances count, which wait (pending, or CPU not yet meaningful), which have no
-- sample, and which are gone (failed, deleted).
-- meta: per instance { at, window } of its sample, when the source gave them one by one.
local function group(spec, instances, samples, meta, resource, sample_at, window, now)
  local ready, unready, missing, ignored = 0, {}, {}, {}
  for _, inst in ipairs(instances) do
    local id, phase = inst.id, inst.phase or "running"
    if phase == "deleted" or phase == "failed" then
      ignored[id] = true
    elseif phase == "pending" then
      unready[id] = true
    elseif samples[id] == nil then
      missing[id] = true
    else
      local is_unready = false
      if resource == "cpu" then
        local start = inst.started_at
        if inst.ready == nil or start == nil then
          is_unready = true
        else
          -- The Ready condition's last transition; an instance that never changed state has been
          -- in its current one since it started.
          local transition = inst.ready_at or start
          if start + spec.cpu_initialization_period > now then
            -- Still initialising: ignore the sample if unready or taken less than one window after the transition.
            local m = meta[id]
            local at, w = m and m.at or sample_at, m and m.window or window
            is_unready = inst.ready ~= true or at < transition + w
          else
            -- Ignore the sample if the instance is unready and has never been ready.
            is_unready = inst.ready ~= true and start + spec.initial_readiness_delay > transition
          end
        end
      end
      if is_unready then unready[id] = true else ready = ready + 1 end
    end
  end
  return ready, unready, missing, ignored
end

M.group = group

-- GetResourceUtilizationRatio: whole percent of the summed requests, as Kubernetes rounds it.
local function utilization_ratio(metrics, requests, target)
  local total, req_total, n = 0, 0, 0
  for id, v in pairs(metrics) do
    local r = requests[id]
    if r then total, req_total, n = total + v, req_total + r, n + 1 end
  end
  if req_total == 0 then return nil, "no metrics returned matched known instances" end
  local util = idiv(total * 100, req_total)
  return util / target, util, idiv(total, n)
end

-- GetMetricUsageRatio: the average over every sample.
local function usage_ratio(metrics, target)
  local total, n = 0, 0
  for _, v in pairs(metrics) do total, n = total + v, n + 1 end
  local usage = idiv(total, n)
  return usage / target, usage
end

local function requests_of(instances, resource)
  local requests = {}
  for _, inst in ipairs(instances) do
    local r = type(inst.request) == "table" and inst.request[resource]
    if type(r) ~= "number" then
      return nil, format("missing request for %s of instance %s", resource, tostring(inst.id))
    end
    requests[inst.id] = milli(r)
  end
  return requests
end

-- The samples of a per-instance metric as milli-values, or the average spread over every instance that reports.
local function samples_of(m, instances)
  local out, meta = {}, {}
  if type(m.per_instance) == "table" then
    for id, v in pairs(m.per_instance) do
      if type(v) == "table" then
        meta[id] = { at = v.at, window = v.window }
        v = v.value
      end
      if not finite(v) then return nil, format("sample of instance %s is not a finite number", tostring(id)) end
      out[id] = milli(v)
    end
  elseif m.average ~= nil then
    if not finite(m.average) then return nil, "average is not a finite number" end
    local v = milli(m.average)
    for _, inst in ipairs(instances) do
      local phase = inst.phase or "running"
      if phase == "running" then out[inst.id] = v end
    end
  else
    return nil, "per_instance or average expected"
  end
  return out, meta
end

-- The shared core of GetResourceReplicas and calcPlainMetricReplicas. utilization: the target is a
-- percentage of the requests; else an average value.
local function per_instance_replicas(spec, tol, current, metric, obs_metric, instances, now)
  local resource = metric.type == "resource" and metric.resource or ""
  if #instances == 0 then return nil, "no instances while calculating replica count" end
  local metrics, meta = samples_of(obs_metric, instances)
  if not metrics then return nil, meta end
  local window = obs_metric.window or M.DEFAULT_WINDOW
  local ready, unready, missing, ignored = group(spec, instances, metrics, meta, resource, obs_metric.at or now, window, now)
  for id in pairs(ignored) do metrics[id] = nil end
  for id in pairs(unready) do metrics[id] = nil end
  local out = { ready = ready, unready = count(unready), missing = count(missing), ignored = count(ignored) }
  if next(metrics) == nil then return nil, "did not receive metrics for targeted instances (instances might be unready)", out end

  local utilization = metric.target.type == "utilization"
  local target = utilization and metric.target.value or milli(metric.target.value)
  local requests, err
  local ratio, usage, raw
  if utilization then
    requests, err = requests_of(instances, resource)
    if not requests then return nil, err, out end
    ratio, usage, raw = utilization_ratio(metrics, requests, target)
    if not ratio then return nil, usage, out end
    out.value, out.average = usage, raw / 1000
  else
    ratio, usage = usage_ratio(metrics, target)
    out.value = usage / 1000
  end
  out.ratio = ratio

  local with_unready = out.unready > 0 and ratio > 1
  if not with_unready and out.missing == 0 then
    if within(tol, ratio) then out.replicas = current; return out end
    out.replicas = ceil(ratio * ready)
    return out
  end

  if out.missing > 0 then
    if ratio < 1 then
      -- Scale-down: a missing instance is taken to use its whole request (or the target above 100 %),
      -- or exactly the target average.
      for id in pairs(missing) do
        if utilization then
          local fallback = target > 100 and target or 100
          metrics[id] = idiv(requests[id] * fallback, 100)
        else
          metrics[id] = target
        end
      end
    elseif ratio > 1 then
      for id in pairs(missing) do metrics[id] = 0 end
    end
  end
  if with_unready then
    for id in pairs(unready) do metrics[id] = 0 end
  end

  local new_ratio
  if utilization then
    new_ratio = utilization_ratio(metrics, requests, target)
    if not new_ratio then return nil, "no metrics returned matched known instances", out end
  else
    new_ratio = usage_ratio(metrics, target)
  end
  out.ratio = new_ratio
  if within(tol, new_ratio) or (ratio < 1 and new_ratio > 1) or (ratio > 1 and new_ratio < 1) then
    out.replicas = current
    return out
  end
  local new_replicas = ceil(new_ratio * count(metrics))
  if (new_ratio < 1 and new_replicas > current) or (new_ratio > 1 and new_replicas < current) then
    out.replicas = current
    return out
  end
  out.replicas = new_replicas
  return out
end

-- getReadyPodsCount: running and ready, whatever else is true of them.
local function ready_count(instances)
  if #instances == 0 then return nil, "unable to calculate ready instances: no instances" end
  local n = 0
  for _, inst in ipairs(instances) do
    if (inst.phase or "running") == "running" and inst.ready == true then n = n + 1 end
  end
  return n
end

-- getUsageRatioReplicaCount: at 0 replicas the ratio alone decides (scale from zero).
local function usage_ratio_replicas(tol, current, ratio, instances)
  if current == 0 then return ceil(ratio) end
  if within(tol, ratio) then return current end
  local n, err = ready_count(instances)
  if not n then return nil, err end
  return ceil(ratio * n)
end

local function single_value(obs_metric, summed)
  if summed and type(obs_metric.values) == "table" then
    local total = 0
    for _, v in ipairs(obs_metric.values) do
      if not finite(v) then return nil, "values must be finite numbers" end
      total = total + milli(v)
    end
    return total
  end
  if obs_metric.value == nil then return nil, summed and "value or values expected" or "value expected" end
  if not finite(obs_metric.value) then return nil, "value is not a finite number" end
  return milli(obs_metric.value)
end

-- Object and External metrics: one value (External: the sum of its series) against a Value target
-- (over the ready instances) or an AverageValue target (per replica of the Scale's status).
local function object_replicas(tol, current, status_replicas, metric, obs_metric, instances)
  local usage, err = single_value(obs_metric, metric.type == "external")
  if not usage then return nil, err end
  local target = milli(metric.target.value)
  local out = {}
  if metric.target.type == "value" then
    local ratio = usage / target
    out.ratio, out.value = ratio, usage / 1000
    local r
    r, err = usage_ratio_replicas(tol, current, ratio, instances)
    if not r then return nil, err, out end
    out.replicas = r
    return out
  end
  local replicas = status_replicas
  local ratio = usage / (target * replicas)
  if not within(tol, ratio) then replicas = ceil(usage / target) end
  out.replicas = replicas
  -- With no replica in the status the ratio and the per-replica value are infinite (or NaN):
  -- the count above is right, but a decision carries only finite numbers (it is logged as JSON).
  if status_replicas > 0 then out.ratio, out.value = ratio, ceil(usage / status_replicas) / 1000 end
  return out
end

-- proposal(spec, tolerances, current, status_replicas, metric, obs_metric, instances, now)
--   -> { replicas, value, ratio, ready, unready, missing, ignored } or nil, err, partial
function M.proposal(spec, tol, current, status_replicas, metric, obs_metric, instances, now)
  if type(obs_metric) ~= "table" then return nil, "no sample" end
  if obs_metric.error ~= nil then return nil, tostring(obs_metric.error) end
  if metric.type == "object" or metric.type == "external" then
    return object_replicas(tol, current, status_replicas, metric, obs_metric, instances)
  end
  return per_instance_replicas(spec, tol, current, metric, obs_metric, instances, now)
end

return M
