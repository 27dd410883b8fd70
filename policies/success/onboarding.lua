-- success.onboarding: the onboarding checklist. Each milestone is reached by the first event of
-- the tenant that it names (config `milestones`: add yours in policy_config); the one marked `value` is where the
-- tenant gets value, so time-to-value is the time from its start to that one. When a tenant
-- starts (its first event, or tenant.provisioned), a durable timer per milestone falls due
-- after `nudge_after[milestone]`: a milestone still missing then earns one nudge through
-- notify (once: the timer's key). docs/customer-success.md.
local onboarding = require "steward.success.onboarding"
local notify = require "steward.notify"
local time = require "steward.time"

local type, ipairs, pairs, tostring, error = type, ipairs, pairs, tostring, error

local MILESTONES = {
  { name = "first_event", on = { "*" }, title = "send a first event" },
  { name = "first_policy", on = { "tenant.policy.deployed", "policy.deployed" }, title = "deploy a first policy" },
  { name = "first_alert", on = { "alert.firing" }, title = "route a first alert", value = true },
  { name = "first_notification", on = { "notification.sent" }, title = "send a first notification" },
}

local function check_milestones(list)
  local seen, values = {}, 0
  for i, m in ipairs(list) do
    local at = "milestones[" .. i .. "]"
    if type(m) ~= "table" then return nil, at .. ": a table {name, on, title, value} expected" end
    for k in pairs(m) do
      if k ~= "name" and k ~= "on" and k ~= "title" and k ~= "value" then
        return nil, at .. "." .. tostring(k) .. ": unknown field (name, on, title, value)"
      end
    end
    if type(m.name) ~= "string" or not m.name:match("^[%w._-]+$") then return nil, at .. ".name: a name expected" end
    if seen[m.name] then return nil, at .. ".name: " .. m.name .. " twice" end
    seen[m.name] = true
    if type(m.on) ~= "table" or #m.on == 0 then return nil, at .. ".on: a list of event type patterns expected" end
    if type(m.title) ~= "string" then return nil, at .. ".title: a string expected" end
    if m.value then values = values + 1 end
  end
  if values > 1 then return nil, "milestones: at most one has value = true" end
  return true
end

-- steward's own bookkeeping about a tenant (its lifecycle, its tickets, this checklist) is no
-- use of the service: "*" does not take it
local function bookkeeping(ty)
  return ty:sub(1, 7) == "tenant." or ty:sub(1, 8) == "success." or ty:sub(1, 7) == "ticket."
    or ty == "notification.sent"
end

local function takes(m, ty)
  for _, pat in ipairs(m.on) do
    if (pat == "*" and not bookkeeping(ty)) or pat == ty or (pat:sub(-2) == ".*" and ty:sub(1, #pat - 1) == pat:sub(1, -2)) then return true end
  end
  return false
end

local function must(v, err)
  if v == nil then error(tostring(err), 0) end
  return v
end

local function milestone(list, name)
  for _, m in ipairs(list) do if m.name == name then return m end end
end

return {
  capabilities = { success = true, notify = { "log", "email" } },
  on = { "*" },
  key = function(ev) return ev.tenant or "-" end,
  config = {
    milestones = { type = "array", default = MILESTONES, check = check_milestones },
    -- how long after its start a tenant may go without each milestone before a nudge
    nudge_after = { type = "table", default = { first_policy = "3d", first_alert = "7d", first_notification = "7d" },
      check = function(t)
        for k, v in pairs(t) do
          if type(k) ~= "string" then return nil, "milestone names expected as keys" end
          if not time.parse_duration(v) then return nil, tostring(k) .. ": a duration such as \"3d\" expected" end
        end
        return true
      end },
    -- the nudge: channel "log", or "email" with url, from and to
    nudge = { type = "table", default = { channel = "log" }, check = function(c)
      if c.channel ~= "log" and c.channel ~= "email" then return nil, "channel: log or email expected" end
      if c.channel == "email" and (type(c.url) ~= "string" or type(c.from) ~= "string" or type(c.to) ~= "string") then
        return nil, "url, from and to: strings expected for the email channel"
      end
      return true
    end },
  },
  -- the checklist of one tenant: POST /v1/decide/success.onboarding {"tenant": "acme"}
  decide = function(input, ctx)
    if type(input) ~= "table" or type(input.tenant) ~= "string" then error("tenant: string expected", 0) end
    return must(onboarding.progress(input.tenant, ctx.config.milestones))
  end,
  handle = function(ev, ctx)
    local tenant = ev.tenant
    if not tenant or ev.type == "success.milestone.reached" then return end
    if ev.type == "success.onboarding.nudge" then
      local name = type(ev.data) == "table" and ev.data.milestone
      local m = milestone(ctx.config.milestones, name)
      if not m then return { skipped = "no milestone " .. tostring(name) } end
      local got = must(onboarding.reached(tenant))
      if got[name] then return { reached = name } end
      if ctx.dry_run then return { would = "nudge", milestone = name } end
      local c = ctx.config.nudge
      local ch = c.channel == "email"
        and notify.channel("email", { name = "onboarding", url = c.url, from = c.from, to = { c.to }, starttls = c.starttls or "no" })
        or notify.channel("log", { name = "onboarding" })
      must(ch:send({ title = ("%s: time to %s"):format(tenant, m.title), severity = "info", labels = { tenant = tenant },
        text = ("Tenant %s has not yet reached '%s'. Next step: %s."):format(tenant, name, m.title) },
        { key = "nudge:" .. tenant .. ":" .. name }))
      return { nudged = name }
    end
    local reached = {}
    for _, m in ipairs(ctx.config.milestones) do
      if takes(m, ev.type) then
        if ctx.dry_run then
          reached[#reached + 1] = m.name
        elseif must(onboarding.reach(tenant, m.name, { event = ev.id })) then
          reached[#reached + 1] = m.name
        end
      end
    end
    -- a tenant starts with its first event (or its provisioning): arm one nudge per milestone
    local starts = ev.type == "tenant.provisioned"
    for _, n in ipairs(reached) do if n == "first_event" then starts = true end end
    if starts and not ctx.dry_run then
      for name, after in pairs(ctx.config.nudge_after) do
        if milestone(ctx.config.milestones, name) then must(time.after(after, { type = "success.onboarding.nudge", tenant = tenant, data = { milestone = name } },
          { key = "nudge:" .. tenant .. ":" .. name })) end
      end
    end
    return { reached = reached }
  end,
}
