-- Policy versions and hot reload. Every load compiles each file into a fresh environment
-- and validates it before anything is swapped; the swap replaces the whole set at once,
-- between dispatches. A policy that fails to load keeps its previous version (the failure is
-- logged, counted, and shown as last_error); a policy whose file is gone is dropped. Each
-- version (content hash) is kept in the store with its source, so rollback can restore it.
-- A version digests the policy's source, the policies/lib modules it required and its merged
-- configuration (steward.runtime.policies.version): editing a lib module or policy_config changes the
-- versions of exactly the policies it affects. A reload asked for by an operator (SIGHUP,
-- steward reload, the API, the REPL) also re-reads steward.lua: policy_config, tenant_config
-- and log_level apply at once; any other changed key is named as needing a restart.
local policies = require "steward.runtime.policies"
local store = require "steward.runtime.store"
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

-- new{dir, store, on_swap = fn(set), overlays = {env, tenants} | cfg = the daemon's config,
--     load_config = fn() -> cfg | nil, err, on_config = fn(cfg, keys)} -> registry
-- With cfg, the overlays are its policy_config and tenant_config, and reload(reason,
-- {config = true}) re-reads it with load_config, updates cfg's reloadable keys in place and
-- calls on_config with the list of keys it changed.
function M.new(opts)
  local self = setmetatable({ dir = opts.dir, st = opts.store, on_swap = opts.on_swap, set = {},
    overlays = opts.overlays, cfg = opts.cfg, grants = opts.grants or {}, load_config = opts.load_config,
    on_config = opts.on_config, keep_versions = opts.keep_versions or 20, errors = {}, by_file = {}, loaded_at = {}, watches = {} }, R)
  if self.cfg then self.overlays = { env = self.cfg.policy_config, tenants = self.cfg.tenant_config } end
  return self
end

-- Re-reads the configuration: applies the reloadable keys to self.cfg (and the overlays),
-- returns them and the keys that wait for a restart; nil, err leaves everything as it was.
local function reread_config(self, reason)
  local config = require "steward.runtime.config"
  local new, err = self.load_config()
  if not new then return nil, "config: " .. tostring(err) end
  local reloadable, restart = config.diff(self.cfg, new)
  for _, k in ipairs(reloadable) do self.cfg[k] = new[k] end
  self.overlays = { env = self.cfg.policy_config, tenants = self.cfg.tenant_config }
  self.grants = self.cfg.grants or {}
  if #reloadable > 0 then
    log.info("config reloaded", { reason = reason, changed = table.concat(reloadable, ",") })
    if self.on_config then self.on_config(self.cfg, reloadable) end
  end
  if #restart > 0 then
    log.warn("restart required: " .. table.concat(restart, ", "), { reason = reason })
  end
  return reloadable, restart
end

-- A lib module the previous version required from a handler (after load) is not in the new
-- version's list yet: it is carried over with its current digest, so a change to it makes a
-- new version too. digests caches file -> digest for one reload; a file gone is left out.
local function carry_lazy_libs(p, old, digests)
  for name, l in pairs(old.libs or {}) do
    if not p.libs[name] then
      local d = digests[l.file]
      if d == nil then
        local text = fs.read(l.file)
        d = text and policies.digest(text) or false
        digests[l.file] = d
      end
      if d then p.libs[name] = { file = l.file, digest = d } end
    end
  end
end

