-- gh-12.1: a policy reaches the public library and its own policies/lib modules, nothing else.
-- Every module of the runtime's internals (every file under scripts/steward/runtime, found
-- by walking the tree, so a module added later is tried too) and every other module outside
-- the public list is refused by name with the reason; then the path tricks: package.loaded,
-- metatables of returned values, upvalues of returned closures, error objects, ctx fields,
-- and the admin token minted through the store's raw SQL (the issue's hole).
local t = require "steward.tap"
local sandbox = require "steward.runtime.policy.sandbox"
local guard = require "steward.runtime.guard"
local store = require "steward.runtime.store"
local fs = require "steward.fs"
local policy_ctx = require "steward.runtime.policy_ctx"

local root = os.getenv("STEWARD_LUA_PATH") or "scripts"

require "steward.runtime.auth" -- its api_tokens table, which the last check looks into
local st, tmp = require("tests.support.test_store").open()
assert(st:migrate())
store.set_default(st)

local function run(src, ...)
  local env, box = sandbox.new_env({ name = "probe", log = function() end })
  box.caps = {}
  local fn, err = sandbox.compile(env, src, "=probe")
  if not fn then return false, err end
  return guard.run(box.budget, fn, ...)
end

-- Every module file under scripts/steward, as a module name.
local modules = {}
local function walk(dir, prefix)
  for _, e in ipairs(assert(fs.list(dir))) do
    if e.type == "directory" then
      walk(dir .. "/" .. e.name, prefix .. e.name .. ".")
    elseif e.name:match("%.lua$") then
      modules[#modules + 1] = prefix .. e.name:gsub("%.lua$", ""):gsub("%.init$", "")
    end
  end
end
walk(root .. "/steward", "steward.")
table.sort(modules)

local internal, other, public = 0, 0, 0
for _, m in ipairs(modules) do
  local ok, err = run("return require(...)", m)
  if m:match("^steward%.runtime%.") then
    internal = internal + 1
    t.ok(not ok and tostring(err):match("require '" .. m:gsub("%p", "%%%0") .. "': not available to policies %(it is part of the runtime's internals"),
      m .. " is refused as one of the runtime's internals")
  elseif sandbox.PUBLIC[m] then
    public = public + 1
    t.ok(ok, m .. " is public")
  else
    other = other + 1
    t.ok(not ok and tostring(err):match("not available to policies %(it is not in the public library"),
      m .. " is refused: not in the public library")
  end
end
t.ok(internal >= 40, internal .. " internal modules tried")
t.ok(other >= 10, other .. " other non-public modules tried")
-- Bindings that are not files.
for _, m in ipairs({ "steward.signal", "steward.fswatch", "steward.unix", "steward.identity", "steward.httpd",
                     "steward.runtime.guard", "steward.runtime.store.native", "steward.pg.native", "steward.time.native" }) do
  local ok, err = run("return require(...)", m)
  t.ok(not ok and tostring(err):match("not available to policies %("), m .. " is refused with the reason")
end

-- package.loaded and friends are not there at all.
for _, g in ipairs({ "package", "debug", "io", "ffi", "jit", "load", "loadfile", "dofile", "getfenv", "setfenv", "module" }) do
  local ok, v = run("return " .. g)
  t.ok(ok and v == nil, g .. " is not reachable")
end
t.like(select(2, run("return require('debug')")), "not available to policies", "require 'debug' is refused")

-- Metatables of returned values are read-only views; nothing in them reaches the store.
local ok, res = run([[
  local kv = require "steward.kv"
  local ns = kv.ns("probe")
  local mt = getmetatable(ns)
  local fields = {}
  for k, v in pairs(ns) do fields[#fields + 1] = k end
  return { mt = type(mt) == "table" and "table" or tostring(mt), st = rawget(ns, "st"), store = ns.store,
           nfields = #fields }
]])
t.ok(ok and res.mt == "kv namespace", "a kv namespace's metatable is protected (" .. tostring(res and res.mt) .. ")")
t.ok(ok and res.st == nil and res.store == nil, "a kv namespace holds no store in its fields")

-- Upvalues of returned closures: there is no debug library to read them with.
ok, res = run([[
  local ns = require("steward.kv").ns("probe")
  return pcall(function() return debug.getupvalue(ns.get, 1) end)
]])
t.ok(ok and res == false, "a returned closure's upvalues cannot be read (no debug)")

-- Error objects: a refused require's error is a string naming the module, nothing else.
ok, res = run([[
  local ok, e = pcall(require, "steward.runtime.store")
  return { ok = ok, kind = type(e), e = tostring(e) }
]])
t.ok(ok and res.ok == false and res.kind == "string" and res.e:match("steward%.runtime%.store"), "the error object is a plain string")

-- The public library's fields never hand out the store.
ok, res = run([[
  local found = {}
  local seen = {}
  local function walk(v, path, depth)
    if type(v) ~= "table" or seen[v] or depth > 4 then return end
    seen[v] = true
    for k, x in pairs(v) do
      local ok, kind = pcall(function() return type(x) == "table" and rawget(x, "db") ~= nil end)
      if ok and kind then found[#found + 1] = path .. "." .. tostring(k) end
      walk(x, path .. "." .. tostring(k), depth + 1)
    end
  end
  for _, m in ipairs({ "steward.json", "steward.time", "steward.kv", "steward.events", "steward.notify", "steward.slo",
                       "steward.metrics", "steward.alerting.engine", "steward.alerting.incidents", "steward.http" }) do
    walk(require(m), m, 0)
  end
  return table.concat(found, ", ")
]])
t.is(ok and res, "", "no field of the public modules leads to a store connection")
ok, res = run([[ return pcall(require("steward.notify").set_store, nil) ]])
t.ok(ok and res == false, "notify.set_store (a runtime knob) is hidden from policies")

-- ctx fields: nothing in a run's ctx leads to the store either.
local p = { name = "probe", version = "v1", config = {}, tenant_configs = {} }
local ctx = policy_ctx.new(p, { event_id = "e1" })
local found = {}
local seen = {}
local function walk(v, path, depth)
  if type(v) ~= "table" or seen[v] or depth > 5 then return end
  seen[v] = true
  if store.is_store(v) or rawget(v, "db") ~= nil then found[#found + 1] = path end
  for k, x in pairs(v) do walk(x, path .. "." .. tostring(k), depth + 1) end
end
walk(ctx, "ctx", 0)
walk(ctx.kv(), "ctx.kv()", 0)
t.is(table.concat(found, ", "), "", "no ctx field, nor ctx.kv()'s namespace, holds the store")

-- The issue's hole: an event made a policy insert an admin token through steward.runtime.store.
ok, res = run([[
  local ok, e = pcall(require, "steward.runtime.store")
  local ok2, e2 = pcall(require, "steward.runtime.store")
  return { e = tostring(e), e2 = tostring(e2) }
]])
t.like(res.e, "runtime's internals", "the store's raw SQL is out of reach (steward.runtime.store)")
t.like(res.e2, "not available to policies", "and there is no steward.runtime.store")
local rows = assert(st:sql("SELECT count(*) AS n FROM api_tokens"))
t.is(rows[1].n, 0, "no token was minted")

st:close()
os.execute("rm -rf " .. tmp)
t.done()
