-- steward.decimal's ISO 4217 table against Debian's iso-codes list of active currency codes
-- (/usr/share/iso-codes/json/iso_4217.json): every code there is known to decimal.scale, and
-- the differences are exactly the amendments since that list (iso-codes 4.15, 2023).
local t = require "steward.tap"
local decimal = require "steward.decimal"
local json = require "steward.json"

-- Minor units other than 2, from ISO 4217's table A.1.
local units = {
  [0] = { "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
          "XAF", "XOF", "XPF" },
  [3] = { "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND" },
  [4] = { "CLF", "UYW" },
}
for scale, codes in pairs(units) do
  local wrong = {}
  for _, c in ipairs(codes) do
    if decimal.scale(c) ~= scale then wrong[#wrong + 1] = c end
  end
  t.is_deeply(wrong, {}, "minor unit " .. scale .. ": " .. table.concat(codes, " "))
end
local none = {}
for _, c in ipairs({ "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX" }) do
  local v, err = decimal.scale(c)
  if v ~= nil or err ~= "currency " .. c .. " has no minor unit" then none[#none + 1] = c end
end
t.is_deeply(none, {}, "funds, metals and test codes have no minor unit")
t.is(decimal.scale("XCG"), 2, "XCG (Caribbean guilder, 2024) is known")
t.is(decimal.scale("ZWG"), 2, "ZWG (Zimbabwe Gold, 2024) is known")
t.is(decimal.scale("HRK"), nil, "HRK was withdrawn when Croatia took the euro (2023)")
local n, all_scales = 0, true
for code, scale in pairs(decimal.currencies()) do
  n = n + 1
  if decimal.scale(code) ~= scale then all_scales = false end
end
t.ok(n == 169 and all_scales, "decimal.currencies() lists the 169 codes with a minor unit, as decimal.scale answers")
t.ok(decimal.currencies() ~= decimal.currencies(), "decimal.currencies() is a new table each call")

local f = io.open("/usr/share/iso-codes/json/iso_4217.json")
if not f then
  t.skip("Debian's iso-codes is not installed", 2)
else
  local list = assert(json.decode(f:read("*a")))["4217"]
  f:close()
  local withdrawn = { HRK = true }
  local unknown, theirs = {}, {}
  for _, c in ipairs(list) do
    theirs[c.alpha_3] = true
    local v, err = decimal.scale(c.alpha_3)
    if v == nil and err == "unknown currency" and not withdrawn[c.alpha_3] then unknown[#unknown + 1] = c.alpha_3 end
  end
  t.is_deeply(unknown, {}, "every active code of iso-codes' list (" .. #list .. ") is known")
  local extra = {}
  for c in pairs(decimal.currencies()) do
    if not theirs[c] then extra[#extra + 1] = c end
  end
  table.sort(extra)
  t.is_deeply(extra, { "XCG", "ZWG" }, "the codes steward knows beyond iso-codes 4.15 are the 2024 additions")
end

t.done()
