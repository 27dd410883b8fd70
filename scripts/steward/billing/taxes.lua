-- steward.billing.taxes: the tax lines of an invoice, from the rates an operator configures
-- (billing.taxes) and the tenant's country and region (config.billing.country/region). Pure:
-- no store, no I/O. A rate is a percentage as a decimal string; each tax line is rounded once,
-- half-up at the currency's scale (the one rounding taxes make; docs/billing/invoices.md).
local decimal = require "steward.decimal"

local type, pairs, ipairs, tostring, pcall, format = type, pairs, ipairs, tostring, pcall, string.format

local M = {}

local RATE_KEYS = { country = true, region = true, rate = true, name = true }

local function check_rate(r, at, need_country)
  if type(r) ~= "table" then return nil, at .. ": a table {country, region, rate, name} expected" end
  for k in pairs(r) do
    if not RATE_KEYS[k] then return nil, at .. "." .. tostring(k) .. ": unknown field (country, region, rate, name)" end
  end
  if need_country then
    if type(r.country) ~= "string" or not r.country:match("^%u%u$") then
      return nil, at .. ".country: an ISO 3166 alpha-2 code such as \"FR\" expected"
    end
  elseif r.country ~= nil then
    return nil, at .. ".country: not allowed in the default rate"
  end
  if r.region ~= nil and (type(r.region) ~= "string" or r.region == "" or #r.region > 64) then
    return nil, at .. ".region: a region code such as \"CA\" expected"
  end
  if r.region ~= nil and not need_country then return nil, at .. ".region: not allowed in the default rate" end
  if type(r.rate) ~= "string" then
    return nil, at .. ".rate: a percentage as a decimal string (\"20\", \"7.25\") expected, got " .. type(r.rate)
  end
  local ok, d = pcall(decimal.new, r.rate)
  if not ok then return nil, at .. ".rate: " .. tostring(r.rate) .. " is not a decimal" end
  if d < decimal.zero or d > decimal.new(100) then return nil, at .. ".rate: a percentage from 0 to 100 expected" end
  if r.name ~= nil and (type(r.name) ~= "string" or r.name == "" or #r.name > 100) then
    return nil, at .. ".name: a non-empty string of at most 100 bytes expected"
  end
  return true
end

-- check_config(v, path) -> true | nil, "<path>.<field>: reason". v = {rates = {{country,
-- region, rate, name}...}, default = {rate, name} | nil}.
function M.check_config(v, path)
  path = path or "billing.taxes"
  if type(v) ~= "table" then return nil, path .. ": a table {rates, default} expected" end
  for k in pairs(v) do
    if k ~= "rates" and k ~= "default" then return nil, path .. "." .. tostring(k) .. ": unknown field (rates, default)" end
  end
  if v.rates ~= nil then
    if type(v.rates) ~= "table" then return nil, path .. ".rates: a list expected" end
    local seen = {}
    for i, r in ipairs(v.rates) do
      local ok, err = check_rate(r, format("%s.rates[%d]", path, i), true)
      if not ok then return nil, err end
      local key = r.country .. "/" .. (r.region or "") .. "/" .. (r.name or "")
      if seen[key] then return nil, format("%s.rates[%d]: the same country, region and name as rates[%d]", path, i, seen[key]) end
      seen[key] = i
    end
    for k in pairs(v.rates) do
      if type(k) ~= "number" or k < 1 or k > #v.rates or k ~= math.floor(k) then
        return nil, path .. ".rates: a list expected (key " .. tostring(k) .. ")"
      end
    end
  end
  if v.default ~= nil then
    local ok, err = check_rate(v.default, path .. ".default", false)
    if not ok then return nil, err end
  end
  return true
end

-- rates_for(cfg, country, region) -> the rates that apply: the country's rates without a region,
-- then those of its region (Canada: GST, then the province's PST), in configured order; when
-- none matches, the default; else none.
function M.rates_for(cfg, country, region)
  cfg = cfg or {}
  local regional, national = {}, {}
  if type(country) == "string" then
    for _, r in ipairs(cfg.rates or {}) do
      if r.country == country:upper() then
        if r.region == nil then
          national[#national + 1] = r
        elseif region ~= nil and r.region == region then
          regional[#regional + 1] = r
        end
      end
    end
  end
  local out = {}
  for _, r in ipairs(national) do out[#out + 1] = r end
  for _, r in ipairs(regional) do out[#out + 1] = r end
  if #out == 0 and cfg.default then out[1] = cfg.default end
  return out
end

-- lines(base, rates, currency) -> {{name, rate (string), amount (decimal)}}, total (decimal).
-- Each line is base × rate / 100 rounded half-up at the currency's scale.
function M.lines(base, rates, currency)
  if not decimal.is(base) then error("taxes.lines: base: decimal expected", 2) end
  if type(currency) ~= "string" or not decimal.scale(currency) then
    error("taxes.lines: currency: an ISO 4217 code expected, got " .. tostring(currency), 2)
  end
  local out, total = {}, decimal.zero
  for _, r in ipairs(rates or {}) do
    local rate = decimal.new(r.rate)
    local amount = (base * rate / 100):money(currency, "half_up")
    local name = r.name or (r.country and (r.country .. (r.region and ("-" .. r.region) or "")) or "tax")
    out[#out + 1] = { name = name, rate = decimal.string(rate), amount = amount }
    total = total + amount
  end
  return out, total
end

return M
