-- The policy sandbox, adversarially (in the spirit of Redis's "try to trick the global
-- protection" tests): every escape we know of is tried and must fail with a clear error.
local t = require "steward.tap"
local sandbox = require "steward.runtime.policy.sandbox"
local guard = require "steward.runtime.guard"
local fs = require "steward.fs"
local json = require "steward.json"
local task = require "steward.task"

local logged = {}
local function new(name, opts)
  opts = opts or {}
  opts.name = name
  opts.log = opts.log or function(msg) logged[#logged + 1] = msg end
  return sandbox.new_env(opts)
end

-- Runs src in env (under the guard, as the loader does) and returns ok, results...
local function run(env, src, ...)
  local fn, err = sandbox.compile(env, src, "=policy")
  if not fn then return false, err end
  return guard.run({ cpu = 2 }, fn, ...)
end
local function eval(env, src, ...) return select(2, run(env, src, ...)) end

local A = new("a")
local B = new("b")

-- What is absent.
for _, name in ipairs({ "io", "debug", "jit", "ffi", "package", "module", "load", "loadstring",
  "dofile", "loadfile", "setfenv", "getfenv", "newproxy", "gcinfo" }) do
  t.is(eval(A, "return type(" .. name .. ")"), "nil", name .. " is absent")
end
for _, name in ipairs({ "execute", "exit", "remove", "rename", "tmpname", "setlocale" }) do
  t.is(eval(A, "return type(os." .. name .. ")"), "nil", "os." .. name .. " is absent")
end
t.is(eval(A, "return string.dump"), nil, "string.dump is absent")
-- What is present.
for _, name in ipairs({ "assert", "error", "ipairs", "pairs", "next", "pcall", "xpcall", "select",
  "tonumber", "tostring", "type", "unpack", "rawequal", "rawget", "rawset", "setmetatable",
  "getmetatable", "print", "require", "collectgarbage" }) do
  t.is(eval(A, "return type(" .. name .. ")"), "function", name .. " is present")
end
t.is(eval(A, "return os.time() > 0 and type(os.clock()) == 'number' and type(os.date('%Y')) == 'string'"), true,
  "os.time, os.clock, os.date work")
t.is(eval(A, "return string.format('%d-%s', 4, ('ab'):upper()) .. table.concat({1,2}, ',') .. math.floor(2.5) .. bit.band(6, 3)"),
  "4-AB1,222", "string, table, math and bit work, method calls on strings too")
t.is(eval(A, "return _G == getfenv"), false, "_G is the policy's own table")

-- Loading code: no load, no bytecode.
local bytecode = string.dump(function() return "escaped" end)
local ok, err = run(A, bytecode)
t.ok(not ok and err:match("precompiled bytecode is not accepted"), "compile refuses bytecode: " .. tostring(err))
t.like(select(2, run(A, "return loadstring(...)", bytecode)), "attempt to call global 'loadstring'", "loadstring of bytecode cannot even be called")
t.like(select(2, run(A, "return load(function() return nil end)")), "attempt to call global 'load'", "load is absent")
t.like(select(2, run(A, "return getfenv(0)")), "attempt to call global 'getfenv'", "getfenv(0) cannot reach the runtime's globals")
t.like(select(2, run(A, "return setfenv(string.rep, {})")), "attempt to call global 'setfenv'", "setfenv on a library function is impossible")
t.like(select(2, run(A, "return package.loaded")), "attempt to index global 'package'", "package.loaded is out of reach")

-- require: only steward.* (minus the runtime's internals) and the policy's own lib.
for _, m in ipairs({ "debug", "io", "ffi", "jit", "os", "string", "package", "jit.util", "table.new", "bit" }) do
  t.like(select(2, run(A, "return require(...)", m)), "require '" .. m:gsub("%.", "%%.") .. "': not available to policies",
    'require "' .. m .. '" is refused naming the module')
end
for _, m in ipairs({ "steward.runtime.guard", "steward.runtime.policy.sandbox", "steward.runtime.policies", "steward.runtime.dispatch",
  "steward.runtime.daemon", "steward.runtime.store.native", "steward.time.native", "steward.signal", "steward.httpd",
  "steward.runtime.store", "steward.runtime.store.kv", "steward.runtime.auth", "steward.identity" }) do
  t.like(select(2, run(A, "return require(...)", m)), "require '" .. m:gsub("%.", "%%.") .. "': not available to policies %(",
    'require "' .. m .. '" is refused with the reason')
end
t.is(eval(A, "return type(require('steward.fs').read)"), "function", "steward.fs is available (decided: ops policies read files)")
t.is(eval(A, "return type(require('steward.kv').ns)"), "function", "steward.kv is available (policies keep durable state)")
t.is(eval(A, "return type(os.getenv('HOME'))"), "string", "os.getenv is available (decided: deployments configure through the environment)")
t.is(eval(A, "return os.getenv('STEWARD_ADMIN_TOKEN')"), nil, "but not the daemon's own STEWARD_* variables (the admin token, the store's DSN)")
t.is(eval(A, "return require('steward.json').encode({1})"), "[1]", "steward.json works through require")
t.is(eval(A, "return require('steward.json') == require('steward.json')"), true, "require caches per policy")

-- Shared module tables are read-only views, one per policy.
t.like(select(2, run(A, "require('steward.json').encode = function() return 'pwned' end")),
  "attempt to modify a read%-only table %(field 'encode'%)", "assigning into a steward module is refused")
t.like(select(2, run(A, "require('steward.json').array_mt.__index = {}")), "read%-only", "nested tables of a module are read-only too")
t.like(select(2, run(A, "setmetatable(require('steward.json'), {})")), "protected metatable", "a view's metatable cannot be replaced")
t.is(eval(A, "local j = require('steward.json') rawset(j, 'encode', function() return 'pwned' end) return j.encode({})"), "pwned",
  "rawset on a view changes that policy's own view only")
t.is(eval(B, "return require('steward.json').encode({})"), "{}", "another policy's steward.json is untouched")
t.is(json.encode({}), "{}", "and so is the runtime's")
t.is(eval(A, "local n = 0 for k, v in pairs(require('steward.json')) do n = n + 1 end return n > 3"), true, "pairs sees a module's fields through its view")

-- Library tables are copies.
t.is(eval(A, "string.rep = function() return 'pwned' end table.insert = nil math.floor = nil return string.rep('x', 2)"), "pwned", "a policy may change its own string table")
t.is(eval(B, "return string.rep('x', 2) .. type(table.insert) .. type(math.floor)"), "xxfunctionfunction", "another policy's string, table and math are untouched")
t.is(string.rep("x", 2), "xx", "and so is the runtime's")
t.is(eval(A, "return ('x'):rep(2)"), "xx", "string methods still reach the real library")
t.like(select(2, run(A, "getmetatable('').__index.rep = function() return 'pwned' end")), "read%-only", "the string metatable's __index cannot be modified")
t.like(select(2, run(A, "getmetatable('').__index = {}")), "read%-only", "nor replaced")
t.like(select(2, run(A, "getmetatable('').__metatable = 1")), "read%-only", "nor protected or unprotected")
t.is(("x"):rep(3), "xxx", "strings still work for everyone")
local h = task.spawn(function() end)
t.like(select(2, run(A, "getmetatable(...).__index.join = nil", h)), "read%-only", "a runtime object's metatable is read-only")
t.is(eval(A, "local mt = {} local x = setmetatable({}, mt) return getmetatable(x) == mt"), true, "a policy's own metatables are its own")

-- Globals: one policy cannot see or change another's, or the runtime's.
run(A, "secret = 42; rawset(_G, 'also', 1); _G.more = 2")
t.is(eval(A, "return secret + also + more"), 45, "a policy's globals persist in its environment")
t.is(eval(B, "return secret, also, more"), nil, "another policy does not see them")
t.is(rawget(_G, "secret"), nil, "nor does the runtime")
t.is(eval(B, "rawset(_G, 'print', 1) return type(print)"), "number", "rawset(_G, ...) changes only the policy's own globals")
t.is(type(print), "function", "the runtime's print is untouched")
t.is(eval(A, "return _G.getfenv or _G.debug or _G.io"), nil, "_G does not lead to the runtime's globals")

-- Coroutines and tasks.
t.is(eval(A, "local co = coroutine.create(function(x) coroutine.yield(x + 1) end) local _, v = coroutine.resume(co, 1) return v"), 2,
  "a policy's own coroutines work")
t.is(eval(A, "return coroutine.wrap(function() return 'w' end)()"), "w", "coroutine.wrap works")
t.like(select(2, run(A, "return coroutine.resume(coroutine.running())")), "not a coroutine this policy created",
  "a policy cannot resume its task's coroutine by hand")
local foreign = coroutine.create(function() return "runtime" end)
t.like(select(2, run(A, "return coroutine.resume(...)", foreign)), "not a coroutine this policy created",
  "nor a coroutine the runtime owns")
t.like(select(2, run(A, "collectgarbage('collect')")), 'only collectgarbage%("count"%)', "collectgarbage is limited to count")
t.is(eval(A, "return type(collectgarbage('count'))"), "number", 'collectgarbage("count") works')

-- print goes to the logger.
run(A, "print('hello', 1, nil)")
t.is(logged[#logged], "hello\t1\tnil", "print writes to the policy's logger")

-- policies/lib modules: loaded into a sandbox of their own, one instance per policy.
local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir .. "/lib/util", { parents = true }))
assert(fs.write(dir .. "/lib/counter.lua", [[
  leaked = "lib global"
  local n = 0
  return { bump = function() n = n + 1 return n end, io = type(io), getenv = type(os.execute) }
]]))
assert(fs.write(dir .. "/lib/util/init.lua", "return { util = true, counter = require 'counter' }"))
assert(fs.write(dir .. "/lib/bytes.lua", string.dump(function() return 1 end)))
local L1 = new("l1", { lib_dir = dir .. "/lib" })
local L2 = new("l2", { lib_dir = dir .. "/lib" })
t.is(eval(L1, "return require('counter').bump() + require('counter').bump()"), 3, "a lib module loads and is cached per policy")
t.is(eval(L2, "return require('counter').bump()"), 1, "another policy gets its own instance")
t.is(eval(L1, "return leaked"), nil, "a lib module's globals do not leak into the policy")
t.is(eval(L1, "return require('counter').io .. require('counter').getenv"), "nilnil", "a lib module is sandboxed too")
t.is(eval(L1, "return require('util').counter == require('counter')"), true, "lib modules require each other (init.lua too)")
t.like(select(2, run(L1, "return require('bytes')")), "precompiled bytecode is not accepted", "a bytecode lib module is refused")
t.like(select(2, run(L1, "return require('nope')")), "require 'nope': not available to policies: .*/lib", "a missing module names the lib dir")
t.like(select(2, run(L1, "return require('../../etc/passwd')")), "require '%.%./%.%./etc/passwd': not available", "a path cannot escape the lib dir")
t.like(select(2, run(L1, "return require('..counter')")), "not available", "nor can dots")
assert(fs.remove(dir, { recursive = true }))

-- The loader uses the sandbox.
local policies = require "steward.runtime.policies"
local pdir = os.tmpname()
os.remove(pdir)
assert(fs.mkdir(pdir))
assert(fs.write(pdir .. "/p.lua", [[
  return { name = "p", on = "x.y", limits = { cpu = "250ms", memory = 1e6 },
    handle = function() return io end }
]]))
assert(fs.write(pdir .. "/spin.lua", "while true do end"))
assert(fs.write(pdir .. "/badlimit.lua", "return { on = 'x', handle = function() end, limits = { cpu = 'soon' } }"))
local p = assert(policies.load_file(pdir .. "/p.lua", "p"))
t.ok(p.budget.cpu == 0.25 and p.budget.memory == 1e6 and p.budget.name == "p", "a policy's limits set its budget")
t.is(select(2, guard.run(p.budget, p.handle)), nil, "a loaded policy runs in the sandbox")
local _, serr = policies.load_file(pdir .. "/spin.lua", "spin", { cpu = 0.1 })
t.like(serr, "^cpu budget exceeded", "a policy file that spins at load time is stopped")
local _, lerr = policies.load_file(pdir .. "/badlimit.lua", "badlimit")
t.like(lerr, "badlimit%.lua: limits%.cpu: must be a duration", "a bad limit is reported with file and field")
assert(fs.remove(pdir, { recursive = true }))

t.done()
