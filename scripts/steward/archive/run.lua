-- steward.archive.run: moves old events and decision-log rows out of the store into archive
-- segments (steward.archive.segment) under the archive directory.
--
-- The order of steps is what makes a crash harmless: (1) the segment is written to a .part
-- file, fsynced and renamed (steward.compress); (2) its manifest is written atomically -- the
-- commit point; (3) only then are the rows deleted from the store. A crash before (2) leaves a
-- leftover file the next run removes, and the rows still in the store; a crash between (2) and
-- (3) leaves rows that the archive also holds: readers take seqs up to the archive's high mark
-- from the archive only (never twice), and the next run finishes the delete.
--
-- What is archived is always a prefix of the log (seq 1..hi), so the archive and the store
-- together stay one continuous sequence: hi is the last event received before the cutoff
-- (events age by `received`, the time steward committed them, which grows with seq; an event's
-- own `time` is the client's) and below every event a policy still has to handle (each
-- policy's dispatch cursor, open dead letters, a cluster's redo list).
local store = require "steward.runtime.store"
local audit = require "steward.runtime.store.audit"
local util = require "steward.runtime.store.util"
local json = require "steward.json"
local fs = require "steward.fs"
local log = require "steward.log"
local time = require "steward.time"
local manifest = require "steward.archive.manifest"
local segment = require "steward.archive.segment"

local type, tostring, ipairs, error, min, floor, concat = type, tostring, ipairs, error, math.min, math.floor, table.concat

local M = {}

local PAGE = 1000

-- What each kind keeps in the store: its table, its key (seq or id), the column it ages by,
-- the columns copied into each record and the JSON columns decoded into it.
local KINDS = {
  events = { tbl = "events", key = "seq", age = "received",
    columns = "seq, id, type, tenant, time, source, data, received, depth", json = { "data" } },
  decisions = { tbl = "decisions", key = "id", age = "time",
    columns = "id, ref, policy, version, tenant, event_id, input, outcome, result, error, duration, side_effects, time",
    json = { "input", "result", "side_effects" } },
}
M.KINDS = KINDS

-- A test hook: STEWARD_ARCHIVE_CRASH=after_manifest|after_segment kills this process with
-- SIGKILL at that step, as a power cut would (tests/e2e/archive_crash.t).
local function crash_point(name)
  if os.getenv("STEWARD_ARCHIVE_CRASH") ~= name then return end
  local ffi = require "ffi"
  pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
  ffi.C.kill(ffi.C.getpid(), 9)
end

local function missing_table(err)
  err = tostring(err)
  return err:find("no such table", 1, true) or err:find("does not exist", 1, true)
end

-- The smallest value of sql's column s, or nil: no rows, or no such table (no dispatcher has
-- ever run on this store, so no policy waits for anything).
local function min_of(st, sql, ...)
  local rows, err = st.db:query(sql, ...)
  if not rows then
    if missing_table(err) then return nil end
    return nil, err
  end
  local v = rows[1] and rows[1].s
  if v == json.null then v = nil end
  return v
end

