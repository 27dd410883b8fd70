-- steward.tenants.offboard_archive: the format of a tenant's export, written once and read
-- back by `steward tenants verify-export`. JSON lines: a header, one line per row
-- ({"table", "row"}), and a last line that signs the SHA-256 of every byte before it with the
-- daemon's Ed25519 key (the audit log's, steward.runtime.store.audit_key), so an export that
-- lost, gained or changed one byte no longer verifies. On disk the lines are one zstd frame
-- (steward.compress): the signature covers the lines, not the compression, so the same export
-- recompressed still verifies, and a flipped compressed byte fails the frame's checksum first.
local json = require "steward.json"
local crypto = require "steward.crypto"
local compress = require "steward.compress"
local audit_key = require "steward.runtime.store.audit_key"
local fs = require "steward.fs"

local type, ipairs, tostring, error, concat, format = type, ipairs, tostring, error, table.concat, string.format

local M = {}

M.FORMAT = "steward-tenant-export/1"

local function sha256_hex(s) return crypto.hex(crypto.sha256(s)) end
M.sha256_hex = sha256_hex

-- The signature line, byte for byte: verify rebuilds it and compares, so no byte of it can
-- change unnoticed (not a JSON spacing, not an unused bit of the base64).
local function trailer(key_id, sum, sig)
  return format('{"signature":{"alg":"ed25519","key_id":"%s","sha256":"%s","sig":"%s"}}', key_id, sum, sig)
end

-- build(tenant, tables, key, created) -> text, digests, counts. tables: a list of
-- { name, rows } (rows in a stable order); digests[name] is the SHA-256 of that table's lines
-- as they stand in the archive, counts[name] its number of rows.
function M.build(tenant, tables, key, created)
  if type(tenant) ~= "string" then error("offboard_archive.build: tenant: string expected", 2) end
  if type(key) ~= "table" or not key.secret then error("offboard_archive.build: key: a private key expected", 2) end
  local names = {}
  for i, t in ipairs(tables) do names[i] = t.name end
  local out = { json.encode({ format = M.FORMAT, tenant = tenant, created = created, key_id = key.id,
                              tables = json.array(names) }) }
  local digests, counts = {}, {}
  for _, t in ipairs(tables) do
    local lines = {}
    for i, row in ipairs(t.rows) do lines[i] = json.encode({ table = t.name, row = row }) end
    local text = concat(lines, "\n")
    digests[t.name], counts[t.name] = sha256_hex(text), #lines
    if #lines > 0 then out[#out + 1] = text end
  end
  local body = concat(out, "\n") .. "\n"
  local sum = sha256_hex(body)
  return body .. trailer(key.id, sum, audit_key.sign(key, sum)) .. "\n", digests, counts, sum
end

-- verify(text, keys) -> report | nil, reason. keys: the trusted public keys (audit_key.load);
-- report = { tenant, created, key_id, sha256, counts = { table = n } }.
function M.verify(text, keys)
  if type(text) ~= "string" then error("offboard_archive.verify: text: string expected", 2) end
  local body, last = text:match("^(.*\n)([^\n]+)\n$")
  if not body then return nil, "not an export: no signature line" end
  local doc = json.decode(last)
  local s = type(doc) == "table" and doc.signature
  if type(s) ~= "table" or type(s.sig) ~= "string" or type(s.sha256) ~= "string" or type(s.key_id) ~= "string" then
    return nil, "not an export: the last line is not a signature"
  end
  local raw = crypto.unbase64(s.sig)
  if last ~= trailer(s.key_id, s.sha256, s.sig) or not raw or crypto.base64(raw) ~= s.sig then
    return nil, "the signature line is altered"
  end
  local sum = sha256_hex(body)
  if sum ~= s.sha256 then return nil, "the content does not match its signed SHA-256 (altered or truncated)" end
  local trusted
  for _, k in ipairs(keys or {}) do
    if k.id == s.key_id and audit_key.verify(k, sum, s.sig) then trusted = k end
  end
  if not trusted then
    return nil, "the signature does not verify with the trusted key" .. (#(keys or {}) == 1 and "" or "s") ..
      " (signed by key " .. tostring(s.key_id):sub(1, 16) .. ")"
  end
  local header, counts, n = nil, {}, 0
  for line in body:gmatch("([^\n]*)\n") do
    n = n + 1
    local v = json.decode(line)
    if type(v) ~= "table" then return nil, "line " .. n .. " is not JSON" end
    if n == 1 then
      if v.format ~= M.FORMAT then return nil, "unknown format " .. tostring(v.format) end
      header = v
      for _, name in ipairs(v.tables or {}) do counts[name] = 0 end
    else
      if type(v.table) ~= "string" or counts[v.table] == nil then return nil, "line " .. n .. ": unknown table" end
      counts[v.table] = counts[v.table] + 1
    end
  end
  if not header then return nil, "not an export: no header" end
  return { tenant = header.tenant, created = header.created, key_id = s.key_id, sha256 = sum, counts = counts }
end

-- write(path, text) -> true | nil, err: the export as one zstd frame, durable under its final
-- name once this returns (compress.writer writes a .part, fsyncs, renames; mode 0600).
function M.write(path, text)
  local w, err = compress.writer(path)
  if not w then return nil, err end
  local ok, werr = w:write(text)
  if not ok then w:abort(); return nil, werr end
  local info, cerr = w:close()
  if not info then return nil, cerr end
  return true
end

-- read(path) -> text | nil, err: an export's lines, from its zstd frame (or, for an export
-- written before exports were compressed, the plain file: zstd finds no frame at byte 0). A
-- corrupt frame is an error naming the file, never a crash.
function M.read(path)
  local r, err = compress.reader(path)
  if not r then return nil, err end
  local parts = {}
  while true do
    local chunk, cerr = r:read()
    if chunk == nil then
      r:close()
      if cerr and #parts == 0 and cerr:find("Unknown frame descriptor", 1, true) then return fs.read(path) end
      if cerr then return nil, cerr end
      break
    end
    parts[#parts + 1] = chunk
  end
  return concat(parts)
end

-- rows(text) -> iterator of table, row over an export's lines (for tools and tests).
function M.rows(text)
  local it = text:gmatch("([^\n]*)\n")
  it() -- the header
  return function()
    for line in it do
      local v = json.decode(line)
      if type(v) == "table" and v.table then return v.table, v.row end
    end
  end
end

return M
