-- steward.deploy.approvals: a step that waits for a person. request{} stores a pending
-- approval, arms a durable timer for its timeout and sends signed approve/deny links through
-- the caller's notify channels; a person decides through the API, the REPL or a link, and
-- the decision is the event approval.granted or approval.denied (approval.expired when the
-- timeout came first), with data.subject for whoever waits (a rollout). A decision is an
-- UPDATE conditional on the approval still being pending, committed with its event and the
-- removal of the timer, so the first decision wins and a second is refused naming it.
-- Policies may request and read approvals; deciding is for people (the runtime's API and
-- REPL, or the daemon's signed links), never for the policy that asked.
local json = require "steward.json"
local crypto = require "steward.crypto"
local log = require "steward.log"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"
local audit = require "steward.runtime.store.audit"
local links = require "steward.alerting.links"
require "steward.deploy.approvals_schema"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local format, max, concat = string.format, math.max, table.concat

local M = {}

M.STATES = { pending = true, granted = true, denied = true, expired = true }
M.DEFAULT_TIMEOUT = 3600
local SOURCE = "steward.deploy.approvals"
local COLS = "id, subject, step, reason, approvers, channels, state, requested_by, created_at, expires_at, " ..
  "decided_at, decided_by, decided_via, comment"
-- Roles that may decide, by the lowest role an approvers entry names.
local ROLE_RANK = { viewer = 1, operator = 2, admin = 3 }

local function now_of(v)
  if v ~= nil then return v end
  return require("steward.time").now() -- late: `steward test` replaces steward.time
end

local ready = domain.migrator("approvals")
M.ready = ready

local function row_approval(r) return domain.row(r, { "approvers", "channels" }) end

-- get(st, id) -> approval | false | nil, err
function M.get(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  if type(id) ~= "string" then error("approvals.get: id: string expected, got " .. type(id), 2) end
  return domain.one(st, row_approval, "SELECT " .. COLS .. " FROM approvals WHERE id = $1", id)
end

-- list(st, {state, subject, limit}) -> approvals, newest first | nil, err
function M.list(st, f)
  local ok, err = ready(st)
  if not ok then return nil, err end
  f = util.opt_table(f, "approvals.list: filter")
  local w = domain.where()
  if f.state ~= nil then
    if not M.STATES[f.state] then error("approvals.list: state: pending, granted, denied or expired expected", 2) end
    w:add("state = ?", f.state)
  end
  if f.subject ~= nil then
    if type(f.subject) ~= "string" then error("approvals.list: subject: string expected", 2) end
    w:add("subject = ?", f.subject)
  end
  local limit = util.limit_arg(f.limit, "approvals.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM approvals" .. w:clause() ..
    " ORDER BY created_at DESC, id DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row_approval(r) end
  return rows
end

local function event_data(a)
  return { approval = a.id, subject = a.subject, step = a.step, state = a.state, reason = a.reason,
           decided_by = a.decided_by, via = a.decided_via, comment = a.comment, expires_at = a.expires_at }
end

-- Runs stmts plus one event in one batch (domain.commit) and publishes the event when this
-- batch inserted it. -> results | nil, err
local function commit(st, stmts, ev, now)
  local res, fresh = domain.commit(st, stmts, ev, now)
  if not res then return nil, fresh end
  events.published(st, fresh)
  return res
end

-- ---- signed links ----

M.LINK_ACTIONS = { approve = true, deny = true }

-- The key is the daemon's link key (alerting.link_secret_file), shared with incident links;
-- the signed payload names approvals, and a link is dead from the second its approval expires.
local signer = links.signer{ name = "approvals", actions = M.LINK_ACTIONS, actions_text = "approve or deny",
  path = "/v1/approvals", purpose = "approval" }

-- sign(id, action, exp) -> hex | nil, err
M.sign = signer.sign

-- link(approval, action) -> URL | nil, err: valid until the approval expires, usable once
-- (a decided approval takes no second decision).
function M.link(a, action) return signer.url(a.id, action, a.expires_at) end

-- verify(id, action, exp, sig [, now]) -> true | nil, reason ("expired", "bad signature", ...)
function M.verify(id, action, exp, sig, now) return signer.verify(id, action, exp, sig, now_of(now)) end

-- ---- request ----

local KNOWN = { subject = true, step = true, timeout = true, approvers = true, notify = true, reason = true,
  requested_by = true, key = true, now = true }

local function str(v, field, max)
  if v == nil then return nil end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" or v == "" then error(format("approvals.request: %s: non-empty string expected, got %s", field, type(v)), 4) end
  if #v > max then error(format("approvals.request: %s: at most %d bytes", field, max), 4) end
  return v
end

local function check_spec(spec)
  if type(spec) ~= "table" then error("approvals.request: spec: table expected, got " .. type(spec), 3) end
  for k in pairs(spec) do
    if not KNOWN[k] then error("approvals.request: " .. tostring(k) .. ": unknown field", 3) end
  end
  local s = {}
  s.subject = str(spec.subject, "subject", 200)
  if not s.subject then error("approvals.request: subject: non-empty string expected (what waits: \"rollout:api:r42\")", 3) end
  s.step = str(spec.step, "step", 200)
  s.reason = str(spec.reason, "reason", 2000)
  s.requested_by = str(spec.requested_by, "requested_by", 200)
  s.key = str(spec.key, "key", 200)
  if spec.timeout == nil then
    s.timeout = M.DEFAULT_TIMEOUT
  else
    s.timeout = util.duration_arg(spec.timeout, "approvals.request: timeout")
    if s.timeout <= 0 then error("approvals.request: timeout: positive duration expected", 3) end
  end
  local ap = spec.approvers or { "operator" }
  if type(ap) == "string" then ap = { ap } end
  if type(ap) ~= "table" or ap[1] == nil then
    error("approvals.request: approvers: a non-empty list of roles (operator, admin) or token names expected", 3)
  end
  s.approvers = {}
  for i, a in ipairs(ap) do
    if type(a) ~= "string" or a == "" or #a > 200 then
      error(format("approvals.request: approvers[%d]: a role or a token name expected", i), 3)
    end
    s.approvers[i] = a
  end
  local ch = spec.notify or {}
  if type(ch) ~= "table" then error("approvals.request: notify: a list of notify channels expected", 3) end
  if ch.send then ch = { ch } end
  s.notify = {}
  for i, c in ipairs(ch) do
    if type(c) ~= "table" or type(c.send) ~= "function" then
      error(format("approvals.request: notify[%d]: a notify channel (steward.notify.channel) expected", i), 3)
    end
    s.notify[i] = c
  end
  return s
end

local function id_for(key)
  -- A key makes requesting idempotent: a handler that runs again asks no second time.
  return "apr-" .. crypto.hex(crypto.sha256("approval-key\n" .. key)):sub(1, 32)
end

local function message(a)
  local lines = {}
  lines[#lines + 1] = format("Approval requested: %s%s", a.subject, a.step and (", step " .. a.step) or "")
  if a.reason then lines[#lines + 1] = a.reason end
  lines[#lines + 1] = format("Approvers: %s. Expires %s.", concat(a.approvers, ", "), util.format_rfc3339(a.expires_at))
  local ok_url = M.link(a, "approve")
  local no_url = M.link(a, "deny")
  if ok_url then lines[#lines + 1] = "Approve: " .. ok_url end
  if no_url then lines[#lines + 1] = "Deny: " .. no_url end
  return { title = "Approval needed: " .. a.subject, text = concat(lines, "\n"), severity = "info",
           url = ok_url, source = "steward approval " .. a.id, labels = { subject = a.subject, approval = a.id } }
end

-- request(st, spec) -> id, sent | nil, err. spec = {subject, step, timeout (default 1h),
-- approvers (roles or token names; default {"operator"}), notify (notify channels), reason,
-- requested_by, key (idempotency)}. sent: per channel name, "sent" or the error.
function M.request(st, spec)
  local s = check_spec(spec)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = now_of(spec.now)
  local id = s.key and id_for(s.key) or util.uuidv7(now)
  local cur
  cur, err = M.get(st, id)
  if cur == nil then return nil, err end
  if cur then
    -- Asked before (a handler running again): arm the timeout again in case the first run
    -- stopped before it did (the timer's key makes this a no-op otherwise).
    if cur.state == "pending" then
      timers.after(st, max(0, cur.expires_at - now), { type = "approval.timeout", source = SOURCE,
        data = { approval = id, subject = cur.subject } }, { key = "approval:" .. id, now = now })
    end
    return id, {}
  end
  local names = {}
  for i, c in ipairs(s.notify) do names[i] = c.name or c.kind end
  local a = { id = id, subject = s.subject, step = s.step, reason = s.reason, approvers = s.approvers,
    channels = names, state = "pending", requested_by = s.requested_by, created_at = now, expires_at = now + s.timeout }
  local ev = { id = "approval:" .. id .. ":requested", type = "approval.requested", source = SOURCE, time = now,
    data = event_data(a) }
  local res
  res, err = commit(st, {
    { "INSERT INTO approvals (" .. COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) " ..
      "ON CONFLICT (id) DO NOTHING", id, a.subject, util.nullable(a.step), util.nullable(a.reason),
      json.encode(a.approvers), json.encode(json.array(names)), "pending", util.nullable(a.requested_by), now,
      a.expires_at, json.null, json.null, json.null, json.null },
  }, ev, now)
  if not res then return nil, err end
  -- The timeout: a durable timer (fires after a restart too, once); its key makes arming idempotent.
  local tid
  tid, err = timers.after(st, s.timeout, { type = "approval.timeout", source = SOURCE,
    data = { approval = id, subject = a.subject } }, { key = "approval:" .. id, now = now })
  if not tid then log.warn("approvals: cannot arm the timeout timer", { approval = id, error = tostring(err) }) end
  local sent = {}
  if #s.notify > 0 then
    local msg = message(a)
    for i, c in ipairs(s.notify) do
      local r, serr = c:send(msg, { key = "approval:" .. id .. ":" .. names[i] })
      sent[names[i]] = r and "sent" or tostring(serr)
      if not r then log.warn("approvals: cannot notify", { approval = id, channel = names[i], error = tostring(serr) }) end
    end
  end
  return id, sent
end

-- ---- decisions ----

-- may_decide(approval, {role, name}) -> true | nil, reason. An approvers entry is a role
-- (that role or a higher one decides) or a token name; the admin role always may.
function M.may_decide(a, who)
  who = who or {}
  if who.role == "admin" or who.via == "link" then return true end
  local rank = ROLE_RANK[who.role or ""] or 0
  for _, ap in ipairs(a.approvers or {}) do
    local need = ROLE_RANK[ap]
    if need then
      if rank >= need and rank >= ROLE_RANK.operator then return true end
    elseif who.name and ap == who.name then
      return true
    end
  end
  return nil, format("%s may not decide approval %s (approvers: %s)", who.name or who.role or "this caller", a.id,
    concat(a.approvers or {}, ", "))
end

local function decided_msg(cur)
  if cur.state == "expired" then
    return format("approval %s expired at %s", cur.id, util.format_rfc3339(cur.decided_at or cur.expires_at))
  end
  return format("approval %s was already %s by %s via %s at %s", cur.id, cur.state, tostring(cur.decided_by),
    tostring(cur.decided_via), util.format_rfc3339(cur.decided_at or 0))
end

-- Moves a pending approval to state; -> approval | nil, err, current (already decided).
local function transition(st, id, state, o)
  local now = now_of(o.now)
  local cond = "state = 'pending'"
  if state == "expired" then cond = cond .. " AND expires_at <= $7" end
  local ev_type = state == "expired" and "approval.expired" or ("approval." .. state)
  for _ = 1, 4 do
    local cur, err = M.get(st, id)
    if cur == nil then return nil, err end
    if not cur then return nil, "no approval " .. id end
    if cur.state ~= "pending" then return nil, decided_msg(cur), cur end
    if state ~= "expired" and cur.expires_at <= now then
      -- Past its timeout (the timer may not have fired yet): it expired, whoever comes now.
      local ex, xerr, xcur = transition(st, id, "expired", { now = now, actor = "timeout", via = "timer" })
      if not ex then return nil, xerr, xcur end
      return nil, decided_msg(ex), ex
    end
    local new = {}
    for k, v in pairs(cur) do new[k] = v end
    new.state, new.decided_at, new.decided_by, new.decided_via, new.comment = state, now, o.actor, o.via, o.comment
    local params = { id, state, now, util.nullable(o.actor), util.nullable(o.via), util.nullable(o.comment) }
    if state == "expired" then params[#params + 1] = now end
    local res
    res, err = commit(st, {
      { "UPDATE approvals SET state = $2, decided_at = $3, decided_by = $4, decided_via = $5, comment = $6 " ..
        "WHERE id = $1 AND " .. cond, unpack(params) },
      { "DELETE FROM timers WHERE id = $1", "k:approval:" .. id },
    }, { id = "approval:" .. id .. ":decided", type = ev_type, source = SOURCE, time = now, data = event_data(new) }, now)
    if not res then return nil, err end
    if res[1].changes == 1 then return new end
    -- Someone else decided in between: read again and answer with theirs.
  end
  return nil, "approval " .. id .. ": too many concurrent decisions"
end

local DECISIONS = { approve = "granted", deny = "denied", granted = "granted", denied = "denied" }

-- decide(st, id, decision, {actor, via, comment, role, name, now}) -> approval | nil, err, current.
-- decision: "approve" or "deny". via: "api", "repl" or "link". The decision (or its refusal)
-- is written to the audit log: who, how, when, and the comment.
function M.decide(st, id, decision, o)
  local ok, err = ready(st)
  if not ok then return nil, err end
  if type(id) ~= "string" then error("approvals.decide: id: string expected, got " .. type(id), 2) end
  local state = DECISIONS[decision]
  if not state then error("approvals.decide: decision: approve or deny expected", 2) end
  o = o or {}
  if type(o) ~= "table" then error("approvals.decide: opts: table expected", 2) end
  if o.comment ~= nil and (type(o.comment) ~= "string" or #o.comment > 2000) then
    error("approvals.decide: comment: string of at most 2000 bytes expected", 2)
  end
  local a, cur
  local pre
  pre, err = M.get(st, id)
  if pre == nil then return nil, err end
  if pre and pre.state == "pending" then
    local allowed, why = M.may_decide(pre, { role = o.role, name = o.name, via = o.via })
    if not allowed then a, err, cur = nil, why, nil else a, err, cur = transition(st, id, state, o) end
  elseif pre then
    err, cur = decided_msg(pre), pre
  else
    err = "no approval " .. id
  end
  local entry = { source = o.via == "repl" and "repl" or "http", actor = o.audit_actor or o.actor, role = o.role,
    uid = o.uid, session = o.session, command = "approval." .. (state == "granted" and "approve" or "deny"), target = id,
    outcome = a and "ok" or "refused",
    detail = format("via %s%s%s%s", tostring(o.via),
      -- A link carries no name: say where it was sent.
      (o.via == "link" and pre and #(pre.channels or {}) > 0) and (" sent to " .. concat(pre.channels, ", ")) or "",
      o.comment and ("; comment: " .. o.comment) or "", a and "" or ("; " .. tostring(err))) }
  local aok, aerr = audit.append(st, entry)
  if not aok then log.error("audit: cannot record an approval decision", { approval = id, error = tostring(aerr) }) end
  if a then return a end
  return nil, err, cur
end

-- expire(st, id [, now]) -> approval | nil, err, current: a pending approval past its timeout.
function M.expire(st, id, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  return transition(st, id, "expired", { now = now, actor = "timeout", via = "timer" })
end

-- expire_due(st [, now]) -> how many expired: every pending approval past its timeout (the
-- daemon runs it at start, so a timeout that fell while it was down is not lost).
function M.expire_due(st, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = now_of(now)
  local rows
  rows, err = st.db:query("SELECT id FROM approvals WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT 1000", now)
  if not rows then return nil, err end
  local n = 0
  for _, r in ipairs(rows) do
    if M.expire(st, r.id, now) then n = n + 1 end
  end
  return n
end

-- The timeout timer's event (approval.timeout) becomes approval.expired wherever the module is
-- loaded: the daemon hands fired timers to the event subscribers, and so does `steward test`'s
-- fake clock. The expiry runs in the task that fired the timer (so a spec sees it when
-- clock.advance returns); where that task cannot wait, in a task of its own.
events.subscribe(function(st, list)
  for _, ev in ipairs(list) do
    if ev.type == "approval.timeout" and type(ev.data) == "table" and type(ev.data.approval) == "string" then
      local id = ev.data.approval
      local function run()
        local a, err, cur = M.expire(st, id)
        if not a and not cur then log.warn("approvals: cannot expire", { approval = id, error = tostring(err) }) end
      end
      local ok, err = pcall(run)
      if not ok then
        if tostring(err):match("cannot suspend") or tostring(err):match("inside a task") then
          require("steward.task").spawn(run)
        else
          log.warn("approvals: cannot expire", { approval = id, error = tostring(err) })
        end
      end
    end
  end
end)

-- Policies call these without the store (approvals.request{...}) and get the daemon's.
domain.default_store(M, { "get", "list", "request", "decide", "expire", "expire_due" })

return M
