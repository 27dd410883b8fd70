-- The setting of a domain spec that runs on a real store (tests/lua/alerting_incidents_spec.lua,
-- tests/lua/deploy_approvals_spec.lua; store_pg.t runs them on PostgreSQL through
-- STEWARD_TEST_STORE): a temporary directory, a store, the events handed to the subscribers in
-- order, and run(main), which reports a raising spec, closes the store and removes the directory.
-- Load with assert(loadfile("tests/support/domain_spec.lua"))() (not dofile: it runs processes,
-- which cannot wait inside a C function; the specs run from the repository root).
local t = require "steward.tap"
local proc = require "steward.proc"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"

local S = {}

S.dir = assert(proc.run{ cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
S.st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or ("sqlite:" .. S.dir .. "/t.db")))
S.dispatched = {}
events.subscribe(function(_, list) for _, ev in ipairs(list) do S.dispatched[#S.dispatched + 1] = ev end end)

function S.run(main)
  local ok, err = xpcall(main, debug.traceback)
  if not ok then t.fail("spec raised", err) end
  S.st:close()
  proc.run{ cmd = { "rm", "-rf", S.dir } }
  t.done()
end

return S
