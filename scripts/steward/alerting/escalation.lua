-- steward.alerting.escalation: escalation policies as PagerDuty and Grafana OnCall have them —
-- ordered rules with delays and targets (users, on-call schedules, channels), repeat loops,
-- an acknowledgement timeout that re-triggers, auto-resolve, time-window conditions. Every
-- step is a durable timer with a deterministic key and every send carries an idempotency key
-- derived from (incident, epoch, loop, step, target), so a handler that runs again after a
-- crash or a restart loses no step and notifies nobody twice. The policy that calls esc:handle
-- must key its events by incident (policies/alerting/incidents.lua), so one incident's steps
-- run one at a time. The targets of one step are independent: each send runs in its own task,
-- so a channel that is down and retrying holds back nobody else.
local time = require "steward.time"
local task = require "steward.task"
local store = require "steward.runtime.store"
local notify = require "steward.notify"
local incidents = require "steward.alerting.incidents"
local links = require "steward.alerting.links"
local timeintervals = require "steward.alerting.timeintervals"

local type, pairs, ipairs, tostring, tonumber, format, concat, sort, max =
  type, pairs, ipairs, tostring, tonumber, string.format, table.concat, table.sort, math.max

local M = {}

local Esc = {}
Esc.__index = Esc

local function fail(path, msg) return nil, "config." .. path .. ": " .. msg end

local function dur(v, path)
  if v == nil then return nil end
  local d, err = time.parse_duration(v)
  if not d then return nil, "config." .. path .. ": " .. tostring(err) end
  if d < 0 then return nil, "config." .. path .. ": non-negative duration expected" end
  return d
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  sort(out, function(a, b) return tostring(a) < tostring(b) end)
  return out
end

local USER_FIELDS = { name = true, email = true, phone = true, notify = true, slack = true }
local RULE_FIELDS = { delay = true, targets = true, when = true }
local POLICY_FIELDS = { rules = true, ["repeat"] = true, repeat_delay = true, ack_timeout = true,
                        auto_resolve = true, link_ttl = true }

-- A rule's `when`: function(t) -> bool, or a list of time interval specs (any contains t).
local function compile_when(w, path)
  if w == nil then return nil end
  if type(w) == "function" then return w end
  if type(w) ~= "table" then return fail(path, "a function or a list of time intervals expected") end
  local list = w[1] and w or { w }
  local ivs = {}
  for i, spec in ipairs(list) do
    local iv, err = timeintervals.new(spec)
    if not iv then return fail(path .. "[" .. i .. "]", err) end
    ivs[i] = iv
  end
  return function(t)
    for _, iv in ipairs(ivs) do if iv:contains(t) then return true end end
    return false
  end
end

