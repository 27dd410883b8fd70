-- steward.alerting.incidents and steward.alerting.links on a real SQLite store: the state
-- machine, revision-conditional changes under concurrent actions, the timeline, the events
-- each change appends (exactly once), MTTA/MTTR metrics, listing, and signed links.
local t = require "steward.tap"
local events = require "steward.runtime.events"
local metrics = require "steward.metrics"
local task = require "steward.task"
local fs = require "steward.fs"
local incidents = require "steward.alerting.incidents"
local links = require "steward.alerting.links"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local dir, st, dispatched = spec.dir, spec.st, spec.dispatched

local function types_of(id)
  local out = {}
  for _, ev in ipairs(assert(events.query(st, { type = "incident.*", limit = 1000 })).events) do
    if ev.data.incident == id then out[#out + 1] = ev.type end
  end
  return out
end

local function main()
  -- trigger
  local inc, created = incidents.trigger(st, { key = "db/disk", service = "database", title = "Disk full",
    summary = "/var is 99% full", severity = "critical", escalation = "db-oncall", labels = { host = "db1" },
    alerts = { { status = "firing", fingerprint = "abc", labels = { alertname = "DiskFull" } } } })
  t.ok(inc and created, "trigger opens a new incident")
  t.is(inc.state, "triggered", "a new incident is triggered")
  t.is(inc.revision, 1, "revision 1")
  t.is(inc.epoch, 1, "escalation epoch 1")
  t.is(#dispatched, 1, "the trigger's event went to dispatch at once")
  t.is(dispatched[1] and dispatched[1].type, "incident.triggered", "... incident.triggered")
  t.is(dispatched[1] and dispatched[1].data.incident, inc.id, "... data.incident is the id")
  t.ok(dispatched[1] and dispatched[1].seq, "... with its log seq")

  local again, created2 = incidents.trigger(st, { key = "db/disk", service = "database", title = "Disk full",
    alerts = { { status = "firing", fingerprint = "def" } } })
  t.is(again.id, inc.id, "an open incident with the same key is reused")
  t.is(created2, false, "... and reported as not created")
  t.is(#dispatched, 1, "... without a new event")

  t.raises(function() incidents.trigger(st, { service = "x" }) end, "key", "trigger without key raises naming it")
  t.raises(function() incidents.trigger(st, { key = "k", severity = "huge" }) end, "severity", "bad severity raises")
  t.raises(function() incidents.trigger(st, { key = "k", colour = "red" }) end, "colour: unknown field", "unknown field raises")

  -- concurrent triggers of one key open one incident
  local hs = {}
  for i = 1, 5 do hs[i] = task.spawn(function() return incidents.trigger(st, { key = "race/key", service = "web" }) end) end
  local ids, news = {}, 0
  for i = 1, 5 do
    local ok, r, c = hs[i]:join()
    if ok and r then ids[r.id] = true; if c then news = news + 1 end end
  end
  local n = 0
  for _ in pairs(ids) do n = n + 1 end
  t.is(n, 1, "five concurrent triggers of one key: one incident")
  t.is(news, 1, "... created once")

  -- ack: conditional, once
  hs = {}
  for i = 1, 4 do hs[i] = task.spawn(function() return incidents.ack(st, inc.id, "user" .. i) end) end
  local wins, losses = 0, 0
  local winner
  for i = 1, 4 do
    local ok, r, err = hs[i]:join()
    if ok and r then wins = wins + 1; winner = r elseif ok and err then losses = losses + 1 end
  end
  t.is(wins, 1, "four concurrent acks: exactly one applies")
  t.is(losses, 3, "... the other three are refused")
  t.is(winner and winner.state, "acknowledged", "the incident is acknowledged")
  t.like(winner and winner.acked_by or "", "^user%d$", "acked_by is the winner")
  t.is(winner and winner.revision, 2, "revision 2")
  local _, err, cur = incidents.ack(st, inc.id, "late")
  t.like(err, "is acknowledged", "ack of an acknowledged incident: the error names the state")
  t.is(cur and cur.state, "acknowledged", "... and the current incident is returned")

  -- reassign, resolve
  local r = incidents.reassign(st, inc.id, "bob", "alice")
  t.is(r and r.assignee, "bob", "reassign sets the assignee")
  t.is(r and r.state, "acknowledged", "... and keeps the state")
  hs = {}
  for i = 1, 3 do hs[i] = task.spawn(function() return incidents.resolve(st, inc.id, "r" .. i) end) end
  wins = 0
  for i = 1, 3 do local ok, x = hs[i]:join(); if ok and x then wins = wins + 1 end end
  t.is(wins, 1, "three concurrent resolves: exactly one applies")
  local got = incidents.get(st, inc.id)
  t.is(got.state, "resolved", "resolved")
  t.ok(got.resolved_at >= got.acked_at and got.acked_at >= got.created_at, "created <= acked <= resolved")
  t.is(got.revision, 4, "one revision per applied change (trigger, ack, reassign, resolve)")
  _, err = incidents.ack(st, inc.id, "x")
  t.like(err, "is resolved", "a resolved incident cannot be acknowledged")
  t.is_deeply(types_of(inc.id), { "incident.triggered", "incident.acknowledged", "incident.reassigned", "incident.resolved" },
    "one event per applied change, none for refused ones")

  -- timeline
  t.ok(incidents.note(st, inc.id, "comment", { text = "looking" }, "alice", { id = "c1" }), "note")
  incidents.note(st, inc.id, "comment", { text = "looking" }, "alice", { id = "c1" })
  local tl = assert(incidents.timeline(st, inc.id))
  local kinds = {}
  for _, e in ipairs(tl) do kinds[#kinds + 1] = e.kind end
  t.is_deeply(kinds, { "triggered", "alerts", "acknowledged", "reassigned", "resolved", "comment" },
    "timeline: every change in order, a note with an id written once")
  t.is(tl[3].actor, winner.acked_by, "the ack's actor is on the timeline")
  t.is(tl[4].data.assignee, "bob", "the reassignment names the assignee")

  -- a new incident for the key once the old one is resolved; resolve_key; retrigger
  local inc2, c3 = incidents.trigger(st, { key = "db/disk", service = "database" })
  t.ok(c3 and inc2.id ~= inc.id, "after resolution the key opens a new incident")
  t.ok(incidents.ack(st, inc2.id, "ana"), "ack the new one")
  local re = incidents.retrigger(st, inc2.id, 1, "escalation")
  t.is(re and re.state, "triggered", "retrigger: back to triggered")
  t.is(re and re.epoch, 2, "... in epoch 2")
  t.is(re and re.acked_by, nil, "... with the ack cleared")
  _, err = incidents.retrigger(st, inc2.id, 1, "escalation")
  t.ok(err, "a second retrigger of epoch 1 does nothing")
  local rk = incidents.resolve_key(st, "db/disk", { actor = "alertmanager", reason = "alert resolved" })
  t.is(rk and rk.state, "resolved", "resolve_key resolves the open incident of a key")
  t.is(incidents.resolve_key(st, "db/disk", {}), false, "resolve_key without an open incident: false")
  local s1 = incidents.trigger(st, { key = "quiet", service = "web" })
  t.is((incidents.silence(st, s1.id, "ops")).state, "silenced", "silence")

  -- metrics
  local text = metrics.render()
  t.like(text, 'steward_incident_ack_seconds_count{service="database"} 2', "MTTA histogram per service")
  t.like(text, 'steward_incident_resolve_seconds_count{service="database"} 2', "MTTR histogram per service")
  t.like(text, 'steward_incidents_open{service="web",state="silenced"} 1', "open gauge by service and state")
  t.like(text, 'steward_incidents_open{service="database",state="acknowledged"} 0', "a state left drops to 0")

  -- list
  local l = assert(incidents.list(st, { service = "database" }))
  t.is(#l.incidents, 2, "list by service")
  t.ok(l.incidents[1].id > l.incidents[2].id, "newest first")
  l = assert(incidents.list(st, { state = "silenced" }))
  t.is(#l.incidents, 1, "list by state")
  local p1 = assert(incidents.list(st, { limit = 2 }))
  t.ok(p1.next_cursor, "paging: a cursor when more remain")
  local p2 = assert(incidents.list(st, { limit = 2, cursor = p1.next_cursor }))
  t.ok(#p2.incidents >= 1 and p2.incidents[1].id < p1.incidents[2].id, "the next page continues")
  t.raises(function() incidents.list(st, { state = "sleeping" }) end, "state", "bad state filter raises")

  -- links
  links.configure({ var_dir = dir .. "/var", listen = "127.0.0.1:9999", alerting = {} })
  local url = assert(links.url(inc.id, "ack", "1h"))
  t.like(url, "^http://127%.0%.0%.1:9999/v1/incidents/" .. inc.id:gsub("%-", "%%-") .. "/ack%?exp=%d+&sig=%x+$", "url shape")
  local st_ = fs.stat(dir .. "/var/alerting-link.key")
  t.is(st_ and st_.mode % 512, 384, "the key file is created with mode 0600")
  local exp, sig = url:match("exp=(%d+)&sig=(%x+)")
  t.ok(links.verify(inc.id, "ack", exp, sig), "a link verifies")
  local ok, why = links.verify(inc.id, "resolve", exp, sig)
  t.ok(not ok and why == "bad signature", "the signature is bound to the action")
  ok, why = links.verify(inc2.id, "ack", exp, sig)
  t.ok(not ok and why == "bad signature", "... and to the incident")
  ok, why = links.verify(inc.id, "ack", tostring(tonumber(exp) + 1), sig)
  t.ok(not ok and why == "bad signature", "... and to the expiry")
  ok, why = links.verify(inc.id, "ack", exp, sig, tonumber(exp) + 1)
  t.is(why, "expired", "an expired link is refused")
  local flipped = sig:sub(1, -2) .. (sig:sub(-1) == "0" and "1" or "0")
  t.ok(not links.verify(inc.id, "ack", exp, flipped), "one changed hex digit is refused")
  links.configure({ var_dir = dir .. "/var", listen = "127.0.0.1:9999" })
  t.ok(links.verify(inc.id, "ack", exp, sig), "the key persists: links survive a restart")
  links.configure({ var_dir = dir .. "/var2", alerting = { external_url = "https://ops.example.com/" } })
  t.like(assert(links.url(inc.id, "resolve")), "^https://ops%.example%.com/v1/incidents/", "external_url is the base")
  t.ok(not links.verify(inc.id, "ack", exp, sig), "another key file: another key")
end

spec.run(main)
