-- A policy's `schedule` field: validation, the policy.schedule pattern, and the daemon's durable
-- schedule rows kept in step with the loaded set (steward.runtime.daemon.policy_schedules).
local t = require "steward.tap"
local store = require "steward.runtime.store"
local policies = require "steward.runtime.policies"
local ps = require "steward.runtime.daemon.policy_schedules"
local schedules = require "steward.runtime.store.schedules"
local st = assert(store.open("sqlite:" .. os.tmpname()))
local p = assert(policies.check({ name = "x", schedule = "*/5 * * * *", handle = function() end }, "x.lua", "x"))
t.ok(p.matches("policy.schedule"), "a scheduled policy matches policy.schedule")
local _, err = policies.check({ name = "y", schedule = "61 * * * *", handle = function() end }, "y.lua", "y")
t.like(err, "schedule: .*minute", "a bad cron expression is named")
_, err = policies.check({ name = "y", schedule = "* * * * *" }, "y.lua", "y")
t.like(err, "handle", "a schedule needs handle")
assert(ps.sync(st, { x = p }))
local rows = schedules.list(st)
t.is(#rows, 1, "one schedule"); t.is(rows[1].name, "policy:x", "named policy:x")
t.is(rows[1].event.data.policy, "x", "its event names the policy")
assert(ps.sync(st, {}))
t.is(#schedules.list(st), 0, "removed with the policy")
t.done()
