-- steward.load.runner: the open-loop engine of `steward load`. Requests fall due at their
-- scheduled times whether or not earlier ones were answered: a slow target cannot slow the
-- schedule down and so hide its own slowness (the coordinated omission wrk2 and vegeta
-- avoid). At most --connections requests are in flight (one task each, one keep-alive
-- connection each); a request that falls due while all are busy waits in a FIFO here, and
-- that wait is part of its latency, which counts from the scheduled time. (Queueing in
-- libcurl instead costs it a scan of every waiting transfer per event: a few thousand waiting
-- requests stall the loop.) A request that waited longer than --timeout for a connection is
-- not sent: it is an error of kind "queue_timeout".
local http = require "steward.http"
local task = require "steward.task"
local time = require "steward.time"
local signal = require "steward.signal"
local log = require "steward.log"

local pairs, ipairs, pcall, tostring = pairs, ipairs, pcall, tostring

local M = {}

-- run{ schedule =, report =, target =, url =, method =, headers =, body =, timeout =,
-- connections =, length = seconds the run lasts at least } -> result (report:result), interrupted. Ctrl-C (INT) or TERM stops sending,
-- cancels the requests in flight and returns what was measured so far.
function M.run(o)
  local sched, rep, target = o.schedule, o.report, o.target
  local mono = time.monotonic
  local start = mono()
  local conns, timeout = o.connections, o.timeout
  local live, nlive, interrupted, sender = {}, 0, false, nil
  -- The FIFO of due requests waiting for a connection: head..tail, each slot cleared on pop.
  local q, head, tail = {}, 1, 0

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

  local function send(item)
    local t, phase, rec = item[1], item[2], item[3]
    local now = mono() - start
    rep:scheduled(t, phase, item[4])
    rep:sent(now, t, phase)
    if now - t > timeout then
      rep:done(now, t, phase, nil, "queue_timeout")
      return
    end
    local res, _, kind = http.request{
      url = rec and (target.connect .. rec.path) or o.url,
      method = rec and rec.method or o.method,
      headers = headers_for(phase), body = o.body, timeout = timeout, follow_redirects = false,
      max_host_connections = conns, max_total_connections = conns,
    }
    now = mono() - start
    if res then rep:done(now, t, phase, res.status) else rep:done(now, t, phase, nil, kind) end
  end

  -- A connection's task: sends its request, then whatever is waiting, then ends.
  local function worker(id, item)
    while item do
      -- A request that raises (it cannot, once the options were checked) must not take its
      -- connection slot with it: it is counted as an error and the worker goes on.
      local ok, err = pcall(send, item)
      if not ok then
        log.error("steward load: request failed", { error = tostring(err) })
        rep:done(mono() - start, item[1], item[2], nil, "error")
      end
      item = nil
      if head <= tail then
        item = q[head]
        q[head] = nil
        head = head + 1
      end
    end
    live[id] = nil
    nlive = nlive - 1
  end

  local function loop()
    local id = 0
    local t, phase, delayed, rec = sched:next()
    while t do
      local now = mono() - start
      if t > now then
        time.sleep(t - now)
      else
        local item = { t, phase, rec, delayed }
        if nlive < conns then
          id = id + 1
          nlive = nlive + 1
          local h = task.spawn(worker, id, item)
          if h:status() == "running" then live[id] = h end
        else
          tail = tail + 1
          q[tail] = item
        end
        t, phase, delayed, rec = sched:next()
      end
    end
    -- A shape that ends quietly (a pause) still lasts its whole length.
    local now = mono() - start
    if o.length and o.length > now then time.sleep(o.length - now) end
  end

  sender = task.spawn(loop)
  -- Stops sending and cancels the requests in flight (also during the final wait for the
  -- last answers). The sender goes last: cancelling it resumes run() at once.
  local function stop()
    -- A second Ctrl-C is the user insisting: leave now, without a report.
    if interrupted then io.stderr:write("steward load: interrupted twice, exiting\n"); os.exit(130) end
    interrupted = true
    for wid, h in pairs(live) do
      if h:cancel("interrupted") then rep:cancelled() end
      live[wid] = nil
    end
    if sender:status() == "running" then sender:cancel("interrupted") end
  end
  local watches = { signal.on("INT", stop), signal.on("TERM", stop) }
  sender:join()
  local waiting = {}
  for _, h in pairs(live) do waiting[#waiting + 1] = h end
  for _, h in ipairs(waiting) do h:join() end
  for _, w in ipairs(watches) do w:cancel() end
  -- What an interrupt left: requests due but waiting for a connection, the one the sender
  -- held, and the rest of the schedule are not sent.
  local not_sent = 0
  if interrupted then
    not_sent = sched.k - rep.scheduled_n
    while sched:next() do not_sent = not_sent + 1 end
  end
  return rep:result{ elapsed = mono() - start, interrupted = interrupted, not_sent = not_sent }, interrupted
end

return M
