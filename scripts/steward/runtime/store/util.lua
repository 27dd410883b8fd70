-- Helpers shared by the store modules: UUIDv7 ids, RFC 3339 times, JSON columns, cursors,
-- argument checks and the "now" every function accepts so tests need not sleep.
local json = require "steward.json"
local crypto = require "steward.crypto"
local time = require "steward.time"

local type, tostring, tonumber, error, floor, pairs = type, tostring, tonumber, error, math.floor, pairs
local byte, char, format = string.byte, string.char, string.format

local M = {}

M.null = json.null

-- A value for a batch entry: batch lists are Lua tables, where a nil would end the list early.
function M.nullable(v)
  if v == nil then return json.null end
  return v
end

function M.now(v)
  if v == nil then return time.now() end
  return v
end

-- UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, 74 random bits, so ids
-- sort by creation time.
function M.uuidv7(now)
  return crypto.uuidv7(now and floor(now * 1000) or nil)
end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil), so
-- no conversion goes through the local time zone.
function M.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

function M.civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_in_month(y, m)
  if m == 2 then
    return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end
M.days_in_month = days_in_month

-- RFC 3339 date-time → seconds since the epoch, or nil, reason.
function M.parse_rfc3339(s)
  local y, mo, d, h, mi, sec, rest =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil, "RFC 3339 date-time expected" end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  local frac = 0
  local f, tz = rest:match("^%.(%d+)(.*)$")
  if f then frac, rest = tonumber("0." .. f), tz end
  local off
  if rest == "Z" or rest == "z" then
    off = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil, "RFC 3339 date-time expected (time zone missing)" end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return nil, "time zone offset out of range" end
    off = (oh * 3600 + om * 60) * (sign == "-" and -1 or 1)
  end
  if mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) or h > 23 or mi > 59 or sec > 60 then
    return nil, "date-time out of range"
  end
  if sec == 60 then sec = 59 end -- a leap second lands on the second before it
  return M.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - off
end

function M.format_rfc3339(t)
  local days = floor(t / 86400)
  local rem = t - days * 86400
  local y, m, d = M.civil_from_days(days)
  local s = floor(rem)
  return format("%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, floor(s / 3600), floor(s / 60) % 60, s % 60)
end

-- A time argument: seconds, or an RFC 3339 string. Misuse raises.
function M.time_arg(v, what)
  if type(v) == "number" then return v end
  if type(v) == "string" then
    local t, err = M.parse_rfc3339(v)
    if not t then error(what .. ": " .. err, 3) end
    return t
  end
  error(what .. ": number or RFC 3339 string expected, got " .. type(v), 3)
end

function M.duration_arg(v, what)
  local d, err = time.parse_duration(v)
  if not d then error(what .. ": " .. tostring(err), 3) end
  return d
end

function M.check(cond, msg)
  if not cond then error(msg, 3) end
end

function M.opt_table(v, what)
  if v == nil then return {} end
  if type(v) ~= "table" then error(what .. ": table expected, got " .. type(v), 3) end
  return v
end

function M.limit_arg(v, what, default, max)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > max then
    error(what .. ": integer from 1 to " .. max .. " expected", 3)
  end
  return v
end

function M.store_arg(st, what)
  if type(st) ~= "table" or not st.db then error(what .. ": store expected", 3) end
  return st
end

-- True when t is a JSON object: a table with only string keys (an empty table counts).
function M.is_object(t)
  if type(t) ~= "table" or json.is_array(t) then return false end
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

function M.encode(v)
  return json.encode(v)
end

function M.decode(s)
  if s == nil then return nil end
  local v = json.decode(s)
  return v
end

-- Opaque cursors: a tag and the last key seen, so callers cannot mistake them for numbers.
function M.cursor_encode(tag, n)
  return tag .. "." .. format("%x", n)
end

function M.cursor_decode(tag, c)
  if type(c) ~= "string" then return nil end
  local h = c:match("^" .. tag .. "%.(%x+)$")
  return h and tonumber(h, 16)
end


return M
