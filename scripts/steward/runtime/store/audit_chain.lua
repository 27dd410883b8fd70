-- steward.runtime.store.audit_chain: checks, signs and exports the audit log's hash chain
-- (docs/audit.md). verify walks the entries in id order and names the first one whose content,
-- order or checkpoint signature does not match; checkpoint signs the current head with the
-- audit key; export writes the canonical lines an auditor checks with openssl alone.
local audit = require "steward.runtime.store.audit"
local audit_key = require "steward.runtime.store.audit_key"
local util = require "steward.runtime.store.util"

local type, ipairs, format, tostring, concat = type, ipairs, string.format, tostring, table.concat

local M = {}

local PAGE = 500
local CHECKPOINT = "audit.checkpoint"

-- A REPL command may read "audit.checkpoint" too: only steward's own writers sign.
local function is_checkpoint(r) return r.command == CHECKPOINT and (r.source == "steward" or r.source == "cli") end

-- verify(st, {from = id, keys = {key...}}) -> report | nil, err. report = {ok, checked, legacy,
-- checkpoints, first, last, last_checkpoint, problem = {id, reason}}: ok is false at the first
-- entry that does not match, and problem names it.
function M.verify(st, opts)
  util.store_arg(st, "audit.verify")
  opts = util.opt_table(opts, "audit.verify: options")
  local from = opts.from or 1
  if type(from) ~= "number" or from < 1 or from ~= math.floor(from) then
    error("audit.verify: from: positive integer expected", 2)
  end
  local keys, key_ids = {}, {}
  for _, k in ipairs(opts.keys or {}) do keys[k.id] = k; key_ids[#key_ids + 1] = k.id:sub(1, 16) end
  local rep = { ok = true, checked = 0, legacy = 0, checkpoints = 0 }
  local function fail(id, reason)
    rep.ok, rep.problem = false, { id = id, reason = reason }
    return rep
  end
  local prev = { id = from - 1 } -- the entry before the first one checked (hash nil: none, or unchained)
  if from > 1 then
    local rows, err = st.db:query("SELECT id, hash FROM audit WHERE id = $1", from - 1)
    if not rows then return nil, err end
    if rows[1] then prev.hash = rows[1].hash end
  end
  local started = prev.hash ~= nil
  local cursor = from
  while true do
    local rows, err = audit.range(st, cursor, PAGE)
    if not rows then return nil, err end
    for _, r in ipairs(rows) do
      if r.hash == nil and r.prev_hash == nil and not started then
        rep.legacy = rep.legacy + 1 -- written before the chain existed
      else
        started = true
        rep.first = rep.first or r.id
        if r.id ~= prev.id + 1 then
          local gap = r.id - 1 > prev.id + 1 and format("entries %d to %d are", prev.id + 1, r.id - 1)
            or format("entry %d is", prev.id + 1)
          return fail(r.id, gap .. " missing (deleted): the chain goes from entry " .. prev.id .. " to entry " .. r.id)
        end
        if r.hash == nil then
          return fail(r.id, "it has no hash: written or altered outside steward")
        end
        if r.prev_hash ~= (prev.hash or audit.GENESIS) then
          return fail(r.id, prev.hash and format("out of order: its prev_hash is not the hash of entry %d " ..
            "(entries were moved, or entry %d was changed and its hash rewritten)", prev.id, prev.id)
            or "out of order: it does not start the chain, but no chained entry comes before it")
        end
        if audit.hash(audit.canonical(r)) ~= r.hash then
          return fail(r.id, "its content does not match its hash (a field was changed)")
        end
        if is_checkpoint(r) then
          local key = keys[r.key_id]
          if not key then
            return fail(r.id, format("checkpoint signed by key %s, which is not a verifying key (%s): " ..
              "the signing key was replaced, or give its public key with --pubkey",
              tostring(r.key_id):sub(1, 16), #key_ids > 0 and concat(key_ids, ", ") or "none given"))
          end
          if not audit_key.verify(key, r.prev_hash, r.sig) then
            return fail(r.id, "checkpoint signature does not verify: the entries before it were rewritten")
          end
          rep.checkpoints = rep.checkpoints + 1
          rep.last_checkpoint = r.id
        end
        rep.checked = rep.checked + 1
        rep.last = r.id
      end
      prev = r
    end
    if #rows < PAGE then break end
    cursor = rows[#rows].id + 1
  end
  return rep
end

-- checkpoint(st, key, {source, uid}) -> id | nil, err: a signed entry over the current head
-- (source "steward" from the daemon, "cli" from `steward audit checkpoint`).
function M.checkpoint(st, key, who)
  util.store_arg(st, "audit.checkpoint")
  if type(key) ~= "table" or not key.secret then error("audit.checkpoint: key: a private audit key expected", 2) end
  who = who or {}
  return audit.append(st, { source = who.source or "steward", uid = who.uid, actor = who.actor or "steward",
    command = CHECKPOINT, outcome = "ok",
    sign = function(prev_hash) return key.id, audit_key.sign(key, prev_hash) end })
end

-- checkpoint_due(st, key) -> id | false | nil, err: a checkpoint unless the head is one already.
function M.checkpoint_due(st, key)
  local head, err = audit.head(st)
  if not head then return nil, err end
  if head.id == 0 or head.command == CHECKPOINT then return false end
  return M.checkpoint(st, key)
end

-- export(st, {since = time, from = id}, write(line)) -> count | nil, err. Canonical lines in
-- chain order from the first chained entry at or after `since` (or id `from`) to the head.
function M.export(st, opts, write)
  util.store_arg(st, "audit.export")
  opts = util.opt_table(opts, "audit.export: options")
  if type(write) ~= "function" then error("audit.export: write: function expected", 2) end
  local start
  if opts.from ~= nil then
    start = opts.from
  else
    local sql, rows, err = "SELECT MIN(id) AS id FROM audit WHERE hash IS NOT NULL"
    if opts.since ~= nil then
      rows, err = st.db:query(sql .. " AND time >= $1", util.time_arg(opts.since, "audit.export: since"))
    else
      rows, err = st.db:query(sql)
    end
    if not rows then return nil, err end
    start = rows[1] and rows[1].id
    if not start then return 0 end
  end
  local n, cursor = 0, start
  while true do
    local rows, err = audit.range(st, cursor, PAGE)
    if not rows then return nil, err end
    for _, r in ipairs(rows) do
      write(audit.canonical(r))
      n = n + 1
    end
    if #rows < PAGE then break end
    cursor = rows[#rows].id + 1
  end
  return n
end

return M
