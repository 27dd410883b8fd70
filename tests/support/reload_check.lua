-- After tests/e2e/policy_reload.t: every acknowledged event was handled exactly once across
-- the swaps, and the decision log shows one handling, by one version, for each.
local t = require "steward.tap"
local fs = require "steward.fs"
local store = require "steward.runtime.store"
local db_url, ackfile, recordfile = arg[1], arg[2], arg[3]

local acked, n_acked = {}, 0
for id in (fs.read(ackfile) or ""):gmatch("[^\n]+") do
  if not acked[id] then n_acked = n_acked + 1 end
  acked[id] = true
end
local handled, marks = {}, {}
for id, mark in (fs.read(recordfile) or ""):gmatch("(%S+) (%S+)\n") do
  handled[id] = (handled[id] or 0) + 1
  marks[mark] = true
end
local st = assert(store.open(db_url))
local rows = assert(st:sql("SELECT event_id, COUNT(*) AS n, MIN(version) AS v1, MAX(version) AS v2, " ..
  "MIN(outcome) AS o FROM decisions WHERE policy = 'swap' GROUP BY event_id"))
local logged = {}
local versions = {}
for _, r in ipairs(rows) do
  logged[r.event_id] = r
  versions[r.v1] = true
end
st:close()

local lost, twice, not_logged, logged_twice = {}, {}, {}, {}
for id in pairs(acked) do
  if not handled[id] then lost[#lost + 1] = id elseif handled[id] > 1 then twice[#twice + 1] = id end
  local r = logged[id]
  if not r then not_logged[#not_logged + 1] = id
  elseif r.n ~= 1 or r.v1 ~= r.v2 or r.o ~= "ok" then logged_twice[#logged_twice + 1] = id end
end
local nmarks, nversions = 0, 0
for _ in pairs(marks) do nmarks = nmarks + 1 end
for _ in pairs(versions) do nversions = nversions + 1 end
t.ok(n_acked > 0, n_acked .. " events were acknowledged during the reloads")
t.is(#lost, 0, "no acknowledged event was lost by the swaps" .. (lost[1] and (" (e.g. " .. lost[1] .. ")") or ""))
t.is(#twice, 0, "no event was handled twice" .. (twice[1] and (" (e.g. " .. twice[1] .. ")") or ""))
t.is(#not_logged, 0, "every event has its handling in the decision log")
t.is(#logged_twice, 0, "each event was handled by exactly one version, once, successfully")
t.ok(nmarks > 10 and nversions > 10, ("the events were handled by %d different versions"):format(nversions))
t.done({ plan = false })
