-- steward.deploy.environments: order, next/previous, settings merged base < environment <
-- release, every overlay checked against the schema when compiled (errors name the
-- environment and the field), and the schema keys this needs (`check`, a boolean default of
-- false: steward.runtime.policy.schema).
local t = require "steward.tap"
local environments = require "steward.deploy.environments"
local schema = require "steward.runtime.policy.schema"

local SPEC = {
  order = { "staging", "production" },
  settings = {
    replicas = { type = "integer", default = 2, min = 1 },
    soak = { type = "duration", default = "30m" },
    approval = { type = "boolean", default = false },
    region = "eu-west-1",
  },
  base = { replicas = 3 },
  overlays = { production = { replicas = 8, approval = true, soak = "2h" } },
}

local function main()
  local e = assert(environments.compile(SPEC))
  t.is(e:first(), "staging", "the first environment")
  t.is(e:next("staging"), "production", "staging -> production")
  t.is(e:next("production"), false, "production is the last")
  t.is(e:previous("production"), "staging", "previous")
  t.is(e:previous("staging"), false, "staging has no previous")
  local n, err = e:next("qa")
  t.ok(n == nil and err:match('unknown environment "qa" %(staging, production%)'), "an unknown environment is named with the known ones")
  t.is_deeply(e:settings("staging"), { replicas = 3, soak = 1800, approval = false, region = "eu-west-1" },
    "staging: defaults < base")
  t.is_deeply(e:settings("production"), { replicas = 8, soak = 7200, approval = true, region = "eu-west-1" },
    "production: defaults < base < overlay (durations in seconds)")
  t.is_deeply(e:settings("production", { replicas = 10 }), { replicas = 10, soak = 7200, approval = true, region = "eu-west-1" },
    "a release's own value wins")
  local s
  s, err = e:settings("production", { replicas = "many" })
  t.ok(s == nil and err:match("release: config%.replicas: expected an integer"), "a release's bad value is named")
  t.is(assert(environments.compile(e)), e, "compiling a compiled set is a no-op")

  local function bad(spec) return select(2, environments.compile(spec)) end
  t.like(bad({ order = { "staging", "production" }, settings = SPEC.settings, overlays = { production = { replicas = 0 } } }),
    "overlays%.production: config%.replicas: value must be at least 1", "an overlay breaking the schema: environment and field named")
  t.like(bad({ order = { "staging", "production" }, settings = SPEC.settings, overlays = { production = { colour = "red" } } }),
    "overlays%.production: config%.colour: unknown setting", "an unknown setting in an overlay")
  t.like(bad({ order = { "staging" }, overlays = { prod = {} } }), "environments%.overlays%.prod: not an environment of order",
    "an overlay for an environment not in order")
  t.like(bad({ order = {} }), "environments%.order: a non%-empty list", "an empty order")
  t.like(bad({ order = { "a", "a" } }), 'environments%.order%[2%]: "a" is listed twice', "a name twice")
  t.like(bad({ order = { "a b" } }), "environments%.order%[1%]", "a bad name")
  t.like(bad({ order = { "a" }, stages = {} }), "environments%.stages: unknown field", "an unknown field")
  t.like(bad({ order = { "a" }, base = { replicas = 1 } }), "base: config%.replicas: unknown setting", "base checked too")
  t.ok(environments.validate(SPEC), "validate accepts a good spec")

  -- schema: a default of false compiles (it used to be taken for a failed check)
  local c, errs = schema.compile({ flag = { type = "boolean", default = false } })
  t.ok(c and c.fields.flag.default == false, "a boolean setting may default to false")
  t.is(errs, nil, "... without errors")
  -- schema: `check` runs on defaults and overlays
  c = assert(schema.compile({ even = { type = "integer", default = 2,
    check = function(v) if v % 2 == 0 then return true end return nil, "must be even" end } }))
  local cfg, merrs = schema.merge(c, { { name = "environment", values = { even = 3 } } })
  t.ok(cfg == nil and merrs[1].field == "environment: config.even" and merrs[1].reason == "must be even",
    "check refuses an overlay value, with its reason and field")
  t.is(assert(schema.merge(c, { { name = "environment", values = { even = 4 } } })).even, 4, "check accepts a good value")
  local c2 = assert(schema.compile({ x = { type = "integer", check = function() error("boom") end } }))
  local _, rerrs = schema.merge(c2, { { name = "environment", values = { x = 1 } } })
  t.like(rerrs and rerrs[1].reason, "^check failed: .*boom", "a check that raises refuses the value, saying so")
  local _, cerrs = schema.compile({ x = { type = "integer", check = "even" } })
  t.ok(cerrs and cerrs[1].field == "config.x.check", "check must be a function")

  -- docs/deploy/environments.md's first block runs as written
  local doc = assert(io.open("docs/deploy/environments.md")):read("*a")
  local block = doc:match("```lua\n(.-)```")
  local fn = assert(loadstring(block, "=environments.md#1"))
  local okd, derr = pcall(fn)
  t.ok(okd, "docs/deploy/environments.md: the example runs" .. (okd and "" or (": " .. tostring(derr))))
end

local ok, err = xpcall(main, debug.traceback)
if not ok then t.fail("spec raised", err) end
t.done()
