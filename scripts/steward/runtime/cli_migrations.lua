-- steward migrations check FILE... (docs/cli.md, docs/deploy/migrations.md): squawk's rules on
-- SQL migration files, for CI jobs as they run squawk. Exit 0 when no file violates a rule,
-- 1 when one does, 2 when a file cannot be read or parsed (the file and position named).
local migrations = require "steward.deploy.migrations"
local json = require "steward.json"
local fs = require "steward.fs"

local M = {}

M.USAGE = [[usage: steward migrations check [--json] [--exclude RULES] [--pg-version VERSION]
                                [--assume-in-transaction] FILE...]]

local function say(fd, ...) fd:write(...); fd:write("\n"); fd:flush() end

local function bad(msg)
  say(io.stderr, "steward: migrations check: ", msg, "\n", M.USAGE)
  return 2
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
    local text, err
    if file == "-" then text = io.stdin:read("*a") else text, err = fs.read(file) end
    if not text then
      say(io.stderr, "steward: migrations check: ", file, ": ", tostring(err))
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

function M.main(args)
  if args[1] == "check" then return check({ unpack(args, 2) }) end
  say(io.stderr, "steward: migrations: unknown subcommand '", tostring(args[1]), "'\n", M.USAGE)
  return 2
end

return M
