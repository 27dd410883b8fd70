-- steward.deploy.rollout_ports: the one place the rollout engine calls the other deploy parts —
-- analysis runs (steward.deploy.analysis), Flagger's schedule (steward.deploy.flagger), approvals
-- (steward.deploy.approvals), migration checks (steward.deploy.migrations) and the metric
-- providers (steward.deploy.metrics.<name>) — so the engine sees one small interface each.
-- A part that is missing gives a clear error naming it, never a silent skip.
local type, pairs, ipairs, next, tostring, format, pcall, require =
  type, pairs, ipairs, next, tostring, string.format, pcall, require

local M = {}

local function part(name)
  local ok, mod = pcall(require, "steward.deploy." .. name)
  if not ok then return nil, format("steward.deploy.%s is not available: %s", name, tostring(mod)) end
  return mod
end
M.part = part

-- Provider functions by (run key, metric name): a provider keeps its previous sample (deltas of
-- counters), so the same function serves every measurement of a run in this process. Held
-- strongly (a weak table lost them to any collection between two measurements, and a new
-- instance answered for every request since the server was added) until release().
local providers = {}

-- release(prefix): forgets the providers of the runs whose key is prefix or starts with
-- prefix .. "/" (a run's key, or "<rollout>/a<attempt>" for every run of an attempt).
function M.release(prefix)
  local n = #prefix
  for k in pairs(providers) do
    if k:sub(1, n + 1) == prefix .. "/" then providers[k] = nil end
  end
end

-- A metric's provider, as a policy writes it: `{<name> = {args}}` names a provider module
-- (steward.deploy.metrics.<name>) whose service and revision the rollout fills in (the policy
-- cannot know the canary's revision), or a function fn() -> value | nil, err used as it is.
local function provider_fn(run_key, m, service, revision)
  local p = m.provider
  if type(p) ~= "table" then return p end
  local key = run_key .. "/" .. tostring(m.name)
  local fn = providers[key]
  if fn then return fn end
  local name, args = next(p)
  local a = {}
  for k, v in pairs(type(args) == "table" and args or {}) do a[k] = v end
  a.service = a.service or service
  a.revision = a.revision or revision
  fn = function()
    local mod, err = part("metrics." .. tostring(name))
    if not mod then return nil, err end
    local make = type(mod) == "function" and mod or mod.provider or mod.new
    if type(make) ~= "function" then return nil, "steward.deploy.metrics." .. tostring(name) .. " is not a provider" end
    local f, ferr = make(a)
    if not f then return nil, ferr end
    providers[key] = f
    return f()
  end
  providers[key] = fn
  return fn
end

-- resolve(spec, run_key, service, revision) -> the spec as steward.deploy.analysis takes it:
-- every provider a function bound to the rollout's service and canary revision.
function M.resolve(spec, run_key, service, revision)
  local out = {}
  for k, v in pairs(spec) do out[k] = v end
  out.metrics = {}
  for i, m in ipairs(spec.metrics or {}) do
    local c = {}
    for k, v in pairs(m) do c[k] = v end
    c.provider = provider_fn(run_key, m, service, revision)
    out.metrics[i] = c
  end
  out.start_at_step = nil
  return out
end

-- analysis_start(spec, now) -> run | nil, err
function M.analysis_start(spec, now)
  local a, err = part("analysis")
  if not a then return nil, err end
  return a.run(spec, now)
end

-- analysis_step(spec, run, now) -> run, next_due (nil once the run is over) | nil, err
function M.analysis_step(spec, run, now)
  local a, err = part("analysis")
  if not a then return nil, err end
  return a.step(run, now, spec)
end

-- analysis_terminate(spec, run, now) -> run: a run stopped from outside (a background run at
-- promotion) ends as Argo ends a terminated run (Successful unless it already decided).
function M.analysis_terminate(spec, run, now)
  local a = part("analysis")
  if not a then return run end
  a.terminate(run, "the rollout ended")
  return (a.step(run, now, spec)) or run
end

-- flagger_start(settings) -> schedule | nil, err; flagger_next(schedule, checks_ok) -> action
-- ({action = "set_weight", canary = n, next_in} | "promote" | "finalise" | "rollback" | "wait" | "done")
function M.flagger_start(settings)
  local f, err = part("flagger")
  if not f then return nil, err end
  return f.new(settings)
end

function M.flagger_next(schedule, ok)
  local f, err = part("flagger")
  if not f then return nil, err end
  return f.next(schedule, ok)
end

-- approval_request(st, opts) -> id | nil, err. The key makes a repeated request (a handler run
-- again) find the first one instead of asking twice.
function M.approval_request(st, opts)
  local a, err = part("approvals")
  if not a then return nil, err end
  return a.request(st, opts)
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
