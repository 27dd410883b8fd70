-- steward.tenants.suspension on a real store: apply suspends and resumes (durably: a fresh load
-- reads the same set), a second suspension updates the reason, the refusal's message names the
-- tenant and the reason, the auth hook refuses only a suspended tenant's tokens, and misuse
-- raises naming the argument.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local suspension = require "steward.tenants.suspension"
local auth = require "steward.runtime.auth"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st
store.set_default(st)

local function main()
  t.ok(not suspension.any(), "nothing suspended at first")
  assert(suspension.apply("acme", true, "invoice 42 unpaid"))
  t.ok(suspension.any(), "any() after a suspension")
  t.is(suspension.get("acme").reason, "invoice 42 unpaid", "get: the reason")
  t.is(suspension.get("globex"), nil, "another tenant is not suspended")
  t.is(suspension.message("acme", suspension.get("acme")), "tenant acme is suspended: invoice 42 unpaid", "the message")
  assert(suspension.apply("acme", true, "still unpaid"))
  t.is(suspension.get("acme").reason, "still unpaid", "a second suspension updates the reason")
  t.is(auth.suspended({ role = "viewer", tenant = "acme" }), "tenant acme is suspended: still unpaid", "auth: a suspended tenant's token")
  t.is(auth.suspended({ role = "viewer", tenant = "globex" }), nil, "auth: another tenant's token")
  t.is(auth.suspended({ role = "admin" }), nil, "auth: a token without a tenant")
  assert(suspension.load(st))
  t.ok(suspension.get("acme"), "durable: a fresh load from the store still has it")
  assert(suspension.apply("acme", false))
  t.ok(not suspension.get("acme") and not suspension.any(), "resumed")
  assert(suspension.apply("acme", false))
  t.pass("resuming a tenant that is not suspended is a no-op")
  t.raises(function() suspension.apply("", true) end, "id", "an empty id raises naming it")
  t.raises(function() suspension.apply("acme", "yes") end, "on", "a non-boolean on raises naming it")
  t.raises(function() suspension.apply("acme", true, 42) end, "reason", "a non-string reason raises naming it")
end

spec.run(main)
