-- steward.runtime.store.schedules: durable cron schedules. Each schedule keeps the time of its next
-- slot; firing a slot inserts its event under the id "cron:<name>:<slot>" and advances next_at
-- in one batch, so a slot fires exactly once. After downtime only the latest missed slot fires.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local cron = require "steward.runtime.store.cron"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"

local type, error, ipairs, tostring, floor, format = type, error, ipairs, tostring, math.floor, string.format

local M = {}

local function check_name(name, what)
  if type(name) ~= "string" or name == "" or #name > 150 or name:find("[%z\1-\32\127]") then
    error(what .. ": name: 1 to 150 printable bytes without spaces expected", 3)
  end
end

function M.define(st, name, expr, ev, opts)
  util.store_arg(st, "schedules.define")
  check_name(name, "schedules.define")
  if type(expr) ~= "string" then error("schedules.define: expr: string expected", 2) end
  local sched, perr = cron.parse(expr)
  if not sched then error("schedules.define: " .. perr, 2) end
  local text = timers.check_event(ev, "schedules.define")
  opts = util.opt_table(opts, "schedules.define: opts")
  local now = util.now(opts.now)
  local next_at = sched:next(now)
  if not next_at then error("schedules.define: expr: " .. expr .. " never matches", 2) end
  -- Redefining with the same expression keeps next_at, so a define at every start-up does not
  -- skip a slot missed while the daemon was down.
  local res, err = st.db:exec([[INSERT INTO schedules (name, expr, event, next_at, updated)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (name) DO UPDATE SET event = excluded.event, updated = excluded.updated,
      next_at = CASE WHEN schedules.expr = excluded.expr THEN schedules.next_at ELSE excluded.next_at END,
      expr = excluded.expr
    RETURNING next_at]], name, expr, text, next_at, now)
  if not res then return nil, err end
  return res.rows[1].next_at
end

function M.remove(st, name)
  util.store_arg(st, "schedules.remove")
  check_name(name, "schedules.remove")
  local res, err = st.db:exec("DELETE FROM schedules WHERE name = $1", name)
  if not res then return nil, err end
  return res.changes > 0
end

function M.list(st)
  util.store_arg(st, "schedules.list")
  local rows, err = st.db:query("SELECT name, expr, event, next_at, last_fired FROM schedules ORDER BY name")
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { name = r.name, expr = r.expr, event = json.decode(r.event), next_at = r.next_at, last_fired = r.last_fired }
  end
  return out
end

function M.next_due(st)
  util.store_arg(st, "schedules.next_due")
  local rows, err = st.db:query("SELECT MIN(next_at) AS t FROM schedules")
  if not rows then return nil, err end
  return rows[1] and rows[1].t or nil
end

-- fire_due(st, now) → the events this call fired.
function M.fire_due(st, now)
  util.store_arg(st, "schedules.fire_due")
  now = util.now(now)
  local rows, err = st.db:query("SELECT name, expr, event, next_at FROM schedules WHERE next_at <= $1 ORDER BY next_at, name", now)
  if not rows then return nil, err end
  local fired = {}
  for _, r in ipairs(rows) do
    local sched = cron.parse(r.expr)
    -- The latest slot not after now; next_at itself is a slot, so there is one.
    local slot = sched and sched:prev(floor(now) + 1) or r.next_at
    if slot < r.next_at then slot = r.next_at end
    local following = sched and sched:next(now)
    local tmpl = json.decode(r.event) or {}
    tmpl.id = "cron:" .. r.name .. ":" .. format("%d", slot)
    if tmpl.time == nil then tmpl.time = slot end
    local ev, verr, text = events.validate(tmpl, nil, now)
    if not ev then return nil, "schedules: stored event of " .. r.name .. " invalid: " .. tostring(verr.reason) end
    local stmts = events.insert_statements({ ev }, { text }, now)
    stmts[2] = { "UPDATE schedules SET next_at = $1, last_fired = $2 WHERE name = $3 AND next_at = $4",
      util.nullable(following), slot, r.name, r.next_at }
    local res, berr = st.db:batch(stmts)
    if not res then return nil, berr end
    local row = res[1].rows and res[1].rows[1]
    if row then
      ev.seq = row.seq
      fired[#fired + 1] = ev
    end
  end
  return fired
end

return M
