-- The notification log: per (group key, receiver, integration) the firing and resolved
-- fingerprints last notified, when, and how many plain repeats followed (for repeat backoff).
-- needs_update is Alertmanager 0.25's DedupStage decision.
local json = require "steward.json"
local util = require "steward.alerting.engine.util"

local ipairs, next, min = ipairs, next, math.min

local M = {}

-- The read of a group's entries, for the flush's read batch; entries(rows) decodes it.
function M.read_statement(group_key, receiver)
  return { "SELECT integration, firing, resolved, sent_at, repeats FROM alert_nlog " ..
    "WHERE group_key = $1 AND receiver = $2", group_key, receiver }
end

-- entries(rows) -> {[integration] = {firing = set, resolved = set, sent_at, repeats}}
function M.entries(rows)
  local out = {}
  for _, r in ipairs(rows) do
    out[r.integration] = { firing = util.set(json.decode(r.firing)), resolved = util.set(json.decode(r.resolved)),
      sent_at = r.sent_at, repeats = r.repeats }
  end
  return out
end

function M.log_statement(group_key, receiver, idx, firing, resolved, now, repeats)
  return { "INSERT INTO alert_nlog (group_key, receiver, integration, firing, resolved, sent_at, repeats) " ..
    "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (group_key, receiver, integration) DO UPDATE SET " ..
    "firing = excluded.firing, resolved = excluded.resolved, sent_at = excluded.sent_at, repeats = excluded.repeats",
    group_key, receiver, idx, json.encode(json.array(firing)), json.encode(json.array(resolved)), now, repeats }
end

-- repeat_for(entry, route) -> the repeat interval that applies after entry.repeats repeats.
function M.repeat_for(entry, route)
  local r = route.repeat_interval
  local b = route.repeat_backoff
  if b and entry then
    r = min(r * b.factor ^ (entry.repeats or 0), b.max)
  end
  return r
end

-- needs_update(entry, firing, resolved, send_resolved, repeat, now) -> bool, why
-- why: "new" (something changed) or "repeat" (only the repeat interval passed).
function M.needs_update(entry, firing, resolved, send_resolved, rep, now)
  local nf = next(firing) ~= nil
  if not entry then return nf, "new" end
  if not util.subset(firing, entry.firing) then return true, "new" end
  -- All resolved: notify (whatever send_resolved says) so that the log forgets the firing
  -- ones; if the receiver never heard of them, there is nothing to say.
  if not nf then return next(entry.firing) ~= nil, "new" end
  if send_resolved and not util.subset(resolved, entry.resolved) then return true, "new" end
  return entry.sent_at < now - rep, "repeat"
end

return M
