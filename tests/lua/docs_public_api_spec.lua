-- The public library's pages run as written: every ```lua block of docs/lua-api/kv.md, and
-- the policy of docs/lua-api/events.md loaded the way the daemon loads it (with its grant)
-- and run on an event, so the docs and the modules cannot drift apart.
local t = require "steward.tap"
local fs = require "steward.fs"
local store = require "steward.runtime.store"
local policies = require "steward.runtime.policies"
local events_log = require "steward.runtime.events"

local st, tmp = require("tests.support.test_store").open()
assert(st:migrate())
store.set_default(st)

local function blocks(path)
  local text = assert(fs.read(path))
  local out = {}
  for code in text:gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

for i, code in ipairs(blocks("docs/lua-api/kv.md")) do
  local fn = assert(loadstring(code, "=kv.md#" .. i))
  -- what the example prints becomes TAP comments
  setfenv(fn, setmetatable({ print = function(...) t.diag(...) end }, { __index = _G }))
  local ok, err = pcall(fn)
  t.ok(ok, "docs/lua-api/kv.md block " .. i .. " runs" .. (ok and "" or (": " .. tostring(err))))
end

local src = blocks("docs/lua-api/events.md")[1]
local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir, { parents = true }))
assert(fs.write(dir .. "/gate.lua", src))
local p, err = policies.load_file(dir .. "/gate.lua", "deploy.gate", { grants = { ["deploy.*"] = { ["events.emit"] = { "deploy.*" } } } })
t.ok(p, "docs/lua-api/events.md's policy loads with its grant" .. (p and "" or (": " .. tostring(err))))
local _, uerr = policies.load_file(dir .. "/gate.lua", "deploy.gate", { grants = {} })
t.like(uerr, "capabilities not granted to deploy.gate: 'events.emit'", "and not without it")
if p then
  p.handle({ id = "r1", type = "deploy.requested", data = { service = "payments" } }, {})
  local got = assert(events_log.query(st, { type = "deploy.refused" }))
  t.is(#got.events, 1, "its handler emits deploy.refused for an unapproved payments deploy")
end
os.execute("rm -rf " .. dir)
st:close()
if tmp then os.remove(tmp) end
t.done()
