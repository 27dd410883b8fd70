-- steward.success.tickets: support tickets (open -> pending -> solved -> closed) filed through
-- the API or by mail, routed to a queue by the shipped policy success.tickets, with an SLA due
-- time, and a CSAT survey answered once through a signed link. Every change and the event that
-- announces it (ticket.opened, ticket.routed, ticket.<state>, ticket.rated) commit as one
-- unit; a change is an UPDATE conditional on the revision it read, so of two concurrent
-- changes one applies and the loser adds nothing.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local links = require "steward.alerting.links"
require "steward.success.schema"

local type, pairs, ipairs, tostring, tonumber, error, unpack, pcall, require =
  type, pairs, ipairs, tostring, tonumber, error, unpack, pcall, require
local format, floor = string.format, math.floor

local M = {}

M.STATES = { open = true, pending = true, solved = true, closed = true }
M.SEVERITIES = { low = true, normal = true, high = true, urgent = true }
-- Which state may follow which: a closed ticket is final (its survey may be answered).
M.NEXT = {
  open = { pending = true, solved = true, closed = true },
  pending = { open = true, solved = true, closed = true },
  solved = { open = true, closed = true },
  closed = {},
}
M.CSAT_TTL = 30 * 86400

local SOURCE = "steward.success.tickets"
local COLS = "id, tenant, subject, body, requester, severity, plan, source, message_id, state, queue, sla_due, " ..
  "breached, created, updated, closed, revision"

local ready = domain.migrator("success")
M.ready = ready

local function row(r)
  local t = domain.row(r, {})
  t.breached = t.breached == 1 or t.breached == true
  return t
end

