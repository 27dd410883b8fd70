-- steward.runtime.repl.session: one attached REPL client. A session is a task inside the daemon that
-- reads frames (docs/repl.md); each chunk it is sent runs as its own task, in the session's
-- own environment, under the CPU and memory budgets policies get (steward.runtime.guard), so it may
-- call yielding APIs (HTTP, store, time.sleep) without holding up anything else, and an
-- interrupt frame cancels it. Every command is written to the audit log before its result is
-- sent back.
local task = require "steward.task"
local guard = require "steward.runtime.guard"
local json = require "steward.json"
local log = require "steward.log"
local time = require "steward.time"
local pretty = require "steward.pretty"
local audit = require "steward.runtime.store.audit"
local helpers = require "steward.runtime.repl.helpers"
local build = require "steward.build"

local concat, select, tostring, type, pairs = table.concat, select, tostring, type, pairs

local M = {}

local Session = {}
Session.__index = Session

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- What a read-only session sees of the standard library: computation, no I/O, no require.
local READONLY_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
  "tostring", "type", "unpack", "xpcall", "string", "table", "math" }

local function pack(...) return { n = select("#", ...), ... } end

-- compile(code) -> fn | nil, err, incomplete. "return <code>" first, then as a statement, as
-- the lua interpreter does; a chunk whose error is at '<eof>' is incomplete, not wrong.
function M.compile(code)
  local fn = loadstring("return " .. code, "=repl")
  if fn then return fn end
  local err
  fn, err = loadstring(code, "=repl")
  if fn then return fn end
  -- (an unfinished short string cannot continue on the next line: that is an error now)
  return nil, err, err:sub(-7) == "'<eof>'" and not err:find("unfinished string", 1, true)
end

local function base_env(role)
  if role == "admin" then return _G end
  local g = {}
  for _, k in ipairs(READONLY_GLOBALS) do g[k] = _G[k] end
  g.os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }
  return g
end

-- new(ctx, conn, who{uid, pid, role, id}) -> session
function M.new(ctx, conn, who)
  local self = setmetatable({ ctx = ctx, conn = conn, uid = who.uid, pid = who.pid, role = who.role,
    id = who.id, opts = { color = false, width = 100 }, subs = {}, started = time.now() }, Session)
  local limits = ctx.cfg.limits
  -- heap_ceiling = false: a daemon whose heap is at limits.policy_memory_total stays inspectable.
  self.budget = { name = "repl", cpu = limits.repl_cpu, memory = limits.repl_memory, heap_ceiling = false }
  local h = helpers.new(ctx, self)
  h.print = function(...) self:print(...) end
  setmetatable(h, { __index = base_env(who.role) })
  -- Globals a user sets live in the session's own table, so sessions do not see each other's.
  self.env = setmetatable({}, { __index = h })
  self.helpers = h
  return self
end

-- out(text): streamed output of the running command.
function Session:out(text)
  if self.closed then return end
  self.conn:write("O", text)
end

function Session:print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  self:out(concat(parts, "\t") .. "\n")
end

-- render(value) for people, with the client's colour and width.
function Session:render(v)
  return pretty.format(v, { color = self.opts.color, width = self.opts.width })
end

