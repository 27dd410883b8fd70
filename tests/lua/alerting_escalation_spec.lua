-- steward.alerting.escalation against real receivers (tests/support/notify_receiver.py: Twilio
-- SMS, Slack, SMTP) on a real store. Durable timers are fired with timers.fire_due at a chosen
-- time, so steps, repeats and timeouts are driven exactly as the daemon drives them, without
-- waiting. Checks: step order and targets, idempotent re-runs (a handler run twice notifies
-- nobody twice), repeat loops, ack stops escalation, ack timeout re-triggers, resolve stops
-- everything, reassign notifies, `when` windows, signed links in messages, compile errors.
-- Schedules are only used through sched:on_call(t).
local t = require "steward.tap"
local store = require "steward.runtime.store"
local timers = require "steward.runtime.store.timers"
local http = require "steward.http"
local json = require "steward.json"
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local crypto = require "steward.crypto"
local incidents = require "steward.alerting.incidents"
local escalation = require "steward.alerting.escalation"
local links = require "steward.alerting.links"
local events_log = require "steward.runtime.events"

local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]+$") or "."

local receiver
local function start_receiver()
  local dir = assert(proc.run{ cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
  local fifo = dir .. "/port"
  assert(assert(proc.run{ cmd = { "mkfifo", fifo } }).code == 0, "mkfifo failed")
  receiver = task.spawn(function()
    return proc.run{ cmd = { "sh", "-c", 'exec /usr/bin/python3 "$0" >"$1"',
                             here .. "/tests/support/notify_receiver.py", fifo } }
  end)
  local r = assert(proc.run{ cmd = { "head", "-n1", fifo }, timeout = 20 })
  local hp, sp = r.stdout:match("^(%d+) (%d+)")
  return tonumber(hp), tonumber(sp), dir
end

local function main()
  local hp, sp, dir = start_receiver()
  t.ok(hp, "receiver started")
  local base = "http://127.0.0.1:" .. hp
  local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or ("sqlite:" .. dir .. "/t.db")))
  store.set_default(st)
  links.configure({ var_dir = dir, listen = "127.0.0.1:8080" })
  local run = crypto.hex(crypto.random(4)) -- keys unique per run (an external store keeps rows)

  local function ctl(path, body)
    local res = assert(http.request{ url = base .. "/_control/" .. path, body = body and json.encode(body),
                                     headers = { ["Content-Type"] = "application/json" } })
    return res.body ~= "" and json.decode(res.body) or nil
  end
  local function count(route) return #ctl("requests?route=" .. route) end
  local function counts() return { sms = count("twilio"), mail = count("smtp"), slack = count("slack") } end

  local SID = "AC" .. string.rep("0123456789abcdef", 2)
  local on_call_now = { "bob" }
  local cfg = {
    users = {
      ana = { name = "Ana Lima", email = "ana@example.com", phone = "+15550100001", notify = { "sms", "email" } },
      bob = { email = "bob@example.com", phone = "+15550100002", notify = { "sms" } },
      cy = { email = "cy@example.com", notify = { "email" } },
    },
    channels = {
      sms = { kind = "sms", account_sid = SID, auth_token = string.rep("a1B2", 8), from = "+15550000000",
              base_url = base, retries = 0 },
      email = { kind = "email", url = "smtp://127.0.0.1:" .. sp, from = "steward@example.com", retries = 0 },
      ["slack-ops"] = { kind = "slack", webhook_url = base .. "/slack/T0/B0/ops", retries = 0 },
    },
    escalation_policies = {
      p = {
        rules = {
          { delay = 0, targets = { { user = "ana" }, { channel = "slack-ops" } } },
          { delay = "10s", targets = { { user = "cy" } } },
        },
        ["repeat"] = 1, repeat_delay = "20s", ack_timeout = "30s",
      },
      night = { rules = { { delay = 0, targets = { { user = "cy" } }, when = function() return false end } } },
      quiet = { rules = { { delay = 0, targets = { { channel = "slack-ops" } } } }, auto_resolve = "1m" },
    },
    store = st,
  }
  local esc, err = escalation.compile(cfg)
  t.ok(esc, "compile (" .. tostring(err) .. ")")
  -- a schedule is used only through on_call(t): this one answers who the test says
  esc.schedules.primary = { on_call = function() return on_call_now end }
  table.insert(esc.policies.p.rules[2].targets, { schedule = "primary" })

  -- the daemon's dispatch, in miniature: every appended event goes to the handler
  local queue = {}
  events_log.subscribe(function(_, list) for _, ev in ipairs(list) do queue[#queue + 1] = ev end end)
  local handled = {}
  local function pump()
    while #queue > 0 do
      local ev = table.remove(queue, 1)
      handled[#handled + 1] = ev
      esc:handle(ev, {})
    end
  end
  local function fire(after)
    for _, ev in ipairs(assert(timers.fire_due(st, time.now() + after))) do queue[#queue + 1] = ev end
    pump()
  end

  ctl("reset", {})
  local inc = assert(incidents.trigger(st, { key = run .. "/db", service = "database", title = "DB down",
    summary = "primary unreachable", escalation = "p" }))
  pump()
  t.is_deeply(counts(), { sms = 1, mail = 1, slack = 1 }, "step 1 at once (delay 0): ana by SMS and email, the Slack channel")
  local sms = ctl("requests?route=twilio")[1]
  t.is(sms and sms.form.To, "+15550100001", "the SMS goes to ana's phone")
  t.ok(sms and sms.valid, "... in Twilio's request shape")
  local mail = ctl("requests?route=smtp")[1]
  t.is_deeply(mail and mail.to, { "ana@example.com" }, "the email goes to ana's address")
  local body = sms and sms.form.Body or ""
  local exp, sig = body:match("/v1/incidents/" .. inc.id:gsub("%-", "%%-") .. "/ack%?exp=(%d+)&sig=(%x+)")
  t.ok(exp and links.verify(inc.id, "ack", exp, sig), "the message carries a signed ack link that verifies")
  t.like(body, "/resolve%?exp=", "... and a resolve link")

  -- a re-run of the same event (at-least-once) notifies nobody again
  esc:handle(handled[1], {})
  pump()
  t.is_deeply(counts(), { sms = 1, mail = 1, slack = 1 }, "the handler run again: nothing sent twice")
  local pend = assert(timers.pending(st))
  t.is(#pend, 1, "one durable timer armed for step 2 (the re-run armed nothing new)")

  fire(11)
  t.is_deeply(counts(), { sms = 2, mail = 2, slack = 1 }, "step 2 after its delay: cy by email, the on-call user bob by SMS")
  t.is(ctl("requests?route=twilio")[2].form.To, "+15550100002", "... the schedule's on-call user")
  fire(11)
  t.is_deeply(counts(), { sms = 2, mail = 2, slack = 1 }, "no step before its time")
  fire(32)
  t.is_deeply(counts(), { sms = 3, mail = 3, slack = 2 }, "repeat 1: step 1 again after repeat_delay")
  t.like(ctl("requests?route=twilio")[3].form.Body, "repeat 1", "... saying it is a repeat")

  -- acknowledged: the pending step does nothing; the ack timeout re-triggers a new epoch
  assert(incidents.ack(st, inc.id, "ana"))
  pump()
  fire(25)
  local after = counts()
  t.is_deeply(after, { sms = 3, mail = 3, slack = 2 }, "acknowledged: the pending step 2 notifies nobody")
  fire(80)
  local cur = incidents.get(st, inc.id)
  t.is(cur.state, "triggered", "the ack timed out: triggered again")
  t.is(cur.epoch, 2, "... in epoch 2")
  t.is_deeply(counts(), { sms = 4, mail = 4, slack = 3 }, "... and escalation restarted at step 1")

  -- resolved: nothing fires any more
  assert(incidents.resolve(st, inc.id, "ana"))
  pump()
  fire(3600)
  t.is_deeply(counts(), { sms = 4, mail = 4, slack = 3 }, "resolved: no step fires")
  t.is(#assert(timers.pending(st)), 0, "no timer left pending")

  -- the timeline has every notification, once
  local tl = assert(incidents.timeline(st, inc.id))
  local notes, sent = 0, 0
  for _, e in ipairs(tl) do
    if e.kind == "notification" then
      notes = notes + 1
      if e.data.outcome == "sent" then sent = sent + 1 end
    end
  end
  t.is(notes, 11, "11 notifications on the timeline (one per channel and target)")
  t.is(sent, 11, "... all sent")
  -- (a step's targets are notified concurrently: entries of one step come in any order)
  local named
  for _, e in ipairs(tl) do
    if e.kind == "notification" and e.data.step == 1 and e.data.target == "user:ana" and e.data.channel == "sms" then
      named = e
    end
  end
  t.ok(named, "an entry names step, target and channel")

  -- reassign notifies the new assignee
  ctl("reset", {})
  local inc2 = assert(incidents.trigger(st, { key = run .. "/web", service = "web", escalation = "night" }))
  pump()
  t.is_deeply(counts(), { sms = 0, mail = 0, slack = 0 }, "a rule outside its `when` window notifies nobody")
  local skipped = false
  for _, e in ipairs(assert(incidents.timeline(st, inc2.id))) do if e.data.skipped then skipped = true end end
  t.ok(skipped, "... and the timeline says the step was skipped")
  assert(incidents.reassign(st, inc2.id, "bob", "lead"))
  pump()
  t.is(count("twilio"), 1, "reassign: the new assignee is notified")
  t.like(ctl("requests?route=twilio")[1].form.Body, "Assigned to you by lead", "... with who assigned it")

  -- auto-resolve after quiet
  local inc3 = assert(incidents.trigger(st, { key = run .. "/quiet", service = "web", escalation = "quiet" }))
  pump()
  fire(61)
  t.is(incidents.get(st, inc3.id).state, "resolved", "auto_resolve: resolved after no alert activity")

  -- compile errors name the path
  local function cerr(c) local e, m = escalation.compile(c); return e == nil and m or "compiled" end
  t.like(cerr({ escalation_policies = { x = { rules = { { targets = { { user = "nobody" } } } } } } }),
    "^config%.escalation_policies%.x%.rules%[1%]%.targets%[1%]%.user: unknown user 'nobody'", "unknown user")
  t.like(cerr({ users = { a = { notify = { "pager" } } } }), "^config%.users%.a%.notify%[1%]: unknown channel", "unknown contact channel")
  t.like(cerr({ escalation_policies = { x = { rules = { { delay = "soon", targets = { { channel = "c" } } } } } } }),
    "^config%.escalation_policies%.x%.rules%[1%]%.delay", "bad delay")
  t.like(cerr({ escalation_policies = { x = { rules = {}, } } }), "rules: non%-empty list", "empty rules")
  t.like(cerr({ escalation_policies = { x = { rules = { { targets = { { schedule = "none" } } } } } } }),
    "targets%[1%]%.schedule: unknown schedule 'none'", "unknown schedule")
  t.like(cerr({ escalation_policies = { x = { colour = 1, rules = { { targets = { { user = "a" } } } } } } }),
    "x%.colour: unknown field", "unknown policy field")
  t.like(cerr({ channels = { c = { kind = "fax" } } }), "^config%.channels%.c: .*kind", "bad channel kind")
  t.like(cerr({ escalation_policies = { x = { rules = { { targets = { { user = "a", channel = "b" } } } } } } }),
    "exactly one of user, schedule, channel", "a target names one thing")


  -- real on-call schedules (steward.alerting.oncall) compile and are referenced by name
  local e2, e2err = escalation.compile({ users = { bob = { notify = {} } },
    schedules = { primary = { time_zone = "UTC", layers = { { users = { "bob" }, start = "2026-01-05T09:00:00", rotation = "weekly" } } } },
    escalation_policies = { x = { rules = { { targets = { { schedule = "primary" } } } } } } })
  t.ok(e2, "a schedule from steward.alerting.oncall compiles (" .. tostring(e2err) .. ")")
  t.is_deeply(e2 and e2.schedules.primary:on_call(time.now()), { "bob" }, "... and answers on_call")
  t.like(cerr({ schedules = { bad = { time_zone = "UTC", layers = { { users = { "bob" } } } } } }),
    "^config%.schedules%.bad", "a broken schedule: the error names it")

  st:close()
  proc.run{ cmd = { "rm", "-rf", dir } }
end

local ok, err = xpcall(main, debug.traceback)
if not ok then t.fail("spec raised", err) end
if receiver then receiver:cancel() end
t.done()
