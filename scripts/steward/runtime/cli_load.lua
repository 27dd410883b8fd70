-- steward load (docs/scaling/load.md): replays a traffic shape, a rate series or recorded
-- requests against a target on this machine, open-loop and bounded (--max-rate, a duration,
-- loopback only unless --allow-remote), and reports what it measured. This file reads the
-- command line and the files; steward.load.* does the rest.
local fs = require "steward.fs"
local json = require "steward.json"
local time = require "steward.time"
local shape_mod = require "steward.load.shape"
local schedule = require "steward.load.schedule"
local records = require "steward.load.records"
local report = require "steward.load.report"
local runner = require "steward.load.runner"
local target_mod = require "steward.load.target"

local tonumber, tostring, type, pairs, pcall, format, floor =
  tonumber, tostring, type, pairs, pcall, string.format, math.floor

local M = {}

M.USAGE = [[usage: steward load --target URL (--rate N --duration D | --shape SPEC|FILE | --replay FILE)
         [--method M] [--header 'Name: value']... [--body FILE] [--speed X] [--duration D]
         [--max-rate N] [--max-duration D] [--connections C] [--timeout T] [--allow-remote] [--json]
shapes: ]] .. shape_mod.GRAMMAR:gsub("\n", "\n        ")

local DEFAULTS = { max_rate = 2000, max_duration = 3600, connections = 64, timeout = 10 }

local function fail(msg)
  io.stderr:write("steward load: ", msg, "\n")
  io.stderr:flush()
  return 2
end

local function positive(v, flag, integer)
  local n = tonumber(v)
  if not n or n ~= n or n <= 0 or n == math.huge or (integer and n ~= floor(n)) then
    return nil, format("%s: %s expected, got '%s'", flag, integer and "an integer >= 1" or "a number > 0",
      tostring(v))
  end
  return n
end

local function dur(v, flag)
  local d, err = time.parse_duration(v)
  if not d then return nil, flag .. ": " .. tostring(err) end
  if d <= 0 then return nil, flag .. ": must be longer than 0" end
  return d
end

-- Parses argv into options | nil, err.
function M.options(argv)
  local o = { headers = {}, max_rate = DEFAULTS.max_rate, max_duration = DEFAULTS.max_duration,
    connections = DEFAULTS.connections, timeout = DEFAULTS.timeout, speed = 1 }
  local i, err = 1, nil
  local function value(flag)
    local v = argv[i + 1]
    if v == nil then return nil, flag .. ": a value is needed" end
    i = i + 2
    return v
  end
  while argv[i] do
    local a = argv[i]
    local v
    if a == "--json" then o.json = true; i = i + 1
    elseif a == "--allow-remote" then o.allow_remote = true; i = i + 1
    elseif a == "--target" then o.target, err = value(a)
    elseif a == "--method" then
      v, err = value(a)
      if v then
        if not v:match("^[%w!#$%%&'*+%-.^_`|~]+$") then return nil, format("--method: bad method '%s'", v) end
        o.method = v:upper()
      end
    elseif a == "--header" or a == "-H" then
      v, err = value(a)
      if v then
        local name, val = v:match("^%s*([^:%s]+)%s*:%s*(.-)%s*$")
        if not name then return nil, format("%s: 'Name: value' expected, got '%s'", a, v) end
        if not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
          return nil, format("%s: '%s' is not a header name", a, name)
        end
        if val:find("[%c]") then return nil, format("%s: the value of '%s' has control characters", a, name) end
        o.headers[name] = val
      end
    elseif a == "--body" then o.body_file, err = value(a)
    elseif a == "--rate" then v, err = value(a); if v then o.rate, err = positive(v, a) end
    elseif a == "--duration" then v, err = value(a); if v then o.duration, err = dur(v, a) end
    elseif a == "--shape" then o.shape, err = value(a)
    elseif a == "--replay" then o.replay, err = value(a)
    elseif a == "--speed" then v, err = value(a); if v then o.speed, err = positive(v, a) end
    elseif a == "--max-rate" then v, err = value(a); if v then o.max_rate, err = positive(v, a, true) end
    elseif a == "--max-duration" then v, err = value(a); if v then o.max_duration, err = dur(v, a) end
    elseif a == "--connections" then
      v, err = value(a)
      if v then
        o.connections, err = positive(v, a, true)
        if o.connections and o.connections > 10000 then err = "--connections: at most 10000" end
      end
    elseif a == "--timeout" then v, err = value(a); if v then o.timeout, err = dur(v, a) end
    else return nil, format("unknown argument '%s'", tostring(a)) end
    if err then return nil, err end
  end
  if not o.target then return nil, "--target URL is required" end
  local modes = (o.rate and 1 or 0) + (o.shape and 1 or 0) + (o.replay and 1 or 0)
  if modes ~= 1 then return nil, "give one of --rate N --duration D, --shape SPEC or --replay FILE" end
  if o.rate and not o.duration then return nil, "--rate needs --duration (how long to send)" end
  if o.speed ~= 1 and o.rate then return nil, "--speed applies to --replay and rate-series files, not --rate" end
  return o
