-- steward.runtime.store.domain: what a domain module that keeps its own tables (incidents,
-- approvals) needs from the store, written once: its migration applied on first use, rows read
-- back without NULLs and with their JSON columns decoded, the WHERE clause of a list, a batch
-- committed together with the
-- one event it announces, and calls without the store that use the daemon's.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local events = require "steward.runtime.events"

local type, pairs, ipairs, tostring, select, concat = type, pairs, ipairs, tostring, select, table.concat

local M = {}

-- migrator(name) -> ready(st) -> true | nil, err. The store may have been opened before the
-- module registered its tables, so each store is migrated once, on first use.
function M.migrator(name)
  local migrated = setmetatable({}, { __mode = "k" })
  return function(st)
    util.store_arg(st, name)
    if migrated[st] then return true end
    local ok, err = st:migrate()
    if not ok then return nil, name .. ": store migration failed: " .. tostring(err) end
    migrated[st] = true
    return true
  end
end

-- row(r, json_columns) -> r as a plain table: NULL columns left out, JSON columns decoded
-- (an empty table when the text does not decode).
function M.row(r, json_columns)
  local out = {}
  for k, v in pairs(r) do if v ~= json.null then out[k] = v end end
  for _, c in ipairs(json_columns) do out[c] = json.decode(r[c]) or {} end
  return out
end

-- one(st, decode, sql, ...) -> decode(first row) | false (no row) | nil, err
function M.one(st, decode, sql, ...)
  local rows, err = st.db:query(sql, ...)
  if not rows then return nil, err end
  return rows[1] and decode(rows[1]) or false
end

-- where() -> the WHERE clause of a list under construction: w:add("col = ?", v) adds a
-- condition with its value as the next $n ("state IN (...)" alone, without a ?, adds none);
-- w:clause() -> " WHERE a AND b" or ""; w:param(v) -> "$n" of one more value (a LIMIT);
-- w.params -> the values in order.
local Where = {}
Where.__index = Where

function M.where() return setmetatable({ conds = {}, params = {} }, Where) end

function Where:add(cond, v)
  if cond:find("?", 1, true) then cond = cond:gsub("%?", self:param(v)) end
  self.conds[#self.conds + 1] = cond
end

function Where:param(v)
  self.params[#self.params + 1] = v
  return "$" .. #self.params
end

function Where:clause()
  return #self.conds > 0 and (" WHERE " .. concat(self.conds, " AND ")) or ""
end

-- commit(st, stmts, ev, now) -> results, fresh | nil, err: stmts and the event in one batch.
-- The event's id is deterministic, so a writer that lost a race (or a re-run) inserts no event:
-- fresh is {ev} (with its seq) when this batch inserted it, else empty. The caller hands fresh
-- to events.published once the rest of its change is done.
function M.commit(st, stmts, ev, now)
  local first = #stmts + 1
  for _, s in ipairs(events.insert_statements({ ev }, { json.encode(ev.data) }, now)) do stmts[#stmts + 1] = s end
  local res, err = st.db:batch(stmts)
  if not res then return nil, err end
  local fresh = {}
  for i = first, #res do
    for _, row in ipairs(res[i].rows or {}) do
      if row.id == ev.id then ev.seq = row.seq; fresh[1] = ev end
    end
  end
  return res, fresh
end

-- default_store(mod, names): mod's functions named take the store first; a policy, which is
-- never handed the store, calls them without it (incidents.trigger{...}) and gets the daemon's.
function M.default_store(mod, names)
  local runtime_store = require "steward.runtime.store"
  for _, name in ipairs(names) do
    local f = mod[name]
    if type(f) ~= "function" then error("store.domain.default_store: " .. tostring(name) .. ": not a function", 2) end
    mod[name] = function(first, ...)
      if runtime_store.is_store(first) then return f(first, ...) end
      if first == nil and select("#", ...) > 0 then return f(runtime_store.default(), ...) end
      return f(runtime_store.default(), first, ...)
    end
  end
end

return M
