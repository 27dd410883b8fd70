-- steward audit verify | export | checkpoint | pubkey (docs/audit.md): the audit log's hash
-- chain, straight from the store, so they work whether or not the daemon is running.
local audit_chain = require "steward.runtime.store.audit_chain"
local audit_key = require "steward.runtime.store.audit_key"
local time = require "steward.time"
local fs = require "steward.fs"

local tostring, tonumber, ipairs, format = tostring, tonumber, ipairs, string.format

local M = {}

M.USAGE = [[usage: steward audit verify [-c FILE] [--from ID] [--pubkey PEM]...
       steward audit export [-c FILE] [--since TIME|DURATION] [--from ID] [-o FILE]
       steward audit checkpoint [-c FILE]
       steward audit pubkey [-c FILE]]

M.commands = { verify = true, export = true, checkpoint = true, pubkey = true }

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function uid()
  local ffi = require "ffi"
  pcall(ffi.cdef, "unsigned int getuid(void);")
  return tonumber(ffi.C.getuid())
end

local function open_store(cfg, cmd)
  local st, err = require("steward.runtime.store").open(cfg.store)
  if not st then say(io.stderr, "steward: audit ", cmd, ": store: ", tostring(err)) end
  return st
end

local function bad(cmd, a)
  say(io.stderr, "steward: audit ", cmd, ": bad argument '", tostring(a), "'\n", M.USAGE)
  return 2
end

local function verify(cfg, argv)
  local from, files = nil, {}
  local i = 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    if a == "--from" and v and tonumber(v) and tonumber(v) >= 1 then from = math.floor(tonumber(v)); i = i + 2
    elseif a == "--pubkey" and v then files[#files + 1] = v; i = i + 2
    else return bad("verify", a) end
  end
  local keys = {}
  if #files == 0 then -- the daemon's own key, when it is here
    local path = audit_key.path(cfg.var_dir)
    if fs.exists(path) then files[1] = path end
  end
  for _, f in ipairs(files) do
    local key, err = audit_key.load(f)
    if not key then say(io.stderr, "steward: audit verify: ", err); return 2 end
    keys[#keys + 1] = key
  end
  local st = open_store(cfg, "verify")
  if not st then return 2 end
  local rep, err = audit_chain.verify(st, { from = from, keys = keys })
  st:close()
  if not rep then say(io.stderr, "steward: audit verify: ", tostring(err)); return 2 end
  if not rep.ok then
    say(io.stdout, format("FAILED at entry %d: %s", rep.problem.id, rep.problem.reason))
    return 1
  end
  local parts = { rep.checked == 0 and "no chained entries" or
    format("verified entries %d to %d (%d chained, %d signed checkpoint%s)", rep.first, rep.last, rep.checked,
      rep.checkpoints, rep.checkpoints == 1 and "" or "s") }
  if rep.last_checkpoint and rep.last > rep.last_checkpoint then
    parts[#parts + 1] = format("%d entries after the last checkpoint (entry %d) are not signed yet",
      rep.last - rep.last_checkpoint, rep.last_checkpoint)
  elseif rep.checked > 0 and not rep.last_checkpoint then
    parts[#parts + 1] = "no checkpoint signs them yet"
  end
  if rep.legacy > 0 then parts[#parts + 1] = format("%d older entries predate the chain", rep.legacy) end
  say(io.stdout, "ok: ", table.concat(parts, "; "))
  return 0
end

local function export(cfg, argv)
  local opts, out = {}, nil
  local i = 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    if a == "--from" and v and tonumber(v) and tonumber(v) >= 1 then opts.from = math.floor(tonumber(v)); i = i + 2
    elseif a == "--since" and v then
      local d = time.parse_duration(v)
      opts.since = d and (time.now() - d) or v
      i = i + 2
    elseif (a == "-o" or a == "--output") and v then out = v; i = i + 2
    else return bad("export", a) end
  end
  local st = open_store(cfg, "export")
  if not st then return 2 end
  local buf = {}
  local write = function(line) buf[#buf + 1] = line end
  if not out then write = function(line) io.stdout:write(line, "\n") end end
  local ok, n, err = pcall(audit_chain.export, st, opts, write)
  st:close()
  if not ok then say(io.stderr, "steward: audit export: ", (tostring(n):gsub("^audit%.export: ", ""))); return 2 end
  if not n then say(io.stderr, "steward: audit export: ", tostring(err)); return 2 end
  if out then
    local wok, werr = fs.write_atomic(out, #buf > 0 and (table.concat(buf, "\n") .. "\n") or "")
    if not wok then say(io.stderr, "steward: audit export: ", tostring(werr)); return 2 end
    say(io.stderr, format("exported %d entries to %s", n, out))
  end
  io.stdout:flush()
  return 0
end

local function checkpoint(cfg, argv)
  if argv[1] then return bad("checkpoint", argv[1]) end
  local key, err = audit_key.load(audit_key.path(cfg.var_dir), { create = true })
  if not key then say(io.stderr, "steward: audit checkpoint: ", err); return 2 end
  local st = open_store(cfg, "checkpoint")
  if not st then return 2 end
  local id
  id, err = audit_chain.checkpoint(st, key, { source = "cli", uid = uid(), actor = "uid:" .. uid() })
  st:close()
  if not id then say(io.stderr, "steward: audit checkpoint: ", tostring(err)); return 1 end
  say(io.stdout, format("checkpoint: entry %d, signed by key %s", id, key.id:sub(1, 16)))
  return 0
end

local function pubkey(cfg, argv)
  if argv[1] then return bad("pubkey", argv[1]) end
  local key, err = audit_key.load(audit_key.path(cfg.var_dir), { create = true })
  if not key then say(io.stderr, "steward: audit pubkey: ", err); return 2 end
  io.stdout:write(key.public_pem)
  io.stdout:flush()
  return 0
end

-- main(cfg, command, argv) -> exit code: 0 verified / done, 1 a mismatch or a failed write,
-- 2 usage or an unreachable store.
function M.main(cfg, cmd, argv)
  if cmd == "verify" then return verify(cfg, argv) end
  if cmd == "export" then return export(cfg, argv) end
  if cmd == "checkpoint" then return checkpoint(cfg, argv) end
  return pubkey(cfg, argv)
end

return M
