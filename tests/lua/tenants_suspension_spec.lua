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
  -- steward.tenants' records decide too (a crash between the record's change and apply())
  require "steward.runtime.store.tenants"
  assert(st:migrate())
  local function rec(id, state, reason)
    assert(st:sql([[INSERT INTO tenants (id, name, plan, state, reason, contact, branding, config, limits, created, updated, version)
      VALUES ($1, $1, 'basic', $2, $3, '{}', '{}', '{}', '{}', 1, 2, 1)]], id, state, reason))
  end
  rec("initech", "suspended", "record only")
  rec("hooli", "active", nil)
  assert(st:sql("INSERT INTO tenant_suspensions (tenant, reason, since) VALUES ('hooli', 'stale', 1)"))
  rec("umbrella", "active", nil)
  assert(st:sql("INSERT INTO tenant_suspensions (tenant, reason, since) VALUES ('umbrella', 'offboarding', 1)"))
  assert(suspension.load(st))
  t.is((suspension.get("initech") or {}).reason, "record only", "a suspended record without a row is suspended, with its reason")
  t.is(suspension.get("hooli"), nil, "a row left for a tenant whose record is active again is stale")
  t.ok(suspension.get("umbrella"), "an offboarding's row holds even while the record is still active")
  t.raises(function() suspension.apply("", true) end, "id", "an empty id raises naming it")
  t.raises(function() suspension.apply("acme", "yes") end, "on", "a non-boolean on raises naming it")
  t.raises(function() suspension.apply("acme", true, 42) end, "reason", "a non-string reason raises naming it")
end

spec.run(main)
