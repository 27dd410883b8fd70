-- steward.runtime.testing.check: `steward check [-c FILE] [--policies DIR]`. Loads the config the
-- daemon would load and compiles and validates every policy, as start-up does, without
-- opening the store or a port; prints every problem on its own line and returns 1 if any.
local config = require "steward.runtime.config"
local policies = require "steward.runtime.policies"
local capabilities = require "steward.runtime.policy.capabilities"

local ipairs, pairs, tostring = ipairs, pairs, tostring
local format = string.format

local M = {}

local USAGE = "usage: steward check [-c FILE] [--policies DIR]\n"

local function usage(msg)
  io.stderr:write("steward check: ", msg, "\n", USAGE)
  return 2
end

-- The policy loader's messages are "file:line: reason" (Lua errors) or "file: field: reason"
-- (validation); both are printed as they are, with the file named once.
local function problem_line(file, err)
  err = tostring(err):match("^[^\n]*")
  if err:sub(1, #file) == file then return err end
  return format("%s: %s", file, err)
end

function M.main(args)
  args = args or {}
  local file, dir
  local i = 1
  while i <= #args do
    local a = args[i]
    if (a == "-c" or a == "--config") and args[i + 1] then
      file = args[i + 1]
      i = i + 2
    elseif a == "--policies" and args[i + 1] then
      dir = args[i + 1]
      i = i + 2
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      return 0
    else
      return usage("unknown argument '" .. tostring(a) .. "'")
    end
  end

  local problems = {}
  local cfg, err = config.load({ file = file, required = file ~= nil })
  if not cfg then
    problems[#problems + 1] = tostring(err)
  end
  dir = dir or (cfg and cfg.policies) or "policies"
  -- A relative policies directory is relative to the config file's directory only when the
  -- daemon is started there; check reads it as the daemon does, from the working directory.
  local loaded, errors = policies.load_dir(dir, { grants = cfg and cfg.grants or {} })
  local count = 0
  if not loaded then
    problems[#problems + 1] = format("%s: cannot read the policy directory: %s", dir, tostring(errors))
  else
    for _ in pairs(loaded) do count = count + 1 end
    for _, e in ipairs(errors) do problems[#problems + 1] = problem_line(e.file, e.error) end
  end

  for _, p in ipairs(problems) do io.stdout:write(p, "\n") end
  if #problems > 0 then
    io.stdout:write(format("%d problem%s found\n", #problems, #problems == 1 and "" or "s"))
    io.stdout:flush()
    return 1
  end
  -- What each policy declared and was granted (the grants come from the config).
  local names = {}
  for name in pairs(loaded) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local p = loaded[name]
    io.stdout:write(format("%s: capabilities declared: %s; granted: %s\n", name, capabilities.summary(p.declared),
      capabilities.summary(p.granted)))
  end
  local shown = file or "steward.lua"
  if not file and not require("steward.fs").exists(shown) then shown = "defaults (no steward.lua)" end
  io.stdout:write(format("ok: config %s, %d polic%s in %s\n", shown,
    count, count == 1 and "y" or "ies", dir))
  io.stdout:flush()
  return 0
end

return M
