-- steward.success.usage: usage analytics per tenant — active users (the token ids seen on
-- authenticated requests), services (the distinct `source` of its events), and feature adoption
-- (the API routes its tokens use, the capabilities its policies declare), per day or per week.
-- A (day, tenant, kind, name) is stored once: each process remembers what it wrote today, so a
-- request costs a table lookup and a new sighting one INSERT in a task of its own (the request
-- never waits for it). Prometheus gets bounded cardinality: the first MAX_TENANTS tenants seen
-- are labelled by name, the rest add up under tenant="other".
local json = require "steward.json"
local task = require "steward.task"
local time = require "steward.time"
local metrics = require "steward.metrics"
local log = require "steward.log"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local store = require "steward.runtime.store"
require "steward.success.schema"

local pairs, ipairs, tostring, tonumber, unpack = pairs, ipairs, tostring, tonumber, unpack
local floor, sort = math.floor, table.sort

local M = {}

M.MAX_TENANTS = 50
local DAY = 86400

store.register_migrations("success_usage", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE success_usage (
      day BIGINT NOT NULL,
      tenant {text} NOT NULL,
      kind {text} NOT NULL,
      name {text} NOT NULL,
      first_seen DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (day, tenant, kind, name));
  ]] },
})

local ready = domain.migrator("success_usage")

local labelled, nlabelled = {}, 0
-- label(tenant) -> the tenant's label value: its id for the first MAX_TENANTS, else "other"
function M.label(tenant)
  if labelled[tenant] then return tenant end
  if nlabelled < M.MAX_TENANTS then
    labelled[tenant], nlabelled = true, nlabelled + 1
    return tenant
  end
  return "other"
end

local m_users = metrics.gauge("steward_success_active_users",
  "distinct tokens seen today per tenant (at most success.usage's MAX_TENANTS tenants by name, the rest as \"other\")",
  { "tenant" })
local m_requests = metrics.counter("steward_success_requests_total",
  "authenticated requests per tenant (capped labels, the rest as \"other\")", { "tenant" })

-- What this process stored today: seen.by[tenant][token id] = {route = true}; nested tables,
-- so a request seen before allocates nothing.
local seen = { day = -1, by = {}, labels = {} }

local function write(st, day, tenant, kind, name, now)
  local ok, err = ready(st)
  if ok then
    ok, err = st.db:exec("INSERT INTO success_usage (day, tenant, kind, name, first_seen) VALUES ($1,$2,$3,$4,$5) " ..
      "ON CONFLICT (day, tenant, kind, name) DO NOTHING", day, tenant, kind, name, now)
  end
  if not ok then log.warn("success usage: not recorded", { tenant = tenant, kind = kind, error = tostring(err) }) end
end

-- observe(st, principal, route [, now]): one authenticated request of a tenant's token.
function M.observe(st, principal, route, now)
  local tenant = principal.tenant
  if not tenant then return end
  now = now or time.now()
  local day = floor(now / DAY)
  if day ~= seen.day then
    seen.day, seen.by = day, {}
    for label in pairs(seen.labels) do m_users:set(0, label) end
  end
  local label = M.label(tenant)
  m_requests:inc(1, label)
  local by_token = seen.by[tenant]
  if not by_token then by_token = {}; seen.by[tenant] = by_token end
  local id = principal.id or "?"
  local routes = by_token[id]
  if routes and routes[route] then return end
  local new_user = routes == nil
  if new_user then
    routes = {}
    by_token[id] = routes
    seen.labels[label] = true
    m_users:inc(1, label)
  end
  routes[route] = true
  task.spawn({ name = "success.usage" }, function()
    if new_user then write(st, day, tenant, "user", tostring(id), now) end
    write(st, day, tenant, "route", route, now)
  end)
end

-- features(st, tenant, since) -> how many distinct API routes the tenant's tokens used since then | nil, err
function M.features(st, tenant, since)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT COUNT(DISTINCT name) AS n FROM success_usage WHERE tenant = $1 AND kind = 'route' AND day >= $2",
    tenant, floor(since / DAY))
  if not rows then return nil, err end
  return tonumber(rows[1] and rows[1].n) or 0
end

-- install(ctx): the daemon API calls ctx.on_request(principal, route) for each authenticated request.
function M.install(ctx)
  if not ctx.store then return end
  ctx.on_request = function(principal, route) M.observe(ctx.store, principal, route) end
end

-- query(st, {tenant=, period = "day"|"week", since=, policies =}) -> rows {tenant, period
-- (the day or the week's Monday, RFC 3339), users, services, routes = {...}, capabilities}
function M.query(st, f)
  f = f or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = util.now(f.now)
  local width = f.period == "week" and 7 or 1
  local since = f.since or (now - (width == 7 and 28 or 7) * DAY)
  -- 1970-01-01 was a Thursday: weeks start on Mondays, 4 days on
  local function bucket(day) return width == 7 and (floor((day + 3) / 7) * 7 - 3) or day end
  local w = domain.where()
  w:add("day >= ?", floor(since / DAY))
  if f.tenant then w:add("tenant = ?", f.tenant) end
  local rows
  rows, err = st.db:query("SELECT day, tenant, kind, name FROM success_usage" .. w:clause(), unpack(w.params))
  if not rows then return nil, err end
  local acc, order = {}, {}
  local function slot(tenant, b)
    local k = tenant .. "\0" .. b
    local a = acc[k]
    if not a then
      a = { tenant = tenant, b = b, user = {}, route = {}, source = {} }
      acc[k] = a
      order[#order + 1] = a
    end
    return a
  end
  for _, r in ipairs(rows) do slot(r.tenant, bucket(tonumber(r.day)))[r.kind][r.name] = true end
  -- services: the distinct sources of the tenant's events
  local ew = domain.where()
  ew:add("time >= ?", floor(since / DAY) * DAY)
  ew:add("tenant IS NOT NULL")
  ew:add("source IS NOT NULL")
  if f.tenant then ew:add("tenant = ?", f.tenant) end
  -- the day of a time: CAST truncates on SQLite, rounds on PostgreSQL (which has FLOOR)
  local day_of = st:backend() == "postgres" and "FLOOR(time / 86400)" or "CAST(time / 86400 AS INTEGER)"
  rows, err = st.db:query("SELECT DISTINCT tenant, source, " .. day_of .. " AS day FROM events" .. ew:clause(),
    unpack(ew.params))
  if not rows then return nil, err end
  for _, r in ipairs(rows) do
    slot(r.tenant, bucket(tonumber(r.day))).source[r.source] = true
  end
  local caps = {}
  for _, p in pairs(f.policies or {}) do
    if p.tenant then
      caps[p.tenant] = caps[p.tenant] or {}
      for c in pairs(p.declared or {}) do caps[p.tenant][c] = true end
    end
  end
  local function keys(t)
    local out = {}
    for k in pairs(t) do out[#out + 1] = k end
    sort(out)
    return json.array(out)
  end
  local out = {}
  for i, a in ipairs(order) do
    local n = 0
    for _ in pairs(a.user) do n = n + 1 end
    local s = 0
    for _ in pairs(a.source) do s = s + 1 end
    out[i] = { tenant = a.tenant, period = util.format_rfc3339(a.b * DAY), users = n, services = s,
      routes = keys(a.route), capabilities = keys(caps[a.tenant] or {}) }
  end
  sort(out, function(x, y) if x.tenant ~= y.tenant then return x.tenant < y.tenant end return x.period < y.period end)
  return out
end

return M
