-- steward.deploy.rollout on a real store with a fake clock: durable timers are fired with
-- timers.fire_due at the clock's time and handed to the engine, as the daemon does. The place
-- the service runs is a recording double (its calls are the side effects counted). The
-- analysis and Flagger's schedule are the real steward.deploy.analysis and .flagger; approvals
-- and migration checks are spec doubles of their interfaces (in package.loaded), so that a case
-- chooses what they answer. Checks: every step kind, abort,
-- promote (one step, full), pauses, analysis failure -> abort, inconclusive -> paused, approvals,
-- blue-green auto-promotion and post-promotion rollback, migrations, Flagger's shorthand, and a
-- restart after every transition (a fresh engine, the last event redelivered) repeating nothing.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local timers = require "steward.runtime.store.timers"
local events_log = require "steward.runtime.events"
local proc = require "steward.proc"
local json = require "steward.json"

local format = string.format

-- ---- spec doubles of approvals and migration checks ----

local approvals = {}
package.loaded["steward.deploy.approvals"] = {
  request = function(_, o)
    approvals[#approvals + 1] = o
    return "ap-" .. #approvals
  end,
}
package.loaded["steward.deploy.migrations"] = {
  check = function(sql)
    if sql:match("DROP COLUMN") then return { { rule = "ban-drop-column", line = 1, message = "dropping a column" } } end
    return {}
  end,
  compatible = function(sql)
    if sql:match("NOT NULL") then return false, { "a new NOT NULL column without a default" } end
    return true
  end,
}
local rollout = require "steward.deploy.rollout"
local rstore = require "steward.deploy.rollout_store"
local deploy = require "steward.deploy"

-- ---- the harness ----

local dir = assert(proc.run{ cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
local nstore = 0

-- A metric whose value the test sets: metric.value[1]
local function metric(value, opts)
  local m = { name = "errors", provider = function() return value[1] end,
              success_condition = function(v) return v < 0.05 end, failure_condition = function(v) return v >= 0.2 end }
  for k, v in pairs(opts or {}) do m[k] = v end
  return m
end

local function world(strategy, opts)
  opts = opts or {}
  nstore = nstore + 1
  local st = assert(store.open("sqlite:" .. dir .. "/s" .. nstore .. ".db"))
  store.set_default(st)
  local w = { st = st, clock = 1767225600, calls = {}, n = 0 }
  local function now() return w.clock end
  w.platform = {
    ensure = function(_, rev, n) w.calls[#w.calls + 1] = format("ensure %s %d", rev, n); return w.fail_with == nil or nil, w.fail_with end,
    weights = function(_, map)
      local keys = {}
      for k in pairs(map) do keys[#keys + 1] = k end
      table.sort(keys)
      local parts = {}
      for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. map[k] end
      w.calls[#w.calls + 1] = "weights " .. table.concat(parts, " ")
      if w.crash_after_call then error("killed", 0) end
      return true
    end,
    retire = function(_, rev) w.calls[#w.calls + 1] = "retire " .. rev; return true end,
  }
  local services = { api = { run = { instances = 4 }, haproxy = { socket = "x", backend = "api" } } }
  local plat = w.platform
  if opts.platform == false then plat = nil end
  function w.engine()
    return rollout.engine("api", strategy, { store = st, platform = plat, now = now,
      services = services, drivers = opts.drivers, name = "deploy.api" })
  end
  w.eng = w.engine()
  function w.send(type_, data, id)
    w.n = w.n + 1
    local ev = { id = id or ("ev" .. w.n), type = type_, time = w.clock, data = data }
    w.last = ev
    return w.eng:handle(ev)
  end
  function w.start(data)
    local d = { service = "api", revision = "v2", stable = "v1" }
    for k, v in pairs(data or {}) do d[k] = v end
    w.id = rollout.rollout_id("api", d.revision, "adm1")
    w.send("deploy.admitted", d, "adm1")
    return w.id
  end
  -- advance(secs): fires the timers falling due on the way, in order, each at its due time.
  function w.advance(secs)
    local target = w.clock + secs
    while true do
      local due = timers.next_due(st)
      if not due or due > target then break end
      if due > w.clock then w.clock = due end
      for _, ev in ipairs(assert(timers.fire_due(st, w.clock))) do
        w.last = ev
        w.eng:handle(ev)
      end
    end
    w.clock = target
  end
  function w.r() return assert(rstore.get(st, w.id)) end
  function w.cmd(action, extra)
    local d = { rollout = w.id, action = action, by = "ana" }
    for k, v in pairs(extra or {}) do d[k] = v end
    return w.send("rollout.command", d)
  end
  function w.types()
    local out = {}
    local res = assert(events_log.query(st, { limit = 1000 }))
    for _, ev in ipairs(res.events) do
      if ev.type:match("^rollout%.") and ev.type ~= "rollout.tick" then out[#out + 1] = ev.type end
    end
    table.sort(out)
    return out
  end
  function w.count(type_)
    local n = 0
    local res = assert(events_log.query(st, { limit = 1000 }))
    for _, ev in ipairs(res.events) do if ev.type == type_ then n = n + 1 end end
    return n
  end
  return w
end

local function full_canary(value)
  return deploy.canary{
    steps = {
      { set_weight = 20 },
      { pause = { duration = "30s" } },
      { analysis = { metrics = { metric(value, { interval = 10, count = 3 }) } } },
      { set_canary_scale = { replicas = 2 } },
      { approval = { timeout = "1h", approvers = { "operator" } } },
      { set_weight = 50 },
      { pause = {} },
    },
    abort_scale_down_delay = "30s", scale_down_delay = "60s",
  }
end

local function main()
  -- ---- a full canary: every step kind ----
  local good = { 0.01 }
  local w = world(full_canary(good))
  w.start()
  t.is_deeply(w.calls, { "ensure v2 1", "weights v1=80 v2=20" }, "set_weight 20: one canary instance of four, then 20% of traffic")
  t.is(w.r().phase, "Paused", "the timed pause pauses")
  t.is(w.r().step, 2, "... at step 2")
  w.advance(29)
  t.is(w.r().step, 2, "29 s later it still waits")
  w.advance(1)
  t.is(w.r().step, 3, "after 30 s the analysis step runs")
  t.is(w.r().phase, "Progressing", "... Progressing")
  w.advance(10)
  t.is(w.r().step, 3, "the analysis takes its three measurements 10 s apart")
  w.advance(10)
  t.is(w.r().step, 5, "a Successful analysis moves on; set_canary_scale ran; the approval step waits")
  t.is(w.calls[3], "ensure v2 2", "set_canary_scale{replicas = 2} scaled the canary to 2")
  t.is(w.r().phase, "Paused", "waiting for the approval")
  t.is(#approvals, 1, "one approval requested")
  t.is(approvals[1].subject, w.id, "... its subject is the rollout id")
  t.is(approvals[1].timeout, 3600, "... with the step's timeout")
  w.cmd("promote")
  t.is(w.r().step, 5, "promote does not pass an approval step")
  w.send("approval.granted", { subject = w.id, approval = "ap-1", decided_by = "bo" })
  t.is(w.r().step, 7, "approval granted: set_weight 50 ran, then the indefinite pause")
  t.is(w.calls[4], "weights v1=50 v2=50", "50% to the canary (its scale stays as set)")
  t.is(w.r().phase, "Paused", "an indefinite pause")
  w.advance(3600)
  t.is(w.r().phase, "Paused", "... stays paused an hour later")
  w.cmd("promote")
  t.is(w.r().phase, "Completed", "promote after the last step completes the rollout")
  t.is_deeply({ w.calls[5], w.calls[6] }, { "ensure v2 4", "weights v1=0 v2=100" }, "full scale, then all traffic")
  w.advance(59)
  t.is(#w.calls, 6, "the old revision stays up for scale_down_delay")
  w.advance(1)
  t.is(w.calls[7], "retire v1", "... then it is retired")
  t.is(#w.calls, 7, "no other side effect")
  t.is_deeply(w.types(), { "rollout.completed", "rollout.paused", "rollout.paused", "rollout.paused", "rollout.promoted",
    "rollout.started", "rollout.step", "rollout.step", "rollout.step", "rollout.step", "rollout.step", "rollout.step",
    "rollout.step" }, "events: started, a step per step, paused three times, promoted, completed")
  local hist = assert(rstore.history(w.st, w.id))
  local kinds = {}
  for _, h in ipairs(hist) do kinds[h.kind] = (kinds[h.kind] or 0) + 1 end
  t.ok(kinds.started == 1 and kinds.completed == 1 and kinds.approved == 1 and kinds.command_refused == 1,
    "the history has every transition (started, approved, a refused promote, completed)")
  local who
  for _, h in ipairs(hist) do if h.kind == "approved" then who = h.actor end end
  t.is(who, "bo", "... and who approved")
  local arows = assert(w.st.db:query("SELECT COUNT(*) AS n FROM audit WHERE command LIKE 'rollout.%'"))
  t.is(arows[1].n, #hist, "every history row is in the audit log")
  local unaudited = assert(w.st.db:query("SELECT COUNT(*) AS n FROM rollout_history WHERE audited = 0"))
  t.is(unaudited[1].n, 0, "... none left behind")

  -- ---- abort: traffic back at once, canary scaled down after the delay ----
  w = world(full_canary(good))
  w.start()
  w.cmd("abort")
  t.is(w.r().phase, "Aborted", "abort during a pause")
  t.is(w.calls[#w.calls], "weights v1=100 v2=0", "traffic back to stable at once")
  local n = #w.calls
  w.advance(29)
  t.is(#w.calls, n, "the canary stays up for abort_scale_down_delay")
  w.advance(1)
  t.is(w.calls[#w.calls], "retire v2", "... then it is scaled down")
  t.is(w.count("rollout.aborted"), 1, "one rollout.aborted event")
  w.advance(3600)
  t.is(w.r().step, 2, "the stale pause timer did nothing")
  w.cmd("abort")
  t.is(w.count("rollout.aborted"), 1, "abort of an aborted rollout is refused")

  -- ---- retry of an aborted rollout starts over ----
  local before = #w.calls
  w.cmd("retry")
  t.is(w.r().phase, "Paused", "retry: back at the first pause")
  t.is_deeply({ w.calls[before + 1], w.calls[before + 2] }, { "ensure v2 1", "weights v1=80 v2=20" },
    "retry ran set_weight again (a new attempt)")
  t.is(w.r().attempt, 2, "attempt 2")

  -- ---- analysis failure -> abort ----
  local bad = { 0.01 }
  w = world(full_canary(bad))
  w.start()
  w.advance(30)
  bad[1] = 0.5
  w.advance(10)
  t.is(w.r().phase, "Aborted", "a failed measurement (failure_limit 0) aborts")
  t.like(w.r().message, "analysis Failed at step 3", "... the reason names the step")
  t.is(w.calls[#w.calls], "weights v1=100 v2=0", "... traffic back to stable")

  -- ---- inconclusive -> paused until a person decides ----
  local inc = { 0.1 }
  w = world(full_canary(inc))
  w.start()
  w.advance(30)
  t.is(w.r().phase, "Paused", "an inconclusive analysis pauses")
  t.like(w.r().message, "inconclusive", "... saying why")
  w.advance(600)
  t.is(w.r().step, 3, "... and waits")
  w.cmd("promote")
  t.is(w.r().step, 5, "promote continues past it (to the approval)")

  -- ---- approval denied / expired -> abort ----
  for _, kind in ipairs({ "denied", "expired" }) do
    w = world(full_canary(good))
    w.start()
    w.advance(60)
    t.is(w.r().step, 5, kind .. ": at the approval step")
    w.send("approval." .. kind, { subject = w.id })
    t.is(w.r().phase, "Aborted", "approval " .. kind .. " aborts")
    t.like(w.r().message, "approval " .. kind, "... naming why")
  end

  -- ---- promote full skips the remaining steps ----
  w = world(full_canary(good))
  w.start()
  w.cmd("promote", { full = true })
  t.is(w.r().phase, "Completed", "promote full: completed from the first pause")
  t.is(#approvals, 4, "no approval was requested by it")

  -- ---- a restart after every transition repeats nothing ----
  -- The reference run, then the same run with a fresh engine after every event and every event
  -- delivered twice (at-least-once delivery after a crash between commit and completion record).
  local function scripted(crash)
    local v = { 0.01 }
    local x = world(full_canary(v))
    local function again()
      if crash then
        x.eng = x.engine()
        x.eng:handle(x.last)
      end
    end
    x.start(); again()
    for _ = 1, 8 do
      local target = x.clock + 10
      while true do
        local due = timers.next_due(x.st)
        if not due or due > target then break end
        if due > x.clock then x.clock = due end
        for _, ev in ipairs(assert(timers.fire_due(x.st, x.clock))) do
          x.last = ev
          x.eng:handle(ev); again()
        end
      end
      x.clock = target
    end
    x.send("approval.granted", { subject = x.id }); again()
    x.cmd("promote"); again()
    x.advance(60); again()
    return x
  end
  local ref = scripted(false)
  local rep = scripted(true)
  t.is(ref.r().phase, "Completed", "reference run completed")
  t.is(rep.r().phase, "Completed", "restarted run completed")
  t.is_deeply(rep.calls, ref.calls, "the same side effects, none twice: " .. table.concat(ref.calls, ", "))
  t.is(rep.count("rollout.step"), ref.count("rollout.step"), "the same number of rollout.step events")
  t.is(rep.count("rollout.completed"), 1, "completed once")

  -- An effect cut off after the driver acted (kill -9 between the call and its done mark) runs
  -- again after the restart; every other effect does not.
  w = world(full_canary(good))
  w.crash_after_call = true
  t.raises(function() w.start() end, "killed", "the first weights call dies after acting")
  w.crash_after_call = nil
  w.eng = w.engine()
  w.eng:handle(w.last)
  t.is_deeply(w.calls, { "ensure v2 1", "weights v1=80 v2=20", "weights v1=80 v2=20" },
    "after the restart the interrupted weights call ran again, the finished scale did not")
  t.is(w.r().phase, "Paused", "... and the rollout went on to the pause")
  local hist2 = assert(rstore.history(w.st, w.id))
  local repeated = false
  for _, h in ipairs(hist2) do if h.kind == "effect_started" and h.data.repeated then repeated = true end end
  t.ok(repeated, "the history says the effect was repeated")

  -- A driver that fails: the handler fails (dispatch retries it), the rollout keeps its step.
  w = world(full_canary(good))
  w.fail_with = "haproxy: connection refused"
  t.raises(function() w.start() end, "connection refused", "a failing driver fails the handler")
  t.like(w.r().message, "connection refused", "the rollout says why")
  w.fail_with = nil
  w.eng:handle(w.last)
  t.is(w.r().phase, "Paused", "the retried handler goes on")

  -- ---- background analysis fails -> abort ----
  local bgv = { 0.01 }
  w = world(deploy.canary{ steps = { { set_weight = 10 }, { pause = {} } },
    analysis = { metrics = { metric(bgv, { interval = 60, count = 100 }) } } })
  w.start()
  w.advance(120)
  t.is(w.r().phase, "Paused", "background analysis runs while the rollout pauses")
  bgv[1] = 0.9
  w.advance(60)
  t.is(w.r().phase, "Aborted", "a failed background measurement aborts")
  t.like(w.r().message, "background analysis Failed", "... naming it")

  -- ---- the first revision of a service is rolled out whole ----
  w = world(full_canary(good))
  w.start({ stable = nil, revision = "v1" })
  w.id = rollout.rollout_id("api", "v1", "adm1")
  t.is(w.r().phase, "Completed", "no stable revision: completed at once")
  t.is_deeply(w.calls, { "ensure v1 4", "weights v1=100" }, "... at full scale with all traffic")

  -- A first revision whose platform fails once: the retried handler still rolls it out whole
  -- (it used to walk the canary's steps with no stable revision).
  w = world(full_canary(good))
  w.fail_with = "supervisor: not ready yet"
  w.id = rollout.rollout_id("api", "v1", "adm1")
  t.raises(function() w.send("deploy.admitted", { service = "api", revision = "v1" }, "adm1") end, "not ready yet",
    "first revision: the platform fails")
  w.fail_with = nil
  w.eng:handle(w.last)
  t.is(w.r().phase, "Completed", "the retried handler completes the first revision")
  t.is_deeply(w.calls, { "ensure v1 4", "ensure v1 4", "weights v1=100" }, "... whole, without canary steps")

  -- ---- blue-green ----
  local post = { 0.01 }
  local bg = deploy.blue_green{ pre_promotion_analysis = { metrics = { metric(good, { count = 1 }) } },
    post_promotion_analysis = { metrics = { metric(post, { interval = 30, count = 2 }) } },
    auto_promotion_seconds = 60, scale_down_delay = "30s" }
  w = world(bg)
  w.start()
  t.is_deeply(w.calls, { "ensure v2 4", "weights v1=100 v2=0" }, "blue-green: the preview is up with no traffic")
  t.is(w.r().phase, "Paused", "pre-promotion analysis passed; auto-promotion waits")
  w.advance(59)
  t.is(#w.calls, 2, "... 60 seconds")
  w.advance(1)
  t.is(w.calls[#w.calls], "weights v1=0 v2=100", "auto-promotion switched the traffic")
  t.is(w.count("rollout.promoted"), 1, "rollout.promoted")
  post[1] = 0.3
  w.advance(30)
  t.is(w.r().phase, "Aborted", "post-promotion analysis failed")
  t.is(w.calls[#w.calls], "weights v1=100 v2=0", "... traffic switched back to the old colour")

  w = world(deploy.blue_green{ auto_promotion_enabled = false })
  w.start()
  w.advance(3600)
  t.is(w.r().phase, "Paused", "auto_promotion_enabled = false: waits for a person")
  w.cmd("promote")
  t.is(w.r().phase, "Completed", "promote switches and completes")
  w.advance(30)
  t.is(w.calls[#w.calls], "retire v1", "the old colour is retired after scale_down_delay")

  -- ---- migrations ----
  w = world(full_canary(good))
  w.start({ migrations = { { name = "0042_drop.sql", sql = "ALTER TABLE t DROP COLUMN c;" } } })
  t.is(w.r().phase, "Aborted", "a migration that breaks squawk's rules stops the rollout before its first step")
  t.like(w.r().message, "0042_drop.sql: ban%-drop%-column", "... naming the file and the rule")
  t.is(#w.calls, 0, "... with no side effect")

  w = world(full_canary(good))
  w.start({ migrations = { { name = "0043_add.sql", sql = "ALTER TABLE t ADD COLUMN c int NOT NULL;" } } })
  t.is(w.r().phase, "Paused", "a backward-incompatible migration does not stop the rollout")
  w.cmd("abort")
  t.is(w.r().phase, "RollbackBlocked", "... but an abort past it is blocked")
  t.is(w.count("rollout.rollback_blocked"), 1, "rollout.rollback_blocked")
  t.is(w.calls[#w.calls], "weights v1=80 v2=20", "traffic stays where it was")
  w.cmd("abort", { force = true })
  t.is(w.r().phase, "Aborted", "abort with force rolls back")
  t.is(w.calls[#w.calls], "weights v1=100 v2=0", "... traffic back to stable")

  -- ---- Flagger's shorthand ----
  local fv = { 0.01 }
  w = world(deploy.canary{ step_weight = 20, max_weight = 60, interval = "1m", threshold = 2,
    analysis = { metrics = { metric(fv) } } })
  w.start()
  w.advance(120)
  t.is(w.r().weight, 60, "Flagger: +20 per good check up to max_weight")
  w.advance(60)
  t.is(w.r().phase, "Completed", "... then promotion")
  w = world(deploy.canary{ step_weight = 20, max_weight = 60, interval = "1m", threshold = 2,
    analysis = { metrics = { metric(fv) } } })
  w.start()
  w.advance(60)
  fv[1] = 0.5
  w.advance(180) -- Flagger rolls back on the tick after the threshold-th failed check
  t.is(w.r().phase, "Aborted", "threshold failed checks roll back")
  local last_weights
  for _, c in ipairs(w.calls) do if c:match("^weights") then last_weights = c end end
  t.is(last_weights, "weights v1=100 v2=0", "... traffic back to stable")

  -- Flagger's checks of one attempt share their providers: a counter provider (HAProxy's
  -- error_rate) then answers for the interval since the previous check, not since it was made.
  local made = 0
  package.loaded["steward.deploy.metrics.spec_flagger_counter"] = {
    provider = function() made = made + 1; return function() return 0.01 end end,
  }
  w = world(deploy.canary{ step_weight = 20, max_weight = 60, interval = "1m", threshold = 2,
    analysis = { metrics = { metric(fv, { provider = { spec_flagger_counter = {} } }) } } })
  fv[1] = 0.01
  w.start()
  w.advance(180)
  t.is(w.r().phase, "Completed", "Flagger with a named provider: promoted")
  t.is(made, 1, "... one provider instance served every check of the attempt")

  -- ---- the local platform over the supervisor and HAProxy ----
  local dcalls = {}
  local function rec(name) return function(...) dcalls[#dcalls + 1] = name .. " " .. json.encode({ ... }); return true end end
  local sup = { instances = function() return {} end, start = rec("start"), scale = rec("scale"), stop = rec("stop"),
    wait_ready = rec("wait_ready"), endpoints = function() return { { host = "127.0.0.1", port = 9100 } } end }
  local hap = { sync = rec("sync"), set_weights = rec("set_weights"), drain = rec("drain"), remove = rec("remove") }
  w = world(full_canary(good), { drivers = { supervisor = sup, haproxy = hap }, platform = false })
  w.start()
  t.like(dcalls[1], '^scale %["api","v2",1%]', "local platform: supervisor.scale(service, revision, n)")
  t.like(dcalls[2], "^wait_ready", "... waits for readiness")
  t.like(dcalls[3], '^sync %["api","v2",%[{', "... syncs the ready endpoints into HAProxy")
  t.like(dcalls[4], '^set_weights %["api",{', "... then sets the weights")

  -- ---- the Kubernetes platform ----
  local kcalls = {}
  local function krec(name) return function(...) kcalls[#kcalls + 1] = name .. " " .. json.encode({ ... }); return true end end
  local kube = { start = krec("start"), scale = krec("scale"), stop = krec("stop"), wait_ready = krec("wait_ready"),
    set_weights = krec("set_weights"), switch = krec("switch") }
  local platform = require "steward.deploy.rollout_platform"
  local kp = assert(platform.new("api", { kubernetes = { deployment = "api", httproute = "api" } }, { kubernetes = kube }))
  assert(kp:ensure("v2", 2)); assert(kp:weights({ v1 = 80, v2 = 20 })); assert(kp:retire("v1"))
  t.like(kcalls[1], '^start %["api","v2",2%]', "kubernetes: ensure starts (or scales) the revision's Deployment")
  t.like(kcalls[2], '^wait_ready %["api","v2",2', "... and waits for its replicas")
  t.like(kcalls[3], '^set_weights %["api",{', "... weights through the HTTPRoute")
  t.like(kcalls[4], '^stop %["api","v1"%]', "... retire stops the revision")
  kcalls = {}
  local kb = assert(platform.new("api", { kubernetes = { deployment = "api", service = "api" } }, { kubernetes = kube }))
  assert(kb:weights({ v1 = 0, v2 = 100 }))
  t.like(kcalls[1], '^switch %["api","v2"%]', "kubernetes without an HTTPRoute: a switch by the Service's selector")
  local _, kerr = kb:weights({ v1 = 80, v2 = 20 })
  t.like(kerr, "httproute: needed", "... and a split is refused, naming the field")

  -- ---- misuse is named ----
  t.raises(function() deploy.canary{ steps = { { set_wieght = 1 } } } end, "steps%[1%]: unknown step kind 'set_wieght'",
    "a misspelt step kind is named")
  t.raises(function() deploy.canary{ steps = { { set_weight = 120 } } } end, "steps%[1%]%.set_weight: integer from 0 to 100",
    "a weight out of range is named")
  t.raises(function() deploy.blue_green{ auto_promotion_seconds = -1 } end, "auto_promotion_seconds", "bad auto_promotion_seconds")
  t.raises(function() deploy.rollout_policy{ service = "api" } end, "strategy", "a policy without a strategy")
  local p = deploy.rollout_policy{ service = "api", strategy = full_canary(good) }
  t.is_deeply(p.capabilities, { deploy = { "api" } }, "a rollout policy declares the deploy capability for its service")
  t.is(p.key({ id = "x", data = { subject = "api~v2~abcd" } }), "api", "an approval's key is the rollout's service")
  t.is(p.key({ id = "x", data = { service = "web" } }), "web", "an event naming a service is keyed by it")
end

-- steward.deploy's re-exported parts keep their own capability checks in a policy's sandbox:
-- deploy.haproxy is the guarded module, not a way around the deploy scope.
local function sandboxed()
  local sandbox = require "steward.runtime.policy.sandbox"
  local guard = require "steward.runtime.guard"
  require("steward.deploy.haproxy").configure { api = { haproxy = { socket = "/nonexistent/h4.sock", backend = "api" } } }
  local env, box = sandbox.new_env({ name = "probe", log = function() end })
  box.caps = { deploy = { "api" } }
  local fn = assert(sandbox.compile(env, [[
    local deploy = require "steward.deploy"
    local a, aerr = deploy.haproxy.stats("db")
    local b, berr = deploy.haproxy.stats("api")
    return { aerr, berr, type(deploy.canary), type(deploy.rollout_policy) }
  ]], "=probe"))
  local ok, v = guard.run(box.budget, fn)
  t.ok(ok, "a policy requires steward.deploy")
  t.is(v and v[1], "capability 'deploy' not granted to probe (service db)",
    "deploy.haproxy outside the policy's deploy scope is refused, as require 'steward.deploy.haproxy' is")
  t.like(v and v[2], "h4.sock", "... inside it the call reaches the driver")
  t.is(v and v[3] .. " " .. v[4], "function function", "deploy.canary and deploy.rollout_policy are there")
end

local ok, err = xpcall(main, debug.traceback)
if ok then ok, err = xpcall(sandboxed, debug.traceback) end
if not ok then t.fail("spec raised", err) end
proc.run{ cmd = { "rm", "-rf", dir } }
t.done()
