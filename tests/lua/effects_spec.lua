-- steward.runtime.effects: a policy's side effects (HTTP, mail, durable timers, events) are recorded
-- for the run that caused them — only while a run records, only for its own task.
local t = require "steward.tap"
local sandbox = require "steward.runtime.policy.sandbox"
local guard = require "steward.runtime.guard"
local task = require "steward.task"
local effects = require "steward.runtime.effects"
local store = require "steward.runtime.store"

local st, tmp = require("tests.support.test_store").open()
store.set_default(st)

local env, box = sandbox.new_env({ name = "fx", log = function() end })
box.caps = { http = true } -- what the loader sets once the policy's grants are resolved
local fn = assert(sandbox.compile(env, [[
  local http = require "steward.http"
  local time = require "steward.time"
  local events = require "steward.events"
  return function()
    http.request{ url = "http://127.0.0.1:1/down", timeout = 1 }
    time.after("10m", { type = "fx.later" }, { key = "k1" })
    time.after(0.001, function() end)
    events.emit({ type = "fx.emitted" })
    return "done"
  end
]], "=fx"))
local _, policy_fn = guard.run({ cpu = 2 }, fn)

local function recorded_run()
  local h = task.spawn(function()
    effects.begin()
    local ok, r = guard.run({ cpu = 2 }, policy_fn)
    return effects.finish(), ok, r
  end)
  local _, list = h:join()
  return list
end

local list = recorded_run()
t.is(#list, 3, "three side effects recorded (a callback timer is not one)")
t.ok(list[1].kind == "http" and list[1].url == "http://127.0.0.1:1/down" and list[1].method == "GET"
  and list[1].error and not list[1].status, "an HTTP request: method, url, and its failure")
t.ok(list[2].kind == "timer" and list[2].event == "fx.later" and list[2].key == "k1" and list[2].after == "10m",
  "a durable timer: event type, key, delay")
t.ok(list[3].kind == "event" and list[3].type == "fx.emitted", "an emitted event")

local h = task.spawn(function() return guard.run({ cpu = 2 }, policy_fn) end)
h:join()
local other = task.spawn(function() effects.begin(); return effects.finish() end)
local _, empty = other:join()
t.is(#empty, 0, "a task that did not begin() records nothing (the next run starts empty)")

t.is(effects.finish(), nil, "outside a task there is nothing to finish")
effects.record("http", {}) -- outside a recording run: ignored, no error
t.pass("recording outside a run is a no-op")

local many = task.spawn(function()
  effects.begin()
  for _ = 1, 150 do effects.record("http", { url = "x" }) end
  return effects.finish()
end)
local _, capped = many:join()
t.ok(#capped == 101 and capped[101].kind == "truncated" and capped[101].count == 50,
  "a run keeps at most 100 entries; a last one counts the rest")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
