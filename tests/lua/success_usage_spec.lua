-- steward.success.usage: the bounded labels (the first MAX_TENANTS tenants by name, the rest as
-- "other"), one stored row per (day, tenant, token or route), services from the events' sources,
-- day and week buckets (weeks from Mondays), and what a tenant's policies declare.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local metrics = require "steward.metrics"
local time = require "steward.time"
local usage = require "steward.success.usage"

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())
store.set_default(st)

usage.MAX_TENANTS = 2
t.is(usage.label("acme"), "acme", "the first tenant is labelled by name")
t.is(usage.label("beta"), "beta", "the second too")
t.is(usage.label("gamma"), "other", "the third, past the cap, is other")
t.is(usage.label("acme"), "acme", "a labelled tenant keeps its name")

-- 2026-01-07 is a Wednesday; its week starts on Monday 2026-01-05
local wed = 1767744000 + 12 * 3600
local function obs(tenant, id, route, at) usage.observe(st, { tenant = tenant, id = id }, route, at) end
obs("acme", "tok1", "/v1/events", wed)
obs("acme", "tok1", "/v1/events", wed + 60) -- seen before: nothing new
obs("acme", "tok2", "/v1/tickets", wed + 120)
obs("gamma", "tok9", "/v1/events", wed + 180)
obs("delta", "tok8", "/v1/events", wed + 240)
obs(nil, "admin", "/v1/events", wed) -- no tenant: not a tenant's usage
assert(events.append(st, { { type = "app.used", tenant = "acme", source = "billing", time = wed, data = {} },
  { type = "app.used", tenant = "acme", source = "web", time = wed + 86400, data = {} } }))

local function stored()
  local rows = st.db:query("SELECT COUNT(*) AS n FROM success_usage")
  return rows and tonumber(rows[1].n) or 0
end
local deadline = time.monotonic() + 10
while stored() < 8 and time.monotonic() < deadline do time.sleep(0.01) end
t.is(stored(), 8, "one row per new token and per new route of each tenant and day (acme 4, gamma 2, delta 2)")

local text = metrics.render()
t.like(text, 'steward_success_active_users{tenant="acme"} 2', "two active tokens of acme today")
t.like(text, 'steward_success_active_users{tenant="other"} 2', "gamma and delta add up under other")
t.ok(not text:find('tenant="gamma"', 1, true), "no series names a tenant past the cap")

local days = assert(usage.query(st, { tenant = "acme", now = wed + 2 * 86400 }))
t.is(#days, 2, "acme: two days")
t.is(days[1].period, "2026-01-07T00:00:00Z", "the first is Wednesday")
t.is(days[1].users, 2, "two users that day")
t.is(days[1].services, 1, "one service (billing) that day")
t.is_deeply(days[1].routes, { "/v1/events", "/v1/tickets" }, "the routes its tokens used")
t.is(days[2].services, 1, "web the next day")
local weeks = assert(usage.query(st, { tenant = "acme", period = "week", now = wed + 2 * 86400,
  policies = { p = { tenant = "acme", declared = { notify = { "email" }, ["events.emit"] = true } },
               q = { tenant = "beta", declared = { http = true } } } }))
t.is(#weeks, 1, "one week")
t.is(weeks[1].period, "2026-01-05T00:00:00Z", "weeks start on Mondays")
t.is(weeks[1].services, 2, "two services over the week")
t.is_deeply(weeks[1].capabilities, { "events.emit", "notify" }, "the capabilities acme's policies declare, not beta's")
local all = assert(usage.query(st, { now = wed + 2 * 86400 }))
local tenants = {}
for _, r in ipairs(all) do tenants[r.tenant] = true end
t.ok(tenants.acme and tenants.gamma and tenants.delta and not tenants.admin, "every tenant is queryable, the admin is none")

st:close()
os.remove(path)
t.done()
