-- steward.capacity.defer: a deferrable job run when it is cheapest. The cheapest start before
-- the deadline (steward.capacity.prices.cheapest) becomes a durable timer of the store keyed by
-- the job's name, so its event fires once at that start — also after a restart or a kill -9 —
-- and deferring the same name again while it waits schedules nothing new. Every scheduling is
-- written to the audit log (who, the slot, what it costs against starting now).
local json = require "steward.json"
local log = require "steward.log"
local timers = require "steward.runtime.store.timers"
local audit = require "steward.runtime.store.audit"
local prices = require "steward.capacity.prices"

local type, pairs, ipairs, tostring, error, format = type, pairs, ipairs, tostring, error, string.format

local M = {}

M.TIMER_PREFIX = "capacity.defer:"
local KNOWN = { name = true, duration = true, deadline = true, event = true, now = true, class = true, instances = true,
  service = true, actor = true, source = true }

local function fail(field, reason) error(format("capacity.defer: %s: %s", field, reason), 4) end

-- check(o, now) -> normalised options | raises naming the field
function M.check(o, now)
  if type(o) ~= "table" then error("capacity.defer: options: table expected, got " .. type(o), 3) end
  for k in pairs(o) do if not KNOWN[k] then fail(tostring(k), "unknown field") end end
  if type(o.name) ~= "string" or o.name == "" or #o.name > 180 then fail("name", "string of 1 to 180 bytes expected") end
  local d, err = require("steward.time").parse_duration(o.duration)
  if not d then fail("duration", tostring(err)) end
  if d <= 0 then fail("duration", "positive duration expected") end
  local t = o.now or now
  local deadline = o.deadline
  if type(deadline) == "string" then
    local rel = require("steward.time").parse_duration(deadline)
    if rel then
      deadline = t + rel
    else
      local abs, perr = require("steward.runtime.store.util").parse_rfc3339(deadline)
      if not abs then fail("deadline", "Unix seconds, an RFC 3339 time or a duration from now expected: " .. tostring(perr)) end
      deadline = abs
    end
  elseif type(deadline) ~= "number" then
    fail("deadline", "Unix seconds, an RFC 3339 time or a duration from now expected")
  end
  if type(o.event) ~= "table" then fail("event", "event table expected ({type = \"batch.run\", data = {...}})") end
  return { name = o.name, duration = d, deadline = deadline, now = t, event = o.event, class = o.class,
    instances = o.instances, service = o.service, actor = o.actor, source = o.source }
end

-- defer(st, model, o) -> {name, start, ends, amount, now_amount, price, currency, timer, existing} | nil, err
function M.defer(st, model, o)
  local when, err = prices.cheapest(model, { duration = o.duration, deadline = o.deadline, now = o.now,
    class = o.class or (o.service and prices.class_of(model, o.service)), instances = o.instances })
  local base = { source = o.source or "lua", actor = o.actor, command = "capacity.defer", target = o.name }
  if not when then
    base.outcome, base.detail = "refused", err
    local aok, aerr = audit.append(st, base)
    if not aok then log.error("audit: cannot record a deferred job", { job = o.name, error = tostring(aerr) }) end
    return nil, "capacity.defer: " .. o.name .. ": " .. err
  end
  local key = M.TIMER_PREFIX .. o.name
  local id = "k:" .. key
  local existing
  existing, err = st.db:query("SELECT due_at FROM timers WHERE id = $1", id)
  if not existing then return nil, err end
  if existing[1] then
    return { name = o.name, start = existing[1].due_at, timer = id, existing = true, currency = model.currency }
  end
  local ev = { type = o.event.type, tenant = o.event.tenant, data = o.event.data, source = "steward.capacity.defer" }
  local ok
  ok, err = timers.after(st, when.start - o.now, ev, { key = key, now = o.now })
  if not ok then return nil, err end
  when.name, when.timer, when.deadline = o.name, id, o.deadline
  base.outcome = "ok"
  base.detail = format("start %s (price %s), ends %s, deadline %s: %s %s instead of %s %s now; event %s",
    require("steward.runtime.store.util").format_rfc3339(when.start), tostring(when.price),
    require("steward.runtime.store.util").format_rfc3339(when.ends),
    require("steward.runtime.store.util").format_rfc3339(o.deadline), when.amount, model.currency, when.now_amount,
    model.currency, tostring(o.event.type))
  local aok, aerr = audit.append(st, base)
  if not aok then log.error("audit: cannot record a deferred job", { job = o.name, error = tostring(aerr) }) end
  return when
end

-- pending(st) -> the deferred jobs still waiting: {{name, start, event}} | nil, err
function M.pending(st)
  local rows, err = st.db:query("SELECT id, due_at, event FROM timers WHERE id >= $1 AND id < $2 ORDER BY due_at",
    "k:" .. M.TIMER_PREFIX, "k:" .. M.TIMER_PREFIX:sub(1, -2) .. ";")
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { name = r.id:sub(#M.TIMER_PREFIX + 3), start = r.due_at, event = json.decode(r.event) }
  end
  return out
end

return M
