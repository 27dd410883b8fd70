-- steward.billing.config: the `billing` configuration key (docs/configuration.md, "billing"),
-- checked at start-up and on reload. This module checks the keys of its own (currency,
-- timezone, grace_period, net_payment_days) and hands each sub-table to the module that owns
-- it (invoices, taxes, payments, dunning, revenue: their check_config(v, "billing.<key>")); a
-- part not installed yet is skipped until it is. `current` is the configuration in force.
local time = require "steward.time"

local type, pairs, tostring, format, pcall, require, floor = type, pairs, tostring, string.format, pcall, require, math.floor

local M = {}

-- sub-table -> the module whose check_config validates it
M.DELEGATES = {
  invoices = "steward.billing.invoices",
  taxes = "steward.billing.taxes",
  payments = "steward.billing.payments",
  dunning = "steward.billing.dunning",
  revenue = "steward.billing.revenue",
}

local OWN = { currency = true, timezone = true, grace_period = true, net_payment_days = true }
local KEYS_TEXT = "currency, timezone, grace_period, net_payment_days, invoices, taxes, payments, dunning, revenue"

M.DEFAULTS = { currency = "USD", timezone = "UTC", grace_period = "3d", net_payment_days = 30 }

-- currency_known(code) -> true | nil, reason (ISO 4217, through steward.decimal's table)
function M.currency_known(code)
  if type(code) ~= "string" or not code:match("^%u%u%u$") then return nil, "an ISO 4217 code (\"USD\") expected" end
  local ok, decimal = pcall(require, "steward.decimal")
  if ok and type(decimal) == "table" and decimal.scale and not decimal.scale(code) then
    return nil, "unknown currency " .. code
  end
  return true
end

local function timezone_known(tz)
  if type(tz) ~= "string" then return nil, "an IANA time zone (\"Europe/Paris\") expected" end
  local okl, zone, err = pcall(require("steward.alerting.tz").load, tz)
  if not okl or not zone then return nil, tostring(okl and err or zone) end
  return true
end

-- check(v) -> v (defaults filled in; grace_seconds added) | nil, "field: reason"
function M.check(v)
  if type(v) ~= "table" then return nil, "table expected" end
  for k in pairs(v) do
    if not OWN[k] and not M.DELEGATES[k] then
      return nil, format("unknown field '%s' (%s)", tostring(k), KEYS_TEXT)
    end
  end
  local out = {}
  for k, x in pairs(v) do out[k] = x end
  for k, d in pairs(M.DEFAULTS) do if out[k] == nil then out[k] = d end end
  local ok, err = M.currency_known(out.currency)
  if not ok then return nil, "currency: " .. err end
  ok, err = timezone_known(out.timezone)
  if not ok then return nil, "timezone: " .. err end
  local g = out.grace_period
  local secs = type(g) == "number" and g or (type(g) == "string" and time.parse_duration(g)) or nil
  if not secs or secs < 0 or secs ~= secs or secs == math.huge then
    return nil, "grace_period: a duration (\"3d\", \"12h\" or seconds) >= 0 expected"
  end
  out.grace_seconds = secs
  local n = out.net_payment_days
  if type(n) ~= "number" or n ~= floor(n) or n < 0 or n > 3650 then
    return nil, "net_payment_days: an integer from 0 to 3650 expected"
  end
  for key, modname in pairs(M.DELEGATES) do
    if out[key] ~= nil then
      local okr, mod = pcall(require, modname)
      if okr and type(mod) == "table" and type(mod.check_config) == "function" then
        local r, e = mod.check_config(out[key], "billing." .. key)
        if not r then
          e = tostring(e)
          -- the owner names the field from "billing.<key>"; the config loader adds "billing: "
          return nil, (e:gsub("^billing%.", ""))
        end
        if type(r) == "table" then out[key] = r end
      end
    end
  end
  return out
end

-- The configuration in force: the daemon configures it at start and on reload; a script or
-- spec without a daemon has the defaults.
local function defaults()
  local d = {}
  for k, x in pairs(M.DEFAULTS) do d[k] = x end
  d.grace_seconds = 3 * 86400
  return d
end

M.current = defaults()

function M.configure(cfg)
  if cfg == nil then M.current = defaults(); return M.current end
  if type(cfg) == "table" and cfg.grace_seconds ~= nil then M.current = cfg; return cfg end -- checked by the loader
  local c, err = M.check(cfg)
  if not c then error("billing.configure: " .. err, 2) end
  M.current = c
  return c
end

return M
