-- The `success` capability: steward.success's tickets, scores and milestones are every
-- tenant's, so a policy reaches them only with the operator's grant, and a tenant's policy
-- never, whatever the grant says.
local t = require "steward.tap"
local sb = assert(loadfile("tests/support/capability_spec.lua"))()("cs")
local load, decide = sb.load, sb.decide

local READ = [[
return { %s decide = function()
  local tickets = require "steward.success.tickets"
  local ok, err = pcall(tickets.list, {})
  return { ok = ok, err = tostring(err) }
end }]]

local _, err = load(READ:format('capabilities = { success = true },'), {})
t.like(err, "capabilities not granted to cs.p1: 'success'", "declared without a grant: the policy does not load")

local p = assert(load(READ:format('capabilities = { success = true },'), { ["cs.*"] = { success = true } }))
local r = decide(p)
t.ok(r.ok, "declared and granted: it reads the tickets (" .. r.err .. ")")

p = assert(load(READ:format(''), { ["cs.*"] = { success = true } }))
r = decide(p)
t.ok(not r.ok and r.err:find("capability 'success' not granted", 1, true) ~= nil,
  "granted but not declared: the call is refused, naming the capability (" .. r.err .. ")")

_, err = load(READ:format('tenant = "acme", capabilities = { success = true },'), { ["*"] = { success = true } }, "acme.cs")
t.like(err, "'success' %(never granted to a tenant's policy%)", "a tenant's policy cannot obtain it even when * is granted it")

sb.close()
t.done()
