-- steward reload / steward policy rollback: ask the running daemon, through its HTTP API
-- with the admin token (admin_token from the config, or var/admin.token).
-- steward audit: lists the audit log straight from the store, so it works whether or not the
-- daemon is running; its chain commands are steward.cli_audit.
local config = require "steward.runtime.config"
local http = require "steward.http"
local json = require "steward.json"
local fs = require "steward.fs"

local M = {}

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function admin_call(cfg, method, path, body)
  local token = cfg.admin_token
  if not token then
    local text, err = fs.read(cfg.var_dir .. "/admin.token")
    if not text then return nil, "no admin token: " .. err end
    token = text:match("^%s*(%S+)")
  end
  local host, port = cfg.listen:match("^(.+):(%d+)$")
  if host == "0.0.0.0" then host = "127.0.0.1" end
  local res, err = http.request({ method = method, url = "http://" .. host .. ":" .. port .. path,
    headers = { authorization = "Bearer " .. token, ["content-type"] = "application/json" },
    body = body and json.encode(body) or nil, timeout = 30 })
  if not res then return nil, "the daemon at " .. cfg.listen .. " does not answer: " .. err end
  local doc = json.decode(res.body)
  if res.status >= 300 then
    return nil, (type(doc) == "table" and doc.error and doc.error.message) or ("HTTP " .. res.status)
  end
  return doc
end

-- main({command, args...}) -> exit code
function M.main(args)
  local cmd = args[1]
  local rest, file = {}, nil
  local i = 2
  while args[i] do
    if args[i] == "-c" or args[i] == "--config" then
      file = args[i + 1]
      i = i + 2
    else
      rest[#rest + 1] = args[i]
      i = i + 1
    end
  end
  if file == nil and (args[#args] == "-c") then
    say(io.stderr, "steward: -c needs a FILE")
    return 2
  end
  local cfg, err = config.load({ file = file or "steward.lua", required = file ~= nil })
  if not cfg then say(io.stderr, "steward: config: ", err); return 2 end
  if cmd == "audit" then return M.audit(cfg, rest) end
  if cmd == "reload" then
    if #rest > 0 then say(io.stderr, "usage: steward reload [-c FILE]"); return 2 end
    local doc
    doc, err = admin_call(cfg, "POST", "/v1/policies/reload")
    if not doc then say(io.stderr, "steward: reload: ", err); return 1 end
    say(io.stdout, ("reloaded: %d policies; changed: %s; removed: %s; failed: %s"):format(doc.loaded,
      table.concat(doc.changed, ",") ~= "" and table.concat(doc.changed, ",") or "-",
      table.concat(doc.removed, ",") ~= "" and table.concat(doc.removed, ",") or "-",
      table.concat(doc.failed, ",") ~= "" and table.concat(doc.failed, ",") or "-"))
    return #doc.failed > 0 and 1 or 0
  end
  -- policy rollback NAME [VERSION]
  if rest[1] ~= "rollback" or not rest[2] or #rest > 3 then
    say(io.stderr, "usage: steward policy rollback NAME [VERSION] [-c FILE]")
    return 2
  end
  local doc
  doc, err = admin_call(cfg, "POST", "/v1/policies/" .. rest[2] .. "/rollback", rest[3] and { version = rest[3] } or nil)
  if not doc then say(io.stderr, "steward: policy rollback: ", err); return 1 end
  say(io.stdout, ("%s is now at version %s"):format(doc.name, doc.version))
  return 0
end

local AUDIT_USAGE = "usage: steward audit [-c FILE] [--limit N] [--since TIME|DURATION] [--uid UID] [--session ID] [--json]\n" ..
  "       steward audit verify|export|checkpoint|pubkey ... (docs/audit.md)"

-- steward audit: newest first. --since takes an RFC 3339 time or a duration back from now.
function M.audit(cfg, argv)
  local chain = require "steward.cli_audit" -- verify, export, checkpoint, pubkey
  if chain.commands[argv[1]] then return chain.main(cfg, argv[1], { select(2, unpack(argv)) }) end
  local f, as_json = {}, false
  local i = 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    if a == "--json" then as_json = true; i = i + 1
    elseif (a == "--limit" or a == "--uid") and v and tonumber(v) then f[a:sub(3)] = tonumber(v); i = i + 2
    elseif a == "--session" and v then f.session = v; i = i + 2
    elseif a == "--since" and v then
      local d = require("steward.time").parse_duration(v)
      f.since = d and (require("steward.time").now() - d) or v
      i = i + 2
    else
      say(io.stderr, "steward: audit: bad argument '", a, "'\n", AUDIT_USAGE)
      return 2
    end
  end
  local store = require "steward.runtime.store"
  local st, err = store.open(cfg.store)
  if not st then say(io.stderr, "steward: audit: store: ", tostring(err)); return 1 end
  local ok, res = pcall(require("steward.runtime.store.audit").list, st, f)
  st:close()
  if not ok then say(io.stderr, "steward: audit: ", (tostring(res):gsub("^audit%.list: ", ""))); return 2 end
  if not res then say(io.stderr, "steward: audit: ", tostring(err)); return 1 end
  local util = require "steward.runtime.store.util"
  for _, e in ipairs(res.entries) do
    if as_json then
      say(io.stdout, json.encode(e))
    else
      local cmd = e.command:gsub("\n", "\\n")
      if #cmd > 100 then cmd = cmd:sub(1, 97) .. "..." end
      -- REPL entries name the peer's uid; HTTP and CLI entries their actor and target.
      local who = (e.uid ~= nil or e.source == "repl") and ("uid=" .. tostring(e.uid)) or tostring(e.actor or "-")
      if e.target then cmd = cmd .. " " .. e.target end
      say(io.stdout, ("%s  %s  %-8s %-11s %-8s %s%s"):format(util.format_rfc3339(e.time), who,
        e.role or "-", e.outcome, e.session or "-", cmd, e.detail and ("  # " .. e.detail:gsub("\n.*", "")) or ""))
    end
  end
  return 0
end

return M
