-- steward.capacity.api: the capacity and cost routes of the daemon's HTTP API
-- (docs/http-api.md, docs/scaling/capacity.md, docs/scaling/cost.md): reports, a series'
-- history and its import (back-filling), the cost of the supervised instances, the cheapest
-- slot for a job, and deferred jobs. Times answer in RFC 3339; a bad parameter or body field is
-- a 400 naming it.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local capacity = require "steward.capacity"

local type, pairs, ipairs, tostring, tonumber, pcall, unpack = type, pairs, ipairs, tostring, tonumber, pcall, unpack

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function rfc(t) return t and util.format_rfc3339(t) or json.null end

local function view(r)
  local out = {}
  for k, v in pairs(r) do out[k] = v end
  out.at, out.current_at = rfc(r.at), r.current_at and rfc(r.current_at) or nil
  if r.horizon then
    out.horizon = { at = rfc(r.horizon.at), days = r.horizon.days, low = r.horizon.low or json.null,
      high = r.horizon.high or json.null }
  else
    out.horizon = json.null
  end
  return out
end

-- A raised misuse ("capacity.x: field: reason") as a 400 naming the field.
local function misuse(err)
  local msg = tostring(err):gsub("^[^\n]-:%d+: ", "")
  local field, reason = msg:match("^capacity%.%a+: ([%w_%.%[%]]+): (.*)$")
  if field then return api.invalid(field, reason) end
  return api.fail(400, "invalid_request", msg)
end

local function get_all()
  local list, err = capacity.report()
  if not list then return api.unavailable(tostring(err)) end
  local out = {}
  for i, r in ipairs(list) do out[i] = view(r) end
  return api.reply(200, { services = json.array(out) })
end

local function get_one(_, req)
  local r, err = capacity.report(req.params.service)
  if not r then
    if tostring(err):match("no service") then return api.fail(404, "not_found", tostring(err)) end
    return api.unavailable(tostring(err))
  end
  return api.reply(200, view(r))
end

local function step_param(v)
  local d = require("steward.time").parse_duration(v)
  if d and d >= 60 then return d end
  return nil, "a duration of at least 1m expected"
end

local function get_series(_, req)
  local P = api.params
  local f, s, h, b = api.query(req, { from = P.since, to = P.since, step = step_param })
  if not f then return s, h, b end
  local now = require("steward.time").now()
  local to = f.to or now
  local from = f.from or (to - 86400)
  local ok, rows, err = pcall(capacity.history, req.params.series, from, to, f.step)
  if not ok then return misuse(rows) end
  if not rows then return api.unavailable(tostring(err)) end
  local out = {}
  for i, r in ipairs(rows) do out[i] = { t = rfc(r[1]), v = r[2], min = r.min, max = r.max, n = r.n } end
  return api.reply(200, { series = req.params.series, from = rfc(from), to = rfc(to), points = json.array(out) })
end

local function body_of(ctx, req)
  local v, st, code, err, details = api.decode_json(ctx, req.body or "")
  if v == nil and st then return nil, { api.fail(st, code, err, details) } end
  if type(v) ~= "table" or json.is_array(v) then return nil, { api.fail(400, "invalid_json", "expected an object") } end
  return v
end

local function post_series(ctx, req)
  local b, bad = body_of(ctx, req)
  if not b then return unpack(bad) end
  for k in pairs(b) do
    if k ~= "points" then return api.invalid(tostring(k), "unknown field") end
  end
  if type(b.points) ~= "table" then return api.invalid("points", "list of [t, v] expected") end
  local pts = {}
  for i, p in ipairs(b.points) do
    if type(p) ~= "table" then return api.invalid("points[" .. i .. "]", "[t, v] expected") end
    local t = p.t or p[1]
    if type(t) == "string" then t = util.parse_rfc3339(t) or t end
    pts[i] = { t, p.v or p[2] }
  end
  local ok, n, err = pcall(capacity.import, req.params.series, pts)
  if not ok then return misuse(n) end
  if not n then return api.unavailable(tostring(err)) end
  req.audit = { target = req.params.series }
  return api.reply(200, { series = req.params.series, rows = n })
