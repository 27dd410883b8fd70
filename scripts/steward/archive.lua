-- steward.archive: old events and decision-log rows moved out of the store into compressed
-- archive files under <var_dir>/archive (docs/archive.md), and read back: events.replay reads the
-- archived part of its range transparently; list, verify and cat look at the files.
-- A policy calls archive.run only with the `archive` capability (granted by the operator).
local store = require "steward.runtime.store"
local time = require "steward.time"
local manifest = require "steward.archive.manifest"
local runner = require "steward.archive.run"
local reader = require "steward.archive.read"

local type, error, tostring, pairs = type, error, tostring, pairs

local M = {}

local dir      -- set by configure (the daemon: <var_dir>/archive)
local policies -- fn -> the daemon's loaded policies (what events they still need)

local function the_dir(fname)
  if not dir then error("archive." .. fname .. ": no archive directory: inside the daemon there is one " ..
    "(<var_dir>/archive), elsewhere call archive.configure{dir = ...}", 3) end
  return dir
end

-- configure{dir, policies} : where the archive lives; also makes events.replay and the log's
-- last seq see it (steward.runtime.events' archive source). policies: a function returning the
-- daemon's loaded policy set, so a run keeps exactly the events they still have to handle.
-- Not for policies.
function M.configure(opts)
  if type(opts) ~= "table" or type(opts.dir) ~= "string" or opts.dir == "" then
    error("archive.configure: dir: non-empty string expected", 2)
  end
  if opts.policies ~= nil and type(opts.policies) ~= "function" then
    error("archive.configure: policies: function expected", 2)
  end
  dir, policies = opts.dir, opts.policies
  require("steward.runtime.events").set_archive({
    replay = function(f) return reader.replay(dir, f) end,
    high = function() return reader.high(dir) end,
  })
  return true
end

function M.dir() return dir end

local function bool(v, name, default)
  if v == nil then return default end
  if type(v) ~= "boolean" then error("archive.run: " .. name .. ": boolean expected", 3) end
  return v
end

-- run{older_than = "30d" | seconds, before = time, events = true, decisions = true,
--     segment = 100000} -> report | nil, err
function M.run(opts)
  if type(opts) ~= "table" then error("archive.run: options: table expected, got " .. type(opts), 2) end
  local cutoff
  if opts.older_than ~= nil then
    local d, err = time.parse_duration(opts.older_than)
    if not d then error("archive.run: older_than: " .. tostring(err), 2) end
    if d <= 0 then error("archive.run: older_than: a positive duration expected", 2) end
    cutoff = time.now() - d
  end
  if opts.before ~= nil then
    if cutoff then error("archive.run: older_than and before: give one of them", 2) end
    if type(opts.before) ~= "number" then error("archive.run: before: time (seconds) expected", 2) end
    cutoff = opts.before
  end
  if not cutoff then error("archive.run: older_than: duration expected (\"30d\")", 2) end
  local seg = opts.segment or 100000
  if type(seg) ~= "number" or seg ~= math.floor(seg) or seg < 1 then
    error("archive.run: segment: integer >= 1 expected (rows per file)", 2)
  end
  local ev, dc = bool(opts.events, "events", true), bool(opts.decisions, "decisions", true)
  local st = store.default()
  if not st then error("archive.run: no store: inside the daemon there is one", 2) end
  return runner.run(st, the_dir("run"), { cutoff = cutoff, events = ev, decisions = dc, segment = seg,
    actor = type(opts.actor) == "string" and opts.actor or nil, policies = policies })
end

-- list() -> manifests (oldest first, events then decisions), leftovers | nil, err
function M.list() return manifest.list(the_dir("list")) end

-- verify([file]) -> {ok, files = {{file, kind, ok, error, count}}} | nil, err
function M.verify(file)
  if file ~= nil and type(file) ~= "string" then error("archive.verify: file: string expected", 2) end
  return reader.verify(the_dir("verify"), file)
end

local DECISION_FILTERS = { policy = "string", event_id = "string", outcome = "string", ref = "string",
  tenant = "string", since = true, ["until"] = true, from_id = "number", to_id = "number" }

-- decisions{policy, event_id, outcome, ref, tenant, since, until, from_id, to_id} -> iterator
-- over archived decision-log rows (as steward.runtime.store.decisions returns them), oldest
-- first; raises on a bad file
function M.decisions(f)
  f = f or {}
  if type(f) ~= "table" then error("archive.decisions: filter: table expected, got " .. type(f), 2) end
  for k, v in pairs(f) do
    local want = DECISION_FILTERS[k]
    if not want then error("archive.decisions: " .. tostring(k) .. ": unknown filter", 2) end
    if want ~= true and type(v) ~= want then error("archive.decisions: " .. k .. ": " .. want .. " expected", 2) end
  end
  return reader.decisions(the_dir("decisions"), f)
end

-- cat(file) -> iterator over the records of one segment; raises on a bad file
function M.cat(file) return reader.cat(the_dir("cat"), file) end

return M
