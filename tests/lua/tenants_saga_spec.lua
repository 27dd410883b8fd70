-- steward.tenants.saga on a real store and a fake clock: steps run in order once each, a failure
-- compensates the done steps in reverse (the failed step's own first), a crash between a step's
-- run and its record resumes with that step run again (idempotent) and the done ones skipped, a
-- step that is not idempotent is never run twice, a failing compensation resumes compensating,
-- and a leased saga belongs to its runner until the lease runs out.
local t = require "steward.tap"
local time = require "steward.time"
local saga = require "steward.tenants.saga"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st

local clock = 1790000000
local real_now = time.now
time.now = function() return clock end

-- A world the steps change: created things, and every call in order.
local world, calls = {}, {}
local fail_undo = {}
local function step(name, opts)
  opts = opts or {}
  return {
    name = name, idempotent = opts.idempotent,
    run = function(ctx)
      calls[#calls + 1] = "run " .. name
      if opts.fail then return nil, name .. " broke" end
      world[ctx.subject .. "/" .. name] = true -- named after the subject: a second run changes nothing
      return { made = ctx.subject .. "/" .. name }
    end,
    undo = function(ctx, result)
      calls[#calls + 1] = "undo " .. name
      if fail_undo[name] then fail_undo[name] = fail_undo[name] - 1; if fail_undo[name] >= 0 then return nil, "undo refused" end end
      world[ctx.subject .. "/" .. name] = nil
      return true
    end,
  }
end

local finished = {}
local function define(kind, steps)
  return saga.define{ kind = kind, steps = steps,
    on_done = function(ctx) finished[ctx.subject] = "done"; return true end,
    on_failed = function(ctx, s, err) finished[ctx.subject] = "failed at " .. s .. ": " .. tostring(err); return true end }
end

local function start(kind, id, subject)
  assert(st.db:batch({ saga.insert_statement(kind, id, subject, { x = 1 }, clock) }))
end

local function count(list, what)
  local n = 0
  for _, c in ipairs(list) do if c == what then n = n + 1 end end
  return n
end

local function main()
  define("ok3", { step("a"), step("b"), step("c") })
  start("ok3", "s1", "t1")
  t.is(saga.run(st, "s1"), "done", "a saga whose steps succeed ends done")
  t.is(table.concat(calls, ","), "run a,run b,run c", "... each step ran once, in order")
  t.is(finished.t1, "done", "... and on_done was called")
  local s = assert(saga.get(st, "s1"))
  t.is(s.state, "done", "the stored saga is done")
  t.is(s.steps[2].status .. s.steps[2].runs .. s.steps[2].result.made, "done1t1/b", "each step is stored done with its result")
  t.is(saga.run(st, "s1"), false, "a finished saga is not run again")

  -- A failure at each step in turn: the done steps (and the failed one) are undone, last first.
  for i, name in ipairs({ "a", "b", "c" }) do
    calls, world = {}, {}
    local steps = { step("a"), step("b"), step("c") }
    steps[i] = step(name, { fail = true })
    define("fail" .. name, steps)
    start("fail" .. name, "f" .. name, "tf" .. name)
    t.is(saga.run(st, "f" .. name), "failed", "a failure at step " .. name .. " ends failed")
    local want = {}
    for j = 1, i do want[#want + 1] = "run " .. steps[j].name end
    for j = i, 1, -1 do want[#want + 1] = "undo " .. steps[j].name end
    t.is(table.concat(calls, ","), table.concat(want, ","), "... the compensations ran in reverse, the failed step's first")
    t.is(next(world), nil, "... and nothing it made is left")
    local f = assert(saga.get(st, "f" .. name))
    t.is(f.failed_step, name, "... the saga names the step that failed")
    t.like(finished["tf" .. name], "^failed at " .. name .. ": " .. name .. ": " .. name .. " broke", "... on_failed heard the step and the error")
  end

  -- A crash after step b ran, before it was recorded done: b runs again, a does not.
  calls, world = {}, {}
  define("crash", { step("a"), step("b"), step("c") })
  start("crash", "c1", "tc")
  saga.inject.crash = "b"
  saga.inject.on_crash = function(name, phase) error("killed at " .. name .. " " .. phase, 0) end
  local ok, err = pcall(saga.run, st, "c1")
  t.ok(not ok and err == "killed at b after", "the injected crash stops the run after step b")
  saga.inject.crash = nil
  local c = assert(saga.get(st, "c1"))
  t.is(c.state .. "," .. c.steps[1].status .. "," .. c.steps[2].status, "running,done,started",
    "the store says: a done, b started")
  saga.OWNER = "saga-restarted" -- what the daemon started again is another runner
  t.is(saga.run(st, "c1"), false, "another runner cannot take it while the lease holds")
  t.is(#assert(saga.pending(st)), 0, "... nor is it pending")
  clock = clock + saga.LEASE + 1
  t.is(#assert(saga.pending(st)), 1, "once the lease ran out it is pending")
  t.is(saga.run(st, "c1"), "done", "resumed, it ends done")
  t.is(count(calls, "run a") .. count(calls, "run b") .. count(calls, "run c"), "121",
    "a ran once, b again (idempotent), c once")
  t.is(world["tc/b"], true, "... and b's thing exists once")
  t.is(assert(saga.get(st, "c1")).steps[2].runs, 2, "b's row counts its two runs")

  -- The same crash before the step ran, and with takeover (a lone daemon's start-up).
  calls = {}
  start("crash", "c2", "tc2")
  saga.inject.crash = "c:before"
  ok = pcall(saga.run, st, "c2")
  saga.inject.crash = nil
  t.ok(not ok, "a crash before step c runs stops the run")
  t.is(#assert(saga.pending(st)), 1, "its own runner, restarted under the same name, sees it at once")
  saga.OWNER = "saga-third"
  t.is(#assert(saga.pending(st)), 0, "another runner does not, while the lease holds")
  t.is(#assert(saga.pending(st, { takeover = true })), 1, "takeover sees the saga at once")
  t.is(saga.run(st, "c2", { takeover = true }), "done", "and finishes it")
  t.is(count(calls, "run c"), 1, "c ran once")

  -- A step that is not idempotent is never run twice: the saga compensates instead.
  calls, world = {}, {}
  define("once", { step("a"), step("pay", { idempotent = false }), step("c") })
  start("once", "o1", "to")
  saga.inject.crash = "pay"
  pcall(saga.run, st, "o1")
  saga.inject.crash = nil
  t.is(saga.run(st, "o1", { takeover = true }), "failed", "a non-idempotent step found started fails the saga")
  t.is(count(calls, "run pay"), 1, "... it ran once")
  t.is(table.concat(calls, ",", 3), "undo pay,undo a", "... and what it and a did is undone")
  t.like(assert(saga.get(st, "o1")).error, "not idempotent", "... with the reason stored")

  -- A compensation that fails leaves the saga compensating; the next run finishes it.
  calls, world = {}, {}
  define("stuck", { step("a"), step("b"), step("c", { fail = true }) })
  fail_undo.a = 1
  start("stuck", "u1", "tu")
  local res
  res, err = saga.run(st, "u1")
  t.ok(res == nil and tostring(err):match("undo a: undo refused"), "a failing compensation stops the run with its error")
  t.is(assert(saga.get(st, "u1")).state, "compensating", "... the saga stays compensating")
  t.is(saga.run(st, "u1"), "failed", "the next run finishes compensating")
  t.is(count(calls, "undo b"), 1, "... b was undone once")
  t.is(next(world), nil, "... nothing is left")

  -- Misuse
  t.raises(function() saga.define{ kind = "x", steps = {} } end, "steps", "a saga without steps raises")
  t.raises(function() saga.define{ kind = "x", steps = { { name = "a" } } } end, "steps%[1%]%.run", "a step without run raises naming it")
  t.raises(function() saga.define{ kind = "x", steps = { step("a"), step("a") } } end, "steps%[2%]%.name", "duplicate step names raise")
  time.now = real_now
end

spec.run(main)