-- A subscription (steward.runtime.taps) the running command holds; closed when the command ends.
function Session:track(sub)
  self.subs[#self.subs + 1] = sub
  return sub
end

-- Raises unless the session may change things.
function Session:require_admin(what)
  if self.role ~= "admin" then
    error(what .. ": this session is read-only (uid " .. tostring(self.uid) .. ")", 3)
  end
end

local function greeting(self)
  local cfg = self.ctx.cfg
  local up = time.now() - (self.ctx.started or time.now())
  return string.format("steward %s, pid %d, up %s, store %s\nrole=%s\nsession=%s\nversion=%s\n",
    build.version, self.ctx.pid or 0, helpers.human_duration(up), (cfg.store:match("^(%w+):")),
    self.role, self.id, build.version)
end

local function parse_hello(self, payload)
  for k, v in payload:gmatch("([%w_]+)=([^\n]*)") do
    if k == "color" then self.opts.color = v == "1"
    elseif k == "width" then
      local w = tonumber(v)
      if w and w >= 20 and w <= 1000 then self.opts.width = w end
    elseif k == "client" then self.client = v:sub(1, 64)
    end
  end
end

-- The names a word can complete to: globals of the session (its own, the helpers, the base)
-- and keywords at the top level; a table's keys (functions only after ':') after a dot.
local function keys_of(t, out, want_fn, seen)
  seen = seen or {}
  while type(t) == "table" and not seen[t] do
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and (not want_fn or type(v) == "function") then
        out[k] = true
      end
    end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
  end
  return out
end

local function lookup(t, k)
  local seen = {}
  while type(t) == "table" and not seen[t] do
    seen[t] = true
    local v = rawget(t, k)
    if v ~= nil then return v end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
  end
  return nil
end

function M.complete(env, word)
  local out, names = {}, {}
  local path, sep, last = word:match("^(.*)([%.:])([%w_]*)$")
  if not path then
    if not word:match("^[%a_]?[%w_]*$") then return out end
    keys_of(env, names)
    for _, k in ipairs(KEYWORDS) do names[k] = true end
    path, sep, last = "", "", word
  else
    if not path:match("^[%a_][%w_]*([%.][%a_][%w_]*)*$") and not path:match("^[%a_][%w_%.]*$") then return out end
    local v = env
    for part in path:gmatch("[^%.]+") do
      v = lookup(v, part)
      if type(v) ~= "table" then return out end
    end
    keys_of(v, names, sep == ":")
  end
  for k in pairs(names) do
    if k:sub(1, #last) == last then out[#out + 1] = path .. sep .. k end
  end
  table.sort(out)
  for i = 501, #out do out[i] = nil end
  return out
end

local function close_subs(self)
  for i = #self.subs, 1, -1 do
    self.subs[i]:close()
    self.subs[i] = nil
  end
end

local function record(self, code, outcome, detail)
  local ctx = self.ctx
  if not ctx.store_ok() then return end
  local ok, err = audit.append(ctx.store, { source = "repl", session = self.id, uid = self.uid, role = self.role,
    command = code, outcome = outcome, detail = detail })
  if not ok then log.warn("audit: cannot record a REPL command", { session = self.id, error = err }) end
end

local function encode_results(res)
  local arr = json.array()
  for i = 2, res.n do arr[#arr + 1] = res[i] == nil and json.null or res[i] end
  local ok, text = pcall(json.encode, arr)
  if ok and text then return text end
  for i = 1, #arr do
    local t = type(arr[i])
    if t == "function" or t == "userdata" or t == "thread" or (t == "table" and not pcall(json.encode, arr[i])) then
      arr[i] = tostring(arr[i])
    end
  end
  return json.encode(arr)
end

-- Runs one chunk: compile, run in its own task under the budget, audit, answer.
function Session:eval(code, as_json)
  local fn, err, incomplete = M.compile(code)
  if incomplete then return self.conn:write("M", err) end
  if not fn then
    record(self, code, "error", err)
    return self.conn:write("X", err)
  end
  setfenv(fn, self.env)
  jit.off(fn, true) -- the guard's hook does not fire in compiled traces
  local t0 = time.monotonic()
  local h = task.spawn({ name = "repl.eval" }, function() return pack(guard.run(self.budget, fn)) end)
  self.running = h
  task.spawn({ name = "repl.eval.wait" }, function()
    local joined, res = h:join()
    self.running = nil
    close_subs(self)
    local outcome, frame, text
    if not joined then
      outcome, frame, text = (res == "interrupted") and "interrupted" or "error", "X", tostring(res)
    elseif res[1] == false then
      outcome, frame, text = res[3] == "cpu" and "timeout" or "error", "X", tostring(res[2])
    else
      outcome, frame = "ok", "R"
      if as_json then
        text = encode_results(res)
      else
        local parts = {}
        for i = 2, res.n do parts[#parts + 1] = self:render(res[i]) end
        text = concat(parts, "\n")
      end
    end
    record(self, code, outcome, frame == "X" and text or nil)
    log.debug("repl command", { session = self.id, uid = self.uid, outcome = outcome, seconds = time.monotonic() - t0 })
    if not self.closed then self.conn:write(frame, text) end
  end)
end

-- run(): the session's life, until the client leaves, sends a malformed frame, or the daemon
-- stops.
function Session:run()
  local conn = self.conn
  log.info("repl session attached", { session = self.id, uid = self.uid, pid = self.pid, role = self.role })
  record(self, "attach", "ok")
  conn:write("G", greeting(self))
  local reason = "detached"
  while true do
    local t, payload = conn:read()
    if not t then
      if payload ~= "closed" then
        reason = tostring(payload)
        log.warn("repl session: bad input; session closed", { session = self.id, error = reason })
        conn:write("B", reason)
      end
      break
    end
    if t == "E" or t == "J" then
      if self.running then
        conn:write("X", "busy: a command is still running (Ctrl-C interrupts it)")
      else
        self:eval(payload, t == "J")
      end
    elseif t == "C" then
      conn:write("L", concat(M.complete(self.env, payload:sub(1, 256)), "\n"))
    elseif t == "I" then
      if self.running then self.running:cancel("interrupted") end
    elseif t == "H" then
      parse_hello(self, payload)
    else
      reason = "unexpected frame type '" .. t .. "' from a client"
      log.warn("repl session: bad input; session closed", { session = self.id, error = reason })
      conn:write("B", reason)
      break
    end
  end
  self:close(nil)
  record(self, "detach", "ok", reason)
  log.info("repl session detached", { session = self.id, uid = self.uid, reason = reason })
end

-- close(reason): ends the session; a reason is sent to the client first.
function Session:close(reason)
  if self.closed then return end
  if reason then self.conn:write("B", reason) end
  self.closed = true
  if self.running then self.running:cancel("session closed") end
  close_subs(self)
  self.conn:close()
end

return M
