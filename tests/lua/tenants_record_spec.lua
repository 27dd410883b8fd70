-- steward.tenants on a real store (no PostgreSQL: that step is skipped): a refused record names
-- its field, create stores a requested tenant and its saga takes it to active with the tenant.*
-- events, the admin token works only once provisioned and its secret is in no event, update is
-- optimistic by version, suspend/resume/offboard move the state and refuse the wrong one, and
-- state(), limits() and the quota fallback read the tenant's plan.
local t = require "steward.tap"
local time = require "steward.time"
local events = require "steward.runtime.events"
local notify = require "steward.notify"
local tenants = require "steward.tenants"
local tconfig = require "steward.tenants.config"
local record = require "steward.tenants.record"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st
tenants.use(st)
notify.set_store(st)

local function wait_state(id, want)
  for _ = 1, 200 do
    local r = tenants.get(id)
    if r and r.state == want then return r end
    time.sleep(0.01)
  end
  return tenants.get(id)
end

local function types_of(id)
  local out = {}
  -- (the tenant's other events, such as the welcome mail's notification.sent, are not these)
  for _, ev in ipairs(assert(events.query(st, { tenant = id, type = "tenant.*", limit = 100 })).events) do
    out[#out + 1] = ev.type
  end
  return table.concat(out, ",")
end

local function main()
  assert(tconfig.check({ plans = { basic = {}, gold = { rate = { ingest = 1000 }, quotas = { instances = 4, memory = "1GiB" } } },
    default_plan = "basic" }))
  tconfig.configure({ plans = { basic = {}, gold = { rate = { ingest = 1000 }, quotas = { instances = 4, memory = "1GiB" } } },
    default_plan = "basic" })

  -- refusals name the field
  local function refused(spec_, field)
    local ok, f = record.check_new(spec_)
    return ok == nil and f == field
  end
  t.ok(refused({ name = "x" }, "id"), "a missing id is refused naming id")
  t.ok(refused({ id = "Acme", name = "x" }, "id"), "an id with capitals is refused")
  t.ok(refused({ id = string.rep("a", 64), name = "x" }, "id"), "an id over 63 bytes is refused")
  t.ok(refused({ id = "a" }, "name"), "a missing name is refused")
  t.ok(refused({ id = "a", name = "A", plan = "platinum" }, "plan"), "an unknown plan is refused")
  t.ok(refused({ id = "a", name = "A", contact = { email = "nope" } }, "contact.email"), "a bad email is refused")
  t.ok(refused({ id = "a", name = "A", branding = { color = "red" } }, "branding.color"), "a bad colour is refused")
  t.ok(refused({ id = "a", name = "A", branding = { logo_url = "ftp://x" } }, "branding.logo_url"), "a bad logo URL is refused")
  t.ok(refused({ id = "a", name = "A", limits = { rate = { ingest = -1 } } }, "limits.rate.ingest"), "a negative rate is refused")
  t.ok(refused({ id = "a", name = "A", colour = 1 }, "colour"), "an unknown field is refused naming it")
  t.raises(function() tenants.create({ id = "a" }) end, "tenants.create: name: required", "create raises naming the field")

  -- create → requested → provisioning → active
  local r = assert(tenants.create({ id = "acme", name = "Acme", plan = "gold", contact = { email = "ops@acme.test" },
    branding = { color = "#112233" } }))
  t.is(r.state, "requested", "create answers the record in state requested")
  t.like(r.admin_token.token, "^stw_", "... with the admin token's secret, shown once")
  local shown = r.admin_token.token
  t.is(select(2, tenants.create({ id = "acme", name = "Again" })), "exists", "a second create of the id is refused")
  r = wait_state("acme", "active")
  t.is(r and r.state, "active", "the saga takes the tenant to active")
  t.is(types_of("acme"), "tenant.requested,tenant.provisioning,tenant.provisioned", "the tenant.* events, in order")
  local logged = require("steward.json").encode(assert(events.query(st, { tenant = "acme", limit = 100 })))
  t.ok(not logged:find(shown, 1, true),
    "no event carries the token's secret")
  local row = assert(st.db:query("SELECT role, tenant FROM api_tokens WHERE id = 'tenant-acme-admin'"))[1]
  t.is(row and (row.role .. "/" .. row.tenant), "admin/acme", "the tenant's admin token is stored (hashed)")
  t.is(tenants.state("acme"), "active", "state() answers from the cache")
  t.is(tenants.state("nobody"), nil, "state() of an unknown tenant is nil")
  local lim = assert(tenants.limits("acme"))
  t.is(lim.rate.ingest .. "/" .. lim.rate.burst .. "/" .. lim.budgets.cpu, "1000/200/50ms", "limits(): the plan over the defaults")
  t.is(require("steward.scaling.quota").tenant_plan_quotas("acme").memory, 1024 ^ 3, "the quota fallback reads the plan's quotas")
  local kvrow = assert(require("steward.runtime.store.kv").ns(st, "tenants"):get("acme/limits"))
  t.is(kvrow.quotas.instances, 4, "the provisioned limits are recorded")

  -- another process's change reaches the cache at the next (incremental) refresh
  assert(st.db:batch({ { "UPDATE tenants SET state = 'suspended', updated = $1 WHERE id = 'acme'", time.now() } }))
  t.is(tenants.state("acme"), "active", "a change by another process is not seen before the cache is read again")
  assert(record.refresh(st, true))
  t.is(tenants.state("acme"), "suspended", "... and is after the next refresh of the changed rows")
  assert(st.db:batch({ { "UPDATE tenants SET state = 'active' WHERE id = 'acme'" } }))
  assert(record.refresh(st))

  -- update: optimistic by version
  local v = r.version
  local u = assert(tenants.update("acme", { name = "Acme Corp", version = v, limits = { rate = { ingest = 5 } } }))
  t.is(u.version, v + 1, "an update with the current version applies")
  t.is(tenants.limits("acme").rate.ingest, 5, "... the record's override wins over the plan")
  local no, err, cur = tenants.update("acme", { name = "Stale", version = v })
  t.ok(no == nil and err == "conflict" and cur.version == v + 1, "a stale version is a conflict naming the current one")
  t.raises(function() tenants.update("acme", { state = "active" }) end, "state", "the state cannot be patched")
  t.is(select(2, tenants.update("ghost", { name = "x" })), "not found", "an unknown tenant is not found")

  -- lifecycle
  t.is(assert(tenants.suspend("acme", "dunning")).state, "suspended", "suspend: active → suspended")
  t.like(select(2, tenants.suspend("acme")), "^invalid state: suspended", "a second suspend is refused naming the state")
  t.is(assert(tenants.resume("acme")).state, "active", "resume: suspended → active")
  t.like(select(2, tenants.resume("acme")), "^invalid state: active", "resume of an active tenant is refused")
  t.is(assert(tenants.offboard("acme")).state, "offboarding", "offboard: → offboarding")
  t.like(types_of("acme"), "tenant.suspended,tenant.resumed,tenant.offboarding$", "... each change is an event")
  t.is(#assert(tenants.list({ state = "offboarding" })), 1, "list by state")
  local gone = assert(tenants.removed("acme", { erased = 3 }))
  t.is(gone.state, "removed", "removed: offboarding → removed (the offboarding module's call)")
  local last = assert(events.query(st, { tenant = "acme", type = "tenant.removed", limit = 1 })).events[1]
  t.is(last and last.data.erased, 3, "... the event tenant.removed carries the caller's data")
  t.like(select(2, tenants.removed("acme")), "^invalid state: removed", "... once")
  t.raises(function() tenants.list({ state = "gone" }) end, "state", "an unknown state in a filter raises")

  -- tenant_config overlay: a tenant's own config merges over steward.lua's
  record.refresh(st)
  local merged = tenants.overlay({ acme = { p = { a = 1 } }, other = { p = { b = 2 } } })
  t.is(merged.other.p.b, 2, "the overlay keeps steward.lua's tenant_config")
end

spec.run(main)
