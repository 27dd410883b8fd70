-- The `billing` capability: subscriptions, usage, plans, metrics, coupons and wallets are every
-- tenant's money, so a policy reaches them only with the operator's grant, and a tenant's
-- policy never, whatever the grant says; steward.billing (the table of every part, loaded with
-- the unguarded require) is not public to policies at all.
local t = require "steward.tap"
local sb = assert(loadfile("tests/support/capability_spec.lua"))()("bl")
local load, decide = sb.load, sb.decide

local READ = [[
return { %s decide = function()
  local mod = require "steward.billing.%s"
  local ok, err = pcall(mod.%s, {})
  return { ok = ok, err = tostring(err) }
end }]]

local _, err = load(READ:format('capabilities = { billing = true },', "subscriptions", "list"), {})
t.like(err, "capabilities not granted to bl.p1: 'billing'", "declared without a grant: the policy does not load")

for _, m in ipairs({ { "subscriptions", "list" }, { "usage", "count" }, { "plans", "list" }, { "metrics", "list" },
                     { "coupons", "list" }, { "wallets", "list" } }) do
  local p = assert(load(READ:format('capabilities = { billing = true },', m[1], m[2]), { ["bl.*"] = { billing = true } }))
  local r = decide(p)
  t.ok(r.ok or not r.err:find("not granted", 1, true), "declared and granted: steward.billing." .. m[1] .. " answers (" .. r.err .. ")")
  p = assert(load(READ:format('', m[1], m[2]), { ["bl.*"] = { billing = true } }))
  r = decide(p)
  t.ok(not r.ok and r.err:find("capability 'billing' not granted", 1, true) ~= nil,
    "granted but not declared: steward.billing." .. m[1] .. " is refused, naming the capability")
end

_, err = load(READ:format('tenant = "acme", capabilities = { billing = true },', "usage", "count"), { ["*"] = { billing = true } },
  "acme.bl")
t.like(err, "'billing' %(never granted to a tenant's policy%)", "a tenant's policy cannot obtain it even when * is granted it")

local p = assert(load([[return { capabilities = { billing = true }, decide = function()
  local ok, err = pcall(require, "steward.billing")
  return { ok = ok, err = tostring(err) }
end }]], { ["bl.*"] = { billing = true } }))
local r = decide(p)
t.ok(not r.ok and r.err:find("not in the public library", 1, true), "steward.billing itself is not for policies (" .. r.err .. ")")

sb.close()
t.done()
