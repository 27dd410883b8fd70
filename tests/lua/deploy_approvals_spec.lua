-- steward.deploy.approvals on a real SQLite store: request (durable row, approval.requested,
-- an armed timeout timer, notifications with signed links, idempotent by key), decisions by
-- role and by token name, the first decision winning and a second refused naming it (also
-- under concurrent decisions), the timeout on a fake clock (explicit `now`) giving
-- approval.expired exactly once and refusing later decisions, the audit entries, and the links.
local t = require "steward.tap"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"
local audit = require "steward.runtime.store.audit"
local task = require "steward.task"
local notify = require "steward.notify"
local links = require "steward.alerting.links"
local approvals = require "steward.deploy.approvals"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local dir, st, dispatched = spec.dir, spec.st, spec.dispatched
links.configure({ var_dir = dir .. "/var", listen = "127.0.0.1:9999" })
notify.set_store(st)

local function types_for(id)
  local out = {}
  for _, ev in ipairs(assert(events.query(st, { type = "approval.*", limit = 1000 })).events) do
    if ev.data.approval == id and ev.type ~= "approval.timeout" then out[#out + 1] = ev.type end
  end
  return table.concat(out, ",")
end

local T0 = 1790000000

local function lit(s) return (s:gsub("%p", "%%%0")) end

local function main()
  -- request
  local sent_lines = {}
  local ch = notify.channel("log", { name = "ops-log" })
  local id, sent = approvals.request(st, { subject = "rollout:api:r42", step = "pause-2", timeout = "30m",
    approvers = { "operator", "ana" }, notify = { ch }, reason = "canary at 20%", requested_by = "deploy.canary", now = T0 })
  t.ok(id, "request answers an id")
  t.is(sent and sent["ops-log"], "sent", "... and notifies through the channel")
  local a = assert(approvals.get(st, id))
  t.is(a.state, "pending", "a new approval is pending")
  t.is(a.subject, "rollout:api:r42", "... with its subject")
  t.is(a.expires_at, T0 + 1800, "... expiring after its timeout")
  t.is(table.concat(a.approvers, ","), "operator,ana", "... approvers kept")
  t.is(types_for(id), "approval.requested", "approval.requested is in the log")
  t.is(dispatched[#dispatched].type, "approval.requested", "... and went to dispatch")
  local pend = assert(timers.pending(st))
  local timer
  for _, tm in ipairs(pend) do if tm.id == "k:approval:" .. id then timer = tm end end
  t.ok(timer and timer.due_at == T0 + 1800 and timer.event.type == "approval.timeout", "a durable timer is armed for the timeout")
  local hist = notify.history({ store = st, channel = "ops-log" })
  t.is(#hist, 1, "one notification in the history")
  t.like(hist[1] and hist[1].key, "^approval:" .. lit(id), "... under the approval's idempotency key")

  -- the links in the message
  local link = assert(approvals.link(a, "approve"))
  t.like(link, "^http://127%.0%.0%.1:9999/v1/approvals/" .. lit(id) .. "/approve%?exp=" .. (T0 + 1800) .. "&sig=%x+$",
    "the approve link: the approval, the action, its expiry (the approval's) and a signature")
  local exp, sig = link:match("exp=(%d+)&sig=(%x+)")
  t.ok(approvals.verify(id, "approve", exp, sig, T0), "the link verifies")
  t.is(select(2, approvals.verify(id, "deny", exp, sig, T0)), "bad signature", "... not for deny")
  t.is(select(2, approvals.verify(id, "approve", tostring(tonumber(exp) + 60), sig, T0)), "bad signature", "... not with another expiry")
  t.is(select(2, approvals.verify(id, "approve", exp, sig, T0 + 1800)), "expired", "... and not once the approval expired")
  t.ok(not links.verify(id, "ack", exp, sig, T0), "an approval link is no incident link")

  -- idempotent by key
  local k1 = approvals.request(st, { subject = "promote:api:r42:production", key = "promote:api:r42:production", now = T0 })
  local k2, s2 = approvals.request(st, { subject = "promote:api:r42:production", key = "promote:api:r42:production", now = T0 + 5 })
  t.is(k2, k1, "a request with the same key answers the same approval")
  t.is(next(s2), nil, "... and notifies nobody again")
  t.is(#assert(approvals.list(st, { subject = "promote:api:r42:production" })), 1, "... one approval stored")
  -- a first run that stopped before arming its timer: the next run arms it
  assert(timers.cancel(st, "k:approval:" .. k1))
  approvals.request(st, { subject = "promote:api:r42:production", key = "promote:api:r42:production", now = T0 + 10 })
  local rearmed
  for _, tm in ipairs(assert(timers.pending(st))) do if tm.id == "k:approval:" .. k1 then rearmed = tm end end
  t.ok(rearmed and rearmed.due_at == T0 + 3600, "asking again arms a missing timeout timer, for the same expiry")

  -- who may decide
  local r, err = approvals.decide(st, id, "approve", { actor = "vic", name = "vic", role = "viewer", via = "api", now = T0 + 60 })
  t.ok(not r and tostring(err):match("may not decide"), "a viewer may not decide")
  r, err = approvals.decide(st, k1, "approve", { actor = "bob", name = "bob", role = "operator", via = "api", now = T0 + 60 })
  t.ok(r and r.state == "granted", "an operator decides an approval whose approvers name the operator role (default)")
  local named = approvals.request(st, { subject = "s:named", approvers = { "ana" }, now = T0 })
  r, err = approvals.decide(st, named, "approve", { actor = "bob", name = "bob", role = "operator", via = "api", now = T0 + 60 })
  t.ok(not r and tostring(err):match("approvers: ana"), "approvers naming a token: another operator may not")
  r = approvals.decide(st, named, "deny", { actor = "ana", name = "ana", role = "operator", via = "api",
    comment = "not during the sale", now = T0 + 61 })
  t.ok(r and r.state == "denied" and r.comment == "not during the sale", "the named token denies, with a comment")
  t.is(types_for(named), "approval.requested,approval.denied", "approval.denied is in the log")

  -- the first decision wins; a second is refused naming it
  r = approvals.decide(st, id, "approve", { actor = "ana", name = "ana", role = "operator", via = "api",
    comment = "looks good", now = T0 + 120 })
  t.ok(r and r.state == "granted" and r.decided_by == "ana" and r.decided_via == "api", "ana approves through the API")
  t.is(dispatched[#dispatched].type, "approval.granted", "approval.granted goes to dispatch")
  t.is(dispatched[#dispatched].data.subject, "rollout:api:r42", "... with data.subject")
  local again, aerr, cur = approvals.decide(st, id, "deny", { actor = "admin", role = "admin", via = "repl", now = T0 + 130 })
  t.ok(not again and cur and cur.state == "granted", "a second decision is refused, with the current state")
  t.like(aerr, "already granted by ana via api at", "... naming the first decision")
  t.is(types_for(id), "approval.requested,approval.granted", "one decision event, ever")
  local still
  for _, tm in ipairs(assert(timers.pending(st))) do if tm.id == "k:approval:" .. id then still = tm end end
  t.ok(not still, "the decision removed the timeout timer")

  -- concurrent decisions: exactly one applies
  local race = approvals.request(st, { subject = "s:race", now = T0 })
  local hs = {}
  for i = 1, 6 do
    hs[i] = task.spawn(function()
      return approvals.decide(st, race, i % 2 == 0 and "approve" or "deny",
        { actor = "op" .. i, name = "op" .. i, role = "operator", via = "api", now = T0 + 10 })
    end)
  end
  local wins = 0
  for i = 1, 6 do
    local okj, res = hs[i]:join()
    if okj and res then wins = wins + 1 end
  end
  t.is(wins, 1, "six concurrent decisions: one wins")
  local n = 0
  for _, ev in ipairs(assert(events.query(st, { type = "approval.*", limit = 1000 })).events) do
    if ev.data.approval == race and (ev.type == "approval.granted" or ev.type == "approval.denied") then n = n + 1 end
  end
  t.is(n, 1, "... and one decision event")

  -- timeouts
  local slow = approvals.request(st, { subject = "s:slow", timeout = "10m", now = T0 })
  t.is(assert(approvals.expire_due(st, T0 + 599)), 0, "nothing expires before the timeout")
  local fired = assert(timers.fire_due(st, T0 + 600))
  local tev
  for _, ev in ipairs(fired) do if ev.data.approval == slow then tev = ev end end
  t.ok(tev and tev.type == "approval.timeout", "the timer fires approval.timeout at the timeout")
  local ex = approvals.expire(st, slow, T0 + 600)
  t.ok(ex and ex.state == "expired", "expire moves it to expired")
  t.is(types_for(slow), "approval.requested,approval.expired", "approval.expired is in the log, once")
  t.ok(not approvals.expire(st, slow, T0 + 700), "expiring again does nothing")
  r, err, cur = approvals.decide(st, slow, "approve", { actor = "ana", role = "admin", via = "api", now = T0 + 700 })
  t.ok(not r and cur and cur.state == "expired", "a decision after the timeout is refused")
  t.like(err, "expired at", "... naming the expiry")
  -- A timeout that fell while the daemon was down: the next decision finds it expired.
  local late = approvals.request(st, { subject = "s:late", timeout = "1m", now = T0 })
  r, err, cur = approvals.decide(st, late, "approve", { actor = "ana", role = "admin", via = "api", now = T0 + 61 })
  t.ok(not r and cur and cur.state == "expired", "a decision past the timeout (timer not fired yet) finds it expired")
  t.is(types_for(late), "approval.requested,approval.expired", "... and approval.expired is written")
  t.is(assert(approvals.get(st, late)).decided_via, "timer", "... as the timer's doing")
  local sweep = approvals.request(st, { subject = "s:sweep", timeout = "1m", now = T0 })
  t.is(assert(approvals.expire_due(st, T0 + 3600)), 1, "expire_due expires what is overdue (the daemon's start-up sweep)")
  t.is(assert(approvals.get(st, sweep)).state, "expired", "... that one")

  -- the audit log: who, how, when, the comment; refusals too
  local entries = assert(audit.list(st, { limit = 100 })).entries
  local seen = {}
  for _, e in ipairs(entries) do
    if e.target == id then seen[#seen + 1] = e.command .. "/" .. e.outcome .. "/" .. tostring(e.actor) .. "/" .. tostring(e.detail) end
  end
  local all = table.concat(seen, "\n")
  t.like(all, "approval%.approve/ok/ana/via api; comment: looks good", "the audit log has the approval: who, how, comment")
  t.like(all, "approval%.deny/refused/admin/via repl; approval [^ ]+ was already granted", "... and the refused second decision")
  t.ok(assert(require("steward.runtime.store.audit_chain").verify(st)).ok, "the audit chain verifies")

  -- listing and misuse
  t.ok(#assert(approvals.list(st, { state = "pending" })) == 0, "no approval is left pending")
  t.ok(#assert(approvals.list(st, { state = "expired" })) == 3, "list by state")
  t.raises(function() approvals.request(st, { step = "x" }) end, "subject", "a request without a subject raises naming it")
  t.raises(function() approvals.request(st, { subject = "x", timeout = "soon" }) end, "timeout", "a bad timeout raises")
  t.raises(function() approvals.request(st, { subject = "x", approvers = {} }) end, "approvers", "no approvers raises")
  t.raises(function() approvals.request(st, { subject = "x", notify = { "slack" } }) end, "notify%[1%]", "a channel name is not a channel")
  t.raises(function() approvals.request(st, { subject = "x", colour = "red" }) end, "colour: unknown field", "unknown fields raise")
  t.raises(function() approvals.decide(st, id, "maybe", {}) end, "decision", "a decision other than approve or deny raises")
  t.like(select(2, approvals.decide(st, "nope", "approve", { role = "admin", via = "api" })), "^no approval nope", "an unknown id")
end

spec.run(main)
