-- steward.runtime.policy.emit (issue 13): what a policy emits is bounded per run, per policy per
-- second and by cause depth; refusals fail the run even when the policy catches them; the
-- depth follows the chain (also through tasks the policy spawns) and a policy cannot reset it.
local t = require "steward.tap"
local sandbox = require "steward.runtime.policy.sandbox"
local guard = require "steward.runtime.guard"
local task = require "steward.task"
local emit = require "steward.runtime.policy.emit"
local events = require "steward.runtime.events"
local store = require "steward.runtime.store"
local metrics = require "steward.metrics"

local st, tmp = require("tests.support.test_store").open()
store.set_default(st)

local function policy(name, src)
  local env, box = sandbox.new_env({ name = name, log = function() end })
  box.caps = { ["events.emit"] = true } -- as the loader sets it for a policy granted any type
  local fn = assert(sandbox.compile(env, src, "=" .. name))
  return select(2, guard.run(box.budget, fn)), box
end

-- Runs handle(ev) the way dispatch does: in a task, under the budget, through run_handler.
local function handle(box, f, ev)
  return task.spawn(function()
    return guard.run(box.budget, emit.run_handler, f, ev or { type = "x", depth = 0 }, {})
  end):join()
end

-- The value of one series in the /metrics text (0 when absent).
local function counter(name, policy, limit)
  local want = name .. '{policy="' .. policy .. '"' .. (limit and (',limit="' .. limit .. '"') or "") .. "} "
  for line in metrics.render():gmatch("[^\n]+") do
    if line:sub(1, #want) == want then return tonumber(line:sub(#want + 1)) end
  end
  return 0
end

emit.configure({ per_run = 10, per_second = 1000, max_depth = 3 })

-- Per run: the 11th event is refused, with the limit named, and nothing of that call is stored.
local loop, lbox = policy("looper", [[
  local events = require "steward.events"
  return function()
    for i = 1, 100 do assert(events.emit({ { type = "emit.loop", data = { i = i } } })) end
  end]])
local _, ok, err = handle(lbox, loop)
t.ok(ok == false and err == "events.emit: this run would emit 11 events, over limits.emit_per_run (10)",
  "an emit past limits.emit_per_run fails the run: " .. tostring(err))
t.is(events.query(st, { type = "emit.loop" }).events[10] ~= nil and #events.query(st, { type = "emit.loop" }).events, 10,
  "exactly 10 events were stored")
t.is(counter("steward_policy_events_emitted_total", "looper"), 10, "what it emitted is counted")
t.is(counter("steward_policy_emit_refused_total", "looper", "per_run"), 1, "the refused run is counted")

-- pcall cannot hide the refusal: the run fails all the same.
local hide, hbox = policy("hider", [[
  local events = require "steward.events"
  return function()
    local refused = 0
    for i = 1, 50 do
      if not pcall(events.emit, { { type = "emit.hidden" } }) then refused = refused + 1 end
    end
    return refused
  end]])
local _, hok, herr = handle(hbox, hide)
t.ok(hok == false and tostring(herr):match("over limits.emit_per_run %(10%)"), "a refusal caught with pcall still fails the run")
t.is(counter("steward_policy_emit_refused_total", "hider", "per_run"), 1, "and counts once, not once per attempt")

-- A list counts as its length; a fresh run starts from zero.
local batch, bbox = policy("batcher", [[
  local events = require "steward.events"
  return function(ev)
    local list = {}
    for i = 1, ev.data.n do list[i] = { type = "emit.batch" } end
    return events.emit(list).accepted
  end]])
local _, bok, accepted = handle(bbox, batch, { type = "x", depth = 0, data = { n = 10 } })
t.ok(bok and accepted == 10, "a list of 10 is within a limit of 10")
local _, bok2, berr = handle(bbox, batch, { type = "x", depth = 0, data = { n = 11 } })
t.ok(bok2 == false and tostring(berr):match("would emit 11 events"), "a list of 11 is not, and nothing of it is stored")
t.is(#events.query(st, { type = "emit.batch" }).events, 10, "(10 stored in all)")

-- Depth: one deeper than the event handled; past max_cause_depth refused.
local chain, cbox = policy("chainer", [[
  local events = require "steward.events"
  return function(ev)
    local r = assert(events.emit({ { type = "emit.chain" } }, { depth = 0 }))
    return events.get(r.ids[1]).depth
  end]])
local _, cok, depth = handle(cbox, chain, { type = "x", depth = 2 })
t.ok(cok and depth == 3, "an event emitted while handling depth 2 has depth 3 (the policy's depth = 0 is ignored): " .. tostring(depth))
local _, dok, derr = handle(cbox, chain, { type = "x", depth = 3 })
t.is(derr, "events.emit: event cause depth 4 exceeds limits.max_cause_depth (3): each event in the chain " ..
  "was emitted while handling the one before (a cycle between policies?)", "past the depth the emit is refused")
t.is(dok, false, "and the run fails")
t.is(counter("steward_policy_emit_refused_total", "chainer", "depth"), 1, "counted as a depth refusal")

-- A task the handler spawns emits at the handler's depth, not from 0.
local spawner, sbox = policy("spawner", [[
  local events, task = require "steward.events", require "steward.task"
  return function()
    local h = task.spawn(function()
      local r = assert(events.emit({ { type = "emit.spawned" } }))
      return events.get(r.ids[1]).depth
    end)
    return h:join()
  end]])
local _, _, _, sdepth = handle(sbox, spawner, { type = "x", depth = 1 })
t.ok(sdepth == 2, "a spawned task's emit carries the handler's depth + 1: " .. tostring(sdepth))
local _, _, jok, jerr = handle(sbox, spawner, { type = "x", depth = 3 })
t.ok(jok == false and tostring(jerr):match("event cause depth 4 exceeds"), "past the depth, the spawned task's emit is refused: " .. tostring(jerr))
t.is(counter("steward_policy_emit_refused_total", "spawner", "depth"), 1, "and a chain cannot restart at 0 through a task")

-- Durable timers count towards the run's limit.
local timers, tbox = policy("timers", [[
  local time = require "steward.time"
  return function()
    for i = 1, 20 do time.after("1h", { type = "emit.timer" }, { key = "t" .. i }) end
  end]])
local _, tok, terr = handle(tbox, timers)
t.ok(tok == false and tostring(terr):match("^time.after: this run would emit 11 events"), "durable timers count as emits: " .. tostring(terr))

-- A durable timer's event carries the depth of the run that set it, when it fires.
local timers_mod = require "steward.runtime.store.timers"
local later, lbox2 = policy("later", [[
  local time = require "steward.time"
  return function() return time.after("1s", { type = "emit.later" }, { key = "later-1", depth = 0 }) end]])
local _, laok, laid = handle(lbox2, later, { type = "x", depth = 2 })
t.ok(laok and laid, "a durable timer is set")
local fired = assert(timers_mod.fire_due(st, os.time() + 3600))
local got
for _, ev in ipairs(fired) do if ev.type == "emit.later" then got = ev end end
t.ok(got and got.depth == 3, "when it fires, its event has depth 3 (the policy's depth = 0 is ignored)")
t.is(got and events.get(st, got.id).depth, 3, "also in the log")
local _, ldok, lderr = handle(lbox2, later, { type = "x", depth = 3 })
t.ok(ldok == false and tostring(lderr):match("^time.after: event cause depth 4 exceeds"), "past the depth a timer is refused too")

-- Per second, per policy: all its runs together. (Each run emits 1; 1001 runs in a tight
-- loop cannot spread over more than two one-second windows, so one must be refused.)
emit.configure({ per_run = 1000, per_second = 5 })
local one, obox = policy("rated", [[
  local events = require "steward.events"
  return function() assert(events.emit({ { type = "emit.rated" } })) end]])
local refused
for _ = 1, 11 do
  local _, rok, rerr = handle(obox, one)
  if not rok then refused = rerr break end
end
t.ok(refused and refused:match("policy rated would emit 6 events in one second, over limits.emit_per_second %(5%)"),
  "past limits.emit_per_second a run fails: " .. tostring(refused))
t.is(counter("steward_policy_emit_refused_total", "rated", "per_second"), 1, "counted as a per_second refusal")
local _, other_ok = handle(lbox, function() return 1 end)
t.ok(other_ok, "another policy is not affected by it")

t.raises(function() emit.configure({ per_run = 0 }) end, "emit.configure: per_run: integer >= 1 expected", "a bad limit raises naming it")
t.raises(function() events.append(st, {}, { depth = -1 }) end, "opts.depth: integer >= 0 expected", "a bad depth raises naming it")
emit.configure(emit.DEFAULTS)

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
