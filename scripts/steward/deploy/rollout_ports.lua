-- steward.deploy.rollout_ports: the one place the rollout engine calls the other deploy parts —
-- analysis runs (steward.deploy.analysis), Flagger's schedule (steward.deploy.flagger), approvals
-- (steward.deploy.approvals), migration checks (steward.deploy.migrations) and the metric
-- providers (steward.deploy.metrics.<name>) — so the engine sees one small interface each.
-- A part that is missing gives a clear error naming it, never a silent skip.
local type, pairs, next, tostring, format, pcall, require = type, pairs, next, tostring, string.format, pcall, require

local M = {}

local function part(name)
  local ok, mod = pcall(require, "steward.deploy." .. name)
  if not ok then return nil, format("steward.deploy.%s is not available: %s", name, tostring(mod)) end
  return mod
end
M.part = part

-- Provider functions by (run key, metric name): a provider keeps its previous sample (deltas of
-- counters), so the same function serves every measurement of a run in this process.
local providers = setmetatable({}, { __mode = "v" })

-- measurer(run_key, service, revision) -> measure(metric) -> value | nil, err.
-- metric.provider is `{<name> = {args}}` (the revision and service are filled in) or a function.
function M.measurer(run_key, service, revision)
  return function(metric)
    local p = metric.provider
    if type(p) == "function" then return p(revision, service) end
    if type(p) ~= "table" then return nil, "metric " .. tostring(metric.name) .. ": provider: table or function expected" end
    local key = run_key .. "/" .. tostring(metric.name)
    local fn = providers[key]
    if not fn then
      local name, args = next(p)
      local mod, err = part("metrics." .. tostring(name))
      if not mod then return nil, err end
      local a = {}
      for k, v in pairs(type(args) == "table" and args or {}) do a[k] = v end
      a.service = a.service or service
      a.revision = a.revision or revision
      local make = type(mod) == "function" and mod or mod.provider or mod.new
      if type(make) ~= "function" then return nil, "steward.deploy.metrics." .. tostring(name) .. " is not a provider" end
      fn, err = make(a)
      if not fn then return nil, err end
      providers[key] = fn
    end
    return fn()
  end
end

-- analysis_start(spec, now) -> state | nil, err
function M.analysis_start(spec, now)
  local a, err = part("analysis")
  if not a then return nil, err end
  return a.run(spec, now)
end

-- analysis_step(spec, state, now, measure) -> state, next_due (nil when the run is over) | nil, err
function M.analysis_step(spec, state, now, measure)
  local a, err = part("analysis")
  if not a then return nil, err end
  return a.step(state, now, measure, spec)
end

-- analysis_terminate(spec, state, now) -> state: a run stopped from outside (a background run at
-- promotion) ends Successful unless it already decided otherwise, as Argo terminates it.
function M.analysis_terminate(spec, state, now)
  local a = part("analysis")
  if a and type(a.terminate) == "function" then return a.terminate(state, now, spec) end
  if state.phase == "Running" or state.phase == "Pending" then state.phase = "Successful" end
  return state
end

-- flagger_start(spec) -> state; flagger_next(spec, state, checks_ok) -> action, state
-- action: {action = "set_weight", weight = n} | {action = "promote"} | {action = "rollback"} | {action = "wait"}
function M.flagger_start(spec)
  local f, err = part("flagger")
  if not f then return nil, err end
  if type(f.new) == "function" then return f.new(spec) end
  return { spec = spec, weight = 0, failed_checks = 0 }
end

function M.flagger_next(spec, state, ok)
  local f, err = part("flagger")
  if not f then return nil, err end
  local action, s2 = f.next(state, ok, spec)
  if type(action) == "string" then
    local verb, n = action:match("^(%S+)%s*(%d*)$")
    action = { action = verb, weight = tonumber(n) }
  end
  return action, s2 or state
end

-- approval_request(opts) -> id | nil, err
function M.approval_request(opts)
  local a, err = part("approvals")
  if not a then return nil, err end
  return a.request(opts)
end

-- migrations_check(sql) -> violations | nil, err; migrations_compatible(sql) -> true | false, reasons
function M.migrations_check(sql)
  local m, err = part("migrations")
  if not m then return nil, err end
  return m.check(sql)
end

function M.migrations_compatible(sql)
  local m, err = part("migrations")
  if not m then return nil, err end
  return m.compatible(sql)
end

return M
