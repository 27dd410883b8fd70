-- steward.success.onboarding: the milestones a tenant reached (first event ingested, first
-- policy deployed, ...) and its time to value. Which events make which milestone, and when a
-- missing one earns a nudge, is the shipped policy success.onboarding; this module keeps the
-- record: a milestone is reached once (the first time counts, a re-run changes nothing), and
-- its reaching is announced as success.milestone.reached in the same commit.
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
require "steward.success.schema"

local type, pairs, ipairs, error, format, sort = type, pairs, ipairs, error, string.format, table.sort

local M = {}

local ready = domain.migrator("success")

-- Milestones reached, per store (weak) and tenant: a milestone is never lost once reached, so
-- the policy that sees every event asks the store only about the ones this process has not
-- seen reached yet — an event costs no write once its tenant's milestones are known.
local known = setmetatable({}, { __mode = "k" })
local function known_of(st, tenant)
  local by = known[st]
  if not by then by = {}; known[st] = by end
  local k = by[tenant]
  if not k then k = {}; by[tenant] = k end
  return k
end

local function name_arg(v, what)
  if type(v) ~= "string" or not v:match("^[%w._-]+$") or #v > 100 then
    error(what .. ": a name of letters, digits, '.', '_' or '-' expected", 3)
  end
end

-- reached(st, tenant) -> {milestone = time reached} | nil, err
function M.reached(st, tenant)
  name_arg(tenant, "onboarding.reached: tenant")
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT milestone, reached FROM success_milestones WHERE tenant = $1", tenant)
  if not rows then return nil, err end
  local out, k = {}, known_of(st, tenant)
  for _, r in ipairs(rows) do out[r.milestone] = r.reached; k[r.milestone] = true end
  return out
end

-- reach(st, tenant, milestone, {now=, event=}) -> true (reached now) | false (before) | nil, err
function M.reach(st, tenant, milestone, opts)
  name_arg(tenant, "onboarding.reach: tenant")
  name_arg(milestone, "onboarding.reach: milestone")
  opts = opts or {}
  local k = known_of(st, tenant)
  if k[milestone] then return false end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = util.now(opts.now)
  local ev = { id = format("milestone:%s:%s", tenant, milestone), type = "success.milestone.reached", tenant = tenant,
    time = now, source = "steward.success.onboarding", data = { tenant = tenant, milestone = milestone, event = opts.event } }
  local res, fresh = domain.commit(st, { { "INSERT INTO success_milestones (tenant, milestone, reached, event_id) " ..
    "VALUES ($1,$2,$3,$4) ON CONFLICT (tenant, milestone) DO NOTHING RETURNING milestone", tenant, milestone, now,
    util.nullable(opts.event) } }, ev, now)
  if not res then return nil, fresh end
  events.published(st, fresh)
  k[milestone] = true
  return #(res[1].rows or {}) > 0
end

-- progress(st, tenant, declared, {started=}) -> {tenant, started, milestones = {{name, reached}},
-- done, total, time_to_value (seconds from started to the value milestone, when reached)}.
-- declared: {{name=, value = true}...} in order (the policy's list); started: when the tenant
-- began (its record's creation), else its first milestone.
function M.progress(st, tenant, declared, opts)
  if type(declared) ~= "table" then error("onboarding.progress: declared: list of milestones expected", 2) end
  opts = opts or {}
  local got, err = M.reached(st, tenant)
  if not got then return nil, err end
  local started = opts.started
  if not started then
    for _, at in pairs(got) do if not started or at < started then started = at end end
  end
  local list, done, ttv = {}, 0, nil
  for i, m in ipairs(declared) do
    local at = got[m.name]
    list[i] = { name = m.name, reached = at }
    if at then
      done = done + 1
      if m.value and started then ttv = at - started end
    end
  end
  return { tenant = tenant, started = started, milestones = list, done = done, total = #declared, time_to_value = ttv }
end

-- tenants(st) -> the tenants with a milestone, sorted | nil, err
function M.tenants(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT DISTINCT tenant FROM success_milestones")
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.tenant end
  sort(out)
  return out
end

domain.default_store(M, { "reached", "reach", "progress", "tenants" })

return M
