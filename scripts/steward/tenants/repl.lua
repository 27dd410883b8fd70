-- steward.tenants.repl: the REPL's tenants() and tenant(id) (docs/repl.md, docs/tenants.md):
-- a table of tenants, and one tenant with its provisioning saga step by step. Changes go
-- through tenant.create{...}, tenant.suspend(id, reason), ... (admin sessions only).
local tenants = require "steward.tenants"

local type, ipairs, setmetatable = type, ipairs, setmetatable

local M = {}

M.HELP = {
  { "tenants{state=, plan=}", "tenants: id, name, plan, state, failed step, version" },
  { "tenant(id)", "a tenant's record and its provisioning saga, step by step" },
  { "tenant.create{id=, name=, ...} / .update(id, patch)", "request a tenant (its admin token is shown once) / change it" },
  { "tenant.suspend(id, reason) / .resume(id) / .offboard(id)", "a tenant's lifecycle" },
}

-- install(h, {rows = helpers.rows, admin = fn(what)}): adds tenants and tenant to the helpers h.
function M.install(h, opts)
  function h.tenants(f)
    local list, err = tenants.list(f)
    if not list then return nil, err end
    local rows = {}
    for i, r in ipairs(list) do
      rows[i] = { id = r.id, name = r.name, plan = r.plan, state = r.state, failed_step = r.failed_step,
        version = r.version }
    end
    return opts.rows(rows, { "id", "name", "plan", "state", "failed_step", "version" })
  end
  local t = {}
  local function admin(what, fn)
    return function(...)
      opts.admin("tenant." .. what)
      return fn(...)
    end
  end
  t.create = admin("create", tenants.create)
  t.update = admin("update", tenants.update)
  t.suspend = admin("suspend", tenants.suspend)
  t.resume = admin("resume", tenants.resume)
  t.offboard = admin("offboard", tenants.offboard)
  t.limits = tenants.limits
  h.tenant = setmetatable(t, { __call = function(_, id)
    if type(id) ~= "string" then error("tenant: id: string expected", 2) end
    local r, err = tenants.get(id)
    if not r then return nil, err end
    local s = tenants.saga(id)
    if s then
      local rows = {}
      for i, x in ipairs(s.steps) do rows[i] = { step = x.step, status = x.status, runs = x.runs, error = x.error } end
      r.saga = { state = s.state, failed_step = s.failed_step, steps = opts.rows(rows, { "step", "status", "runs", "error" }) }
    end
    r.limits_in_force = tenants.limits(id)
    return r
  end })
end

return M
