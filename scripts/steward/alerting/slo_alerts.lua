-- steward.alerting.slo_alerts: SLO burn-rate alerts fed into the alerting pipeline as
-- Alertmanager alerts, the way Prometheus feeds its rule alerts: each evaluation re-sends the
-- firing burn-rate alerts with an endsAt a few evaluations ahead, and ends the ones that stopped
-- firing. They are stored by steward.alerting.store (same fingerprints, events and semantics
-- as alerts posted to /api/v2/alerts), so SLO breaches are routed, grouped, silenced and
-- escalated exactly like any other alert. The alert state in the store is the truth: nothing
-- to remember across restarts.
local slo = require "steward.slo"
local fingerprint = require "steward.alerting.fingerprint"
local astore = require "steward.alerting.store"
local util = require "steward.runtime.store.util"

local type, ipairs, pairs, next, tostring, format, pcall, error, unpack =
  type, ipairs, pairs, next, tostring, string.format, pcall, error, unpack

local M = {}

M.ALERTNAME = "SLOErrorBudgetBurn"
M.RESEND_FOR = 240 -- seconds an evaluation's firing alert lasts without the next one (4 one-minute slots)

local FIELDS = { name = true, objective = true, period = true, source = true, alerts = true, labels = true,
  annotations = true }

local function string_map(v, where)
  if v == nil then return {} end
  if type(v) ~= "table" then return nil, where .. ": table of strings expected" end
  local out = {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or not k:match("^[A-Za-z_][A-Za-z0-9_]*$") then
      return nil, format("%s: invalid label name %q", where, tostring(k))
    end
    if type(x) ~= "string" then return nil, format("%s.%s: string expected, got %s", where, k, type(x)) end
    out[k] = x
  end
  return out
end

-- A source given as a spec table is built when first measured (the daemon's store may not be
-- open yet when the configuration is loaded, e.g. by `steward check`).
local function source_of(spec, where)
  if type(spec) ~= "table" then return nil, where .. ": slo.events{...}, slo.prometheus{...} or {events = {...}} expected" end
  if type(spec.measure) == "function" then return spec end
  local kind, opts = next(spec)
  if (kind ~= "events" and kind ~= "prometheus") or next(spec, kind) ~= nil or type(opts) ~= "table" then
    return nil, where .. ": {events = {...}} or {prometheus = {...}} expected"
  end
  local ok, src = pcall(slo[kind], opts)
  if not ok then return nil, where .. "." .. kind .. ": " .. tostring(src):gsub("^slo%.%w+: ", "") end
  return src
end

-- compile(list [, where]) -> set | nil, err. Each entry: slo.define's fields (name, objective,
-- period, source, alerts) plus `labels` (added to every alert of the SLO, e.g. service, team)
-- and `annotations`.
function M.compile(list, where)
  where = where or "slos"
  if list == nil then list = {} end
  if type(list) ~= "table" then return nil, where .. ": list expected" end
  local out, names = {}, {}
  for i, d in ipairs(list) do
    local w = format("%s[%d]", where, i)
    if type(d) ~= "table" then return nil, w .. ": table expected" end
    for k in pairs(d) do
      if not FIELDS[k] then return nil, format("%s: unknown field '%s'", w, tostring(k)) end
    end
    local labels, err = string_map(d.labels, w .. ".labels")
    if not labels then return nil, err end
    local annotations
    annotations, err = string_map(d.annotations, w .. ".annotations")
    if not annotations then return nil, err end
    local src
    src, err = source_of(d.source, w .. ".source")
    if not src then return nil, err end
    local ok, s = pcall(slo.define, { name = d.name, objective = d.objective, period = d.period, source = src,
      alerts = d.alerts })
    if not ok then return nil, w .. ": " .. tostring(s):gsub("^slo%.define: ", "") end
    if names[s.name] then return nil, format("%s.name: %q is defined twice", w, s.name) end
    names[s.name] = true
    out[#out + 1] = { slo = s, labels = labels, annotations = annotations }
  end
  return setmetatable({ list = out }, { __index = M })
end

local function alert_labels(entry, a)
  local l = {}
  for k, v in pairs(entry.labels) do l[k] = v end
  l.alertname = M.ALERTNAME
  l.slo = entry.slo.name
  l.severity = a.severity
  l.window = a.long .. "/" .. a.short
  return l
end

local function burn(x) return x and format("%.2f", x) or "no data" end

local function alert_annotations(entry, e, a)
  local an = {}
  for k, v in pairs(entry.annotations) do an[k] = v end
  an.summary = an.summary or format("%s is burning its error budget %s× over %s and %s× over %s (threshold %g×)",
    entry.slo.name, burn(a.burn_long), a.long, burn(a.burn_short), a.short, a.factor)
  local b = e.budget
  if b and b.remaining_ratio then
    an.budget_remaining = format("%.1f%%", 100 * b.remaining_ratio)
  end
  an.objective = format("%g", entry.slo.objective)
  return an
end

-- The alerts of these fingerprints that are active now: {fingerprint = true}.
local function active(st, fps, now)
  local marks, params = {}, {}
  for i, fp in ipairs(fps) do params[i] = fp; marks[i] = "$" .. i end
  if #fps == 0 then return {} end
  params[#params + 1] = now
  local rows, err = st.db:query("SELECT fingerprint FROM alerts WHERE announced = 'firing' AND ends_at > $" ..
    #params .. " AND fingerprint IN (" .. table.concat(marks, ",") .. ")", unpack(params))
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.fingerprint] = true end
  return out
end

-- set:tick(st | nil, now [, {format, resend_for, dry_run}]) -> summary | nil, err. Evaluates every SLO at now;
-- firing rules are (re-)sent as alerts lasting resend_for, rules that stopped firing end now.
-- summary = {evaluated, firing, resolved, errors = {"slo x: ..."}, alerts = what was sent,
-- events = fresh events} (dry_run: evaluated and reported, nothing sent):
-- the caller hands `events` to dispatch. One SLO's failed evaluation changes none of its
-- alerts (they run out by their endsAt if it keeps failing) and does not stop the others.
function M:tick(st, now, opts)
  -- nil: the daemon's store (a policy is never handed the store itself)
  st = st or require("steward.runtime.store").default()
  util.store_arg(st, "slo_alerts:tick")
  if type(now) ~= "number" then error("slo_alerts:tick: now: number expected", 2) end
  opts = opts or {}
  local fmt = opts.format or require("steward.alerting.api").format_time
  local resend_for = opts.resend_for or M.RESEND_FOR
  local summary = { evaluated = 0, firing = 0, resolved = 0, errors = {}, events = {} }
  local send, fps, candidates = {}, {}, {}
  for _, entry in ipairs(self.list) do
    local e, err = entry.slo:evaluate(now)
    if not e then
      summary.errors[#summary.errors + 1] = err
    else
      summary.evaluated = summary.evaluated + 1
      for _, a in ipairs(e.alerts) do
        local labels = alert_labels(entry, a)
        local fp = fingerprint.of(labels)
        if a.firing then
          summary.firing = summary.firing + 1
          send[#send + 1] = { fingerprint = fp, labels = labels, annotations = alert_annotations(entry, e, a),
            starts_at = now, ends_at = now + resend_for, timeout = false, generator_url = "" }
        else
          fps[#fps + 1] = fp
          candidates[fp] = { labels = labels, annotations = alert_annotations(entry, e, a) }
        end
      end
    end
  end
  -- Rules not firing end only the alerts that are still active (no endless resolved re-sends).
  local live, err = active(st, fps, now)
  if not live then return nil, err end
  for _, fp in ipairs(fps) do
    if live[fp] then
      local c = candidates[fp]
      summary.resolved = summary.resolved + 1
      send[#send + 1] = { fingerprint = fp, labels = c.labels, annotations = c.annotations, starts_at = now,
        ends_at = now, timeout = false, generator_url = "" }
    end
  end
  summary.alerts = send
  if #send > 0 and not opts.dry_run then
    local res
    res, err = astore.apply(st, send, { now = now, format = fmt })
    if not res then return nil, err end
    summary.events = res.events
    require("steward.runtime.events").published(st, res.events)
  end
  return summary
end

return M
