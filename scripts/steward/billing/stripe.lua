-- steward.billing.stripe: the Stripe API as steward.billing.payments uses it (docs/billing/payments.md):
-- the `billing.payments` config (check_config), secrets named by reference, Stripe's request
-- format (form-encoded, nested keys in brackets, Bearer key, Idempotency-Key) and its answers
-- (objects, or error objects mapped to nil, err, info). Transfers go through steward.http, so
-- the calling task waits and the loop never does.
local http = require "steward.http"
local json = require "steward.json"
local time = require "steward.time"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require = type, pairs, ipairs, tostring, tonumber, error, pcall, require
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

M.DEFAULTS = { provider = "stripe", url = "https://api.stripe.com", tolerance = 300, timeout = 30 }
local KEYS = { provider = true, url = true, secret_key = true, webhook_secret = true, tolerance = true, timeout = true,
               payment_method = true, insecure = true }

-- A secret as the config names it: "env:NAME" (an environment variable), "file:/path" (the
-- file's content, trailing newline dropped), or the value itself.
local function check_secret(v, field)
  if type(v) ~= "string" or v == "" then
    return nil, field .. ": a secret expected: \"env:NAME\", \"file:/path\" or the value"
  end
  if v:match("^env:") and not v:match("^env:[%w_]+$") then return nil, field .. ": env:NAME with a variable name expected" end
  if v:match("^file:") and not v:match("^file:/") then return nil, field .. ": file: needs an absolute path" end
  return v
end

local function duration(v, field)
  local d = tonumber(v) or (type(v) == "string" and time.parse_duration(v))
  if not d or d <= 0 then return nil, field .. ": a positive duration expected (\"5m\", 300)" end
  return d
end

-- check_config(v, where) -> the config with its defaults | nil, "where.field: reason"
function M.check_config(v, where)
  where = where or "billing.payments"
  if type(v) ~= "table" then return nil, where .. ": table expected" end
  for k in pairs(v) do
    if not KEYS[k] then
      return nil, format("%s.%s: unknown field (provider, url, secret_key, webhook_secret, tolerance, timeout, " ..
        "payment_method, insecure)", where, tostring(k))
    end
  end
  local out = {}
  for k, d in pairs(M.DEFAULTS) do out[k] = v[k] == nil and d or v[k] end
  if out.provider ~= "stripe" then return nil, where .. ".provider: \"stripe\" expected (the one provider there is)" end
  if type(out.url) ~= "string" or not out.url:match("^https?://[^/]+") then
    return nil, where .. ".url: an http(s) URL expected (\"https://api.stripe.com\")"
  end
  out.url = out.url:gsub("/+$", "")
  local err
  for _, k in ipairs({ "secret_key", "webhook_secret" }) do
    out[k], err = check_secret(v[k], where .. "." .. k)
    if not out[k] then return nil, err end
  end
  for _, k in ipairs({ "tolerance", "timeout" }) do
    out[k], err = duration(out[k], where .. "." .. k)
    if not out[k] then return nil, err end
  end
  if v.payment_method ~= nil and (type(v.payment_method) ~= "string" or not v.payment_method:match("^pm_[%w_]+$")) then
    return nil, where .. ".payment_method: a PaymentMethod id (\"pm_...\") expected"
  end
  out.payment_method = v.payment_method
  if v.insecure ~= nil and type(v.insecure) ~= "boolean" then return nil, where .. ".insecure: boolean expected" end
  out.insecure = v.insecure
  return out
end

-- secret(ref) -> value | nil, err: resolved at each use, so a rotated file or variable is read
-- again without a restart.
function M.secret(ref)
  if type(ref) ~= "string" then return nil, "no secret configured" end
  local name = ref:match("^env:(.+)$")
  if name then
    local v = os.getenv(name)
    if not v or v == "" then return nil, "environment variable " .. name .. " is not set" end
    return v
  end
  local path = ref:match("^file:(.+)$")
  if path then
    local fs = require "steward.fs"
    local ok, v, err = pcall(fs.read, path, { max = 4096 })
    if not ok or not v then return nil, "cannot read " .. path .. ": " .. tostring(ok and err or v) end
    return (v:gsub("%s+$", ""))
  end
  return ref
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

-- form(params) -> Stripe's form encoding: nested tables as a[b][c]=v, keys sorted, so the same
-- parameters always make the same body (what an idempotent retry must send).
function M.form(params)
  local out = {}
  local function walk(prefix, t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    for _, k in ipairs(keys) do
      local v = t[k]
      if v == nil then v = t[tonumber(k)] end
      local name = prefix and (prefix .. "[" .. k .. "]") or k
      if type(v) == "table" then walk(name, v)
      elseif type(v) == "boolean" then out[#out + 1] = escape(name) .. "=" .. (v and "true" or "false")
      else out[#out + 1] = escape(name) .. "=" .. escape(v) end
    end
  end
  walk(nil, params)
  return concat(out, "&")
end

-- request(cfg, method, path, params, {idempotency_key}) -> object, status | nil, err, info.
-- info = {status, type, code, decline_code, param, object (an error's payment_intent), kind}:
-- kind "declined" (a card error: the attempt failed), "refused" (another 4xx: our request),
-- "unavailable" (no answer, 429 or 5xx: try again with the same idempotency key).
function M.request(cfg, method, path, params, opts)
  if type(cfg) ~= "table" then error("stripe.request: cfg: table expected", 2) end
  opts = opts or {}
  local key, err = M.secret(cfg.secret_key)
  if not key then return nil, "billing.payments.secret_key: " .. err, { kind = "refused" } end
  local headers = { authorization = "Bearer " .. key, ["stripe-version"] = opts.version }
  local body
  if method == "POST" then
    headers["content-type"] = "application/x-www-form-urlencoded"
    body = M.form(params or {})
    if opts.idempotency_key then headers["idempotency-key"] = opts.idempotency_key end
  end
  local res, herr, kind = http.request({ url = cfg.url .. path, method = method, headers = headers, body = body,
    timeout = cfg.timeout, insecure = cfg.insecure or nil })
  if not res then return nil, "stripe: " .. tostring(herr), { kind = "unavailable", transport = kind } end
  local doc = json.decode(res.body)
  if res.status >= 200 and res.status < 300 then
    if type(doc) ~= "table" then return nil, "stripe: a JSON object expected in the answer", { kind = "unavailable", status = res.status } end
    return doc, res.status, { replayed = res.headers["idempotent-replayed"] == "true" }
  end
  local e = type(doc) == "table" and type(doc.error) == "table" and doc.error or {}
  local info = { status = res.status, type = e.type, code = e.code, decline_code = e.decline_code, param = e.param,
                 object = type(e.payment_intent) == "table" and e.payment_intent or nil }
  if res.status == 429 or res.status >= 500 then info.kind = "unavailable"
  elseif e.type == "card_error" then info.kind = "declined"
  else info.kind = "refused" end
  local msg = type(e.message) == "string" and e.message or ("HTTP " .. res.status)
  return nil, format("stripe: %s %s: %d %s", method, path, res.status, msg), info
end

-- create_customer(cfg, {email, name, metadata}, idempotency_key) -> customer | nil, err, info
function M.create_customer(cfg, params, key)
  return M.request(cfg, "POST", "/v1/customers", params, { idempotency_key = key })
end

-- customer(cfg, id) -> customer | nil, err, info
function M.customer(cfg, id)
  if type(id) ~= "string" or not id:match("^cus_[%w_]+$") then error("stripe.customer: id: cus_... expected", 2) end
  return M.request(cfg, "GET", "/v1/customers/" .. id)
end

-- create_payment_intent(cfg, params, idempotency_key) -> intent | nil, err, info
function M.create_payment_intent(cfg, params, key)
  return M.request(cfg, "POST", "/v1/payment_intents", params, { idempotency_key = key })
end

-- payment_intent(cfg, id) -> intent | nil, err, info
function M.payment_intent(cfg, id)
  if type(id) ~= "string" or not id:match("^pi_[%w_]+$") then error("stripe.payment_intent: id: pi_... expected", 2) end
  return M.request(cfg, "GET", "/v1/payment_intents/" .. id)
end

return M