-- get(st, id) -> ticket | false | nil, err
function M.get(st, id)
  if type(id) ~= "string" then error("tickets.get: id: string expected, got " .. type(id), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM success_tickets WHERE id = $1", id)
end

-- list(st, {tenant=, state=, queue=, limit=}) -> tickets, newest first | nil, err
function M.list(st, f)
  f = f or {}
  if type(f) ~= "table" then error("tickets.list: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  for _, k in ipairs({ "tenant", "state", "queue" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then error("tickets.list: " .. k .. ": string expected", 2) end
      w:add(k .. " = ?", f[k])
    end
  end
  local limit = util.limit_arg(f.limit, "tickets.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM success_tickets" .. w:clause() ..
    " ORDER BY created DESC, id DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

local function event_of(t, type_, rev, now, extra)
  local d = { ticket = t.id, state = t.state, queue = t.queue, severity = t.severity, plan = t.plan,
              subject = t.subject, requester = t.requester, source = t.source }
  for k, v in pairs(extra or {}) do d[k] = v end
  -- the id follows the revision: of two changes of one revision only the winner's event is new
  return { id = format("ticket:%s:%s", t.id, tostring(rev)), type = type_, tenant = t.tenant, time = now,
           source = SOURCE, data = d }
end

local function str(v, field, max, required)
  if v == nil or v == json.null then
    if required then return nil, field .. ": required" end
    return nil
  end
  if type(v) ~= "string" then return nil, field .. ": string expected, got " .. type(v) end
  if required and v == "" then return nil, field .. ": must not be empty" end
  if #v > max then return nil, format("%s: at most %d bytes, got %d", field, max, #v) end
  return v
end

local KNOWN = { tenant = true, subject = true, body = true, requester = true, severity = true, plan = true,
                source = true, message_id = true }

-- validate(t) -> fields | nil, "field: reason" (for the API and the mail intake alike)
function M.validate(t)
  if type(t) ~= "table" then return nil, "ticket: object expected" end
  for k in pairs(t) do
    if not KNOWN[k] then return nil, tostring(k) .. ": unknown field (subject, body, requester, severity, tenant, plan)" end
  end
  local out, err = {}, nil
  out.tenant, err = str(t.tenant, "tenant", 63, true)
  if err then return nil, err end
  if not out.tenant:match("^[a-z0-9][a-z0-9_-]*$") then
    return nil, "tenant: lower-case letters, digits, '_' and '-' expected"
  end
  out.subject, err = str(t.subject, "subject", 300, true)
  if err then return nil, err end
  out.body, err = str(t.body, "body", 100000)
  if err then return nil, err end
  out.requester, err = str(t.requester, "requester", 320, true)
  if err then return nil, err end
  if not out.requester:match("^[^%s@<>]+@[^%s@<>]+$") then return nil, "requester: an email address expected" end
  out.severity, err = str(t.severity, "severity", 20)
  if err then return nil, err end
  out.severity = out.severity or "normal"
  if not M.SEVERITIES[out.severity] then return nil, "severity: one of low, normal, high, urgent expected" end
  out.plan, err = str(t.plan, "plan", 63)
  if err then return nil, err end
  out.source = t.source or "api"
  out.message_id, err = str(t.message_id, "message_id", 998)
  if err then return nil, err end
  out.body = out.body or ""
  return out
end

-- open(st, fields [, now]) -> ticket, created (false: a mail seen before, its ticket) | nil, err
function M.open(st, fields, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local f
  f, err = M.validate(fields)
  if not f then return nil, err end
  now = util.now(now)
  if f.plan == nil then
    -- the tenant record (steward.tenants, when present) knows its plan
    local okt, tenants = pcall(require, "steward.tenants")
    local okg, rec = false, nil
    if okt and type(tenants) == "table" and type(tenants.get) == "function" then okg, rec = pcall(tenants.get, f.tenant) end
    if okg and type(rec) == "table" and type(rec.plan) == "string" then f.plan = rec.plan end
  end
  if f.message_id then
    local seen = domain.one(st, row, "SELECT " .. COLS .. " FROM success_tickets WHERE message_id = $1", f.message_id)
    if seen then return seen, false end
  end
  local t = { id = "tk-" .. util.uuidv7(now), tenant = f.tenant, subject = f.subject, body = f.body,
              requester = f.requester, severity = f.severity, plan = f.plan, source = f.source,
              message_id = f.message_id, state = "open", breached = false, created = now, updated = now, revision = 1 }
  local stmts = { { "INSERT INTO success_tickets (id, tenant, subject, body, requester, severity, plan, source, " ..
    "message_id, state, breached, created, updated, revision) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'open',0,$10,$10,1)",
    t.id, t.tenant, t.subject, t.body, t.requester, t.severity, util.nullable(t.plan), t.source,
    util.nullable(t.message_id), now } }
  local res, fresh = domain.commit(st, stmts, event_of(t, "ticket.opened", 1, now), now)
  if not res then
    -- two deliveries of one mail at once: the other made the ticket
    if f.message_id then
      local seen = domain.one(st, row, "SELECT " .. COLS .. " FROM success_tickets WHERE message_id = $1", f.message_id)
      if seen then return seen, false end
    end
    return nil, fresh
  end
  events.published(st, fresh)
  return t, true
end

-- Applies a change to the revision read: -> ticket after | nil, err ("conflict" when another
-- change came first).
local function change(st, t, sets, params, type_, now, extra)
  local rev = t.revision + 1
  local sql = "UPDATE success_tickets SET " .. sets .. ", updated = $1, revision = $2 WHERE id = $3 AND revision = $4"
  local stmt = { sql, now, rev, t.id, t.revision }
  for _, p in ipairs(params) do stmt[#stmt + 1] = p end
  local after = {}
  for k, v in pairs(t) do after[k] = v end
  after.revision, after.updated = rev, now
  return after, stmt, event_of(after, type_, rev, now, extra)
end

local function commit_change(st, after, stmt, ev, now)
  local res, fresh = domain.commit(st, { stmt }, ev, now)
  if not res then return nil, fresh end
  if res[1].changes ~= 1 then return nil, "conflict: the ticket changed meanwhile" end
  ev.data.state = after.state
  events.published(st, fresh)
  return after
end

local function load(st, id, what)
  if type(id) ~= "string" then error(what .. ": id: string expected, got " .. type(id), 3) end
  local t, err = M.get(st, id)
  if t == nil then return nil, err end
  if not t then return nil, "not found: no ticket " .. id end
  return t
end

-- route(st, id, queue, sla_due [, now]) -> ticket | nil, err: the queue the routing policy
-- chose and when the SLA falls due (announced as ticket.routed).
function M.route(st, id, queue, sla_due, now)
  if type(queue) ~= "string" or not queue:match("^[%w._-]+$") or #queue > 100 then
    error("tickets.route: queue: a name of letters, digits, '.', '_' or '-' expected", 2)
  end
  if sla_due ~= nil and type(sla_due) ~= "number" then error("tickets.route: sla_due: number expected", 2) end
  local t, err = load(st, id, "tickets.route")
  if not t then return nil, err end
  now = util.now(now)
  local after, stmt, ev = change(st, t, "queue = $5, sla_due = $6", { queue, util.nullable(sla_due) }, "ticket.routed", now,
    { sla_due = sla_due })
  after.queue, after.sla_due = queue, sla_due
  ev.data.queue = queue
  return commit_change(st, after, stmt, ev, now)
end

-- breach(st, id [, now]) -> ticket (breached = true) | false (solved or closed in time, or
-- marked before) | nil, err. Announced as ticket.sla_breached.
function M.breach(st, id, now)
  local t, err = load(st, id, "tickets.breach")
  if not t then return nil, err end
  if t.breached or t.state == "solved" or t.state == "closed" then return false end
  now = util.now(now)
  local after, stmt, ev = change(st, t, "breached = 1", {}, "ticket.sla_breached", now)
  after.breached = true
  return commit_change(st, after, stmt, ev, now)
end

-- set_state(st, id, state, actor [, now]) -> ticket | nil, err (a move the states do not
-- allow is an error naming both). Announced as ticket.<state>.
function M.set_state(st, id, state, actor, now)
  if not M.STATES[state] then error("tickets.set_state: state: one of open, pending, solved, closed expected", 2) end
  local t, err = load(st, id, "tickets.set_state")
  if not t then return nil, err end
  if not M.NEXT[t.state][state] then return nil, format("invalid: a %s ticket cannot become %s", t.state, state) end
  now = util.now(now)
  local closed = state == "closed" and now or nil
  local after, stmt, ev = change(st, t, "state = $5, closed = $6", { state, util.nullable(closed) },
    "ticket." .. state, now, { actor = actor, from = t.state })
  after.state, after.closed = state, closed
  return commit_change(st, after, stmt, ev, now)
end

-- ---- CSAT ----

M.LINK_ACTIONS = { rate = true }
local signer = links.signer{ name = "tickets.csat", actions = M.LINK_ACTIONS, actions_text = "rate",
  path = "/v1/csat", purpose = "csat" }

-- csat_url(ticket [, now]) -> URL | nil, err: the survey link mailed on close, valid 30 days.
function M.csat_url(t, now)
  if type(t) ~= "table" or type(t.id) ~= "string" then error("tickets.csat_url: ticket expected", 2) end
  return signer.url(t.id, "rate", floor(util.now(now)) + M.CSAT_TTL)
end

function M.csat_verify(id, action, exp, sig, now) return signer.verify(id, action, exp, sig, util.now(now)) end

-- rate(st, id, score, comment [, now]) -> answer | nil, err: once per ticket ("already
-- answered" the second time), only for a closed ticket.
function M.rate(st, id, score, comment, now)
  if type(score) ~= "number" or score ~= floor(score) or score < 1 or score > 5 then
    return nil, "score: an integer from 1 to 5 expected"
  end
  comment = comment or ""
  if type(comment) ~= "string" or #comment > 2000 then return nil, "comment: a string of at most 2000 bytes expected" end
  local t, err = load(st, id, "tickets.rate")
  if not t then return nil, err end
  if t.state ~= "closed" then return nil, "invalid: the ticket is " .. t.state .. ", not closed" end
  now = util.now(now)
  local ev = event_of(t, "ticket.rated", "rated", now, { score = score })
  local res, fresh = domain.commit(st, { { "INSERT INTO success_csat (ticket, tenant, queue, score, comment, answered) " ..
    "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (ticket) DO NOTHING RETURNING ticket",
    t.id, t.tenant, util.nullable(t.queue), score, comment, now } }, ev, now)
  if not res then return nil, fresh end
  if #(res[1].rows or {}) == 0 then return nil, "already answered: this survey took its answer before" end
  events.published(st, fresh)
  return { ticket = t.id, tenant = t.tenant, queue = t.queue, score = score, comment = comment, answered = now }
end

-- answer(st, id) -> answer | false | nil, err
function M.answer(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, function(r) return domain.row(r, {}) end,
    "SELECT ticket, tenant, queue, score, comment, answered FROM success_csat WHERE ticket = $1", id)
end

-- csat(st, {tenant=}) -> {{tenant, queue, answers, average, satisfied}} (satisfied: the share
-- of 4 and 5, CSAT's usual definition) | nil, err
function M.csat(st, f)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f and f.tenant then w:add("tenant = ?", f.tenant) end
  local rows
  rows, err = st.db:query("SELECT tenant, COALESCE(queue, '') AS queue, COUNT(*) AS answers, AVG(score) AS average, " ..
    "SUM(CASE WHEN score >= 4 THEN 1 ELSE 0 END) AS satisfied FROM success_csat" .. w:clause() ..
    " GROUP BY tenant, COALESCE(queue, '') ORDER BY tenant, 2", unpack(w.params))
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do
    local n = tonumber(r.answers)
    out[i] = { tenant = r.tenant, queue = r.queue, answers = n, average = floor(tonumber(r.average) * 100 + 0.5) / 100,
               satisfied = floor(tonumber(r.satisfied) / n * 1000 + 0.5) / 1000 }
  end
  return out
end

-- open_count(st, tenant) -> number of tickets not solved or closed | nil, err
function M.open_count(st, tenant)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT COUNT(*) AS n FROM success_tickets WHERE tenant = $1 AND state IN ('open', 'pending')", tenant)
  if not rows then return nil, err end
  return tonumber(rows[1].n)
end

domain.default_store(M, { "get", "list", "open", "route", "breach", "set_state", "rate", "answer", "csat", "open_count" })

return M
