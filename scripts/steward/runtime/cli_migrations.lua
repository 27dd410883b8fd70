-- steward migrations check | compatible | measure (docs/cli.md, docs/deploy/migrations.md):
--   check FILE...        squawk's rules on SQL migration files, for CI jobs as they run squawk;
--   compatible FILE...   whether the release before each migration still works after it;
--   measure --db URL FILE  the locks each statement takes, on a scratch copy of that database.
-- Exit 0 when all is well, 1 when a rule is violated / a migration is not backward compatible /
-- a statement fails, 2 when a file cannot be read or parsed (the file and position named).
local migrations = require "steward.deploy.migrations"
local json = require "steward.json"
local fs = require "steward.fs"

local M = {}

M.USAGE = [[usage: steward migrations check [--json] [--exclude RULES] [--pg-version VERSION]
                                [--assume-in-transaction] FILE...
       steward migrations compatible [--json] FILE...
       steward migrations measure --db URL [--json] [--template] FILE]]

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function bad(msg, cmd)
  say(io.stderr, "steward: migrations ", cmd or "check", ": ", msg, "\n", M.USAGE)
  return 2
end

-- The text of a file ("-" is stdin), or nil after saying why on stderr.
local function read(cmd, file)
  if file == "-" then return io.stdin:read("*a") end
  local text, err = fs.read(file)
  if not text then say(io.stderr, "steward: migrations ", cmd, ": ", file, ": ", tostring(err)) end
  return text
end

