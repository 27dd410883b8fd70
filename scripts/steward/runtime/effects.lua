-- Side effects of a policy run, recorded as they happen: the HTTP requests, mails, events
-- and durable timers a handler or decide() caused, so the decision log (and explain() in the
-- REPL) can say what a decision *did*, not only what it returned. The sandbox wraps those
-- functions for policies (steward.runtime.policy.sandbox); a run opts in with begin()/finish() on
-- its task. Entries are summaries (no bodies), and a run keeps at most MAX of them.
local M = {}

local MAX = 100
-- Keyed by the running coroutine, weakly: a run that never reaches finish() (its task was
-- cancelled) leaves nothing that outlives the coroutine, and a recycled coroutine starts over
-- at its next begin().
local runs = setmetatable({}, { __mode = "k" })

local function current()
  local co = coroutine.running()
  return co and runs[co]
end

-- begin() -> the list that records the running task's side effects from now on.
function M.begin()
  local co = coroutine.running()
  if not co then return nil end
  local list = {}
  runs[co] = list
  return list
end

-- finish() -> the list recorded for the running task (and stop recording).
function M.finish()
  local co = coroutine.running()
  if not co then return nil end
  local list = runs[co]
  runs[co] = nil
  return list
end

-- record(kind, detail): appends to the running task's list, if it records.
function M.record(kind, detail)
  local list = current()
  if not list then return end
  if #list >= MAX then -- the last entry counts what was not kept (the list stays a JSON array)
    if #list == MAX then list[MAX + 1] = { kind = "truncated", count = 0 } end
    list[MAX + 1].count = list[MAX + 1].count + 1
    return
  end
  detail.kind = kind
  list[#list + 1] = detail
end

-- The recorded functions, by module: each entry makes a recording wrapper of the real one.
local WRAPS = {
  ["steward.http"] = {
    request = function(f)
      return function(o, ...)
        local res, err = f(o, ...)
        if type(o) == "table" then
          M.record("http", { method = o.method or "GET", url = o.url, status = res and res.status or nil,
            error = not res and tostring(err) or nil })
        end
        return res, err
      end
    end,
    send_mail = function(f)
      return function(o, ...)
        local ok, err = f(o, ...)
        if type(o) == "table" then
          M.record("mail", { to = o.to, subject = o.subject, ok = ok and true or false,
            error = not ok and tostring(err) or nil })
        end
        return ok, err
      end
    end,
  },
  ["steward.time"] = {
    after = function(f)
      return function(d, what, ...)
        local r, err = f(d, what, ...)
        if type(what) == "table" then -- a durable timer (a function is an in-process callback)
          local o = ...
          M.record("timer", { after = d, event = what.type, key = type(o) == "table" and o.key or nil,
            error = not r and tostring(err) or nil })
        end
        return r, err
      end
    end,
  },
  ["steward.events"] = {
    emit = function(f)
      return function(evs, ...)
        local res, err = f(evs, ...)
        if type(evs) == "table" then
          for _, ev in ipairs(evs[1] ~= nil and evs or { evs }) do
            M.record("event", { type = type(ev) == "table" and ev.type or nil, error = not res and tostring(err) or nil })
          end
        end
        return res, err
      end
    end,
  },
}

-- wrap(wraps, name, mod, o) -> o with wraps[name]'s wrappers (fname -> make(f)) around the
-- module's functions, around o's own override of a function when it has one. Shared by the
-- layers the sandbox stacks on a module's view (recording here, emission limits, ...).
function M.wrap(wraps, name, mod, o)
  local w = wraps[name]
  if not w then return o end
  o = o or {}
  for fname, make in pairs(w) do
    local f = o[fname] or mod[fname]
    if type(f) == "function" then o[fname] = make(f) end
  end
  return o
end

-- overrides(name, mod, o) -> o with recording wrappers around the module's recorded functions.
function M.overrides(name, mod, o) return M.wrap(WRAPS, name, mod, o) end

return M
