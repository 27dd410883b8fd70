-- The store of the billing specs that run as plain TAP scripts: a temporary directory, the store
-- STEWARD_TEST_STORE names (billing_subscriptions_pg.t points it at PostgreSQL) or a SQLite file
-- in that directory, migrated and made the default one; warnings silenced (every refusal the
-- specs provoke is logged as one).
--   local bs = assert(loadfile("tests/support/billing_store.lua"))()
--   local st = bs.st
--   ...
--   bs.close()
local fs = require "steward.fs"
local store = require "steward.runtime.store"

require("steward.log").set_level("error")
local S = {}
S.dir = os.tmpname()
os.remove(S.dir)
assert(fs.mkdir(S.dir, { parents = true }))
S.url = os.getenv("STEWARD_TEST_STORE") or ("sqlite:" .. S.dir .. "/s.db")
S.st = assert(store.open(S.url))
assert(S.st:migrate())
store.set_default(S.st)

-- Closes st (the spec's store: it may have reopened it) or the one opened here, and removes
-- the directory.
function S.close(st)
  st = st or S.st
  st:close()
  os.execute("rm -rf " .. S.dir)
end

return S
