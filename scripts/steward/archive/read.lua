-- steward.archive.read: reading archive segments back: events.replay's archived part (the same
-- filters as the store's WHERE clause, in seq order), verify (digests, counts, ranges) and cat.
local util = require "steward.runtime.store.util"
local fs = require "steward.fs"
local time = require "steward.time"
local manifest = require "steward.archive.manifest"
local segment = require "steward.archive.segment"

local type, tostring, ipairs, error, sub, byte = type, tostring, ipairs, error, string.sub, string.byte

local M = {}

-- matcher(f) -> predicate over a record, with the meaning of steward.runtime.events' filters
-- (which have validated f already).
function M.matcher(f)
  local ty, prefix = f.type, nil
  if ty == "*" then ty = nil elseif ty and byte(ty, -1) == 42 then prefix, ty = sub(ty, 1, -2), nil end
  local since = f.since ~= nil and util.time_arg(f.since, "events.replay: since") or nil
  local upto = f["until"] ~= nil and util.time_arg(f["until"], "events.replay: until") or nil
  local after, before, from, to, tenant = f.after_seq, f.before_seq, f.from_seq, f.to_seq, f.tenant
  return function(e)
    local s = e.seq
    if (after and s <= after) or (before and s >= before) or (from and s < from) or (to and s > to) then return false end
    if ty and e.type ~= ty then return false end
    if prefix and sub(e.type, 1, #prefix) ~= prefix then return false end
    if tenant and e.tenant ~= tenant then return false end
    if since and e.time < since then return false end
    if upto and e.time >= upto then return false end
    return true
  end
end

-- The part of a seq filter's range the archive may hold: [lo, hi].
local function seq_range(f)
  local lo, hi = 1, math.huge
  if f.after_seq then lo = math.max(lo, f.after_seq + 1) end
  if f.from_seq then lo = math.max(lo, f.from_seq) end
  if f.before_seq then hi = math.min(hi, f.before_seq - 1) end
  if f.to_seq then hi = math.min(hi, f.to_seq) end
  return lo, hi
end

-- The events manifests of dir, read again only when the directory changed (a segment or a
-- manifest added, renamed or removed changes its mtime): replay runs on hot paths (dispatch's
-- spill reads, SLO windows), which must not read every manifest each time. The list is trusted
-- only when the directory had been quiet for a second when it was read: two changes within one
-- tick of the file system's clock leave the same mtime, and a stale list would hide a segment
-- whose rows are already gone from the store.
local cache = {}
function M.invalidate() cache = {} end
local function events_manifests(dir)
  local st = fs.stat(dir)
  if not st then
    cache = {}
    return {}
  end
  if cache.dir == dir and cache.mtime == st.mtime and cache.ino == st.ino and st.mtime < cache.filled - 1 then
    return cache.list
  end
  local filled = time.now()
  local ms, err = manifest.ranges(dir, "events")
  if not ms then return nil, err end
  cache = { dir = dir, mtime = st.mtime, ino = st.ino, list = ms, filled = filled }
  return ms
end

-- high(dir) -> the highest archived seq (0 when none) | nil, err
function M.high(dir)
  local ms, err = events_manifests(dir)
  if not ms then return nil, err end
  return #ms > 0 and ms[#ms].last or 0, ms
end

-- replay(dir, f) -> iterator over the archived events matching f, high. Raises on a bad file.
function M.replay(dir, f)
  local high, ms = M.high(dir)
  if not high then error(ms, 0) end
  local lo, hi = seq_range(f)
  local since = f.since ~= nil and util.time_arg(f.since, "events.replay: since") or -math.huge
  local upto = f["until"] ~= nil and util.time_arg(f["until"], "events.replay: until") or math.huge
  local match = M.matcher(f)
  local i, iter = 0, nil
  local function next_segment()
    while true do
      i = i + 1
      local m = ms[i]
      if not m then return false end
      -- a segment outside the seq range, or whose events' times all lie outside since/until,
      -- is not opened
      if m.last >= lo and m.first <= hi then
        local full, err = manifest.read(m.path)
        if not full then error(err, 0) end
        if not (full.to_time and full.to_time < since) and not (full.from_time and full.from_time >= upto) then
          iter = segment.records(manifest.segment_path(dir, full))
          return true
        end
      end
    end
  end
  return function()
    while true do
      if not iter and not next_segment() then return nil end
      local e = iter()
      if not e then
        iter = nil
      elseif e.seq > hi then
        iter = nil -- the rest of this segment is past the range
      elseif match(e) then
        return e
      end
    end
  end, high
end

-- decisions(dir, f) -> iterator over archived decision-log rows matching f = {policy, event_id,
-- outcome, ref, tenant, since, until (on the decision's time), from_id, to_id}, oldest first.
-- Raises on a bad file.
function M.decisions(dir, f)
  local ranges, err = manifest.ranges(dir, "decisions")
  if not ranges then error(err, 0) end
  local since = f.since ~= nil and util.time_arg(f.since, "archive.decisions: since") or -math.huge
  local upto = f["until"] ~= nil and util.time_arg(f["until"], "archive.decisions: until") or math.huge
  local lo, hi = f.from_id or 1, f.to_id or math.huge
  local i, iter = 0, nil
  return function()
    while true do
      if not iter then
        i = i + 1
        local m = ranges[i]
        if not m then return nil end
        if m.last >= lo and m.first <= hi then
          local full, merr = manifest.read(m.path)
          if not full then error(merr, 0) end
          if not (full.to_time < since or full.from_time >= upto) then
            iter = segment.records(manifest.segment_path(dir, full))
          end
        end
      else
        local d = iter()
        if not d then
          iter = nil
        elseif d.id >= lo and d.id <= hi and d.time >= since and d.time < upto and (f.policy == nil or d.policy == f.policy)
          and (f.event_id == nil or d.event_id == f.event_id) and (f.outcome == nil or d.outcome == f.outcome)
          and (f.ref == nil or d.ref == f.ref) and (f.tenant == nil or d.tenant == f.tenant) then
          return d
        end
      end
    end
  end
end

-- verify(dir [, file]) -> {ok, files = {{file, ok, error, count}}} | nil, err. Reads every
-- segment to its end: the SHA-256 of its compressed bytes against the manifest's, zstd's own
-- checksums, the record count, the key range and order.
function M.verify(dir, only)
  local ms, leftovers = manifest.list(dir)
  if not ms then return nil, leftovers end
  local out = { ok = true, files = {}, leftovers = leftovers }
  for _, m in ipairs(ms) do
    if not only or only == m.file then
      local path = manifest.segment_path(dir, m)
      local key = m.kind == "events" and "seq" or "id"
      local ok, err = pcall(function()
        local it, stats = segment.records(path)
        local prev
        for rec in it do
          local k = rec[key]
          if type(k) ~= "number" or k < m.first or k > m.last or (prev and k <= prev) then
            error(path .. ": record " .. stats.count .. ": " .. key .. " " .. tostring(k) ..
              " out of order or outside " .. m.first .. ".." .. m.last, 0)
          end
          prev = k
        end
        if stats.sha256 ~= m.sha256 then
          error(path .. ": sha256 " .. tostring(stats.sha256) .. " differs from the manifest's " .. m.sha256, 0)
        end
        if stats.count ~= m.count then
          error(path .. ": " .. stats.count .. " records, the manifest says " .. m.count, 0)
        end
      end)
      out.files[#out.files + 1] = { file = m.file, kind = m.kind, ok = ok, error = not ok and tostring(err) or nil,
        count = m.count }
      if not ok then out.ok = false end
    end
  end
  return out
end

-- cat(dir, file) -> iterator over the records of one segment (by file name). Raises on a bad file.
function M.cat(dir, file)
  if type(file) ~= "string" or file:find("/", 1, true) or not file:find("%.jsonl%.zst$") then
    error("archive.cat: file: the name of a segment (as archive.list gives it) expected", 2)
  end
  return (segment.records(dir .. "/" .. file))
end

return M