local function check(argv)
  local opts, files, as_json = {}, {}, false
  local i = 1
  while argv[i] do
    local a, v = argv[i], argv[i + 1]
    local flag, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if flag then a, v = flag, inline end
    local step = inline and 1 or 2
    if a == "--json" then as_json = true; i = i + 1
    elseif a == "--assume-in-transaction" then opts.assume_in_transaction = true; i = i + 1
    elseif a == "--exclude" or a == "-e" then
      if not v then return bad("--exclude needs a list of rule ids") end
      opts.exclude = opts.exclude or {}
      for id in v:gmatch("[^,%s]+") do
        if not migrations.resolve(id) then return bad(("--exclude: unknown rule '%s'"):format(id)) end
        opts.exclude[#opts.exclude + 1] = id
      end
      i = i + step
    elseif a == "--pg-version" then
      if not v or not v:match("^%d+$") and not v:match("^%d+%.%d+$") and not v:match("^%d+%.%d+%.%d+$") then
        return bad(("--pg-version: '%s' is not a version like 13 or 13.2"):format(tostring(v)))
      end
      opts.pg_version = v; i = i + step
    elseif a == "--" then
      for k = i + 1, #argv do files[#files + 1] = argv[k] end
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return bad(("unknown flag '%s'"):format(a))
    else
      files[#files + 1] = a; i = i + 1
    end
  end
  if #files == 0 then return bad("no FILE given") end

  local report, any, broken = {}, false, false
  for _, file in ipairs(files) do
    local text = read("check", file)
    if not text then
      broken = true
    else
      local found, perr, info = migrations.check(text, opts)
      if not found then
        say(io.stderr, ("steward: migrations check: %s:%d:%d: %s"):format(file, info.line or 1,
          info.column or 1, perr))
        broken = true
      else
        local list = json.array()
        for _, v in ipairs(found) do
          list[#list + 1] = { rule = v.rule, line = v.line, column = v.column, message = v.message }
        end
        if #found > 0 then any = true end
        report[#report + 1] = { file = file, violations = list }
        if not as_json then
          for _, v in ipairs(found) do
            say(io.stdout, ("%s:%d:%d: %s: %s"):format(file, v.line, v.column, v.rule, v.message))
          end
        end
      end
    end
  end
  if as_json then
    say(io.stdout, json.encode(json.array(report)))
  elseif not broken then
    local n = 0
    for _, r in ipairs(report) do n = n + #r.violations end
    say(io.stdout, ("%d file(s), %d violation(s)"):format(#report, n))
  end
  if broken then return 2 end
  return any and 1 or 0
end

-- compatible FILE...: each file's reasons, one a line; exit 1 when any file has one.
local function compatible(argv)
  local files, as_json = {}, false
  for _, a in ipairs(argv) do
    if a == "--json" then as_json = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then return bad(("unknown flag '%s'"):format(a), "compatible")
    else files[#files + 1] = a end
  end
  if #files == 0 then return bad("no FILE given", "compatible") end
  local report, breaking, broken = {}, false, false
  for _, file in ipairs(files) do
    local text = read("compatible", file)
    if not text then
      broken = true
    else
      local ok, reasons, info = migrations.compatible(text)
      if ok == nil then
        say(io.stderr, ("steward: migrations compatible: %s:%d:%d: %s"):format(file, info.line or 1,
          info.column or 1, reasons))
        broken = true
      else
        reasons = ok and json.array() or json.array(reasons)
        if not ok then breaking = true end
        report[#report + 1] = { file = file, compatible = ok, reasons = reasons }
        if not as_json then
          if ok then say(io.stdout, file, ": backward compatible") end
          for _, r in ipairs(reasons) do
            say(io.stdout, ("%s:%d: %s: %s"):format(file, r.line, r.kind, r.message))
          end
        end
      end
    end
  end
  if as_json then say(io.stdout, json.encode(json.array(report))) end
  if broken then return 2 end
  return breaking and 1 or 0
end

-- measure --db URL FILE: the report, as a table for people or as JSON.
local function measure(argv)
  local db, file, as_json, opts = nil, nil, false, {}
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a == "--db" and argv[i + 1] then db = argv[i + 1]; i = i + 2
    elseif a == "--json" then as_json = true; i = i + 1
    elseif a == "--template" then opts.copy = "template"; i = i + 1
    elseif a:sub(1, 1) == "-" and a ~= "-" then return bad(("unknown flag '%s'"):format(a), "measure")
    elseif file then return bad("one FILE at a time", "measure")
    else file = a; i = i + 1 end
  end
  if not db then return bad("--db URL is needed (the database whose schema is copied)", "measure") end
  if not file then return bad("no FILE given", "measure") end
  local text = read("measure", file)
  if not text then return 2 end
  local r, err = migrations.measure(db, text, opts)
  if not r then
    say(io.stderr, "steward: migrations measure: ", file, ": ", tostring(err))
    return 2
  end
  if as_json then
    say(io.stdout, json.encode(r))
  else
    say(io.stdout, ("%s: on a copy of %s (by %s)%s"):format(file, r.database, r.copied_by,
      r.copy_note and (": " .. r.copy_note) or ""))
    for _, s in ipairs(r.statements) do
      local text = s.sql:gsub("%s+", " ")
      if #text > 60 then text = text:sub(1, 57) .. "..." end
      local head = ("%s:%d: %s"):format(file, s.line, text)
      if s.skipped then
        say(io.stdout, head, "  (skipped: ", s.skipped, ")")
      elseif s.error then
        say(io.stdout, head, "  FAILED: ", s.error)
      elseif #s.locks == 0 then
        say(io.stdout, head, "  no relation locks")
      else
        for _, l in ipairs(s.locks) do
          say(io.stdout, ("%s  %s on %s, held %.1f ms%s"):format(head, l.mode, l.relation, l.held_ms or 0,
            s.transaction and "" or " (sampled while it ran)"))
        end
      end
    end
  end
  return r.error and 1 or 0
end

local SUBCOMMANDS = { check = check, compatible = compatible, measure = measure }

function M.main(args)
  local sub = SUBCOMMANDS[args[1]]
  if sub then return sub({ unpack(args, 2) }) end
  say(io.stderr, "steward: migrations: unknown subcommand '", tostring(args[1]), "'\n", M.USAGE)
  return 2
end

return M
