-- steward.runtime.testing.runner: `steward test [PATHS...]`. Finds *_spec.lua files, runs each with
-- describe/it, assertions, a fake clock, recorded side effects and a fresh store, and prints
-- TAP. The fakes are modules put in package.loaded before anything else is required, so the
-- policies a spec loads (and the store modules they use) `require` the fakes; the daemon's
-- code paths are untouched.

-- 1. The fakes, first: every module required after this point sees them.
local clockm = require "steward.runtime.testing.clock"
local fake_time = clockm.fake_module()
package.loaded["steward.time"] = fake_time
package.loaded["steward.time.native"] = fake_time
local capture = require "steward.runtime.testing.capture"
local real_http = require "steward.http"
package.loaded["steward.http"] = capture.fake_http(real_http)
local real_events = require "steward.runtime.events"
package.loaded["steward.runtime.events"] = capture.fake_events(real_events)

-- 2. Everything else.
local fs = require "steward.fs"
local task = require "steward.task"
local store = require "steward.runtime.store"
local policies = require "steward.runtime.policies"
local assertion = require "steward.runtime.testing.assert"
-- The CPU/memory guard policies run under in the daemon, when this build has it.
local has_guard, guard = pcall(require, "steward.runtime.guard")
if not (has_guard and type(guard) == "table" and guard.run) then guard = nil end

local type, pairs, ipairs, tostring, error, xpcall, select = type, pairs, ipairs, tostring, error, xpcall, select
local format, concat, write = string.format, table.concat, io.write

assertion.internal[debug.getinfo(1, "S").source] = true
for _, m in ipairs({ "steward.runtime.testing.clock", "steward.runtime.testing.capture" }) do
  local mod = package.loaded[m]
  for _, f in pairs(mod) do
    if type(f) == "function" then assertion.internal[debug.getinfo(f, "S").source] = true break end
  end
end

local M = {}

local TEST_TIMEOUT = tonumber(os.getenv("STEWARD_TEST_TIMEOUT") or "") or 60

local function out(...)
  write(...)
  io.stdout:flush()
end

local function diag(text)
  for line in (tostring(text) .. "\n"):gmatch("(.-)\n") do out("# ", line, "\n") end
end

