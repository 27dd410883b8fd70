-- steward archive list | verify [FILE] | cat FILE (docs/archive.md): the archive files under
-- <var_dir>/archive, read straight from the directory, so they work with or without a daemon.
local json = require "steward.json"
local manifest = require "steward.archive.manifest"
local reader = require "steward.archive.read"
local util = require "steward.runtime.store.util"

local tostring, ipairs, format = tostring, ipairs, string.format

local M = {}

M.USAGE = [=[usage: steward archive list [-c FILE] [--dir DIR] [--json]
       steward archive verify [FILE] [-c FILE] [--dir DIR] [--json]
       steward archive cat FILE [-c FILE] [--dir DIR]]=]

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function when(t) return t and util.format_rfc3339(math.floor(t)) or "-" end

local function list(dir, _, as_json)
  local ms, leftovers = manifest.list(dir)
  if not ms then say(io.stderr, "steward: archive list: ", tostring(leftovers)); return 1 end
  if as_json then
    say(io.stdout, json.encode({ dir = dir, segments = json.array(ms), leftovers = json.array(leftovers) }))
    return 0
  end
  if #ms == 0 then say(io.stdout, "no archive segments in ", dir) end
  for _, m in ipairs(ms) do
    say(io.stdout, format("%s  %s %d..%d  %d records  %s to %s  %d bytes (%d raw)  sha256 %s", m.file, m.kind == "events" and "seq" or "id",
      m.first, m.last, m.count, when(m.from_time), when(m.to_time), m.bytes, m.raw, m.sha256:sub(1, 16)))
  end
  for _, name in ipairs(leftovers) do say(io.stdout, name, "  (leftover of an unfinished run: the next run removes it)") end
  return 0
end

local function verify(dir, file, as_json)
  local rep, err = reader.verify(dir, file)
  if not rep then say(io.stderr, "steward: archive verify: ", tostring(err)); return 1 end
  if file and #rep.files == 0 then say(io.stderr, "steward: archive verify: no segment named ", file, " in ", dir); return 1 end
  if as_json then
    say(io.stdout, json.encode({ ok = rep.ok, files = json.array(rep.files) }))
  else
    for _, f in ipairs(rep.files) do
      say(io.stdout, f.ok and ("ok      " .. f.file .. "  " .. f.count .. " records") or ("FAILED  " .. f.error))
    end
    say(io.stdout, rep.ok and format("ok: %d segment%s verified", #rep.files, #rep.files == 1 and "" or "s")
      or "FAILED: the archive does not match its manifests")
  end
  return rep.ok and 0 or 1
end

local function cat(dir, file)
  if not file then say(io.stderr, "steward: archive cat: FILE expected\n", M.USAGE); return 2 end
  local ok, err = pcall(function()
    for rec in reader.cat(dir, file) do io.stdout:write(json.encode(rec), "\n") end
  end)
  io.stdout:flush()
  if not ok then say(io.stderr, "steward: archive cat: ", tostring(err)); return 1 end
  return 0
end

local RUN = { list = list, verify = verify, cat = cat }

-- main({sub, args...}) -> exit code: 0 ok, 1 a bad archive or a failure, 2 usage
function M.main(args)
  local sub = args[1]
  local run = RUN[sub]
  if not run then say(io.stderr, "steward: archive: list, verify or cat expected\n", M.USAGE); return 2 end
  local file, dir, as_json, cfg_file = nil, nil, false, nil
  local i = 2
  while args[i] do
    local a, v = args[i], args[i + 1]
    if (a == "-c" or a == "--config") and v then cfg_file = v; i = i + 2
    elseif a == "--dir" and v then dir = v; i = i + 2
    elseif a == "--json" and sub ~= "cat" then as_json = true; i = i + 1
    elseif a:sub(1, 1) ~= "-" and not file and sub ~= "list" then file = a; i = i + 1
    else say(io.stderr, "steward: archive ", sub, ": bad argument '", a, "'\n", M.USAGE); return 2 end
  end
  if not dir then
    local cfg, err = require("steward.runtime.config").load({ file = cfg_file or "steward.lua", required = cfg_file ~= nil })
    if not cfg then say(io.stderr, "steward: config: ", err); return 2 end
    dir = cfg.var_dir .. "/archive"
  end
  return run(dir, file, as_json)
end

return M
