-- steward.slo: service level objectives over the event log or Prometheus. Computes SLIs per
-- window, burn rates, the error budget, multi-window multi-burn-rate alerts (SRE workbook), and
-- turns alert state changes into slo.burn events.
local window = require "steward.slo.window"

local type, pairs, ipairs, error, tostring, sort = type, pairs, ipairs, error, tostring, table.sort

local M = {}

M.parse_duration = window.parse
M.period_start = window.period_start

-- The SRE workbook's table (chapter 5, "Alerting on SLOs", multiwindow multi-burn-rate): a
-- fresh copy each call, so a caller may edit it.
function M.workbook_defaults()
  return {
    { severity = "page", long = "1h", short = "5m", factor = 14.4 },
    { severity = "page", long = "6h", short = "30m", factor = 6 },
    { severity = "ticket", long = "1d", short = "2h", factor = 3 },
    { severity = "ticket", long = "3d", short = "6h", factor = 1 },
  }
end

M.events = require("steward.slo.events").new
M.prometheus = require("steward.slo.prometheus").new

local SLO = {}
SLO.__index = SLO

local DEFINE_FIELDS = { name = true, objective = true, period = true, source = true, alerts = true }

function M.define(d)
  if type(d) ~= "table" then error("slo.define: table expected, got " .. type(d), 2) end
  for k in pairs(d) do
    if not DEFINE_FIELDS[k] then error("slo.define: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(d.name) ~= "string" or d.name == "" then error("slo.define: name: non-empty string expected", 2) end
  local o = d.objective
  if type(o) ~= "number" or not (o > 0 and o < 1) then
    error("slo.define: objective: number between 0 and 1 (exclusive) expected, e.g. 0.999", 2)
  end
  local src = d.source
  if type(src) ~= "table" or type(src.measure) ~= "function" then
    error("slo.define: source: slo.events{...} or slo.prometheus{...} expected", 2)
  end
  local period = d.period or "30d"
  local calendar
  if period == "month" or period == "week" then
    calendar = period
  else
    local ok, secs = pcall(window.parse, period)
    if not ok then error("slo.define: period: " .. secs:gsub("^.-: ", "") .. " or \"month\" / \"week\"", 2) end
  end
  local alerts = d.alerts
  if alerts == nil then alerts = M.workbook_defaults() end
  if type(alerts) ~= "table" then error("slo.define: alerts: list expected", 2) end
  local rules = {}
  for i, a in ipairs(alerts) do
    local what = "slo.define: alerts[" .. i .. "]"
    if type(a) ~= "table" then error(what .. ": table expected", 2) end
    if type(a.severity) ~= "string" then error(what .. ".severity: string expected", 2) end
    if type(a.factor) ~= "number" or a.factor <= 0 then error(what .. ".factor: positive number expected", 2) end
    for _, f in ipairs { "long", "short" } do
      local ok, err = pcall(window.parse, a[f])
      if not ok then error(what .. "." .. f .. ": " .. err:gsub("^.-: ", ""), 2) end
    end
    rules[i] = { severity = a.severity, long = a.long, short = a.short, factor = a.factor }
  end
  return setmetatable({
    name = d.name, objective = o, period = period, calendar = calendar,
    source = src, alerts = rules, state = {},
  }, SLO)
end

-- The windows one evaluation measures: each alert window once, plus the budget window.
function SLO:windows(now)
  local list, seen = {}, {}
  for _, a in ipairs(self.alerts) do
    for _, w in ipairs { a.long, a.short } do
      if not seen[w] then
        seen[w] = true
        local secs = window.parse(w)
        list[#list + 1] = { name = w, range = w, from = now - secs, to = now, seconds = secs }
      end
    end
  end
  local from = self.calendar and window.period_start(self.calendar, now) or now - window.parse(self.period)
  -- A calendar window's range for PromQL is its length so far, in whole seconds.
  local range = self.calendar and (math.floor(now - from) .. "s") or self.period
  list[#list + 1] = { name = "budget", range = range, from = from, to = now, seconds = now - from, budget = true }
  sort(list, function(a, b) return a.seconds < b.seconds end)
  return list
end

-- evaluate(now) -> evaluation | nil, err
function SLO:evaluate(now)
  if now == nil then now = require("steward.time").now() end
  if type(now) ~= "number" then error("slo:evaluate: now: number (Unix seconds) expected", 2) end
  local wins = self:windows(now)
  local counts, err = self.source:measure(wins, now)
  if not counts then return nil, "slo " .. self.name .. ": " .. tostring(err) end
  local allowed = 1 - self.objective
  local ev = { slo = self.name, objective = self.objective, time = now, sli = {}, burn = {}, counts = {} }
  for _, w in ipairs(wins) do
    local c = counts[w.name]
    if c and c.valid and c.valid > 0 then
      local sli = c.good / c.valid
      local key = w.budget and "budget" or w.name
      ev.sli[key] = sli
      ev.burn[key] = (1 - sli) / allowed
    end
    ev.counts[w.name] = c
  end
  local b
  for _, w in ipairs(wins) do if w.budget then b = w end end
  local bc = counts.budget or { good = 0, valid = 0 }
  local total = allowed * bc.valid
  local consumed = bc.valid - bc.good
  ev.budget = {
    from = b.from, to = b.to, valid = bc.valid, good = bc.good,
    total = total, consumed = consumed, remaining = total - consumed,
    remaining_ratio = total > 0 and (total - consumed) / total or nil,
  }
  ev.alerts = {}
  for i, a in ipairs(self.alerts) do
    local bl, bs = ev.burn[a.long], ev.burn[a.short]
    ev.alerts[i] = {
      severity = a.severity, long = a.long, short = a.short, factor = a.factor,
      burn_long = bl, burn_short = bs,
      firing = (bl ~= nil and bs ~= nil and bl >= a.factor and bs >= a.factor),
    }
  end
  return ev
end

-- changes(evaluation) -> list of slo.burn events for alerts whose firing state changed since
-- the last call. The state lives in self.state (a plain table: persist and restore it to keep
-- it across restarts).
function SLO:changes(ev)
  if type(ev) ~= "table" or type(ev.alerts) ~= "table" then
    error("slo:changes: evaluation expected (the result of slo:evaluate)", 2)
  end
  local out = {}
  for _, a in ipairs(ev.alerts) do
    local key = a.severity .. ":" .. a.long .. "/" .. a.short
    local was = self.state[key] == true
    if a.firing ~= was then
      self.state[key] = a.firing or nil
      out[#out + 1] = {
        type = "slo.burn",
        time = ev.time,
        data = {
          slo = self.name, severity = a.severity, status = a.firing and "firing" or "resolved",
          windows = { long = a.long, short = a.short }, factor = a.factor,
          burn_rate = { long = a.burn_long, short = a.burn_short },
        },
      }
    end
  end
  return out
end

return M
