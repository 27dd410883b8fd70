-- The sandbox the capability specs share: a throw-away store made the default one, and a
-- loader that writes each policy source to its own file and loads it with the grants given,
-- so a spec states only the policies it loads and what it expects of them. Policies get the
-- names <prefix>.p1, <prefix>.p2, ... in load order (the specs assert on those names).
--   local sb = assert(loadfile("tests/support/capability_spec.lua"))()("bl")
--   local p = assert(sb.load(src, { ["bl.*"] = { billing = true } }))
--   local r = sb.decide(p, input)
--   sb.close()
local policies = require "steward.runtime.policies"
local fs = require "steward.fs"
local store = require "steward.runtime.store"

return function(prefix)
  require("steward.log").set_level("error") -- every refusal is logged as a warning
  local dir = os.tmpname()
  os.remove(dir)
  assert(fs.mkdir(dir, { parents = true }))
  local st = assert(store.open("sqlite:" .. dir .. "/s.db"))
  assert(st:migrate())
  store.set_default(st)

  local sb = { dir = dir, store = st }
  local n = 0
  -- The policy, or nil and the loader's error (a refused grant is an error, not a raise).
  function sb.load(src, grants, name)
    n = n + 1
    local path = dir .. "/p" .. n .. ".lua"
    assert(fs.write(path, src))
    return policies.load_file(path, name or (prefix .. ".p" .. n), { grants = grants or {} })
  end
  function sb.decide(p, input) return p.decide(input or {}, { config = p.config }) end
  function sb.close()
    st:close()
    os.execute("rm -rf " .. dir)
  end
  return sb
end
