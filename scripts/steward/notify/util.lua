-- Pure helpers of steward.notify, kept apart so specs can test them without a network:
-- Retry-After parsing, backoff with jitter, the token bucket, form encoding, time formats.
local crypto = require "steward.crypto"
local sutil = require "steward.runtime.store.util"

local type, tonumber, tostring, floor, min, max = type, tonumber, tostring, math.floor, math.min, math.max
local byte, format = string.byte, string.format

local M = {}

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

local function civil(y, mo, d, h, mi, s)
  y, d, h, mi, s = tonumber(y), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  mo = MONTHS[mo:lower()]
  if not mo or d < 1 or d > 31 or h > 23 or mi > 59 or s > 60 then return nil end
  return sutil.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
end

-- An HTTP-date (RFC 9110 §5.6.7) -> epoch seconds, or nil. All three forms a recipient must
-- accept: IMF-fixdate, the obsolete RFC 850 form and asctime.
function M.parse_http_date(s)
  local d, mo, y, h, mi, sec = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if d then return civil(y, mo, d, h, mi, sec) end
  d, mo, y, h, mi, sec = s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if d then
    -- RFC 9110: a two-digit year more than 50 years in the future means the past century.
    y = tonumber(y) + 2000
    if y > tonumber(os.date("!%Y")) + 50 then y = y - 100 end
    return civil(y, mo, d, h, mi, sec)
  end
  mo, d, h, mi, sec, y = s:match("^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  if mo then return civil(y, mo, (d:gsub(" ", "")), h, mi, sec) end
  return nil
end

-- Retry-After (delay-seconds or an HTTP-date) -> seconds to wait from now (>= 0), or nil when
-- the value is absent or malformed (the caller then falls back to its own backoff).
function M.retry_after(value, now)
  if type(value) ~= "string" then return nil end
  value = value:match("^%s*(.-)%s*$")
  if value:match("^%d+$") then return tonumber(value) end
  local t = M.parse_http_date(value)
  if not t then return nil end
  return max(0, t - now)
end

-- A uniform float in [0, 1) from the OS's random source: jitter must differ between
-- processes that start together, which math.random's fixed seed does not give.
function M.random()
  local b1, b2, b3, b4 = byte(crypto.random(4), 1, 4)
  return (((b1 * 256 + b2) * 256 + b3) * 256 + b4) / 4294967296
end

-- Delay before retry number `n` (1 = after the first failure): base * 2^(n-1), capped at
-- `cap`, with "equal jitter" (between half and all of it) so that senders which failed
-- together do not retry in lock-step. `rnd` in [0, 1); false means no jitter.
function M.backoff(n, base, cap, rnd)
  local d = min(cap, base * 2 ^ (n - 1))
  if rnd == false then return d end
  return d / 2 + (rnd or M.random()) * d / 2
end

-- Token bucket holding up to n tokens, refilled at n per `per` seconds. take(now) reserves
-- one token and returns how long the caller must wait for it: reservations may drive the
-- count negative, so concurrent senders queue up at the right spacing instead of all
-- waking at once when the next token arrives.
local Bucket = {}
Bucket.__index = Bucket

function M.bucket(n, per, now)
  return setmetatable({ cap = n, rate = n / per, tokens = n, last = now }, Bucket)
end

function Bucket:take(now)
  if now > self.last then
    self.tokens = min(self.cap, self.tokens + (now - self.last) * self.rate)
    self.last = now
  end
  self.tokens = self.tokens - 1
  if self.tokens >= 0 then return 0 end
  return -self.tokens / self.rate
end

-- application/x-www-form-urlencoded (WHATWG URL standard's serializer): a Twilio request body.
local function enc(s)
  return (tostring(s):gsub("[^%w%*%-%._ ]", function(c) return format("%%%02X", byte(c)) end)
                     :gsub(" ", "+"))
end

function M.form_encode(fields)
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = fields[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do parts[#parts + 1] = enc(k) .. "=" .. enc(item) end
    else
      parts[#parts + 1] = enc(k) .. "=" .. enc(v)
    end
  end
  return table.concat(parts, "&")
end

-- RFC 3339 with milliseconds, as Alertmanager and PagerDuty write times.
function M.rfc3339(t)
  local s = floor(t)
  return sutil.format_rfc3339(s):gsub("Z$", format(".%03dZ", floor((t - s) * 1000)))
end

-- Cuts s to at most n bytes without splitting a UTF-8 sequence, marking the cut with "…".
function M.truncate(s, n)
  if #s <= n then return s end
  local cut = n - 3
  while cut > 0 do
    local b = byte(s, cut + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  return s:sub(1, cut) .. "…"
end

---------------------------------------------------------------- message helpers for templates
local SEVERITIES = { critical = "critical", crit = "critical", fatal = "critical", page = "critical",
                     error = "error", err = "error", high = "error",
                     warning = "warning", warn = "warning", medium = "warning",
                     info = "info", informational = "info", low = "info", ok = "info" }

-- The four severities PagerDuty knows (and the other templates show): critical, error,
-- warning, info. Common synonyms map onto them; anything else is "warning".
function M.severity(s)
  return type(s) == "string" and SEVERITIES[s:lower()] or "warning"
end

local function str(v) return v ~= nil and tostring(v) or nil end

-- The headline of a message: its title, else the first alert's summary or name.
function M.title(msg)
  if msg.title then return tostring(msg.title) end
  local a = type(msg.alerts) == "table" and msg.alerts[1]
  if type(a) == "table" then
    local ann, lab = a.annotations or {}, a.labels or {}
    local t = str(ann.summary) or str(lab.alertname) or "alert"
    if #msg.alerts > 1 then t = t .. " (+" .. (#msg.alerts - 1) .. " more)" end
    return t
  end
  if msg.text then return (tostring(msg.text):match("^[^\n]*")) end
  return "notification"
end

-- The body text: msg.text, else one line per alert.
function M.text(msg)
  if msg.text then return tostring(msg.text) end
  if type(msg.alerts) == "table" and #msg.alerts > 0 then
    local lines = {}
    for _, a in ipairs(msg.alerts) do
      local ann, lab = a.annotations or {}, a.labels or {}
      lines[#lines + 1] = "- [" .. (a.status or msg.status or "firing") .. "] " ..
        (str(lab.alertname) or "alert") ..
        ((ann.description or ann.summary) and (": " .. tostring(ann.description or ann.summary)) or "")
    end
    return table.concat(lines, "\n")
  end
  return nil
end

-- "[CRITICAL] title", or "[RESOLVED] title" for a resolved message.
function M.headline(msg)
  local tag = msg.status == "resolved" and "RESOLVED" or M.severity(msg.severity):upper()
  return "[" .. tag .. "] " .. M.title(msg)
end

-- Labels as a sorted list of {name, value} (stable output for equal input).
function M.sorted_pairs(t)
  local out = {}
  if type(t) ~= "table" then return out end
  for k, v in pairs(t) do out[#out + 1] = { tostring(k), tostring(v) } end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

-- A time for a vendor field: seconds since the epoch or an RFC 3339 string (kept as is).
function M.time_string(v, default)
  if v == nil then v = default end
  if type(v) == "number" then return M.rfc3339(v) end
  return v
end

return M
