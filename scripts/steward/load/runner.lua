-- steward.load.runner: the open-loop engine of `steward load`. Each request is sent at its
-- scheduled time as a task of its own, whether or not earlier ones were answered: a slow
-- target cannot slow the generator down and so hide its own slowness (the coordinated
-- omission wrk2 and vegeta avoid). Requests beyond the --connections limit wait in libcurl's
-- queue and that wait is in their latency, which counts from the scheduled time.
local http = require "steward.http"
local task = require "steward.task"
local time = require "steward.time"
local signal = require "steward.signal"

local pairs, ipairs = pairs, ipairs

local M = {}

-- run{ schedule =, report =, target =, method =, headers =, body =, timeout =, connections = }
-- -> result (report:result), interrupted. Ctrl-C (INT) or TERM stops sending, cancels the
-- requests still waiting and returns what was measured so far.
function M.run(o)
  local sched, rep, target = o.schedule, o.report, o.target
  local mono = time.monotonic
  local start = mono()
  local live, seq, interrupted = {}, 0, false
  local conns = o.connections
  -- One headers table per phase (tagged with it), shared by that phase's requests.
  local by_phase = {}
  local function headers_for(phase)
    local h = by_phase[phase]
    if not h then
      h = {}
      for k, v in pairs(o.headers or {}) do h[k] = v end
      h["X-Steward-Load-Phase"] = phase
      by_phase[phase] = h
    end
    return h
  end

  local function one(id, t, phase, rec)
    rep:sent(mono() - start, t, phase)
    local res, _, kind = http.request{
      url = rec and (target.connect .. rec.path) or o.url,
      method = rec and rec.method or o.method,
      headers = headers_for(phase), body = o.body, timeout = o.timeout, follow_redirects = false,
      max_host_connections = conns, max_total_connections = conns,
    }
    local now = mono() - start
    if res then rep:done(now, t, phase, res.status) else rep:done(now, t, phase, nil, kind) end
    live[id] = nil
  end

  local function loop()
    local t, phase, delayed, rec = sched:next()
    while t do
      local now = mono() - start
      if t > now then
        time.sleep(t - now)
      else
        rep:scheduled(t, phase, delayed)
        seq = seq + 1
        local h = task.spawn(one, seq, t, phase, rec)
        if h:status() == "running" then live[seq] = h end
        t, phase, delayed, rec = sched:next()
      end
    end
  end

  local sender = task.spawn(loop)
  -- Cancels what is still waiting for an answer, then stops sending (also during the final
  -- wait for the last answers). The sender goes last: cancelling it resumes run() at once.
  local function stop()
    if interrupted then return end
    interrupted = true
    for id, h in pairs(live) do
      if h:cancel("interrupted") then rep:cancelled() end
      live[id] = nil
    end
    if sender:status() == "running" then sender:cancel("interrupted") end
  end
  local watches = { signal.on("INT", stop), signal.on("TERM", stop) }
  sender:join()
  -- The request the sender held when it was stopped was pulled from the schedule but not
  -- sent: it is counted with the rest of the schedule as not sent.
  local not_sent = 0
  if interrupted then
    if sched.k > seq then not_sent = sched.k - seq end
    while sched:next() do not_sent = not_sent + 1 end
  end
  local waiting = {}
  for _, h in pairs(live) do waiting[#waiting + 1] = h end
  for _, h in ipairs(waiting) do h:join() end
  for _, w in ipairs(watches) do w:cancel() end
  return rep:result{ elapsed = mono() - start, interrupted = interrupted, not_sent = not_sent }, interrupted
end

return M
