-- deploy.freeze: change freezes. Its config is the freeze windows (steward.deploy.freeze:
-- recurring Alertmanager-style time intervals or date ranges, in IANA zones, for some
-- services and environments, with exceptions), checked when the policy loads. It answers
-- POST /v1/decide/deploy.freeze ({service, revision, environment, override}: the rollout
-- engine asks it before POST /v1/rollouts starts anything) with {allow, reason, window}, and
-- turns each deploy.requested event into deploy.admitted or deploy.refused (same data, plus
-- the window that refused it). An override is the id of an approval with subject
-- "freeze-override:<service>" that was granted.
local freeze = require "steward.deploy.freeze"
local approvals = require "steward.deploy.approvals"
local events = require "steward.events"

local type, tostring = type, tostring

local function decide(input, ctx)
  if type(input) ~= "table" then error("deploy.freeze: input: an object {service, revision, environment, override} expected") end
  if type(input.service) ~= "string" or input.service == "" then error("deploy.freeze: service: non-empty string expected") end
  if input.revision ~= nil and (type(input.revision) ~= "string" or not input.revision:match("^[%w._-]+$")) then
    error("deploy.freeze: revision: a revision id (letters, digits, '.', '_', '-') expected")
  end
  if input.environment ~= nil and type(input.environment) ~= "string" then
    error("deploy.freeze: environment: string expected")
  end
  local override
  if input.override ~= nil then
    if type(input.override) ~= "string" then error("deploy.freeze: override: an approval id expected") end
    local a, err = approvals.get(input.override)
    if a == nil then error("deploy.freeze: cannot read approval " .. input.override .. ": " .. tostring(err)) end
    override = a or nil
  end
  local allow, window = freeze.check(ctx.config.windows, { service = input.service,
    environment = input.environment or ctx.config.environment, override = override })
  if not window then return { allow = true, reason = "no change freeze applies" } end
  if allow then
    return { allow = true, window = window.name, ends_at = window.ends_at, override = input.override,
             reason = window.message .. ", overridden by approval " .. tostring(input.override) }
  end
  local reason = window.message
  if input.override ~= nil then
    reason = reason .. "; approval " .. input.override .. " is not a granted freeze-override:" .. input.service
  end
  return { allow = false, window = window.name, ends_at = window.ends_at, reason = reason }
end

return {
  name = "deploy.freeze",
  on = { "deploy.requested" },
  key = function(ev) return type(ev.data) == "table" and ev.data.service or ev.id end,
  capabilities = { ["events.emit"] = { "deploy.admitted", "deploy.refused" } },
  config = {
    windows = { type = "array", default = {}, check = freeze.validate,
                description = "freeze windows (docs/deploy/freeze.md)" },
    environment = { type = "string", default = "production",
                    description = "the environment of a request that names none" },
  },
  decide = decide,
  handle = function(ev, ctx)
    local d = type(ev.data) == "table" and ev.data or {}
    local ok, res = pcall(decide, d, ctx)
    local out = {}
    for k, v in pairs(d) do out[k] = v end
    if not ok then
      -- A request that is not one (no service) is refused, naming why; nothing is deployed.
      out.reason = tostring(res):gsub("^.-deploy%.freeze: ", "")
      res = { allow = false, reason = out.reason }
    else
      out.reason, out.window, out.ends_at = res.reason, res.window, res.ends_at
    end
    local r, err = events.emit({ id = "deploy.freeze:" .. ev.id, type = res.allow and "deploy.admitted" or "deploy.refused",
      tenant = ev.tenant, data = out })
    if not r then error("cannot emit the verdict: " .. tostring(err)) end
    ctx.log.info(res.allow and "deploy admitted" or "deploy refused", { service = d.service, reason = res.reason })
    return res
  end,
}