-- An error handler: assertion failures pass as they are, anything else gets a traceback
-- without the runner's own frames.
local function on_error(e)
  if assertion.is_failure(e) then return e end
  local text = tostring(e)
  -- An error re-raised from a handler's task already carries the handler's traceback.
  local tb = text:find("\nstack traceback:", 1, true) and text or debug.traceback(text, 2)
  local lines = {}
  for line in (tb .. "\n"):gmatch("(.-)\n") do
    if not (line:find("steward/testing/", 1, true) or line:find("^%s*%[builtin#") or
            line:find("^%s*%[C%]: in function '[%w_]+'$")) then
      lines[#lines + 1] = line
    end
  end
  if lines[#lines] == "stack traceback:" then lines[#lines] = nil end
  return concat(lines, "\n")
end

local function call(fn, ...)
  return xpcall(fn, on_error, ...)
end

-- Runs fn(...) as its own task and waits for it: returns true, results... or false, err.
local function in_task(name, timeout, fn, ...)
  local args = { n = select("#", ...), ... }
  local h = task.spawn({ name = name, timeout = timeout }, function()
    return call(fn, unpack(args, 1, args.n))
  end)
  local res = { h:join() }
  if not res[1] then return false, "task ended: " .. tostring(res[2]) end
  return unpack(res, 2, table.maxn(res))
end

-- Every *_spec.lua under path (or path itself when it is a file), sorted.
local function find_specs(path, found)
  local st, err = fs.stat(path)
  if not st then return nil, err end
  if st.type ~= "directory" then
    found[#found + 1] = path
    return true
  end
  local entries
  entries, err = fs.list(path)
  if not entries then return nil, err end
  for _, e in ipairs(entries) do
    local p = path:gsub("/+$", "") .. "/" .. e.name
    if e.type == "directory" and e.name:sub(1, 1) ~= "." then
      local ok, werr = find_specs(p, found)
      if not ok then return nil, werr end
    elseif e.type == "file" and e.name:match("_spec%.lua$") then
      found[#found + 1] = p
    end
  end
  return true
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

-- The default name of a policy file, as the daemon gives it: the path below the policy
-- directory, dots for slashes.
local function policy_name(path)
  local rel = path:match(".*policies/(.+)%.lua$") or path:match("([^/]+)%.lua$") or path
  return (rel:gsub("/", "."))
end

-- One spec file's world: the capture and the loaded policies live as long as the file; the
-- store and the clock are made afresh for every test (fresh()), so tests do not see each
-- other's rows, timers or time.
local function close_store(w)
  if not w.store then return end
  if store.default() == w.store then store.set_default(nil) end
  w.store:close()
  for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(w.tmp .. suffix) end
  w.store, w.tmp = nil, nil
end

local function fresh(w)
  close_store(w)
  local tmp = os.tmpname()
  local st, err = store.open("sqlite:" .. tmp)
  if not st then
    os.remove(tmp)
    return nil, "cannot open the spec's store: " .. tostring(err)
  end
  w.tmp, w.store = tmp, capture.wrap_store(st)
  local cap = w.cap
  w.clock = clockm.new({
    store = st,
    spawn = function(fn, ...)
      local ok, err2 = in_task("timer", TEST_TIMEOUT, fn, ...)
      if not ok then error(err2, 0) end
    end,
    on_arm = function(rec) cap.captured.timers[#cap.captured.timers + 1] = rec end,
    on_fire = function(list)
      -- As the daemon does: runtime modules subscribed to the log hear of timer events
      -- (steward.deploy.approvals expires an approval on its timeout's).
      real_events.published(w.store, list)
      for _, ev in ipairs(list) do
        cap.captured.fired[#cap.captured.fired + 1] = ev
        -- The policies this test loaded, and those the file loaded at its top level
        -- unless the test loaded one of the same name.
        local seen = {}
        for _, list in ipairs({ w.test_loaded, w.file_loaded }) do
          for _, p in ipairs(list) do
            if not seen[p.name] and p.def.handle and p.def.matches(ev.type) then
              seen[p.name] = true
              p:handle(ev)
            end
          end
        end
      end
    end,
    pause = function(on) cap.paused = on end,
  })
  w.test_loaded = {}
  store.set_default(w.store)
  clockm.set_current(w.clock)
  if w.env then rawset(w.env, "store", w.store) end
  return true
end

local function new_world(path)
  local w = { path = path, dir = dirname(path), cap = capture.new() }
  local ok, err = fresh(w)
  if not ok then return nil, err end
  w.file_loaded = w.test_loaded -- what the file's top level loads
  return w
end

local function close_world(w)
  clockm.set_current(nil)
  capture.set_current(nil)
  close_store(w)
end

-- policy.load(path [, {config = {...}, name = "..."}]) -> a driver for the policy.
local Policy = {}
Policy.__index = Policy

local function load_policy(w, path, opts)
  if type(path) ~= "string" then error("policy.load: path: string expected, got " .. type(path), 2) end
  opts = opts or {}
  local file = path
  if not fs.exists(file) and fs.exists(w.dir .. "/" .. path) then file = w.dir .. "/" .. path end
  -- policies/lib beside the policy directory the file is in, as the daemon would use.
  local lib_dir = file:match("^(.*policies)/") and (file:match("^(.*policies)/") .. "/lib") or nil
  -- trust: a spec runs the policy with what it declares (every side effect is captured).
  local def, err = policies.load_file(file, opts.name or policy_name(file), { lib_dir = lib_dir, trust = true })
  if not def then error("policy.load: " .. tostring(err), 2) end
  local config = copy(def.config)
  for k, v in pairs(opts.config or {}) do config[k] = v end
  local p = setmetatable({ def = def, name = def.name, version = def.version, file = file,
                           config = config, world = w, extra_ctx = opts.ctx }, Policy)
  w.test_loaded[#w.test_loaded + 1] = p
  return p
end

-- The same ctx the daemon gives (steward.runtime.policy_ctx), plus what the spec adds.
function Policy:ctx(extra)
  local ctx = require("steward.runtime.policy_ctx").new(self, { attempt = 1, event_id = extra and extra.event_id })
  ctx.config = self.config
  for k, v in pairs(self.extra_ctx or {}) do ctx[k] = v end
  for k, v in pairs(extra or {}) do ctx[k] = v end
  return ctx
end

function Policy:matches(event_type) return self.def.matches(event_type) end

-- Runs fn under the policy's budgets when the loader gave it some (as the daemon does).
local function guarded(p, fn)
  local budget = p.def.budget
  if not (guard and budget) then return fn end
  return function(...)
    local r = { n = 0 }
    local function pack(...) r.n = select("#", ...); for i = 1, r.n do r[i] = (select(i, ...)) end end
    pack(guard.run(budget, fn, ...))
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

-- handle(event [, ctx]) -> the handler's results; raises its error. The event is validated
-- and appended to the spec's store (as the daemon would have), so it has an id and a seq.
function Policy:handle(ev, extra)
  if not self.def.handle then error("policy " .. self.name .. " has no handle function", 2) end
  if type(ev) ~= "table" then error("handle: event: table expected, got " .. type(ev), 2) end
  local w = self.world
  if not ev.seq then
    local v, verr = real_events.validate(ev, nil, w.clock.t)
    if not v then error("handle: event." .. verr.field .. ": " .. verr.reason, 2) end
    w.cap.paused = true
    local res, aerr = real_events.append(w.store, { v }, { now = w.clock.t })
    w.cap.paused = false
    if not res then error("handle: cannot store the event: " .. tostring(aerr), 2) end
    v.seq = res.seqs[1] or (real_events.get(w.store, v.id) or {}).seq
    ev = v
  end
  local r = { in_task(self.name, self.def.timeout or TEST_TIMEOUT, guarded(self, self.def.handle), ev, self:ctx(extra)) }
  if not r[1] then error(type(r[2]) == "string" and (r[2] .. "\n(p:handle called at " .. assertion.where() .. ")") or r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end

-- decide(input [, ctx]) -> the decision; raises the policy's error.
function Policy:decide(input, extra)
  if not self.def.decide then error("policy " .. self.name .. " has no decide function", 2) end
  local r = { in_task(self.name, self.def.timeout or TEST_TIMEOUT, guarded(self, self.def.decide), input, self:ctx(extra)) }
  if not r[1] then error(type(r[2]) == "string" and (r[2] .. "\n(p:decide called at " .. assertion.where() .. ")") or r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end

-- The globals of a spec file.
local function spec_env(w)
  local root = { name = nil, before = {}, after = {}, children = {}, parent = nil }
  local cur = root
  local env = {}
  function env.describe(name, fn)
    if type(name) ~= "string" then error("describe: name: string expected", 2) end
    if type(fn) ~= "function" then error("describe: fn: function expected", 2) end
    local s = { name = name, before = {}, after = {}, children = {}, parent = cur }
    cur.children[#cur.children + 1] = s
    local prev = cur
    cur = s
    fn() -- an error here fails the whole file, which reports it
    cur = prev
  end
  function env.it(name, fn)
    if type(name) ~= "string" then error("it: name: string expected", 2) end
    if fn ~= nil and type(fn) ~= "function" then error("it: fn: function expected", 2) end
    cur.children[#cur.children + 1] = { test = true, name = name, fn = fn, parent = cur }
  end
  function env.before_each(fn)
    if type(fn) ~= "function" then error("before_each: fn: function expected", 2) end
    cur.before[#cur.before + 1] = fn
  end
  function env.after_each(fn)
    if type(fn) ~= "function" then error("after_each: fn: function expected", 2) end
    cur.after[#cur.after + 1] = fn
  end
  env.pending = function(name) env.it(name) end
  env.assert = assertion.new()
  env.clock = {
    now = function() return w.clock.t end,
    monotonic = function() return w.clock.mono end,
    advance = function(d) return w.clock:advance(d) end,
    set = function(t) return w.clock:set(t) end,
    pending = function() return w.clock:pending() end,
  }
  env.http_stub = capture.stub_api(w.cap)
  env.captured = w.cap.captured
  env.writes_to = function(name) return capture.writes_to(w.cap, name) end
  env.policy = { load = function(path, opts) return load_policy(w, path, opts) end }
  env.store = w.store
  -- emitted(type) -> the data of every event of that type in the spec's store, in log order
  env.emitted = function(type_)
    local out = {}
    for _, ev in ipairs(w.store.db:query("SELECT data FROM events WHERE type = $1 ORDER BY seq", type_) or {}) do
      out[#out + 1] = require("steward.json").decode(ev.data)
    end
    return out
  end
  env.spec_file, env.spec_dir = w.path, w.dir
  -- What a spec prints is TAP commentary: a bare line on stdout is not TAP.
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    diag(concat(parts, "\t"))
  end
  w.cap.env, w.env = env, env
  package.loaded["steward.runtime.testing"] = env
  return setmetatable(env, { __index = _G }), root
end

local total, failed, skipped, files, filtered_out = 0, 0, 0, 0, 0

local filter -- --filter: only the tests whose full name contains this text run

-- A "#" in a name would start a TAP directive ("# TODO" marks a failure as expected): TAP's
-- escape is "\#".
local function tap_name(name)
  return (name:gsub("\n", " "):gsub("#", "\\#"))
end

local function report(ok, name, err, extra)
  total = total + 1
  name = tap_name(name)
  if ok then
    out("ok ", total, " - ", name, "\n")
    return
  end
  failed = failed + 1
  out("not ok ", total, " - ", name, "\n")
  if assertion.is_failure(err) then
    diag("  at " .. err.where .. ": " .. err.message)
    if err.detail then diag(err.detail) end
  else
    diag("  " .. tostring(err))
  end
  local shown = assertion.is_failure(err) and err.message or tostring(err)
  for _, e in ipairs(extra or {}) do
    if not shown:find(tostring(e), 1, true) then diag("  also: " .. tostring(e)) end
  end
end

local function chain(suite)
  local list = {}
  while suite do
    table.insert(list, 1, suite)
    suite = suite.parent
  end
  return list
end

local function full_name(t)
  local parts = {}
  for _, s in ipairs(chain(t.parent)) do
    if s.name then parts[#parts + 1] = s.name end
  end
  parts[#parts + 1] = t.name
  return concat(parts, " > ")
end

local function run_test(w, t)
  local cap = w.cap
  local fok, ferr = fresh(w)
  if not fok then
    report(false, full_name(t), ferr)
    return
  end
  capture.reset(cap)
  cap.failures, cap.in_test = {}, true
  local suites = chain(t.parent)
  local tok, ok, err = in_task(full_name(t), TEST_TIMEOUT, function()
    local ok1, err1 = true, nil
    for _, s in ipairs(suites) do
      for _, f in ipairs(s.before) do
        if ok1 then ok1, err1 = call(f) end
      end
    end
    if ok1 then ok1, err1 = call(t.fn) end
    for i = #suites, 1, -1 do
      for _, f in ipairs(suites[i].after) do
        local ok2, err2 = call(f)
        if ok1 and not ok2 then ok1, err1 = false, err2 end
      end
    end
    return ok1, err1
  end)
  if not tok then ok, err = false, ok end
  cap.in_test = false
  local failures = cap.failures
  cap.failures = nil
  if ok and #failures > 0 then ok, err = false, failures[1] end
  report(ok, full_name(t), err, failures)
end

local function run_suite(w, suite)
  for _, c in ipairs(suite.children) do
    if c.test and filter and not full_name(c):find(filter, 1, true) then
      filtered_out = filtered_out + 1
    elseif c.test then
      if c.fn then
        run_test(w, c)
      else
        total, skipped = total + 1, skipped + 1
        out("ok ", total, " - ", tap_name(full_name(c)), " # SKIP pending\n")
      end
    else
      run_suite(w, c)
    end
  end
end

local function run_file(path)
  files = files + 1
  out("# ", path, "\n")
  local src, err = fs.read(path)
  local fn
  if src then fn, err = loadstring(src, "@" .. path) end
  if not fn then
    report(false, path .. ": cannot load the spec", err)
    return
  end
  local w
  w, err = new_world(path)
  if not w then
    report(false, path .. ": cannot set up the spec", err)
    return
  end
  capture.set_current(w.cap)
  local env, root = spec_env(w)
  setfenv(fn, env)
  local ok
  ok, err = in_task(path, TEST_TIMEOUT, fn)
  if not ok then
    report(false, path .. ": the spec file failed while loading", err)
  else
    run_suite(w, root)
  end
  close_world(w)
  package.loaded["steward.runtime.testing"] = nil
end

local USAGE = "usage: steward test [--filter PATTERN] [PATHS...]   (default: policies)\n"

local function usage(msg)
  io.stderr:write("steward test: ", msg, "\n", USAGE)
  return 2
end

-- main{args...} -> exit status: 0 when every test passed, 1 otherwise, 2 for bad usage.
function M.main(args)
  args = args or {}
  local paths = {}
  total, failed, skipped, files, filtered_out, filter = 0, 0, 0, 0, 0, nil
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "-h" or a == "--help" then
      io.stdout:write(USAGE .. "Runs every *_spec.lua under PATHS and prints TAP; --filter runs only the tests\n" ..
        "whose full name (describe > ... > it) contains PATTERN (plain text). See docs/testing-policies.md.\n")
      return 0
    elseif a == "--filter" then
      filter = args[i + 1]
      if not filter or filter == "" then return usage("--filter needs a PATTERN") end
      i = i + 1
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage("unknown flag '" .. a .. "'")
    else
      paths[#paths + 1] = a
    end
    i = i + 1
  end
  if #paths == 0 then paths = { "policies" } end
  local specs = {}
  for _, p in ipairs(paths) do
    local ok, err = find_specs(p, specs)
    if not ok then
      io.stderr:write("steward test: ", tostring(err), "\n")
      return 1
    end
  end
  if #specs == 0 then
    io.stderr:write("steward test: no *_spec.lua files under ", concat(paths, " "), "\n")
    return 1
  end
  for _, path in ipairs(specs) do run_file(path) end
  if filter and total == 0 then
    out("1..0 # SKIP no test name contains '", filter, "'\n")
    io.stderr:write("steward test: no test name contains '", filter, "' (", filtered_out, " tests left out)\n")
    return 1
  end
  out("1..", total, "\n")
  out(format("# %d test%s in %d spec file%s: %d passed, %d failed%s%s\n", total, total == 1 and "" or "s",
    files, files == 1 and "" or "s", total - failed - skipped, failed,
    skipped > 0 and (", " .. skipped .. " skipped") or "",
    filter and format(", %d left out by --filter", filtered_out) or ""))
  return failed > 0 and 1 or 0
end

M.fake_time = fake_time
return M