-- compile(cfg) -> esc | nil, "config.<path>: reason". cfg holds users, channels, schedules and
-- escalation_policies (other keys are ignored: they belong to other modules); cfg.store (a
-- store) overrides store.default().
function M.compile(cfg)
  if type(cfg) ~= "table" then error("escalation.compile: cfg: table expected, got " .. type(cfg), 2) end
  local esc = setmetatable({ users = {}, channels = {}, schedules = {}, policies = {}, store = cfg.store }, Esc)

  for _, name in ipairs(sorted_keys(cfg.users or {})) do
    local u = cfg.users[name]
    local path = "users." .. tostring(name)
    if type(name) ~= "string" or type(u) ~= "table" then return fail(path, "table expected") end
    for k in pairs(u) do if not USER_FIELDS[k] then return fail(path .. "." .. tostring(k), "unknown field") end end
    if u.notify ~= nil and type(u.notify) ~= "table" then return fail(path .. ".notify", "list of channel names expected") end
    esc.users[name] = { name = u.name or name, email = u.email, phone = u.phone, slack = u.slack, notify = u.notify or {} }
  end

  for _, name in ipairs(sorted_keys(cfg.channels or {})) do
    local spec = cfg.channels[name]
    local path = "channels." .. tostring(name)
    if type(name) ~= "string" or type(spec) ~= "table" then return fail(path, "table expected") end
    local opts = {}
    for k, v in pairs(spec) do if k ~= "kind" then opts[k] = v end end
    opts.name = opts.name or name
    -- A user's email contact method: each message names its recipient (msg.to).
    if spec.kind == "email" and not (opts.to or opts.cc or opts.bcc) then opts.to = {} end
    local ok, ch = pcall(notify.channel, spec.kind, opts)
    if not ok then return fail(path, (tostring(ch):gsub("^[^:]*:%d+: ", ""))) end
    esc.channels[name] = ch
  end

  for name, u in pairs(esc.users) do
    for i, ch in ipairs(u.notify) do
      if not esc.channels[ch] then
        return fail(format("users.%s.notify[%d]", name, i), "unknown channel '" .. tostring(ch) .. "'")
      end
    end
  end

  local sched_names = sorted_keys(cfg.schedules or {})
  if #sched_names > 0 then
    local oncall = require "steward.alerting.oncall"
    for _, name in ipairs(sched_names) do
      local okc, s, err = pcall(oncall.schedule, cfg.schedules[name], name)
      if not okc then s, err = nil, s end
      if not s then
        err = tostring(err)
        return nil, err:match("^config%.") and err or ("config.schedules." .. name .. ": " .. err)
      end
      esc.schedules[name] = s
    end
  end

  for _, name in ipairs(sorted_keys(cfg.escalation_policies or {})) do
    local p = cfg.escalation_policies[name]
    local path = "escalation_policies." .. tostring(name)
    if type(p) ~= "table" then return fail(path, "table expected") end
    for k in pairs(p) do if not POLICY_FIELDS[k] then return fail(path .. "." .. tostring(k), "unknown field") end end
    if type(p.rules) ~= "table" or #p.rules == 0 then return fail(path .. ".rules", "non-empty list expected") end
    local pol = { name = name, rules = {} }
    local err
    local largest = 0
    for i, r in ipairs(p.rules) do
      local rpath = format("%s.rules[%d]", path, i)
      if type(r) ~= "table" then return fail(rpath, "table expected") end
      for k in pairs(r) do if not RULE_FIELDS[k] then return fail(rpath .. "." .. tostring(k), "unknown field") end end
      local rule = { targets = {} }
      rule.delay, err = dur(r.delay or 0, rpath .. ".delay")
      if not rule.delay then return nil, err end
      largest = max(largest, rule.delay)
      rule.when, err = compile_when(r.when, rpath .. ".when")
      if r.when ~= nil and not rule.when then return nil, err end
      if type(r.targets) ~= "table" or #r.targets == 0 then return fail(rpath .. ".targets", "non-empty list expected") end
      for j, t in ipairs(r.targets) do
        local tpath = format("%s.targets[%d]", rpath, j)
        if type(t) ~= "table" then return fail(tpath, "{user = ...}, {schedule = ...} or {channel = ...} expected") end
        local n = 0
        for k in pairs(t) do
          if k ~= "user" and k ~= "schedule" and k ~= "channel" then return fail(tpath .. "." .. tostring(k), "unknown field") end
          n = n + 1
        end
        if n ~= 1 then return fail(tpath, "exactly one of user, schedule, channel expected") end
        if t.user and not esc.users[t.user] then return fail(tpath .. ".user", "unknown user '" .. tostring(t.user) .. "'") end
        if t.schedule and not esc.schedules[t.schedule] then
          return fail(tpath .. ".schedule", "unknown schedule '" .. tostring(t.schedule) .. "'")
        end
        if t.channel and not esc.channels[t.channel] then
          return fail(tpath .. ".channel", "unknown channel '" .. tostring(t.channel) .. "'")
        end
        rule.targets[j] = { user = t.user, schedule = t.schedule, channel = t.channel }
      end
      pol.rules[i] = rule
    end
    local rep = p["repeat"] or 0
    if type(rep) ~= "number" or rep < 0 or rep ~= math.floor(rep) then return fail(path .. ".repeat", "integer >= 0 expected") end
    pol["repeat"] = rep
    pol.repeat_delay, err = dur(p.repeat_delay or (largest > 0 and largest or 300), path .. ".repeat_delay")
    if not pol.repeat_delay then return nil, err end
    for _, k in ipairs({ "ack_timeout", "auto_resolve", "link_ttl" }) do
      if p[k] ~= nil then
        pol[k], err = dur(p[k], path .. "." .. k)
        if not pol[k] then return nil, err end
        if pol[k] <= 0 then return fail(path .. "." .. k, "positive duration expected") end
      end
    end
    esc.policies[name] = pol
  end
  return esc
