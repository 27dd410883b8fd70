-- docs/archive.md's example, run by tests/e2e/archive_docs.t:
--   build/steward script docs/examples/archive.lua [DIR]
-- A store in a scratch directory, 1000 events from "40 days ago" and 10 from now, archived
-- with older_than = "30d"; then replay from seq 1 reads both parts, and verify checks the files.
local store = require "steward.runtime.store"
local log = require "steward.runtime.events"
local events = require "steward.events"
local archive = require "steward.archive"
local time = require "steward.time"
local fs = require "steward.fs"

local dir = arg[1] or ("/tmp/steward-archive-example-" .. os.time())
assert(fs.mkdir(dir, { parents = true }))
local st = assert(store.open("sqlite:" .. dir .. "/steward.db"))
store.set_default(st)
archive.configure({ dir = dir .. "/archive" }) -- the daemon does this with <var_dir>/archive

local old = {}
for i = 1, 1000 do old[i] = { type = "usage.recorded", tenant = "acme", data = { units = i % 7 } } end
assert(log.append(st, old, { now = time.now() - 40 * 86400 })) -- received 40 days ago
local new = {}
for i = 1, 10 do new[i] = { type = "usage.recorded", tenant = "acme", data = { units = 1 } } end
assert(log.append(st, new))

local rep = assert(archive.run({ older_than = "30d" }))
print(("archived %d events into %d file(s); %d left in the store"):format(rep.events, #rep.files, log.count(st)))
for _, f in ipairs(rep.files) do
  print(("  %s: %d records, %d bytes (%d bytes of JSON), sha256 %s"):format(f.file, f.count, f.bytes, f.raw,
    f.sha256:sub(1, 12)))
end

local n, last = 0, 0
for ev in events.replay({ from_seq = 1 }) do
  assert(ev.seq == last + 1, "seq continuous")
  n, last = n + 1, ev.seq
end
print(("replay from seq 1: %d events, seq 1 to %d"):format(n, last))
print("verify: " .. (archive.verify().ok and "ok" or "FAILED"))
st:close()
