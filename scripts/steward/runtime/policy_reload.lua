-- Policy versions and hot reload. Every load compiles each file into a fresh environment
-- and validates it before anything is swapped; the swap replaces the whole set at once,
-- between dispatches. A policy that fails to load keeps its previous version (the failure is
-- logged, counted, and shown as last_error); a policy whose file is gone is dropped. Each
-- version (content hash) is kept in the store with its source, so rollback can restore it.
local policies = require "steward.runtime.policies"
local store = require "steward.runtime.store"
require "steward.runtime.store.schema" -- the decisions table, which retention reads
local fs = require "steward.fs"
local time = require "steward.time"
local log = require "steward.log"
local metrics = require "steward.metrics"

local pairs, ipairs, tostring, type = pairs, ipairs, tostring, type
local format = string.format

local M = {}

store.register_migrations("policy_versions", {
  { version = 1, sql = {
    sqlite = [[CREATE TABLE policy_versions (name TEXT NOT NULL, version TEXT NOT NULL, file TEXT NOT NULL,
      source TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, version))]],
    postgres = [[CREATE TABLE policy_versions (name TEXT COLLATE "C" NOT NULL, version TEXT NOT NULL,
      file TEXT NOT NULL, source TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, version))]],
  } },
})

local m_reloads = metrics.counter("steward_policy_reloads_total", "Policy reloads by outcome (ok, partial)", { "outcome" })
local m_errors = metrics.counter("steward_policy_load_errors_total", "Policy files that failed to load, by file", { "file" })
local m_loaded = metrics.gauge("steward_policies_loaded", "Policies loaded", {})

local R = {}
R.__index = R

-- new{dir, store, on_swap = fn(set), keep_versions = 20} -> registry
function M.new(opts)
  return setmetatable({ dir = opts.dir, st = opts.store, on_swap = opts.on_swap, set = {}, grants = opts.grants or {},
    overlays = opts.overlays, keep_versions = opts.keep_versions or 20,
    errors = {}, by_file = {}, loaded_at = {}, watches = {} }, R)
end

-- "path:12: message" -> {file, line, message}
local function parse_error(file, err)
  local f, line, msg = tostring(err):match("^(.-):(%d+): (.*)$")
  return { file = f or file, line = tonumber(line), message = msg or tostring(err) }
end

-- Retention (config policy_versions_keep): a policy keeps its newest versions, the version
-- it runs, and every version a decision still in the decision log names, so the source
-- behind any logged decision stays readable (GET /v1/policies/NAME, rollback). Without it
-- every reload of a changed file added a row forever. Ranked with a correlated count, which
-- both backends run; a policy has few rows, and decisions are found by (policy, version).
local PRUNE = "DELETE FROM policy_versions WHERE name = $1 AND version <> $2 " ..
  "AND (SELECT count(*) FROM policy_versions n WHERE n.name = $1 AND (n.created > policy_versions.created " ..
  "OR (n.created = policy_versions.created AND n.version > policy_versions.version))) >= $3 " ..
  "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.policy = $1 AND d.version = policy_versions.version)"

local function prune_stmt(self, p)
  return { PRUNE, p.name, p.version, self.keep_versions }
end

