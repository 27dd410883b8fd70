-- After the crash cycles: every acknowledged id is in the event log exactly once, and every
-- acknowledged event was handled at least once. Prints TAP lines (no plan).
local t = require "steward.tap"
local fs = require "steward.fs"
local store = require "steward.runtime.store"
local db_url, ackfile, recordfile = arg[1], arg[2], arg[3]

local acked = {}
local n_acked = 0
for id in (fs.read(ackfile) or ""):gmatch("[^\n]+") do
  if not acked[id] then n_acked = n_acked + 1 end
  acked[id] = true
end
local handled = {}
for id in (fs.read(recordfile) or ""):gmatch("[^\n]+") do handled[id] = true end

local st = assert(store.open(db_url))
local rows = assert(st:sql("SELECT id, COUNT(*) AS n FROM events GROUP BY id"))
local in_log = {}
for _, r in ipairs(rows) do in_log[r.id] = r.n end
st:close()

local missing, twice, unhandled = {}, {}, {}
for id in pairs(acked) do
  if not in_log[id] then missing[#missing + 1] = id
  elseif in_log[id] ~= 1 then twice[#twice + 1] = id end
  if not handled[id] then unhandled[#unhandled + 1] = id end
end
t.ok(n_acked > 0, n_acked .. " events were acknowledged across the cycles")
t.is(#missing, 0, "every acknowledged event is in the log" .. (#missing > 0 and (" (missing e.g. " .. missing[1] .. ")") or ""))
t.is(#twice, 0, "no event is in the log twice")
t.is(#unhandled, 0, "every acknowledged event was handled at least once" ..
  (#unhandled > 0 and (" (e.g. " .. unhandled[1] .. ")") or ""))
t.done({ plan = false })
