-- Time to load and swap 100 policies (compile each into its sandbox, validate, swap), the
-- way the daemon reloads them; and to reload when one of the 100 changed. Prints key=value.
local fs = require "steward.fs"
local time = require "steward.time"
local store = require "steward.runtime.store"
local policy_reload = require "steward.runtime.policy_reload"

local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir, { parents = true }))
local function write(i, mark)
  assert(fs.write(("%s/p%03d.lua"):format(dir, i), ([[
local THRESHOLD = %d
return { name = "bench.p%03d", on = { "bench.%d.*" }, key = function(ev) return ev.tenant end,
  handle = function(ev, ctx) if (ev.data.value or 0) > THRESHOLD then ctx.log.info("over") end end,
  decide = function(input) return { over = (input.value or 0) > THRESHOLD, mark = "%s" } end }
]]):format(i, i, i, mark)))
end
for i = 1, 100 do write(i, "a") end
local st = assert(store.open("sqlite:" .. dir .. "/store.db"))
local reg = policy_reload.new({ dir = dir, store = st })
local function timed(reason)
  local t0 = time.monotonic()
  local summary = assert(reg:reload(reason))
  return (time.monotonic() - t0) * 1000, summary
end
require("steward.log").set_level("warn")
local first = timed("first")
for i = 1, 100 do write(i, "b") end
local all, s = timed("all changed")
write(50, "c")
local one = timed("one changed")
assert(s.loaded == 100)
io.write(("reload_100_first_ms=%.1f\nreload_100_all_changed_ms=%.1f\nreload_100_one_changed_ms=%.1f\n"):format(first, all, one))
st:close()
os.execute("rm -rf " .. dir)
