-- steward.alerting.fingerprint: the label-set fingerprint of prometheus/common's model
-- (LabelSet.Fingerprint), which Alertmanager uses to identify alerts and aggregation groups:
-- FNV-1a 64 over the label names in sorted order, each name and value followed by 0xff,
-- printed as 16 lower-case hex digits. 64-bit arithmetic is LuaJIT's uint64_t cdata.
local ffi = require "ffi"

local type, pairs, error, tonumber = type, pairs, error, tonumber
local byte, format = string.byte, string.format
local sort = table.sort

local M = {}

local OFFSET = 14695981039346656037ULL
local PRIME = 1099511628211ULL
local SEP = 255

local bxor = require("bit").bxor

-- The multiplication wraps mod 2^64 in uint64_t cdata, as Go's uint64 does.
local function add_string(h, s)
  for i = 1, #s do
    h = bxor(h, byte(s, i)) * PRIME
  end
  return h
end

local function add_sep(h) return bxor(h, SEP) * PRIME end

-- hash(labels) -> uint64_t cdata
function M.hash(labels)
  if type(labels) ~= "table" then error("fingerprint: labels: table expected, got " .. type(labels), 2) end
  local names, n = {}, 0
  for k, v in pairs(labels) do
    if type(k) ~= "string" then error("fingerprint: labels: names must be strings, got " .. type(k), 2) end
    if type(v) ~= "string" then
      error("fingerprint: labels." .. k .. ": string expected, got " .. type(v), 2)
    end
    n = n + 1
    names[n] = k
  end
  sort(names)
  local h = OFFSET
  for i = 1, n do
    local name = names[i]
    h = add_sep(add_string(h, name))
    h = add_sep(add_string(h, labels[name]))
  end
  return ffi.cast("uint64_t", h)
end

-- of(labels) -> "0123456789abcdef", Fingerprint.String()'s %016x.
function M.of(labels)
  local h = M.hash(labels)
  -- %x of LuaJIT's string.format does not take 64-bit cdata: print the halves.
  local hi = tonumber(h / 0x100000000ULL)
  local lo = tonumber(h % 0x100000000ULL)
  return format("%08x%08x", hi, lo)
end

setmetatable(M, { __call = function(_, labels) return M.of(labels) end })

return M
