-- steward.load.records: the files `steward load` replays. Recorded traffic (JSON lines
-- {t, method, path} or HAProxy's HTTP log format) becomes requests at their relative times;
-- a rate series ({t, rate} as CSV, JSON or JSON lines, e.g. capacity history) becomes a
-- shape. Every error names the line or item and what is wrong with it.
local json = require "steward.json"
local util = require "steward.runtime.store.util"

local type, tonumber, tostring, ipairs, pcall, format, sort =
  type, tonumber, tostring, ipairs, pcall, string.format, table.sort

local M = {}

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

-- A time field: seconds (absolute or relative; only differences count) or an RFC 3339 string.
local function time_value(v)
  if type(v) == "number" and v == v and v > -math.huge and v < math.huge then return v end
  if type(v) == "string" then return tonumber(v) or util.parse_rfc3339(v) end
  return nil
end

-- HAProxy's HTTP log line (option httplog): the accept date "[06/Feb/2009:12:14:14.655]" and
-- the request line "GET /index.html HTTP/1.1", the last quoted field.
local function haproxy_line(line)
  local d, mon, y, h, mi, s, frac = line:match("%[(%d%d)/(%a%a%a)/(%d%d%d%d):(%d%d):(%d%d):(%d%d)%.?(%d*)%]")
  if not d then return nil, "no accept date [dd/Mon/yyyy:hh:mm:ss.mmm] (HAProxy HTTP log format expected)" end
  local m = MONTHS[mon]
  if not m then return nil, format("bad month '%s' in the accept date", mon) end
  local req
  for q in line:gmatch('"([^"]*)"') do req = q end
  if not req then return nil, 'no quoted request line ("GET /path HTTP/1.1")' end
  local method, path = req:match("^(%u+)%s+(%S+)")
  if not method then return nil, format("request '%s' is not METHOD PATH", req) end
  local t = util.days_from_civil(tonumber(y), m, tonumber(d)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 +
    tonumber(s) + (frac ~= "" and tonumber("0." .. frac) or 0)
  return { t = t, method = method, path = path }
end

local function json_line(line)
  local ok, v = pcall(json.decode, line)
  if not ok or type(v) ~= "table" then return nil, "invalid JSON object" end
  local t = time_value(v.t)
  if not t then return nil, "t: seconds or an RFC 3339 time expected" end
  local method = v.method == nil and "GET" or v.method
  if type(method) ~= "string" or not method:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    return nil, "method: an HTTP method expected"
  end
  if type(v.path) ~= "string" or v.path:sub(1, 1) ~= "/" or v.path:match("[%s%c]") then
    return nil, "path: a string starting with / and without spaces expected"
  end
  return { t = t, method = method, path = v.path }
end

-- requests(text, {speed =, name =}) -> { {t, method, path}, ... } sorted, t relative to the
-- first request and divided by speed | nil, err
function M.requests(text, opts)
  opts = opts or {}
  local speed, name = opts.speed or 1, opts.name or "replay"
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if not line:match("^%s*$") and not line:match("^%s*#") then
      local rec, err
      if line:match("^%s*{") then rec, err = json_line(line) else rec, err = haproxy_line(line) end
      if not rec then return nil, format("%s: line %d: %s", name, n, err) end
      rec.line = n
      out[#out + 1] = rec
    end
  end
  if #out == 0 then return nil, name .. ": no requests in the file" end
  sort(out, function(a, b) if a.t ~= b.t then return a.t < b.t end return a.line < b.line end)
  local t0 = out[1].t
  for _, r in ipairs(out) do r.t = (r.t - t0) / speed end
  return out
end

local function point(v, what)
  local t, r
  if type(v) == "table" and v[1] ~= nil then t, r = v[1], v[2]
  elseif type(v) == "table" then t, r = v.t, v.rate == nil and v.v or v.rate
  else return nil, what .. ": {t, rate} expected" end
  t = time_value(t)
  if not t then return nil, what .. ": t: seconds or an RFC 3339 time expected" end
  if type(r) ~= "number" or r ~= r or r < 0 or r == math.huge then
    return nil, what .. ": rate: a number >= 0 expected, got " .. tostring(r)
  end
  return { t, r }
end

-- rates(text, name) -> { {t, rate}, ... } sorted | nil, err. Accepts a JSON array ([[t, v]]
-- or [{"t":, "rate":}]), JSON lines, or CSV lines "t,rate" (an optional header line).
function M.rates(text, name)
  name = name or "rate series"
  local pts = {}
  local first = text:match("^%s*(.)")
  if first == "[" then
    local ok, v = pcall(json.decode, text)
    if not ok or type(v) ~= "table" then return nil, name .. ": invalid JSON: " .. tostring(v) end
    -- `steward eval --json` wraps its one result in an array: [[[t, v], ...]].
    if #v == 1 and type(v[1]) == "table" and type(v[1][1]) == "table" then v = v[1] end
    for i, item in ipairs(v) do
      local p, err = point(item, format("%s: item %d", name, i))
      if not p then return nil, err end
      pts[#pts + 1] = p
    end
  else
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      line = line:gsub("\r$", "")
      local what = format("%s: line %d", name, n)
      if line:match("^%s*{") then
        local ok, v = pcall(json.decode, line)
        if not ok then return nil, what .. ": invalid JSON" end
        local p, err = point(v, what)
        if not p then return nil, err end
        pts[#pts + 1] = p
      elseif not line:match("^%s*$") and not line:match("^%s*#") then
        local a, b = line:match("^%s*([^,]-)%s*,%s*([^,]-)%s*$")
        if not a then return nil, what .. ": 't,rate' expected" end
        if #pts == 0 and not tonumber(b) and n == 1 then
          -- a header line ("t,rate")
        else
          local p, err = point({ a, tonumber(b) }, what)
          if not p then return nil, err end
          pts[#pts + 1] = p
        end
      end
    end
  end
  if #pts < 2 then return nil, name .. ": at least two points {t, rate} expected" end
  sort(pts, function(a, b) return a[1] < b[1] end)
  return pts
end

return M
