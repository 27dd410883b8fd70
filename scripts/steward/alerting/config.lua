-- steward.alerting.config: validates the alerting configuration table (the one
-- policies/lib/alerting/config.lua returns, docs/alerting.md "Configuration") and compiles
-- the parts the notification engine runs: routing tree, inhibitor, time intervals,
-- receivers, maintenance windows, flap and correlation settings. Every error names its place:
-- nil, "config.route.routes[2].matchers[1]: ...". The users/channels/schedules/
-- escalation_policies sections are checked by steward.alerting.escalation and
-- steward.alerting.oncall when those modules are present.
local route = require "steward.alerting.route"
local inhibit = require "steward.alerting.inhibit"
local timeintervals = require "steward.alerting.timeintervals"
local matchers = require "steward.alerting.matchers"
local sutil = require "steward.runtime.store.util"

local type, pairs, ipairs, tostring, pcall, error, format, sort =
  type, pairs, ipairs, tostring, pcall, error, string.format, table.sort

local M = {}

M.KEYS = { route = true, inhibit_rules = true, time_intervals = true, receivers = true, maintenance = true,
  flap = true, correlation = true, users = true, channels = true, schedules = true,
  escalation_policies = true, external_url = true, slos = true }

-- Alertmanager's send_resolved defaults per kind.
-- (log, steward's own: the log shows resolutions too.)
M.SEND_RESOLVED = { webhook = true, pagerduty = true, slack = false, teams = false, email = false, sms = false,
  log = true }

local INCIDENT_KEYS = { kind = true, service = true, escalation = true, severity = true, title = true }

-- A failure raised as {msg} inside compile is a content error; anything else is too (the
-- caller gets nil, err either way, with the place in front).
local function fail(msg) error({ msg }, 0) end

local function call(where, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then
    local msg = type(a) == "table" and a[1] or tostring(a)
    fail(where .. ": " .. msg:gsub("^[%w%.]+: ", "", 1))
  end
  if a == nil then fail(b:sub(1, #where) == where and b or (where .. ": " .. tostring(b))) end
  return a
end

local function duration(v, where)
  local d, err = route.parse_duration(v)
  if not d then fail(where .. ": " .. err) end
  return d
end

local function time_arg(v, where)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then fail(where .. ": RFC 3339 time or Unix seconds expected, got " .. type(v)) end
  local t, err = sutil.parse_rfc3339(v)
  if not t then fail(where .. ": " .. tostring(err)) end
  return t
end

local function matcher_list(v, where)
  local ok, l, err = pcall(matchers.list, v, where)
  if not ok then fail(tostring(l)) end
  if not l then fail(err) end
  return l
end

local function table_at(v, where, optional)
  if v == nil and optional then return nil end
  if type(v) ~= "table" then fail(where .. ": table expected, got " .. type(v)) end
  return v
end

local function sort_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  sort(out)
  return out
end

local function compile_receivers(cfg, out)
  local recv = table_at(cfg.receivers, "config.receivers")
  out.receivers = {}
  for name, list in pairs(recv) do
    local where = "config.receivers." .. tostring(name)
    if type(name) ~= "string" then fail("config.receivers: receiver names must be strings") end
    table_at(list, where)
    local ints = {}
    for i, spec in ipairs(list) do
      local w = format("%s[%d]", where, i)
      table_at(spec, w)
      local kind = spec.kind
      if kind == "incident" then
        for k in pairs(spec) do if not INCIDENT_KEYS[k] then fail(w .. ": unknown field " .. tostring(k)) end end
        if type(spec.service) ~= "string" then fail(w .. ".service: string expected") end
        if type(spec.escalation) ~= "string" then fail(w .. ".escalation: string expected") end
        if spec.severity ~= nil and type(spec.severity) ~= "string" then fail(w .. ".severity: string expected") end
        ints[i] = { kind = "incident", service = spec.service, escalation = spec.escalation,
          severity = spec.severity, send_resolved = true, where = w }
      elseif M.SEND_RESOLVED[kind] ~= nil then
        if spec.send_resolved ~= nil and type(spec.send_resolved) ~= "boolean" then
          fail(w .. ".send_resolved: boolean expected")
        end
        local opts = {}
        for k, v in pairs(spec) do if k ~= "kind" and k ~= "send_resolved" then opts[k] = v end end
        local sr = spec.send_resolved
        if sr == nil then sr = M.SEND_RESOLVED[kind] end
        ints[i] = { kind = kind, send_resolved = sr, options = opts, where = w }
      else
        fail(w .. ".kind: one of webhook, slack, teams, email, pagerduty, sms, log, incident expected, got " .. tostring(kind))
      end
    end
    out.receivers[name] = ints
  end
end

local function node_path(n)
  if not n.parent then return "config.route" end
  return node_path(n.parent) .. ".routes[" .. (n.index + 1) .. "]"
end

-- The fields each section may have: anything else is a typo worth an error.
local function set(list) local t = {} for _, k in ipairs(list) do t[k] = true end return t end
local MAINTENANCE_FIELDS = set { "name", "matchers", "starts_at", "ends_at", "time_intervals" }
local FLAP_FIELDS = set { "transitions", "window", "quiet" }
local CORRELATION_FIELDS = set { "name", "matchers", "count", "window", "incident" }
local function only(t, where, allowed)
  for k in pairs(t) do
    if not allowed[k] then fail(where .. ": unknown field " .. tostring(k)) end
  end
end

local function compile(cfg)
  if type(cfg) ~= "table" then fail("config: table expected, got " .. type(cfg)) end
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for _, k in ipairs(keys) do
    if not M.KEYS[k] then fail("config." .. k .. ": unknown key") end
  end
  local out = {}
  out.external_url = cfg.external_url
  -- time intervals first: routes and maintenance windows name them
  local ti = table_at(cfg.time_intervals or {}, "config.time_intervals")
  out.intervals = call("config.time_intervals", timeintervals.set, ti)
  if cfg.route == nil then fail("config.route: required") end
  table_at(cfg.route, "config.route")
  local tree, err
  do
    local ok, a, b = pcall(route.new, cfg.route)
    if not ok then fail("config." .. tostring(a):gsub("^route%.new: ", "")) end
    tree, err = a, b
  end
  if not tree then fail("config." .. err) end
  out.tree = tree
  out.inhibitor = call("config.inhibit_rules", function(r)
    local inh, e = inhibit.new(r)
    if not inh then return nil, "config." .. e end
    return inh
  end, table_at(cfg.inhibit_rules or {}, "config.inhibit_rules"))
  compile_receivers(cfg, out)
  -- cross-references of the tree: receivers and time interval names
  local bad
  tree:walk(function(n)
    if bad then return end
    local where = node_path(n)
    if not out.receivers[n.receiver] then bad = format("%s: receiver %q does not exist", where, n.receiver) return end
    for _, f in ipairs({ "mute_time_intervals", "active_time_intervals" }) do
      for _, name in ipairs(n[f] or {}) do
        if not ti[name] then bad = format("%s.%s: time interval %q does not exist", where, f, name) return end
      end
    end
  end)
  if bad then fail(bad) end
  -- maintenance windows
  out.maintenance = {}
  for i, w in ipairs(table_at(cfg.maintenance or {}, "config.maintenance")) do
    local where = format("config.maintenance[%d]", i)
    table_at(w, where)
    only(w, where, MAINTENANCE_FIELDS)
    local mw = { name = w.name or tostring(i), matchers = matcher_list(w.matchers, where .. ".matchers") }
    if (w.starts_at == nil) ~= (w.ends_at == nil) then fail(where .. ": starts_at and ends_at go together") end
    if w.starts_at ~= nil then
      mw.starts_at, mw.ends_at = time_arg(w.starts_at, where .. ".starts_at"), time_arg(w.ends_at, where .. ".ends_at")
      if mw.ends_at <= mw.starts_at then fail(where .. ".ends_at: must be after starts_at") end
    end
    if w.time_intervals ~= nil then
      mw.time_intervals = {}
      for j, name in ipairs(table_at(w.time_intervals, where .. ".time_intervals")) do
        if not ti[name] then fail(format("%s.time_intervals[%d]: time interval %q does not exist", where, j, tostring(name))) end
        mw.time_intervals[j] = name
      end
    end
    if not mw.starts_at and not mw.time_intervals then fail(where .. ": starts_at/ends_at or time_intervals required") end
    out.maintenance[i] = mw
  end
  -- flap detection
  if cfg.flap ~= nil then
    local f = table_at(cfg.flap, "config.flap")
    only(f, "config.flap", FLAP_FIELDS)
    if type(f.transitions) ~= "number" or f.transitions < 2 then fail("config.flap.transitions: number >= 2 expected") end
    out.flap = { transitions = f.transitions, window = duration(f.window or "10m", "config.flap.window"),
      quiet = duration(f.quiet or f.window or "10m", "config.flap.quiet") }
  end
  -- correlation rules
  out.correlation = {}
  local names = {}
  for i, c in ipairs(table_at(cfg.correlation or {}, "config.correlation")) do
    local where = format("config.correlation[%d]", i)
    table_at(c, where)
    only(c, where, CORRELATION_FIELDS)
    if type(c.name) ~= "string" or c.name == "" then fail(where .. ".name: string expected") end
    if names[c.name] then fail(where .. ".name: duplicate rule " .. c.name) end
    names[c.name] = true
    if type(c.count) ~= "number" or c.count < 1 then fail(where .. ".count: number >= 1 expected") end
    local inc = table_at(c.incident, where .. ".incident")
    if type(inc.service) ~= "string" then fail(where .. ".incident.service: string expected") end
    if type(inc.escalation) ~= "string" then fail(where .. ".incident.escalation: string expected") end
    out.correlation[i] = { name = c.name, matchers = matcher_list(c.matchers, where .. ".matchers"),
      count = c.count, window = duration(c.window or "10m", where .. ".window"), incident = inc }
  end
  -- escalation policies named by incident integrations and correlation rules
  local pols = cfg.escalation_policies
  if pols ~= nil then table_at(pols, "config.escalation_policies") end
  local function need_policy(name, where)
    if not pols or pols[name] == nil then fail(format("%s.escalation: escalation policy %q does not exist", where, name)) end
  end
  for _, name in ipairs(sort_keys(out.receivers)) do
    for _, integ in ipairs(out.receivers[name]) do
      if integ.kind == "incident" then need_policy(integ.escalation, integ.where) end
    end
  end
  for i, c in ipairs(out.correlation) do need_policy(c.incident.escalation, format("config.correlation[%d].incident", i)) end
  return out
end


-- compile(cfg) -> compiled parts | nil, err (the engine's own sections only).
function M.compile(cfg)
  local ok, res = pcall(compile, cfg)
  if ok then return res end
  if type(res) == "table" then return nil, res[1] end
  return nil, tostring(res)
end

-- check(cfg) -> true, compiled | nil, err: the whole configuration, the escalation and on-call
-- sections included (through their modules' own compile functions when they are installed).
function M.check(cfg)
  local out, err = M.compile(cfg)
  if not out then return nil, err end
  if cfg.schedules ~= nil then
    if type(cfg.schedules) ~= "table" then return nil, "config.schedules: table expected" end
    local oncall = require "steward.alerting.oncall"
    for _, name in ipairs(sort_keys(cfg.schedules)) do
      local okc, s, serr = pcall(oncall.schedule, cfg.schedules[name], name)
      if not okc then return nil, "config.schedules." .. name .. ": " .. tostring(s) end
      if not s then
        serr = tostring(serr)
        return nil, serr:match("^config%.") and serr or ("config.schedules." .. name .. ": " .. serr)
      end
    end
  end
  if cfg.escalation_policies ~= nil or cfg.users ~= nil or cfg.channels ~= nil then
    local escalation = require "steward.alerting.escalation"
    local okc, e, eerr = pcall(escalation.compile, cfg)
    if not okc then return nil, tostring(e) end
    if not e then
      eerr = tostring(eerr)
      return nil, eerr:match("^config%.") and eerr or ("config: " .. eerr)
    end
  end
  if cfg.slos ~= nil then
    local set, serr = require("steward.alerting.slo_alerts").compile(cfg.slos, "config.slos")
    if not set then return nil, serr end
  end
  return true, out
end

return M