-- A version kept because its new one failed to load still runs under the grants in force: a
-- capability whose grant was withdrawn is taken from it (a failed reload must not preserve a
-- power the operator revoked).
local function narrow(p, grants)
  if not p.box or not p.capabilities then return end
  local caps = require "steward.runtime.policy.capabilities"
  local kept, lost = {}, {}
  for cap, scope in pairs(p.capabilities) do
    local e = caps.resolve(p, { [cap] = scope }, grants)
    if e then kept[cap] = e[cap] else lost[#lost + 1] = cap end
  end
  if #lost == 0 then return end
  table.sort(lost)
  p.capabilities, p.box.caps = kept, kept
  p.granted = caps.granted(grants, p.name)
  -- What it may do changed, so its version does (decisions name what ran; a grant given back
  -- later makes a version that differs again, so the full one is swapped in).
  p.version = policies.version(p)
  log.warn("a grant was withdrawn: the running version of the policy loses it", { policy = p.name,
    capabilities = table.concat(lost, ",") })
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
-- In cluster mode (self.instance set by the daemon: PostgreSQL, or worker processes) the same unit records the
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
  if self.instance then
    local start, names = reason == "start", {}
    for _, p in ipairs(list) do
      names[#names + 1] = p.name
      stmts[#stmts + 1] = { "INSERT INTO policy_current (name, version, instance, updated) VALUES ($1, $2, $3, $4) " ..
        (start and "ON CONFLICT (name) DO NOTHING" or "ON CONFLICT (name) DO UPDATE SET version = excluded.version, " ..
        "instance = excluded.instance, updated = excluded.updated"), p.name, p.version, self.instance, now }
    end
    -- (Worker processes on SQLite have no NOTIFY: they compare versions every second.)
    if not start and self.st:backend() == "postgres" then
      stmts[#stmts + 1] = { "SELECT pg_notify('steward_policies', $1)",
        require("steward.json").encode({ instance = self.instance, reason = reason, policies = names }) }
    end
  end
  local ok, err = self.st:batch(stmts)
  if not ok then log.warn("cannot record the policy versions", { count = #list, error = err }) return end
  -- A tenant's new policy version is an event of that tenant, `tenant.policy.deployed` (its
  -- onboarding's "first policy" milestone, docs/customer-success.md). Its id is the version's,
  -- so a restart, or another worker loading the same version, adds nothing.
  local deployed = {}
  for _, p in ipairs(list) do
    if p.tenant then
      deployed[#deployed + 1] = { id = ("tenant.policy.deployed:%s:%s"):format(p.name, p.version):sub(1, 200),
        type = "tenant.policy.deployed", tenant = p.tenant, source = "steward",
        data = { policy = p.name, version = p.version, file = p.file, reason = reason } }
    end
  end
  if #deployed > 0 then
    local res, derr = require("steward.runtime.events").append(self.st, deployed)
    if not res then log.warn("cannot record tenant.policy.deployed", { count = #deployed, error = tostring(derr) }) end
  end
  -- Retention in a unit of its own: a failing prune must not cost the record (or the NOTIFY).
  local prunes = {}
  for i, p in ipairs(list) do prunes[i] = prune_stmt(self, p) end
  ok, err = self.st:batch(prunes)
  if not ok then log.warn("policy version retention failed", { error = err }) end
end

-- describe(p) -> {source_digest, libs = {{name, file, digest}...}, config, tenant_configs}: what
-- a version is made of, configuration redacted (steward.runtime.config.redact), for the API and REPL.
function M.describe(p)
  local redact = require("steward.runtime.config").redact
  local libs = {}
  for name, l in pairs(p.libs or {}) do libs[#libs + 1] = { name = name, file = l.file, digest = l.digest } end
  table.sort(libs, function(a, b) return a.name < b.name end)
  return { source_digest = p.source_digest, libs = libs, config = redact(p.config or {}),
           tenant_configs = redact(p.tenant_configs or {}) }
end

-- Remembers what the last versions of a policy were made of (for explain of older decisions).
local KEEP_SEEN = 20
local function remember_seen(self, p)
  self.seen = self.seen or {}
  local byv = self.seen[p.name]
  if not byv then byv = { order = {} }; self.seen[p.name] = byv end
  if byv[p.version] then return end
  byv[p.version] = M.describe(p)
  byv.order[#byv.order + 1] = p.version
  if #byv.order > KEEP_SEEN then byv[table.remove(byv.order, 1)] = nil end
end

-- reload(reason [, {config = true}]) -> summary {loaded, changed = {...}, failed = {...},
-- removed = {...}, config = {keys applied}, restart_required = {keys}}, or nil, err (the
-- directory or, with config, the configuration cannot be read: nothing changed).
function R:reload(reason, opts)
  local config_changed, restart = {}, {}
  if opts and opts.config and self.load_config then
    local applied, second = reread_config(self, reason)
    if not applied then
      m_reloads:inc(1, "error")
      log.error("reload refused: the configuration does not load; nothing changed", { reason = reason, error = second })
      return nil, second
    end
    config_changed, restart = applied, second
  end
  -- Tenants' own settings (their records, docs/tenants.md) merge over tenant_config.
  if self.cfg then self.overlays.tenants = require("steward.tenants").overlay(self.cfg.tenant_config) end
  local loaded, errors = policies.load_dir(self.dir, { grants = self.grants })
  if not loaded then
    m_reloads:inc(1, "error")
    return nil, "cannot read the policy directory: " .. tostring(errors)
  end
  -- Config overlays (environment, tenants) are checked against each policy's schema: a
  -- policy they break fails to load like a broken file, listing every failing field.
  local schema = require "steward.runtime.policy.schema"
  local digests = {}
  for name, p in pairs(loaded) do
    local ok, serr = schema.apply(p, self.overlays)
    if not ok then
      loaded[name] = nil
      errors[#errors + 1] = { file = p.file, error = serr }
    else
      if self.set[name] then carry_lazy_libs(p, self.set[name], digests) end
      p.version = policies.version(p) -- now with the merged configuration
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
      remember_seen(self, p)
    end
  end
  for name, old in pairs(self.set) do
    if not next_set[name] then
      if failed_files[old.file] then
        narrow(old, self.grants)
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
  return { loaded = n, changed = changed, removed = removed, failed = failed, config = config_changed,
           restart_required = restart }
end

-- recall(name, version) -> describe() of a version loaded since the daemon started, or nil.
function R:recall(name, version)
  local byv = self.seen and self.seen[name]
  return byv and byv[version]
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
    -- The latest stored source that differs from the running one (a version that changed
    -- only by its lib modules or configuration has the same source).
    rows, err = self.st:sql("SELECT version, file, source FROM policy_versions WHERE name = $1 AND version <> $2 " ..
      "AND source <> $3 ORDER BY created DESC LIMIT 1", name, cur and cur.version or "", cur and cur.source or "")
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
  if not now or now.source ~= v.source then
    return nil, format("rolled back %s to %s, but it did not load: %s", name, v.version,
      tostring(self.errors[file] and self.errors[file].message))
  end
  log.info("policy rolled back", { policy = name, version = now.version, source_of = v.version })
  return now.version
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
