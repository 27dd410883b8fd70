-- steward.billing.dunning on a real store: the billing.dunning config check, the default formula
-- (attempt n waits the n-th delay, then gives up), a retry armed once as a durable timer
-- however often the handler runs, giving up suspends the tenant through steward.tenants (and
-- announces billing.dunning.exhausted once), paying resumes it only when no other exhausted
-- invoice holds it, and a retry of a paid invoice charges nothing.
local t = require "steward.tap"
local timers = require "steward.runtime.store.timers"
local dunning = require "steward.billing.dunning"

local spec = assert(loadfile("tests/support/billing_payments_spec.lua"))()
local st, invoices = spec.st, spec.invoices
local tenants = require "steward.tenants"
tenants.use(st)

local function config_checks()
  local c = assert(dunning.check_config({}))
  t.is_deeply(c.retries, { "1d", "3d", "7d" }, "the default retries: 1d, 3d, 7d")
  t.is_deeply(dunning.settings().delays, { 86400, 3 * 86400, 7 * 86400 }, "settings() has them in seconds")
  t.is_deeply(dunning.check_config(c), c, "checking the checked config again gives the same")
  t.is(c.suspend, true, "suspend is on by default")
  t.is(c.notify.channel, "log", "notifications go to the log by default")
  c = assert(dunning.check_config({ retries = { "30s", 60 }, suspend = false, notify = { channel = { kind = "email", url = "smtp://x" } } }))
  assert(dunning.configure({ dunning = c }))
  t.is_deeply(dunning.settings().delays, { 30, 60 }, "retries are durations")
  assert(dunning.configure(nil))
  t.is(c.notify.channel.kind, "email", "a channel with options")
  t.is(assert(dunning.check_config({ notify = false })).notify, false, "notify = false sends nothing")
  local function refused(v, pattern, name)
    local ok, err = dunning.check_config(v, "billing.dunning")
    t.ok(ok == nil and tostring(err):find(pattern, 1, true), name .. " (" .. tostring(err) .. ")")
  end
  refused({ retries = { "1d", "soon" } }, "billing.dunning.retries[2]: a positive duration", "a bad retry is named by index")
  refused({ retries = "1d" }, "billing.dunning.retries: a list of durations", "retries must be a list")
  refused({ retries = { a = "1d" } }, "billing.dunning.retries: a list expected", "not a map")
  refused({ suspend = "yes" }, "billing.dunning.suspend: boolean", "suspend is a boolean")
  refused({ notify = { channel = 7 } }, "billing.dunning.notify.channel", "a bad channel")
  refused({ notify = { chanel = "log" } }, "billing.dunning.notify.chanel: unknown field", "an unknown notify field")
  refused({ retry = {} }, "billing.dunning.retry: unknown field", "an unknown field")
  t.is_deeply(dunning.plan(1, { 10, 20 }), { retry_in = 10 }, "plan: the first failure waits the first delay")
  t.is_deeply(dunning.plan(2, { 10, 20 }), { retry_in = 20 }, "the second the second")
  t.is_deeply(dunning.plan(3, { 10, 20 }), { exhausted = true }, "then it gives up")
end

local function rec(id, state)
  assert(st:sql([[INSERT INTO tenants (id, name, plan, state, reason, contact, branding, config, limits, created, updated, version)
    VALUES ($1, $1, 'basic', $2, NULL, '{}', '{}', '{}', '{}', 1, 2, 1)]], id, state))
end

