-- The `billing` capability in front of steward.billing.mrr, .cohorts and .churn: MRR and churn
-- signals are every tenant's money, so a policy reaches them only declared and granted; without
-- the declaration each call is refused naming the capability, and a tenant's policy never gets it.
local t = require "steward.tap"
local sb = assert(loadfile("tests/support/capability_spec.lua"))()("cr")
local load, decide = sb.load, sb.decide

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

sb.close()
t.done()
