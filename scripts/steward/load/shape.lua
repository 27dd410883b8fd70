-- steward.load.shape: the traffic shapes of `steward load` (docs/scaling/load.md). A shape is
-- a sequence of phases, each a rate (requests per second) over time; parse() turns the
-- one-line grammar, a JSON list or a rate series into phases made of segments whose rate is
-- linear (a + b*t) or a raised cosine, so the schedule can integrate them exactly.
-- Errors are returned, not raised: they come from the command line and name the bad part.
local time = require "steward.time"

local type, tonumber, tostring, ipairs, pairs, format, floor, pi =
  type, tonumber, tostring, ipairs, pairs, string.format, math.floor, math.pi

local M = {}

M.GRAMMAR = [[
shape  = phase { "," phase }
phase  = kind ":" args [ "*" COUNT ]        COUNT repeats the phase (a sine: cycles)
  hold:RATE/DURATION                         constant rate (alias constant)
  step:RATE/DURATION                         a level change, held (same as hold)
  ramp:FROM-TO/DURATION                      linear from FROM to TO
  sine:LOW-HIGH/PERIOD                       one cycle from LOW up to HIGH and back
  spike:BASE-PEAK/DURATION/WIDTH             BASE, then PEAK for WIDTH in the middle
  pause:DURATION                             no requests
RATE   = requests per second (a number >= 0); DURATION = 500ms, 30s, 5m, 1h, ...]]

local KINDS = { hold = true, constant = true, step = true, ramp = true, sine = true, spike = true, pause = true }

local function rate(s, what)
  local n = tonumber(s)
  if not n or n ~= n or n < 0 or n == math.huge then
    return nil, format("%s: rate expected (a number >= 0), got '%s'", what, tostring(s))
  end
  return n
end

local function duration(v, what, allow_zero)
  local d, err = time.parse_duration(v)
  if not d then return nil, what .. ": " .. tostring(err) end
  if d <= 0 and not allow_zero then return nil, what .. ": must be longer than 0" end
  return d
end

local function linear(a, b, d) return { kind = "linear", a = a, b = b, d = d } end

-- One cycle of low + amp * (1 - cos(2*pi*s/period)) / 2, s from s0 to s0 + d.
local function sine(low, amp, period, s0, d)
  return { kind = "sine", low = low, amp = amp, period = period, s0 = s0 or 0, d = d or period }
end

