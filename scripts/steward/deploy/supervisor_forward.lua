-- The supervisor runs in one process: the leader (worker processes, or instances on
-- PostgreSQL). A verb called in another process is forwarded to it through the store: the
-- caller puts a request into the kv namespace below, the leader's loop claims it (a delete at
-- the request's version, so one claimer wins), runs it and puts the answer, which the caller
-- polls for until its deadline. Requests and answers expire by themselves (ttl): a caller that
-- gave up, or a leader that died with a request claimed, leaves nothing behind for long. The
-- namespace is out of policies' reach (steward.runtime.policy.guards reserves "steward:*"): a
-- request there acts without the caller's capability check, which the caller made.
local kv = require "steward.kv"
local task = require "steward.task"
local time = require "steward.time"
local log = require "steward.log"
local crypto = require "steward.crypto"

local type, pcall, tostring, format = type, pcall, tostring, string.format

local M = {}

M.NS = "steward:deploy.supervisor"
M.POLL = 0.05      -- caller: between looks for the answer
M.SERVE_POLL = 0.1 -- leader: between looks for requests
M.ANSWER_TTL = 300

-- call(verb, a1, a2, a3, a4 [, deadline seconds]) -> what the verb answered on the leader, or
-- nil, err when no leader answered in time.
function M.call(verb, a1, a2, a3, a4, deadline)
  deadline = deadline or 120
  local ns = kv.ns(M.NS)
  local id = crypto.uuidv7()
  local ok, err = ns:put("req:" .. id, { verb = verb, a1 = a1, a2 = a2, a3 = a3, a4 = a4 }, { ttl = deadline })
  if not ok then return nil, "supervisor: cannot forward " .. verb .. " to the leader: " .. tostring(err) end
  local stop = time.monotonic() + deadline
  while time.monotonic() < stop do
    local ans = ns:get("res:" .. id)
    if type(ans) == "table" then
      ns:delete("res:" .. id)
      if ans.raised then error(ans.err, 0) end
      if ans.ok then return ans.value end
      return nil, ans.err
    end
    time.sleep(M.POLL)
  end
  ns:delete("req:" .. id)
  return nil, format("supervisor.%s: the leader, which runs the supervisor, did not answer within %gs", verb, deadline)
end

-- serve(run) -> a handle with :stop(): on the leader, claims requests and answers them with
-- run(verb, a1, a2, a3, a4) -> value | nil, err (each in a task of its own).
function M.serve(run)
  local h = { running = true }
  h.task = task.spawn({ name = "supervisor.forward" }, function()
    local ns = kv.ns(M.NS)
    while h.running do
      local items = ns:list({ prefix = "req:", limit = 100 })
      for _, it in ipairs(items or {}) do
        if ns:delete(it.key, { version = it.version }) then
          local id, req = it.key:sub(5), it.value
          task.spawn({ name = "supervisor.forwarded " .. tostring(req.verb) }, function()
            local okc, value, verr = pcall(run, req.verb, req.a1, req.a2, req.a3, req.a4)
            local ans = okc and { ok = value ~= nil, value = value, err = verr }
              or { raised = true, err = tostring(value) }
            local put, perr = ns:put("res:" .. id, ans, { ttl = M.ANSWER_TTL })
            if not put then log.warn("supervisor: cannot answer a forwarded call", { verb = req.verb, error = perr }) end
          end)
        end
      end
      time.sleep(M.SERVE_POLL)
    end
  end)
  function h:stop()
    self.running = false
    if self.task then self.task:cancel("released") end
  end
  return h
end

return M
