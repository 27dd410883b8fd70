-- Small shared pieces of the notification engine: short stable hashes for timer and
-- idempotency keys, Alertmanager's order of alerts in a notification, and set helpers.
local crypto = require "steward.crypto"

local pairs, ipairs, sort = pairs, ipairs, table.sort

local M = {}

-- hash(s) -> 16 hex digits: keys must stay short (timer keys ≤ 200 bytes) whatever the group key.
function M.hash(s) return crypto.hex(crypto.sha256(s)):sub(1, 16) end

-- model.LabelSet.Before: fewer labels first, then the first differing name/value in the
-- sorted union of names decides.
local function labels_before(a, b)
  local na, nb, names = 0, 0, {}
  for k in pairs(a) do na = na + 1; names[#names + 1] = k end
  for k in pairs(b) do nb = nb + 1; names[#names + 1] = k end
  if na ~= nb then return na < nb end
  sort(names)
  for _, n in ipairs(names) do
    local x, y = a[n], b[n]
    if x == nil then return true end
    if y == nil then return false end
    if x ~= y then return x < y end
  end
  return false
end

-- types.AlertSlice's order: by job, then instance (present before absent), then label set.
local function alert_less(x, y)
  for _, k in ipairs({ "job", "instance" }) do
    local a, b = x.labels[k], y.labels[k]
    if a ~= nil or b ~= nil then
      if a == nil then return false end
      if b == nil then return true end
      if a ~= b then return a < b end
    end
  end
  if labels_before(x.labels, y.labels) then return true end
  if labels_before(y.labels, x.labels) then return false end
  return x.fingerprint < y.fingerprint
end

function M.sort_alerts(list) sort(list, alert_less); return list end

function M.set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- subset(a, b): every element of set a is in set b.
function M.subset(a, b)
  for k in pairs(a) do if not b[k] then return false end end
  return true
end

function M.sorted_keys(s)
  local out = {}
  for k in pairs(s) do out[#out + 1] = k end
  sort(out)
  return out
end

return M
