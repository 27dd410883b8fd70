-- Dry runs: simulate(p, event) (or decide(p, input)) loads a fresh copy of a policy whose
-- side-effecting modules record instead of act, runs its handler on the event (or its decide on
-- the input) with ctx.dry_run = true, and returns
-- what it would have done. Reads (store queries, kv gets, file reads, event queries) are
-- real; writes, HTTP calls, mail, processes, emitted events and timers are only recorded.
local policies = require "steward.runtime.policies"
local guard = require "steward.runtime.guard"
local task = require "steward.task"
local time = require "steward.time"
local policy_ctx = require "steward.runtime.policy_ctx"

local type, pairs, setmetatable = type, pairs, setmetatable

local M = {}


-- A module table whose functions are the real ones, except those overridden.
local function wrap(real, overrides)
  local m = {}
  for k, v in pairs(real) do m[k] = v end
  for k, v in pairs(overrides) do m[k] = v end
  return m
end

local function fakes(effects)
  local function record(kind, detail)
    detail.kind = kind
    effects[#effects + 1] = detail
  end
  local http = wrap(require "steward.http", {
    request = function(o)
      record("http", { method = o.method or "GET", url = o.url, headers = o.headers, body = o.body })
      return { status = 200, headers = {}, body = "", simulated = true }
    end,
    send_mail = function(o)
      record("mail", { to = o.to, subject = o.subject, from = o.from })
      return true
    end,
  })
  local events = wrap(require "steward.events", {
    emit = function(evs)
      local list = type(evs) == "table" and evs[1] ~= nil and evs or { evs }
      local ids = {}
      for i, ev in ipairs(list) do
        record("event", { event = ev })
        ids[i] = type(ev) == "table" and ev.id or "(assigned)"
      end
      return { accepted = #list, duplicates = 0, ids = ids }
    end,
  })
  local real_after = time.after
  local tm = wrap(time, {
    after = function(d, what, o)
      if type(what) == "table" then
        record("timer", { after = time.parse_duration(d), event = what, key = o and o.key })
        return "simulated-timer"
      end
      record("timer", { after = time.parse_duration(d), fn = true })
      return real_after(3600 * 24 * 365, function() end) -- a handle that never fires
    end,
    every = function(d) record("timer", { every = time.parse_duration(d) }); return real_after(3600 * 24 * 365, function() end) end,
    sleep = function(d) record("sleep", { seconds = time.parse_duration(d) }) end,
  })
  local kv_real = require "steward.kv"
  local kv = wrap(kv_real, {
    ns = function(name)
      local real = kv_real.ns(name) -- reads are real
      return {
        get = function(_, k) return real:get(k) end,
        list = function(_, o) return real:list(o) end,
        put = function(_, k, v, o) record("kv", { ns = name, op = "put", key = k, value = v, opts = o }); return 1 end,
        delete = function(_, k) record("kv", { ns = name, op = "delete", key = k }); return true end,
      }
    end,
  })
  local proc = wrap(require "steward.proc", {
    run = function(o) record("proc", { cmd = o.cmd }); return { code = 0, stdout = "", stderr = "", simulated = true } end,
  })
  local fs_real = require "steward.fs"
  local fs = wrap(fs_real, {})
  for _, w in ipairs({ "write", "write_atomic", "mkdir", "remove", "rename" }) do
    fs[w] = function(path) record("fs", { op = w, path = path }); return true end
  end
  -- An approval asked for in a dry run would page its approvers: recorded only.
  local approvals = wrap(require "steward.deploy.approvals", {
    request = function(spec)
      local s = type(spec) == "table" and spec or {}
      local chans = {}
      for i, c in ipairs(type(s.notify) == "table" and (s.notify.send and { s.notify } or s.notify) or {}) do
        chans[i] = type(c) == "table" and (c.name or c.kind) or tostring(c)
      end
      record("approval", { subject = s.subject, step = s.step, timeout = s.timeout, approvers = s.approvers,
        notify = chans, key = s.key })
      return "simulated-approval", {}
    end,
  })
  return { ["steward.http"] = http, ["steward.events"] = events, ["steward.time"] = tm,
           ["steward.kv"] = kv, ["steward.proc"] = proc, ["steward.fs"] = fs,
           ["steward.deploy.approvals"] = approvals }
end

-- dry(p, fn_name, arg, ctx_opts, opts): runs copy[fn_name](arg, ctx) on a recording copy of p.
local function dry(p, fn_name, arg, ctx_opts, opts)
  opts = opts or {}
  local effects = {}
  local mods = fakes(effects)
  local copy, err = policies.load_file(p.file, p.name, { lib_dir = opts.lib_dir, source = p.source,
    modules = mods, trust = true })
  if not copy then return nil, err end
  if not copy[fn_name] then return nil, "policy " .. p.name .. " has no " .. fn_name .. " function" end
  copy.config, copy.tenant_configs = p.config, p.tenant_configs
  ctx_opts.dry_run = true
  local ctx = policy_ctx.new(copy, ctx_opts)
  function ctx.kv(suffix) -- the policy's namespace, through the recording kv
    return mods["steward.kv"].ns("policy:" .. p.name .. (suffix and (":" .. suffix) or ""))
  end
  local t0 = time.monotonic()
  local h = task.spawn({ name = p.name .. ".simulate", timeout = opts.timeout or 30 }, function()
    return guard.run(copy.budget, copy[fn_name], arg, ctx)
  end)
  local joined, gok, a = h:join()
  local out = { side_effects = effects, duration = time.monotonic() - t0, version = p.version }
  if not joined then out.error = gok elseif gok == false then out.error = a else out.result = a end
  return out
end

-- run(p, event, {lib_dir}) -> {result, error, side_effects, duration}: the handler on event.
function M.run(p, ev, opts)
  return dry(p, "handle", ev, { event_id = ev.id, tenant = ev.tenant, attempt = 1 }, opts)
end

-- decide(p, input, {lib_dir}) -> {result, error, side_effects, duration}: decide(input) with the
-- tenant overlay of input.tenant, as POST /v1/decide would run it, but nothing is logged or done.
function M.decide(p, input, opts)
  local tenant = type(input) == "table" and type(input.tenant) == "string" and input.tenant or nil
  return dry(p, "decide", input, { tenant = tenant }, opts)
end

return M
