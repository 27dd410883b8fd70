-- steward.alerting.slo_alerts: SLO burn-rate alerts become Alertmanager alerts in the alert
-- store (fingerprints, alert.firing / alert.resolved events once per transition), re-sent while
-- firing, ended when the burn stops; bad definitions are named.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local slo_alerts = require "steward.alerting.slo_alerts"
local astore = require "steward.alerting.store"
local fingerprint = require "steward.alerting.fingerprint"

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())
store.set_default(st) -- as in the daemon: an events source reads the default store

local now = 1800000000
local list = {}
for i = 1, 200 do
  list[#list + 1] = { type = "http.request", time = now - 240 + i, data = { code = i % 2 == 0 and 503 or 200 } }
end
assert(events.append(st, list))

local set, err = slo_alerts.compile({
  { name = "checkout-availability", objective = 0.99, period = "30d",
    labels = { service = "checkout", team = "web" },
    source = { events = { type = "http.request", good = function(ev) return ev.data.code < 500 end } } },
})
t.ok(set, "compile: " .. tostring(err))

local s = assert(set:tick(st, now))
t.is(s.evaluated, 1, "one SLO evaluated")
t.is(s.firing, 4, "50 % errors at objective 0.99 fire all four workbook rules")
t.is(#s.events, 4, "four alert.firing events")
t.is(s.events[1].type, "alert.firing", "the events are alert.firing")
local fast = { alertname = "SLOErrorBudgetBurn", slo = "checkout-availability", severity = "page",
  window = "1h/5m", service = "checkout", team = "web" }
local rows = assert(astore.list(st))
local by = {}
for _, a in ipairs(rows) do by[a.fingerprint] = a end
local a = by[fingerprint.of(fast)]
t.ok(a, "the fast-burn page alert carries the SLO's labels, severity and windows")
t.like(a and a.annotations.summary or "", "checkout%-availability is burning its error budget 50%.00× over 1h", "its summary names the burn rate")
t.is(a and a.ends_at, now + slo_alerts.RESEND_FOR, "endsAt is a few evaluations ahead, as Prometheus sends")

s = assert(set:tick(st, now + 30))
t.is(#s.events, 0, "re-sending firing alerts makes no new events")
rows = assert(astore.list(st))
for _, r in ipairs(rows) do by[r.fingerprint] = r end
t.is(by[fingerprint.of(fast)].ends_at, now + 30 + slo_alerts.RESEND_FOR, "a re-send extends endsAt")

-- Evaluated every minute for an hour: the 5m and 30m windows empty out (no data, no alert)
-- while the 2h and 6h windows still hold the errors.
local resolved, refired = {}, 0
for m = 1, 60 do
  s = assert(set:tick(st, now + 30 + 60 * m))
  for _, ev in ipairs(s.events) do
    if ev.type == "alert.resolved" then resolved[ev.data.labels.window] = (resolved[ev.data.labels.window] or 0) + 1
    else refired = refired + 1 end
  end
end
t.ok(resolved["1h/5m"] == 1 and resolved["6h/30m"] == 1, "rules whose short window has no data resolve, once")
t.ok(not resolved["1d/2h"] and not resolved["3d/6h"], "the ticket rules still fire")
t.is(refired, 0, "no alert fired again meanwhile")
s = assert(set:tick(st, now + 30 + 60 * 61))
local again = 0
for _, ev in ipairs(s.events) do if ev.type == "alert.resolved" then again = again + 1 end end
t.is(again, 0, "an ended alert is not ended again")

-- A dry run evaluates and reports what it would send, and sends nothing.
local before = #assert(astore.list(st))
local dry = assert(set:tick(st, now + 30 + 60 * 62, { dry_run = true }))
t.ok(#dry.alerts > 0 and #dry.events == 0, "a dry run reports the alerts it would send and appends no event")
t.is(#assert(astore.list(st)), before, "a dry run stores nothing")

-- A failing source changes nothing and is reported.
local bad = assert(slo_alerts.compile({
  { name = "broken", objective = 0.9, source = { events = { type = "http.request", good = function() error("boom") end } } },
}))
s = assert(bad:tick(st, now))
t.is(#s.errors, 1, "a failing evaluation is reported")
t.like(s.errors[1], "slo broken: .*boom", "naming the SLO and the error")

-- Validation names the place.
_, err = slo_alerts.compile({ { name = "x", objective = 2, source = { events = { type = "a", good = function() end } } } })
t.like(err, "^slos%[1%]: objective", "a bad objective is named")
_, err = slo_alerts.compile({ { name = "x", objective = 0.9, source = { graphite = {} } } })
t.like(err, "^slos%[1%]%.source: ", "an unknown source kind is named")
_, err = slo_alerts.compile({ { name = "x", objective = 0.9, labels = { ["bad-name"] = "1" },
  source = { events = { type = "a", good = function() end } } } })
t.like(err, "^slos%[1%]%.labels: invalid label name", "a bad label name is named")
_, err = slo_alerts.compile({ { name = "x", objective = 0.9, colour = "red", source = { events = { type = "a", good = function() end } } } })
t.like(err, "unknown field 'colour'", "an unknown field is named")
_, err = slo_alerts.compile({
  { name = "x", objective = 0.9, source = { events = { type = "a", good = function() end } } },
  { name = "x", objective = 0.9, source = { events = { type = "a", good = function() end } } } })
t.like(err, "defined twice", "a duplicate name is refused")

st:close()
os.remove(path)
t.done()