end

local BY = { service = true, tenant = true, revision = true }

local function get_cost(_, req)
  local P = api.params
  local f, s, h, b = api.query(req, { from = P.since, to = P.since, by = function(v)
    return BY[v] and v, "service, tenant or revision expected"
  end })
  if not f then return s, h, b end
  local ok, c, err = pcall(capacity.cost, { from = f.from, to = f.to, by = f.by })
  if not ok then return misuse(c) end
  if not c then
    if tostring(err):match("no cost model") then return api.fail(409, "no_cost_model", tostring(err)) end
    return api.unavailable(tostring(err))
  end
  c.from, c.to = rfc(c.from), rfc(c.to)
  for _, r in ipairs(c.rows) do r.services = json.array(r.services) end
  c.rows = json.array(c.rows)
  return api.reply(200, c)
end

local function slot_view(r)
  local out = {}
  for k, v in pairs(r) do out[k] = v end
  out.start, out.ends = rfc(r.start), r.ends and rfc(r.ends) or nil
  out.deadline = r.deadline and rfc(r.deadline) or nil
  return out
end

local function get_cheapest(_, req)
  local f, s, h, b = api.query(req, { duration = api.params.text, deadline = api.params.text, service = api.params.text,
    class = api.params.text })
  if not f then return s, h, b end
  if not f.duration then return api.invalid("duration", "required (\"2h\")") end
  if not f.deadline then return api.invalid("deadline", "required (RFC 3339, Unix seconds or a duration from now)") end
  local ok, r, err = pcall(capacity.cheapest, { duration = f.duration, deadline = tonumber(f.deadline) or f.deadline,
    service = f.service, class = f.class })
  if not ok then return misuse(r) end
  if not r then
    if tostring(err):match("no cost model") then return api.fail(409, "no_cost_model", tostring(err)) end
    return api.fail(422, "no_slot", tostring(err))
  end
  return api.reply(200, slot_view(r))
end

local DEFER = { name = true, duration = true, deadline = true, event = true, service = true, class = true, instances = true }

local function post_defer(ctx, req, principal)
  local b, bad = body_of(ctx, req)
  if not b then return unpack(bad) end
  for k in pairs(b) do
    if not DEFER[k] then return api.invalid(tostring(k), "unknown field") end
  end
  local o = {}
  for k, v in pairs(b) do o[k] = v end
  o.actor = require("steward.runtime.daemon.audit_trail").actor(principal)
  o.source = "http"
  local ok, r, err = pcall(capacity.defer, o)
  if not ok then return misuse(r) end
  if not r then
    if tostring(err):match("no cost model") then return api.fail(409, "no_cost_model", tostring(err)) end
    if tostring(err):match("cannot meet the deadline") then return api.fail(422, "no_slot", tostring(err)) end
    return api.unavailable(tostring(err))
  end
  return api.reply(r.existing and 200 or 201, slot_view(r))
end

local function get_deferred()
  local list, err = capacity.deferred()
  if not list then return api.unavailable(tostring(err)) end
  for _, j in ipairs(list) do j.start = rfc(j.start) end
  return api.reply(200, { jobs = json.array(list) })
end

-- install(add, ctx): the routes (global scope: capacity and cost span tenants).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  if ctx.store then
    local ok, err = require("steward.capacity.history").ready(ctx.store)
    if not ok then error(err, 0) end
  end
  add("GET", "/v1/capacity", "read", get_all)
  add("GET", "/v1/capacity/{service}", "read", get_one)
  add("GET", "/v1/capacity/series/{series}", "read", get_series)
  add("POST", "/v1/capacity/series/{series}", "operate", post_series, "capacity.import")
  add("GET", "/v1/cost", "read", get_cost)
  add("GET", "/v1/cost/cheapest", "read", get_cheapest)
  -- Audited by steward.capacity.defer itself (the slot, its cost, who), as from Lua and the REPL.
  add("POST", "/v1/cost/defer", "operate", post_defer)
  add("GET", "/v1/cost/deferred", "read", get_deferred)
end

return M
