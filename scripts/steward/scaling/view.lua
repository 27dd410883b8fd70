-- steward.scaling.view: what GET /v1/scaling, the REPL's scaling() and an autoscaler policy's
-- decide answer: each autoscaler's spec (as loaded), its last logged decision and its state. The
-- state and last decision come from the store (the loop saves them), so any worker — not only
-- the leader that runs the loop — answers the same; the leader adds its live view (last tick).
local kvs = require "steward.runtime.store.kv"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local sort = table.sort

local M = {}

local NS = "steward:scaling"

-- The spec without its functions (sources become {kind, metric}).
local function spec_view(s)
  local metrics = {}
  for i, m in ipairs(s.metrics or {}) do
    metrics[i] = { name = m.name, type = m.type, target = m.target, activation = m.activation,
      source = { kind = m.source.kind, metric = m.source.metric } }
  end
  return { service = s.service, revision = s.revision, min_replicas = s.min_replicas, max_replicas = s.max_replicas,
    interval = s.interval, cooldown = s.cooldown, tolerance = s.tolerance, behavior = s.behavior,
    schedule = s.schedule, predictive = s.predictive, metrics = metrics }
end

local function one(st, name, p, live)
  local s = p.autoscaler
  local rec = st and kvs.ns(st, NS):get(s.service) or nil
  local l = live[s.service] or {}
  return { policy = name, service = s.service, spec = spec_view(s),
    revision = l.revision or (rec and rec.revision),
    status = l.status or (rec and rec.status),
    current = l.decision and l.decision.current, desired = l.decision and l.decision.desired,
    last_tick = l.decision, last_decision = rec and rec.last, last_scaled = rec and rec.last_scaled,
    state = rec and rec.state }
end

-- all(policies, store [, service]) -> { view... } sorted by service
function M.all(policies, st, service)
  local ok, loop = pcall(require, "steward.scaling.loop")
  local live = ok and loop.live or {}
  local out = {}
  for name, p in pairs(policies or {}) do
    if type(p.autoscaler) == "table" and (service == nil or p.autoscaler.service == service) then
      out[#out + 1] = one(st, name, p, live)
    end
  end
  sort(out, function(a, b) return a.service < b.service end)
  return out
end

-- one(_, service): a policy's decide asks for its own service (the daemon's policies and store).
function M.one(_, service)
  local ok, loop = pcall(require, "steward.scaling.loop")
  local ctx = ok and loop.context and loop.context() or nil
  local st = require("steward.runtime.store").default()
  local list = M.all(ctx and ctx.policies or {}, st, service)
  return list[1] or { service = service, status = "not running (no autoscaler loaded for it in this process)" }
end

return M
