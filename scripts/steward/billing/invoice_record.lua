-- steward.billing.invoice_record: an invoice record to and from text. Two forms: the stored one
-- (amounts as exact decimal strings, times as Unix seconds) and the canonical JSON the API and
-- invoices.json answer (amounts at the currency's scale, "12.50"; times RFC 3339; keys sorted,
-- so the same invoice is always the same bytes). steward.json encodes each scalar; this module
-- only orders the keys.
local json = require "steward.json"
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"

local type, pairs, ipairs, tostring, sort, concat = type, pairs, ipairs, tostring, table.sort, table.concat

local M = {}

-- The lists of a record: encoded as JSON arrays even when empty.
local LISTS = { lines = true, discounts = true, taxes = true, credits = true, tiers = true }
-- Money at the currency's scale in the canonical JSON.
local MONEY = { amount = true, subtotal = true, discount_total = true, tax_total = true, credit_total = true,
                total = true, refunded = true, creditable = true }
local TOTALS = { "subtotal", "discount_total", "tax_total", "credit_total", "total" }
-- Times (Unix seconds in Lua, RFC 3339 in the canonical JSON).
local TIMES = { from = true, to = true, issued = true, due = true, finalized = true, paid = true, voided = true,
                at = true }

local function is_list(k, v)
  return LISTS[k] or json.is_array(v) or v[1] ~= nil
end

-- canonical(v, leaf) -> JSON text with object keys sorted; leaf(key, value) turns decimals and
-- times into what the form wants.
local function canonical(v, leaf, key, out)
  local tv = type(v)
  if tv == "table" and not decimal.is(v) and v ~= json.null then
    if is_list(key, v) then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        canonical(x, leaf, nil, out)
      end
      out[#out + 1] = "]"
    else
      local ks = {}
      for k, x in pairs(v) do if x ~= nil then ks[#ks + 1] = tostring(k) end end
      sort(ks)
      out[#out + 1] = "{"
      for i, k in ipairs(ks) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json.encode(k)
        out[#out + 1] = ":"
        canonical(v[k], leaf, k, out)
      end
      out[#out + 1] = "}"
    end
    return
  end
  out[#out + 1] = json.encode(leaf(key, v))
end

local function encode(v, leaf)
  local out = {}
  canonical(v, leaf, nil, out)
  return concat(out)
end

-- stored(inv) -> text: every decimal as its exact string, times as numbers.
function M.stored(inv)
  return encode(inv, function(_, v)
    if decimal.is(v) then return decimal.string(v) end
    return v
  end)
end

local function dec(v) if type(v) == "string" then return decimal.new(v) end return v end

-- load(text, columns) -> the record: the money fields back to decimals; the columns the row
-- keeps beside the body (state, number, seq, version) laid over it.
function M.load(text, cols)
  local inv = json.decode(text)
  if type(inv) ~= "table" then return nil, "invoice body does not decode" end
  for _, k in ipairs(TOTALS) do inv[k] = dec(inv[k]) end
  for _, l in ipairs(inv.lines or {}) do
    l.units, l.unit_amount, l.amount = dec(l.units), dec(l.unit_amount), dec(l.amount)
  end
  for _, list in ipairs({ "discounts", "taxes", "credits" }) do
    for _, x in ipairs(inv[list] or {}) do x.amount = dec(x.amount) end
  end
  for k, v in pairs(cols or {}) do
    if v ~= json.null then inv[k] = v end
  end
  return inv
end

-- Bookkeeping of the row, not part of the invoice: an invoice built twice is the same invoice.
local ROW_ONLY = { created = true, updated = true }

-- json(inv) -> the canonical JSON: keys sorted, money at the currency's scale ("12.50"), other
-- decimals exact, times RFC 3339. Byte-identical for the same invoice.
function M.json(inv)
  local scale = decimal.scale(inv.currency or "") or 2
  local top = {}
  for k, v in pairs(inv) do if not ROW_ONLY[k] then top[k] = v end end
  return encode(top, function(k, v)
    if decimal.is(v) then
      if MONEY[k] then return v:format(scale) end
      return decimal.string(v)
    end
    if TIMES[k] and type(v) == "number" then return util.format_rfc3339(v) end
    return v
  end)
end

-- view(inv) -> a table for an API answer (steward.json) with the canonical JSON's values.
function M.view(inv)
  return json.decode(M.json(inv))
end

return M
