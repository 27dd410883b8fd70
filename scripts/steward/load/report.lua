-- steward.load.report: what a load run did, counted as it happens: per second (by the second
-- a request was scheduled, sent, answered in), per phase, status codes, error kinds, and the
-- latency from each request's *scheduled* send time (so time a request waited because the
-- generator or the connections were behind counts, as wrk2 and vegeta count it), plus the
-- send lag (actual - scheduled) that shows whether the generator itself kept up.
local histogram = require "steward.load.histogram"
local json = require "steward.json"

local floor, format, ipairs, pairs, tostring, concat, sort, setmetatable =
  math.floor, string.format, ipairs, pairs, tostring, table.concat, table.sort, setmetatable

local M = {}

local R = {}
R.__index = R

-- new{ target =, mode =, shape =, max_rate =, phases = { {text, start, duration}, ... } }
function M.new(info)
  local phases = {}
  for i, p in ipairs(info.phases or {}) do
    phases[i] = { index = i, spec = p.text, start = p.start, duration = p.duration,
      scheduled = 0, sent = 0, completed = 0, errors = 0 }
  end
  return setmetatable({ info = info, phases = phases, secs = {}, last_sec = -1,
    status = {}, errors = {}, latency = histogram.new(), lag = histogram.new(),
    scheduled_n = 0, sent_n = 0, completed_n = 0, errors_n = 0, cancelled_n = 0, delayed_n = 0 }, R)
end

local function sec_row(self, t)
  local s = floor(t)
  if s < 0 then s = 0 end
  local row = self.secs[s]
  if not row then
    row = { scheduled = 0, sent = 0, completed = 0, errors = 0 }
    self.secs[s] = row
  end
  if s > self.last_sec then self.last_sec = s end
  return row
end

local function phase_row(self, phase)
  local p = self.phases[phase]
  if not p then
    p = { index = phase, scheduled = 0, sent = 0, completed = 0, errors = 0 }
    self.phases[phase] = p
  end
  return p
end

function R:scheduled(t, phase, delayed)
  sec_row(self, t).scheduled = sec_row(self, t).scheduled + 1
  local p = phase_row(self, phase)
  p.scheduled = p.scheduled + 1
  self.scheduled_n = self.scheduled_n + 1
  if delayed then self.delayed_n = self.delayed_n + 1 end
end

function R:sent(now, t, phase)
  local row = sec_row(self, now)
  row.sent = row.sent + 1
  local p = phase_row(self, phase)
  p.sent = p.sent + 1
  self.sent_n = self.sent_n + 1
  self.lag:add(now - t)
end

-- done(now, t, phase, status) for a response; done(now, t, phase, nil, kind) for none.
function R:done(now, t, phase, status, kind)
  local row, p = sec_row(self, now), phase_row(self, phase)
  if status then
    row.completed, p.completed = row.completed + 1, p.completed + 1
    self.completed_n = self.completed_n + 1
    local k = tostring(status)
    self.status[k] = (self.status[k] or 0) + 1
    self.latency:add(now - t)
  else
    row.errors, p.errors = row.errors + 1, p.errors + 1
    self.errors_n = self.errors_n + 1
    kind = kind or "error"
    self.errors[kind] = (self.errors[kind] or 0) + 1
  end
end

-- A request stopped by Ctrl-C before its answer came.
function R:cancelled() self.cancelled_n = self.cancelled_n + 1 end

local function ms(v) return v and floor(v * 1e6 + 0.5) / 1e3 or json.null end

