-- steward.archive.manifest: the JSON file beside each archive segment that says what the
-- segment holds (kind, seq or id range, time range, count, size, SHA-256 of the compressed
-- file). A segment without its manifest is an unfinished run's leftover; the manifest is the
-- commit point of a run (written atomically, after the segment is fsynced).
local json = require "steward.json"
local fs = require "steward.fs"

local type, tostring, tonumber, ipairs, pcall, format, sort = type, tostring, tonumber, ipairs, pcall, string.format, table.sort

local M = {}

M.VERSION = 1
M.KINDS = { events = true, decisions = true }

-- name(kind, first, last) -> the base name shared by a segment and its manifest; zero-padded
-- so that names sort in seq order.
function M.name(kind, first, last)
  return format("%s-%015d-%015d", kind, first, last)
end

function M.segment_path(dir, m) return dir .. "/" .. m.file end
function M.path(dir, kind, first, last) return dir .. "/" .. M.name(kind, first, last) .. ".json" end

local NUMBERS = { "first", "last", "count", "bytes", "raw", "created" }

-- check(m, where) -> m | nil, err naming the file and the field
local function check(m, where)
  if type(m) ~= "table" then return nil, where .. ": a JSON object expected" end
  if m.version ~= M.VERSION then return nil, where .. ": version: " .. M.VERSION .. " expected" end
  if not M.KINDS[m.kind] then return nil, where .. ": kind: events or decisions expected" end
  for _, k in ipairs(NUMBERS) do
    if type(m[k]) ~= "number" or m[k] < 0 then return nil, where .. ": " .. k .. ": number >= 0 expected" end
  end
  if m.last < m.first then return nil, where .. ": last: below first" end
  if type(m.sha256) ~= "string" or not m.sha256:find("^%x+$") or #m.sha256 ~= 64 then
    return nil, where .. ": sha256: 64 hex digits expected"
  end
  if type(m.file) ~= "string" or m.file ~= M.name(m.kind, m.first, m.last) .. ".jsonl.zst" then
    return nil, where .. ": file: " .. M.name(m.kind, m.first, m.last) .. ".jsonl.zst expected"
  end
  return m
end

-- write(dir, m) -> true | nil, err: atomically (write, fsync, rename, directory fsync).
function M.write(dir, m)
  m.version = M.VERSION
  local ok, err = check(m, "manifest")
  if not ok then error(err, 2) end
  return fs.write_atomic(M.path(dir, m.kind, m.first, m.last), json.encode(m) .. "\n", { mode = tonumber("600", 8) })
end

-- read(path) -> manifest | nil, err naming the file
function M.read(path)
  local text, err = fs.read(path, { max = 1048576 })
  if not text then return nil, path .. ": " .. tostring(err) end
  local ok, m = pcall(json.decode, text)
  if not ok or m == nil then return nil, path .. ": not JSON" end
  return check(m, path)
end

-- ranges(dir, kind) -> {{first, last, path}} from the manifests' names alone, sorted | nil, err.
-- What a reader needs to find the segments of a seq range without parsing every manifest (a
-- damaged manifest then only affects the reads that need its segment).
function M.ranges(dir, kind)
  local entries, err = fs.list(dir)
  if not entries then
    if not fs.exists(dir) then return {} end
    return nil, dir .. ": " .. tostring(err)
  end
  local out = {}
  for _, e in ipairs(entries) do
    local k, first, last = e.name:match("^(%l+)%-(%d+)%-(%d+)%.json$")
    if k == kind then out[#out + 1] = { first = tonumber(first), last = tonumber(last), path = dir .. "/" .. e.name } end
  end
  sort(out, function(a, b) return a.first < b.first end)
  return out
end

-- list(dir [, kind]) -> manifests sorted by kind then first | nil, err. A missing directory is
-- an empty archive. leftovers: files of unfinished runs (segments without a manifest, .part).
function M.list(dir, kind)
  local entries, err = fs.list(dir)
  if not entries then
    if not fs.exists(dir) then return {}, {} end
    return nil, dir .. ": " .. tostring(err)
  end
  local out, names, leftovers = {}, {}, {}
  for _, e in ipairs(entries) do
    local base = e.name:match("^(%l+%-%d+%-%d+)%.json$")
    if base and (not kind or base:sub(1, #kind + 1) == kind .. "-") then
      local m, merr = M.read(dir .. "/" .. e.name)
      if not m then return nil, merr end
      out[#out + 1] = m
      names[m.file] = true
    end
  end
  for _, e in ipairs(entries) do
    if e.name:find("%.part$") or (e.name:find("%.jsonl%.zst$") and not names[e.name]) then
      leftovers[#leftovers + 1] = e.name
    end
  end
  sort(out, function(a, b)
    if a.kind ~= b.kind then return a.kind < b.kind end
    return a.first < b.first
  end)
  return out, leftovers
end

return M
