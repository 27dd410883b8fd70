-- The ctx a policy's handle(event, ctx) and decide(input, ctx) receive: its config, a
-- logger tagged with the policy (and event), its own store namespace, and dry_run.
local log = require "steward.log"

local pairs = pairs

local M = {}

local function tagged_logger(tags)
  local function at(level)
    return function(msg, fields)
      local all = {}
      for k, v in pairs(tags) do all[k] = v end
      if fields then for k, v in pairs(fields) do all[k] = v end end
      log[level](msg, all)
    end
  end
  return { debug = at("debug"), info = at("info"), warn = at("warn"), error = at("error") }
end

-- new(policy, {event_id, tenant, attempt, dry_run}) -> ctx; config is the tenant's when the
-- configuration overlays it for that tenant.
function M.new(p, opts)
  opts = opts or {}
  local tags = { policy = p.name, version = p.version, event = opts.event_id }
  local config = p.config
  if opts.tenant and p.tenant_configs and p.tenant_configs[opts.tenant] then
    config = p.tenant_configs[opts.tenant]
  end
  local ctx = {
    policy = p.name, version = p.version, config = config, attempt = opts.attempt,
    event_id = opts.event_id, dry_run = opts.dry_run or false, log = tagged_logger(tags),
  }
  -- ctx.kv(): the policy's own kv namespace ("policy:<name>"), opened on first use.
  -- (steward.kv's namespaces hold their store in a closure: nothing in ctx leads to it.)
  function ctx.kv(suffix)
    local kv = require "steward.kv"
    local name = "policy:" .. p.name .. (suffix and (":" .. suffix) or "")
    if p.tenant then name = "tenant:" .. p.tenant .. ":" .. name end
    return kv.ns(name)
  end
  return ctx
end

return M
