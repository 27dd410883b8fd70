-- success.health: each tenant's health score, 0 to 100, every hour (and at once for one tenant
-- on a success.health.run event with data.tenant). The formula is this file: SCORE turns each
-- raw signal (steward.success.health.signals) into 0..1, `weights` (policy_config) says how
-- much each counts; the weighted mean, its parts and the signals go to the history, and a
-- score more than `drop` points below the previous one raises success.health_dropped.
-- docs/customer-success.md.
local health = require "steward.success.health"

local type, ipairs, pairs, tostring, error = type, ipairs, pairs, tostring, error
local min, max = math.min, math.max

-- signal -> 0..1; edit these to change what "healthy" means.
local SCORE = {
  -- usage: flat is 0.6, growing 5 % a day or more is 1, shrinking 10 % a day or more is 0; no use at all is 0
  usage = function(s)
    if s.usage.total == 0 then return 0 end
    return s.usage.slope >= 0 and 0.6 + 0.4 * min(1, s.usage.slope / 0.05) or 0.6 * max(0, 1 + s.usage.slope / 0.1)
  end,
  -- incidents: each one in the window costs 0.1; a mean time to repair over 4 hours costs 0.3 more
  incidents = function(s)
    local v = 1 - 0.1 * s.incidents.count
    if type(s.incidents.mttr) == "number" and s.incidents.mttr > 4 * 3600 then v = v - 0.3 end
    return v
  end,
  -- tickets: each open ticket costs 0.2
  tickets = function(s) return 1 - 0.2 * s.tickets.open end,
  -- payment: a failed last payment is 0; no billing yet counts as paid
  payment = function(s) return s.payment == "failed" and 0 or 1 end,
  -- adoption: the share of onboarding milestones reached
  adoption = function(s) return s.adoption.share end,
}

local function check_weights(w)
  local total = 0
  for k, v in pairs(w) do
    if not SCORE[k] then return nil, tostring(k) .. ": no such signal (usage, incidents, tickets, payment, adoption)" end
    if type(v) ~= "number" or v < 0 then return nil, tostring(k) .. ": a number >= 0 expected" end
    total = total + v
  end
  if total <= 0 then return nil, "at least one weight above 0 expected" end
  return true
end

local function must(v, err)
  if v == nil then error(tostring(err), 0) end
  return v
end

return {
  capabilities = { success = true },
  schedule = "0 * * * *",
  on = { "success.health.run" },
  key = function() return "all" end, -- one run at a time: a tenant's history stays in order
  config = {
    weights = { type = "table", check = check_weights,
      default = { usage = 30, incidents = 20, tickets = 15, payment = 20, adoption = 15 } },
    drop = { type = "number", default = 10, min = 0, max = 100, description = "points lost between two scores that raise success.health_dropped" },
    days = { type = "integer", default = 14, min = 2, max = 90, description = "the window of the usage trend and the incidents" },
    milestones = { type = "integer", default = 4, min = 1, description = "onboarding milestones declared (adoption's denominator)" },
  },
  -- the score a tenant would get now, without recording it: POST /v1/decide/success.health {"tenant": "acme"}
  decide = function(input, ctx)
    if type(input) ~= "table" or type(input.tenant) ~= "string" then error("tenant: string expected", 0) end
    local s = must(health.signals(input.tenant, { days = ctx.config.days, milestones = ctx.config.milestones }))
    local score, parts = health.score(s, { weights = ctx.config.weights, score = SCORE })
    return { tenant = input.tenant, score = score, parts = parts, signals = s }
  end,
  handle = function(ev, ctx)
    local cfg = ctx.config
    local list
    if ev.type == "success.health.run" and type(ev.data) == "table" and type(ev.data.tenant) == "string" then
      list = { ev.data.tenant }
    else
      list = must(health.tenants({ days = cfg.days }))
    end
    local out = {}
    for i, tenant in ipairs(list) do
      local s = must(health.signals(tenant, { days = cfg.days, milestones = cfg.milestones }))
      local score, parts = health.score(s, { weights = cfg.weights, score = SCORE })
      if ctx.dry_run then
        out[i] = { tenant = tenant, score = score }
      else
        local r = must(health.record(tenant, score, parts, { drop = cfg.drop }))
        out[i] = { tenant = tenant, score = score, previous = r.previous, dropped = r.dropped }
      end
    end
    return { scored = out }
  end,
}