end

-- ---- running ----

function Esc:st()
  local st = self.store or store.default()
  if not st then error("escalation: no store (run inside the daemon, or pass cfg.store)", 3) end
  return st
end

local function log(ctx, level, msg, fields)
  if ctx and ctx.log and ctx.log[level] then ctx.log[level](msg, fields) end
end

-- Arms a durable timer; its key makes arming idempotent, and once fired the timer's event id
-- ("timer:k:<key>") is taken, so re-arming after it fired fires nothing.
local function arm(delay, type_, data, key)
  local id, err = time.after(delay, { type = type_, data = data }, { key = key })
  if not id then error("escalation: cannot arm " .. type_ .. ": " .. tostring(err), 0) end
  return id
end

-- The message of a notification about inc.
function Esc:message(inc, pol, extra)
  local ttl = pol and pol.link_ttl
  local ack = links.url(inc.id, "ack", ttl)
  local res = links.url(inc.id, "resolve", ttl)
  local lines = {}
  if inc.summary and inc.summary ~= "" then lines[#lines + 1] = inc.summary end
  if extra then lines[#lines + 1] = extra end
  lines[#lines + 1] = format("Incident %s (%s), service %s, %s", inc.id, inc.state, inc.service, inc.severity)
  if ack then lines[#lines + 1] = "Acknowledge: " .. ack end
  if res then lines[#lines + 1] = "Resolve: " .. res end
  return { title = inc.title, text = concat(lines, "\n"), severity = inc.severity == "error" and "critical" or inc.severity,
           labels = inc.labels, url = ack, source = "steward incident " .. inc.id, incident = inc.id,
           -- a PagerDuty target sees every step of one incident as one PagerDuty incident
           dedup_key = "steward/incident/" .. inc.id }
end

-- Records one attempt of a send on the timeline; its id makes a re-run record it once.
local function note_attempt(st, inc, chname, ch, key, info, a)
  local data = { channel = chname, kind = ch.kind, key = key, attempt = a.attempt, outcome = a.outcome,
                 status = a.status, error = a.error, retry_in = a.retry_in }
  for k, v in pairs(info) do data[k] = v end
  incidents.note(st, inc.id, "notification_attempt", data, "escalation",
                 { id = format("a/%s/%s/%d", chname, key, a.attempt) })
end

-- Sends msg on one channel (to a user, when given) with an idempotency key, and records each
-- attempt and the outcome on the timeline once. -> outcome ("sent", "duplicate", "failed")
function Esc:send(st, inc, chname, user, msg, key, info, ctx)
  local ch = self.channels[chname]
  local m = {}
  for k, v in pairs(msg) do m[k] = v end
  if user then
    if ch.kind == "email" then m.to = user.email
    elseif ch.kind == "sms" then m.to = user.phone end
  end
  local outcome, err
  if user and (ch.kind == "email" or ch.kind == "sms") and not m.to then
    outcome, err = "failed", format("user %s has no %s", info.user, ch.kind == "email" and "email" or "phone")
  else
    local ok, res, serr = pcall(ch.send, ch, m, { key = key,
      on_attempt = function(a) note_attempt(st, inc, chname, ch, key, info, a) end })
    if not ok then
      outcome, err = "failed", tostring(res)
    elseif res then
      outcome = res.status
    else
      outcome, err = "failed", tostring(serr)
    end
  end
  local data = { channel = chname, kind = ch.kind, outcome = outcome, error = err, key = key }
  for k, v in pairs(info) do data[k] = v end
  -- The entry's id is the notification's key: a re-run records the first outcome only.
  incidents.note(st, inc.id, "notification", data, "escalation", { id = "n/" .. chname .. "/" .. key })
  log(ctx, outcome == "failed" and "warn" or "info", "incident notification",
      { incident = inc.id, channel = chname, target = info.target, outcome = outcome, error = err })
  return outcome
end

-- Runs the sends collected in `sends` at once, one task each, and returns when all have
-- ended. An error one of them raised (a store failure) is raised again after all ended, so
-- the handler fails and runs again; the sends' idempotency keys make that re-run safe.
local function send_all(sends)
  local hs = {}
  for i, f in ipairs(sends) do hs[i] = task.spawn({ name = "escalation.send" }, f) end
  local first
  for _, h in ipairs(hs) do
    local ok, err = h:join()
    if not ok and not first then first = err end
  end
  if first then error(first, 0) end
end

-- Adds the sends to a user (one per contact channel) to `sends`.
function Esc:notify_user(st, inc, uname, msg, key, info, ctx, sends)
  local u = self.users[uname]
  if not u then
    incidents.note(st, inc.id, "notification", { target = info.target, user = uname, outcome = "failed",
      error = "unknown user " .. uname }, "escalation", { id = "n/unknown/" .. key })
    return
  end
  info.user = uname
  for _, chname in ipairs(u.notify) do
    sends[#sends + 1] = function() return self:send(st, inc, chname, u, msg, key, info, ctx) end
  end
end

-- Adds the sends to one target of a step to `sends`.
function Esc:notify_target(st, inc, t, msg, base, info, ctx, sends)
  if t.user then
    info.target = "user:" .. t.user
    self:notify_user(st, inc, t.user, msg, base .. "/user:" .. t.user, info, ctx, sends)
  elseif t.channel then
    info.target = "channel:" .. t.channel
    sends[#sends + 1] = function()
      return self:send(st, inc, t.channel, nil, msg, base .. "/channel:" .. t.channel, info, ctx)
    end
  else
    local who = self.schedules[t.schedule]:on_call(time.now()) or {}
    if #who == 0 then
      incidents.note(st, inc.id, "notification", { target = "schedule:" .. t.schedule, outcome = "failed",
        error = "nobody is on call", step = info.step, loop = info.loop, epoch = info.epoch },
        "escalation", { id = "n/schedule/" .. base .. "/" .. t.schedule })
    end
    for _, u in ipairs(who) do
      local i2 = {}
      for k, v in pairs(info) do i2[k] = v end
      i2.target = "schedule:" .. t.schedule
      self:notify_user(st, inc, u, msg, base .. "/schedule:" .. t.schedule .. "/" .. u, i2, ctx, sends)
    end
  end
end

local function step_key(id, epoch, loop, step)
  return format("incident/%s/e%d/l%d/s%d", id, epoch, loop, step)
end

-- Schedules step `step` of loop `loop` after `delay`; 0 runs it now (inline).
function Esc:schedule_step(st, inc, pol, epoch, loop, step, delay, ctx)
  if delay <= 0 then return self:escalate(st, inc.id, epoch, loop, step, ctx) end
  arm(delay, "incident.escalate", { incident = inc.id, epoch = epoch, loop = loop, step = step },
      "esc/" .. step_key(inc.id, epoch, loop, step))
end

-- One escalation step: only while the incident is still triggered in the same epoch.
function Esc:escalate(st, id, epoch, loop, step, ctx)
  local inc, err = incidents.get(st, id)
  if inc == nil then error("escalation: " .. tostring(err), 0) end
  if not inc or inc.state ~= "triggered" or inc.epoch ~= epoch then return "stale" end
  local pol = self.policies[inc.escalation or ""]
  if not pol then return "no policy" end
  local rule = pol.rules[step]
  if not rule then return "no rule" end
  local now = time.now()
  local info = { step = step, loop = loop, epoch = epoch }
  local base = step_key(id, epoch, loop, step)
  if rule.when and not rule.when(now) then
    incidents.note(st, id, "escalation", { step = step, loop = loop, epoch = epoch, skipped = true,
      message = "step skipped: outside its time window" }, "escalation", { id = "skip/" .. base })
  else
    incidents.note(st, id, "escalation", { step = step, loop = loop, epoch = epoch,
      message = format("escalation step %d%s", step, loop > 0 and format(" (repeat %d)", loop) or "") },
      "escalation", { id = "step/" .. base })
    local msg = self:message(inc, pol, loop > 0 and format("Still unacknowledged (repeat %d).", loop) or nil)
    local sends = {}
    for _, t in ipairs(rule.targets) do
      local i2 = {}
      for k, v in pairs(info) do i2[k] = v end
      self:notify_target(st, inc, t, msg, base, i2, ctx, sends)
    end
    send_all(sends)
  end
  if step < #pol.rules then
    self:schedule_step(st, inc, pol, epoch, loop, step + 1, pol.rules[step + 1].delay, ctx)
  elseif loop < pol["repeat"] then
    self:schedule_step(st, inc, pol, epoch, loop + 1, 1, math.max(pol.repeat_delay, pol.rules[1].delay), ctx)
  end
  return "notified"
end

-- handle(ev, ctx): incident.* events and the module's own timer events.
function Esc:handle(ev, ctx)
  local d = ev.data or {}
  local id = d.incident
  if type(id) ~= "string" then return end
  -- A dry run (policy simulate) sees only the policy's recording views; this module's sends,
  -- timers and store writes are real, so it does nothing there.
  if ctx and ctx.dry_run then return "dry run" end
  local st = self:st()
  local t = ev.type
  if t == "incident.escalate" then
    return self:escalate(st, id, d.epoch, d.loop or 0, d.step or 1, ctx)
  end
  local inc, err = incidents.get(st, id)
  if inc == nil then error("escalation: " .. tostring(err), 0) end
  if not inc then return end
  local pol = self.policies[inc.escalation or ""]
  if t == "incident.triggered" then
    if not pol then
      if inc.escalation then log(ctx, "warn", "incident names an unknown escalation policy", { incident = id, escalation = inc.escalation }) end
      return
    end
    local epoch = d.epoch or inc.epoch
    if pol.auto_resolve and epoch == 1 then
      arm(pol.auto_resolve, "incident.auto_resolve", { incident = id, at = inc.alert_at }, format("autores/%s/%.3f", id, inc.alert_at))
    end
    if inc.state ~= "triggered" or inc.epoch ~= epoch then return end
    return self:schedule_step(st, inc, pol, epoch, 0, 1, pol.rules[1].delay, ctx)
  elseif t == "incident.acknowledged" then
    if pol and pol.ack_timeout and inc.state == "acknowledged" then
      arm(pol.ack_timeout, "incident.ack_timeout", { incident = id, epoch = inc.epoch },
          format("acktimeout/%s/e%d", id, inc.epoch))
    end
  elseif t == "incident.ack_timeout" then
    if inc.state == "acknowledged" and inc.epoch == d.epoch then
      incidents.retrigger(st, id, d.epoch, "escalation", { reason = "acknowledgement timed out" })
    end
  elseif t == "incident.auto_resolve" then
    if inc.state ~= "triggered" and inc.state ~= "acknowledged" or not pol or not pol.auto_resolve then return end
    -- the timer's event carries the time it fell due (a late-fired timer counts from then)
    local quiet = max(time.now(), tonumber(ev.time) or 0) - inc.alert_at
    if quiet >= pol.auto_resolve - 0.001 then
      incidents.resolve(st, id, "auto-resolve", { reason = format("no alert activity for %s", incidents.ago(quiet)) })
    else
      arm(pol.auto_resolve - quiet, "incident.auto_resolve", { incident = id, at = inc.alert_at },
          format("autores/%s/%.3f", id, inc.alert_at))
    end
  elseif t == "incident.reassigned" then
    local user = d.assignee
    if user and self.users[user] then
      local msg = self:message(inc, pol, "Assigned to you" .. (d.actor and (" by " .. d.actor) or "") .. ".")
      local sends = {}
      self:notify_user(st, inc, user, msg, format("incident/%s/r%d/assign:%s", id, d.revision or inc.revision, user),
        { target = "user:" .. user, reason = "reassigned" }, ctx, sends)
      send_all(sends)
    end
  end
end

return M
