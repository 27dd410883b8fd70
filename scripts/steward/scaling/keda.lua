-- steward.scaling.keda: KEDA's additions on top of steward.scaling.hpa. Activation (0 <-> 1, or
-- idle <-> min) is decided here, apart from scaling 1 <-> N, which HPA does: a trigger is active
-- when its value is above its activation threshold; at zero (or idle) and some trigger active,
-- the service goes to max(1, min_replicas); with none active for `cooldown` since the last
-- active time, it goes back to idle_replicas or min_replicas (0). The rules are those of KEDA's
-- scale executor (pkg/scaling/executor/scale_scaledobjects.go), its test names kept in
-- tests/lua/scaling_keda_spec.lua. Pure: the caller passes observations and the clock.
local time = require "steward.time"
local json = require "steward.json"

local type, ipairs, pairs, error, format, tostring, floor, max, concat, require =
  type, ipairs, pairs, error, string.format, tostring, math.floor, math.max, table.concat, require

local M = {}

local function fail(field, reason) error(format("scaling: %s: %s", field, reason), 4) end

local function count(v, field, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= floor(v) or v < 0 then fail(field, "a whole number >= 0 expected, got " .. tostring(v)) end
  return v
end

local function duration(v, field, default)
  if v == nil then v = default end
  local d
  if type(v) == "number" then d = v elseif type(v) == "string" then d = time.parse_duration(v) end
  if type(d) ~= "number" or d < 0 then fail(field, "duration (\"300s\", \"5m\") expected, got " .. tostring(v)) end
  return d
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = copy(v) end
  return o
end

local KEDA_FIELDS = { cooldown = true, initial_cooldown = true, idle_replicas = true }

-- check(spec) -> the spec normalised, or raises an error naming the field. Besides HPA's fields
-- (steward.scaling.hpa): min_replicas may be 0 (the default, as KEDA's minReplicaCount),
-- max_replicas defaults to 100 (KEDA's), cooldown = "300s", initial_cooldown = "0s" (how long
-- after the first decision an autoscaler that never saw a trigger active may go to zero),
-- idle_replicas (below min_replicas), and per metric `activation` (default 0). The result keeps
-- the HPA spec it derived in `.hpa` (min_replicas at least 1: zero is KEDA's business).
function M.check(spec)
  if type(spec) ~= "table" then error("scaling: spec: table expected, got " .. type(spec), 2) end
  if spec._keda then return spec end
  local out = {}
  out.min_replicas = count(spec.min_replicas, "min_replicas", 0)
  out.max_replicas = count(spec.max_replicas, "max_replicas", 100)
  if out.max_replicas < 1 then fail("max_replicas", "must be at least 1") end
  if out.min_replicas > out.max_replicas then
    fail("min_replicas", format("%d is above max_replicas %d", out.min_replicas, out.max_replicas))
  end
  out.idle_replicas = count(spec.idle_replicas, "idle_replicas", nil)
  if out.idle_replicas and out.idle_replicas >= out.min_replicas then
    -- KEDA's admission rule: an idle count at or above the minimum would never be idle.
    fail("idle_replicas", format("must be below min_replicas (%d), got %d", out.min_replicas, out.idle_replicas))
  end
  out.cooldown = duration(spec.cooldown, "cooldown", "300s")
  out.initial_cooldown = duration(spec.initial_cooldown, "initial_cooldown", "0s")
  if type(spec.metrics) ~= "table" or #spec.metrics == 0 then fail("metrics", "a non-empty list of metrics (triggers) expected") end
  local hspec, triggers = {}, {}
  for k, v in pairs(spec) do
    if not KEDA_FIELDS[k] and k ~= "metrics" then hspec[k] = copy(v) end
  end
  hspec.min_replicas = max(1, out.min_replicas)
  hspec.max_replicas = out.max_replicas
  hspec.metrics = {}
  for i, m in ipairs(spec.metrics) do
    local f = format("metrics[%d]", i)
    if type(m) ~= "table" then fail(f, "table expected, got " .. type(m)) end
    if type(m.name) ~= "string" or m.name == "" then fail(f .. ".name", "non-empty string expected") end
    local a = m.activation
    if a == nil then a = 0 end
    if type(a) ~= "number" or a ~= a then fail(f .. ".activation", "number expected (the activation threshold), got " .. tostring(a)) end
    triggers[i] = { name = m.name, activation = a }
    local hm = {}
    for k, v in pairs(m) do if k ~= "activation" then hm[k] = copy(v) end end
    hspec.metrics[i] = hm
  end
  out.triggers = triggers
  out.hpa = require("steward.scaling.hpa").check(hspec)
  out._keda = true
  return out
end

-- The value KEDA's scaler compares with the activation threshold: the metric as the source
-- reports it (a total), not HPA's per-instance average.
local function raw_value(o)
  if o.value ~= nil then return o.value end
  if o.average ~= nil then return o.average end
  if type(o.per_instance) == "table" then
    local sum, any = 0, false
    for _, v in pairs(o.per_instance) do
      if type(v) == "number" then sum, any = sum + v, true end
    end
    return any and sum or nil
  end
  return nil
end

-- Each trigger's activity: {metric, value, activation, active, error}.
local function activity(spec, obs)
  -- Arrays for JSON (the decision log, GET /v1/scaling): empty lists encode as [].
  local list, active, any_error, names = json.array(), false, false, json.array()
  local metrics = type(obs.metrics) == "table" and obs.metrics or {}
  for i, tr in ipairs(spec.triggers) do
    local o = metrics[tr.name]
    local e = { metric = tr.name, activation = tr.activation, active = false }
    if type(o) ~= "table" then
      e.error = "no observation"
    elseif o.error ~= nil then
      e.error = tostring(o.error)
    else
      local v = raw_value(o)
      if type(v) ~= "number" then
        e.error = "no value"
      else
        e.value = v
        e.active = v > tr.activation
      end
    end
    if e.error then any_error = true end
    if e.active then active = true; names[#names + 1] = tr.name end
    list[i] = e
  end
  return list, active, any_error, names
end

local function own(decision, current, desired, triggers, limited_by, reason)
  decision.current, decision.desired = current, desired
  decision.recommended, decision.stabilized = decision.recommended or desired, decision.stabilized or desired
  decision.proposals = decision.proposals or json.array()
  decision.triggers = triggers
  decision.limited_by = limited_by
  decision.reason = reason
  return decision
end

-- decide(spec, state, obs, now) -> decision, state. The decision has HPA's shape (see
-- steward.scaling.hpa) plus `active` (a trigger is above its activation threshold), `last_active`,
-- `triggers` (each trigger's value, threshold, activity, error), `active_triggers` (their names),
-- `trigger_error` (some trigger's source failed) and `phase`: "activate",
-- "deactivate", "cooldown", "min_replicas" (the executor acted or held), "hpa" (HPA decided), or
-- "idle" (nothing to do at zero). state = {created, last_active, hpa = HPA's state}; nil at first.
-- As in KEDA, a trigger whose source fails is not active, and failing sources never scale a
-- service to zero: that needs every trigger to answer and none to be active.
function M.decide(spec, state, obs, now)
  spec = M.check(spec)
  if type(obs) ~= "table" then error("scaling: keda.decide: obs: table expected, got " .. type(obs), 2) end
  if type(now) ~= "number" then error("scaling: keda.decide: now: seconds expected, got " .. type(now), 2) end
  local current = obs.current
  if type(current) ~= "number" or current < 0 then
    error("scaling: keda.decide: obs.current: the number of instances expected, got " .. tostring(current), 2)
  end
  local st = { created = state and state.created or now, last_active = state and state.last_active,
               hpa = state and state.hpa }
  local triggers, active, is_error, active_list = activity(spec, obs)
  local active_names = concat(active_list, ", ")
  local min = spec.min_replicas
  local idle = spec.idle_replicas
  local d

  local function hpa_decides()
    local hd, hstate = require("steward.scaling.hpa").decide(spec.hpa, st.hpa, obs, now)
    st.hpa = hstate
    hd.triggers, hd.phase = triggers, "hpa"
    return hd
  end

  if active then
    if (idle ~= nil and current < min) or current == 0 then
      local to = min > 0 and min or 1
      d = own({ phase = "activate" }, current, to, triggers, nil,
              format("activated: %s above the activation threshold: %d -> %d", active_names, current, to))
      st.last_active = now
    else
      d = hpa_decides()
      -- KEDA's executor refreshes the last active time only when every trigger answered
      -- (a partial error leaves it, and the "PartialTriggerError" condition, as they are).
      if not is_error then st.last_active = now end
    end
  else
    local to_idle = (idle ~= nil and current > idle) or (current > 0 and min == 0)
    if is_error then
      -- KEDA without a fallback: the executor does nothing, HPA goes on with what it can read.
      if current > 0 then d = hpa_decides() else
        d = own({ phase = "idle" }, current, current, triggers, nil, "inactive: a trigger's source failed, holding at 0")
      end
    elseif to_idle then
      local expired
      if st.last_active == nil then
        expired = st.created + spec.initial_cooldown < now or spec.initial_cooldown == 0
      else
        expired = st.last_active + spec.cooldown < now
      end
      if expired then
        local to = idle or min
        d = own({ phase = "deactivate" }, current, to, triggers, nil,
                format("deactivated: no trigger above its activation threshold%s: %d -> %d",
                       st.last_active and format(" for %gs (cooldown %gs)", now - st.last_active, spec.cooldown) or "",
                       current, to))
      else
        -- Cooling down: the executor waits, HPA (whose minimum is 1) may still scale down.
        d = hpa_decides()
        d.phase = "cooldown"
        if d.desired == current then
          local left = (st.last_active or st.created) + (st.last_active and spec.cooldown or spec.initial_cooldown) - now
          -- What keeps the service from idle is the cooldown; HPA's own limit stays readable.
          d.hpa_limited_by, d.limited_by = d.limited_by, "cooldown"
          d.reason = format("%s; inactive, %gs of cooldown left before %d", d.reason or "", left, idle or min)
        end
      end
    elseif idle == nil and current < min then
      d = own({ phase = "min_replicas" }, current, min, triggers, "min_replicas",
              format("below min_replicas: %d -> %d", current, min))
    elseif current > 0 then
      d = hpa_decides()
    else
      d = own({ phase = "idle" }, current, current, triggers, nil, "inactive at " .. current)
    end
  end
  d.active = active
  d.last_active = st.last_active
  d.trigger_error = is_error
  d.active_triggers = active_list
  return d, st
end

return M
