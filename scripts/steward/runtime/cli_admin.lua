-- steward status / reload / policy list|show|rollback / decide: ask the running daemon, through
-- its HTTP API with the admin token (admin_token from the config, or var/admin.token).
-- steward audit: lists the audit log straight from the store, so it works whether or not the
-- daemon is running.
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
  if res.status >= 300 or type(doc) ~= "table" then
    return nil, (type(doc) == "table" and doc.error and doc.error.message) or ("HTTP " .. res.status)
  end
  return doc
end

local function list_or_dash(t)
  return (t and #t > 0) and table.concat(t, ",") or "-"
end

local function iso(t)
  return type(t) == "number" and require("steward.runtime.store.util").format_rfc3339(t) or tostring(t or "-")
end

local function error_line(e)
  if type(e) ~= "table" then return nil end
  return ("%s:%s: %s"):format(tostring(e.file or "?"), tostring(e.line or "?"), tostring(e.message or "?"))
end

local commands = {}

function commands.status(cfg, rest)
  if #rest > 0 then return nil, "takes no arguments", "usage" end
  local ready, rerr = admin_call(cfg, "GET", "/readyz")
  if not ready and rerr:match("does not answer") then return nil, rerr end
  say(io.stdout, ("daemon %s: %s"):format(cfg.listen, ready and "ready" or rerr))
  local pol, err = admin_call(cfg, "GET", "/v1/policies")
  if not pol then return nil, err end
  local failing = {}
  for _, e in ipairs(pol.errors or {}) do failing[#failing + 1] = error_line(e) end
  say(io.stdout, ("policies: %d loaded, %d failing to load"):format(#(pol.policies or {}), #failing))
  for _, line in ipairs(failing) do say(io.stdout, "  ", line) end
  local dl
  dl, err = admin_call(cfg, "GET", "/v1/dead-letters?limit=100")
  if not dl then return nil, err end
  local n = #(dl.dead_letters or {})
  say(io.stdout, ("dead letters: %s%d"):format(dl.next_cursor ~= json.null and dl.next_cursor and "more than " or "", n))
  return ready and 0 or 1
end

function commands.reload(cfg, rest)
  if #rest > 0 then return nil, "takes no arguments", "usage" end
  local doc, err = admin_call(cfg, "POST", "/v1/policies/reload")
  if not doc then return nil, err end
  say(io.stdout, ("reloaded: %d policies; changed: %s; removed: %s; failed: %s; config: %s"):format(doc.loaded,
    list_or_dash(doc.changed), list_or_dash(doc.removed), list_or_dash(doc.failed), list_or_dash(doc.config)))
  if doc.restart_required and #doc.restart_required > 0 then
    say(io.stdout, "restart required: ", table.concat(doc.restart_required, ", "))
  end
  return #doc.failed > 0 and 1 or 0
end

local policy = {}

function policy.list(cfg, rest)
  if #rest > 0 then return nil, "list takes no arguments", "usage" end
  local doc, err = admin_call(cfg, "GET", "/v1/policies")
  if not doc then return nil, err end
  local rows = {}
  for _, p in ipairs(doc.policies or {}) do
    rows[#rows + 1] = { p.name, tostring(p.version):sub(1, 12), iso(p.loaded_at),
      (p.handles and "handle" or "") .. (p.handles and p.decides and "," or "") .. (p.decides and "decide" or ""),
      error_line(p.last_error) or "-" }
  end
  local width = { 4, 7, 9, 4 }
  for _, r in ipairs(rows) do
    for c = 1, 4 do width[c] = math.max(width[c], #r[c]) end
  end
  local fmt = ("%%-%ds  %%-%ds  %%-%ds  %%-%ds  %%s"):format(width[1], width[2], width[3], width[4])
  say(io.stdout, (fmt:format("name", "version", "loaded_at", "runs", "last_error"):gsub("%s+$", "")))
  for _, r in ipairs(rows) do say(io.stdout, (fmt:format(unpack(r)):gsub("%s+$", ""))) end
  for _, e in ipairs(doc.errors or {}) do say(io.stdout, "failed to load: ", error_line(e)) end
  return #(doc.errors or {}) > 0 and 1 or 0
end

function policy.show(cfg, rest)
  if #rest ~= 1 then return nil, "show takes one NAME", "usage" end
  local doc, err = admin_call(cfg, "GET", "/v1/policies/" .. rest[1])
  if not doc then return nil, err end
  say(io.stdout, "name:       ", doc.name)
  say(io.stdout, "version:    ", tostring(doc.version))
  say(io.stdout, "file:       ", tostring(doc.file))
  say(io.stdout, "on:         ", list_or_dash(doc.on))
  say(io.stdout, "runs:       ", (doc.handles and "handle " or "") .. (doc.decides and "decide" or ""))
  say(io.stdout, "loaded_at:  ", iso(doc.loaded_at))
  say(io.stdout, "last_error: ", error_line(doc.last_error) or "-")
  say(io.stdout, "versions:")
  for _, v in ipairs(doc.versions or {}) do
    say(io.stdout, "  ", tostring(v.version), "  ", iso(v.created), v.version == doc.version and "  (running)" or "")
  end
  return 0
end

function policy.rollback(cfg, rest)
  if #rest < 1 or #rest > 2 then return nil, "rollback takes NAME [VERSION]", "usage" end
  local doc, err = admin_call(cfg, "POST", "/v1/policies/" .. rest[1] .. "/rollback", rest[2] and { version = rest[2] } or nil)
  if not doc then return nil, err end
  say(io.stdout, ("%s is now at version %s"):format(doc.name, doc.version))
  return 0
end

function commands.policy(cfg, rest)
  local sub = table.remove(rest, 1)
  local fn = policy[sub or ""]
  if not fn then return nil, sub and ("unknown subcommand '" .. sub .. "'") or "a subcommand is needed (list, show, rollback)", "usage" end
  return fn(cfg, rest)
end

-- The input is posted as the client wrote it, so the daemon's JSON parser judges it.
function commands.decide(cfg, rest)
  if #rest ~= 2 then return nil, "takes NAME and JSON (or - to read stdin)", "usage" end
  local text = rest[2] == "-" and io.stdin:read("*a") or rest[2]
  local input, jerr = json.decode(text)
  if input == nil then return nil, "JSON: " .. tostring(jerr), "usage" end
  local doc, err = admin_call(cfg, "POST", "/v1/decide/" .. rest[1], input)
  if not doc then return nil, err end
  say(io.stdout, json.encode(doc.result))
  io.stderr:write(("# %s version %s, decision %s\n"):format(doc.policy.name, tostring(doc.policy.version):sub(1, 12),
    tostring(doc.decision_id)))
  return 0
end

-- Each command: (cfg, args) -> exit code, or nil, err [, "usage"] (a usage error exits 2).

-- main({command, args...}) -> exit code: 0, 1 when the daemon says no (or cannot be reached),
-- 2 for bad usage.
function M.main(args)
  local cmd = args[1]
  local rest, file = {}, nil
  local i = 2
  while args[i] do
    if args[i] == "-c" or args[i] == "--config" then
      file = args[i + 1]
      if not file then
        say(io.stderr, "steward: ", cmd, ": -c needs a FILE")
        return 2
      end
      i = i + 2
    else
      rest[#rest + 1] = args[i]
      i = i + 1
    end
  end
  local run = commands[cmd]
  if not run and cmd ~= "audit" then
    say(io.stderr, "steward: unknown command '", tostring(cmd), "'")
    return 2
  end
  local cfg, err = config.load({ file = file or "steward.lua", required = file ~= nil })
  if not cfg then say(io.stderr, "steward: config: ", err); return 2 end
  if cmd == "audit" then return M.audit(cfg, rest) end
  local rc, kind
  rc, err, kind = run(cfg, rest)
  if rc then return rc end
  if kind == "usage" then
    say(io.stderr, "steward: ", cmd, ": ", err, " (see steward ", cmd, " --help)")
    return 2
  end
  say(io.stderr, "steward: ", cmd, ": ", err)
  return 1
end

local AUDIT_USAGE = "usage: steward audit [-c FILE] [--limit N] [--since TIME|DURATION] [--uid UID] [--session ID] [--json]\n" ..
  "       steward audit verify|export|checkpoint|pubkey ... (docs/audit.md)"

-- steward audit: newest first. --since takes an RFC 3339 time or a duration back from now.
function M.audit(cfg, argv)
  local chain = require "steward.runtime.cli_audit" -- verify, export, checkpoint, pubkey
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
