-- steward.runtime.policy.schema: config schemas for policies, overlays base < environment < tenant.
local t = require "steward.tap"
local schema = require "steward.runtime.policy.schema"

local decl = {
  channel = "slack:oncall",                                           -- a plain default
  threshold = { type = "number", default = 0.05, min = 0, max = 1, description = "error rate" },
  severity = { type = "string", default = "warning", one_of = { "info", "warning", "critical" } },
  wait = { type = "duration", default = "5m" },
  team = { type = "string", required = true },
  retries = { type = "integer", default = 3, min = 0 },
  tags = { type = "array", default = {} },
}
local s = assert(schema.compile(decl))
t.ok(s.fields.channel.type == "string", "a plain default's type is inferred")

local cfg, errs = schema.merge(s, { { name = "environment", values = { team = "sre" } } })
t.is_deeply(cfg, { channel = "slack:oncall", threshold = 0.05, severity = "warning", wait = 300, team = "sre",
                   retries = 3, tags = {} }, "defaults, durations in seconds, and the environment layer")

cfg, errs = schema.merge(s, { { name = "environment", values = { team = "sre", threshold = 0.1 } },
                              { name = "tenant acme", values = { threshold = 0.2, channel = "slack:acme" } } })
t.ok(cfg and cfg.threshold == 0.2 and cfg.channel == "slack:acme" and cfg.team == "sre", "tenant over environment over base")

cfg, errs = schema.merge(s, { { name = "environment", values = { team = 5, threshold = 3, severity = "loud",
                                                                  retries = 1.5, bogus = 1, wait = "soon" } } })
t.is(cfg, nil, "a layer that breaks the schema is refused")
local fields = {}
for _, e in ipairs(errs) do fields[#fields + 1] = e.field end
t.is(table.concat(fields, ","), "environment: config.bogus,environment: config.retries,environment: config.severity," ..
  "environment: config.team,environment: config.threshold,environment: config.wait", "every failing field is listed")
t.like(errs[3].reason, "expected one of info, warning, critical", "enums name the allowed values")
t.like(errs[5].reason, "at most 1", "ranges name the bound")

cfg, errs = schema.merge(s, {})
t.ok(cfg == nil and errs[1].field == "config.team" and errs[1].reason:find("required"), "a required setting no layer sets")

local bad, berrs = schema.compile({ x = { type = "number", default = "no" }, y = { type = "string", colour = 1 } })
t.is(bad, nil, "a schema whose default breaks it is refused")
t.is(#berrs, 2, "with every problem")

-- apply: what the daemon does at load, per policy
local p = { name = "page", file = "policies/page.lua", config_decl = decl }
local ok, err = schema.apply(p, { env = { page = { team = "sre" } }, tenants = { acme = { page = { severity = "critical" } } } })
t.ok(ok, "apply with valid overlays")
t.is(p.config.severity, "warning", "p.config is base < environment")
t.is(p.tenant_configs.acme.severity, "critical", "p.tenant_configs has the tenant's merge")
ok, err = schema.apply({ name = "page", file = "policies/page.lua", config_decl = decl },
  { env = { page = { team = "sre" } }, tenants = { acme = { page = { severity = "loud", nope = 1 } } } })
t.ok(not ok and err:find("^policies/page.lua: ") and err:find("tenant acme: config.severity") and err:find("tenant acme: config.nope"),
  "a broken tenant overlay fails the policy naming the file and every field")
t.done()
