-- steward tenants verify-export FILE [--pubkey PEM]... [-c FILE]: checks an offboarding's
-- archive (steward.tenants.offboard_archive) against the daemon's audit key (or the public keys
-- given), without a daemon. Exit 0 and a summary when it verifies, 1 when it does not, 2 on
-- bad usage. steward tenants cat-export FILE: its JSON lines on stdout (the file is zstd).
local archive = require "steward.tenants.offboard_archive"
local audit_key = require "steward.runtime.store.audit_key"
local fs = require "steward.fs"

local tostring, ipairs, pairs, format = tostring, ipairs, pairs, string.format

local M = {}

M.USAGE = "usage: steward tenants verify-export FILE [--pubkey PEM]... [-c FILE]\n       steward tenants cat-export FILE"

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function verify_export(argv)
  local file, cfg_file, keyfiles = nil, nil, {}
  local i = 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    if a == "--pubkey" and v then keyfiles[#keyfiles + 1] = v; i = i + 2
    elseif (a == "-c" or a == "--config") and v then cfg_file = v; i = i + 2
    elseif not file and a:sub(1, 1) ~= "-" then file = a; i = i + 1
    else say(io.stderr, "steward: tenants verify-export: bad argument '", tostring(a), "'\n", M.USAGE); return 2 end
  end
  if not file then say(io.stderr, M.USAGE); return 2 end
  if #keyfiles == 0 then -- the daemon's own key, found through its configuration
    local cfg, err = require("steward.runtime.config").load({ file = cfg_file or "steward.lua", required = cfg_file ~= nil })
    if not cfg then say(io.stderr, "steward: config: ", err); return 2 end
    keyfiles[1] = audit_key.path(cfg.var_dir)
  end
  local keys = {}
  for _, f in ipairs(keyfiles) do
    local key, err = audit_key.load(f)
    if not key then say(io.stderr, "steward: tenants verify-export: ", err); return 2 end
    keys[#keys + 1] = key
  end
  if not fs.exists(file) then say(io.stderr, "steward: tenants verify-export: ", file, ": no such file"); return 2 end
  local text, err = archive.read(file)
  if not text then say(io.stdout, "FAILED: ", file, ": ", tostring(err)); return 1 end
  local rep
  rep, err = archive.verify(text, keys)
  if not rep then say(io.stdout, "FAILED: ", file, ": ", err); return 1 end
  local names = {}
  for name in pairs(rep.counts) do names[#names + 1] = name end
  table.sort(names)
  local parts = {}
  for _, name in ipairs(names) do parts[#parts + 1] = format("%s %d", name, rep.counts[name]) end
  say(io.stdout, format("ok: tenant %s, exported %s, sha256 %s, key %s; rows: %s", tostring(rep.tenant),
    tostring(rep.created), rep.sha256, rep.key_id:sub(1, 16), table.concat(parts, ", ")))
  return 0
end

local function cat_export(argv)
  if #argv ~= 1 or argv[1]:sub(1, 1) == "-" then say(io.stderr, M.USAGE); return 2 end
  local text, err = archive.read(argv[1])
  if not text then say(io.stderr, "steward: tenants cat-export: ", argv[1], ": ", tostring(err)); return 1 end
  io.stdout:write(text)
  io.stdout:flush()
  return 0
end

-- main({subcommand, args...}) -> exit code
function M.main(args)
  if args[1] == "verify-export" then return verify_export({ unpack(args, 2) }) end
  if args[1] == "cat-export" then return cat_export({ unpack(args, 2) }) end
  say(io.stderr, "steward: tenants: unknown subcommand '", tostring(args[1]), "'\n", M.USAGE)
  return 2
end

return M