-- needed(st, policies, hi) -> the seq below the first event up to hi that a loaded policy has
-- still to handle (hi when none), and why | nil, err. A policy's cursor says every event at or
-- below it is handled; above it, an event the policy's `on` matches (and its tenant, for a
-- tenant's policy) without a completion record is still to be handled -- queued, running or to
-- be recovered. (A `when` filter is not consulted: such an event is kept, which is safe.) A
-- policy that nothing matched since it was loaded keeps an old cursor; it holds nothing back.
-- Without the loaded set (outside the daemon) every cursor holds: the lowest bounds the run.
local function needed(st, policies, hi)
  local set = policies and policies()
  local cursors, err = st.db:query("SELECT policy, seq FROM dispatch_cursor WHERE seq < $1 ORDER BY seq", hi)
  if not cursors then
    if missing_table(err) then return hi end
    return nil, err
  end
  if not set then
    if cursors[1] then return cursors[1].seq, "policy " .. cursors[1].policy .. " has not handled the events after its cursor" end
    return hi
  end
  local bound, why = hi, nil
  local lagging = {}
  for _, c in ipairs(cursors) do
    local p = set[c.policy]
    if p then lagging[#lagging + 1] = c.policy end
    if p and p.handle and c.seq < bound then -- a policy no longer loaded needs nothing
      local after = c.seq
      while after < bound do
        local rows, qerr = st.db:query("SELECT e.seq, e.type, e.tenant FROM events e WHERE e.seq > $1 AND e.seq <= $2 " ..
          "AND NOT EXISTS (SELECT 1 FROM handled h WHERE h.policy = $3 AND h.seq = e.seq) ORDER BY e.seq LIMIT $4",
          after, bound, c.policy, PAGE)
        if not rows then return nil, qerr end
        local found
        for _, r in ipairs(rows) do
          if p.matches(r.type) and (not p.tenant or r.tenant == p.tenant) then found = r.seq; break end
        end
        if found then
          bound, why = found - 1, "policy " .. c.policy .. " has not handled event " .. found .. " yet"
          break
        end
        if #rows < PAGE then break end
        after = rows[#rows].seq
      end
    end
  end
  return bound, why, lagging
end

-- bound(st, kind, cutoff, policies) -> hi (archive keys <= hi) | nil, err, and why hi stops there
local function bound(st, k, cutoff, policies)
  local hi, why
  local first_new, err = min_of(st, "SELECT MIN(" .. k.key .. ") AS s FROM " .. k.tbl .. " WHERE " .. k.age .. " >= $1", cutoff)
  if err then return nil, err end
  if first_new then hi, why = first_new - 1, "age" else
    local top, terr = min_of(st, "SELECT MAX(" .. k.key .. ") AS s FROM " .. k.tbl)
    if terr then return nil, terr end
    hi, why = top or 0, "age"
  end
  if k.tbl ~= "events" then return hi, why end
  local h, w, lagging = needed(st, policies, hi)
  if not h then return nil, w end
  if h < hi then hi, why = h, w end
  local limits = {
    { "SELECT MIN(seq) AS s FROM dead_letters WHERE requeued IS NULL", -1, "an open dead letter" },
    { "SELECT MIN(seq) AS s FROM dispatch_redo", -1, "an event a cluster instance must handle again" },
  }
  for _, l in ipairs(limits) do
    local v, lerr = min_of(st, l[1])
    if lerr then return nil, lerr end
    if v and v + l[2] < hi then hi, why = v + l[2], l[3] end
  end
  return hi, why, lagging
end

-- A loaded policy whose cursor lags below hi has nothing to handle up to hi (needed checked):
-- its cursor moves up to hi, as the dispatcher's checkpoint would have done had anything matched,
-- so its recovery after a restart does not scan the archive for nothing.
local function advance(st, lagging, hi)
  if not lagging or #lagging == 0 then return true end
  local stmts = {}
  for i, name in ipairs(lagging) do
    stmts[i] = { "UPDATE dispatch_cursor SET seq = $2 WHERE policy = $1 AND seq < $2", name, hi }
  end
  return st.db:batch(stmts)
end

local function record_of(k, r)
  local rec = {}
  for name, v in pairs(r) do if v ~= json.null then rec[name] = v end end
  for _, c in ipairs(k.json) do
    if type(rec[c]) == "string" then rec[c] = json.decode(rec[c]) end
  end
  return rec
end

-- finish(st, dir, kind, manifests) -> true | nil, err: deletes from the store what a manifest
-- says is archived (the step a crash may have cut short).
local function finish(st, k, m)
  local res, err = st.db:exec("DELETE FROM " .. k.tbl .. " WHERE " .. k.key .. " >= $1 AND " .. k.key .. " <= $2",
    m.first, m.last)
  if not res then return nil, err end
  return res.changes
end

-- recover(st, dir) -> {finished = n rows, removed = {leftover files}} | nil, err
function M.recover(st, dir)
  local ms, leftovers = manifest.list(dir)
  if not ms then return nil, leftovers end
  local out = { finished = 0, removed = {} }
  for _, m in ipairs(ms) do
    local n, err = finish(st, KINDS[m.kind], m)
    if not n then return nil, err end
    out.finished = out.finished + n
  end
  for _, name in ipairs(leftovers) do
    local ok, err = fs.remove(dir .. "/" .. name)
    if not ok then return nil, err end
    out.removed[#out.removed + 1] = name
  end
  if out.finished > 0 then log.warn("archive: finished the deletes of an interrupted run", { rows = out.finished }) end
  return out
end

-- One segment of kind from key lo up to hi (at most max rows). -> manifest | false (no rows) | nil, err
local function write_segment(st, dir, kind, k, lo, hi, max, now)
  local tmp = dir .. "/" .. kind .. "-current.jsonl.zst"
  local w, err = segment.writer(tmp)
  if not w then return nil, err end
  local first, last, count, t0, t1 = nil, nil, 0, nil, nil
  local after = lo - 1
  while count < max do
    local rows, qerr = st.db:query("SELECT " .. k.columns .. " FROM " .. k.tbl .. " WHERE " .. k.key .. " > $1 AND " ..
      k.key .. " <= $2 ORDER BY " .. k.key .. " LIMIT $3", after, hi, min(PAGE, max - count))
    if not rows then w.abort(); return nil, qerr end
    if #rows == 0 then break end
    for _, r in ipairs(rows) do
      local ok, aerr = w.add(record_of(k, r))
      if not ok then w.abort(); return nil, aerr end
      local key, tm = r[k.key], r.time
      first = first or key
      last = key
      if not t0 or tm < t0 then t0 = tm end
      if not t1 or tm > t1 then t1 = tm end
    end
    count = count + #rows
    after = last
  end
  if count == 0 then w.abort(); return false end
  local info, cerr = w.close()
  if not info then return nil, cerr end
  -- The segment now lies under its temporary name, fsynced; its final name carries its range.
  local m = { kind = kind, first = first, last = last, count = count, from_time = t0, to_time = t1,
    bytes = info.bytes, raw = info.raw, sha256 = info.sha256, created = now,
    file = manifest.name(kind, first, last) .. ".jsonl.zst" }
  local ok, rerr = fs.rename(tmp, dir .. "/" .. m.file)
  if not ok then return nil, rerr end
  crash_point("after_segment")
  ok, rerr = manifest.write(dir, m)
  require("steward.archive.read").invalidate() -- this process's readers see the new segment now
  if not ok then return nil, rerr end
  crash_point("after_manifest")
  local n, derr = finish(st, k, m)
  if not n then return nil, derr end
  return m
end

local running = false

-- run(st, dir, opts) -> report | nil, err. opts: cutoff (time), events, decisions (booleans),
-- segment (rows per file), actor (for the audit log), policies (fn -> the loaded policy set,
-- name -> {handle, matches, tenant}, or nil).
function M.run(st, dir, opts)
  if running then return nil, "archive.run: a run is already in progress" end
  running = true
  local ok, res, err = pcall(function()
    local now = time.now()
    local mk, merr = fs.mkdir(dir, { parents = true, mode = tonumber("700", 8) })
    if not mk then return nil, dir .. ": " .. tostring(merr) end
    local rec, rerr = M.recover(st, dir)
    if not rec then return nil, rerr end
    local report = { dir = dir, cutoff = opts.cutoff, recovered = rec, files = {}, events = 0, decisions = 0, held = {} }
    for _, kind in ipairs { "events", "decisions" } do
      if opts[kind] then
        local k = KINDS[kind]
        local hi, why, lagging = bound(st, k, opts.cutoff, opts.policies)
        if not hi then return nil, why end
        report.held[kind] = why
        local aok, aerr = advance(st, lagging, hi)
        if not aok then return nil, aerr end
        while true do
          local lo, lerr = min_of(st, "SELECT MIN(" .. k.key .. ") AS s FROM " .. k.tbl)
          if lerr then return nil, lerr end
          if not lo or lo > hi then break end
          local m, serr = write_segment(st, dir, kind, k, lo, hi, opts.segment, now)
          if m == nil then return nil, serr end
          if not m then break end
          report[kind] = report[kind] + m.count
          report.files[#report.files + 1] = { file = m.file, kind = kind, first = m.first, last = m.last,
            count = m.count, bytes = m.bytes, raw = m.raw, sha256 = m.sha256 }
        end
      end
    end
    return report
  end)
  running = false
  if not ok then error(res, 0) end
  local report = res
  -- Each run is in the audit log: which files, how many rows, their digests.
  local parts = {}
  for _, f in ipairs(report and report.files or {}) do
    parts[#parts + 1] = f.file .. " count=" .. f.count .. " sha256=" .. f.sha256
  end
  local aok, aerr = audit.append(st, { source = "archive", actor = opts.actor or "steward", command = "archive.run",
    target = dir, outcome = report and "ok" or "error",
    detail = report and (("events=%d decisions=%d cutoff=%s; %s"):format(report.events, report.decisions,
      util.format_rfc3339(floor(opts.cutoff)), #parts > 0 and concat(parts, "; ") or "no files")) or tostring(err) })
  if not aok then log.warn("archive: cannot write the audit entry", { error = tostring(aerr) }) end
  if not report then return nil, err end
  return report
end

return M