-- result{ elapsed =, interrupted =, not_sent = } -> the JSON-able report.
function R:result(fin)
  local seconds = json.array({})
  for s = 0, self.last_sec do
    local row = self.secs[s] or { scheduled = 0, sent = 0, completed = 0, errors = 0 }
    seconds[#seconds + 1] = { t = s, scheduled = row.scheduled, sent = row.sent, completed = row.completed,
      errors = row.errors }
  end
  local phases = json.array({})
  for i, p in ipairs(self.phases) do phases[i] = p end
  local pct = self.latency:percentiles({ 50, 90, 99 })
  local lag = self.lag:percentiles({ 50, 99 })
  local elapsed = fin.elapsed
  local info = self.info
  return {
    target = info.target, mode = info.mode, shape = info.shape, max_rate = info.max_rate,
    connections = info.connections, interrupted = fin.interrupted or false,
    duration = info.duration, elapsed = floor(elapsed * 1000 + 0.5) / 1000,
    totals = { planned = self.scheduled_n + (fin.not_sent or 0), scheduled = self.scheduled_n, sent = self.sent_n,
      completed = self.completed_n, errors = self.errors_n, cancelled = self.cancelled_n,
      not_sent = fin.not_sent or 0, delayed_by_max_rate = self.delayed_n },
    rate = { scheduled = info.duration and info.duration > 0 and self.scheduled_n / info.duration or json.null,
      sent = elapsed > 0 and self.sent_n / elapsed or json.null,
      completed = elapsed > 0 and self.completed_n / elapsed or json.null },
    latency_ms = { p50 = ms(pct[50]), p90 = ms(pct[90]), p99 = ms(pct[99]), max = ms(self.latency.max),
      mean = ms(self.latency:mean()), from = "scheduled send time" },
    send_lag_ms = { p50 = ms(lag[50]), p99 = ms(lag[99]), max = ms(self.lag.max) },
    status = self.status, -- {} when empty: an object either way
    errors = self.errors,
    phases = phases, seconds = seconds,
  }
end

local function num(v)
  if v == nil or v == json.null then return "-" end
  if v == floor(v) then return tostring(v) end
  return format("%.1f", v)
end

-- text(result) -> the human table: summary, phases, seconds (grouped so at most ~60 rows).
function M.text(r)
  local out = {}
  local function say(...) out[#out + 1] = concat({ ... }) end
  say(format("steward load: %s  %s%s", tostring(r.target), tostring(r.mode),
    r.shape and ("  " .. r.shape) or ""))
  local t = r.totals
  say(format("%s after %.1fs: %d scheduled, %d sent, %d answered, %d errors%s%s",
    r.interrupted and "interrupted" or "done", r.elapsed, t.scheduled, t.sent, t.completed, t.errors,
    t.cancelled > 0 and format(", %d cancelled", t.cancelled) or "",
    t.not_sent > 0 and format(", %d not sent", t.not_sent) or ""))
  say(format("rate: scheduled %s/s, sent %s/s, answered %s/s (max-rate %s/s%s)", num(r.rate.scheduled),
    num(r.rate.sent), num(r.rate.completed), tostring(r.max_rate),
    t.delayed_by_max_rate > 0 and format(", %d delayed by it", t.delayed_by_max_rate) or ""))
  local l = r.latency_ms
  say(format("latency from scheduled send (ms): p50 %s  p90 %s  p99 %s  max %s  mean %s", num(l.p50), num(l.p90),
    num(l.p99), num(l.max), num(l.mean)))
  say(format("send lag (ms): p50 %s  p99 %s  max %s", num(r.send_lag_ms.p50), num(r.send_lag_ms.p99),
    num(r.send_lag_ms.max)))
  local codes = {}
  for k, v in pairs(r.status) do codes[#codes + 1] = k .. "=" .. v end
  sort(codes)
  local errs = {}
  for k, v in pairs(r.errors) do errs[#errs + 1] = k .. "=" .. v end
  sort(errs)
  say("status: ", #codes > 0 and concat(codes, " ") or "none", #errs > 0 and ("   errors: " .. concat(errs, " ")) or "")
  if #r.phases > 0 and #r.phases <= 50 then
    say("")
    say(format("%-5s %-34s %8s %8s %8s %8s %8s", "phase", "shape", "start", "sched", "sent", "answered", "errors"))
    for _, p in ipairs(r.phases) do
      say(format("%-5d %-34s %7.1fs %8d %8d %8d %8d", p.index, tostring(p.spec or "-"), p.start or 0, p.scheduled,
        p.sent, p.completed, p.errors))
    end
  end
  local n = #r.seconds
  if n > 0 then
    local group = math.max(1, math.ceil(n / 60))
    say("")
    say(format("%-10s %8s %8s %8s %8s", group == 1 and "second" or format("%ds from", group), "sched", "sent",
      "answered", "errors"))
    for i = 1, n, group do
      local a = { scheduled = 0, sent = 0, completed = 0, errors = 0 }
      for j = i, math.min(n, i + group - 1) do
        local s = r.seconds[j]
        a.scheduled, a.sent = a.scheduled + s.scheduled, a.sent + s.sent
        a.completed, a.errors = a.completed + s.completed, a.errors + s.errors
      end
      say(format("%-10d %8d %8d %8d %8d", r.seconds[i].t, a.scheduled, a.sent, a.completed, a.errors))
    end
  end
  return concat(out, "\n") .. "\n"
end

return M
