-- Lua side of the steward command line: what `steward eval` runs, and `steward config show`.
local pretty = require "steward.pretty"

local M = {}

-- Compiles code as an expression first ("return <code>"), then as a statement, as the
-- lua interpreter and Tarantool's console do.
function M.compile(code, chunkname)
  chunkname = chunkname or "=eval"
  local fn = loadstring("return " .. code, chunkname)
  if fn then return fn end
  local err
  fn, err = loadstring(code, chunkname)
  if not fn then return nil, err end
  return fn
end

local function pack(...) return { n = select("#", ...), ... } end

-- Runs code, prints each result on its own line; raises on a compile or run-time error so
-- that the command exits non-zero.
function M.eval(code)
  local fn, err = M.compile(code)
  if not fn then error(err, 0) end
  local res = pack(fn())
  for i = 1, res.n do
    io.stdout:write(pretty.format(res[i], { color = false }), "\n")
  end
  io.stdout:flush()
end

local CONFIG_USAGE = "usage: steward config show [-c FILE] [--json]"

-- steward config show: the configuration a daemon started here would run with (steward.lua,
-- then config/<env>.lua, then STEWARD_* variables), every key with its value or default,
-- secrets replaced by *** (steward.runtime.config.redact). Exit 2 when it does not load.
function M.config(args)
  local file, as_json, i = nil, false, 2
  if args[1] ~= "show" then io.stderr:write(CONFIG_USAGE, "\n"); return 2 end
  while args[i] do
    local a = args[i]
    if (a == "-c" or a == "--config") and args[i + 1] then file = args[i + 1]; i = i + 2
    elseif a == "--json" then as_json = true; i = i + 1
    else io.stderr:write("steward: config show: unknown argument '", a, "'\n", CONFIG_USAGE, "\n"); return 2 end
  end
  local config = require "steward.runtime.config"
  local cfg, err = config.load({ file = file or "steward.lua", required = file ~= nil })
  if not cfg then io.stderr:write("steward: config: ", err, "\n"); return 2 end
  local shown = config.redact(cfg)
  if as_json then
    io.stdout:write(require("steward.json").encode(shown), "\n")
  else
    io.stdout:write("-- effective configuration (", file or "steward.lua", ", config/", cfg.env,
      ".lua, STEWARD_* variables); secrets shown as ***\n")
    io.stdout:write("return ", pretty.format(shown, { color = false, depth = 20, items = 100000 }), "\n")
  end
  io.stdout:flush()
  return 0
end

-- main({command, args...}) -> exit code, for the commands main.c sends here.
local COMMANDS = { config = M.config }
COMMANDS.load = function(args) return require("steward.runtime.cli_load").main(args) end
function M.main(args)
  local fn = COMMANDS[args[1]]
  if not fn then io.stderr:write("steward: unknown command '", tostring(args[1]), "'\n"); return 2 end
  return fn({ unpack(args, 2) })
end

return M