-- Builds a phase from its fields (the same for the grammar and JSON); nil, err naming `what`.
local function build(p, what)
  local kind = p.kind
  local segs, dur = {}, 0
  local function add(seg) segs[#segs + 1] = seg; dur = dur + seg.d end
  if kind == "hold" or kind == "constant" or kind == "step" then
    local r, err = rate(p.rate, what .. ": rate"); if not r then return nil, err end
    local d; d, err = duration(p.duration, what .. ": duration"); if not d then return nil, err end
    add(linear(r, 0, d))
  elseif kind == "ramp" then
    local a, err = rate(p.from, what .. ": from"); if not a then return nil, err end
    local b; b, err = rate(p.to, what .. ": to"); if not b then return nil, err end
    local d; d, err = duration(p.duration, what .. ": duration"); if not d then return nil, err end
    add(linear(a, (b - a) / d, d))
  elseif kind == "sine" then
    local lo, err = rate(p.low, what .. ": low"); if not lo then return nil, err end
    local hi; hi, err = rate(p.high, what .. ": high"); if not hi then return nil, err end
    if hi < lo then return nil, format("%s: high (%s) is below low (%s)", what, tostring(hi), tostring(lo)) end
    local per; per, err = duration(p.period, what .. ": period"); if not per then return nil, err end
    add(sine(lo, hi - lo, per))
  elseif kind == "spike" then
    local base, err = rate(p.base, what .. ": base"); if not base then return nil, err end
    local peak; peak, err = rate(p.peak, what .. ": peak"); if not peak then return nil, err end
    local d; d, err = duration(p.duration, what .. ": duration"); if not d then return nil, err end
    local w; w, err = duration(p.width, what .. ": width"); if not w then return nil, err end
    if w > d then return nil, format("%s: width (%gs) is longer than the duration (%gs)", what, w, d) end
    local side = (d - w) / 2
    if side > 0 then add(linear(base, 0, side)) end
    add(linear(peak, 0, w))
    if side > 0 then add(linear(base, 0, side)) end
  elseif kind == "pause" then
    local d, err = duration(p.duration, what .. ": duration"); if not d then return nil, err end
    add(linear(0, 0, d))
  else
    return nil, format("%s: unknown kind '%s' (hold, step, ramp, sine, spike, pause)", what, tostring(kind))
  end
  local count = p["repeat"] or 1
  if type(count) ~= "number" or count ~= floor(count) or count < 1 or count > 100000 then
    return nil, format("%s: repeat count: integer from 1 to 100000 expected, got '%s'", what, tostring(count))
  end
  local one = segs
  if count > 1 then
    segs = {}
    for _ = 1, count do
      for _, s in ipairs(one) do segs[#segs + 1] = s end
    end
    dur = dur * count
  end
  return { kind = kind, segments = segs, duration = dur }
end

-- Splits "A-B" into two strings (rates never start with '-', so the first '-' separates).
local function pair(s)
  local a, b = s:match("^%s*([^%-]-)%s*%-%s*(.-)%s*$")
  return a, b
end

-- The fields of one phase of the one-line grammar.
local function parse_phase(text, what)
  local kind, args = text:match("^%s*([%a_]+)%s*:%s*(.-)%s*$")
  if not kind then
    return nil, format("%s: expected KIND:ARGS (e.g. ramp:0-200/30s), got '%s'", what, text)
  end
  kind = kind:lower()
  if not KINDS[kind] then
    return nil, format("%s: unknown kind '%s' (hold, step, ramp, sine, spike, pause)", what, kind)
  end
  local p = { kind = kind }
  local body, count = args:match("^(.-)%*(.*)$")
  if body then
    local n = tonumber(count)
    if not n then return nil, format("%s: repeat count after '*': integer expected, got '%s'", what, count) end
    p["repeat"], args = n, body:match("^(.-)%s*$")
  end
  local parts = {}
  for part in (args .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = part:match("^%s*(.-)%s*$") end
  local function want(n, form)
    if #parts ~= n then
      return format("%s: expected %s:%s, got '%s:%s'", what, kind, form, kind, args)
    end
  end
  local err
  if kind == "hold" or kind == "constant" or kind == "step" then
    err = want(2, "RATE/DURATION"); p.rate, p.duration = parts[1], parts[2]
  elseif kind == "ramp" then
    err = want(2, "FROM-TO/DURATION"); p.from, p.to = pair(parts[1]); p.duration = parts[2]
    if not err and not p.to then err = format("%s: expected ramp:FROM-TO/DURATION, got 'ramp:%s'", what, args) end
  elseif kind == "sine" then
    err = want(2, "LOW-HIGH/PERIOD"); p.low, p.high = pair(parts[1]); p.period = parts[2]
    if not err and not p.high then err = format("%s: expected sine:LOW-HIGH/PERIOD, got 'sine:%s'", what, args) end
  elseif kind == "spike" then
    err = want(3, "BASE-PEAK/DURATION/WIDTH"); p.base, p.peak = pair(parts[1]); p.duration, p.width = parts[2], parts[3]
    if not err and not p.peak then
      err = format("%s: expected spike:BASE-PEAK/DURATION/WIDTH, got 'spike:%s'", what, args)
    end
  elseif kind == "pause" then
    err = want(1, "DURATION"); p.duration = parts[1]
  end
  if err then return nil, err end
  return p
end

local function finish(phases, texts)
  if #phases == 0 then return nil, "shape: no phases" end
  local total = 0
  for i, ph in ipairs(phases) do
    ph.index, ph.text, ph.start = i, texts[i], total
    total = total + ph.duration
  end
  return { phases = phases, duration = total }
end

-- parse_text("ramp:0-200/30s,hold:200/20s") -> shape | nil, err
function M.parse_text(spec)
  if type(spec) ~= "string" or spec:match("^%s*$") then return nil, "shape: empty" end
  local phases, texts, i = {}, {}, 0
  for text in (spec .. ","):gmatch("([^,]*),") do
    i = i + 1
    local what = format("shape: phase %d ('%s')", i, (text:gsub("^%s+", ""):gsub("%s+$", "")))
    local p, err = parse_phase(text, what)
    if not p then return nil, err end
    local ph; ph, err = build(p, what)
    if not ph then return nil, err end
    phases[i], texts[i] = ph, (text:gsub("^%s+", ""):gsub("%s+$", ""))
  end
  return finish(phases, texts)
end

-- The one-line text of a JSON phase, for reports.
local function describe(p)
  local k = p.kind
  local s
  if k == "hold" or k == "constant" or k == "step" then s = format("%s:%s/%s", k, tostring(p.rate), tostring(p.duration))
  elseif k == "ramp" then s = format("ramp:%s-%s/%s", tostring(p.from), tostring(p.to), tostring(p.duration))
  elseif k == "sine" then s = format("sine:%s-%s/%s", tostring(p.low), tostring(p.high), tostring(p.period))
  elseif k == "spike" then
    s = format("spike:%s-%s/%s/%s", tostring(p.base), tostring(p.peak), tostring(p.duration), tostring(p.width))
  else s = format("%s:%s", tostring(k), tostring(p.duration)) end
  if p["repeat"] and p["repeat"] ~= 1 then s = s .. "*" .. tostring(p["repeat"]) end
  return s
end

-- parse_list({ {kind = "ramp", from = 0, to = 200, duration = "30s"}, ... }) -> shape | nil, err
-- (the JSON form; fields as in the grammar, `repeat` for "*N").
function M.parse_list(list)
  if type(list) ~= "table" or #list == 0 then
    return nil, "shape: a non-empty JSON array of phases expected"
  end
  local phases, texts = {}, {}
  for i, p in ipairs(list) do
    local what = format("shape: phase %d", i)
    if type(p) ~= "table" then return nil, what .. ": object expected" end
    if type(p.kind) ~= "string" then return nil, what .. ": kind: string expected" end
    local q = {}
    for k, v in pairs(p) do q[k] = v end
    q.kind = p.kind:lower()
    local ph, err = build(q, what .. " (" .. q.kind .. ")")
    if not ph then return nil, err end
    phases[i], texts[i] = ph, describe(q)
  end
  return finish(phases, texts)
end

-- parse_rates({ {t, rate}, ... }, speed) -> shape: the rate series as ramps between its
-- points (times may be absolute: only their differences count), time divided by speed.
function M.parse_rates(points, speed, what)
  what = what or "rate series"
  speed = speed or 1
  if type(points) ~= "table" or #points < 2 then
    return nil, what .. ": at least two points {t, rate} expected"
  end
  local phases, texts = {}, {}
  for i = 2, #points do
    local p, q = points[i - 1], points[i]
    local dt = (q[1] - p[1]) / speed
    if not (dt > 0) then
      return nil, format("%s: point %d: time %s is not after the previous one (%s)", what, i,
        tostring(q[1]), tostring(p[1]))
    end
    phases[#phases + 1] = { kind = "ramp", segments = { linear(p[2], (q[2] - p[2]) / dt, dt) }, duration = dt }
    texts[#texts + 1] = format("ramp:%g-%g/%gs", p[2], q[2], dt)
  end
  return finish(phases, texts)
end

-- The rate of a segment at offset tau (for specs and reports).
function M.segment_rate(seg, tau)
  if seg.kind == "linear" then return seg.a + seg.b * tau end
  return seg.low + seg.amp * (1 - math.cos(2 * pi * (seg.s0 + tau) / seg.period)) / 2
end

-- Requests a segment asks for over [0, tau].
function M.segment_count(seg, tau)
  if seg.kind == "linear" then return seg.a * tau + seg.b * tau * tau / 2 end
  local w = 2 * pi / seg.period
  return seg.low * tau + seg.amp / 2 * (tau - (math.sin(w * (seg.s0 + tau)) - math.sin(w * seg.s0)) / w)
end

-- The segments with the rate capped at max_rate: a linear segment is split where it crosses
-- the cap, a cosine cycle where it rises above it and falls back below.
function M.cap(seg, max_rate)
  if not max_rate then return { seg } end
  if seg.kind == "linear" then
    local r0, r1 = seg.a, seg.a + seg.b * seg.d
    if r0 <= max_rate and r1 <= max_rate then return { seg } end
    if r0 >= max_rate and r1 >= max_rate then return { linear(max_rate, 0, seg.d) } end
    local tc = (max_rate - seg.a) / seg.b
    if r0 < max_rate then
      return { linear(seg.a, seg.b, tc), linear(max_rate, 0, seg.d - tc) }
    end
    return { linear(max_rate, 0, tc), linear(max_rate, seg.b, seg.d - tc) }
  end
  local hi = seg.low + seg.amp
  if hi <= max_rate then return { seg } end
  if seg.low >= max_rate then return { linear(max_rate, 0, seg.d) } end
  -- Whole cycles only (the grammar makes no other): above the cap between s1 and P - s1.
  local x = 1 - 2 * (max_rate - seg.low) / seg.amp
  local s1 = math.acos(x) * seg.period / (2 * pi)
  local s2 = seg.period - s1
  return { sine(seg.low, seg.amp, seg.period, 0, s1), linear(max_rate, 0, s2 - s1),
           sine(seg.low, seg.amp, seg.period, s2, seg.period - s2) }
end

return M
