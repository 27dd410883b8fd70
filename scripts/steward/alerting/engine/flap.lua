-- Flap detection (beyond Alertmanager): an alert that changed state `transitions` times
-- within `window` is held out of notifications until it has been quiet for `quiet`. Every
-- firing/resolved transition is recorded here; flushes ask which members are held.
local json = require "steward.json"

local ipairs = ipairs

local M = {}

-- record_statement(st, cfg, fp, state, now) -> statement | false (no change) | nil, err
function M.record(st, cfg, fp, state, now)
  local rows, err = st.db:query("SELECT state, times, held_until FROM alert_flaps WHERE fingerprint = $1", fp)
  if not rows then return nil, err end
  local r = rows[1]
  if r and r.state == state then return false end
  local times = {}
  for _, t in ipairs(r and json.decode(r.times) or {}) do
    if t > now - cfg.window then times[#times + 1] = t end
  end
  times[#times + 1] = now
  local held = r and r.held_until or 0
  if #times >= cfg.transitions or held > now then held = now + cfg.quiet end
  return { "INSERT INTO alert_flaps (fingerprint, state, times, held_until, updated_at) VALUES ($1,$2,$3,$4,$5) " ..
    "ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state, times = excluded.times, " ..
    "held_until = excluded.held_until, updated_at = excluded.updated_at",
    fp, state, json.encode(json.array(times)), held, now }
end

-- held(st, alerts, now) -> {fp = held_until} for the alerts held now.
function M.held(st, alerts, now)
  local out = {}
  if #alerts == 0 then return out end
  local rows, err = st.db:query("SELECT fingerprint, held_until FROM alert_flaps WHERE held_until > $1", now)
  if not rows then return nil, err end
  for _, r in ipairs(rows) do out[r.fingerprint] = r.held_until end
  return out
end

return M
