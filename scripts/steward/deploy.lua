-- steward.deploy: the deployment library for policies (docs/deployments.md). It builds rollout
-- policies — `deploy.rollout_policy{service, strategy = deploy.canary{...} | deploy.blue_green{...}}`
-- returns an ordinary policy table — and re-exports the parts (deploy.supervisor, deploy.haproxy,
-- deploy.analysis, ...), each loaded on first use; a policy gets each part with that part's own
-- capability checks (steward.runtime.policy.guards).
local canary = require "steward.deploy.strategies.canary"
local blue_green = require "steward.deploy.strategies.blue_green"
local rollout = require "steward.deploy.rollout"

local type, pairs, tostring, error, format, pcall, require = type, pairs, tostring, error, string.format, pcall, require

local M = {}

-- The parts this module re-exports (steward.deploy.<name>).
M.PARTS = { supervisor = true, haproxy = true, kubernetes = true, analysis = true, flagger = true,
  approvals = true, freeze = true, environments = true, migrations = true }

function M.canary(spec) return canary.compile(spec) end
function M.blue_green(spec) return blue_green.compile(spec) end

local POLICY_KNOWN = { service = true, strategy = true, name = true, timeout = true, config = true,
  ready_timeout = true }

-- rollout_policy{service, strategy, name, timeout, ready_timeout} -> a policy table: it handles
-- deploy.admitted for its service, the rollout.* commands and wake-ups, approval.* decisions;
-- it needs the `deploy` capability for its service; decide(input) answers the service's
-- rollout in progress (or the one named by input.rollout).
function M.rollout_policy(opts)
  if type(opts) ~= "table" then error("deploy.rollout_policy: table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not POLICY_KNOWN[k] then error(format("deploy.rollout_policy: %s: unknown field", tostring(k)), 2) end
  end
  if type(opts.service) ~= "string" or not opts.service:match("^[%w_.-]+$") then
    error("deploy.rollout_policy: service: a service name ([A-Za-z0-9_.-]) expected", 2)
  end
  local s = opts.strategy
  if type(s) ~= "table" or (s.kind ~= "canary" and s.kind ~= "blue_green") then
    error("deploy.rollout_policy: strategy: deploy.canary{...} or deploy.blue_green{...} expected", 2)
  end
  local ready_timeout
  if opts.ready_timeout ~= nil then ready_timeout = canary.duration(opts.ready_timeout, "ready_timeout") end
  local service = opts.service
  local eng = rollout.engine(service, s, { ready_timeout = ready_timeout })
  return {
    name = opts.name,
    on = { "deploy.admitted", "rollout.*", "approval.*" },
    capabilities = { deploy = { service } },
    -- one service's rollout events run one at a time, in log order
    key = function(ev) return rollout.service_of(ev) or ev.id end,
    -- a step may wait for instances to become ready
    timeout = opts.timeout or "15m",
    config = opts.config,
    handle = function(ev, ctx)
      if rollout.service_of(ev) ~= service then return nil end
      return eng:handle(ev, ctx)
    end,
    decide = function(input)
      local rs = require "steward.deploy.rollout_store"
      local st = require("steward.runtime.store").default()
      local id = type(input) == "table" and input.rollout
      local r, err
      if type(id) == "string" then r, err = rs.get(st, id) else r, err = rs.active(st, service) end
      if r == nil then return nil, err end
      return r or { service = service, phase = "none" }
    end,
  }
end

-- deploy.<part>: the part's module, required on first use.
setmetatable(M, { __index = function(_, k)
  if not M.PARTS[k] then return nil end
  local ok, mod = pcall(require, "steward.deploy." .. k)
  if not ok then error(format("deploy.%s: steward.deploy.%s is not available: %s", k, k, tostring(mod)), 2) end
  return mod
end })

return M
