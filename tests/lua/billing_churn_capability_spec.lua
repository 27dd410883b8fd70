-- The `billing` capability in front of steward.billing.mrr, .cohorts and .churn: MRR and churn
-- signals are every tenant's money, so a policy reaches them only declared and granted; without
-- the declaration each call is refused naming the capability, and a tenant's policy never gets it.
local t = require "steward.tap"
local policies = require "steward.runtime.policies"
local fs = require "steward.fs"
local store = require "steward.runtime.store"
require("steward.log").set_level("error")

local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir, { parents = true }))
local st = assert(store.open("sqlite:" .. dir .. "/s.db"))
assert(st:migrate())
store.set_default(st)

local n = 0
local function load(src, grants, name)
  n = n + 1
  local path = dir .. "/p" .. n .. ".lua"
  assert(fs.write(path, src))
  return policies.load_file(path, name or ("cr.p" .. n), { grants = grants or {} })
end
local function decide(p) return p.decide({}, { config = p.config }) end

local CALL = [[
return { %s decide = function()
  local mod = require "steward.billing.%s"
  local ok, err = pcall(mod.%s, %s)
  return { ok = ok, err = tostring(err) }
end }]]

local CALLS = {
  { "mrr", "compute", "{}" }, { "cohorts", "compute", "{}" }, { "churn", "signals", "{}" },
  { "churn", "signal", '"acme", "downgrade"' },
}
for _, c in ipairs(CALLS) do
  local p = assert(load(CALL:format("capabilities = { billing = true },", c[1], c[2], c[3]), { ["cr.*"] = { billing = true } }))
  local r = decide(p)
  t.ok(r.ok, "declared and granted: steward.billing." .. c[1] .. "." .. c[2] .. " answers (" .. r.err .. ")")
  p = assert(load(CALL:format("", c[1], c[2], c[3]), { ["cr.*"] = { billing = true } }))
  r = decide(p)
  t.ok(not r.ok and r.err:find("capability 'billing' not granted", 1, true) ~= nil,
    "granted but not declared: steward.billing." .. c[1] .. "." .. c[2] .. " is refused, naming the capability")
end

local _, err = load(CALL:format('tenant = "acme", capabilities = { billing = true },', "churn", "signals", "{}"),
  { ["*"] = { billing = true } }, "acme.cr")
t.like(err, "'billing' %(never granted to a tenant's policy%)", "a tenant's policy cannot obtain it even when * is granted it")

st:close()
os.execute("rm -rf " .. dir)
t.done()
