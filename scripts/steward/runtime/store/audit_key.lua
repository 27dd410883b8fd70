-- steward.runtime.store.audit_key: the Ed25519 key that signs the audit log's checkpoints. A PKCS#8 PEM
-- file in the var dir (audit-key.pem, created 0600 on first use); its public half is what an
-- auditor keeps (`steward audit pubkey`). A key's id is the SHA-256 of its public key in DER
-- (SubjectPublicKeyInfo), which `openssl pkey -pubin -outform DER | openssl dgst -sha256` gives.
local crypto = require "steward.crypto"
local fs = require "steward.fs"

local type, error = type, error

local M = {}

M.FILE = "audit-key.pem"

function M.path(var_dir) return (var_dir or "var") .. "/" .. M.FILE end

-- The DER inside a PEM block (its base64 body).
local function der(pem)
  local body = pem:match("%-%-%-%-%-BEGIN [%u ]+%-%-%-%-%-(.-)%-%-%-%-%-END")
  return body and crypto.unbase64((body:gsub("%s", "")))
end

-- from_pem(text) -> {secret (or nil), public, public_pem, id} | nil, err
function M.from_pem(text)
  if type(text) ~= "string" then error("audit_key.from_pem: text: string expected", 2) end
  local secret, public = crypto.ed25519_from_pem(text)
  if secret == nil then return nil, public end -- public is the reason
  local _, public_pem
  if secret then
    _, public_pem = crypto.ed25519_pem(secret)
  else
    public_pem = text:match("%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-.-%-%-%-%-%-END PUBLIC KEY%-%-%-%-%-") .. "\n"
  end
  local d = der(public_pem)
  if not d then return nil, "audit key: cannot read the public key's DER" end
  return { secret = secret or nil, public = public, public_pem = public_pem, id = crypto.hex(crypto.sha256(d)) }
end

-- load(path, {create = bool}) -> key | nil, err. With create, a missing file is made (0600).
function M.load(path, opts)
  local text, err = fs.read(path)
  if not text then
    if not (opts and opts.create) or fs.exists(path) then
      return nil, "audit key " .. path .. ": " .. tostring(err)
    end
    local secret = crypto.ed25519_keypair()
    text = crypto.ed25519_pem(secret)
    local ok, werr = fs.write_atomic(path, text, { mode = tonumber("600", 8) })
    if not ok then return nil, "cannot write the audit key " .. path .. ": " .. tostring(werr) end
  end
  local key
  key, err = M.from_pem(text)
  if not key then return nil, "audit key " .. path .. ": " .. tostring(err) end
  return key
end

-- sign(key, msg) -> base64 signature
function M.sign(key, msg)
  if not key.secret then error("audit_key.sign: key: a private key expected", 2) end
  return crypto.base64(crypto.ed25519_sign(key.secret, msg))
end

function M.verify(key, msg, sig_b64)
  local sig = type(sig_b64) == "string" and crypto.unbase64(sig_b64)
  if not sig then return false end
  return crypto.ed25519_verify(key.public, msg, sig)
end

return M
