-- The `billing` configuration key: its own fields checked (currency, timezone, grace_period,
-- net_payment_days, unknown keys named), each sub-table handed to the module that owns it
-- (a part not installed is skipped), the whole config loader refusing a bad key with its
-- path, and a reload applying it (billing is a reloadable key).
local t = require "steward.tap"
local bconfig = require "steward.billing.config"
local config = require "steward.runtime.config"
local fs = require "steward.fs"

local c = assert(bconfig.check({}))
t.ok(c.currency == "USD" and c.timezone == "UTC" and c.grace_period == "3d" and c.grace_seconds == 259200
  and c.net_payment_days == 30, "defaults: USD, UTC, 3d grace, net 30")
c = assert(bconfig.check({ currency = "JPY", timezone = "Europe/Paris", grace_period = "12h", net_payment_days = 0 }))
t.ok(c.currency == "JPY" and c.grace_seconds == 43200, "a currency, a zone, a grace period in hours")
local bad = {
  { { currency = "usd" }, "^currency: an ISO 4217 code" },
  { { currency = "ABC" }, "^currency: unknown currency ABC" },
  { { timezone = "Mars/Olympus" }, "^timezone: unknown time zone" },
  { { grace_period = "soon" }, "^grace_period: a duration" },
  { { net_payment_days = -1 }, "^net_payment_days: an integer from 0 to 3650" },
  { { net_payment_days = 1.5 }, "^net_payment_days: " },
  { { invoice = {} }, "^unknown field 'invoice' %(currency, timezone" },
}
for _, b in ipairs(bad) do
  local _, e = bconfig.check(b[1])
  t.like(e, b[2], "refused: " .. tostring(e))
end

-- delegation: each sub-table to its owner's check_config(v, "billing.<key>")
local seen = {}
package.loaded["steward.billing.dunning"] = { check_config = function(v, where)
  seen[#seen + 1] = where
  if v.retries == "never" then return nil, where .. ".retries: a list of durations expected" end
  return v
end }
t.ok(bconfig.check({ dunning = { retries = { "1d" } } }) and seen[1] == "billing.dunning",
  "billing.dunning goes to steward.billing.dunning.check_config with its path")
local _, e = bconfig.check({ dunning = { retries = "never" } })
t.is(e, "dunning.retries: a list of durations expected", "its refusal comes back naming the field")
package.loaded["steward.billing.dunning"] = nil
package.loaded["steward.billing.revenue"] = nil
package.preload["steward.billing.revenue"] = function() error("module 'steward.billing.revenue' not found", 0) end
local ok = bconfig.check({ revenue = { anything = true } })
t.ok(ok and ok.revenue.anything == true, "a part not installed yet: its sub-table is kept, unchecked, until it is")
package.preload["steward.billing.revenue"] = nil

-- through the config loader: the key, its path, and a reload
local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdir(dir, { parents = true }))
local file = dir .. "/steward.lua"
assert(fs.write(file, 'return { billing = { currency = "EUR", grace_period = "nope" } }'))
local cfg, err = config.load({ file = file, required = true })
t.ok(not cfg and tostring(err):find("billing") and tostring(err):find("grace_period: a duration"),
  "steward.lua with a bad billing key: refused naming billing.grace_period (" .. tostring(err) .. ")")
assert(fs.write(file, 'return { billing = { currency = "EUR" } }'))
cfg = assert(config.load({ file = file, required = true }))
t.is(cfg.billing.currency, "EUR", "a good billing key loads")
t.ok(config.RELOADABLE.billing, "billing is applied on a reload")
local old = assert(config.load({ file = file, required = true }))
assert(fs.write(file, 'return { billing = { currency = "GBP" } }'))
local new = assert(config.load({ file = file, required = true }))
local reloadable = config.diff(old, new)
t.is(table.concat(reloadable, ","), "billing", "a change to billing is a reloadable change")
bconfig.configure(new.billing)
t.is(bconfig.current.currency, "GBP", "configure puts it in force")
bconfig.configure(nil)
t.is(bconfig.current.currency, "USD", "configure(nil): the defaults")
-- steward.billing: the parts, each loaded on first use; a part not installed is absent
local billing = require "steward.billing"
t.is(billing.subscriptions, require("steward.billing.subscriptions"), "billing.subscriptions is the module")
t.is(billing.nothing, nil, "a name that is no part: nil")
billing.PARTS.ghost = "steward.billing.ghost"
t.is(billing.ghost, nil, "a part not installed: nil, no error")
package.preload["steward.billing.broken"] = function() error("broken part") end
billing.PARTS.broken = "steward.billing.broken"
t.raises(function() return billing.broken end, "broken part", "a part that fails to load: its error, not a silent nil")
os.execute("rm -rf " .. dir)
t.done()
