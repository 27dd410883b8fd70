-- Used by tests/e2e/store_durability.t: reads the acknowledged ids (one a line; an unfinished
-- last line is ignored) and prints how many of them the database holds.
local native = require "steward.runtime.store.native"

local db = assert(native.open(arg[1]))
local f = assert(io.open(arg[2], "rb"))
local text = f:read("*a")
f:close()
local acked, present, missing, first_missing = 0, 0, 0, nil
for line in text:gmatch("([^\n]*)\n") do
  local id = tonumber(line)
  if id then
    acked = acked + 1
    local rows = assert(db:query("SELECT 1 AS x FROM acked WHERE id = $1", id))
    if rows[1] then present = present + 1 else
      missing = missing + 1
      first_missing = first_missing or id
    end
  end
end
local rows = assert(db:query("SELECT COUNT(*) AS n FROM acked"))
print(string.format("acked=%d present=%d missing=%d first_missing=%s rows=%d", acked, present,
  missing, tostring(first_missing), rows[1].n))
db:close()
