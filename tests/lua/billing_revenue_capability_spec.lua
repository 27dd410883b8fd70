-- steward.billing.revenue in policies: every tenant's revenue, so behind the `billing`
-- capability (declared and granted), never a tenant policy's; steward.billing.render is not in
-- the public library at all (it runs a program, which only a `proc` grant may allow).
local t = require "steward.tap"
local sb = assert(loadfile("tests/support/capability_spec.lua"))()("rv")
local load, decide = sb.load, sb.decide

local REPORT = [[
return { %s decide = function()
  local revenue = require "steward.billing.revenue"
  local ok, rows, err = pcall(revenue.report, { tenant = "acme" })
  return { ok = ok and rows ~= nil, err = tostring(ok and err or rows), n = ok and rows and #rows or -1 }
end }]]

local p = assert(load(REPORT:format("capabilities = { billing = true },"), { ["rv.*"] = { billing = true } }))
local r = decide(p)
t.ok(r.ok and r.n == 0, "declared and granted: revenue.report answers (no invoices: no rows) " .. r.err)
p = assert(load(REPORT:format(""), { ["rv.*"] = { billing = true } }))
r = decide(p)
t.ok(not r.ok and r.err:find("capability 'billing' not granted", 1, true) ~= nil,
  "granted but not declared: refused, naming the capability (" .. r.err .. ")")
local _, err = load(REPORT:format('tenant = "acme", capabilities = { billing = true },'), { ["*"] = { billing = true } }, "acme.rv")
t.like(err, "'billing' %(never granted to a tenant's policy%)", "a tenant's policy cannot obtain it")

p = assert(load([[return { capabilities = { billing = true }, decide = function()
  local ok, err = pcall(require, "steward.billing.render")
  return { ok = ok, err = tostring(err) }
end }]], { ["rv.*"] = { billing = true } }))
r = decide(p)
t.ok(not r.ok and r.err:find("not in the public library", 1, true), "steward.billing.render is not for policies (" .. r.err .. ")")

sb.close()
t.done()
