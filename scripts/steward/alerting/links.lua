-- steward.alerting.links: signed ack/resolve links for notifications. The signature (HMAC-SHA256
-- over incident id, action and expiry with a key only the daemon holds) is the credential, so
-- a person can act on an incident from a phone without a token. The key lives in
-- alerting.link_secret_file (created 0600 with random bytes on first use), so links stay
-- valid across restarts and across the instances sharing that file.
local crypto = require "steward.crypto"
local fs = require "steward.fs"
local time = require "steward.time"

local type, tostring, tonumber, format, floor = type, tostring, tonumber, string.format, math.floor

local M = {}

M.ACTIONS = { ack = true, resolve = true }
M.DEFAULT_TTL = 7 * 86400

-- settings: {secret_file, external_url, address = function() -> "host:port"} (configure)
local settings = { secret_file = "var/alerting-link.key" }
local key_cache -- {path, key}

-- configure{var_dir, listen, alerting = {external_url, link_secret_file}, address} — the
-- daemon's configuration; `address` (optional) tells the address actually bound when
-- `listen` has port 0.
function M.configure(cfg)
  if type(cfg) ~= "table" then error("links.configure: cfg: table expected", 2) end
  local a = type(cfg.alerting) == "table" and cfg.alerting or {}
  settings = {
    secret_file = a.link_secret_file or ((cfg.var_dir or "var") .. "/alerting-link.key"),
    external_url = a.external_url,
    listen = cfg.listen,
    address = cfg.address,
  }
  key_cache = nil
end

-- The link secret: read from the file, or created there (random, 0600) on first use.
function M.secret()
  local path = settings.secret_file
  if key_cache and key_cache.path == path then return key_cache.key end
  local data, err, code = fs.read(path)
  if not data and code == "ENOENT" then
    local dir = path:match("^(.*)/[^/]*$")
    if dir and dir ~= "" then fs.mkdir(dir, { parents = true }) end
    local ok, werr = fs.write_atomic(path, crypto.hex(crypto.random(32)) .. "\n", { mode = 384 })
    if not ok then return nil, "alerting links: cannot create the key file: " .. tostring(werr) end
    data, err = fs.read(path)
  end
  if not data then return nil, "alerting links: cannot read the key file: " .. tostring(err) end
  local key = data:match("^%s*(.-)%s*$")
  if #key < 16 then return nil, "alerting links: the key in " .. path .. " is shorter than 16 bytes" end
  key_cache = { path = path, key = key }
  return key
end

-- The base of links: alerting.external_url, else http:// + the address the daemon listens on.
function M.base()
  local u = settings.external_url
  if not u then
    local addr = settings.address and settings.address() or settings.listen or "127.0.0.1:8080"
    u = "http://" .. addr
  end
  return (u:gsub("/+$", ""))
end

-- signer{name, actions, actions_text, path, purpose, until_exp} -> {sign, verify, url}: one kind
-- of signed link (incidents' ack/resolve here, approvals' approve/deny in
-- steward.deploy.approvals), all on the one key. purpose heads the signed payload, so a
-- signature of one kind is no signature of another; until_exp: the link still works at its
-- exp second (incident links), else it has expired then (an approval expires at exp).
function M.signer(spec)
  local name, actions, purpose = spec.name, spec.actions, spec.purpose and (spec.purpose .. "\n") or ""
  local s = {}
  -- sign(id, action, exp) -> hex signature | nil, err
  function s.sign(id, action, exp)
    if type(id) ~= "string" or id == "" then error(name .. ".sign: id: string expected", 2) end
    if not actions[action] then error(name .. ".sign: action: " .. spec.actions_text .. " expected", 2) end
    if type(exp) ~= "number" then error(name .. ".sign: exp: number expected", 2) end
    local key, err = M.secret()
    if not key then return nil, err end
    return crypto.hex(crypto.hmac("sha256", key, format("%s%s\n%s\n%d", purpose, id, action, floor(exp))))
  end
  -- url(id, action, exp) -> URL | nil, err
  function s.url(id, action, exp)
    exp = floor(exp)
    local sig, err = s.sign(id, action, exp)
    if not sig then return nil, err end
    return format("%s%s/%s/%s?exp=%d&sig=%s", M.base(), spec.path, id, action, exp, sig)
  end
  -- verify(id, action, exp, sig, now) -> true | nil, reason ("expired", "bad signature", ...)
  function s.verify(id, action, exp, sig, now)
    if type(id) ~= "string" or not actions[action] then return nil, "unknown action" end
    exp = tonumber(exp)
    if not exp or exp ~= floor(exp) then return nil, "exp: integer expected" end
    if type(sig) ~= "string" or not sig:match("^%x+$") then return nil, "sig: hex signature expected" end
    local want, err = s.sign(id, action, exp)
    if not want then return nil, err end
    -- Constant time: how much of the signature matched must not show in the answer's timing.
    if not crypto.equals(want, sig:lower()) then return nil, "bad signature" end
    if exp < now or (exp == now and not spec.until_exp) then return nil, "expired" end
    return true
  end
  return s
end

local incident = M.signer{ name = "links", actions = M.ACTIONS, actions_text = "ack or resolve",
  path = "/v1/incidents", until_exp = true }

-- sign(id, action, exp) -> hex signature | nil, err
M.sign = incident.sign

-- url(id, action [, ttl]) -> URL | nil, err; ttl defaults to 7 days.
function M.url(id, action, ttl, now)
  return incident.url(id, action, (now or time.now()) + (ttl and time.parse_duration(ttl) or M.DEFAULT_TTL))
end

-- verify(id, action, exp, sig [, now]) -> true | nil, reason ("expired", "bad signature", ...)
function M.verify(id, action, exp, sig, now)
  return incident.verify(id, action, exp, sig, now or time.now())
end

return M
