-- steward.billing.usage: usage events {transaction_id, subscription, code, timestamp,
-- properties} — taken in by POST /v1/billing/usage (validated one by one, naming the field and
-- the index), appended to the event log as `billing.usage` events (acknowledged = durable),
-- and recorded by the shipped policy billing.usage into billing_usage, once per (subscription,
-- transaction_id): the same id on another subscription is another event (Lago's rule); a
-- re-send with a known id is not applied and is reported as a duplicate (event
-- billing.usage.duplicate); an event whose billing period closed more than billing.grace_period
-- ago is refused as late (event billing.usage.late), never billed silently. Property values
-- stay as the client sent them; an amount must come as a string (a JSON number with a fraction
-- went through a double and is refused).
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local bconfig = require "steward.billing.config"
local metrics = require "steward.billing.metrics"
local plans = require "steward.billing.plans"
local subscriptions = require "steward.billing.subscriptions"
local V = require "steward.billing.values"
require "steward.billing.schema"

local type, pairs, ipairs, next, tostring, tonumber, error, pcall, require, unpack, setmetatable =
  type, pairs, ipairs, next, tostring, tonumber, error, pcall, require, unpack, setmetatable
local format, floor, concat, sort = string.format, math.floor, table.concat, table.sort

local M = {}

M.EVENT = "billing.usage"
M.MAX_BATCH = 1000
local SOURCE = "steward.billing.usage"
local FIELDS = { transaction_id = true, subscription = true, code = true, timestamp = true, properties = true }

local ready = domain.migrator("billing")
M.ready = ready

local function bad(index, field, reason) return nil, { index = index, field = field, reason = reason } end

-- validate(ev [, index, now]) -> usage event | nil, {index, field, reason}
function M.validate(ev, index, now)
  if not V.is_object(ev) then return bad(index, "(event)", "object expected") end
  for k in pairs(ev) do
    if not FIELDS[k] then
      return bad(index, tostring(k), "unknown field (transaction_id, subscription, code, timestamp, properties)")
    end
  end
  local out = {}
  for _, k in ipairs({ "transaction_id", "subscription", "code" }) do
    local v = ev[k]
    if v == nil or v == V.null then return bad(index, k, "required") end
    if type(v) ~= "string" then return bad(index, k, "string expected, got " .. type(v)) end
    if #v < 1 or #v > 200 or v:find("[%z\1-\31\127]") then return bad(index, k, "1 to 200 printable bytes expected") end
    out[k] = v
  end
  local t, err = V.time(ev.timestamp, "timestamp")
  if err then return bad(index, "timestamp", (err:gsub("^timestamp: ", ""))) end
  out.timestamp = t or util.now(now)
  local p = ev.properties
  if p == nil or p == V.null then p = {} end
  if not V.is_object(p) then return bad(index, "properties", "object expected") end
  local props = {}
  for k, v in pairs(p) do
    local at = "properties." .. tostring(k)
    if type(k) ~= "string" or #k > 100 then return bad(index, "properties", "property names of at most 100 bytes expected") end
    if type(v) == "number" then
      if v ~= floor(v) or v ~= v then
        return bad(index, at, tostring(v) .. " is a number with a fraction: send it as a string (\"" .. tostring(v) .. "\")")
      end
    elseif type(v) == "string" then
      if #v > 1000 then return bad(index, at, "at most 1000 bytes") end
    elseif type(v) ~= "boolean" and v ~= V.null then
      return bad(index, at, "a string, an integer or a boolean expected, got " .. type(v))
    end
    props[k] = v
  end
  out.properties = props
  return out
end

local function event_id(u) return format("billing.usage:%s:%s", u.subscription, u.transaction_id) end

-- period_of(sub, plan, at) -> the billing period of sub containing at. The period found last
-- for a subscription is kept (up to 10,000 subscriptions) and reused while its events fall in
-- it: computing a calendar period in a zone for every event was a tenth of a batch's time. The
-- key holds everything the bounds depend on (plan versions never change).
local recent, recent_n = {}, 0
local function period_of(sub, plan, at)
  local key = format("%s|%s@%s|%s|%s|%s", sub.id, tostring(sub.plan), tostring(sub.plan_version), tostring(sub.anchor),
    tostring(sub.billing_time), tostring(bconfig.current.timezone))
  local p = recent[key]
  if p and at >= p.from and at < p.to then return p end
  p = subscriptions.period(sub, at, plan)
  if p then
    if recent_n >= 10000 then recent, recent_n = {}, 0 end
    if recent[key] == nil then recent_n = recent_n + 1 end
    recent[key] = p
  end
  return p
end

-- late(sub, plan, at, received) -> true when the billing period containing `at` closed more
-- than the grace period before `received` (false when the periods module is not installed).
local function late(sub, plan, at, received)
  local okp, periods = pcall(require, "steward.billing.periods")
  if not okp or type(periods) ~= "table" then return false end
  local p = period_of(sub, plan, at)
  if not p then return false end
  local grace = bconfig.current.grace_seconds or 0
  if type(periods.grace_closed) == "function" then return periods.grace_closed(p, grace, received) and true or false end
  return p.to + grace <= received
end

-- What the policy's record() reads for every event, kept between events: a plan version and a
-- metric never change once stored (kept while the store is the same), a subscription for
-- SUB_TTL seconds (the intake checked the event against it fresh; this is the second look).
M.SUB_TTL = 1
local known = setmetatable({}, { __mode = "k" }) -- store -> {plans = {}, metrics = {}, subs = {}}

local function known_of(st)
  local k = known[st]
  if not k then k = { plans = {}, metrics = {}, subs = {} }; known[st] = k end
  return k
end

local function plan_of(st, s, k)
  local key = s.plan .. "@" .. tostring(s.plan_version)
  local p = k and k.plans[key]
  if p then return p end
  p = plans.get(st, s.plan, s.plan_version) or nil
  if p and k then k.plans[key] = p end
  return p
end

-- prefetch(st, list, cache): the subscriptions a batch names by id, read in one query into
-- fit's cache (one get each was most of a batch from many customers: docs/performance.md,
-- "Billing (issue 18)"). A name not found there may be an external_id: fit looks it up.
local function prefetch(st, list, cache)
  local ids, seen = {}, {}
  for _, ev in ipairs(list) do
    local id = type(ev) == "table" and ev.subscription
    if type(id) == "string" and not seen[id] then seen[id] = true; ids[#ids + 1] = id end
  end
  if #ids < 2 then return true end
  local subs, err = subscriptions.get_many(st, ids)
  if not subs then return nil, err end
  local k = known_of(st) -- plan versions only: the intake reads its subscriptions fresh
  for id, s in pairs(subs) do cache[id] = { sub = s, plan = plan_of(st, s, k) } end
  return true
end

-- fit(st, u, cache, tenant, k, now) -> nil, nil, nil, subscription, plan when the event fits
-- its subscription; else field, reason (and status 404 for an unknown or foreign subscription),
-- or nil, nil, err for the store's failure.
local function fit(st, u, cache, tenant, k, now)
  local c = cache[u.subscription]
  if c == nil and k then
    local hit = k.subs[u.subscription]
    if hit and hit.until_ > now then c = hit end
  end
  if c == nil then
    local s, err = subscriptions.get(st, u.subscription)
    if s == nil then return nil, nil, err end
    c = { sub = s or nil }
    if s then
      c.plan = plan_of(st, s, k)
    else
      -- not an id: an external_id, which an upgrade or a downgrade hands on (Lago's
      -- external_subscription_id); each event goes to the subscription running at its time
      local list
      list, err = subscriptions.list(st, { external_id = u.subscription })
      if not list then return nil, nil, err end
      if #list > 0 then
        c.ext = {}
        for _, x in ipairs(list) do
          if x.state ~= "canceled" then c.ext[#c.ext + 1] = { sub = x, plan = plan_of(st, x, k) } end
        end
      end
    end
    cache[u.subscription] = c
    if k and s then c.until_ = now + M.SUB_TTL; k.subs[u.subscription] = c end
  end
  if c.ext then
    local pick
    for _, x in ipairs(c.ext) do -- newest first: the one whose life holds the event's time
      if x.sub.started <= u.timestamp and (not x.sub.terminated or u.timestamp < x.sub.terminated) then pick = x; break end
    end
    pick = pick or c.ext[1]
    if pick then c = pick end
  end
  local s = c.sub
  if not s or (tenant and s.tenant ~= tenant) then return "subscription", "no subscription " .. u.subscription, 404 end
  if s.state == "canceled" then return "subscription", "the subscription was canceled before it started" end
  if u.timestamp < s.started then return "timestamp", "before the subscription started" end
  if s.terminated and u.timestamp >= s.terminated then return "timestamp", "after the subscription ended" end
  if cache["metric:" .. u.code] == nil then
    if k and k.metrics[u.code] then
      cache["metric:" .. u.code] = true
    else
      local m, err = metrics.get(st, u.code)
      if m == nil then return nil, nil, err end
      cache["metric:" .. u.code] = m and true or false
      if m and k then k.metrics[u.code] = true end
    end
  end
  if not cache["metric:" .. u.code] then return "code", "no metric " .. u.code end
  return nil, nil, nil, s, c.plan
end

-- recorded_ids(st, pairs) -> {[subscription .. "\0" .. transaction_id] = event_id} of the pairs
-- {subscription, transaction_id} already in billing_usage | nil, err. One query per 500 pairs,
-- whatever the number of subscriptions they name (a batch from many customers was one query
-- per subscription); a join on VALUES (column1, column2 in both SQLite and PostgreSQL)
-- searches the key for each pair, where SQLite plans "(a, b) IN (VALUES ...)" as a scan of the
-- whole index.
local function recorded_ids(st, list)
  local found = {}
  for first = 1, #list, 500 do
    local marks, params = {}, {}
    for j = first, math.min(first + 499, #list) do
      params[#params + 1] = list[j][1]
      params[#params + 1] = list[j][2]
      marks[#marks + 1] = format("($%d,$%d)", #params - 1, #params)
    end
    local rows, err = st.db:query("SELECT u.subscription, u.transaction_id, u.event_id FROM (VALUES " ..
      concat(marks, ",") .. ") AS v JOIN billing_usage u ON u.subscription = v.column1 AND u.transaction_id = v.column2",
      unpack(params))
    if not rows then return nil, err end
    for _, r in ipairs(rows) do found[r.subscription .. "\0" .. r.transaction_id] = r.event_id end
  end
  return found
end

-- ingest(st, list, {tenant=, now=}) -> result | nil, err | nil, {index, field, reason, status}.
-- Every event is checked before any is appended (a bad one refuses the batch, naming its
-- index). result = {accepted, duplicates, late, events = {{index, transaction_id, subscription,
-- status = "accepted"|"duplicate"|"late", reason}}}.
function M.ingest(st, list, opts)
  if type(list) ~= "table" then error("usage.ingest: list: table expected", 2) end
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  if #list > M.MAX_BATCH then return nil, { field = "events", reason = format("at most %d events per request", M.MAX_BATCH) } end
  local now = util.now(opts.now)
  local valid, cache = {}, {}
  ok, err = prefetch(st, list, cache)
  if not ok then return nil, err end
  for i, ev in ipairs(list) do
    local u, verr = M.validate(ev, i, now)
    if not u then return nil, verr end
    local field, reason, status, sub, plan = fit(st, u, cache, opts.tenant)
    if status and not field then return nil, status end -- a store error
    if field then return nil, { index = i, field = field, reason = reason, status = status } end
    u.tenant, u.sub, u.plan = sub.tenant, sub, plan
    u.subscription = sub.id -- an external_id resolved: idempotency is per subscription
    valid[i] = u
  end
  -- recorded before: a duplicate (a correction sent with a known id is not applied)
  local pairs_ = {}
  for j, u in ipairs(valid) do pairs_[j] = { u.subscription, u.transaction_id } end
  local known
  known, err = recorded_ids(st, pairs_)
  if not known then return nil, err end
  local out = { accepted = 0, duplicates = 0, late = 0, events = {} }
  local append, slot = {}, {}
  local seen = {}
  for i, u in ipairs(valid) do
    local key = u.subscription .. "\0" .. u.transaction_id
    local data = { transaction_id = u.transaction_id, subscription = u.subscription, code = u.code,
                   timestamp = u.timestamp, properties = u.properties }
    local r = { index = i, transaction_id = u.transaction_id, subscription = u.subscription }
    out.events[i] = r
    if known[key] or seen[key] then
      r.status = "duplicate"
      out.duplicates = out.duplicates + 1
      append[#append + 1] = { type = "billing.usage.duplicate", tenant = u.tenant, time = now, source = SOURCE, data = data }
    elseif late(u.sub, u.plan, u.timestamp, now) then
      r.status, r.reason = "late", "its billing period closed more than billing.grace_period ago"
      out.late = out.late + 1
      append[#append + 1] = { type = "billing.usage.late", tenant = u.tenant, time = now, source = SOURCE, data = data }
    else
      seen[key] = true
      append[#append + 1] = { id = event_id(u), type = M.EVENT, tenant = u.tenant, time = now, source = SOURCE, data = data }
      slot[#append] = r
    end
  end
  if #append > 0 then
    local res
    res, err = events.append(st, append, { now = now })
    if not res then return nil, type(err) == "table" and ((err.field or "") .. ": " .. (err.reason or "")) or err end
    local dups = {}
    for j, r in pairs(slot) do
      if res.duplicate[j] then
        -- in the log already, not recorded yet: the first copy is on its way
        r.status = "duplicate"
        out.duplicates = out.duplicates + 1
        local a = append[j]
        dups[#dups + 1] = { type = "billing.usage.duplicate", tenant = a.tenant, time = now, source = SOURCE, data = a.data }
      else
        r.status = "accepted"
        r.event = res.ids[j]
        out.accepted = out.accepted + 1
      end
    end
    if #dups > 0 then
      res, err = events.append(st, dups, { now = now })
      if not res then return nil, type(err) == "table" and ((err.field or "") .. ": " .. (err.reason or "")) or err end
    end
  end
  return out
end

local function is_usage_event(ev) return type(ev) == "table" and type(ev.data) == "table" end

-- record_list(st, list, now) -> {[i] = outcome} | nil, err: the one implementation of record
-- and record_many. Reads (subscriptions, plans, metrics) are cached across the list; the
-- inserts go in one store batch (one transaction) and the late and duplicate announcements in
-- one events.append after it, so a store error leaves nothing behind and the whole list can be
-- handled again.
local function record_list(st, list, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = util.now(now)
  local k, cache = known_of(st), {}
  local out, stmts, pending, announce = {}, {}, {}, {}
  for i, ev in ipairs(list) do
    local received = tonumber(ev.time) or now
    local u, verr = M.validate(ev.data, nil, received)
    if not u then
      out[i] = { err = "invalid: " .. verr.field .. ": " .. verr.reason }
    else
      local field, reason, status, sub, plan = fit(st, u, cache, nil, k, now)
      if status and not field then return nil, status end -- the store
      if field then
        out[i] = { err = "invalid: " .. field .. ": " .. reason }
      else
        u.subscription = sub.id
        local data = { transaction_id = u.transaction_id, subscription = u.subscription, code = u.code,
                       timestamp = u.timestamp, properties = u.properties, event = ev.id }
        local id = tostring(ev.id or event_id(u))
        if ev.source ~= SOURCE and late(sub, plan, u.timestamp, received) then
          out[i] = { outcome = "late" }
          announce[#announce + 1] = { id = "billing.usage.late:" .. id, type = "billing.usage.late", tenant = sub.tenant,
            time = now, source = SOURCE, data = data, at = i }
        else
          stmts[#stmts + 1] = { "INSERT INTO billing_usage (subscription, transaction_id, tenant, code, happened, " ..
            "properties, received, event_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) " ..
            "ON CONFLICT (subscription, transaction_id) DO NOTHING",
            u.subscription, u.transaction_id, sub.tenant, u.code, u.timestamp, json.encode(u.properties), received, id }
          pending[#stmts] = { at = i, id = id, sub = sub, data = data }
        end
      end
    end
  end
  if #stmts > 0 then
    local res
    res, err = st.db:batch(stmts)
    if not res then return nil, err end
    -- not inserted: recorded before, by this very event (handled again after a crash: recorded)
    -- or by another one, maybe earlier in this list (a duplicate)
    local conflicts = {}
    for j, p in pairs(pending) do
      if res[j].changes == 1 then
        out[p.at] = { outcome = "recorded", subscription = p.data.subscription }
      else
        conflicts[#conflicts + 1] = p
      end
    end
    if #conflicts > 0 then
      local q = {}
      for j, p in ipairs(conflicts) do q[j] = { p.data.subscription, p.data.transaction_id } end
      local prev = recorded_ids(st, q) or {}
      for _, p in ipairs(conflicts) do
        if prev[p.data.subscription .. "\0" .. p.data.transaction_id] == p.id then
          out[p.at] = { outcome = "recorded", subscription = p.data.subscription }
        else
          out[p.at] = { outcome = "duplicate" }
          announce[#announce + 1] = { id = "billing.usage.duplicate:" .. p.id, type = "billing.usage.duplicate",
            tenant = p.sub.tenant, time = now, source = SOURCE, data = p.data, at = p.at }
        end
      end
    end
  end
  if #announce > 0 then
    -- in the order of the events they announce, as one by one
    sort(announce, function(a, b) return a.at < b.at end)
    for _, a in ipairs(announce) do a.at = nil end
    events.append(st, announce, { now = now })
  end
  return out
end

-- record_many(st, events [, now]) -> {[i] = {outcome = "recorded", subscription = id} |
-- {outcome = "duplicate"} | {outcome = "late"} | {err = "invalid: field: reason"}} | nil, err
-- (the store: nothing recorded, nothing announced): what the shipped policy's handle_batch
-- does with the billing.usage events of a batch, each exactly as record would, in order.
function M.record_many(st, list, now)
  if type(list) ~= "table" then error("usage.record_many: events: a list of billing.usage events expected", 2) end
  for i, ev in ipairs(list) do
    if not is_usage_event(ev) then error("usage.record_many: events[" .. i .. "]: a billing.usage event expected", 2) end
  end
  return record_list(st, list, now)
end

-- record(st, ev [, now]) -> "recorded", subscription id | "duplicate" | "late" | nil, err: what the shipped
-- policy does with a billing.usage event: one row per (subscription, transaction_id). Lateness
-- is judged against the time the event was received (ev.time), so a replay after a restart
-- records what was acknowledged. The event handled again (after a crash) is "recorded" again.
function M.record(st, ev, now)
  if not is_usage_event(ev) then error("usage.record: ev: a billing.usage event expected", 2) end
  local out, err = record_list(st, { ev }, now)
  if not out then return nil, err end
  local o = out[1]
  if o.err then return nil, o.err end
  return o.outcome, o.subscription
end

local function range(f, what)
  if type(f) ~= "table" then error(what .. ": filter: table expected", 3) end
  if type(f.subscription) ~= "string" then error(what .. ": subscription: string expected", 3) end
  local w = domain.where()
  w:add("subscription = ?", f.subscription)
  if f.code ~= nil then
    if type(f.code) ~= "string" then error(what .. ": code: string expected", 3) end
    w:add("code = ?", f.code)
  end
  if f.from ~= nil then
    if type(f.from) ~= "number" then error(what .. ": from: epoch seconds expected", 3) end
    w:add("happened >= ?", f.from)
  end
  if f.to ~= nil then
    if type(f.to) ~= "number" then error(what .. ": to: epoch seconds expected", 3) end
    w:add("happened < ?", f.to)
  end
  return w
end

-- query(st, {subscription, code, from, to}) -> {{transaction_id, timestamp, properties, code}}
-- by timestamp (from inclusive, to exclusive) | nil, err — the events the aggregation reads.
function M.query(st, f)
  local w = range(f, "usage.query")
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT transaction_id, code, happened, properties FROM billing_usage" .. w:clause() ..
    " ORDER BY happened, transaction_id", unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do
    rows[i] = { transaction_id = r.transaction_id, code = r.code, timestamp = r.happened,
                properties = json.decode(r.properties) or {} }
  end
  return rows
end

-- count(st, {subscription, code, from, to}) -> number | nil, err
function M.count(st, f)
  local w = range(f, "usage.count")
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT COUNT(*) AS n FROM billing_usage" .. w:clause(), unpack(w.params))
  if not rows then return nil, err end
  return tonumber(rows[1].n)
end

domain.default_store(M, { "ingest", "record", "record_many", "query", "count" })

return M