end

-- Recordings may be large (a day of access log); the whole file is parsed up front.
local MAX_FILE = 256 * 1024 * 1024

local function read(path, flag)
  local text, err = fs.read(path, { max = MAX_FILE })
  if not text then return nil, format("%s: %s", flag, tostring(err)) end
  return text
end

-- A --shape value: the grammar, or a file holding a JSON list of phases or a rate series.
local function load_shape(o)
  local speed_err = "--speed applies to --replay and rate-series files, not to a shape (change its durations)"
  if not fs.exists(o.shape) then
    if o.speed ~= 1 then return nil, speed_err end
    return shape_mod.parse_text(o.shape)
  end
  local text, err = read(o.shape, "--shape")
  if not text then return nil, err end
  if text:match("^%s*%[%s*{") then
    local ok, list = pcall(json.decode, text)
    if ok and type(list) == "table" and type(list[1]) == "table" and list[1].kind ~= nil then
      if o.speed ~= 1 then return nil, speed_err end
      return shape_mod.parse_list(list)
    end
  end
  local pts
  pts, err = records.rates(text, o.shape)
  if not pts then return nil, err end
  o.rate_series = true
  return shape_mod.parse_rates(pts, o.speed, o.shape)
end

-- plan(o) -> schedule, report info | nil, err
function M.plan(o)
  local sched, info
  if o.replay then
    local text, err = read(o.replay, "--replay")
    if not text then return nil, err end
    local recs
    recs, err = records.requests(text, { speed = o.speed, name = o.replay })
    if not recs then return nil, err end
    sched = schedule.replay(recs, { max_rate = o.max_rate, limit = o.duration })
    info = { mode = "replay", shape = o.replay .. (o.speed ~= 1 and (" at speed " .. o.speed) or ""),
      phases = { { text = "replay " .. o.replay, start = 0, duration = sched.duration } } }
  else
    local sh, err
    if o.rate then
      sh, err = shape_mod.parse_list({ { kind = "hold", rate = o.rate, duration = o.duration } })
      if sh then sh.phases[1].text = format("hold:%g/%gs", o.rate, o.duration) end
    else
      sh, err = load_shape(o)
    end
    if not sh then return nil, err end
    sched = schedule.new(sh, { max_rate = o.max_rate, limit = o.duration })
    info = { mode = o.rate and "rate" or (o.rate_series and "rates" or "shape"),
      shape = o.rate and sh.phases[1].text or o.shape, phases = sh.phases }
  end
  local length = sched.duration
  if o.duration and o.duration < length then length = o.duration end
  if length > o.max_duration then
    return nil, format("the run would last %gs, more than --max-duration %gs (shorten it with --duration, " ..
      "or raise --max-duration)", length, o.max_duration)
  end
  info.duration = length
  info.max_rate = o.max_rate
  info.connections = o.connections
  return sched, info
end

function M.main(argv)
  if argv[1] == "--help" or argv[1] == "-h" then io.stdout:write(M.USAGE, "\n"); return 0 end
  local o, err = M.options(argv)
  if not o then return fail(err .. "\n" .. M.USAGE) end
  local target
  target, err = target_mod.check(o.target, o.allow_remote)
  if not target then return fail(err) end
  local sched, info = M.plan(o)
  if not sched then return fail(info) end
  local body
  if o.body_file then
    body, err = read(o.body_file, "--body")
    if not body then return fail(err) end
  end
  local headers = {}
  for k, v in pairs(o.headers) do headers[k] = v end
  if target.host_header then
    local has_host = false
    for k in pairs(headers) do if k:lower() == "host" then has_host = true end end
    if not has_host then headers.Host = target.host_header end
  end
  info.target = o.target
  local rep = report.new(info)
  local result, interrupted = runner.run{ schedule = sched, report = rep, target = target,
    url = target.connect .. target.path, method = o.method or (body and "POST" or "GET"), headers = headers,
    body = body, timeout = o.timeout, connections = o.connections, length = info.duration }
  if o.json then
    io.stdout:write(json.encode(result), "\n")
  else
    io.stdout:write(report.text(result))
  end
  io.stdout:flush()
  return interrupted and 130 or 0
end

return M