local function steps_checks()
  require "steward.runtime.store.tenants"
  assert(st:migrate())
  rec("acme", "active")
  invoices.put({ id = "inv-d1", number = "INV-0201", tenant = "acme", currency = "USD", total = "42" })
  invoices.put({ id = "inv-d2", number = "INV-0202", tenant = "acme", currency = "USD", total = "7" })
  assert(dunning.configure({ dunning = { retries = { "1h", "2h" } } }))
  local r = assert(dunning.schedule({ invoice = "inv-d1", tenant = "acme", attempt = 1, delay = 3600 }))
  t.is(r.attempt, 2, "schedule: the next attempt")
  assert(dunning.schedule({ invoice = "inv-d1", tenant = "acme", attempt = 1, delay = 3600 }))
  local pending = assert(timers.pending(st))
  t.is(#pending, 1, "the handler run twice arms one timer")
  t.is(pending[1].event.type, "billing.dunning.retry", "which fires billing.dunning.retry")
  t.is(pending[1].event.data.attempt, 2, "for attempt 2")
  t.is(assert(dunning.state("inv-d1")).state, "retrying", "the invoice is retrying")

  local x = assert(dunning.exhaust({ invoice = "inv-d1", tenant = "acme", attempt = 3 }))
  t.is(x.suspended, true, "giving up suspends the tenant")
  t.is(tenants.state("acme"), "suspended", "through steward.tenants")
  t.is(assert(tenants.get("acme")).reason, "unpaid invoice INV-0201", "the reason names the invoice's number")
  assert(dunning.exhaust({ invoice = "inv-d1", tenant = "acme", attempt = 3 }))
  local n = 0
  for _, e in ipairs(spec.dispatched) do if e.type == "billing.dunning.exhausted" then n = n + 1 end end
  t.is(n, 1, "billing.dunning.exhausted announced once")
  assert(dunning.exhaust({ invoice = "inv-d2", tenant = "acme", attempt = 3 }))
  t.is(assert(dunning.state("inv-d2")).suspended, true, "a second unpaid invoice holds the suspension too")

  assert(dunning.paid("inv-d1", "acme"))
  t.is(tenants.state("acme"), "suspended", "paying one invoice: still suspended for the other")
  assert(dunning.paid("inv-d2", "acme"))
  t.is(tenants.state("acme"), "active", "paying the last one resumes the tenant")
  t.is(assert(dunning.state("inv-d2")).state, "paid", "its dunning ends")

  invoices.put({ id = "inv-d3", tenant = "acme", currency = "USD", total = "3" })
  assert(dunning.schedule({ invoice = "inv-d3", tenant = "acme", attempt = 1, delay = 60 }))
  assert(dunning.paid("inv-d3", "acme"))
  local left = 0
  for _, p in ipairs(assert(timers.pending(st))) do if p.event.data.invoice == "inv-d3" then left = left + 1 end end
  t.is(left, 0, "paying disarms the pending retry")
  t.is(assert(dunning.retry({ invoice = "inv-d3", attempt = 2 })).status, "paid", "a retry of a paid invoice charges nothing")
  t.is(assert(dunning.exhaust({ invoice = "inv-d3", tenant = "acme", attempt = 2 })).paid, true,
    "nor does it give up on it")
  t.is(tenants.state("acme"), "active", "the tenant stays active")

  -- an operator's suspension is not dunning's to lift
  rec("globex", "active")
  assert(tenants.suspend("globex", "abuse report 7"))
  invoices.put({ id = "inv-g1", number = "INV-0301", tenant = "globex", currency = "USD", total = "9" })
  t.is(assert(dunning.exhaust({ invoice = "inv-g1", tenant = "globex", attempt = 4 })).suspended, true,
    "a tenant suspended by an operator is reported suspended")
  assert(dunning.paid("inv-g1", "globex"))
  t.is(tenants.state("globex"), "suspended", "paying does not lift a suspension dunning did not make")
  t.is(assert(tenants.get("globex")).reason, "abuse report 7", "the operator's reason stands")

  assert(dunning.configure({ dunning = { suspend = false } }))
  invoices.put({ id = "inv-d4", tenant = "acme", currency = "USD", total = "3" })
  t.is(assert(dunning.exhaust({ invoice = "inv-d4", tenant = "acme", attempt = 4 })).suspended, false,
    "suspend = false: giving up suspends nobody")
  t.is(tenants.state("acme"), "active", "the tenant stays active")
  t.raises(function() dunning.schedule({ tenant = "acme" }) end, "invoice", "misuse raises naming the fields")
end

spec.run(function()
  config_checks()
  steps_checks()
end)
