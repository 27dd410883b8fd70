-- steward.kv: key-value namespaces in the daemon's store, for policies and scripts (JSON
-- values, a version per key for compare-and-set, optional expiry: docs/lua-api/kv.md).
-- A namespace object holds its store in a closure, never in a field: what a policy is
-- handed must not lead to the store's raw SQL (gh-12: a policy once minted an admin token
-- that way). A tenant's policy gets namespaces under its tenant (the sandbox prefixes them).
local store = require "steward.runtime.store"
local kvs = require "steward.runtime.store.kv"

local type, error, setmetatable = type, error, setmetatable

local M = {}

local NS = { __metatable = "kv namespace" }
NS.__index = NS

-- ns(name [, store]) -> namespace with get/put/delete/list/purge_expired (the store is the
-- daemon's, or a script's steward.runtime.store.default()).
function M.ns(name, st)
  if type(name) ~= "string" or name == "" then error("kv.ns: name: non-empty string expected", 2) end
  st = st or store.default()
  if not st then error("kv.ns: no store: inside the daemon or a spec there is one; a script opens one first", 2) end
  local inner = kvs.ns(st, name)
  local o = setmetatable({ name = name }, NS)
  -- Methods close over `inner`; self is ignored, so a view or copy of o works the same.
  function o.get(_, key, opts) return inner:get(key, opts) end
  function o.put(_, key, value, opts) return inner:put(key, value, opts) end
  function o.delete(_, key, opts) return inner:delete(key, opts) end
  function o.list(_, opts) return inner:list(opts) end
  function o.purge_expired(_, opts) return inner:purge_expired(opts) end
  return o
end

NS.__tostring = function(o) return "kv namespace " .. o.name end

return M
