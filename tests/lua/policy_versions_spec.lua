-- gh issue 13 §2: policy_versions is bounded. A policy reloaded keep + 5 times keeps its newest
-- `keep` versions; a version a decision in the decision log names survives past that until
-- the decision is purged; the running version is never pruned. Store conformance suite.
local t = require "steward.tap"
local fs = require "steward.fs"
local policy_reload = require "steward.runtime.policy_reload"
local decisions = require "steward.runtime.store.decisions"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir))
local name = "keep-" .. crypto.hex(crypto.random(6))
local KEEP = 3

local reg = policy_reload.new({ dir = dir, store = st, keep_versions = KEEP })

-- write(i) -> the version the registry loads for the i-th content of the policy.
local function load(i)
  assert(fs.write_atomic(dir .. "/p.lua", string.format("return { name = %q, on = { 'x.*' }, " ..
    "handle = function() return %d end }", name, i)))
  assert(reg:reload("test"))
  return reg.set[name].version
end

local function stored()
  local rows = assert(st:sql("SELECT version FROM policy_versions WHERE name = $1", name))
  local set = {}
  for _, r in ipairs(rows) do set[r.version] = true end
  return #rows, set
end

local versions = {}
versions[1] = load(1)
-- A decision names the first version: it must outlive retention.
assert(decisions.record(st, { policy = name, version = versions[1], outcome = "ok", time = 1000 }))
for i = 2, KEEP + 5 do versions[i] = load(i) end

local n, set = stored()
t.is(n, KEEP + 1, "after " .. (KEEP + 5) .. " loads: the newest " .. KEEP .. " versions plus the one a decision names")
t.ok(set[versions[1]], "the version a retained decision names survives")
local newest = true
for i = KEEP + 5 - KEEP + 1, KEEP + 5 do newest = newest and set[versions[i]] == true end
t.ok(newest, "the newest versions are kept")
t.ok(not set[versions[2]] and not set[versions[KEEP + 5 - KEEP]], "older versions no decision names are gone")

-- Rolled back to the version only the decision keeps, then the decision purged: it runs, so
-- retention keeps it.
t.is(reg:rollback(name, versions[1]), versions[1], "rollback to the old version a decision kept")
assert(decisions.purge(st, { before = 2000 }))
assert(reg:prune_versions())
n, set = stored()
t.ok(set[versions[1]], "the running version is kept though no decision names it any more")

-- Once it no longer runs, the next retention pass lets it go too.
versions[#versions + 1] = load(100)
n, set = stored()
t.is(n, KEEP, "after the next load, only the newest versions remain")
t.ok(not set[versions[1]], "the version nothing keeps any more is gone")

-- Another policy's versions are not counted against this one.
assert(fs.write_atomic(dir .. "/other.lua", "return { name = 'other-" .. name .. "', on = { 'y.*' }, handle = function() end }"))
assert(reg:reload("test"))
n = stored()
t.is(n, KEEP, "a second policy leaves the first one's versions alone")

assert(fs.remove(dir, { recursive = true }))
st:close()
if tmp then os.remove(tmp); os.remove(tmp .. "-wal"); os.remove(tmp .. "-shm") end
t.done()
