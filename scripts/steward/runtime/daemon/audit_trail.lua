-- The one helper every HTTP mutation calls to write its audit entry (docs/audit.md): who (the
-- token's id and name), what (an action name), the target, digests of the state before and
-- after, and the outcome. A failed audit write is logged and counted; the request's answer
-- stands (the change is made by then).
local audit = require "steward.runtime.store.audit"
local json = require "steward.json"
local log = require "steward.log"
local metrics = require "steward.metrics"

local type, tostring = type, tostring

local M = {}

local m_failed = metrics.counter("steward_audit_write_failures_total",
  "Audit entries that could not be written (see the log)", {})

M.digest = audit.digest

-- The principal as the audit log names it: "token:<id> (<name>)", or "admin" for the
-- bootstrap token.
function M.actor(principal)
  if not principal then return nil end
  if principal.id == "admin" then return "admin" end
  local s = "token:" .. tostring(principal.id)
  if principal.name then s = s .. " (" .. principal.name .. ")" end
  return s
end

-- "ok" for a 2xx answer, else "refused" (4xx) or "failed" (5xx), with the error's message.
local function outcome(status, body)
  if status < 300 then return "ok" end
  local doc = type(body) == "string" and body ~= "" and json.decode(body)
  local msg = type(doc) == "string" and doc -- the Alertmanager API's errors are bare strings
    or type(doc) == "table" and (type(doc.error) == "table" and doc.error.message or doc.message)
  local detail = "HTTP " .. status .. (type(msg) == "string" and (": " .. msg) or "")
  return status < 500 and "refused" or "failed", detail
end

-- record(ctx, {action, actor, role, target, before, after, outcome, detail, source}) -> true | nil, err
function M.record(ctx, e)
  if not ctx.store or (ctx.store_ok and not ctx.store_ok()) then return nil, "no store" end
  local id, err = audit.append(ctx.store, { source = e.source or "http", actor = e.actor, role = e.role,
    command = e.action, target = e.target and tostring(e.target) or nil, before = e.before, after = e.after,
    outcome = e.outcome or "ok", detail = e.detail })
  if not id then
    m_failed:inc(1)
    log.error("audit: cannot record a change", { action = e.action, target = e.target, error = err })
    return nil, err
  end
  return true
end

-- http(ctx, action, req, principal, status, body): after a mutating route answered. The
-- handler may have left req.audit = {target, before, after, detail}; the target defaults to
-- the route's {name} or {id}.
function M.http(ctx, action, req, principal, status, body)
  local a = type(req.audit) == "table" and req.audit or {}
  local result, detail = outcome(status, body)
  local params = req.params or {}
  return M.record(ctx, { action = action, actor = M.actor(principal), role = principal and principal.role,
    target = a.target or params.name or params.id, before = a.before, after = a.after, outcome = result,
    detail = a.detail or detail })
end

return M