-- prune_versions() -> true, or nil, err: retention for every loaded policy at once (the
-- daemon runs it with the decision log's purge, which may release old versions).
function R:prune_versions()
  if not self.st then return true end
  local stmts = {}
  for _, p in pairs(self.set) do stmts[#stmts + 1] = prune_stmt(self, p) end
  if #stmts == 0 then return true end
  local ok, err = self.st:batch(stmts)
  if not ok then return nil, err end
  return true
end

-- Every new version goes into the store in one atomic batch (one commit for a whole reload).
-- In cluster mode (PostgreSQL, self.instance set by the daemon) the same unit records the
-- cluster's current version of each policy and NOTIFYs the other instances, so the
-- announcement is sent if and only if the change committed. Loading at start-up announces
-- nothing: a restarting instance with an old directory must not override the cluster.
local function remember_versions(self, list, reason)
  if not self.st or #list == 0 then return end
  local stmts, now = {}, time.now()
  for i, p in ipairs(list) do
    stmts[i] = { "INSERT INTO policy_versions (name, version, file, source, created) " ..
      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING", p.name, p.version, p.file, p.source, now }
  end
  if self.instance and self.st:backend() == "postgres" then
    local start, names = reason == "start", {}
    for _, p in ipairs(list) do
      names[#names + 1] = p.name
      stmts[#stmts + 1] = { "INSERT INTO policy_current (name, version, instance, updated) VALUES ($1, $2, $3, $4) " ..
        (start and "ON CONFLICT (name) DO NOTHING" or "ON CONFLICT (name) DO UPDATE SET version = excluded.version, " ..
        "instance = excluded.instance, updated = excluded.updated"), p.name, p.version, self.instance, now }
    end
    if not start then
      stmts[#stmts + 1] = { "SELECT pg_notify('steward_policies', $1)",
        require("steward.json").encode({ instance = self.instance, reason = reason, policies = names }) }
    end
  end
  local ok, err = self.st:batch(stmts)
  if not ok then log.warn("cannot record the policy versions", { count = #list, error = err }) return end
  -- Retention in a unit of its own: a failing prune must not cost the record (or the NOTIFY).
  local prunes = {}
  for i, p in ipairs(list) do prunes[i] = prune_stmt(self, p) end
  ok, err = self.st:batch(prunes)
  if not ok then log.warn("policy version retention failed", { error = err }) end
end

-- reload(reason) -> summary {loaded, changed = {...}, failed = {...}, removed = {...}}
function R:reload(reason)
  local loaded, errors = policies.load_dir(self.dir, { grants = self.grants })
  if not loaded then
    m_reloads:inc(1, "error")
    return nil, "cannot read the policy directory: " .. tostring(errors)
  end
  -- Config overlays (environment, tenants) are checked against each policy's schema: a
  -- policy they break fails to load like a broken file, listing every failing field.
  local schema = require "steward.runtime.policy.schema"
  for name, p in pairs(loaded) do
    local ok, serr = schema.apply(p, self.overlays)
    if not ok then
      loaded[name] = nil
      errors[#errors + 1] = { file = p.file, error = serr }
    end
  end
  local next_set, changed, removed, failed, fresh = {}, {}, {}, {}, {}
  local failed_files = {}
  for _, e in ipairs(errors) do
    failed_files[e.file] = parse_error(e.file, e.error)
    failed[#failed + 1] = e.file
    m_errors:inc(1, e.file)
    log.error("policy failed to load; its previous version keeps running", { file = e.file, error = e.error, reason = reason })
  end
  for name, p in pairs(loaded) do
    local old = self.set[name]
    if old and old.version == p.version then
      next_set[name] = old -- unchanged: keep the very same object
    else
      next_set[name] = p
      self.loaded_at[name] = time.now()
      changed[#changed + 1] = name
      fresh[#fresh + 1] = p
    end
  end
  for name, old in pairs(self.set) do
    if not next_set[name] then
      if failed_files[old.file] then
        next_set[name] = old
      else
        removed[#removed + 1] = name
      end
    end
  end
  self.errors = failed_files
  self.set = next_set
  local n = 0
  for _ in pairs(next_set) do n = n + 1 end
  m_loaded:set(n)
  m_reloads:inc(1, #failed > 0 and "partial" or "ok")
  if self.on_swap then self.on_swap(next_set) end
  remember_versions(self, fresh, reason) -- after the swap: the new versions run while this commits
  table.sort(changed); table.sort(removed); table.sort(failed)
  log.info("policies loaded", { reason = reason, loaded = n, changed = table.concat(changed, ","),
    removed = table.concat(removed, ","), failed = #failed })
  return { loaded = n, changed = changed, removed = removed, failed = failed }
end

-- status(name) -> view with last_error, or nil
function R:status(name)
  local p = self.set[name]
  if not p then return nil end
  return { name = p.name, version = p.version, file = p.file, loaded_at = self.loaded_at[name],
           last_error = self.errors[p.file] }
end

function R:error_list()
  local out = {}
  for _, e in pairs(self.errors) do out[#out + 1] = e end
  table.sort(out, function(a, b) return a.file < b.file end)
  return out
end

function R:versions(name)
  return self.st:sql("SELECT version, file, created FROM policy_versions WHERE name = $1 ORDER BY created DESC", name)
end

-- rollback(name [, version]) -> the restored version, or nil, err. Writes the stored source
-- back to the policy's file (so a restart keeps it), then reloads.
function R:rollback(name, version)
  local cur = self.set[name]
  local rows, err
  if version then
    rows, err = self.st:sql("SELECT version, file, source FROM policy_versions WHERE name = $1 AND version = $2", name, version)
  else
    rows, err = self.st:sql("SELECT version, file, source FROM policy_versions WHERE name = $1 AND version <> $2 " ..
      "ORDER BY created DESC LIMIT 1", name, cur and cur.version or "")
  end
  if not rows then return nil, err end
  local v = rows[1]
  if not v then
    return nil, version and format("policy %s has no stored version %s", name, version)
      or format("policy %s has no earlier version", name)
  end
  local file = cur and cur.file or v.file
  local ok, werr = fs.write_atomic(file, v.source)
  if not ok then return nil, werr end
  local res, rerr = self:reload("rollback")
  if not res then return nil, rerr end
  local now = self.set[name]
  if not now or now.version ~= v.version then
    return nil, format("rolled back %s to %s, but it did not load: %s", name, v.version,
      tostring(self.errors[file] and self.errors[file].message))
  end
  log.info("policy rolled back", { policy = name, version = v.version })
  return v.version
end

-- watch(): reload on file changes under the directory, debounced (editors write in bursts).
function R:watch(debounce)
  local fswatch = require "steward.fswatch"
  debounce = debounce or 0.1
  local pending, running, dirty = false, false, false
  local function schedule()
    if pending then return end
    pending = true
    time.after(debounce, function()
      pending = false
      if running then dirty = true; return end
      running = true
      repeat
        dirty = false
        self:reload("file change")
        self:rewatch(schedule)
      until not dirty
      running = false
    end)
  end
  self:rewatch(schedule)
end

-- (Re)watches the directory and every subdirectory: inotify is not recursive.
function R:rewatch(on_change)
  local seen = {}
  local function walk(dir)
    seen[dir] = true
    if not self.watches[dir] then
      local w, err = require("steward.fswatch").watch(dir, function() on_change() end)
      if w then self.watches[dir] = w else log.warn("cannot watch the policy directory", { dir = dir, error = err }) end
    end
    local entries = fs.list(dir) or {}
    for _, e in ipairs(entries) do
      if e.type == "directory" and e.name:sub(1, 1) ~= "." then walk(dir .. "/" .. e.name) end
    end
  end
  walk(self.dir)
  for dir, w in pairs(self.watches) do
    if not seen[dir] then w:cancel(); self.watches[dir] = nil end
  end
end

function R:close()
  for dir, w in pairs(self.watches) do w:cancel(); self.watches[dir] = nil end
end

return M
