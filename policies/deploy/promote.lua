-- deploy.promote: a release that completed its rollout in one environment is requested in
-- the next (staging -> production), after that environment's soak time and, when its
-- settings say so, an approval. The environments, their order and each one's settings
-- (validated by the schema declared in the config) come from steward.deploy.environments.
-- Every step is idempotent (timer keys, approval keys, event ids derived from the
-- promotion), so a handler that runs again after a crash repeats nothing.
--
--   rollout.completed {service, revision, environment}   -> soak timer (deploy.promote.soaked)
--   soaked, approval needed                              -> approvals.request (subject promote:...)
--   soaked without approval, or approval.granted         -> deploy.requested in the next environment
--   rollout.aborted in the earlier environment           -> the pending soak is cancelled
local environments = require "steward.deploy.environments"
local approvals = require "steward.deploy.approvals"
local events = require "steward.events"
local time = require "steward.time"

local type, tostring, format = type, tostring, string.format

local PREFIX = "promote:"

local function subject(service, revision, to) return format("%s%s:%s:%s", PREFIX, service, revision, to) end

local function parse_subject(s)
  if type(s) ~= "string" or s:sub(1, #PREFIX) ~= PREFIX then return nil end
  return s:sub(#PREFIX + 1):match("^([^:]+):([^:]+):([^:]+)$")
end

local function envs(ctx)
  return assert(environments.compile(ctx.config.environments))
end

local function request_next(ev, ctx, service, revision, from, to)
  local settings = assert(envs(ctx):settings(to))
  local r, err = events.emit({ id = "deploy.promote:" .. subject(service, revision, to), type = "deploy.requested",
    tenant = ev.tenant, data = { service = service, revision = revision, environment = to, promoted_from = from,
    settings = settings } })
  if not r then error("cannot request the deploy: " .. tostring(err)) end
  ctx.log.info("promotion requested", { service = service, revision = revision, from = from, to = to })
  return { promoted = to }
end

local function soaked(ev, ctx, service, revision, from, to)
  local settings = assert(envs(ctx):settings(to))
  if not settings.approval then return request_next(ev, ctx, service, revision, from, to) end
  local sub = subject(service, revision, to)
  local id, err = approvals.request({ subject = sub, step = "promote to " .. to, key = sub,
    timeout = settings.approval_timeout, approvers = settings.approvers,
    reason = format("Promote %s %s from %s to %s", service, revision, from, to), requested_by = ctx.policy })
  if not id then error("cannot request the approval: " .. tostring(err)) end
  ctx.log.info("promotion waits for approval", { approval = id, subject = sub })
  return { approval = id }
end

local function valid_release(d)
  return type(d.service) == "string" and d.service:match("^[%w._-]+$") and type(d.revision) == "string" and
    d.revision:match("^[%w._-]+$") and type(d.environment) == "string"
end

return {
  name = "deploy.promote",
  on = { "rollout.completed", "rollout.aborted", "deploy.promote.soaked", "approval.granted", "approval.denied",
         "approval.expired" },
  -- Approvals of other subjects are not ours.
  when = function(ev)
    if ev.type:match("^approval%.") then return parse_subject(type(ev.data) == "table" and ev.data.subject) ~= nil end
    return true
  end,
  key = function(ev)
    local d = type(ev.data) == "table" and ev.data or {}
    return d.service or parse_subject(d.subject) or ev.id
  end,
  capabilities = { ["events.emit"] = { "deploy.requested", "deploy.promote.*" } },
  config = {
    environments = { type = "table", check = environments.validate,
      default = {
        order = { "staging", "production" },
        settings = {
          soak = { type = "duration", default = "30m", description = "time in the previous environment before promotion" },
          approval = { type = "boolean", default = false, description = "promotion into this environment needs an approval" },
          approvers = { type = "array", default = { "operator" } },
          approval_timeout = { type = "duration", default = "4h" },
        },
        overlays = { production = { approval = true } },
      },
      description = "steward.deploy.environments spec: order, settings schema, base, overlays" },
  },
  handle = function(ev, ctx)
    local d = type(ev.data) == "table" and ev.data or {}
    if ev.type == "rollout.completed" or ev.type == "rollout.aborted" then
      if not valid_release(d) then error("rollout event without service, revision and environment") end
      local e = envs(ctx)
      local to, err = e:next(d.environment)
      if to == nil then ctx.log.warn("not a promotion environment", { environment = d.environment, error = err }) return end
      if not to then return { last = d.environment } end
      local sub = subject(d.service, d.revision, to)
      if ev.type == "rollout.aborted" then
        time.cancel_durable("k:" .. sub)
        return { cancelled = sub }
      end
      local settings = assert(e:settings(to))
      local soak = settings.soak or 0
      if soak > 0 then
        local id, terr = time.after(soak, { type = "deploy.promote.soaked", tenant = ev.tenant,
          data = { service = d.service, revision = d.revision, from = d.environment, to = to } }, { key = sub })
        if not id then error("cannot arm the soak timer: " .. tostring(terr)) end
        return { soaking = sub, seconds = soak }
      end
      return soaked(ev, ctx, d.service, d.revision, d.environment, to)
    elseif ev.type == "deploy.promote.soaked" then
      return soaked(ev, ctx, d.service, d.revision, d.from, d.to)
    end
    local service, revision, to = parse_subject(d.subject)
    local from = envs(ctx):previous(to)
    if ev.type == "approval.granted" then
      return request_next(ev, ctx, service, revision, from, to)
    end
    ctx.log.warn("promotion stopped", { subject = d.subject, state = d.state, by = d.decided_by })
    local r, err = events.emit({ id = "deploy.promote:stopped:" .. d.subject, type = "deploy.promote.stopped",
      tenant = ev.tenant, data = { service = service, revision = revision, environment = to, approval = d.approval,
      state = d.state, decided_by = d.decided_by } })
    if not r then error("cannot emit: " .. tostring(err)) end
    return { stopped = d.subject, state = d.state }
  end,
}
