-- The store a conformance spec runs against: STEWARD_TEST_STORE (e.g. a postgres:// URL),
-- or a fresh SQLite file. open() -> store, temp path (nil for an external store).
local store = require "steward.runtime.store"

local M = {}

function M.open()
  local url, tmp = os.getenv("STEWARD_TEST_STORE"), nil
  if not url or url == "" then
    tmp = os.tmpname()
    url = "sqlite:" .. tmp
  end
  return assert(store.open(url)), tmp
end

return M
