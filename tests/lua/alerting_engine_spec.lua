-- steward.alerting.engine: Alertmanager 0.25's dispatch semantics case by case (group_wait,
-- group_interval, repeat_interval, resolved alerts, send_resolved, silences, inhibition, time
-- intervals) and steward's additions (maintenance, flapping, correlation, repeat backoff),
-- against a real store, with a fake clock and fake channels that record what they were sent.
local t = require "steward.tap"
local engine = require "steward.alerting.engine"
local astore = require "steward.alerting.store"
local api = require "steward.alerting.api"
local fingerprint = require "steward.alerting.fingerprint"
local crypto = require "steward.crypto"

local st = require("tests.support.test_store").open()
assert(st:migrate())
local RUN = crypto.hex(crypto.random(4)) -- keeps this run's alerts apart in a shared store
local T = 2e9 + math.random(0, 1e6)      -- the fake clock

-- Fake channels: record every send, answer "duplicate" for a key already sent (as the notify
-- history does), fail on demand.
local sent, keys, failing = {}, {}, {}
local function channel(kind, opts)
  return { send = function(_, msg, o)
    if failing[opts.name] then return nil, "HTTP 500" end
    if keys[o.key] then return { status = "duplicate" } end
    keys[o.key] = true
    local fire, res = {}, {}
    for _, a in ipairs(msg.alerts) do
      if a.status == "firing" then fire[#fire + 1] = a.labels.alertname else res[#res + 1] = a.labels.alertname end
    end
    table.sort(fire); table.sort(res)
    sent[#sent + 1] = { ch = opts.name, status = msg.status, firing = table.concat(fire, ","),
      resolved = table.concat(res, ","), at = T, msg = msg, kind = kind, opts = opts }
    return { status = "sent" }
  end }
end

-- Fake incidents module (steward.alerting.incidents' API).
local incidents = { triggered = {}, resolved = {} }
function incidents.trigger(_, spec) incidents.triggered[#incidents.triggered + 1] = spec; return { id = 1 }, true end
function incidents.resolve_key(_, key) incidents.resolved[#incidents.resolved + 1] = key; return true end

local timers = {}
local function arm(delay, ev, key)
  if not timers[key] then timers[key] = { due = T + delay, ev = ev, key = key } end
  return key
end

local eng
local function handle(ev) return eng:handle(ev) end

-- Runs due timers in order until `to`, the clock following each.
local function advance(to)
  while true do
    local best
    for _, tm in pairs(timers) do
      if not tm.fired and tm.due <= to and (not best or tm.due < best.due) then best = tm end
    end
    if not best then break end
    best.fired = true
    if best.due > T then T = best.due end
    handle({ id = "timer:" .. best.key, type = best.ev.type, data = best.ev.data })
  end
  T = to
end

local base
local function at(s) advance(base + s) end

-- post(labels, {starts = offset, resolve = true}): through the API's store, as POST /api/v2/alerts
local function post(labels, o)
  o = o or {}
  labels.run = RUN
  local starts = o.starts and (base + o.starts) or T
  local a = { fingerprint = fingerprint.of(labels), labels = labels, annotations = { summary = "s " .. labels.alertname },
    starts_at = starts, ends_at = o.resolve and T or T + 300, timeout = not o.resolve, generator_url = "" }
  local res = assert(astore.apply(st, { a }, { now = T, format = api.format_time }))
  for _, ev in ipairs(res.events) do handle(ev) end
  return a.fingerprint
end

-- reset(cfg | function(base) -> cfg): a fresh engine and clock for the next case.
local function reset(cfg)
  sent, keys, timers = {}, {}, {}
  incidents.triggered, incidents.resolved = {}, {}
  T = T + 100000
  base = T
  if type(cfg) == "function" then cfg = cfg(base) end
  local err
  eng, err = engine.compile(cfg, { store = st, now = function() return T end, arm = arm, channel = channel,
    incidents = incidents, outbox = false })
  assert(eng, err)
end

local function summary(from)
  local out = {}
  for i = from or 1, #sent do
    local s = sent[i]
    out[#out + 1] = string.format("%s@%g %s +%s -%s", s.ch, s.at - base, s.status, s.firing, s.resolved)
  end
  return out
end

local function hook(extra)
  return { kind = "webhook", url = "http://127.0.0.1:1/", send_resolved = extra }
end

local FAST = { group_by = { "alertname" }, group_wait = "1s", group_interval = "4s", repeat_interval = "12s" }
local function route(extra)
  local r = {}
  for k, v in pairs(FAST) do r[k] = v end
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- 1. group_wait, group_interval, repeat_interval, resolved, send_resolved --------------------
reset({ route = route({ receiver = "web", group_by = { "cluster" } }),
  receivers = { web = { hook(true), hook(false) } } })
post({ alertname = "A", cluster = "c1" })
t.is(#sent, 0, "nothing is sent before group_wait")
at(1)
t.is_deeply(summary(), { "web/1@1 firing +A -", "web/2@1 firing +A -" }, "group_wait: the first flush tells every integration")
t.is(sent[1].msg.group_key, '{}:{cluster="c1"}', "the group key is spelled as Alertmanager spells it")
post({ alertname = "B", cluster = "c1" })
at(4.5)
t.is(#sent, 2, "a new alert waits for the next group_interval tick")
at(5)
t.is_deeply(summary(3), { "web/1@5 firing +A,B -", "web/2@5 firing +A,B -" }, "the tick at group_wait + group_interval notifies the new alert")
at(16)
t.is(#sent, 4, "no change: nothing until repeat_interval has passed")
at(17)
t.is(#sent, 4, "not at exactly repeat_interval after the last notification (Alertmanager's Before)")
at(21)
t.is_deeply(summary(5), { "web/1@21 firing +A,B -", "web/2@21 firing +A,B -" }, "repeat_interval passed: notified again")
post({ alertname = "A", cluster = "c1" }, { resolve = true })
at(25)
t.is_deeply(summary(7), { "web/1@25 firing +B -A" },
  "a resolved alert: only the send_resolved integration is told (the other has nothing new)")
local gs = eng:groups()
local mine = 0
for _, g in ipairs(gs) do if g.group_key == '{}:{cluster="c1"}' then mine = #g.members end end
t.is(mine, 1, "the notified resolved alert left the group")
post({ alertname = "B", cluster = "c1" }, { resolve = true })
at(29)
t.is_deeply(summary(8), { "web/1@29 resolved + -B" }, "all resolved: send_resolved integration gets the resolved notification, the other none")
local left = 0
for _, g in ipairs(eng:groups()) do if g.group_key == '{}:{cluster="c1"}' then left = left + 1 end end
t.is(left, 0, "an empty group is deleted")
at(29.5)
post({ alertname = "A", cluster = "c1" })
at(30)
t.is(#sent, 8, "a new group waits group_wait")
at(30.5)
t.is_deeply(summary(9), { "web/1@30.5 firing +A -", "web/2@30.5 firing +A -" },
  "a re-fired alert starts a new group, notified after group_wait")

-- 2. group_wait 0 flushes inline; an alert older than group_wait flushes at once ------------
reset({ route = route({ receiver = "web", group_wait = "0s" }), receivers = { web = { hook() } } })
post({ alertname = "Z" })
t.is_deeply(summary(), { "web/1@0 firing +Z -" }, "group_wait 0: notified inside the event's handling, no timer")
reset({ route = route({ receiver = "web", group_wait = "30s" }), receivers = { web = { hook() } } })
post({ alertname = "Old" }, { starts = -60 })
t.is_deeply(summary(), { "web/1@0 firing +Old -" }, "startsAt + group_wait already past: flushed at once")
post({ alertname = "Old", x = "2" }, { starts = -60 })
t.is(#sent, 1, "after the first flush, later alerts wait for the group_interval tick")
at(4)
t.is_deeply(summary(2), { "web/1@4 firing +Old,Old -" }, "ticks count from the immediate flush")

-- 3. silences, inhibition, time intervals, maintenance ---------------------------------------
reset({ route = route({ receiver = "web", group_by = { "..." } }), receivers = { web = { hook() } },
  inhibit_rules = { { source_matchers = { 'severity="critical"' }, target_matchers = { 'severity="warning"' },
    equal = { "alertname", "run" } } } })
assert(astore.put_silence(st, { id = "sil-" .. RUN, matchers = { { name = "alertname", value = "Quiet", isRegex = false, isEqual = true },
  { name = "run", value = RUN, isRegex = false, isEqual = true } }, starts_at = T, ends_at = T + 10, updated_at = T,
  created_by = "spec", comment = "" }))
post({ alertname = "Quiet" })
post({ alertname = "Disk", severity = "critical" })
post({ alertname = "Disk", severity = "warning" })
at(1)
t.is_deeply(summary(), { "web/1@1 firing +Disk -" }, "silenced and inhibited alerts are not notified")
at(13)
t.is_deeply(summary(2), { "web/1@13 firing +Quiet -" }, "the silence expired: notified at the next tick")
post({ alertname = "Disk", severity = "critical" }, { resolve = true })
at(17)
local s17 = summary(3)
table.sort(s17)
t.ok(#s17 == 2 and s17[1]:find("+Disk -", 1, true) and s17[2]:find("resolved + -Disk", 1, true),
  "the source resolved: the inhibited warning is notified, the critical one resolved")

reset({ route = route({ receiver = "web", routes = { { matchers = { 'team="night"' }, mute_time_intervals = { "always" } } } }),
  receivers = { web = { hook() } }, time_intervals = { always = { { weekdays = { "sunday:saturday" } } } } })
post({ alertname = "Muted", team = "night" })
post({ alertname = "Loud", team = "day" })
at(1)
t.is_deeply(summary(), { "web/1@1 firing +Loud -" }, "a route in its mute time interval notifies nothing")

reset(function(b) return { route = route({ receiver = "web" }), receivers = { web = { hook() } },
  maintenance = { { name = "upgrade", matchers = { 'service="db"' }, starts_at = b, ends_at = b + 6 } } } end)
post({ alertname = "DbDown", service = "db" })
post({ alertname = "Web", service = "web" })
at(1)
t.is_deeply(summary(), { "web/1@1 firing +Web -" }, "maintenance window: matching alerts are held")
at(9)
t.is_deeply(summary(2), { "web/1@9 firing +DbDown -" }, "after the window the alert is notified at the next tick")

-- 4. flapping --------------------------------------------------------------------------------
reset({ route = route({ receiver = "web", group_by = { "..." } }), receivers = { web = { hook() } },
  flap = { transitions = 4, window = "60s", quiet = "20s" } })
post({ alertname = "Flappy" })
at(1)
t.is(#sent, 1, "first firing is notified")
post({ alertname = "Flappy" }, { resolve = true })
at(2) post({ alertname = "Flappy" })
at(3) post({ alertname = "Flappy" }, { resolve = true })
at(3.5) post({ alertname = "Flappy" })
at(24)
t.is(#sent, 1, "4 transitions within the window: held while it flaps")
at(33)
t.is_deeply(summary(2), { "web/1@25 firing +Flappy -" }, "quiet for 20s: notified again")

-- 5. correlation and incident integrations ---------------------------------------------------
reset({ route = route({ receiver = "pager", group_by = { "..." } }),
  receivers = { pager = { { kind = "incident", service = "database", escalation = "db" } } },
  escalation_policies = { db = { rules = {} } },
  correlation = { { name = "storm-" .. RUN, matchers = { 'service="db"' }, count = 3, window = "10m",
    incident = { service = "database", escalation = "db" } } } })
post({ alertname = "C1", service = "db" })
post({ alertname = "C2", service = "db" })
local corr = 0
for _, i in ipairs(incidents.triggered) do if i.key == "correlation:storm-" .. RUN then corr = corr + 1 end end
t.is(corr, 0, "two matches in the window: no correlated incident yet")
post({ alertname = "C3", service = "db" })
post({ alertname = "C4", service = "db" })
corr = {}
for _, i in ipairs(incidents.triggered) do if i.key == "correlation:storm-" .. RUN then corr[#corr + 1] = i end end
t.is(#corr, 2, "the third match opens the incident, the fourth attaches to it (same key)")
t.is(corr[2] and #corr[2].alerts, 4, "with every correlated alert")
incidents.triggered = {}
at(1)
t.is(#incidents.triggered, 4, "incident integration: each group triggers its incident at its flush")
t.is(incidents.triggered[1].escalation, "db", "with the integration's escalation policy")
post({ alertname = "C1", service = "db" }, { resolve = true })
at(5)
t.is(#incidents.resolved, 1, "all alerts of a group resolved: its incident is resolved by key")

-- 6. repeat backoff --------------------------------------------------------------------------
reset({ route = route({ receiver = "web", repeat_backoff = { factor = 2, max = "40s" } }), receivers = { web = { hook() } } })
post({ alertname = "R" })
at(120)
local times = {}
for _, s in ipairs(sent) do times[#times + 1] = s.at - base end
t.is_deeply(times, { 1, 17, 45, 89 }, "repeats wait 12s, then 24s, then 40s (capped), on the group_interval ticks")

-- 7. continue routes, group_by '...' ---------------------------------------------------------
reset({ route = route({ receiver = "web", routes = {
    { matchers = { 'service="db"' }, receiver = "db", continue = true },
    { matchers = { 'service="db"' }, receiver = "ops", group_by = { "..." } } } }),
  receivers = { web = { hook() }, db = { hook() }, ops = { hook() } } })
post({ alertname = "X", service = "db", instance = "a" })
post({ alertname = "X", service = "db", instance = "b" })
at(1)
local s7 = summary()
table.sort(s7)
t.is_deeply(s7, { "db/1@1 firing +X,X -", "ops/1@1 firing +X -", "ops/1@1 firing +X -" },
  "continue: both routes notify; group_by '...' makes one group per alert")

-- 8. at-least-once: a flush run twice notifies once; a failed send keeps resolved alerts ----
reset({ route = route({ receiver = "web" }), receivers = { web = { hook() } } })
post({ alertname = "Once" })
local tm
for _, x in pairs(timers) do tm = x end
at(1)
t.is(#sent, 1, "flushed once")
handle({ id = "timer:" .. tm.key, type = tm.ev.type, data = tm.ev.data })
t.is(#sent, 1, "the same flush event handled again (after a crash) sends nothing")
failing["web/1"] = true
post({ alertname = "Once" }, { resolve = true })
at(5)
t.is(#sent, 1, "the send failed")
failing["web/1"] = nil
at(9)
t.is_deeply(summary(2), { "web/1@9 resolved + -Once" }, "the resolved alert stayed and is notified at the next tick")

-- 9. webhook payload fields, compile errors, cleanup -----------------------------------------
reset({ route = route({ receiver = "web", group_wait = "0s" }), receivers = { web = { hook() } }, external_url = "http://am.example" })
post({ alertname = "Payload" })
local m = sent[1].msg
t.ok(m.group_labels.alertname == "Payload" and m.alerts[1].fingerprint and m.alerts[1].ends_at == nil,
  "the message carries group labels, fingerprints and no end for a firing alert")
t.is(sent[1].opts.receiver, "web", "the webhook channel names the receiver")
t.is(sent[1].opts.external_url, "http://am.example", "and the external URL")
local wh = require("steward.notify.webhook")
local payload = wh.template(m, { cfg = { receiver = "web", external_url = "http://am.example", max_alerts = 0 }, now = T })
t.ok(payload.groupKey == '{}:{alertname="Payload"}' and payload.commonLabels.alertname == "Payload" and
  payload.alerts[1].endsAt == "0001-01-01T00:00:00Z" and payload.truncatedAlerts == 0,
  "the webhook payload has Alertmanager's fields")

local _, err = engine.compile({ route = { receiver = "x", routes = { {}, { matchers = { 'a=~"("' } } } }, receivers = { x = {} } })
t.like(err, "^config%.route%.routes%[2%]%.matchers%[1%]: ", "compile errors name the place")
_, err = engine.compile({ route = { receiver = "x" }, receivers = { x = { { kind = "webhook" } } } })
t.like(err, "^config%.receivers%.x%[1%]: url", "channel option errors name the integration")

-- config.check: the whole configuration, cross-references included
local config = require "steward.alerting.config"
local shipped = assert(loadfile("policies/lib/alerting/config.lua"))()
t.ok(config.check(shipped), "the shipped policies/lib/alerting/config.lua passes config.check")
local function cerr(cfg) local ok, e = config.check(cfg) return not ok and e or "accepted" end
local R = { x = {} }
t.is(cerr({ route = { receiver = "x" }, receivers = R, recievers = {} }), "config.recievers: unknown key", "unknown top-level key")
t.is(cerr({ route = { receiver = "x", routes = { { receiver = "y" } } }, receivers = R }),
  'config.route.routes[1]: receiver "y" does not exist', "a route names a missing receiver")
t.is(cerr({ route = { receiver = "x" }, receivers = { x = { { kind = "incident", service = "s", escalation = "e" } } } }),
  'config.receivers.x[1].escalation: escalation policy "e" does not exist', "an incident integration names a missing policy")
t.is(cerr({ route = { receiver = "x" }, receivers = R, maintenance = { { matchers = 'a="b"', time_intervals = { "nope" } } } }),
  'config.maintenance[1].time_intervals[1]: time interval "nope" does not exist', "a maintenance window names a missing interval")
t.is(cerr({ route = { receiver = "x" }, receivers = R, flap = { transitions = 1 } }),
  "config.flap.transitions: number >= 2 expected", "flap settings are checked")
t.is(cerr({ route = { receiver = "x" }, receivers = { x = { { kind = "pager" } } } }),
  "config.receivers.x[1].kind: one of webhook, slack, teams, email, pagerduty, sms, log, incident expected, got pager",
  "an unknown integration kind")

-- The outbox (the engine's default, the shipped policy's mode): a flush commits its sends as
-- alerting.notify events; handling one sends with the flush's key; a failure raises (the
-- policy run is retried) and a re-run after success sends nothing new.
do
  reset({ route = { receiver = "hook", group_by = { "alertname" }, group_wait = 0, group_interval = 60, repeat_interval = 3600 },
    receivers = { hook = { { kind = "webhook", url = "http://127.0.0.1:9/h" } } } })
  local ob = assert(engine.compile({ route = { receiver = "hook", group_by = { "alertname" }, group_wait = 0,
      group_interval = 60, repeat_interval = 3600 },
    receivers = { hook = { { kind = "webhook", url = "http://127.0.0.1:9/h" } } } },
    { store = st, now = function() return T end, arm = arm, channel = channel, incidents = incidents }))
  eng = ob
  post({ alertname = "Outbox" })
  t.is(#sent, 0, "outbox: the flush itself sends nothing")
  local rows = assert(st.db:query("SELECT id, type, data FROM events WHERE type = 'alerting.notify' AND id LIKE $1 ORDER BY seq",
    "alerting.notify:%"))
  local mine
  for _, r in ipairs(rows) do
    local d = require("steward.json").decode(r.data)
    if d.message.alerts[1].labels.run == RUN and d.message.alerts[1].labels.alertname == "Outbox" then mine = { id = r.id, type = r.type, data = d } end
  end
  t.ok(mine, "outbox: the send is an alerting.notify event committed with the flush")
  failing["hook/1"] = true
  local ok = pcall(eng.handle, eng, mine)
  t.ok(not ok and #sent == 0, "outbox: a failed send raises, so the policy run is retried")
  failing["hook/1"] = nil
  t.ok(eng:handle(mine) and #sent == 1 and sent[1].status == "firing" and sent[1].firing == "Outbox",
    "outbox: handling the event sends the group's notification")
  eng:handle(mine)
  t.is(#sent, 1, "outbox: a second run of the same event sends nothing new (its key)")
  t.is(sent[1].msg.group_key, '{}:{alertname="Outbox"}', "outbox: the message survives the event log as it was")
end

local n = assert(engine.cleanup(st, { now = T + 200 * 3600 }))
t.ok(n > 0, "cleanup deletes resolved alerts and log entries older than the retention")

t.done()
