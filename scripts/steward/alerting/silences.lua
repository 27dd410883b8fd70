-- steward.alerting.silences: Alertmanager 0.25's silences (silence/silence.go) as values: the
-- validation Alertmanager applies on creation, the state at a time (pending before startsAt,
-- expired after endsAt, active in between, both ends included) and muting. Times are Unix
-- seconds. Storage and gossip are someone else's job: this module does no I/O.
local matchers = require "steward.alerting.matchers"

local type, error, ipairs, pairs, setmetatable, getmetatable, tostring, os =
  type, error, ipairs, pairs, setmetatable, getmetatable, tostring, os
local format = string.format

local M = {}

local KNOWN = { id = true, matchers = true, starts_at = true, ends_at = true, created_by = true,
  comment = true, updated_at = true }

local Silence = {}
Silence.__index = Silence

-- Does the matcher match the empty string? A silence made only of such matchers would mute
-- every alert, which Alertmanager refuses.
local function matches_empty(m)
  if m.type == "fn" then return false end
  return m:matches_value("")
end

-- new(spec) -> silence, or nil, err (the reasons Alertmanager gives).
function M.new(spec)
  if type(spec) ~= "table" then error("silences.new: spec: table expected, got " .. type(spec), 2) end
  for k in pairs(spec) do
    if not KNOWN[k] then error("silences.new: unknown field " .. tostring(k), 2) end
  end
  for _, k in ipairs({ "starts_at", "ends_at", "updated_at" }) do
    if spec[k] ~= nil and type(spec[k]) ~= "number" then
      error(format("silences.new: %s: number (Unix seconds) expected, got %s", k, type(spec[k])), 2)
    end
  end
  for _, k in ipairs({ "id", "created_by", "comment" }) do
    if spec[k] ~= nil and type(spec[k]) ~= "string" then
      error(format("silences.new: %s: string expected, got %s", k, type(spec[k])), 2)
    end
  end
  local list, err = matchers.list(spec.matchers, "matchers")
  if not list then return nil, err end
  if #list == 0 then return nil, "at least one matcher required" end
  local all_empty = true
  for i, m in ipairs(list) do
    if m.type ~= "fn" and not m.name:match("^[A-Za-z_][A-Za-z0-9_]*$") then
      return nil, format("invalid label matcher %d: invalid label name %q", i - 1, m.name)
    end
    all_empty = all_empty and matches_empty(m)
  end
  if all_empty then return nil, "at least one matcher must not match the empty string" end
  if not spec.starts_at then return nil, "invalid zero start timestamp" end
  if not spec.ends_at then return nil, "invalid zero end timestamp" end
  if spec.ends_at < spec.starts_at then return nil, "end time must not be before start time" end
  return setmetatable({
    id = spec.id, matchers = list, starts_at = spec.starts_at, ends_at = spec.ends_at,
    created_by = spec.created_by, comment = spec.comment, updated_at = spec.updated_at or spec.starts_at,
  }, Silence)
end

local function check_now(now, fn)
  if now == nil then return os.time() end
  if type(now) ~= "number" then error(fn .. ": now: number (Unix seconds) expected, got " .. type(now), 3) end
  return now
end

-- state(now) -> "pending" | "active" | "expired"
function Silence:state(now)
  now = check_now(now, "silence:state")
  if now < self.starts_at then return "pending" end
  if now > self.ends_at then return "expired" end
  return "active"
end

-- mutes(labels [, now]) -> boolean: active and every matcher matches.
function Silence:mutes(labels, now)
  if type(labels) ~= "table" then error("silence:mutes: labels: table expected, got " .. type(labels), 2) end
  now = check_now(now, "silence:mutes")
  return self:state(now) == "active" and self.matchers:matches(labels)
end

-- expire(now): ends an active silence now, a pending one at its start (Alertmanager's Expire).
function Silence:expire(now)
  now = check_now(now, "silence:expire")
  local st = self:state(now)
  if st == "expired" then return nil, "silence already expired" end
  if st == "pending" then self.starts_at = now end
  self.ends_at, self.updated_at = now, now
  return true
end

function Silence.__tostring(s)
  return format("silence %s %s", s.id or "?", tostring(s.matchers))
end

-- muted_by(silences, labels [, now]) -> array of the active silences muting labels (the
-- silence ids Alertmanager's marker records), in the order given.
function M.muted_by(list, labels, now)
  if type(list) ~= "table" then error("silences.muted_by: silences: array expected, got " .. type(list), 2) end
  if type(labels) ~= "table" then error("silences.muted_by: labels: table expected, got " .. type(labels), 2) end
  now = check_now(now, "silences.muted_by")
  local out = {}
  for i, s in ipairs(list) do
    if getmetatable(s) ~= Silence then error(format("silences.muted_by: silences[%d]: silence expected", i), 2) end
    if s:mutes(labels, now) then out[#out + 1] = s end
  end
  return out
end

return M
