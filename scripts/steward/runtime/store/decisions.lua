-- steward.runtime.store.decisions: the decision log, one row per policy run: what it saw (an event id
-- or its input), what it decided, how long it took and which side effects it caused, so that
-- "why did steward do that?" has an answer.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
require "steward.runtime.store.schema"

local type, error, ipairs, tostring, next, floor, min = type, error, ipairs, tostring, next, math.floor, math.min

local M = {}

local COLUMNS = "id, ref, policy, version, tenant, event_id, input, outcome, result, error, duration, side_effects, time"

local function json_field(v, name)
  if v == nil then return nil end
  local text, err = json.encode(v)
  if not text then error("decisions.record: " .. name .. ": " .. tostring(err), 3) end
  return text
end

local function row_decision(r)
  return {
    id = r.id, ref = r.ref, policy = r.policy, version = r.version, tenant = r.tenant, event_id = r.event_id, input = util.decode(r.input),
    outcome = r.outcome, result = util.decode(r.result), error = r.error, duration = r.duration,
    side_effects = util.decode(r.side_effects), time = r.time,
  }
end

function M.record(st, d)
  util.store_arg(st, "decisions.record")
  if type(d) ~= "table" then error("decisions.record: decision: table expected, got " .. type(d), 2) end
  if type(d.policy) ~= "string" or d.policy == "" then error("decisions.record: policy: non-empty string expected", 2) end
  if type(d.outcome) ~= "string" or d.outcome == "" then error("decisions.record: outcome: non-empty string expected", 2) end
  local version = d.version
  if version ~= nil and type(version) ~= "string" and type(version) ~= "number" then
    error("decisions.record: version: string or number expected", 2)
  end
  if d.event_id ~= nil and type(d.event_id) ~= "string" then error("decisions.record: event_id: string expected", 2) end
  if d.tenant ~= nil and type(d.tenant) ~= "string" then error("decisions.record: tenant: string expected", 2) end
  if d.duration ~= nil and type(d.duration) ~= "number" then error("decisions.record: duration: seconds expected", 2) end
  local effects = d.side_effects
  if effects ~= nil and (type(effects) ~= "table" or not (json.is_array(effects) or #effects > 0 or next(effects) == nil)) then
    error("decisions.record: side_effects: JSON array expected", 2)
  end
  if effects ~= nil and next(effects) == nil then effects = json.array() end
  local err_text = d.error
  if err_text ~= nil then err_text = tostring(err_text) end
  local now = util.now(d.time)
  local res, err = st.db:exec("INSERT INTO decisions (policy, version, event_id, input, outcome, result, error," ..
    " duration, side_effects, time, tenant) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    d.policy, version ~= nil and tostring(version) or nil, d.event_id, json_field(d.input, "input"), d.outcome,
    json_field(d.result, "result"), err_text, d.duration, json_field(effects, "side_effects"), now, d.tenant)
  if not res then return nil, err end
  return res.rows[1].id
end

function M.get(st, id)
  util.store_arg(st, "decisions.get")
  if type(id) ~= "number" or id ~= floor(id) then error("decisions.get: id: integer expected", 2) end
  local rows, err = st.db:query("SELECT " .. COLUMNS .. " FROM decisions WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row_decision(rows[1]) or nil
end

-- get_ref(st, ref) -> the decision known outside by ref (its UUIDv7 decision id), or nil
function M.get_ref(st, ref)
  util.store_arg(st, "decisions.get_ref")
  if type(ref) ~= "string" or ref == "" then error("decisions.get_ref: ref: non-empty string expected", 2) end
  local rows, err = st.db:query("SELECT " .. COLUMNS .. " FROM decisions WHERE ref = $1", ref)
  if not rows then return nil, err end
  return rows[1] and row_decision(rows[1]) or nil
end

-- query(st, {policy, event_id, outcome, tenant, since, until, limit, cursor}) → {decisions, next_cursor},
-- oldest first.
function M.query(st, f)
  util.store_arg(st, "decisions.query")
  f = util.opt_table(f, "decisions.query: filter")
  local limit = util.limit_arg(f.limit, "decisions.query: limit", 100, 1000)
  local conds, params = {}, {}
  local function add(col, op, v)
    params[#params + 1] = v
    conds[#conds + 1] = col .. " " .. op .. " $" .. #params
  end
  for _, name in ipairs { "policy", "event_id", "outcome", "ref", "tenant" } do
    if f[name] ~= nil then
      if type(f[name]) ~= "string" then error("decisions.query: " .. name .. ": string expected", 2) end
      add(name, "=", f[name])
    end
  end
  if f.since ~= nil then add("time", ">=", util.time_arg(f.since, "decisions.query: since")) end
  if f["until"] ~= nil then add("time", "<", util.time_arg(f["until"], "decisions.query: until")) end
  if f.cursor ~= nil then
    local after = util.cursor_decode("dc", f.cursor)
    if not after then return nil, "decisions.query: cursor: not a cursor this function returned" end
    add("id", ">", after)
  end
  params[#params + 1] = limit + 1
  local sql = "SELECT " .. COLUMNS .. " FROM decisions" .. (#conds > 0 and (" WHERE " .. table.concat(conds, " AND ")) or "") ..
    " ORDER BY id LIMIT $" .. #params
  local rows, err = st.db:query(sql, unpack(params, 1, #params))
  if not rows then return nil, err end
  local out = {}
  for i = 1, min(#rows, limit) do out[i] = row_decision(rows[i]) end
  return { decisions = out, next_cursor = #rows > limit and util.cursor_encode("dc", out[#out].id) or nil }
end

-- latest(st, {policy, event_id, outcome, n}) -> the n (default 20, at most 1000) newest
-- decisions, oldest of them first, so a list read top to bottom ends with the last one.
function M.latest(st, f)
  util.store_arg(st, "decisions.latest")
  f = util.opt_table(f, "decisions.latest: filter")
  local n = util.limit_arg(f.n, "decisions.latest: n", 20, 1000)
  local conds, params = {}, {}
  for _, name in ipairs { "policy", "event_id", "outcome" } do
    if f[name] ~= nil then
      if type(f[name]) ~= "string" then error("decisions.latest: " .. name .. ": string expected", 2) end
      params[#params + 1] = f[name]
      conds[#conds + 1] = name .. " = $" .. #params
    end
  end
  params[#params + 1] = n
  local rows, err = st.db:query("SELECT " .. COLUMNS .. " FROM decisions" ..
    (#conds > 0 and (" WHERE " .. table.concat(conds, " AND ")) or "") .. " ORDER BY id DESC LIMIT $" .. #params,
    unpack(params, 1, #params))
  if not rows then return nil, err end
  local out = {}
  for i = #rows, 1, -1 do out[#out + 1] = row_decision(rows[i]) end
  return out
end

function M.purge(st, opts)
  util.store_arg(st, "decisions.purge")
  if type(opts) ~= "table" or opts.before == nil then error("decisions.purge: opts.before: time expected", 2) end
  local res, err = st.db:exec("DELETE FROM decisions WHERE time < $1", util.time_arg(opts.before, "decisions.purge: before"))
  if not res then return nil, err end
  return res.changes
end

return M
