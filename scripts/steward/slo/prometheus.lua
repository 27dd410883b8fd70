-- steward.slo.prometheus: an SLO source asking Prometheus (HTTP API, instant queries) for the
-- good and total amounts of each window, with $window replaced by the window's range.
local http = require "steward.http"
local json = require "steward.json"

local type, pairs, ipairs, error, tostring, tonumber, format = type, pairs, ipairs, error, tostring, tonumber, string.format

local M = {}

local FIELDS = { url = true, good = true, total = true, timeout = true, headers = true }

local Source = {}
Source.__index = Source

function M.new(o)
  if type(o) ~= "table" then error("slo.prometheus: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then error("slo.prometheus: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(o.url) ~= "string" or not o.url:match("^https?://") then
    error("slo.prometheus: url: http:// or https:// URL of the Prometheus server expected", 2)
  end
  for _, f in ipairs { "good", "total" } do
    if type(o[f]) ~= "string" then error("slo.prometheus: " .. f .. ": PromQL string expected", 2) end
  end
  if o.headers ~= nil and type(o.headers) ~= "table" then error("slo.prometheus: headers: table expected", 2) end
  return setmetatable({ kind = "prometheus", url = o.url:gsub("/+$", ""), good = o.good, total = o.total,
    timeout = o.timeout or "10s", headers = o.headers }, Source)
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end
M.urlencode = urlencode

-- One instant query -> number, or false for no data, or nil, err.
function Source:query(q, now)
  local url = self.url .. "/api/v1/query?query=" .. urlencode(q) .. "&time=" .. format("%.3f", now)
  local res, err = http.request { url = url, timeout = self.timeout, headers = self.headers }
  if not res then return nil, "prometheus: " .. tostring(err) end
  local body = json.decode(res.body)
  if type(body) ~= "table" then
    return nil, format("prometheus: HTTP %d from %s: response is not JSON", res.status, self.url)
  end
  if res.status ~= 200 or body.status ~= "success" then
    return nil, format("prometheus: query failed (HTTP %d, %s: %s): %s", res.status,
      tostring(body.errorType or "?"), tostring(body.error or body.status), q)
  end
  local data = type(body.data) == "table" and body.data or {}
  local sample
  if data.resultType == "vector" then
    local r = data.result
    if type(r) ~= "table" or #r == 0 then return false end
    if #r > 1 then
      return nil, format("prometheus: query returned %d series, one expected (aggregate with sum()): %s", #r, q)
    end
    sample = r[1].value
  elseif data.resultType == "scalar" then
    sample = data.result
  else
    return nil, format("prometheus: result type %s, vector or scalar expected: %s", tostring(data.resultType), q)
  end
  local v = type(sample) == "table" and tonumber(sample[2])
  if not v then return nil, "prometheus: malformed sample in answer to: " .. q end
  if v ~= v then return false end -- NaN: e.g. a rate over a window with no samples
  return v
end

-- measure(windows, now) -> { [name] = {good, valid} } (a window without data is absent) | nil, err
function Source:measure(wins, now)
  local out = {}
  for _, w in ipairs(wins) do
    if w.seconds < 1 then goto continue end -- a calendar period's first second: PromQL has no [0s]
    local range = w.range or w.name
    local g, err = self:query((self.good:gsub("%$window", range)), now)
    if g == nil then return nil, err end
    local t
    t, err = self:query((self.total:gsub("%$window", range)), now)
    if t == nil then return nil, err end
    if g and t then
      if g > t then g = t end -- two queries, two evaluations: rounding may put good above total
      out[w.name] = { good = g, valid = t }
    end
    ::continue::
  end
  return out
end

return M
